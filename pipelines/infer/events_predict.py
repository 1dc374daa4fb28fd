"""Sound events from a clip model: window scores at a fine hop (predict.py's framing), events
(events.py), their evaluation with sed_eval, and the post-processing tuned on annotated
recordings.

Evaluation (DCASE's convention, computed by sed_eval, not here): event-based F1 and error rate
match an estimated event to a reference of the same label when the onsets are within
`ONSET_COLLAR` (200 ms) and the offsets within the larger of 200 ms and half the reference's
length; segment-based F1 compares which labels are active in each 1 s segment.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from attn.errors import ConfigError, InputError

from ..data.annotations import Annotated
from .events import Event, EventSettings, activity_spans, detect_events, with_edges

log = logging.getLogger("attn")

ONSET_COLLAR = 0.2  # seconds
OFFSET_SHARE = 0.5  # offset collar: max(ONSET_COLLAR, this share of the reference event's length)
SEGMENT_SECONDS = 1.0
DEFAULT_HOP = 0.1
BACKGROUND_PREFIX = "_"  # labels such as "_background" mean "nothing here": never reported as events


@dataclass
class Curves:
    """One recording's window scores: `scores` (W, K) at `hop` seconds, edge rows included
    (events.with_edges), the first row at `start` seconds; `duration` in seconds; `error` if it
    could not be read."""

    name: str
    scores: np.ndarray | None
    hop: float
    start: float
    duration: float
    error: str | None = None
    levels_db: np.ndarray | None = None  # (W,) each window's centre level, for the gate


def score_curves(loaded, inputs: Iterable, hop: float = DEFAULT_HOP, batch_size: int = 64) -> Iterator[Curves]:
    """Window scores of each input (files or AudioArrays), in order, through AudioPredictor's framing."""
    from .predict import AudioPredictor

    frame = loaded.recipe.features.frame_seconds
    if hop > frame:
        raise ValueError(f"events hop {hop:g} s is longer than the model's {frame:g} s window")
    predictor = AudioPredictor(loaded, batch_size=batch_size, hop_seconds=hop, keep_scores=True)
    for rec in predictor.predict(list(inputs)):
        if rec.get("error"):
            yield Curves(rec["input"], None, hop, frame / 2, 0.0, rec["error"])
        else:
            if rec.get("warning"):  # as `attn predict` warns of a file (silent, too short, ...)
                log.warning(f"{rec['input']}: {rec['warning']}")
            # the edge rows (events.py) reach the recording's ends; the first stands before frame / 2
            lead, tail = rec["edge_levels_db"]
            scores, levels = with_edges(rec["scores"], rec["levels_db"], lead, tail)
            yield Curves(rec["input"], scores, hop, frame / 2 - len(lead) * hop, float(rec["duration"]), None, levels)


def curve_events(c: Curves, labels: list[str], settings: EventSettings, loaded=None, source=None,
                 cache: dict | None = None) -> list[Event]:  # fmt: skip
    """A recording's events. `classify: segments` needs the model (`loaded`) and the recording
    (`source`: a path or an AudioArray, default `c.name`) to label each span as a clip."""
    if settings.classify == "segments":
        spans = activity_spans(c.scores, c.hop, settings, c.start, c.duration, c.levels_db)
        events = label_spans(loaded, source if source is not None else c.name, spans, settings.margin, cache)
        return [e for e in events if not e.label.startswith(BACKGROUND_PREFIX)]
    events = detect_events(c.scores, c.hop, labels, settings, start=c.start, duration=c.duration,
                           levels_db=c.levels_db)  # fmt: skip
    return [e for e in events if not e.label.startswith(BACKGROUND_PREFIX)]


def label_spans(loaded, source, spans: list[Event], margin: float, cache: dict | None = None) -> list[Event]:
    """Each span's audio (plus `margin` s each side) through the model as one clip (its own
    length, as the training clips were): label = the best class, score = its probability. A clip
    model trained on isolated sounds labels an isolated sound best: on fsdd_scenes val 97% of the
    detected digits are right this way, 77% by the windows around them (README, "Sound events")."""
    if not spans:
        return []
    name = getattr(source, "name", str(source))
    if cache is not None:  # tuning labels the same spans under many settings: each clip runs once
        keys = [(name, round(e.start, 4), round(e.end, 4), margin) for e in spans]
        todo = [e for e, k in zip(spans, keys, strict=True) if k not in cache]
        for e, labelled in zip(todo, label_spans(loaded, source, todo, margin), strict=True):
            cache[(name, round(e.start, 4), round(e.end, 4), margin)] = (labelled.label, labelled.score)
        return [Event(*cache[k][:1], e.start, e.end, cache[k][1]) for e, k in zip(spans, keys, strict=True)]
    probs = clip_probs(loaded, [_read_span(source, max(0.0, e.start - margin), e.end + margin) for e in spans], name)
    return [
        Event(loaded.labels[int(p.argmax())], e.start, e.end, float(p.max())) for e, p in zip(spans, probs, strict=True)
    ]


