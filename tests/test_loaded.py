"""One idea of "a loaded model": the `.attn` model and its ONNX export both satisfy
`pipelines.infer.loaded.Loaded`, the Protocol predict, listen, serve and `attn.Model` are typed
against, and answer `window_probs` alike."""

from __future__ import annotations

import numpy as np
import pytest

from attn.pipelines.infer.loaded import Loaded


def test_the_attn_model_and_its_onnx_export_are_both_loaded_models(trained_model, tmp_path):
    pytest.importorskip("onnxruntime")
    import attn
    from attn.pipelines.infer.exported import ExportedModel

    m = attn.load(trained_model)
    res = m.export(tmp_path / "model.onnx")
    onnx = attn.load(res.path)
    assert isinstance(onnx.loaded, ExportedModel) and not isinstance(m.loaded, ExportedModel)
    assert isinstance(m.loaded, Loaded) and isinstance(onnx.loaded, Loaded)
    # The members the Protocol names answer the same for both: labels, front end, probabilities.
    assert onnx.loaded.labels == m.loaded.labels
    f = m.loaded.recipe.features
    assert onnx.loaded.recipe.modality == m.loaded.recipe.modality == "audio"
    assert onnx.loaded.recipe.features.frame_samples == f.frame_samples
    rng = np.random.default_rng(0)
    windows = [rng.standard_normal(f.frame_samples).astype(np.float32) * 0.1 for _ in range(3)]
    want, got = np.asarray(m.loaded.window_probs(windows)), onnx.loaded.window_probs(windows)
    assert want.shape == got.shape == (3, len(m.labels))
    assert np.allclose(want, got, atol=1e-4)


def test_an_object_without_window_probs_is_not_a_loaded_model():
    """The check is not vacuous: the members are what make a loaded model."""
    from dataclasses import dataclass
    from typing import Any

    @dataclass
    class NoScoring:
        recipe: Any = None
        labels: Any = None
        header: Any = None
        tokenizer: Any = None
        device: Any = "cpu"
        model: Any = None

    assert not isinstance(NoScoring(), Loaded)
    assert not isinstance(object(), Loaded)
