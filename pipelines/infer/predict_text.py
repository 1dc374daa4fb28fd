"""`attn predict` for text models: texts from --text, files (one per line) or stdin, in order.

One rule for every source of text, shared with `attn tokenize`: a UTF-8 byte-order mark at the
start of a file or of stdin is not text; a line that is blank or not valid UTF-8 is an input that
failed, named by where it came from ("q.txt:3", "<stdin>:3", "text 2"), and the others still run.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from attn.errors import ConfigError, InputError

from .inference import top_labels
from .loaded import Loaded

BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True)
class TextInput:
    input: str  # what the record calls it: the text itself, or "file:line"
    text: str | None  # None when it could not be read
    error: str | None = None
    show_text: bool = False  # add a "text" field (inputs named by file:line)


def text_inputs(texts: Iterable[str], paths: Iterable[str], stdin=None, column: str = "text") -> Iterator[TextInput]:
    """--text values first, then each file's lines ('-' = stdin; a table's `column`: `file_inputs`), in order."""
    for n, t in enumerate(texts, 1):
        yield given_text(t, f"text {n}")
    for p in paths:
        yield from file_inputs(p, stdin, column)


def argument_inputs(args: Iterable[str], stdin=None) -> Iterator[TextInput]:
    """`attn tokenize`'s inputs, in order: each argument one text ("text N"), '-' the lines on stdin."""
    n = 0
    for a in args:
        if a == "-":
            yield from file_inputs("-", stdin)
        else:
            n += 1
            yield given_text(a, f"text {n}")


def given_text(text: str, where: str) -> TextInput:
    """A text given as an argument, checked by the one rule (`where` names it in an error)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:  # undecodable bytes on the command line arrive as lone surrogates (U+DC80 + byte)
        byte = ord(text[e.start]) - 0xDC00
        said = f" (byte 0x{byte:02x})" if 0x80 <= byte <= 0xFF else ""
        return TextInput(text, None, f"{where}: not valid UTF-8{said}")
    return TextInput(text, None, f"{where}: empty text") if not text.strip() else TextInput(text, text)


TABLES = (".csv", ".tsv", ".jsonl", ".ndjson")  # read as tables when they hold the text column


def file_inputs(p: str, stdin=None, column: str = "text") -> Iterator[TextInput]:
    """One input per line of file `p` ('-': stdin); named "file:line" (stdin lines by their text,
    or "<stdin>:line" when they failed). A CSV/TSV/JSONL file with a `column` (the model's
    data.text_column) is a table, as training and `attn evaluate` read it: one input per row,
    that column's text (its header line was predicted as a text, each row with its quotes)."""
    table = _table(p, column) if p != "-" else None
    if table is not None:
        yield from table
        return
    if p == "-":
        stream = stdin if stdin is not None else sys.stdin
        if stream is None:
            raise ConfigError("-: stdin is closed; give the texts as files or with --text")
        buf = getattr(stream, "buffer", stream)
        if _head(buf) in UTF16_BOMS:  # as a file's: its lines would be NUL-laden garbage
            yield _utf16("<stdin>")
            return
        yield from _lines(buf, "<stdin>", named_by_text=True)
        return
    try:
        f = open(p, "rb")  # noqa: SIM115 - closed below, after the last line
    except OSError as e:
        hint = "; to classify it as a text: --text" if isinstance(e, FileNotFoundError) and " " in p.strip() else ""
        yield TextInput(p, None, f"{p}: cannot read ({e.strerror or e}){hint}")
        return
    with f:
        head = f.peek(8192)[:8192]
        if head[:2] in UTF16_BOMS:
            yield _utf16(p)
            return
        if b"\0" in head:  # an audio file, an archive: refused once, not line by line
            yield TextInput(p, None, f"{p}: not a text file (binary data; a text model reads UTF-8 text, one per line)")
            return
        yield from _lines(f, p, named_by_text=False)


UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")  # UTF-16's byte order marks (Windows "Unicode" text)


def _utf16(name: str) -> TextInput:
    return TextInput(name, None, f"{name}: UTF-16 text; a text model reads UTF-8 (iconv -f UTF-16 -t UTF-8)")


def _head(buf) -> bytes:
    """A binary stream's first two bytes, left to be read (a pipe's buffer peeks; a seekable one,
    such as a test's, goes back)."""
    if hasattr(buf, "peek"):
        return buf.peek(2)[:2]
    if getattr(buf, "seekable", lambda: False)():
        at = buf.tell()
        head = buf.read(2)
        buf.seek(at)
        return head if isinstance(head, bytes) else b""
    return b""


