"""What the commands read and write around a model: the inputs named on a command line (files,
folders, `-` for stdin, `--text` values) and the files of embeddings `attn embed --out` writes.
The command line reads its inputs here, so a script that takes the same arguments reads them
the same way."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from attn.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover - names for annotations only
    from attn.pipelines.infer.predict_text import TextInput

    from .model import Model


def audio_files(model: Model, args: Iterable[str], stdin=None) -> list[str]:
    """The audio files an audio `model` reads for these arguments, in order: a file as given, a
    folder its files with the model's audio extensions, `-` one path per line of stdin."""
    from attn.pipelines.infer.predict import expand_inputs

    return expand_inputs(args, model.recipe.data.extensions, stdin)


def text_inputs(texts: Iterable[str] = (), files: Iterable[str] = (), stdin=None, column: str = "text"
                ) -> Iterator[TextInput]:  # fmt: skip
    """A text model's inputs, in order: `texts` (each one text, "text N"), then each file's lines
    ("file:line"; `-` the lines of stdin; a CSV/TSV/JSONL file with a `column`, the model's
    data.text_column, its rows' texts). A blank line or one that is not UTF-8 is an input that
    failed (its `.error`), the others still run. `Model.predict` and friends take these."""
    from attn.pipelines.infer.predict_text import text_inputs as read

    return read(texts, files, stdin, column)


def argument_texts(args: Iterable[str], stdin=None) -> Iterator[TextInput]:
    """`attn tokenize`'s inputs: each argument one text, `-` the lines of stdin, in order."""
    from attn.pipelines.infer.predict_text import argument_inputs

    return argument_inputs(args, stdin)


def check_min_score(value: float | None) -> None:
    """A ConfigError unless `value` (a min score for `predict`) is None or in [0, 1]: the check
    `predict` makes, to run before a model loads."""
    from attn.pipelines.infer.calibration import check_min_score as check

    check(value)


def check_min_similarity(value: float | None) -> None:
    """A ConfigError unless `value` (a min similarity for `predict`'s novelty check) is None or
    in [-1, 1]: checked before a model loads."""
    from attn.pipelines.infer.calibration import check_min_similarity as check

    check(value)


def write_embeddings(records: Iterable[dict[str, Any]], out: str | os.PathLike) -> list[dict[str, Any]]:
    """Write `Model.embed_iter`'s records to `out`, whole and atomically once every input is done:
    a .npy (N, D) float32 array, row i input i (NaN for an input that failed), or a .jsonl file,
    one record a line. Returns the records (a .npy's without their vectors)."""
    suffix = Path(out).suffix.lower()
    if suffix == ".npy":
        from attn.pipelines.infer.embed import write_npy

        return write_npy(records, out)
    if suffix != ".jsonl":
        raise ConfigError(f"{out}: write embeddings to a .npy or a .jsonl file")
    from attn.pipelines.fsutil import atomic_write_text

    recs = list(records)
    atomic_write_text(out, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in recs))
    return recs


def env_threads() -> int | None:
    """$ATTN_THREADS as a number of threads (None when unset); a ConfigError when it is not one."""
    from attn.pipelines.device import env_threads as read

    return read()
