"""The model object of the Python API: `attn.load` gives a `Model` (an `.attn` file, a run
directory, or an ONNX file from `attn export`), which predicts, embeds, explains, listens and
finds sound events, as the commands of those names do."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from attn.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover - names for annotations only
    from attn.pipelines.infer.loaded import Loaded
    from attn.pipelines.recipe.config import Recipe
    from attn.pipelines.ship.export import ExportResult


def load(model: str | os.PathLike | None = None, device: Any = "cpu") -> Model:
    """Load a trained model: a model file or a run directory (its model.attn); None means
    $ATTN_MODEL, else runs/latest. `device`: "cpu", "auto", "cuda[:N]" or a torch.device.
    The file's checksum is verified and nothing in it can run code.

    An ONNX file written by `attn export` (*.onnx) loads too, for prediction without PyTorch
    (onnxruntime on the CPU; `device` is ignored): `.predict`, `.labels`, `.info()` work, and
    `.recipe` holds its front end and data settings only."""
    from attn.pipelines.device import apply_env_threads
    from attn.pipelines.store.artifact import load_model, resolve_model_path

    apply_env_threads()
    path = resolve_model_path(None if model is None else os.fspath(model))
    if path.suffix.lower() == ".onnx":
        from attn.pipelines.infer.exported import load_exported

        return Model(load_exported(path), path)
    loaded = load_model(path, torch_device(device))
    if loaded.header.get("unfinished"):  # an epoch's network, written while its run trained
        import logging

        logging.getLogger("attn").warning(
            "%s is an unfinished run's model (the network of epoch %s, before its blend, calibration and test "
            "scores): finish the run with attn train --resume %s",
            path,
            loaded.header.get("epoch"),
            path.parent,
        )
    return Model(loaded, path)


class Model:
    """A trained model (from `attn.load`): `predict`, `labels`, `info()`; `.module` is the torch
    module itself (eval mode), `.recipe` the resolved recipe it was trained with."""

    def __init__(self, loaded: Loaded, path: Path) -> None:
        self.loaded, self.path = loaded, Path(path)

    @property
    def labels(self) -> list[str]:
        """Class labels, in the order of the model's outputs."""
        return list(self.loaded.labels)

    @property
    def modality(self) -> str:
        """The input kind: "audio" or "text"."""
        return self.loaded.recipe.modality

    @property
    def recipe(self) -> Recipe:
        return self.loaded.recipe

    @property
    def exported(self) -> bool:
        """An ONNX file from `attn export` (predicts through onnxruntime; no `.module`, no evaluate)."""
        return self.path.suffix.lower() == ".onnx"

    @property
    def module(self):
        return self.loaded.model

    @property
    def device(self):
        return self.loaded.device

    def info(self) -> dict[str, Any]:
        """What `attn info --format json` shows: recipe, labels, parameters, versions, metrics
        (an exported ONNX model: its metadata)."""
        from attn.pipelines.store.artifact import model_info

        if self.exported:
            from attn.pipelines.infer.exported import exported_info

            return exported_info(self.path)
        return model_info(self.loaded.header, self.path)

    def export(self, path: str | os.PathLike | None = None, format: str = "onnx") -> ExportResult:
        """Write the model, front end included, as one ONNX ("onnx") or TorchScript
        ("torchscript") file mapping what `predict` reads to probabilities (see `attn export
        --help`); `path` defaults to the model file's with .onnx or .pt. The file is checked
        against this model before it is written: `.max_abs_diff` of the result says how well."""
        from attn.pipelines.ship.export import default_path, export_model

        if self.exported:
            raise ConfigError(f"{self.path} is already an exported model; export the .attn model it came from")
        return export_model(self.loaded, path if path is not None else default_path(self.path, format), format)

    def predict(self, inputs, top_k: int = 1, **options) -> list[dict[str, Any]]:
        """One record per input, in order, as `attn predict` prints them.

        inputs (one, or a list):
            audio models: file paths (a folder: its audio files), `(samples, sample_rate)`
                tuples with samples a float array (samples,) or (samples, channels);
            text models: strings (each one text), or paths (os.PathLike: one text per line).
        top_k: also list the k best labels ("top_k").
        options: audio: `per_frame` (each window's prediction), `aggregate` ("mean", "max" or
            "vote" over a file's windows); both: `batch_size` (windows per model call),
            `min_score` (0-1: below it the label is "unknown"; default the model's stored one,
            `train.abstain`, else never), `threshold` (a multi-label model's decision threshold
            for every class; default the per-class thresholds it stores), `min_similarity`
            (a model with a novelty check: "unknown" below this similarity to its training data).
        Records: {"input", "label", "score", ...} (a multi-label model: {"input", "labels",
            "scores", ...}); audio adds "duration" and "windows", text
        "tokens" (and "truncated"); a model with a novelty check adds "similarity". An input that
        cannot be read gives {"input", "error"}. An `unknown` answer keeps its top score in
        "score" and names that label in "best_label" ("novel": true when the novelty check gave it).
        """
        return list(self.predict_iter(inputs, top_k, **options))

    @property
    def min_score(self) -> float | None:
        """The score below which `predict` answers `unknown` by default (`train.abstain`), or None."""
        cal = self.loaded.header.get("calibration")
        return cal.get("min_score") if isinstance(cal, dict) else None

    @property
    def min_similarity(self) -> float | None:
        """The similarity to the training data below which `predict` answers `unknown` by default
        (`train.abstain.novelty`), or None (no novelty check)."""
        nov = self.loaded.header.get("novelty")
        return nov.get("min_similarity") if isinstance(nov, dict) else None

    def predict_iter(
        self,
        inputs,
        top_k: int = 1,
        per_frame: bool = False,
        aggregate: str = "mean",
        batch_size: int = 64,
        min_score: float | None = None,
        threshold: float | None = None,
        min_similarity: float | None = None,
    ) -> Iterator[dict[str, Any]]:
        """`predict`, one record at a time (memory stays flat over any number of inputs).
        `threshold`: a multi-label model's decision threshold for every class (default: the
        per-class thresholds the model stores). `min_similarity`: a model with a novelty check
        (`train.abstain.novelty`) answers `unknown` below this similarity to its training data
        (-1 to 1; default the stored one, -1: never)."""
        from attn.pipelines.infer.calibration import abstain, check_min_score, check_min_similarity
        from attn.pipelines.infer.multilabel import single_label_options

        check_min_score(min_score)
        check_min_similarity(min_similarity)
        single_label_options(self.loaded, min_score, min_similarity, top_k)
        items = self._items(inputs)
        if self.modality == "text":
            from attn.pipelines.infer.predict_text import TextPredictor

            if per_frame:
                raise ConfigError("per_frame is for audio models; this is a text model")
            if aggregate != "mean":  # how a recording's windows combine: a text has one, and was scored as if unset
                raise ConfigError("--aggregate is for audio models (how a recording's windows combine); this is a "
                                  "text model")  # fmt: skip
            records = TextPredictor(self.loaded, batch_size=batch_size, top_k=top_k, threshold=threshold).predict(items)
        else:
            from attn.pipelines.infer.predict import AudioPredictor

            predictor = AudioPredictor(self.loaded, batch_size=batch_size, aggregate_how=aggregate, top_k=top_k,
                                       per_frame=per_frame, threshold=threshold)  # fmt: skip
            records = predictor.predict(items)
        return abstain(records, self.min_score if min_score is None else min_score,
                       self.min_similarity if min_similarity is None else min_similarity)  # fmt: skip

    def events_iter(self, inputs, hop: float | None = None, batch_size: int = 64, **settings) -> Iterator[dict]:
        """Sound events in audio inputs (as `predict`), one record {input, label, start, end, score}
        per event, files in order; the post-processing stored in the model (tuned at training),
        any `settings` (events.EventSettings fields) and `hop` (seconds) overriding it. See
        `attn predict --events`."""
        from attn.pipelines.infer.events_predict import predict_events

        s = self._event_settings(settings)
        return predict_events(self.loaded, self._items(inputs), s, hop, batch_size)

    def evaluate_events(self, annotations, files=None, split: str | None = None, **settings) -> dict[str, Any]:
        """sed_eval event- and segment-based metrics on annotated recordings (`attn evaluate
        --events`), with the stored post-processing, any `settings` overriding it."""
        from attn.pipelines.infer.events_predict import evaluate_events

        s = self._event_settings(settings)
        return evaluate_events(self.loaded, os.fspath(annotations), files and os.fspath(files), split, s)

    def tune_events(self, annotations, files=None, split: str | None = "val", save: bool = True, out=None,
                    hop: float | None = None) -> dict[str, Any]:  # fmt: skip
        """Tune the events post-processing on annotated recordings (what `attn train` does with
        `data.events`); `save` stores it in the model file, or in a copy at `out` (written
        atomically; `attn info` shows it); `hop`: seconds between windows (default 0.1). See
        `attn tune-events`."""
        from attn.pipelines.infer.events_predict import DEFAULT_HOP, tune_events
        from attn.pipelines.store.artifact import update_header

        self._audio_only("events")
        hop = hop or DEFAULT_HOP
        if hop > self.recipe.features.frame_seconds:
            raise ConfigError(
                f"events hop {hop:g} s is longer than the model's {self.recipe.features.frame_seconds:g} s window"
            )
        tuned = tune_events(self.loaded, os.fspath(annotations), files and os.fspath(files), split, hop=hop)
        self.loaded.header["events"] = tuned
        if save:
            update_header(self.path, os.fspath(out) if out is not None else None, events=tuned)
        return tuned

    def fit_novelty(self, keep: float = 0.95, neighbors: int = 1) -> dict[str, Any]:
        """Give an already trained single-label model the novelty check `train.abstain.novelty:
        keep` would have given it (predict then answers `unknown` for inputs unlike every
        training clip): its bank from the training clips the recipe names, its threshold keeping
        `keep` of the held-out in-domain clips. Stored in the model file; returns the facts
        (`attn info` shows them)."""
        from attn.pipelines.infer.novelty import novelty_for
        from attn.pipelines.store.artifact import add_novelty

        if self.exported:
            raise ConfigError(f"{self.path}: an exported ONNX file only predicts; fit on the .attn model")
        check = novelty_for(self.loaded, keep, neighbors)
        add_novelty(self.loaded, self.path, check)
        return check.info

    def _event_settings(self, overrides: dict):
        self._audio_only("events")
        return _event_settings((self.loaded.header.get("events") or {}).get("settings", {}), overrides)

    def _items(self, inputs) -> list | Iterator:
        from .items import model_inputs

        return model_inputs(inputs, self.modality, self.recipe.data.extensions)

    def _audio_only(self, what: str) -> None:
        if self.modality != "audio" or self.exported:
            raise ConfigError(f"{self.path}: {what} need an audio .attn model")

    def listen(
        self,
        source: str | os.PathLike = "-",
        pcm: str = "s16le",
        rate: int | None = None,
        channels: int = 1,
        realtime: bool = False,
        stall_seconds: float = 5.0,
        top_k: int = 1,
        events: bool | dict[str, Any] = False,
        stop=None,
        min_score: float | None = None,
        threshold: float | None = None,
        min_similarity: float | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Score a live raw PCM stream window by window, each record as soon as its window is
        whole: {"input", "start", "end", "label", "score"} (+ "top_k"), times in seconds of
        stream; the records `predict(..., per_frame=True)` gives the same audio as a file.
        source: "-" (stdin), a FIFO or a file; pcm: "s16le" or "f32le"; rate: Hz (default the
        model's; another is resampled); channels: averaged to mono. A stream that starts with a
        WAV header (arecord's) is read by it. realtime: release a file's audio at its own pace.
        stall_seconds: log a warning when no audio arrives for this long. events: True (or
        settings overriding the model's stored post-processing, e.g. {"on": 0.7}): one record per
        sound event {"input", "label", "start", "end", "score"}, written once no later window
        can change it, found as `events_iter` finds a file's (its hop, gate and classify: segments;
        the gate's noise floor is a running one: pipelines/infer/live_segments.py). stop: a
        threading.Event; once set, the audio already received is scored and the records end.
        min_score: a window whose top score is below it is `unknown` (its best label in
        "best_label"), as `predict`'s clips; default the model's stored one (`train.abstain`),
        else never; a model with a novelty check adds each window's "similarity" and answers
        `unknown` below `min_similarity` (default the stored one). threshold: a multi-label model's
        decision threshold for every class (default its per-class ones); its window records are
        {"input", "start", "end", "labels", "scores"}.
        See `attn listen`."""
        from attn.features.pcm import ENCODINGS, PcmFormat
        from attn.pipelines.infer.listen import Listener, ListenOptions

        if self.modality != "audio":
            raise ConfigError(f"{self.path}: attn listen needs an audio model; this is a text model")
        if pcm not in ENCODINGS:
            raise ConfigError(f"pcm {pcm!r}: use one of {', '.join(ENCODINGS)}")
        if (rate is not None and rate < 1) or channels < 1:
            raise ConfigError(f"rate {rate} and channels {channels}: both must be 1 or more")
        from attn.pipelines.infer.calibration import abstain, check_min_score, check_min_similarity
        from attn.pipelines.infer.multilabel import model_thresholds, single_label_options

        check_min_score(min_score)
        check_min_similarity(min_similarity)
        single_label_options(self.loaded, min_score, min_similarity, top_k if events is False else 1)
        thresholds = model_thresholds(self.loaded, threshold)
        if events is not False:
            thresholds = None  # events: one label per event, found with the stored `on` threshold
        fmt = PcmFormat(pcm, int(rate or self.recipe.features.sample_rate), int(channels))
        settings, hop = None, 0.0
        if events is not False:  # the post-processing stored in the model (tuned at training), as predict --events
            from attn.pipelines.infer.events_predict import model_events

            stored = (self.loaded.header.get("events") or {}).get("settings", {})
            settings, hop = model_events(self.loaded, _event_settings(stored, {} if events is True else dict(events)))
        tags = None if thresholds is None else tuple(thresholds)
        options = ListenOptions(fmt, realtime=realtime, stall_seconds=stall_seconds, top_k=top_k, events=settings,
                                events_hop=hop, thresholds=tags)  # fmt: skip
        records = Listener(self.loaded, options, stop).listen(os.fspath(source))
        if settings is not None or thresholds is not None:  # events have their own `on` threshold
            return records
        return abstain(records, self.min_score if min_score is None else min_score,
                       self.min_similarity if min_similarity is None else min_similarity)  # fmt: skip

    def embed(self, inputs, per_window: bool = False, batch_size: int = 64) -> list[dict[str, Any]]:
        """The vector each prediction rests on, one record per input (same inputs as `predict`):
        {"input", "embedding": [D floats], ...}: the network's penultimate layer (over a
        pretrained encoder, its pooled states); an audio file's is the mean over its windows,
        each window's under "frames" with `per_window`. See `attn embed`."""
        return list(self.embed_iter(inputs, per_window, batch_size))

    def embed_iter(self, inputs, per_window: bool = False, batch_size: int = 64) -> Iterator[dict[str, Any]]:
        """`embed`, one record at a time."""
        from attn.pipelines.infer.embed import embed

        if self.exported:
            raise ConfigError(f"{self.path}: an exported ONNX file only predicts; embed with the .attn model")
        return embed(self.loaded, self._items(inputs), per_window=per_window, batch_size=batch_size)

    def explain(self, inputs, out: str | os.PathLike | None = None, label: str | None = None) -> list[dict[str, Any]]:
        """Where the model looks, one record per input (same inputs as `predict`): the predicted
        "label" and "score", and "weights" over the input's positions (>= 0, summing to 1): text
        "tokens"; audio "positions" ([start, end] seconds in the explained "window"). Transformers:
        attention rollout from the pooled vector (the class token) to the inputs, and "layers",
        its attention per layer and head; CNN and WaveNet: occlusion ("grid" over mel bands too).
        `out`: a folder to write one PNG per input ("image" in the record); `label`: explain this
        label rather than the top one (a multi-label model: per label, by its sigmoid score; its
        records list the predicted "labels"). See `attn explain`.
        """
        return list(self.explain_iter(inputs, out, label))

    def explain_iter(
        self, inputs, out: str | os.PathLike | None = None, label: str | None = None
    ) -> Iterator[dict[str, Any]]:
        """`explain`, one record at a time."""
        from attn.pipelines.ship.explain import Explainer

        if self.exported:
            from attn.pipelines.infer.exported import only_predicts

            raise only_predicts(self.path, "attn explain")
        return Explainer(self.loaded, None if out is None else os.fspath(out), label).explain(self._items(inputs))


def device_spec(device: Any) -> str:
    """A device spec string for the pipelines ("auto", "cpu", "cuda:1"), from a string or a torch.device."""
    return device if isinstance(device, str) else str(device)


def torch_device(device: Any):
    from attn.pipelines.device import resolve_device

    return resolve_device(device_spec(device))


def _event_settings(stored: dict, overrides: dict):
    """EventSettings from `stored` (the model's tuned ones, or none) with `overrides` on top; an
    override that is not a setting, or a bad value, is a ConfigError."""
    from attn.pipelines.infer.events import EventSettings

    unknown = sorted(set(overrides) - set(EventSettings.__dataclass_fields__))
    if unknown:
        fields = ", ".join(EventSettings.__dataclass_fields__)
        raise ConfigError(f"events: unknown setting {unknown[0]!r}; use {fields}")
    try:
        return EventSettings.from_dict({**stored, **overrides})
    except (TypeError, ValueError) as e:
        raise ConfigError(str(e)) from None
