"""Test helpers: generated audio, a tiny ONNX graph, the one-line error check."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf


def tone(freq: float, seconds: float, sr: int, amp: float = 0.3, seed: int = 0) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    rng = np.random.default_rng(seed)
    return (amp * np.sin(2 * np.pi * freq * t) + 0.01 * rng.standard_normal(t.size)).astype(np.float32)


def write_wav(path: Path, audio: np.ndarray, sr: int, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), audio, sr, **kw)
    return path


def assert_padded_batch_equals_single_items(model, x, lens, tag) -> None:
    """Every registered model's promise: an item's logits are the same alone and inside a padded
    batch. Three training-mode passes first move batch-norm statistics off their initial values."""
    import torch

    model.train()
    for _ in range(3):
        model(x, lens)
    model.eval()
    with torch.no_grad():
        together = model(x, lens)
        for i, n in enumerate(lens.tolist()):
            alone = model(x[i : i + 1, :n], lens[i : i + 1])
            assert torch.allclose(together[i], alone[0], atol=1e-5), (tag, n)


# Labels matplotlib would read as mathtext (one invalid, one valid), Rich as markup, a terminal
# as an escape sequence (clear the screen), and one a "label:score" list could not split.
ODD_LABELS = ["[/]", "$\\frac{1}{2}$", "$\\undefinedcmd{x}$", "[red]x[/red]", "wipe\x1b[2Jout", 'say "a: b"']
WORDS = ["alpha beta", "gamma delta", "epsilon zeta", "eta theta", "iota kappa", "lambda mu"]
ODD_TEXT_RECIPE = """\
data: {train: t.csv, val_fraction: 0.2, test_fraction: 0.2}
features: {kind: text, embed_dim: 16, tokenizer: {level: word, max_len: 16}}
model: {name: cnn1d, filters: 8}
train: {epochs: 1, batch_size: 16, seed: 0}
"""


def one_line_error(r, code: int, *words: str) -> str:
    """The project's standard for a refusal: exit `code`, one line `error: ...` on stderr holding
    each of `words`, and no internal error. Returns the line."""
    err = r.stderr.strip()
    assert r.exit_code == code, r.output
    assert err.count("\n") == 0 and err.startswith("error: ") and "internal error" not in err, err
    for w in words:
        assert w in err, err
    return err


def tiny_onnx(path: Path, meta: dict[str, str], inputs=("waveform",), classes: int = 3, unused: bool = False) -> Path:
    """A tiny graph (mean of the samples times a row of weights, softmax) with `meta` attached;
    `unused`: also an initializer no node reads (onnxruntime warns that it removes it)."""
    import pytest

    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper, numpy_helper

    w = [numpy_helper.from_array(np.linspace(-1, 1, classes, dtype=np.float32)[None], "w")]
    w += [numpy_helper.from_array(np.zeros(3, dtype=np.float32), "unused")] if unused else []
    nodes = [helper.make_node("ReduceMean", [inputs[0]], ["m"], axes=[1], keepdims=1),
             helper.make_node("MatMul", ["m", "w"], ["z"]),
             helper.make_node("Softmax", ["z"], ["probabilities"], axis=1)]  # fmt: skip
    ins = [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["batch", "samples"]) for n in inputs]
    out = helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", classes])
    model = helper.make_model(helper.make_graph(nodes, "g", ins, [out], w), opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    for k, v in meta.items():
        model.metadata_props.add(key=k, value=v)
    onnx.save(model, str(path))
    return path