def clip_probs(loaded, pieces: list[tuple[np.ndarray, int]], name: str) -> np.ndarray:
    """Class probabilities (N, K) of audio pieces (samples, rate), each through the model as one
    clip of its own length (converted to the model's rate as a file is)."""
    from attn.features.audio import from_array

    sr = loaded.recipe.features.sample_rate
    clips = [from_array(samples, rate, sr, name) for samples, rate in pieces]
    # Model calls of at most 64 windows' worth of samples (and at least one piece): 64 pieces a
    # call, padded to the longest, held 64 spans of up to two minutes each in the model's
    # activations (6.4 GB for a 22-minute recording).
    budget = 64 * loaded.recipe.features.frame_samples
    out, batch, held = [], [], 0
    for clip in clips:
        if batch and (held + len(clip) > budget or len(batch) == 64):
            out.append(loaded.window_probs(batch))
            batch, held = [], 0
        batch.append(clip)
        held += len(clip)
    if batch:
        out.append(loaded.window_probs(batch))
    return np.concatenate(out) if out else np.zeros((0, len(loaded.labels)), dtype=np.float32)


def _in_memory(source):
    """A pipe or FIFO (`attn predict --events <(sox ...)`) read once, whole, at its own rate, into
    an AudioArray named as given (mono, as `stream_audio` decodes any file); any other input as
    it is. Errors are InputErrors naming the pipe."""
    from attn.features.audio import audio_info, is_stream, seekable, stream_audio

    if not isinstance(source, str) or not is_stream(source):
        return source
    from .predict import AudioArray

    with seekable(source) as local:
        rate = audio_info(local, source).sample_rate
        samples = np.concatenate(list(stream_audio(local, rate, name=source)))
    return AudioArray(source, samples, rate)


def _read_span(source, start: float, end: float) -> tuple[np.ndarray, int]:
    """Samples of [start, end) seconds of a file (read alone: a long recording is never loaded
    whole) or an AudioArray, at their own rate."""
    if hasattr(source, "samples"):
        r = source.sample_rate
        return source.samples[int(start * r) : int(end * r)], r
    import soundfile as sf

    from attn.errors import InputError

    try:
        with sf.SoundFile(str(source)) as f:
            r = f.samplerate
            a = min(int(start * r), f.frames)
            f.seek(a)  # int(end * r) - int(start * r) samples, as the array above and a stream cut them
            return f.read(max(1, int(end * r) - a), dtype="float32", always_2d=False), r
    except (OSError, RuntimeError, sf.LibsndfileError) as e:
        raise InputError(f"{source}: cannot read ({e})") from None


def model_events(
    loaded, settings: EventSettings | None = None, hop: float | None = None
) -> tuple[EventSettings, float]:
    """The post-processing and hop (seconds) to use: those given, else those stored in the model
    (tuned at training), else the defaults. A hop longer than the model's window is a ConfigError."""
    stored = loaded.header.get("events") or {}
    settings = settings or EventSettings.from_dict(stored.get("settings", {}))
    hop = float(hop or stored.get("hop_seconds", DEFAULT_HOP))
    frame = loaded.recipe.features.frame_seconds
    if hop > frame:
        raise ConfigError(f"events hop {hop:g} s is longer than the model's {frame:g} s window")
    return settings, hop


def predict_events(loaded, inputs: Iterable, settings: EventSettings | None = None, hop: float | None = None,
                   batch_size: int = 64) -> Iterator[dict[str, Any]]:  # fmt: skip
    """One record per event {input, label, start, end, score}, files in order; a file that cannot
    be read gives its error record {input, error}; a file with no event gives nothing.
    `settings`/`hop` default to those stored in the model (tuned at training), else the defaults."""
    settings, hop = model_events(loaded, settings, hop)
    inputs, failed = list(inputs), {}
    if settings.classify == "segments":  # each span is read again after scoring: a pipe only once
        for i, source in enumerate(inputs):
            try:
                inputs[i] = _in_memory(source)
            except InputError as e:
                failed[i] = {"input": str(source), "error": str(e)}
    curves = iter(score_curves(loaded, [s for i, s in enumerate(inputs) if i not in failed], hop, batch_size))
    for i, source in enumerate(inputs):
        if i in failed:
            yield failed[i]
            continue
        c = next(curves)
        if c.error is not None:
            yield {"input": c.name, "error": c.error}
            continue
        try:
            events = curve_events(c, loaded.labels, settings, loaded, source)
        except InputError as e:
            yield {"input": c.name, "error": str(e)}
            continue
        for e in events:
            yield e.record(c.name)


