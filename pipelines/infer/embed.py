"""`attn embed`: the vector a model's prediction rests on, per clip, window or text, framed and
batched exactly as `attn predict` frames them (the same readers, windows and batching; only the
model call and the record differ). A clip's vector is the mean of all its windows' vectors, as
the novelty check compares inputs (`novelty.clip_embeddings`); predict's label leaves a
recording's quiet windows (>20 dB under its loudest) out, and `--per-window` marks them "quiet"."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from attn.errors import ConfigError

from .predict import AudioPredictor, heard_in_file
from .predict_text import TextInput, TextPredictor


class _Vectors:
    """A loaded model seen through its embeddings: `window_probs` gives (W, D) vectors, so the
    predictors' framing and batching run unchanged."""

    def __init__(self, loaded) -> None:
        if getattr(loaded, "model", None) is None:  # an ExportedModel: a graph, no torch module
            raise ConfigError("an exported ONNX file only predicts; embed with the .attn model it came from")
        self.loaded, self.recipe, self.labels = loaded, loaded.recipe, loaded.labels
        self.tokenizer = getattr(loaded, "tokenizer", None)
        self.header = loaded.header  # the predictors read a multi-label model's thresholds from it

    def window_probs(self, windows: list) -> np.ndarray:
        return self.loaded.window_embeddings(windows)


def _vector(v: np.ndarray) -> list[float]:
    return [round(float(x), 6) for x in v]


class AudioEmbedder(AudioPredictor):
    """One record per audio input: {"input", "embedding", "duration", "windows"}, plus "frames"
    ({"start", "end", "embedding"} per window) with `per_window`."""

    def __init__(self, loaded, batch_size: int = 64, per_window: bool = False) -> None:
        super().__init__(_Vectors(loaded), batch_size=batch_size, per_frame=per_window)

    def _file_record(self, f, vecs: np.ndarray) -> dict[str, Any]:
        heard = heard_in_file(f)  # (W,) bool: the windows predict's label rests on; the loudest always
        rec: dict[str, Any] = {"input": f.path, "embedding": _vector(vecs[heard].mean(0)),
                               "duration": round(f.seconds, 3), "windows": len(vecs)}  # fmt: skip
        if self.per_frame:
            sr, spans = self.cfg.sample_rate, f.spans
            rec["frames"] = [{"start": round(s / sr, 3), "end": round((s + n) / sr, 3), "embedding": _vector(v),
                              **({} if h else {"quiet": True})}
                             for (s, n), v, h in zip(spans, vecs, heard, strict=True)]  # fmt: skip
        warning = self._warning(f)  # as predict warns of the same input (silent, too short, a low rate)
        if warning:
            rec["warning"] = warning
        return rec


class TextEmbedder(TextPredictor):
    """One record per text: {"input", "embedding", "tokens"} (and "truncated")."""

    def __init__(self, loaded, batch_size: int = 64) -> None:
        super().__init__(_Vectors(loaded), batch_size=batch_size)

    def _result(self, vec: np.ndarray) -> tuple[dict[str, Any], dict[str, Any]]:
        return {"embedding": _vector(vec)}, {}


def embed(loaded, inputs: Iterable, per_window: bool = False, batch_size: int = 64) -> Iterator[dict[str, Any]]:
    """Records for `inputs`: `TextInput`s for a text model, paths or `AudioArray`s for audio."""
    if loaded.recipe.modality == "text":
        if per_window:
            raise ConfigError("per_window is for audio models; a text has one vector")
        return TextEmbedder(loaded, batch_size).predict(x for x in inputs if isinstance(x, TextInput))
    return AudioEmbedder(loaded, batch_size, per_window).predict(list(inputs))


def write_npy(records: Iterable[dict[str, Any]], path) -> list[dict[str, Any]]:
    """Records' embeddings as one (N, D) float32 array in input order, written atomically; a row
    of NaN for an input that failed (so row i is always input i). A record with "frames"
    (--per-window, one input) gives its windows' vectors instead, (W, D). Returns the records,
    vectors dropped."""
    import io

    from ..fsutil import atomic_write_bytes

    seen, rows = [], []
    for rec in records:
        seen.append({k: v for k, v in rec.items() if k not in ("embedding", "frames")})
        if "frames" in rec:  # --per-window of one recording: its windows' vectors (W, D), in time order
            rows += [np.asarray(f["embedding"], dtype=np.float32) for f in rec["frames"]]
        else:
            rows.append(None if rec.get("error") else np.asarray(rec["embedding"], dtype=np.float32))
    dim = next((len(r) for r in rows if r is not None), 0)
    arr = np.stack([r if r is not None else np.full(dim, np.nan, np.float32) for r in rows]) if rows else None
    if arr is not None:
        buf = io.BytesIO()
        np.save(buf, arr, allow_pickle=False)
        atomic_write_bytes(path, buf.getvalue())
    return seen
