"""`attn serve` for the serve tests: the server in a subprocess on a free loopback port (its port
read from its first log line), HTTP helpers, and the servers those tests share as fixtures: an
audio model behind a token, and a text model on two workers."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import numpy as np
import pytest

from helpers import tone, write_wav

TOKEN = "s3cret-token"


class Server:
    """`attn serve ... --port 0` in a subprocess; the port is read from its first log line."""

    def __init__(self, model: Path, *args: str, cwd: Path | None = None, token: str | None = None) -> None:
        env = dict(os.environ, ATTN_THREADS="1")
        env.pop("ATTN_TOKEN", None)
        cmd = [sys.executable, "-m", "attn.cli", "serve", "-m", str(model), "--port", "0", *args]
        if token:
            cmd += ["--token", token]
        self.token = token
        # SIGINT as from a terminal: a runner started in the background ignores it, and the server would inherit that
        self.proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # fmt: skip
        self.lines: list[str] = []
        ready = threading.Event()

        def read() -> None:
            for line in self.proc.stderr:
                self.lines.append(line.rstrip("\n"))
                if " on http://" in line:
                    ready.set()
            ready.set()

        threading.Thread(target=read, daemon=True).start()
        if not ready.wait(120) or self.proc.poll() is not None:
            self.stop()
            raise AssertionError("server did not start:\n" + "\n".join(self.lines[-30:]))
        self.port = int(re.search(r"http://127\.0\.0\.1:(\d+)", "\n".join(self.lines)).group(1))

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None,
                token: str | None = "default", timeout: float = 60) -> tuple[int, dict | str]:  # fmt: skip
        h = dict(headers or {})
        tok = self.token if token == "default" else token
        if tok:
            h["Authorization"] = f"Bearer {tok}"
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            c.request(method, path, body=body, headers=h)
            r = c.getresponse()
            data = r.read().decode()
        finally:
            c.close()
        is_json = r.getheader("content-type", "").startswith("application/json")
        return r.status, json.loads(data) if is_json else data

    def upload(self, files: list[tuple[str, bytes]], query: str = "", path: str = "/predict", **kw):
        body, ctype = multipart(files)
        return self.request("POST", path + query, body, {"Content-Type": ctype}, **kw)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def multipart(files: list[tuple[str, bytes]], field: str = "file") -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    head = 'Content-Disposition: form-data; name="{}"; filename="{}"\r\nContent-Type: application/octet-stream'
    parts = [f"--{boundary}\r\n{head.format(field, name)}\r\n\r\n".encode() + data + b"\r\n" for name, data in files]
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def attn_jsonl(*args, cwd=None) -> list[dict]:
    r = subprocess.run([sys.executable, "-m", "attn.cli", "predict", "--format", "jsonl", *map(str, args)], cwd=cwd,
                       capture_output=True, text=True, timeout=300, env=dict(os.environ, ATTN_THREADS="1"))  # fmt: skip
    assert r.returncode in (0, 1), r.stderr
    return [json.loads(x) for x in r.stdout.splitlines()]


@pytest.fixture(scope="module", name="clips")
def clips_fixture(tmp_path_factory):
    d = tmp_path_factory.mktemp("serve-clips")
    sr = 8000
    t = np.arange(int(0.5 * sr)) / sr
    write_wav(d / "sine.wav", tone(440, 0.5, sr), sr)
    write_wav(d / "chirp.wav", (0.3 * np.sin(2 * np.pi * (200 + 1500 * t) * t)).astype(np.float32), sr)
    write_wav(d / "stereo44k.wav", np.stack([tone(660, 2.2, 44100)] * 2, 1), 44100)  # resampled, 8 windows
    (d / "bad.wav").write_text("not audio")
    return d


def needs_web_stack() -> None:
    """Skip a test that runs a server where the `serve` extra is not installed (README: `.[dev]`)."""
    from attn.pipelines.serve.app import WEB_STACK

    for name in WEB_STACK:
        pytest.importorskip(name, reason=f"attn serve needs {name}: pip install 'attn[serve]'")


@pytest.fixture(scope="module", name="server")
def server_fixture(trained_model, clips):
    needs_web_stack()
    # max-batch 2: two requests fill a batch at once; a lone one waits 500 ms for company (time enough
    # for the second of two concurrent requests to arrive on a busy machine).
    s = Server(trained_model, "--max-batch", "2", "--max-wait-ms", "500", "--max-upload-mb", "0.5", token=TOKEN)
    yield s
    s.stop()


TEXT_ROWS = [(f"{q} the {n} ?", lab) for lab, q in (("HUM", "Who built"), ("LOC", "Where is"), ("NUM", "How many"))
             for n in ("bridge", "radio", "castle", "engine", "river", "tower", "piano", "camera")]  # fmt: skip


@pytest.fixture(scope="module", name="text_model")
def text_model_fixture(tmp_path_factory):
    import csv

    import attn

    d = tmp_path_factory.mktemp("serve-text")
    with open(d / "train.csv", "w", newline="") as f:
        csv.writer(f).writerows([("text", "label"), *TEXT_ROWS])
    recipe = {"data": {"train": str(d / "train.csv"), "val_fraction": 0.2, "test_fraction": 0.2},
              "features": {"kind": "text", "tokenizer": {"level": "word", "max_len": 6}, "embed_dim": 8},
              "model": {"name": "cnn1d", "filters": 8, "widths": [2]},
              "train": {"epochs": 3, "batch_size": 8, "baseline": False, "seed": 0}}  # fmt: skip
    return attn.train(recipe, out=d / "run", device="cpu").model_path


@pytest.fixture(scope="module", name="text_server")
def text_server_fixture(text_model):
    needs_web_stack()
    s = Server(text_model, "--workers", "2")  # two processes: /metrics sums them
    yield s
    s.stop()
