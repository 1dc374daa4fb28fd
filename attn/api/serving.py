"""Serving a model over HTTP (`attn serve`): its settings, the listening socket, the ASGI app
(Starlette) and the server (uvicorn). Nothing is imported before a function runs, so the
command's --help stays free of the web stack."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover - names for annotations only
    import socket

    from attn.pipelines.serve.app import ServeConfig

    from .model import Model


def serve_config(**settings: Any) -> ServeConfig:
    """The settings of a server (`ServeConfig`'s fields: host, port, workers, max_batch,
    max_wait_ms, token, max_upload_mb, timeout_s, max_inputs, debug), checked: a value out of
    range is a ConfigError, and so is a missing web stack (the `serve` extra)."""
    from attn.pipelines.serve.app import ServeConfig, require_web_stack

    require_web_stack()
    config = ServeConfig(**settings)
    config.check()
    return config


def bind(host: str, port: int) -> socket.socket:
    """A socket listening on host:port (port 0: any free one), or a ConfigError naming the address."""
    from attn.pipelines.serve.app import listen

    return listen(host, port)


def serve_app(model: Model, config: ServeConfig, page: str | None = None):
    """The ASGI app serving `model` (from `attn.load`): POST /predict and /explain, GET /info,
    /healthz, /metrics and / (a page to try it, `page` if given)."""
    from attn.pipelines.serve.app import create_app

    return create_app(model, config, page)


def serve(config: ServeConfig, app: Any, sock: socket.socket) -> None:
    """Serve on `sock` until SIGTERM or Ctrl-C (both answer the requests in flight first). `app`:
    the ASGI app, or with `config.workers` > 1 the import string of a function that builds one
    in each worker process."""
    from attn.pipelines.serve.app import run

    run(config, app, sock)
