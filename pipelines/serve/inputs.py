"""What `attn serve` reads from a request: the query options, the body (within its size limit),
the texts of a JSON document or the audio files of a multipart form (each saved to a temporary
file, since soundfile decodes from files as `attn predict` does). Anything wrong is an `ApiError`:
an HTTP status, one line for the client, and the kind /metrics counts it under."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
import time
import zlib
from dataclasses import dataclass
from typing import Any

from ..infer.inference import AGGREGATES
from ..infer.predict_text import given_text

DRAIN_SECONDS = 2.0  # an upload over the limit is read (and dropped) this long, so its client sees the 413


class ApiError(Exception):
    """An answer other than 200: its status, a one-line message and the kind counted in /metrics."""

    def __init__(self, status: int, message: str, kind: str, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.message, self.kind, self.extra = status, message, kind, extra


@dataclass(frozen=True)
class Upload:
    """An uploaded file: the name its record shows, and where it was saved for decoding."""

    name: str
    path: str


OPTIONS = ("top_k", "per_frame", "aggregate", "min_score", "threshold", "min_similarity")  # /predict's query


def _number(query, name: str, lo: float, hi: float, what: str) -> float | None:
    """The query's `name` as a number in [lo, hi], or None when absent."""
    raw = query.get(name)
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not lo <= value <= hi:
        raise ApiError(422, f"{name}={raw!r}: expected a number from {lo:g} to {hi:g} ({what})", "bad_request")
    return value