def event_metrics(reference: Annotated, estimated: dict[str, list[Event]], labels: list[str]) -> dict[str, Any]:
    """sed_eval's event-based (collars above) and segment-based (1 s) metrics over all recordings."""
    import warnings

    with warnings.catch_warnings():  # dcase_util, under sed_eval, imports the deprecated pkg_resources
        warnings.simplefilter("ignore", UserWarning)
        try:
            import sed_eval
        except ImportError as e:
            raise ConfigError(f"scoring sound events needs sed_eval ({e}): pip install 'attn[events]'") from None

    classes = sorted(set(labels) | set(reference.labels))
    ev = sed_eval.sound_event.EventBasedMetrics(
        event_label_list=classes, t_collar=ONSET_COLLAR, percentage_of_length=OFFSET_SHARE,
        evaluate_onset=True, evaluate_offset=True,
    )  # fmt: skip
    seg = sed_eval.sound_event.SegmentBasedMetrics(event_label_list=classes, time_resolution=SEGMENT_SECONDS)
    for name in reference.files:
        ref = [{"event_label": a.label, "onset": a.onset, "offset": a.offset, "file": name}
               for a in reference.events.get(name, [])]  # fmt: skip
        est = [{"event_label": e.label, "onset": e.start, "offset": e.end, "file": name}
               for e in estimated.get(name, [])]  # fmt: skip
        ev.evaluate(reference_event_list=ref, estimated_event_list=est)
        seg.evaluate(reference_event_list=ref, estimated_event_list=est)
    e, s = ev.results_overall_metrics(), seg.results_overall_metrics()
    counts = ev.overall
    # scikit-learn's zero_division=0: no estimated events is precision 0 and F1 0, not NaN (a
    # recording that found nothing printed "F1 nan" and wrote a bare NaN, invalid JSON); an error
    # rate without reference events is undefined: None
    return {
        "event_f1": _nan0(float(e["f_measure"]["f_measure"])),
        "event_precision": _nan0(float(e["f_measure"]["precision"])),
        "event_recall": _nan0(float(e["f_measure"]["recall"])),
        "event_error_rate": _none(float(e["error_rate"]["error_rate"])),
        "segment_f1": _nan0(float(s["f_measure"]["f_measure"])),
        "segment_error_rate": _none(float(s["error_rate"]["error_rate"])),
        "reference_events": int(counts["Nref"]),
        "estimated_events": int(counts["Nsys"]),
        "recordings": len(reference.files),
        "collars": {
            "onset": ONSET_COLLAR,
            "offset": f"max({ONSET_COLLAR}, {OFFSET_SHARE} x length)",
            "segment": SEGMENT_SECONDS,
        },  # fmt: skip
    }


def _nan0(x: float) -> float:
    return 0.0 if x != x else x


def _none(x: float) -> float | None:
    return None if x != x or x in (float("inf"), float("-inf")) else x


# The tuning search: coordinate ascent over these values, from EventSettings' defaults, twice over.
SEARCH = {
    "classify": ("windows", "segments"),
    "margin": (0.0, 0.05, 0.1),
    "gate_db": (None, 3.0, 6.0, 10.0, 15.0, 20.0),
    "on": (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9),
    "off": (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8),
    "smooth_seconds": (0.0, 0.2, 0.3, 0.5),
    "smooth": ("median", "mean"),
    "pad": (-0.3, -0.25, -0.2, -0.15, -0.1, -0.05, 0.0, 0.05, 0.1),
    "min_duration": (0.0, 0.1, 0.2, 0.3, 0.5),
    "min_gap": (0.0, 0.1, 0.2, 0.3, 0.5),
}


