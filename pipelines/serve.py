"""`attn serve`: one loaded model behind HTTP (Starlette on uvicorn).

    POST /predict   audio: multipart/form-data files; text: JSON {"texts": [...]}; query options
                    top_k, per_frame, aggregate -> {"records": [...], "batch": {...}}, the records
                    `attn predict --format jsonl` prints for the same inputs
    POST /explain   the same inputs -> {"records": [...]} as `attn explain --format json`
    GET  /info      what `attn info --format json` shows      GET /healthz   liveness
    GET  /metrics   Prometheus text format                    GET /          a page to try the model

Requests are scored through `Model.predict_iter` (the records are built by the code `attn
predict` runs, nothing here rebuilds them), batched across requests by `serve_batching.Batcher`.
Every error is JSON {"error": "one line"}; a bad input never stops the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import os
import re
import shutil
import signal
import socket
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from attn.errors import ConfigError

from .inference import AGGREGATES
from .predict_text import given_text
from .serve_batching import Batcher, BatchInfo
from .serve_metrics import CONTENT_TYPE, Metrics

log = logging.getLogger("attn.serve")

ENDPOINTS = ("/", "/predict", "/explain", "/info", "/healthz", "/metrics")
PROTECTED = ("/predict", "/explain", "/info", "/metrics")  # the page and /healthz carry no model data
DRAIN_SECONDS = 2.0  # an upload over the limit is read (and dropped) this long, so its client sees the 413


@dataclass(frozen=True)
class ServeConfig:
    """How `attn serve` runs (the CLI's options; defaults in one place)."""

    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 1
    max_batch: int = 32  # inputs scored together, at most
    max_wait_ms: float = 10.0  # how long the first input of a batch waits for others
    token: str | None = None
    max_upload_mb: float = 20.0
    timeout_s: float = 30.0
    max_inputs: int = 64  # files or texts in one request
    debug: bool = False  # tracebacks of internal errors in the log

    def check(self) -> None:
        for name, ok in (("workers", self.workers >= 1), ("max_batch", self.max_batch >= 1),
                         ("max_wait_ms", self.max_wait_ms >= 0), ("max_upload_mb", self.max_upload_mb > 0),
                         ("timeout_s", self.timeout_s > 0), ("max_inputs", self.max_inputs >= 1),
                         ("port", 0 <= self.port <= 65535)):  # fmt: skip
            if not ok:
                raise ConfigError(f"{name}={getattr(self, name)}: out of range")


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


class Service:
    """The app's state: the model (an `attn.Model`), its batcher and metrics."""

    def __init__(self, model, config: ServeConfig, page: str = "") -> None:
        self.model, self.config, self.page = model, config, page
        self.text = model.modality == "text"
        self.info = model.info()
        self.metrics = Metrics()
        self.batcher = Batcher(self._run_batch, config.max_batch, config.max_wait_ms, on_batch=self._on_batch)

    # model thread ---------------------------------------------------------------------------------
    def _run_batch(self, key: tuple, groups: list[list]) -> list[list[dict[str, Any]]]:
        """One model pass over every request's inputs; records split back per request, in order."""
        top_k, per_frame, how = key
        flat = [x for g in groups for x in g]
        opts = {} if self.text else {"per_frame": per_frame, "aggregate": how}
        inputs = flat if self.text else [u.path for u in flat]
        records = [_named(r, x) for r, x in zip(self.model.predict_iter(inputs, top_k, **opts), flat, strict=True)]
        out, i = [], 0
        for g in groups:
            out.append(records[i : i + len(g)])
            i += len(g)
        return out

    def _on_batch(self, info: BatchInfo) -> None:
        self.metrics.batch_items.observe(info.items)
        self.metrics.batch_requests.observe(info.requests)
        self.metrics.batch_seconds.observe(info.seconds)

    # endpoints ------------------------------------------------------------------------------------
    async def predict(self, request) -> tuple[int, dict[str, Any]]:
        key = self._options(request.query_params)
        async with self._inputs(request) as items:
            self.metrics.queued.inc(len(items))
            try:
                records, info = await self.batcher.submit(key, items)
            finally:
                self.metrics.queued.dec(len(items))
        request.scope["attn.note"] = f"{len(items)} input(s), batch {info.id} ({info.requests} request(s))"
        body: dict[str, Any] = {"records": records, "batch": {"id": info.id, "requests": info.requests,
                                                              "items": info.items}}  # fmt: skip
        return _with_failures(body, records)

    async def explain(self, request) -> tuple[int, dict[str, Any]]:
        self._options(request.query_params, allowed=())
        if self.model.exported:
            raise ApiError(422, f"{self.model.path.name}: explain needs the .attn model (an exported ONNX file "
                                "only predicts)", "bad_request")  # fmt: skip
        async with self._inputs(request) as items:
            inputs = items if self.text else [u.path for u in items]
            records = await self.batcher.call(lambda: list(self.model.explain_iter(inputs)))
        request.scope["attn.note"] = f"{len(items)} input(s)"
        return _with_failures({"records": [_named(r, x) for r, x in zip(records, items, strict=True)]}, records)

    # request parsing ------------------------------------------------------------------------------
    def _options(self, query, allowed=("top_k", "per_frame", "aggregate")) -> tuple[int, bool, str]:
        unknown = sorted(set(query) - set(allowed))
        if unknown:
            use = f"; options: {', '.join(allowed)}" if allowed else "; this endpoint takes none"
            raise ApiError(422, f"unknown option {unknown[0]!r}{use}", "bad_request")
        raw = query.get("top_k", "1")
        if not raw.isdigit() or int(raw) < 1:
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
        return int(raw), per_frame, how

    @contextlib.asynccontextmanager
    async def _inputs(self, request):
        """The request's inputs: `TextInput`s from JSON, or `Upload`s saved to a temporary folder
        (removed when the block ends: soundfile decodes from a file, as `attn predict` does)."""
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        want = "application/json" if self.text else "multipart/form-data"
        if ctype != want:
            how = 'JSON {"texts": ["..."]}' if self.text else "audio files as multipart/form-data (curl -F f=@a.wav)"
            raise ApiError(415, f"content type {ctype or 'none'!r}: this {self.model.modality} model takes {how}",
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
        limit = int(self.config.max_upload_mb * 1024 * 1024)
        declared = request.headers.get("content-length", "")
        keep = not (declared.isdigit() and int(declared) > limit)  # known too large: read it, keep none of it
        buf, seen, t0 = bytearray(), 0, time.perf_counter()
        async for chunk in request.stream():
            seen += len(chunk)
            if keep and seen <= limit:
                buf += chunk
            elif time.perf_counter() - t0 > DRAIN_SECONDS:
                break
        if seen > limit:
            raise ApiError(413, f"upload over the {self.config.max_upload_mb:g} MB limit (--max-upload-mb)",
                           "too_large")  # fmt: skip
        if not buf:
            what = 'JSON {"texts": ["..."]}' if self.text else "audio files as multipart/form-data"
            raise ApiError(400, f"empty body: send {what}", "bad_request")
        return bytes(buf)

    def _texts(self, body: bytes) -> list:
        try:
            doc = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ApiError(400, f"invalid JSON ({e})", "bad_request") from None
        if not isinstance(doc, dict) or "texts" not in doc:
            raise ApiError(422, 'expected a JSON object {"texts": ["...", ...]}', "bad_request")
        unknown = sorted(set(doc) - {"texts"})
        if unknown:
            raise ApiError(422, f"unknown field {unknown[0]!r} (options go in the query string)", "bad_request")
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
        from starlette.formparsers import MultiPartException
        from starlette.requests import Request

        async def replay():
            return {"type": "http.request", "body": body, "more_body": False}

        try:
            form = await Request(request.scope, replay).form(max_files=self.config.max_inputs, max_fields=8,
                                                             max_part_size=len(body) + 1)  # fmt: skip
        except MultiPartException as e:
            raise ApiError(400 if "maximum" not in e.message.lower() else 422, f"multipart body: {e.message}",
                           "bad_request") from None  # fmt: skip
        except Exception as e:  # noqa: BLE001 - python-multipart's parser errors on garbage are many kinds
            raise ApiError(400, f"malformed multipart body ({type(e).__name__})", "bad_request") from None
        out: list[Upload] = []
        try:
            for field, value in form.multi_items():
                if not isinstance(value, UploadFile):
                    raise ApiError(422, f"unknown field {field!r}: send audio files (options go in the query "
                                        "string: top_k, per_frame, aggregate)", "bad_request")  # fmt: skip
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
        if n > self.config.max_inputs:
            raise ApiError(413, f"more than {self.config.max_inputs} inputs in one request (--max-inputs)",
                           "too_large")  # fmt: skip


def _named(record: dict[str, Any], item) -> dict[str, Any]:
    """An upload's record named by its file name, not the temporary copy's path (in the error
    text too, so it reads as `attn predict NAME` would have said it)."""
    if not isinstance(item, Upload):
        return record
    if record.get("input") == item.path:
        record["input"] = item.name
    if isinstance(record.get("error"), str):
        record["error"] = record["error"].replace(item.path, item.name)
    return record


def _with_failures(body: dict[str, Any], records: list[dict[str, Any]]) -> tuple[int, dict[str, Any]]:
    """422 when an input could not be read: "error" is the first failed record's one line (the
    CLI's text), and every record is still there."""
    failed = [r for r in records if "error" in r]
    if not failed:
        return 200, body
    return 422, {"error": failed[0]["error"], "failed": len(failed), **body}


def create_app(model, config: ServeConfig, page: str | None = None):
    """The ASGI app serving `model` (an `attn.Model`, loaded once for this process)."""
    from starlette.applications import Starlette
    from starlette.exceptions import HTTPException
    from starlette.responses import HTMLResponse, JSONResponse, Response
    from starlette.routing import Route

    from .serve_page import PAGE

    svc = Service(model, config, PAGE if page is None else page)

    def endpoint(fn: Callable) -> Callable:
        async def handle(request):
            try:
                status, body = await asyncio.wait_for(fn(request), config.timeout_s)
            except ApiError as e:
                request.scope["attn.kind"] = e.kind
                status, body = e.status, {"error": e.message, **e.extra}
            except asyncio.TimeoutError:
                request.scope["attn.kind"] = "timeout"
                status, body = 504, {"error": f"no answer within {config.timeout_s:g} s (--timeout); the server is "
                                              "busy or the input too long"}  # fmt: skip
            except Exception as e:  # noqa: BLE001 - a bug must cost one request, not the server
                request.scope["attn.kind"] = "internal"
                log.error("internal error: %s: %s", type(e).__name__, e, exc_info=config.debug)
                status, body = 500, {"error": f"internal error: {type(e).__name__}: {e}"}
            return JSONResponse(body, status_code=status)

        return handle

    async def info(request):
        return 200, svc.info

    async def healthz(request):
        return 200, {"status": "ok", "model": str(model.path), "modality": model.modality}

    async def metrics(request):
        return Response(svc.metrics.render(), media_type=CONTENT_TYPE)

    async def index(request):
        csp = (
            "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; "
            "img-src 'self' data: blob:; media-src 'self' blob:"
        )  # nothing outside this server, ever
        return HTMLResponse(svc.page, headers={"Content-Security-Policy": csp, "Cache-Control": "no-store"})

    async def http_error(request, exc: HTTPException):
        request.scope["attn.kind"] = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "bad_request")
        what = {404: "not found", 405: "method not allowed"}.get(exc.status_code, exc.detail)
        return JSONResponse({"error": f"{what}: {request.method} {request.url.path}"}, status_code=exc.status_code,
                            headers=exc.headers)  # fmt: skip

    @contextlib.asynccontextmanager
    async def lifespan(app):
        await svc.batcher.start()
        log.info("serving %s (%s model, %d labels) on http://%s:%d, batches of up to %d inputs or %g ms",
                 model.path, model.modality, len(model.labels), config.host, config.port, config.max_batch,
                 config.max_wait_ms)  # fmt: skip
        yield
        await svc.batcher.stop()  # uvicorn has already answered every request in flight

    app = Starlette(routes=[Route("/", index), Route("/predict", endpoint(svc.predict), methods=["POST"]),
                            Route("/explain", endpoint(svc.explain), methods=["POST"]),
                            Route("/info", endpoint(info)), Route("/healthz", endpoint(healthz)),
                            Route("/metrics", metrics)],
                    exception_handlers={HTTPException: http_error}, lifespan=lifespan)  # fmt: skip
    return Door(app, svc)


class Door:
    """ASGI middleware at the door: the token, then one log line and the metrics per request."""

    def __init__(self, app, service: Service) -> None:
        self.app, self.svc = app, service
        token = service.config.token
        self.expected = None if not token else f"Bearer {token}".encode()

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        from starlette.responses import JSONResponse

        t0, path = time.perf_counter(), scope["path"]
        endpoint = path if path in ENDPOINTS else "other"  # a label per unknown path would grow without end
        status = [500]

        async def send_status(message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            if self.expected and endpoint in PROTECTED and not self._authorized(scope):
                scope["attn.kind"] = "unauthorized"
                answer = JSONResponse({"error": "missing or wrong token: send the header 'Authorization: Bearer "
                                                "TOKEN'"}, 401, headers={"WWW-Authenticate": "Bearer"})  # fmt: skip
                await answer(scope, receive, send_status)
            else:
                await self.app(scope, receive, send_status)
        finally:
            seconds, m = time.perf_counter() - t0, self.svc.metrics
            m.requests.labels(endpoint, str(status[0])).inc()
            m.latency.labels(endpoint).observe(seconds)
            if status[0] >= 400:
                m.errors.labels(endpoint, scope.get("attn.kind", "internal")).inc()
            client = scope.get("client") or ("-", 0)
            note = scope.get("attn.note") or scope.get("attn.kind") or ""
            log.info("%s %s %s %d %.1f ms%s", client[0], scope["method"], path, status[0], seconds * 1000,
                     f" {note}" if note else "")  # fmt: skip

    def _authorized(self, scope) -> bool:
        given = dict(scope.get("headers") or []).get(b"authorization", b"")
        return hmac.compare_digest(given, self.expected or b"")


def listen(host: str, port: int) -> socket.socket:
    """A listening socket, or a ConfigError naming the address (in use, not this machine's)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as e:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port} ({e.strerror or e})") from None
    sock.set_inheritable(True)
    return sock


def run(config: ServeConfig, app: Any, sock: socket.socket) -> None:
    """Serve until SIGTERM or Ctrl-C; both stop taking connections and answer the requests in
    flight first. `app`: the ASGI app, or with `config.workers` > 1 the import string of a
    function that builds one in each worker process (its model loaded there, once)."""
    import uvicorn

    kw = dict(access_log=False, log_config=None, server_header=False, timeout_keep_alive=5,
              timeout_graceful_shutdown=config.timeout_s + 5)  # fmt: skip
    if config.workers > 1:
        from uvicorn.supervisors import Multiprocess

        uv = uvicorn.Config(app, factory=True, workers=config.workers, **kw)
        # older uvicorn takes the worker's entry point as `target`; newer builds it itself
        import inspect

        extra = {"target": uvicorn.Server(uv).run} if "target" in inspect.signature(Multiprocess).parameters else {}
        Multiprocess(uv, sockets=[sock], **extra).run()
        return
    server = uvicorn.Server(uvicorn.Config(app, **kw))
    # uvicorn re-raises the signal it stopped for once it has drained; SIGTERM (a service
    # manager's stop) then killed the process. A drained stop is a clean one: exit 0. Ctrl-C
    # keeps Python's handler and ends as an interruption (130).
    previous = signal.signal(signal.SIGTERM, lambda *_: None)
    try:
        server.run(sockets=[sock])
    finally:
        signal.signal(signal.SIGTERM, previous)
