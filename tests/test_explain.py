"""`attn explain`: attribution weights are a distribution over the input (non-negative, summing to
1, zero on padding) for every registered family, and on models trained on tasks where one region
decides the label, that region gets the highest weight."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from attn.cli.app import app
from attn.models import registry
from attn.models.attribution import attribute, rollout
from attn.models.transformer import TransformerEncoder
from helpers import tone, write_wav

runner = CliRunner()

# Transformer variants: every readout (class token, pooling) and token layout; the attention
# kinds the family offers are added from its Config, so a new one is covered when it lands.
VARIANTS = [("cnn", {"channels": [4, 8]}), ("wavenet", {"channels": 8, "layers": 2, "front_strides": [2]}),
            ("cnn1d", {"widths": [2, 3], "filters": 8}), ("pooled", {}), ("pooled", {"pooling": "cls", "hidden": 8}),
            ("transformer", {}), ("transformer", {"pool": "mean", "token_pool": "attention"}),
            ("transformer", {"pool": "attention", "norm": "pre"}),
            ("transformer", {"pool": "max", "token_pool": "mean"}),
            ("transformer", {"patch": [4, 3], "patch_stride": [4, 2]})]  # fmt: skip
_attention = TransformerEncoder.Config.model_fields.get("attention")
if _attention is not None:
    VARIANTS += [("transformer", {"attention": kind}) for kind in ("additive",) if kind in str(_attention.annotation)]


def test_every_registered_family_is_covered():
    assert {name for name, _ in VARIANTS} == set(registry.names())


@pytest.mark.parametrize(("name", "params"), VARIANTS, ids=[f"{n}-{p}" for n, p in VARIANTS])
def test_weights_are_a_distribution_over_valid_positions(name, params):
    torch.manual_seed(0)
    model = registry.create(name, 16, 3, **params)
    x, lengths = torch.randn(4, 24, 16), torch.tensor([24, 17, 9, 3])
    model.train()
    model(x, lengths)  # batch-norm statistics off their initial values
    a = attribute(model, x, lengths, torch.tensor([0, 1, 2, 0]), bands=4 if name == "cnn" else None)
    w = a.weights
    assert w.shape == a.valid.shape and a.spans.shape == (w.shape[1], 2)
    assert (w >= 0).all() and torch.allclose(w.sum(1), torch.ones(4), atol=1e-5)
    assert (w[~a.valid] == 0).all()
    # Valid positions are a prefix that starts inside the row and covers all of it.
    for row, n in zip(a.valid, lengths.tolist(), strict=True):
        k = int(row.sum())
        assert row[:k].all() and (a.spans[:k, 0] < n).all() and int(a.spans[k - 1, 1]) >= n
    if a.grid is not None:
        assert torch.allclose(a.grid.sum(1), w, atol=1e-5) or a.method == "occlusion"
        assert (a.grid >= 0).all() and torch.allclose(a.grid.sum((1, 2)), torch.ones(4), atol=1e-5)
    if a.layers is not None:  # per layer and head, each a distribution too
        assert (a.layers >= 0).all() and torch.allclose(a.layers.sum(-1), torch.ones(a.layers.shape[:3]), atol=1e-5)
        assert (a.layers.permute(0, 3, 1, 2)[~a.valid] == 0).all()
    assert a.method == ("attention rollout" if name == "transformer" else "occlusion")  # cnn, wavenet, cnn1d


def test_padding_does_not_change_a_row_s_attention_weights():
    torch.manual_seed(0)
    model = registry.create("transformer", 8, 2).eval()
    x, lengths = torch.randn(2, 12, 8), torch.tensor([12, 7])
    both = attribute(model, x, lengths, torch.tensor([0, 0]))
    alone = attribute(model, x[1:, :7], lengths[1:], torch.tensor([0]))
    assert torch.allclose(both.weights[1, :7], alone.weights[0], atol=1e-5)


def test_rollout_of_uniform_and_identity_attention():
    n = 5
    eye = torch.eye(n)[None, None]
    assert torch.allclose(rollout([eye, eye]), torch.eye(n)[None])
    uniform = torch.full((1, 2, n, n), 1 / n)
    r = rollout([uniform])  # half residual, half the mean: rows still sum to 1
    assert torch.allclose(r[0], 0.5 * torch.eye(n) + 0.5 / n) and torch.allclose(r.sum(-1), torch.ones(1, n))


# -- trained on tasks where one region decides the label -----------------------------------------

SR = 8000
BURST = 0.08  # seconds


@pytest.fixture(scope="module")
def burst_data(tmp_path_factory):
    """Tone bursts (600 Hz or 1800 Hz: the label) at a random time in noise: a training folder
    per class, and 24 held-out clips with their burst start times."""
    root = tmp_path_factory.mktemp("bursts")
    rng = np.random.default_rng(0)
    n = int(0.5 * SR)
    held_out = []
    for i in range(144):
        label, freq = ("low", 600) if i % 2 else ("high", 1800)
        x = 0.05 * rng.standard_normal(n)
        t0 = rng.uniform(0, 0.5 - BURST)
        s = int(t0 * SR)
        t = np.arange(int(BURST * SR)) / SR
        x[s : s + len(t)] += 0.4 * np.sin(2 * np.pi * freq * t) * np.hanning(len(t))
        where = root / "train" / label if i < 120 else root / "held_out"
        path = write_wav(where / f"{i:03d}.wav", x.astype(np.float32), SR)
        if i >= 120:
            held_out.append((str(path), t0))
    return root / "train", held_out


BURST_RECIPE = """\
data: {{root: {root}, val_fraction: 0.15, test_fraction: 0.15}}
features: {{sample_rate: 8000, frame_seconds: 0.5, hop_seconds: 0.5, n_fft: 256, hop_length: 64, n_mels: 24}}
model: {model}
train: {{epochs: {epochs}, batch_size: 16, lr: 0.003, patience: 0, seed: 0}}
"""


def _hits(records, bursts) -> float:
    """Share of records whose highest-weight position overlaps the burst (a position's width of slack)."""
    hits = 0
    for rec in records:
        t0 = bursts[rec["input"]]
        s, e = rec["positions"][int(np.argmax(rec["weights"]))]
        slack = e - s
        hits += s < t0 + BURST + slack and e > t0 - slack
    return hits / len(records)


@pytest.mark.parametrize(("model", "epochs"), [
    ("{name: cnn, channels: [8, 16], dropout: 0.0}", 6),
    ("{name: transformer, d_model: 32, heads: 2, layers: 2, ff_dim: 64, dropout: 0.0, input_norm: true}", 12),
])  # fmt: skip
def test_the_tone_burst_gets_the_highest_weight(burst_data, tmp_path, model, epochs):
    import attn

    root, clips = burst_data
    recipe = tmp_path / "bursts.yaml"
    recipe.write_text(BURST_RECIPE.format(root=root, model=model, epochs=epochs))
    result = attn.train(recipe, out=tmp_path / "run", device="cpu")
    assert result.metrics["accuracy"] >= 0.9, result.metrics
    records = attn.load(result.run_dir).explain([p for p, _ in clips])
    assert _hits(records, dict(clips)) >= 0.8


FILLER = (
    "the of and to in is was for on that with as by at from it an be this are or which have one had not "
    "but what all were when there can more if out so up said about other into than its time only"
).split()
KEYWORDS = {"alpha": "a", "bravo": "b", "charlie": "c"}


def _keyword_texts(n: int, seed: int) -> list[tuple[str, str, int]]:
    """(text, label, keyword position): a keyword (the label) among 5-11 filler words."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        words = list(rng.choice(FILLER, size=int(rng.integers(5, 12))))
        at = int(rng.integers(0, len(words) + 1))
        key = list(KEYWORDS)[i % 3]
        words.insert(at, key)
        out.append((" ".join(words), KEYWORDS[key], at))
    return out


@pytest.fixture(scope="module")
def keyword_model(tmp_path_factory):
    """A tiny text transformer (class token) trained to find the keyword; returns its run folder."""
    import attn

    d = tmp_path_factory.mktemp("keywords")
    (d / "train.csv").write_text("text,label\n" + "".join(f"{t},{y}\n" for t, y, _ in _keyword_texts(150, 0)))
    recipe = d / "keywords.yaml"
    recipe.write_text(
        "data: {train: train.csv, val_fraction: 0.15, test_fraction: 0.15}\n"
        "features: {kind: text, tokenizer: {level: word, max_len: 16}, embed_dim: 32}\n"
        "model: {name: transformer, d_model: 32, heads: 2, layers: 2, ff_dim: 64, dropout: 0.0}\n"
        "train: {epochs: 12, batch_size: 16, lr: 0.003, patience: 0, seed: 0}\n"
    )
    result = attn.train(recipe, out=d / "run", device="cpu")
    assert result.metrics["accuracy"] >= 0.9, result.metrics
    return result.run_dir


def test_the_keyword_gets_the_highest_weight(keyword_model):
    import attn

    held_out = _keyword_texts(30, 1)
    records = attn.load(keyword_model).explain([t for t, _, _ in held_out])
    hits = sum(int(np.argmax(r["weights"])) == at for r, (_, _, at) in zip(records, held_out, strict=True))
    assert hits >= 0.8 * len(held_out)
    r = records[0]
    assert r["method"] == "attention rollout" and r["tokens"] == held_out[0][0].split()
    assert len(r["layers"]) == 2 and len(r["layers"][0]) == 2 and len(r["layers"][0][0]) == len(r["tokens"])


def test_explain_cli_json_terminal_png_and_errors(keyword_model, tmp_path):
    text = _keyword_texts(1, 2)[0][0]
    r = runner.invoke(app, ["explain", "-m", str(keyword_model), "--text", text, "--format", "json"])
    assert r.exit_code == 0, r.output
    rec = json.loads(r.stdout)
    assert rec["tokens"] == text.split() and abs(sum(rec["weights"]) - 1) < 1e-4
    # Text format: every token printed (shaded on a terminal); --out writes a PNG per input.
    lines = tmp_path / "texts.txt"
    lines.write_text(f"{text}\n\n")
    r = runner.invoke(app, ["explain", "-m", str(keyword_model), str(lines), "--format", "text",
                            "--out", str(tmp_path / "png")])  # fmt: skip
    assert r.exit_code == 1, r.output  # the empty second line failed; the first was explained
    assert all(w in r.stdout for w in text.split()) and "empty text" in r.stdout
    (png,) = (tmp_path / "png").iterdir()
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_explain_audio_cli_png_and_a_missing_file(trained_model, tmp_path):
    import soundfile as sf

    wav = write_wav(tmp_path / "a.wav", tone(440, 1.2, SR), SR)  # longer than one window
    r = runner.invoke(app, ["explain", "-m", str(trained_model), str(wav), str(tmp_path / "missing.wav"),
                            "--out", str(tmp_path / "png"), "--format", "json"])  # fmt: skip
    assert r.exit_code == 1
    good, bad = (json.loads(line) for line in r.stdout.splitlines())
    assert bad["input"].endswith("missing.wav") and "error" in bad
    assert good["method"] == "occlusion" and abs(sum(good["weights"]) - 1) < 1e-4
    w0, w1 = good["window"]
    assert 0 <= w0 < w1 <= sf.info(str(wav)).duration + 1e-6 and w1 - w0 == pytest.approx(0.5)
    assert all(w0 <= s < e <= w1 + 1e-6 for s, e in good["positions"])
    assert len(good["grid"]) == len(good["bands"]) and len(good["grid"][0]) == len(good["weights"])
    assert os.path.getsize(good["image"]) > 1000
    r = runner.invoke(app, ["explain", "-m", str(trained_model), str(tmp_path / "missing.wav"), "--out",
                            str(tmp_path / "none")])  # fmt: skip
    assert r.exit_code == 1 and not (tmp_path / "none").exists()  # no input explained: no empty folder left


def test_an_ensemble_is_explained_as_its_members_average(tiny_recipe, tmp_path):
    import attn
    from attn.models.attribution import mean_attribution
    from attn.pipelines.ship.explain import explain_window, members

    result = attn.train(tiny_recipe(epochs=1), ["train.ensemble=2"], out=tmp_path / "ens", device="cpu")
    m = attn.load(result.run_dir)
    nets = members(m.module)
    assert len(nets) == 2 and all(hasattr(n, "backbone") for n in nets)
    x, lengths = torch.from_numpy(tone(440, 0.5, SR))[None], torch.tensor([int(0.5 * SR)])
    both = explain_window(m.module, x, lengths, 0, spectral=True, per_step=False)
    one = [explain_window(n, x, lengths, 0, spectral=True, per_step=False) for n in nets]
    assert torch.allclose(both.weights, mean_attribution(one).weights)
    assert torch.allclose(both.weights.sum(), torch.tensor(1.0), atol=1e-5)
    (rec,) = m.explain([(tone(440, 0.5, SR), SR)])
    assert rec["label"] == m.predict([(tone(440, 0.5, SR), SR)])[0]["label"]  # the whole model's label


def test_word_pieces_are_weighed_as_their_words_and_added_tokens_left_out():
    pytest.importorskip("tokenizers")
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

    from attn.features.config import TokenizerConfig
    from attn.features.encoder_tokenizer import EncoderTokenizer
    from attn.pipelines.ship.explain import by_word

    vocab = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "play", "##ing", "cards", "!"])}
    wp = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    wp.normalizer, wp.pre_tokenizer = normalizers.Lowercase(), pre_tokenizers.BertPreTokenizer()
    specials = [("[CLS]", 2), ("[SEP]", 3)]
    wp.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", special_tokens=specials)
    tok = EncoderTokenizer(TokenizerConfig(level="encoder"), wp.to_str().encode())
    assert tok.tokens("Playing cards!") == ["[CLS]", "play", "##ing", "cards", "!", "[SEP]"]
    words, groups = tok.words("Playing cards!")
    assert words == ["Playing", "cards", "!"] and groups == [None, 0, 0, 1, 2, None]

    weights = torch.tensor([0.5, 0.1, 0.1, 0.1, 0.0, 0.2])  # most on [CLS], as rollout puts it
    layers = torch.rand(1, 2, 4, 6)
    shown, w, per_head = by_word(words, groups, weights, layers)
    assert shown == words and torch.allclose(w, torch.tensor([2 / 3, 1 / 3, 0.0]))
    assert per_head.shape == (2, 4, 3) and torch.allclose(per_head.sum(-1), torch.ones(2, 4))
    assert torch.allclose(per_head[..., 0] * layers[0, ..., 1:5].sum(-1), layers[0, ..., 1:3].sum(-1))


def test_sentencepiece_pieces_are_explained_as_words():
    from attn.features.config import TokenizerConfig
    from attn.features.tokenizers import make_tokenizer

    texts = [f"the {w} played {n} games" for w in ("player", "players", "playground") for n in range(30)]
    tok = make_tokenizer(TokenizerConfig(level="subword", vocab_size=40)).fit(texts)
    text = "the players played"
    words, groups = tok.words(text)
    assert words == text.split() and len(groups) == len(tok.encode(text)) and groups == sorted(groups)
    assert len(tok.encode(text)) > 3  # pieces, merged back into their three words


def test_explain_says_when_the_baseline_carries_most_of_the_prediction(keyword_model, tmp_path):
    """With a blend weight of 1.00 explain showed the network's weights as if they decided the label."""
    import shutil

    import attn
    from attn.pipelines.store.artifact import update_header
    from attn.pipelines.store.container import read_container

    text = _keyword_texts(1, 3)[0][0]
    plain = attn.load(keyword_model).explain([text])[0]
    weight = (read_container(keyword_model / "model.attn", header_only=True).header.get("baseline") or {}).get(
        "blend_weight", 0.0
    )
    assert ("warning" in plain) == (weight >= 0.5)
    copy = shutil.copy(keyword_model / "model.attn", tmp_path / "model.attn")
    baseline = read_container(copy, header_only=True).header.get("baseline") or {"kind": "tfidf+logreg"}
    update_header(copy, baseline={**baseline, "blend_weight": 0.8})  # as a run whose validation chose 0.8
    rec = attn.load(copy).explain([text])[0]
    assert rec["warning"] == ("the model blends its baseline in at weight 0.80: these weights explain the network's "
                              "20% share of its scores only")  # fmt: skip
    assert rec["weights"] == plain["weights"]


def test_occlusion_gives_its_largest_fall_and_warns_when_it_is_next_to_nothing():
    """Shares of falls always show a winner: on a confident quickstart model a stretch's occlusion
    moved log p by 1e-4 and took "100%" of the weight (sweep AH). The record gives the fall."""
    import torch

    from attn.models.attribution import occlusion
    from attn.pipelines.ship.explain import SATURATED, _fall

    class Sure(torch.nn.Module):  # logits that hardly depend on the input: p(0) ~ 1 whatever is occluded
        def forward(self, x, lengths):
            return torch.stack([20 + 1e-3 * x.sum((1, 2)), torch.zeros(len(x))], 1)

    class Reads(Sure):  # class 0 only from the middle steps' first channel
        def forward(self, x, lengths):
            return torch.stack([x[:, 4:6, 0].sum(1) - 8, torch.zeros(len(x))], 1)

    x = torch.zeros(1, 10, 3)
    x[0, 4:6, 0] = 5.0
    n, t = torch.tensor([10]), torch.tensor([0])
    sure, reads = occlusion(Sure(), x, n, t, segments=None), occlusion(Reads(), x, n, t, segments=None)
    assert float(sure.fall[0]) < SATURATED <= float(reads.fall[0])
    assert int(reads.weights[0].argmax()) in (4, 5)
    rec = {"label": "a"}
    _fall(rec, sure)
    assert rec["fall"] < SATURATED and "shares of next to nothing" in rec["_notes"][0]
    rec = {"label": "a"}
    _fall(rec, reads)
    assert rec["fall"] >= SATURATED and "_notes" not in rec


def test_explain_says_when_a_text_was_cut_to_max_len(keyword_model):
    long = " ".join(["the"] * 30 + ["alpha"])  # max_len 16: the keyword is past the cut
    r = runner.invoke(app, ["explain", "-m", str(keyword_model), "--text", long, "--format", "json"])
    assert r.exit_code == 0, r.output
    rec = json.loads(r.stdout)
    assert rec["truncated"] and "cut to the model's max_len of 16 tokens" in rec["warning"]
    assert len(rec["tokens"]) <= 16
