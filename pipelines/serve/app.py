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
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from attn.errors import ConfigError

from .batching import Batcher, BatchInfo
from .inputs import ApiError, RequestReader, named, with_failures
from .metrics import CONTENT_TYPE, Metrics

log = logging.getLogger("attn.serve")

ENDPOINTS = ("/", "/predict", "/explain", "/info", "/healthz", "/metrics")
PROTECTED = ("/predict", "/explain", "/info", "/metrics")  # the page and /healthz carry no model data


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


class Service:
    """The app's state: the model (an `attn.Model`), its batcher and metrics."""

    def __init__(self, model, config: ServeConfig, page: str = "") -> None:
        self.model, self.config, self.page = model, config, page
        self.text = model.modality == "text"
        self.info = model.info()
        self.metrics = Metrics()
        self.reader = RequestReader(model.modality, config.max_upload_mb, config.max_inputs,
                                    bool(getattr(model.recipe.data, "multi_label", False)),
                                    model.min_similarity is not None)  # fmt: skip
        self.batcher = Batcher(self._run_batch, config.max_batch, config.max_wait_ms, on_batch=self._on_batch)

    # model thread ---------------------------------------------------------------------------------
    def _run_batch(self, key: tuple, groups: list[list]) -> list[list[dict[str, Any]]]:
        """One model pass over every request's inputs; records split back per request, in order."""
        top_k, per_frame, how, min_score, threshold, min_similarity = key
        flat = [x for g in groups for x in g]
        opts = {"min_score": min_score, "threshold": threshold, "min_similarity": min_similarity}
        opts |= {} if self.text else {"per_frame": per_frame, "aggregate": how}
        inputs = flat if self.text else [u.path for u in flat]
        records = [named(r, x) for r, x in zip(self.model.predict_iter(inputs, top_k, **opts), flat, strict=True)]
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
        key = self.reader.options(request.query_params)
        async with self.reader.inputs(request) as items:
            self.metrics.queued.inc(len(items))
            try:
                records, info = await self.batcher.submit(key, items)
            finally:
                self.metrics.queued.dec(len(items))
        request.scope["attn.note"] = f"{len(items)} input(s), batch {info.id} ({info.requests} request(s))"
        batch = {"id": info.id, "requests": info.requests, "items": info.items}
        if self.config.workers > 1:  # each worker numbers its own batches: the id alone named two
            batch["worker"] = os.getpid()
        body: dict[str, Any] = {"records": records, "batch": batch}
        return with_failures(body, records)

    async def explain(self, request) -> tuple[int, dict[str, Any]]:
        self.reader.options(request.query_params, allowed=("label",))
        if self.model.exported:
            raise ApiError(422, f"{self.model.path.name}: explain needs the .attn model (an exported ONNX file "
                                "only predicts)", "bad_request")  # fmt: skip
        label = request.query_params.get("label")  # as `attn explain --label`: this label, not the top one
        if label is not None and label not in self.model.labels:
            raise ApiError(422, f"label={label!r}: not one of the model's labels ({', '.join(self.model.labels)})",
                           "bad_request")  # fmt: skip
        async with self.reader.inputs(request) as items:
            inputs = items if self.text else [u.path for u in items]
            records = await self.batcher.call(lambda: list(self.model.explain_iter(inputs, label=label)))
        request.scope["attn.note"] = f"{len(items)} input(s)"
        return with_failures({"records": [named(r, x) for r, x in zip(records, items, strict=True)]}, records)


def create_app(model, config: ServeConfig, page: str | None = None):
    """The ASGI app serving `model` (an `attn.Model`, loaded once for this process)."""
    from starlette.applications import Starlette
    from starlette.exceptions import HTTPException
    from starlette.responses import HTMLResponse, Response
    from starlette.responses import JSONResponse as StarletteJSON
    from starlette.routing import Route

    from .page import PAGE

    class JSONResponse(StarletteJSON):
        """A record that echoes an input holding a lone surrogate (a JSON "\\ud800", not UTF-8 text)
        cannot be encoded as UTF-8: written with that character escaped, still valid JSON, where it
        was a plain-text 500 raised outside the endpoint's error handling."""

        def render(self, content) -> bytes:
            try:
                return super().render(content)
            except UnicodeEncodeError:
                return json.dumps(content, ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode()

    svc = Service(model, config, PAGE if page is None else page)

    from starlette.requests import ClientDisconnect

    def endpoint(fn: Callable) -> Callable:
        async def handle(request):
            try:
                status, body = await asyncio.wait_for(fn(request), config.timeout_s)
                if status >= 400:  # an input that could not be read (`with_failures`): the client's, not a bug
                    request.scope.setdefault("attn.kind", "unreadable_input")
            except ClientDisconnect:  # the client left mid-upload: nobody to answer, and no fault of ours
                request.scope["attn.kind"] = "client_disconnected"
                status, body = CLIENT_CLOSED, {"error": "the client closed the connection before the request was read"}
            except ApiError as e:
                request.scope["attn.kind"] = e.kind
                status, body = e.status, {"error": e.message, **e.extra}
            except ConfigError as e:  # an option this model refuses, found by the model code: the client's
                request.scope["attn.kind"] = "bad_request"
                status, body = 422, {"error": str(e)}
            except asyncio.TimeoutError:
                request.scope["attn.kind"] = "timeout"
                if request.method == "POST" and not request.scope.get("attn.body_read"):  # a slow upload: the client's
                    status, body = 408, {"error": f"the request body did not arrive within {config.timeout_s:g} s "
                                                  "(--timeout)"}  # fmt: skip
                else:
                    status, body = 504, {"error": f"no answer within {config.timeout_s:g} s (--timeout); the server "
                                                  "is busy or the input too long"}  # fmt: skip
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
                 model.path, model.modality, len(model.labels),
                 f"[{config.host}]" if ":" in config.host else config.host,  # an IPv6 address in a URL
                 config.port, config.max_batch, config.max_wait_ms)  # fmt: skip
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
        scheme, _, token = given.partition(b" ")
        if scheme.lower() == b"bearer":  # the scheme's name is case-insensitive (RFC 7235); the token is not
            given = b"Bearer " + token.strip()
        return hmac.compare_digest(given, self.expected or b"")


CLIENT_CLOSED = 499  # nginx's status for a client that left before the answer: logged and counted, never sent

WEB_STACK = ("uvicorn", "starlette", "prometheus_client")  # the `serve` extra's packages the server imports


def require_web_stack() -> None:
    """A ConfigError naming what `pip install 'attn[serve]'` would add, before a model loads or a
    port is taken (found without importing it: `attn serve --help` stays light)."""
    import importlib.util

    def missing(name: str) -> bool:
        try:
            return importlib.util.find_spec(name) is None
        except (ImportError, ValueError):  # a module set to None in sys.modules, a broken install
            return True

    gone = [m for m in WEB_STACK if missing(m)]
    if missing("python_multipart") and missing("multipart"):  # uploads: without it every file was a 400
        gone.append("python-multipart")
    if gone:
        raise ConfigError(f"attn serve needs {', '.join(gone)}: pip install 'attn[serve]'")


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

        class Supervisor(Multiprocess):  # Ctrl-C ends as an interruption (130), as with one worker; it was 0
            interrupted = False

            def handle_int(self) -> None:
                self.interrupted = True
                super().handle_int()

        supervisor = Supervisor(uv, sockets=[sock], **extra)
        supervisor.run()  # the workers drain the requests in flight, then stop
        if supervisor.interrupted:
            raise KeyboardInterrupt
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