class RequestReader:
    """Reads requests for a model of one modality ("audio" or "text") within the server's limits."""

    def __init__(self, modality: str, max_upload_mb: float, max_inputs: int, multi_label: bool = False,
                 novelty: bool = False) -> None:  # fmt: skip
        self.modality, self.text = modality, modality == "text"
        self.max_upload_mb, self.max_inputs = max_upload_mb, max_inputs
        self.multi_label, self.novelty = multi_label, novelty

    def options(self, query, allowed=OPTIONS) -> tuple:
        """(top_k, per_frame, aggregate, min_score, threshold, min_similarity) from the query,
        validated as `attn predict` validates its options; unset numbers are None (the model's
        stored ones apply)."""
        unknown = sorted(set(query) - set(allowed))
        if unknown:
            use = f"; options: {', '.join(allowed)}" if allowed else "; this endpoint takes none"
            raise ApiError(422, f"unknown option {unknown[0]!r}{use}", "bad_request")
        if hasattr(query, "getlist"):  # ?top_k=2&top_k=3 was answered with the last, silently
            twice = next((k for k in allowed if len(query.getlist(k)) > 1), None)
            if twice is not None:
                raise ApiError(422, f"option {twice!r} given {len(query.getlist(twice))} times; give it once",
                               "bad_request")  # fmt: skip
        raw = query.get("top_k", "1")
        if not (raw.isascii() and raw.isdigit()) or int(raw) < 1:  # "¹" is a digit int() refuses
            raise ApiError(422, f"top_k={raw!r}: expected a whole number, 1 or more", "bad_request")
        flag = query.get("per_frame", "false").lower()
        if flag not in ("1", "true", "yes", "0", "false", "no", ""):
            raise ApiError(422, f"per_frame={flag!r}: expected true or false", "bad_request")
        how = query.get("aggregate", "mean")
        if how not in AGGREGATES:
            raise ApiError(422, f"aggregate={how!r}: expected one of {', '.join(AGGREGATES)}", "bad_request")
        per_frame = flag in ("1", "true", "yes")
        if per_frame and self.text:
            raise ApiError(422, "per_frame is for audio models; this is a text model", "bad_request")
        if how != "mean" and self.text:  # was accepted and ignored
            raise ApiError(422, "aggregate is for audio models (how a recording's windows combine); this is a text "
                                "model", "bad_request")  # fmt: skip
        if self.multi_label and how == "vote":  # was a 500 (the model code's ConfigError)
            raise ApiError(422, "aggregate=vote counts each window's one best label; a multi-label model's clip "
                                "scores are its windows' mean or max per label (aggregate=mean|max)",
                           "bad_request")  # fmt: skip
        if self.multi_label and int(raw) != 1:  # was accepted and ignored: the records hold every class's score
            raise ApiError(422, "top_k is for single-label models; this model is multi-label and reports every "
                                "class's score", "bad_request")  # fmt: skip
        min_score = _number(query, "min_score", 0.0, 1.0, "a score; `unknown` below it")
        threshold = _number(query, "threshold", 0.0, 1.0, "every class's decision threshold")
        min_similarity = _number(query, "min_similarity", -1.0, 1.0, "a cosine similarity; -1: never novel")
        if threshold is not None and not self.multi_label:
            raise ApiError(422, "threshold is for multi-label models; this model picks one label", "bad_request")
        if self.multi_label and (min_score, min_similarity) != (None, None):
            raise ApiError(422, "min_score and min_similarity are for single-label models; this model is multi-label "
                                "(use threshold)", "bad_request")  # fmt: skip
        if min_similarity is not None and not self.novelty:
            raise ApiError(422, "min_similarity needs a model with a novelty check (trained with "
                                "train.abstain.novelty); this one has none", "bad_request")  # fmt: skip
        return int(raw), per_frame, how, min_score, threshold, min_similarity

    @contextlib.asynccontextmanager
    async def inputs(self, request):
        """The request's inputs: `TextInput`s from JSON, or `Upload`s saved to a temporary folder
        (removed when the block ends: soundfile decodes from a file, as `attn predict` does)."""
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        want = "application/json" if self.text else "multipart/form-data"
        if ctype != want:
            how = 'JSON {"texts": ["..."]}' if self.text else "audio files as multipart/form-data (curl -F f=@a.wav)"
            raise ApiError(415, f"content type {ctype or 'none'!r}: this {self.modality} model takes {how}",
                           "bad_request")  # fmt: skip
        body = await self._body(request)
        if self.text:
            yield self._texts(body)
            return
        saved: list[str] = []
        try:
            yield await self._uploads(request, body, saved)
        finally:
            for path in saved:
                with contextlib.suppress(OSError):
                    os.unlink(path)

    async def _body(self, request) -> bytes:
        limit = int(self.max_upload_mb * 1024 * 1024)
        declared = request.headers.get("content-length", "")
        keep = not (declared.isdigit() and int(declared) > limit)  # known too large: read it, keep none of it
        buf, seen, t0 = bytearray(), 0, time.perf_counter()
        async for chunk in request.stream():
            seen += len(chunk)
            if keep and seen <= limit:
                buf += chunk
            elif time.perf_counter() - t0 > DRAIN_SECONDS:
                break
        request.scope["attn.body_read"] = True  # a timeout from here on is the server's (504), before it the client's
        if seen > limit:
            raise ApiError(413, f"upload over the {self.max_upload_mb:g} MB limit (--max-upload-mb)",
                           "too_large")  # fmt: skip
        if not buf:
            what = 'JSON {"texts": ["..."]}' if self.text else "audio files as multipart/form-data"
            raise ApiError(400, f"empty body: send {what}", "bad_request")
        return self._decoded(bytes(buf), request.headers.get("content-encoding", ""), limit)

    def _decoded(self, body: bytes, encoding: str, limit: int) -> bytes:
        """The body as sent before a client compressed it (`Content-Encoding: gzip` or `deflate`,
        which requests, curl --compressed users and proxies send): read as it came, a gzipped JSON
        was "invalid JSON". The limit holds for what it inflates to (a small bomb stays small)."""
        codings = [c.strip().lower() for c in encoding.split(",") if c.strip()]
        for coding in reversed(codings):  # applied in the order listed: undone last first
            if coding == "identity":
                continue
            if coding not in ("gzip", "x-gzip", "deflate"):
                raise ApiError(415, f"Content-Encoding {coding!r} is not supported: send the body as it is, "
                                    "gzip or deflate", "bad_request")  # fmt: skip
            # wbits: 16+ reads a gzip header, + reads zlib (deflate as HTTP means it), - raw deflate
            tries = (16 + zlib.MAX_WBITS,) if coding != "deflate" else (zlib.MAX_WBITS, -zlib.MAX_WBITS)
            for i, wbits in enumerate(tries):
                try:
                    d = zlib.decompressobj(wbits)
                    out = d.decompress(body, limit + 1)
                    if len(out) > limit or d.unconsumed_tail:
                        raise ApiError(413, f"upload over the {self.max_upload_mb:g} MB limit (--max-upload-mb) "
                                            f"once {coding} is undone", "too_large")  # fmt: skip
                    if not d.eof:
                        raise zlib.error("the compressed data ends early")
                    body = out
                    break
                except zlib.error as e:
                    if i == len(tries) - 1:
                        raise ApiError(400, f"Content-Encoding {coding}: the body cannot be decompressed ({e})",
                                       "bad_request") from None  # fmt: skip
        return body

    def _texts(self, body: bytes) -> list:
        try:
            doc = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ApiError(400, f"invalid JSON ({e})", "bad_request") from None
        if not isinstance(doc, dict) or "texts" not in doc:
            raise ApiError(422, 'expected a JSON object {"texts": ["...", ...]}', "bad_request")
        unknown = sorted(set(doc) - {"texts"})
        if unknown:
            raise ApiError(422, f"unknown field {unknown[0]!r} (options go in the query string: "
                                f"{', '.join(OPTIONS)})", "bad_request")  # fmt: skip
        texts = doc["texts"]
        if not isinstance(texts, list) or not texts:
            raise ApiError(422, '"texts": expected a non-empty list of strings', "bad_request")
        self._count(len(texts))
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise ApiError(422, f"texts[{i}]: expected a string, got {type(t).__name__}", "bad_request")
        return [given_text(t, f"text {i}") for i, t in enumerate(texts, 1)]  # named as `--text` names them

    async def _uploads(self, request, body: bytes, saved: list[str]) -> list[Upload]:
        """Each file saved on its own (a temporary file each: creating and removing a folder per
        request cost ~3 ms of the event loop's time on ext4, files a few microseconds)."""
        from starlette.datastructures import UploadFile
        from starlette.exceptions import HTTPException
        from starlette.formparsers import MultiPartException
        from starlette.requests import Request

        async def replay():
            return {"type": "http.request", "body": body, "more_body": False}

        try:
            form = await Request(request.scope, replay).form(max_files=self.max_inputs, max_fields=8,
                                                             max_part_size=len(body) + 1)  # fmt: skip
        except (MultiPartException, HTTPException) as e:  # Starlette wraps the parser's in an HTTPException
            message = str(getattr(e, "message", None) or getattr(e, "detail", e))
            if "too many files" in message.lower():
                raise ApiError(413, f"more than {self.max_inputs} inputs in one request (--max-inputs)",
                               "too_large") from None  # fmt: skip
            raise ApiError(400, f"multipart body: {message}", "bad_request") from None
        except Exception as e:  # noqa: BLE001 - python-multipart's parser errors on garbage are many kinds
            raise ApiError(400, f"malformed multipart body ({type(e).__name__})", "bad_request") from None
        out: list[Upload] = []
        try:
            for field, value in form.multi_items():
                if not isinstance(value, UploadFile):
                    raise ApiError(422, f"unknown field {field!r}: send audio files (options go in the query "
                                        f"string: {', '.join(OPTIONS)})", "bad_request")  # fmt: skip
                if not value.filename:  # a form's file input left empty
                    continue
                self._count(len(out) + 1)
                safe = re.sub(r"[^A-Za-z0-9._-]", "_", os.path.basename(value.filename.replace("\\", "/")))[-100:]
                fd, path = tempfile.mkstemp(prefix="attn-serve-", suffix=f"-{safe}")
                saved.append(path)
                with os.fdopen(fd, "wb") as f:
                    shutil.copyfileobj(value.file, f)
                out.append(Upload(value.filename, path))
        finally:
            await form.close()
        if not out:
            raise ApiError(422, "no inputs: send one or more audio files as multipart/form-data", "bad_request")
        return out

    def _count(self, n: int) -> None:
        if n > self.max_inputs:
            raise ApiError(413, f"more than {self.max_inputs} inputs in one request (--max-inputs)",
                           "too_large")  # fmt: skip


def named(record: dict[str, Any], item) -> dict[str, Any]:
    """An upload's record named by its file name, not the temporary copy's path (in the error
    text too, so it reads as `attn predict NAME` would have said it)."""
    if not isinstance(item, Upload):
        return record
    if record.get("input") == item.path:
        record["input"] = item.name
    if isinstance(record.get("error"), str):
        record["error"] = record["error"].replace(item.path, item.name)
    return record


def with_failures(body: dict[str, Any], records: list[dict[str, Any]]) -> tuple[int, dict[str, Any]]:
    """422 when an input could not be read: "error" is the first failed record's one line (the
    CLI's text), and every record is still there."""
    failed = [r for r in records if "error" in r]
    if not failed:
        return 200, body
    return 422, {"error": failed[0]["error"], "failed": len(failed), **body}