def _table(p: str, column: str) -> list[TextInput] | None:
    """The rows' `column` of a CSV/TSV/JSONL file `p`, or None when it is no such table."""
    from ..data.sources import read_table

    if Path(p).suffix.lower() not in TABLES or not os.path.isfile(p):
        return None
    try:
        rows, lines, columns = read_table(p)
    except (ConfigError, InputError) as e:  # a damaged table: one error, unless it was never one
        with open(p, encoding="utf-8", errors="replace") as f:
            return [TextInput(p, None, str(e))] if column in f.readline() else None
    if column not in columns:
        if len(columns) < 2 and Path(p).suffix.lower() != ".jsonl":
            return None  # one column: lines of text, its first line among them
        # Its rows read as lines would give the header as a text and each row's label with it.
        why = (f"{p}: a table without the model's text column {column!r} (columns: {', '.join(columns)}); rename "
               "the column, or give a file of one text per line")  # fmt: skip
        return [TextInput(p, None, why)]
    out = []
    for row, n in zip(rows, lines, strict=True):
        where, text = f"{p}:{n}", row.get(column) or ""
        out.append(
            TextInput(where, text, show_text=True) if text.strip() else TextInput(where, None, f"{where}: empty text")
        )
    return out


def _lines(stream, name: str, named_by_text: bool) -> Iterator[TextInput]:
    """Lines of a binary stream (a text one is encoded back), split at \n, CR LF stripped."""
    for n, raw in enumerate(stream, 1):
        if isinstance(raw, str):
            raw = raw.encode("utf-8", "surrogateescape")
        if n == 1 and raw.startswith(BOM):
            raw = raw[len(BOM) :]
        raw = raw.rstrip(b"\r\n")
        where = f"{name}:{n}"
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            yield TextInput(where, None, f"{where}: not valid UTF-8 (byte 0x{raw[e.start]:02x})")
            continue
        if not line.strip():
            yield TextInput(where, None, f"{where}: empty text")
        elif named_by_text:
            yield TextInput(line, line)
        else:
            yield TextInput(where, line, show_text=True)


class TextPredictor:
    """Predict `TextInput`s with a loaded text model: one record per input, in order."""

    def __init__(self, loaded: Loaded, batch_size: int = 64, top_k: int = 1, threshold: float | None = None) -> None:
        from .multilabel import model_thresholds

        self.thresholds = model_thresholds(loaded, threshold)  # multi-label models only
        self.loaded = loaded
        self.tok = loaded.tokenizer
        self.max_len = loaded.recipe.features.tokenizer.max_len
        self.labels = loaded.labels
        self.batch_size = batch_size
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:  # "2" from a caller: a TypeError
            raise ConfigError(f"top_k {top_k!r}: give a whole number of labels, 1 or more")
        self.top_k = max(1, min(top_k, len(self.labels)))
        self.novelty = getattr(loaded, "novelty", None)

    def predict(self, inputs: Iterable[TextInput]) -> Iterator[dict[str, Any]]:
        pending: list[tuple[TextInput, tuple[np.ndarray, int] | None, str | None]] = []
        for item in inputs:
            if item.error is None and (item.text is None or not item.text.strip()):
                item = TextInput(item.input, None, f"{item.input if item.show_text else 'input'}: empty text",
                                 item.show_text)  # fmt: skip
            # (ids cut to max_len, the text's token count): a long text is tokenized, not hashed, past the cut
            ids = self.tok.encode_cut(item.text, self.max_len) if item.error is None and item.text is not None else None
            pending.append((item, ids, item.error))
            if sum(1 for _, i, _ in pending if i is not None and i[1]) >= self.batch_size:
                yield from self._flush(pending)
                pending = []
        yield from self._flush(pending)

    def _flush(self, rows) -> Iterator[dict[str, Any]]:
        from ..data.text import model_ids

        good = [(i, ids) for i, (_, ids, _) in enumerate(rows) if ids is not None]
        probs: dict[int, np.ndarray] = {}
        sims: dict[int, float] = {}
        if good:
            parts = [model_ids(ids, self.max_len, self.tok) for _, (ids, _) in good]  # (T,) or (T, 1 + K) each
            for (i, _), p in zip(good, self.loaded.window_probs(parts), strict=True):
                probs[i] = p
            if self.novelty is not None:  # train.abstain.novelty: each text's similarity to the training texts
                sims = dict(zip((i for i, _ in good), self.novelty.similarity(self.loaded.window_embeddings(parts)),
                                strict=True))  # fmt: skip
        for i, (item, ids, err) in enumerate(rows):
            rec: dict[str, Any] = {"input": item.input}
            if item.show_text and item.text is not None:
                rec["text"] = item.text
            if i not in probs:
                rec["error"] = err or item.error or "empty text"
                yield rec
                continue
            first, last = self._result(probs[i])
            if i in sims:
                first["similarity"] = round(float(sims[i]), 6)
            rec.update(first, tokens=ids[1])
            if ids[1] > self.max_len:
                rec["truncated"] = True
            rec.update(last)
            yield rec

    def _result(self, probs: np.ndarray) -> tuple[dict[str, Any], dict[str, Any]]:
        """What the model's output (K,) for one text adds to its record: fields before "tokens"
        (label, score) and after it (top_k)."""
        if self.thresholds is not None:  # multi-label
            from .multilabel import tag_record

            return tag_record(probs, self.labels, self.thresholds), {}
        top = top_labels(probs, self.labels, self.top_k)
        return top[0], ({"top_k": top} if self.top_k > 1 else {})
