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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ValidationError

from attn.errors import ArtifactError, ConfigError
from attn.features.config import AUDIO_EXTENSIONS, AudioFeatures, TextFeatures
from attn.schema import describe_validation_error


@dataclass(frozen=True)
class ExportedData:
    extensions: tuple[str, ...] = AUDIO_EXTENSIONS  # what a folder of inputs counts as audio
    multi_label: bool = False  # the graph gives each label's sigmoid; meta "thresholds" decide
    text_column: str = "text"  # a CSV/JSONL given to predict: the column its texts are in


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
    """An exported ONNX model, loaded: a `loaded.Loaded`, as the `.attn` model is."""

    session: Any  # onnxruntime.InferenceSession
    recipe: ExportedRecipe
    labels: list[str]
    header: dict[str, Any]  # the metadata, JSON values decoded
    tokenizer: Any = None
    device: str = "cpu"
    model: Any = None  # no torch module
    novelty: Any = None  # attn.models.novelty.Novelty: the graph's "embedding" output is checked against it
    _last: tuple = field(default=(None, None), init=False, repr=False)  # (windows, embeddings): see window_embeddings

    def window_probs(self, windows: list[np.ndarray]) -> np.ndarray:
        """Class probabilities (W, K) float32, in order. The graph takes rows of one shape
        (audio: every row is a whole window), so same-shaped windows are stacked and run
        together; no padding enters the graph."""
        probs, emb = self._run(windows)
        self._last = (windows, emb)
        return probs

    def window_embeddings(self, windows: list[np.ndarray]) -> np.ndarray:
        """Each window's vector (W, D) float32 (a model with a novelty check). Predictors ask for
        the probabilities and then the embeddings of the same windows: the graph gives both in
        one run, so the second call reuses the first's."""
        last, emb = self._last
        self._last = (None, None)
        return emb if last is windows and emb is not None else self._run(windows)[1]

    def _run(self, windows: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray | None]:
        probs = np.zeros((len(windows), len(self.labels)), dtype=np.float32)
        emb = None if self.novelty is None else np.zeros((len(windows), self.novelty.bank.shape[1]), np.float32)
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, w in enumerate(windows):
            groups.setdefault(w.shape, []).append(i)
        for shape, idx in groups.items():
            x = np.stack([windows[i] for i in idx])
            if self.recipe.modality == "audio":
                feeds = {"waveform": x.astype(np.float32, copy=False)}
            else:
                feeds = {"ids": x.astype(np.int64, copy=False), "lengths": np.full(len(idx), shape[0], np.int64)}
            out = self.session.run(None, feeds)
            probs[idx] = out[0]
            if emb is not None:
                emb[idx] = out[1]
        return probs, emb


def only_predicts(path: str | Path, command: str) -> ArtifactError:
    """The one refusal of every command but predict and info given an exported file: the graph
    maps inputs to probabilities, with no torch module, features or training state to work on."""
    return ArtifactError(f"{path}: {command} needs the .attn model (an exported ONNX file only predicts)")


def load_exported(path: str | Path) -> ExportedModel:
    """An ONNX file written by `attn export`, ready for `AudioPredictor` / `TextPredictor`. The
    metadata is checked as a model file's header would be: a file whose metadata does not fit
    its graph (or is not attn's) is refused as damaged, before any input is read."""
    path = Path(path)
    session, meta = _open(path)
    try:
        return _model(session, meta)
    except ValidationError as e:
        why = describe_validation_error(e, _schema(meta), ("features",))
        raise ArtifactError(f"{path}: damaged attn metadata ({why})") from None
    except (ValueError, TypeError, KeyError) as e:  # binascii.Error is a ValueError
        raise ArtifactError(f"{path}: damaged attn metadata ({e})") from None


MAX_WINDOW_SAMPLES = 2**25  # 128 MB of float32 per window: far past any trained window, short of a MemoryError
_GRAPH_INPUTS = {"audio": ["waveform"], "text": ["ids", "lengths"]}


def _schema(meta: dict[str, Any]) -> type:
    feats = meta.get("features")
    return TextFeatures if isinstance(feats, dict) and feats.get("kind") == "text" else AudioFeatures


