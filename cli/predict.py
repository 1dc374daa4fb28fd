"""attn predict"""

from __future__ import annotations

import contextlib
import sys
from typing import Annotated, Literal

import typer

from .common import (
    DeviceOpt,
    MinScoreOpt,
    MinSimilarityOpt,
    ModelOpt,
    QuietOpt,
    ThreadsOpt,
    ThresholdOpt,
    audio_paths,
    err,
    fail,
    handle_errors,
    interrupted_code,
    is_tty,
    no_inputs,
    set_threads,
    setup_logging,
    stderr_console,
    stopped_by,
)

EPILOG = """\
Examples:

  attn predict clip.wav                      # uses runs/latest

  attn predict --model runs/digits/model.attn recordings/ --format csv > predictions.csv

  find /data -name '*.flac' | attn predict - --top-k 3

  attn predict long_recording.wav --per-frame --aggregate vote

  attn predict field_day.flac --events --format raven > field_day.selections.txt

  attn predict podcast.wav --events --format audacity --hop 0.05 > podcast.labels.txt

  attn predict -m runs/trec/model.attn --text "Who wrote Hamlet?" --text "How far is Mars?"

  cat questions.txt | attn predict -m runs/trec/model.attn -        # text model: one text per line

  attn predict clips/ --min-score 0.8        # `unknown` where the top score is below 0.8

  attn predict -m runs/tags/model.attn clips/ --threshold 0.3   # multi-label: one threshold for all

--events: one record per event {input, label, start, end, score} (formats table, jsonl, csv,
audacity, raven; table on a terminal, JSON lines otherwise), with the post-processing stored in
the model (`attn info` shows it; `attn tune-events` tunes it; README, "Sound events"). Otherwise:
one record per input, in order, --text ones first (table on a terminal, JSON lines otherwise). An input that cannot
be read gets an `error` field and the others still run. Exit code 0 if all inputs
succeeded, 1 if any failed, 2 on usage errors.
"""


