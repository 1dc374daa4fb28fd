"""Model files written by an earlier attn still load and predict exactly as they did.

tests/fixtures/artifacts_v0_1 holds tiny models written by attn 0.1.0 before the layering change,
the inputs they were run on, and what that attn printed (its README says how they were made).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from attn.cli.app import app

FIXTURES = Path(__file__).parent / "fixtures" / "artifacts_v0_1"
runner = CliRunner()


@pytest.fixture
def here(tmp_path, monkeypatch) -> Path:
    """A copy of the fixtures as the working directory: records name inputs as they were given."""
    d = tmp_path / "fx"
    shutil.copytree(FIXTURES, d)
    monkeypatch.chdir(d)
    return d


def _records(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _close(got, want, path="record"):
    """Equal records; scores may differ in the last printed digit (float rounding)."""
    if isinstance(want, dict):
        assert isinstance(got, dict) and got.keys() == want.keys(), (path, got, want)
        for k in want:
            _close(got[k], want[k], f"{path}.{k}")
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), (path, got, want)
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            _close(g, w, f"{path}[{i}]")
    elif isinstance(want, float):
        assert got == pytest.approx(want, abs=2e-6), path
    else:
        assert got == want, path


@pytest.mark.parametrize(
    "name, args",
    [
        ("audio_cnn", ["sine.wav", "chirp_long.wav", "--top-k", "6", "--per-frame"]),
        ("audio_ensemble", ["sine.wav", "chirp_long.wav", "--top-k", "6"]),
        ("text_transformer", ["texts.txt", "--top-k", "3"]),
    ],
)
def test_old_model_files_predict_what_they_predicted(here, name, args):
    r = runner.invoke(app, ["predict", "-m", f"{name}.attn", *args, "--format", "jsonl"])
    assert r.exit_code == 0, r.output
    want = _records((here / f"{name}.expected.jsonl").read_text())
    _close(_records(r.stdout), want)


def test_old_text_model_tokenizes_as_it_did(here):
    r = runner.invoke(app, ["tokenize", "-m", "text_transformer.attn", "--ids", "-"],
                      input=(here / "texts.txt").read_text())  # fmt: skip
    assert r.exit_code == 0, r.output
    assert r.stdout == (here / "text_transformer.tokens.txt").read_text()


def test_old_model_files_give_the_same_logits(here):
    import torch

    from attn.features.audio import iter_windows, stream_audio
    from attn.pipelines.data.batching import pad_rows
    from attn.pipelines.data.text import model_ids
    from attn.pipelines.store.artifact import load_model

    want = json.loads((here / "logits.expected.json").read_text())
    for name in ("audio_cnn", "audio_ensemble"):
        m = load_model(f"{name}.attn")
        f = m.recipe.features
        for wav, logits in want[name].items():
            wins = list(iter_windows(stream_audio(wav, f.sample_rate), f.frame_samples, f.hop_samples))
            x = torch.from_numpy(np.stack([w for _, w, _ in wins]))
            with torch.no_grad():
                got = m.model(x, torch.tensor([n for _, _, n in wins]))
            np.testing.assert_allclose(got.numpy(), np.array(logits), atol=1e-6, err_msg=f"{name} {wav}")
    m = load_model("text_transformer.attn")
    parts = [
        model_ids(m.tokenizer.encode_array(t), 8, m.tokenizer) for t in (here / "texts.txt").read_text().splitlines()
    ]
    with torch.no_grad():
        got = m.model(torch.from_numpy(pad_rows(parts)), torch.tensor([len(p) for p in parts]))
    np.testing.assert_allclose(got.numpy(), np.array(want["text_transformer"]["texts"]), atol=1e-6)
