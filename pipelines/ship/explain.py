"""`attn explain`: what a trained model's prediction rests on, per input position.

One record per input, in order (an input that cannot be read gives {"input", "error"}):

    text:  {"input", "label", "score", "method", "tokens", "weights", ["layers"], ["truncated"]}
           (tokens: the words of the text, a word's pieces summed into it, special tokens left out)
    audio: {"input", "label", "score", "method", "window": [start, end] s, "positions": [[start,
            end] s, ...], "weights", ["grid", "bands"], ["layers"]}

`weights` (one per token or position) are >= 0 and sum to 1; `layers` (transformers) holds, per
layer and head, the pooled vector's (the class token's) attention over the same positions;
`grid` (CNN occlusion, spectrogram patches) weighs (channel band x position) cells (`bands`:
[lo, hi) feature channels, e.g. mel bins): for patches it splits the weights; for occlusion each
cell is occluded on its own and the grid sums to 1 on its own. Occlusion records add `fall`, the
largest fall in log p(label) one position's occlusion causes: under `SATURATED` the weights are
shares of next to nothing (a model certain of its answer whatever is occluded), and a warning
says so. For a recording longer than one window, the window
that scores the file's label highest is explained. The label explained is the top-scoring one, or
`--label NAME`; for a multi-label model the weights are of that label's own sigmoid score and the
record also lists every predicted label ("labels"). An ensemble's members are explained one by
one and their weights averaged; a baseline blended into the model's probabilities is not
explained (the label is still the blended model's). The method is in `attn.models.attribution`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from attn.errors import InputError

from ..infer.inference import heard_windows, softmax, window_level_db

SEGMENTS = 24  # occlusion: at most this many stretches of a window's time axis
BANDS = 6  # occlusion of spectrogram inputs: frequency bands (x SEGMENTS model calls)
SPECTRAL = ("logmel", "spectrogram")  # audio features whose channels are frequencies
BATCH = 32  # windows per model call while scoring a recording
# A fall in log p under this (p moves by under 1%) is no evidence: on the quickstart model 16 of
# 48 clips fell by under 1e-3, and their weights were noise shown as one clear stretch (sweep AH)
SATURATED = 0.01


def members(model) -> list:
    """The networks a model's prediction comes from: an ensemble's members, each without the
    linear baseline a `Blend` mixes in (the baseline reads n-gram counts or MFCC statistics,
    not positions, so only the networks are explained)."""
    from attn.models.calibrated import Tempered
    from attn.models.ensemble import Ensemble
    from attn.models.linear import Blend

    if isinstance(model, Tempered):
        return members(model.inner)
    if isinstance(model, Blend):
        return members(model.network)
    if isinstance(model, Ensemble):
        return [n for m in model.members for n in members(m)]
    return [model]


def explain_window(model, x: torch.Tensor, lengths: torch.Tensor, target: int, spectral: bool, per_step: bool,
                   sigmoid: bool = False):  # fmt: skip
    """Attribution of class `target` for one padded input x (1, N) (samples or token ids),
    averaged over an ensemble's members; `sigmoid`: of the target's own sigmoid (multi-label)."""
    from attn.models.attribution import attribute, mean_attribution

    parts = []
    for m in members(model):
        feats, flen = m.features(x, lengths)  # (1, F, T), (1,)
        parts.append(attribute(m.backbone, feats.transpose(1, 2), flen, torch.tensor([target]),
                               segments=None if per_step else SEGMENTS, bands=BANDS if spectral else None,
                               sigmoid=sigmoid))  # fmt: skip
    return mean_attribution(parts)


class Explainer:
    """Explain inputs with a loaded model (see `artifact.load_model`); `out`: a folder for one
    PNG per input (its path goes in the record as "image"); `label`: explain this label instead of
    the top-scoring one (a multi-label model's records also list the labels predict gives, any of
    which can be explained so)."""

    def __init__(self, loaded, out: str | None = None, label: str | None = None) -> None:
        from attn.errors import ConfigError

        self.loaded = loaded
        self.multi = bool(loaded.recipe.data.multi_label)
        if label is not None and label not in loaded.labels:
            raise ConfigError(f"--label {label!r}: not one of the model's labels ({', '.join(loaded.labels)})")
        self.target = None if label is None else loaded.labels.index(label)
        self.out = None if out is None else Path(out)
        # the blended baseline is not explained: when it carries most of the prediction, say so
        weight = float(((getattr(loaded, "header", None) or {}).get("baseline") or {}).get("blend_weight") or 0.0)
        self.blend_note = None
        if weight >= 0.5:
            self.blend_note = (f"the model blends its baseline in at weight {weight:.2f}: these weights explain the "
                               f"network's {1 - weight:.0%} share of its scores only")  # fmt: skip
        if self.out is not None and self.out.exists() and not self.out.is_dir():
            from attn.errors import OutputError

            raise OutputError(f"--out {self.out}: cannot write (not a directory)")

    def explain(self, inputs: Iterable) -> Iterator[dict[str, Any]]:
        text = self.loaded.recipe.modality == "text"
        for i, item in enumerate(inputs):
            try:
                rec, figure = self._text(item) if text else self._audio(item)
            except InputError as e:
                name = item.input if text else getattr(item, "name", item)
                yield {"input": name, "error": str(e)}
                continue
            for note in (self.blend_note, *rec.pop("_notes", ())):
                if note is not None:
                    rec["warning"] = f"{rec['warning']}; {note}" if rec.get("warning") else note
            if self.out is not None:
                from ..fsutil import make_dirs
                from ..infer import plots

                make_dirs(self.out)  # at the first picture: a run whose every input failed leaves no folder
                path = self.out / f"{i + 1:03d}-{_slug(rec['input'])}.png"
                plots.write_png(path, plots.explain_figure(rec, **figure))
                rec["image"] = str(path)
            yield rec

    def _probs(self, logits: np.ndarray) -> np.ndarray:
        """Class probabilities of logits (B, K): softmax, or each label's sigmoid (multi-label,
        where the explained label is the top-scoring one)."""
        if self.multi:
            from ..infer.multilabel import sigmoid

            return sigmoid(logits)
        return softmax(logits)

    def _tags(self, scores: np.ndarray) -> dict[str, Any]:
        """A multi-label model's record also names every label predict gives the input (scores
        (K,) at the model's thresholds): {"labels": [...]}; nothing for a single-label model."""
        if not self.multi:
            return {}
        from ..infer.multilabel import chosen_labels, model_thresholds

        return {"labels": chosen_labels(scores, self.loaded.labels, model_thresholds(self.loaded))}

    # text ---------------------------------------------------------------------------------------
    def _text(self, item) -> tuple[dict[str, Any], dict[str, Any]]:
        from attn.features.tokenizers import cut_to

        from ..data.text import model_ids

        if item.error is not None:
            raise InputError(item.error)
        if item.text is None or not item.text.strip():
            raise InputError(f"{item.input if item.show_text else 'input'}: empty text")
        tok, max_len = self.loaded.tokenizer, self.loaded.recipe.features.tokenizer.max_len
        ids, n = tok.encode_cut(item.text, max_len)
        x = model_ids(ids, max_len, tok)
        words, groups = tok.words(item.text) if n else (["<unk>"], [0])
        dev = self.loaded.device
        xb, lengths = torch.from_numpy(x[None]).to(dev), torch.tensor([len(x)], device=dev)
        with torch.no_grad():
            probs = self._probs(self.loaded.model(xb, lengths).float().cpu().numpy())[0]
        k = int(probs.argmax()) if self.target is None else self.target
        a = explain_window(self.loaded.model, xb, lengths, k, spectral=False, per_step=True, sigmoid=self.multi)
        rec: dict[str, Any] = {"input": item.input}
        if item.show_text:
            rec["text"] = item.text
        tokens, weights, layers = by_word(words, cut_to(groups, len(x), tok.end_token), a.weights[0], a.layers)
        rec.update(label=self.loaded.labels[k], score=round(float(probs[k]), 6), **self._tags(probs),
                   method=a.method, tokens=tokens, weights=_round(weights))  # fmt: skip
        if layers is not None:
            rec["layers"] = _round(layers)
        _fall(rec, a)
        if n > max_len:
            rec["truncated"] = True
            # predict says it on stderr; the text table and the picture showed the first max_len tokens unmarked
            rec.setdefault("_notes", []).append(f"the text was cut to the model's max_len of {max_len} tokens: only "
                                                "those are weighed")  # fmt: skip
        return rec, {}

    # audio --------------------------------------------------------------------------------------
    def _audio(self, item) -> tuple[dict[str, Any], dict[str, Any]]:
        from attn.features.audio import from_array, iter_windows, stream_audio

        from ..data.batching import pad_rows
        from ..infer.predict import SILENT_PEAK, AudioArray, heard_peak, input_warning

        f = self.loaded.recipe.features
        if isinstance(item, AudioArray):
            name, wave = item.name, from_array(item.samples, item.sample_rate, f.sample_rate, item.name)
            rate = item.sample_rate

            def windows():
                return iter_windows(iter([wave]), f.frame_samples, f.hop_samples)
        else:
            name = str(item)
            if Path(name).is_dir():
                raise InputError(f"{name}: directory contains no audio files")  # as predict says it
            rate = _file_rate(name)

            def windows():  # streamed twice (scores, then the chosen window): memory stays flat
                return iter_windows(stream_audio(name, f.sample_rate), f.frame_samples, f.hop_samples)

        dev = self.loaded.device
        probs, batch, total, peak, loudness = [], [], 0, 0.0, []

        def run() -> None:
            x = torch.from_numpy(pad_rows([w[:n] for w, n in batch])).to(dev)
            lengths = torch.tensor([n for _, n in batch], device=dev)
            with torch.no_grad():
                probs.extend(self._probs(self.loaded.model(x, lengths).float().cpu().numpy()))
            batch.clear()

        for start, w, n in windows():
            total = max(total, start + n)  # samples at the model's rate
            peak = max(peak, heard_peak(w, n, f)) if peak < SILENT_PEAK else peak
            batch.append((w, n))
            loudness.append(window_level_db(w[:n]))
            if len(batch) == BATCH:
                run()
        if batch:
            run()
        if not probs:
            raise InputError(f"{name}: no audio windows")
        p = np.stack(probs)  # (W, K)
        mean = p[heard_windows(np.asarray(loudness), np.zeros(len(p), dtype=np.int64), 1)].mean(0)  # as predict
        k = int(mean.argmax()) if self.target is None else self.target  # predict's label: the mean's top
        best = int(p[:, k].argmax())
        start, w, n = next(x for i, x in enumerate(windows()) if i == best)
        wave = w[:n]
        x = torch.from_numpy(wave[None]).to(dev)
        a = explain_window(self.loaded.model, x, torch.tensor([len(wave)], device=dev), k,
                           spectral=f.kind in SPECTRAL, per_step=False, sigmoid=self.multi)  # fmt: skip
        sr = f.sample_rate
        step = 1 if f.kind == "waveform" else f.hop_length  # samples per backbone input step
        spans = (start + (a.spans.numpy() * step).clip(0, len(wave))) / sr  # seconds in the file
        rec: dict[str, Any] = {
            "input": name,
            "label": self.loaded.labels[k],
            "score": round(float(mean[k]), 6),
            **self._tags(mean),
            "method": a.method,
            "window": [round(start / sr, 4), round((start + len(wave)) / sr, 4)],
            "positions": np.round(spans, 4).tolist(),
            "weights": _round(a.weights[0]),
        }
        if a.grid is not None:
            rec["grid"], rec["bands"] = _round(a.grid[0]), a.bands.tolist()
        if a.layers is not None:
            rec["layers"] = _round(a.layers[0])
        _fall(rec, a)
        warning = input_warning(total / sr, rate, f, peak)  # as `attn predict` warns of the same input
        if warning:
            rec["warning"] = warning
        return rec, {"logmel": display_logmel(wave, f), "seconds": len(wave) / sr,
                     "channels_are_mels": f.kind == "logmel"}  # fmt: skip