@handle_errors
def predict_cmd(
    inputs: Annotated[
        list[str] | None,
        typer.Argument(
            help="Audio models: files, folders (searched recursively), or - to read paths from stdin. "
            "Text models: files with one text per line, or - for lines on stdin.",
            show_default=False,
        ),
    ] = None,
    text: Annotated[
        list[str] | None,
        typer.Option("--text", "-t", help="A text to classify (repeatable; text models).", show_default=False),
    ] = None,
    model: ModelOpt = None,
    fmt: Annotated[
        Literal["table", "jsonl", "json", "csv", "audacity", "raven"] | None,
        typer.Option(
            "--format",
            "-f",
            help="Default: table on a terminal, jsonl otherwise (with --events too; json is jsonl: a record per line); "
            "audacity and raven with --events.",
            show_default=False,
        ),
    ] = None,
    top_k: Annotated[int, typer.Option("--top-k", "-k", min=1, help="Also report the k best labels.")] = 1,
    per_frame: Annotated[
        bool, typer.Option("--per-frame", help="Add each window's prediction with start/end.")
    ] = False,
    events: Annotated[
        bool, typer.Option("--events", help="Sound events (start, end, label) instead of a label per file.")
    ] = False,
    hop: Annotated[
        float | None,
        typer.Option(
            min=0.001,
            help="--events: seconds between windows (default: the model's tuned hop, 0.1).",
            show_default=False,
        ),
    ] = None,
    aggregate: Annotated[
        Literal["mean", "max", "vote"], typer.Option(help="Combine window predictions per file.")
    ] = "mean",
    min_score: MinScoreOpt = None,
    min_similarity: MinSimilarityOpt = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Windows per model call.")] = 64,
    threshold: ThresholdOpt = None,
    device: DeviceOpt = "auto",
    threads: ThreadsOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Predict labels for audio files or texts with a trained model."""
    import attn

    fmt = "jsonl" if fmt == "json" else fmt or ("table" if is_tty() else "jsonl")  # one word across commands
    if fmt in ("audacity", "raven") and not events:
        raise fail(f"--format {fmt} is for --events")
    if hop is not None and not events:
        raise fail("--hop is for --events")
    if not inputs and not text:
        raise fail("no inputs: give files or folders, - to read from stdin, or --text for a text model")
    from attn.api import check_min_score, check_min_similarity

    check_min_score(min_score)  # before the model loads
    check_min_similarity(min_similarity)
    console = None if quiet else stderr_console()
    setup_logging(quiet, console)
    m = attn.load(model, device)
    if not m.exported:  # an ONNX file predicts through onnxruntime: torch is never imported
        set_threads(threads)
    if m.modality == "text":
        from attn.api import text_inputs

        if per_frame or events:
            raise fail(f"{'--per-frame' if per_frame else '--events'} is for audio models; this is a text model")
        total = 0
        records = m.predict_iter(
            text_inputs(text or [], inputs or [], column=m.recipe.data.text_column),
            top_k,
            aggregate=aggregate,
            batch_size=batch_size,
            min_score=min_score,
            threshold=threshold,
            min_similarity=min_similarity,
        )
    else:
        paths = audio_paths(m, inputs, text)
        total = len(paths)
        if events:
            given = {"--per-frame": per_frame, "--top-k": top_k != 1, "--aggregate": aggregate != "mean",
                     "--min-score": min_score is not None, "--threshold": threshold is not None,
                     "--min-similarity": min_similarity is not None}  # fmt: skip
            ignored = [flag for flag, on in given.items() if on]
            if ignored:
                raise fail(f"{', '.join(ignored)}: for a label per file, not --events (which takes --hop and --format)")
            return _events(m, paths, fmt, hop, batch_size)
        records = m.predict_iter(
            paths,
            top_k,
            per_frame=per_frame,
            aggregate=aggregate,
            batch_size=batch_size,
            min_score=min_score,
            threshold=threshold,
            min_similarity=min_similarity,
        )
    counter = None
    if console is not None and total > 20:
        from .progress import RichCounter

        counter = RichCounter(console, total, "predicting")
    done = [0]  # records written, for what Ctrl-C says

    def written(rec=None) -> None:
        done[0] += 1
        if counter is not None:
            counter.advance()

    try:
        with counter if counter is not None else contextlib.nullcontext():
            seen = _write(records, fmt, top_k, m, min_score, written)
    except KeyboardInterrupt:
        of = f" of {total}" if total else ""
        err(f"{stopped_by()}: {done[0]}{of} input(s) were predicted and their records written; the rest were not")
        raise typer.Exit(interrupted_code()) from None
    if not seen:
        raise no_inputs(inputs)
    failed = sum(1 for r in seen if r.get("error"))
    warned = sum(1 for r in seen if r.get("warning"))
    if warned:
        print(f'attn: {warned} of {len(seen)} input(s) have a warning (see their "warning" field)', file=sys.stderr)
    if cut := sum(1 for r in seen if r.get("truncated")):  # a table shows no "truncated" column
        print(f"attn: {cut} of {len(seen)} text(s) were cut to the model's max_len of "
              f"{m.recipe.features.tokenizer.max_len} tokens", file=sys.stderr)  # fmt: skip
    if failed:
        print(f"attn: {failed} of {len(seen)} input(s) failed", file=sys.stderr)
        raise typer.Exit(1)


def _events(m, paths: list, fmt: str, hop: float | None, batch_size: int) -> None:
    from .render_events import write_events

    if fmt == "audacity" and len(paths) > 1:
        raise fail(f"--format audacity writes one label track: give one recording, not {len(paths)}")
    high = m.recipe.features.sample_rate / 2
    errors = write_events(m.events_iter(paths, hop=hop), fmt, high)
    if errors:
        print(f"attn: {len(errors)} of {len(paths)} input(s) failed", file=sys.stderr)
        raise typer.Exit(1)


def _write(records, fmt: str, top_k: int, m, min_score, on_record) -> list:
    """Records to stdout in `fmt`, each as soon as it is done."""
    from . import render

    if fmt == "jsonl":
        return render.write_jsonl(records, on_record=on_record)
    if fmt == "csv":
        abstains = m.min_similarity is not None or (min_score if min_score is not None else m.min_score) is not None
        return render.write_csv(records, top_k, on_record=on_record, text=m.modality == "text",
                                multi_label=bool(getattr(m.recipe.data, "multi_label", False)),
                                abstains=abstains, similarity=m.min_similarity is not None)  # fmt: skip
    return render.print_table(records, top_k, on_record=on_record)
