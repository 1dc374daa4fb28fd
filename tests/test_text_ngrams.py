"""Hashed character/word n-grams (fastText-style subword information) for word-level text models."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from test_text import TEXTS, _text_data
from typer.testing import CliRunner

from attn.cli.app import app
from attn.errors import ConfigError
from attn.features.config import TextFeatures, TokenizerConfig
from attn.features.ngrams import bucket, char_ngrams
from attn.features.text import TextFrontend
from attn.features.tokenizers import UNK_ID, make_tokenizer, tokenizer_from_state
from attn.pipelines.recipe.load import load_recipe

runner = CliRunner()
CFG = TokenizerConfig(level="word", char_ngrams=(3, 5), word_ngrams=2, ngram_buckets=5000)


def test_char_ngrams_mark_word_edges():
    assert char_ngrams("where", 3, 4) == ["<wh", "whe", "her", "ere", "re>", "<whe", "wher", "here", "ere>"]
    assert char_ngrams("a", 1, 3) == ["a", "<a", "a>", "<a>"]  # the edge marks alone are no n-gram


def test_bucket_ids_are_fixed_numbers():
    # CRC-32 is a standard (crc32(b"<wh") = 0xF127C3BD): this id holds on every platform and Python
    assert bucket("<wh", 100_000) == 1 + 0xF127C3BD % 100_000 == 15070
    assert all(1 <= bucket(g, 7) <= 7 for g in char_ngrams("peninsula", 3, 5))


def test_hashing_is_the_same_in_other_processes_whatever_pythonhashseed():
    code = (
        "from attn.features.tokenizers import make_tokenizer; from attn.features.config import TokenizerConfig;"
        f"TEXTS = {TEXTS!r};"
        "t = make_tokenizer(TokenizerConfig(level='word', char_ngrams=(3, 5), word_ngrams=2, ngram_buckets=5000));"
        "print(t.fit(TEXTS).encode_array('Who invented the hamster ?').tolist())"
    )
    here = make_tokenizer(CFG).fit(TEXTS).encode_array("Who invented the hamster ?").tolist()
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for seed in ("1", "12345"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run([sys.executable, "-c", code], env=env, cwd=root, capture_output=True, text=True,
                             check=True)  # fmt: skip
        assert json.loads(out.stdout) == here


def test_rows_carry_word_id_then_ngram_buckets():
    tok = make_tokenizer(CFG).fit(TEXTS)
    rows = tok.encode_array("Who invented the hamster ?")  # (T, 1 + K)
    assert rows.dtype == np.int64 and rows.ndim == 2 and rows.shape[0] == 5
    assert rows[:, 0].tolist() == tok.encode("Who invented the hamster ?")
    assert rows[3, 0] == UNK_ID  # unseen word: <unk> ...
    grams = char_ngrams("hamster", 3, 5)
    assert rows[3, 1 : 1 + len(grams)].tolist() == [bucket(g, 5000) for g in grams]  # ... and its spelling
    assert rows[3, 1 + len(grams)] > 0  # the (the, hamster) word bigram
    assert (rows[4, 1 + len(char_ngrams("?", 3, 5)) + 1 :] == 0).all()  # short words are 0-padded
    again = tokenizer_from_state(CFG, *tok.state())
    assert np.array_equal(again.encode_array("Who invented the hamster ?"), rows)
    plain = make_tokenizer(TokenizerConfig(level="word")).fit(TEXTS)
    assert plain.encode_array("Who invented the hamster ?").ndim == 1


def test_unseen_word_gets_a_nonzero_vector_from_its_ngrams():
    tok = make_tokenizer(CFG).fit(TEXTS)
    torch.manual_seed(0)
    front = TextFrontend.from_config(TextFeatures(tokenizer=CFG, embed_dim=16), tok.vocab_size).eval()
    rows = torch.from_numpy(np.stack([tok.encode_array("Who invented the hamster ?"),
                                      tok.encode_array("Who invented the hamsters ?")]))  # fmt: skip
    emb, _ = front(rows, torch.tensor([5, 5]))  # (2, E, T)
    unk, _ = front(torch.full((1, 1), UNK_ID), torch.tensor([1]))  # <unk> alone: (1, E, 1)
    ham, hams = emb[0, :, 3], emb[1, :, 3]
    assert ham.abs().sum() > 0 and not torch.allclose(ham, unk[0, :, 0])
    assert not torch.allclose(ham, hams)
    # words spelled alike share n-grams, so their vectors are closer than unrelated unseen words'
    other, _ = front(torch.from_numpy(tok.encode_array("xylophone")[None]), torch.tensor([1]))
    cos = torch.nn.functional.cosine_similarity
    assert cos(ham, hams, dim=0) > cos(ham, other[0, :, 0], dim=0)


def test_config_checks():
    with pytest.raises(ValueError, match="need level: word"):
        TokenizerConfig(level="char", char_ngrams=(3, 5))
    with pytest.raises(ValueError, match="shortest"):
        TokenizerConfig(char_ngrams=(5, 3))
    with pytest.raises(ValueError):
        TokenizerConfig(word_ngrams=3)


def test_unknown_ngram_key_suggests_the_right_one(tmp_path):
    p = _text_data(tmp_path)
    with pytest.raises(ConfigError, match="char_ngrams"):
        load_recipe(p, ["features.tokenizer.char_ngram=[3,5]"])


NGRAM_SETS = ["--set", "features.tokenizer.char_ngrams=[3,5]", "--set", "features.tokenizer.word_ngrams=2",
              "--set", "features.tokenizer.ngram_buckets=3000", "--set", "model.token_pool=attention"]  # fmt: skip


def test_trained_model_round_trips_with_ngrams(tmp_path):
    from attn.pipelines.data.batching import pad_rows
    from attn.pipelines.data.text import encode_texts
    from attn.pipelines.store.artifact import load_model

    p = _text_data(tmp_path)
    r = runner.invoke(app, ["train", str(p), "--out", str(tmp_path / "run"), "--quiet", "--format", "json",
                            *NGRAM_SETS])  # fmt: skip
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["test_accuracy"] >= 0.75
    texts = ["Who invented the hamster ?", "Where is the lighthouse ?", "How many apples are there ?"]
    a, b = load_model(tmp_path / "run" / "model.attn"), load_model(tmp_path / "run" / "model.attn")
    ids, _ = encode_texts(a.tokenizer, texts, 8)
    x, lens = torch.from_numpy(pad_rows(ids)), torch.tensor([len(i) for i in ids])
    network = getattr(a.model, "network", a.model)  # the saved model may blend in the run's baseline
    assert x.ndim == 3 and "frontend.ngrams.weight" in network.state_dict()
    with torch.no_grad():
        la, lb = a.model(x, lens), b.model(x, lens)
        # the same words without their n-grams, through the network (a blend of weight 1 is its baseline alone)
        ln, lw = network(x, lens), network(x[..., :1], lens)
    assert torch.equal(la, lb) and not torch.allclose(ln, lw)
    # predict --text recomputes the n-grams from the stored recipe and vocabulary: same logits
    flags = [a for t in texts for a in ("--text", t)]
    r = runner.invoke(app, ["predict", "-m", str(tmp_path / "run"), "--top-k", "3", *flags])
    assert r.exit_code == 0, r.output
    recs = [json.loads(x) for x in r.stdout.splitlines()]
    probs = torch.softmax(la, -1)
    for rec, pr in zip(recs, probs, strict=True):
        for k in rec["top_k"]:
            assert abs(k["score"] - float(pr[a.labels.index(k["label"])])) < 1e-5
    assert [r["label"] for r in recs] == ["HUM", "LOC", "NUM"]
    r = runner.invoke(app, ["evaluate", "-m", str(tmp_path / "run"), str(tmp_path / "test.csv"), "--format", "json"])
    assert r.exit_code == 0 and json.loads(r.stdout)["count"] == 12
    r = runner.invoke(app, ["tokenize", "-m", str(tmp_path / "run"), "Who invented the hamster ?", "--ids"])
    assert r.exit_code == 0 and r.stdout.split("\t")[0].split()[-2:] == ["<unk>", "?"]
    r = runner.invoke(app, ["info", str(tmp_path / "run")])
    assert r.exit_code == 0 and "char 3-5-grams + word bigrams in 3000 buckets" in r.stdout


def test_masked_pretraining_with_ngrams(tmp_path):
    p = _text_data(tmp_path)
    r = runner.invoke(app, ["train", str(p), "--out", str(tmp_path / "run"), "--quiet", "--format", "json",
                            *NGRAM_SETS, "--set", "train.pretrain_epochs=2", "--set", "train.epochs=1"])  # fmt: skip
    assert r.exit_code == 0, r.output
    assert len(json.loads(r.stdout)["data"]["pretrain"]) == 2