def _fall(rec: dict[str, Any], a) -> None:
    """An occlusion record's `fall`, and the note when it is too small to mean anything."""
    if a.fall is None:
        return
    rec["fall"] = float(f"{float(a.fall[0]):.4g}")
    if rec["fall"] < SATURATED:
        rec.setdefault("_notes", []).append(
            f"occluding any one part lowers log p({rec['label']}) by at most {rec['fall']:.2g}: the model is as sure "
            "without each part, so these weights are shares of next to nothing"
        )


def by_word(words: list[str], groups: list[int | None], weights: torch.Tensor, layers: torch.Tensor | None):
    """Token weights (T,) and per-head attention (1, L, H, T) summed over each word's tokens (a
    word piece's weight is its word's), and renormalised without the tokens a tokenizer adds
    itself (an encoder's [CLS]/[SEP]: attention rests on them whatever the text says).
    groups (T,): each token's word index, or None. -> (words seen, (W,), (L, H, W) or None)."""
    keep = sorted({g for g in groups if g is not None})
    if not keep:  # nothing but added tokens (cannot happen for a non-empty text): show them as they are
        return words, weights, None if layers is None else layers[0]
    t = len(groups)
    column = {g: j for j, g in enumerate(keep)}
    member = torch.zeros(t, len(keep), device=weights.device)  # (T, W): token -> its word
    for i, g in enumerate(groups):
        if g is not None:
            member[i, column[g]] = 1.0
    w = weights[:t].float() @ member
    w = w / w.sum() if w.sum() > 0 else torch.full_like(w, 1 / len(keep))
    out = None
    if layers is not None:
        out = layers[0, ..., :t].float() @ member  # (L, H, W)
        out = out / out.sum(-1, keepdim=True).clamp_min(1e-30)
    return [words[g] for g in keep], w, out


def display_logmel(wave: np.ndarray, features) -> np.ndarray:
    """The log-mel image of a window (n_mels, frames) in dB, with the recipe's STFT and mel settings
    (also for a model that reads another kind of feature)."""
    from attn.features.transforms import LogMel

    with torch.no_grad():
        return LogMel.from_config(features)(torch.from_numpy(np.ascontiguousarray(wave))).numpy()


def _file_rate(path: str) -> int:
    """The file's own sample rate (0 when its header does not say: the warning is then skipped)."""
    from attn.features.audio import audio_info

    if not Path(path).is_file():  # a pipe is read once, by the decoder
        return 0
    try:
        return int(audio_info(path, path).sample_rate)
    except InputError:  # decoding reports the problem; this is only for a warning
        return 0


def _round(t: torch.Tensor) -> list:
    return np.round(t.detach().cpu().numpy().astype(np.float64), 6).tolist()


def _slug(name: str) -> str:
    stem = Path(name).stem if "/" in name or "." in name[-6:] else name
    return re.sub(r"[^A-Za-z0-9_-]+", "_", stem).strip("_")[:40] or "input"