def tune_settings(curves: list[Curves], reference: Annotated, labels: list[str], loaded=None,
                  rounds: int = 2) -> tuple[EventSettings, dict[str, Any]]:  # fmt: skip
    """The settings with the best event-based F1 (then the lowest error rate) on annotated
    recordings, by coordinate ascent over `SEARCH`; returns them and their metrics."""
    curves = [c for c in curves if c.error is None]
    cache: dict = {}

    def score(s: EventSettings) -> tuple[tuple[float, float], dict[str, Any]]:
        m = event_metrics(reference, {c.name: curve_events(c, labels, s, loaded, cache=cache) for c in curves}, labels)
        return (m["event_f1"], -(m["event_error_rate"] if m["event_error_rate"] is not None else 0.0)), m

    starts = [EventSettings()]
    if loaded is not None:
        starts.append(EventSettings(classify="segments", gate_db=6.0))
    best, best_key, best_m = None, None, None
    for s0 in starts:
        key, m = score(s0)
        if best_key is None or key > best_key:
            best, best_key, best_m = s0, key, m
    for _, (name, values) in itertools.product(range(rounds), SEARCH.items()):
        for v in values:
            try:
                cand = replace(best, **{name: v})
            except ValueError:  # off above on; segments without a gate
                continue
            key, m = score(cand)
            if key > best_key:
                best, best_key, best_m = cand, key, m
    chosen = ", ".join(f"{k}={v}" for k, v in best.to_dict().items())
    rate = best_m["event_error_rate"]
    log.info(f"events: tuned on {len(curves)} recording{'' if len(curves) == 1 else 's'}: "
             f"event F1 {best_m['event_f1']:.4f}, error rate {'n/a' if rate is None else f'{rate:.4f}'} "
             f"({chosen})")  # fmt: skip
    return best, best_m


def readable(reference: Annotated, curves: list[Curves]) -> Annotated:
    """The annotations of the recordings that could be read: an unreadable one is listed under
    "skipped", not scored as if every event in it were missed."""
    bad = {c.name for c in curves if c.error is not None}
    return replace(reference, files=[f for f in reference.files if f not in bad],
                   events={f: e for f, e in reference.events.items() if f not in bad})  # fmt: skip


def evaluate_events(loaded, annotations: str, files: str | None = None, split: str | None = None,
                    settings: EventSettings | None = None, batch_size: int = 64) -> dict[str, Any]:  # fmt: skip
    """sed_eval metrics of the model's events (its stored settings unless given) on annotated
    recordings; also "settings", "skipped" (recordings that could not be read, as error lines) and
    "warnings" (the annotations' bad rows, labels the model does not know)."""
    from ..data.annotations import load_annotated, unknown_labels

    reference = load_annotated(annotations, files, split)
    unknown = unknown_labels(reference, loaded.labels)
    settings, hop = model_events(loaded, settings)
    curves = list(score_curves(loaded, reference.files, hop, batch_size))
    skipped = [c.error for c in curves if c.error is not None]
    for line in skipped:
        log.warning(line)
    estimated = {c.name: curve_events(c, loaded.labels, settings, loaded) for c in curves if c.error is None}
    metrics = event_metrics(readable(reference, curves), estimated, loaded.labels)
    said = [f"annotations hold label(s) the model does not know: {', '.join(unknown)} (counted as missed)"]
    return {
        **metrics,
        "settings": settings.to_dict(),
        "skipped": skipped,
        "warnings": reference.warnings + (said if unknown else []),
    }  # as stderr says it: JSON readers see it too


def tune_events(loaded, annotations: str, files: str | None = None, split: str | None = "val",
                hop: float = DEFAULT_HOP, batch_size: int = 64) -> dict[str, Any]:  # fmt: skip
    """Tune the post-processing on annotated recordings: what a model header's "events" holds
    {hop_seconds, settings, tuned_on: {annotations, split, recordings, metrics}}."""
    from ..data.annotations import load_annotated, unknown_labels

    reference = load_annotated(annotations, files, split)
    unknown_labels(reference, loaded.labels)
    curves = list(score_curves(loaded, reference.files, hop, batch_size))
    for c in curves:
        if c.error is not None:
            log.warning(c.error)
    reference = readable(reference, curves)
    settings, metrics = tune_settings(curves, reference, loaded.labels, loaded)
    keep = ("event_f1", "event_error_rate", "segment_f1", "reference_events", "estimated_events")
    return {"hop_seconds": hop, "settings": settings.to_dict(),
            "tuned_on": {"annotations": str(annotations), "split": split, "recordings": len(reference.files),
                         **{k: metrics[k] for k in keep}},
            "timeline": _timeline(curves, reference, loaded, settings)}  # fmt: skip


def _timeline(curves: list[Curves], reference: Annotated, loaded, settings: EventSettings) -> dict | None:
    """The recording report.html draws (truth above prediction): the one with the most annotations."""
    ok = [c for c in curves if c.error is None]
    if not ok:
        return None
    c = max(ok, key=lambda c: len(reference.events.get(c.name, [])))
    return {"file": c.name, "duration": c.duration,
            "truth": [[a.label, a.onset, a.offset] for a in reference.events.get(c.name, [])],
            "predicted": [[e.label, round(e.start, 3), round(e.end, 3)]
                          for e in curve_events(c, loaded.labels, settings, loaded)]}  # fmt: skip