def _model(session, meta: dict[str, Any]) -> ExportedModel:
    feats = meta["features"]
    if not isinstance(feats, dict):
        raise ValueError(f"features is a {type(feats).__name__}, not a mapping")
    features = _schema(meta).model_validate(feats)
    labels = meta["labels"]
    if not isinstance(labels, list) or not labels or not all(isinstance(x, str) for x in labels):
        raise ValueError(f"labels must be a non-empty list of strings, got {_short(labels)}")
    modality = "text" if isinstance(features, TextFeatures) else "audio"
    names = [i.name for i in session.get_inputs()]
    if names != _GRAPH_INPUTS[modality]:
        raise ValueError(f"the graph's inputs {names} are not those of an attn {modality} model "
                         f"{_GRAPH_INPUTS[modality]}")  # fmt: skip
    outputs = session.get_outputs()
    classes = outputs[0].shape[-1] if outputs and outputs[0].shape else None
    if isinstance(classes, int) and classes != len(labels):
        raise ValueError(f"{len(labels)} labels for a graph of {classes} outputs")
    if isinstance(features, AudioFeatures):
        if not features.resolved:
            raise ValueError("features hold unresolved values (auto or milliseconds)")
        if features.frame_samples > MAX_WINDOW_SAMPLES:
            secs, rate = features.frame_seconds, features.sample_rate
            raise ValueError(f"a window of {features.frame_samples} samples (frame_seconds {secs:g} at {rate} Hz); "
                             f"at most {MAX_WINDOW_SAMPLES}")  # fmt: skip
    extensions = (meta.get("data") or {}).get("extensions", AUDIO_EXTENSIONS)
    if not isinstance(extensions, (list, tuple)) or not all(isinstance(x, str) for x in extensions):
        raise ValueError(f"data.extensions must be a list of strings, got {_short(extensions)}")
    tokenizer = None
    if isinstance(features, TextFeatures):
        from attn.features.encoder_tokenizer import restore_tokenizer

        blob = meta.get("tokenizer_model_base64")
        blob = base64.b64decode(blob, validate=True) if blob else None
        tokenizer = restore_tokenizer(features.tokenizer, meta["tokenizer"], blob)
    model = meta.get("model", {})
    multi = bool((meta.get("data") or {}).get("multi_label"))
    th = meta.get("thresholds")
    if (
        multi
        and th is not None
        and (
            not isinstance(th, list)
            or len(th) != len(labels)
            or not all(isinstance(t, (int, float)) and not isinstance(t, bool) and 0 <= t <= 1 for t in th)
        )
    ):
        raise ValueError(f"thresholds must be {len(labels)} numbers within [0, 1], one per label, got {_short(th)}")
    recipe = ExportedRecipe(ExportedData(tuple(extensions), multi), features, model if isinstance(model, dict) else {})
    return ExportedModel(session, recipe, list(labels), meta, tokenizer, novelty=_novelty(meta, outputs))


def _novelty(meta: dict[str, Any], outputs: list) -> Any:
    """The novelty check an export carries (`novelty` and its bank in the metadata, the graph's
    second output "embedding"), or None. A file with half of it is damaged (ValueError)."""
    info, blob = meta.get("novelty"), meta.get("novelty_bank_base64")
    if info is None and blob is None:
        return None
    if not isinstance(info, dict) or not blob:
        raise ValueError("novelty without its bank (or a bank without novelty)")
    rows, dim = int(info["bank_rows"]), int(info["bank_dim"])
    bank = np.frombuffer(base64.b64decode(blob, validate=True), dtype="<f2")
    if bank.size != rows * dim:
        raise ValueError(f"a novelty bank of {bank.size} values for {rows} x {dim}")
    names = [o.name for o in outputs]
    width = outputs[1].shape[-1] if len(outputs) > 1 and outputs[1].shape else None
    if names[1:2] != ["embedding"] or (isinstance(width, int) and width != dim):
        raise ValueError(f"a novelty bank of width {dim} for graph outputs {names}")
    from attn.models.novelty import Novelty

    return Novelty(bank.reshape(rows, dim).astype(np.float32), info["min_similarity"], info["neighbors"], info)


def _short(value: Any) -> str:
    text = json.dumps(value)
    return f"{type(value).__name__} {text[:60]}{'…' if len(text) > 60 else ''}"


def exported_info(path: str | Path) -> dict[str, Any]:
    """What `attn info` shows of an exported file: its metadata, shaped like a model header
    (checked as `load_exported` checks it: info shows no labels a prediction would not use)."""
    meta = load_exported(path).header
    hidden = ("features", "model", "data", "tokenizer_model_base64", "novelty_bank_base64")
    shown = {k: v for k, v in meta.items() if k not in hidden}
    return {"path": str(path), "format": "onnx", **shown, "recipe": {"features": meta["features"],
            "model": meta.get("model", {}), "data": meta.get("data", {})}}  # fmt: skip


def _open(path: Path) -> tuple[Any, dict[str, Any]]:
    """(onnxruntime session, the metadata with JSON values decoded)."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise ConfigError(f"{path}: running an ONNX model needs onnxruntime: pip install 'attn[export]'") from None
    try:
        opts = ort.SessionOptions()
        # Errors only: onnxruntime's warnings (about the graph's optimisation, in colour even on a
        # file or pipe) tell a user of `attn predict` nothing they can act on.
        opts.log_severity_level = 3
        session = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as e:  # noqa: BLE001 - onnxruntime raises its own exception types
        raise ArtifactError(f"{path}: not a readable ONNX model ({str(e).splitlines()[0][:200]})") from None
    raw = session.get_modelmeta().custom_metadata_map
    if "labels" not in raw or "features" not in raw:
        raise ArtifactError(f"{path}: an ONNX model without attn's metadata (export it with `attn export`)")
    try:
        meta = decode_metadata(raw)
    except ValueError as e:
        raise ArtifactError(f"{path}: damaged attn metadata ({e})") from None
    return session, meta


# The metadata codec of an exported file (ONNX metadata_props, TorchScript's attn.json): string
# keys to string values, JSON except these, which are stored as they are.
PLAIN = ("attn_version", "attn_commit", "modality", "tokenizer_model_base64", "novelty_bank_base64")


def encode_metadata(values: dict[str, Any]) -> dict[str, str]:
    """Plain values -> the strings an exported file stores (`attn export`)."""
    return {k: v if k in PLAIN else json.dumps(v) for k, v in values.items()}


def decode_metadata(raw: dict[str, str]) -> dict[str, Any]:
    """The strings an exported file stores -> values (ValueError when one is not JSON)."""
    return {k: v if k in PLAIN else json.loads(v) for k, v in raw.items()}
