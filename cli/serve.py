"""attn serve"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from .common import (
    DeviceOpt,
    ModelOpt,
    QuietOpt,
    State,
    ThreadsOpt,
    auto_threads,
    cli_handlers,
    env_threads,
    handle_errors,
    setup_logging,
)

EPILOG = """\
Examples:

  attn serve -m runs/digits                        # http://127.0.0.1:8080/ : a page to try the model

  curl -F file=@clip.wav 'http://127.0.0.1:8080/predict?top_k=3'

  curl -H 'Content-Type: application/json' -d '{"texts": ["Who wrote Hamlet?"]}' http://127.0.0.1:8080/predict

  ATTN_TOKEN=s3cret attn serve -m runs/trec --host 0.0.0.0 --workers 2

Endpoints: POST /predict and /explain (the records of `attn predict --format jsonl` and `attn
explain --format json`), GET /info, /healthz, /metrics (Prometheus), / (the page). Requests that
arrive within --max-wait-ms of each other are scored in one batch of up to --max-batch inputs.
Errors are JSON {"error": ...}: 401 token, 413 upload too large, 415 wrong content type, 422
unreadable input (the CLI's error text), 504 timeout. SIGTERM or Ctrl-C answers the requests in
flight, then stops (exit 0 on SIGTERM, 130 on Ctrl-C).
"""

ENV = "ATTN_SERVE_WORKER"  # the settings a worker process (--workers N > 1) builds its app from


@handle_errors
def serve_cmd(
    model: ModelOpt = None,
    host: Annotated[str, typer.Option(help="Address to listen on (0.0.0.0: every interface).")] = "127.0.0.1",
    port: Annotated[
        int, typer.Option(min=0, max=65535, help="Port (0: any free one, its URL printed on stdout).")
    ] = 8080,
    workers: Annotated[int, typer.Option(min=1, help="Processes, each with the model loaded once.")] = 1,
    max_batch: Annotated[int, typer.Option(min=1, help="Inputs scored together in one model call, at most.")] = 32,
    max_wait_ms: Annotated[
        float, typer.Option(min=0, help="How long a request waits for others to share its batch.")
    ] = 10.0,
    token: Annotated[
        str | None,
        typer.Option(
            envvar="ATTN_TOKEN",
            help="Require 'Authorization: Bearer TOKEN' (default: $ATTN_TOKEN).",
            show_default=False,
        ),  # fmt: skip
    ] = None,
    max_upload_mb: Annotated[float, typer.Option(min=0.001, help="Largest request body (413 above).")] = 20.0,
    max_inputs: Annotated[int, typer.Option(min=1, help="Files or texts in one request, at most.")] = 64,
    timeout: Annotated[float, typer.Option(min=0.001, help="Seconds before a request gets 504.")] = 30.0,
    device: DeviceOpt = "auto",
    threads: ThreadsOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Serve a model over HTTP: predict, explain, info, metrics, and a page to try it."""
    import attn
    from attn.api import bind, serve, serve_app, serve_config

    setup_logging(quiet)
    _uvicorn_logs_through_ours()
    config = serve_config(host=host, port=port, workers=workers, max_batch=max_batch, max_wait_ms=max_wait_ms,
                          token=token or None, max_upload_mb=max_upload_mb, timeout_s=timeout, max_inputs=max_inputs,
                          debug=State.debug)  # fmt: skip
    if not token and host not in ("127.0.0.1", "localhost", "::1"):
        logging.getLogger("attn").warning("listening on %s without --token: anyone who can reach this port can "
                                          "use the model", host)  # fmt: skip
    m = attn.load(model, device)  # a bad model file is a usage error here, before any port is taken
    asked = threads or env_threads()  # given: every worker gets it; found by the load rule: split between them
    n = asked or (None if m.exported else auto_threads())
    sock = bind(host, port)
    from dataclasses import asdict, replace

    config = replace(config, port=sock.getsockname()[1])
    if port == 0:  # the port it took, for the script that asked for any (-q silences the log line that names it)
        print(f"http://{f'[{host}]' if ':' in host else host}:{config.port}", flush=True)
    if workers == 1:
        if not m.exported:
            import torch

            torch.set_num_threads(n)
        serve(config, serve_app(m, config), sock)
        return
    # Each worker loads the model itself (a process cannot share the parent's), from a private copy
    # of the file the parent checked: a worker restarted after the file was replaced (a retrain into
    # the same run) loaded the new one, and the workers answered with two models.
    import shutil

    per_worker = asked or (None if n is None else max(1, n // workers))
    with tempfile.TemporaryDirectory(prefix="attn-serve-") as d:
        metrics, copy = Path(d, "metrics"), Path(d, "model", m.path.name)
        metrics.mkdir()
        copy.parent.mkdir()
        shutil.copyfile(m.path, copy)
        os.environ[ENV] = json.dumps({"model": str(copy), "shown": str(m.path), "device": device,
                                      "threads": per_worker, "quiet": quiet, "config": asdict(config)})  # fmt: skip
        del m
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics)  # /metrics sums the workers (serve/metrics.py)
        serve(config, "attn.cli.serve:worker_app", sock)


def worker_app():
    """The app of one worker process (`--workers N`), from the settings the parent left in $ATTN_SERVE_WORKER."""
    import attn
    from attn.api import serve_app, serve_config

    s = json.loads(os.environ[ENV])
    setup_logging(s["quiet"])
    _uvicorn_logs_through_ours()
    m = attn.load(s["model"], s["device"])  # the parent's copy
    if s["threads"] and not m.exported:
        import torch

        torch.set_num_threads(s["threads"])
    app = serve_app(m, serve_config(**s["config"]))
    m.path = Path(s["shown"])  # what the log, /healthz and /info name: the file the user gave
    app.svc.info["path"] = s["shown"]
    return app


def _uvicorn_logs_through_ours() -> None:
    """uvicorn's own messages (its errors; its startup chatter is INFO and stays quiet) on the
    same stderr lines as attn's."""
    ours = logging.getLogger("attn")
    uv = logging.getLogger("uvicorn")
    uv.handlers = cli_handlers(ours)
    uv.setLevel(logging.WARNING)
    uv.propagate = False
    for name in ("python_multipart", "multipart"):  # its parse warnings repeat the 400 the client gets, unprefixed
        parser = logging.getLogger(name)
        parser.handlers, parser.propagate = [logging.NullHandler()], False
