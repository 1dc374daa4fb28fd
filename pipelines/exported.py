"""Predict with an exported ONNX file (`attn export`) through onnxruntime, without PyTorch.

`load_exported(path)` gives an `ExportedModel`, which answers what `attn predict` asks of a
loaded model: the front-end settings and labels (from the file's metadata), the tokenizer of a
text model (rebuilt from its stored state), and `window_probs(windows)`, one onnxruntime call per
group of same-shaped windows. Decoding, resampling and framing are attn's own numpy code
(soundfile + soxr), so records equal those of the `.attn` model to float rounding. Nothing here
imports torch: a cold `attn predict --model model.onnx` skips its ~2 s import.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from attn.errors import ArtifactError, ConfigError
from attn.features.config import AUDIO_EXTENSIONS, AudioFeatures, TextFeatures


@dataclass(frozen=True)
class ExportedData:
    extensions: tuple[str, ...] = AUDIO_EXTENSIONS  # what a folder of inputs counts as audio


@dataclass(frozen=True)
class ExportedRecipe:
    """What an exported file keeps of its recipe: the front end and which files are audio; the
    model section stays a plain dict (validating it would import the model families, and torch)."""

    data: ExportedData
    features: AudioFeatures | TextFeatures
    model: dict[str, Any]

    @property
    def modality(self) -> str:
        return "text" if isinstance(self.features, TextFeatures) else "audio"


@dataclass
class ExportedModel:
    session: Any  # onnxruntime.InferenceSession
    recipe: ExportedRecipe
    labels: list[str]
    header: dict[str, Any]  # the metadata, JSON values decoded
    tokenizer: Any = None
    device: str = "cpu"
    model: Any = None  # no torch module

    def window_probs(self, windows: list[np.ndarray]) -> np.ndarray:
        """Class probabilities (W, K) float32, in order. The graph takes rows of one shape
        (audio: every row is a whole window), so same-shaped windows are stacked and run
        together; no padding enters the graph."""
        out = np.zeros((len(windows), len(self.labels)), dtype=np.float32)
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, w in enumerate(windows):
            groups.setdefault(w.shape, []).append(i)
        for shape, idx in groups.items():
            x = np.stack([windows[i] for i in idx])
            if self.recipe.modality == "audio":
                feeds = {"waveform": x.astype(np.float32, copy=False)}
            else:
                feeds = {"ids": x.astype(np.int64, copy=False), "lengths": np.full(len(idx), shape[0], np.int64)}
            out[idx] = self.session.run(None, feeds)[0]
        return out


def load_exported(path: str | Path) -> ExportedModel:
    """An ONNX file written by `attn export`, ready for `AudioPredictor` / `TextPredictor`."""
    session, meta = _open(Path(path))
    feats = meta["features"]
    schema = TextFeatures if feats.get("kind") == "text" else AudioFeatures
    features = schema.model_validate(feats)
    data = ExportedData(tuple(meta.get("data", {}).get("extensions", AUDIO_EXTENSIONS)))
    tokenizer = None
    if isinstance(features, TextFeatures):
        from attn.features.encoder_tokenizer import restore_tokenizer

        blob = meta.get("tokenizer_model_base64")
        blob = base64.b64decode(blob) if blob else None
        tokenizer = restore_tokenizer(features.tokenizer, meta["tokenizer"], blob)
    recipe = ExportedRecipe(data, features, meta.get("model", {}))
    return ExportedModel(session, recipe, list(meta["labels"]), meta, tokenizer)


def exported_info(path: str | Path) -> dict[str, Any]:
    """What `attn info` shows of an exported file: its metadata, shaped like a model header."""
    _, meta = _open(Path(path))
    shown = {k: v for k, v in meta.items() if k not in ("features", "model", "data", "tokenizer_model_base64")}
    return {"path": str(path), "format": "onnx", **shown, "recipe": {"features": meta["features"],
                                                                       "model": meta.get("model", {})}}  # fmt: skip


def _open(path: Path) -> tuple[Any, dict[str, Any]]:
    """(onnxruntime session, the metadata with JSON values decoded)."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise ConfigError(f"{path}: running an ONNX model needs onnxruntime: pip install 'attn[export]'") from None
    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as e:  # noqa: BLE001 - onnxruntime raises its own exception types
        raise ArtifactError(f"{path}: not a readable ONNX model ({str(e).splitlines()[0][:200]})") from None
    raw = session.get_modelmeta().custom_metadata_map
    if "labels" not in raw or "features" not in raw:
        raise ArtifactError(f"{path}: an ONNX model without attn's metadata (export it with `attn export`)")
    try:
        meta = {k: v if k in _PLAIN else json.loads(v) for k, v in raw.items()}
    except ValueError as e:
        raise ArtifactError(f"{path}: damaged attn metadata ({e})") from None
    return session, meta


_PLAIN = ("attn_version", "modality", "tokenizer_model_base64")  # metadata values that are not JSON
