"""`attn serve` under load on loopback: 200 requests from a bounded client (at most `CONCURRENCY`
in flight), one FSDD file each, against a shell loop of `attn predict FILE` and one in-process
batch `Model.predict`; every answer is checked against `attn predict`. Then 100 bad requests,
and the server's memory before and after them."""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import re
import statistics
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

from .cases_cli import _model
from .common import attn_cmd, case, data_root

CONCURRENCY = 32  # the client's bound: requests in flight at once
REQUESTS = 200


_conn = threading.local()  # one kept-alive connection per client thread, as an HTTP client pool keeps


def _post(port: int, path: str, body: bytes, ctype: str) -> tuple[int, dict, float]:
    t0 = time.perf_counter()
    c = getattr(_conn, "c", None)
    if c is None or c.port != port:
        c = _conn.c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        c.request("POST", path, body=body, headers={"Content-Type": ctype})
        r = c.getresponse()
        status, data = r.status, json.loads(r.read())
        if r.getheader("connection", "").lower() == "close":
            c.close()
    except (http.client.HTTPException, OSError):
        c.close()
        _conn.c = None
        raise
    return status, data, time.perf_counter() - t0


def _multipart(name: str, data: bytes) -> tuple[bytes, str]:
    b = uuid.uuid4().hex
    head = f'--{b}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n\r\n'.encode()
    return head + data + f"\r\n--{b}--\r\n".encode(), f"multipart/form-data; boundary={b}"


async def _load(port: int, blobs: list[tuple[str, bytes]], concurrency: int) -> list[tuple[int, dict, float]]:
    """Each file posted once, at most `concurrency` requests in flight, over as many kept-alive
    connections (asyncio: a light client, so the server gets the cores the measurement is about)."""
    todo, out = list(enumerate(blobs)), [None] * len(blobs)

    async def worker() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        while todo:
            i, (name, data) = todo.pop()
            body, ctype = _multipart(name, data)
            t0 = time.perf_counter()
            writer.write(f"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {ctype}\r\n"
                         f"Content-Length: {len(body)}\r\n\r\n".encode() + body)  # fmt: skip
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))
            payload = json.loads(await reader.readexactly(length))
            out[i] = (int(head.split(b" ", 2)[1]), payload, time.perf_counter() - t0)
        writer.close()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return out  # type: ignore[return-value]


def _start(model: str, *args: str) -> tuple[subprocess.Popen, int, list[str]]:
    proc = subprocess.Popen([*attn_cmd(), "serve", "-m", model, "--port", "0", *args], stderr=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, text=True)  # fmt: skip
    lines: list[str] = []
    ready = threading.Event()

    def read() -> None:
        for line in proc.stderr:
            lines.append(line)
            ready.set() if " on http://" in line else None
        ready.set()

    threading.Thread(target=read, daemon=True).start()
    ready.wait(180)
    found = re.search(r"http://127\.0\.0\.1:(\d+)", "".join(lines))
    if not found:
        proc.kill()
        raise RuntimeError("attn serve did not start: " + "".join(lines)[-500:])
    return proc, int(found.group(1)), lines


def _rss_mb(pid: int) -> float:
    return int(re.search(r"VmRSS:\s+(\d+)", Path(f"/proc/{pid}/status").read_text()).group(1)) / 1024


def _passes(port: int, blobs, expected: dict, quick: bool) -> dict:
    """The 200 requests, passes of them: the first warms up (torch meets each batch shape once)
    and is not timed; throughput from the median timed pass, latency over all timed requests."""
    assert all(_post(port, "/predict", *_multipart(*blobs[0]))[0] == 200 for _ in range(3))
    walls, answers, equal = [], [], True
    for i in range(2 if quick else 4):
        t0 = time.perf_counter()
        got = asyncio.run(_load(port, blobs, CONCURRENCY))
        walls.append(time.perf_counter() - t0)
        answers += got if i else []
        equal = equal and all(s == 200 and a["records"] == [expected[n]]
                              for (n, _), (s, a, _) in zip(blobs, got, strict=True))  # fmt: skip
    lat = sorted(t for _, _, t in answers)
    return {"rps": len(blobs) / statistics.median(walls[1:]), "p50_ms": round(1000 * statistics.median(lat), 1),
            "p99_ms": round(1000 * lat[int(0.99 * len(lat))], 1), "timed_passes": len(walls) - 1,
            "mean_batch": round(statistics.mean(a["batch"]["items"] for _, a, _ in answers), 1),
            "records_equal_predict": equal}  # fmt: skip


def _bad_requests(port: int, pid: int) -> dict:
    """100 bad requests after 100 others (the allocator settles on its working set in those):
    their statuses, and the server's resident memory before and after them."""
    bad = [(b"\0garbage" * 50, "multipart/form-data; boundary=z"), (b"", "multipart/form-data; boundary=z"),
           (b'{"texts": ["x"]}', "application/json"), (b"", None),
           (b"x" * (21 * 2**20), "multipart/form-data; boundary=z")]  # fmt: skip
    codes: list[int] = []
    rss = [_rss_mb(pid)]
    for _ in range(2):
        for i in range(100):
            body, ctype = bad[i % len(bad)]
            if ctype is None:  # an unreadable "audio" file
                body, ctype = _multipart("junk.wav", os.urandom(4000))
            codes.append(_post(port, "/predict", body, ctype)[0])
        rss.append(_rss_mb(pid))
    return {"codes": codes, "rss": rss, "alive": _post(port, "/health", b"", "text/plain")[0] == 404
            and _post(port, "/predict", *_multipart("x.wav", b"RIFF"))[0] == 422}  # fmt: skip


def serve(quick: bool = False) -> list[dict]:
    root = data_root()
    if root is None:
        return [{"case": "serve", "skipped": "FSDD not found"}]
    load_before = os.getloadavg()[0]
    model = _model("audio", root)
    files = sorted((root / "fsdd" / "recordings").glob("*.wav"))[:REQUESTS]
    blobs = [(f.name, f.read_bytes()) for f in files]
    t0 = time.perf_counter()
    r = subprocess.run([*attn_cmd(), "predict", "-m", model, "--format", "jsonl", "-"],
                       input="\n".join(map(str, files)), capture_output=True, text=True)  # fmt: skip
    one_call = time.perf_counter() - t0  # one `attn predict` of all the files: start, torch and model load included
    expected = {Path(rec["input"]).name: {**rec, "input": Path(rec["input"]).name}
                for rec in map(json.loads, r.stdout.splitlines())}  # fmt: skip
    runs, bad = {}, {}
    for workers in (1, 2):
        proc, port, _ = _start(model, "--max-batch", "32", "--max-wait-ms", "10", "--workers", str(workers))
        try:
            runs[workers] = _passes(port, blobs, expected, quick)
            if workers == 1:
                bad = _bad_requests(port, proc.pid)
        finally:
            proc.terminate()
            proc.wait(60)

    # The references: one `attn predict FILE` per file (a sample, per file), and one in-process batch.
    loop = files[: 5 if quick else 10]
    t0 = time.perf_counter()
    for f in loop:
        subprocess.run([*attn_cmd(), "predict", "-m", model, str(f)], capture_output=True, text=True, check=True)
    per_call = (time.perf_counter() - t0) / len(loop)
    code = ("import sys, time, attn\nfrom attn.cli.common import set_threads\nm = attn.load(sys.argv[1])\n"
            "set_threads(None)\nfiles = sys.argv[2:]\nm.predict(files[:20])\nts = []\nfor _ in range(3):\n"
            "    t0 = time.perf_counter(); m.predict(files); ts.append(time.perf_counter() - t0)\n"
            "print(sorted(ts)[1])")  # fmt: skip
    r = subprocess.run([sys.executable, "-c", code, model, *map(str, files)], capture_output=True, text=True,
                       check=True)  # fmt: skip
    in_process = float(r.stdout.split()[-1])
    load = {"load_avg_before": round(load_before, 2), "load_avg_after": round(os.getloadavg()[0], 2)}
    rows = []
    for workers, m in runs.items():
        extra = {**{k: v for k, v in m.items() if k != "rps"}, "concurrency": CONCURRENCY, "max_batch": 32,
                 "max_wait_ms": 10, **load}  # fmt: skip
        rps, ok = m["rps"], m["records_equal_predict"]
        w = f"--workers {workers}, " if workers > 1 else ""
        rows += [
            case(f"serve: 200 requests, {w}32 in flight, vs a shell loop", f"{REQUESTS} FSDD files, one a request, "
                 "digits CNN", "one `attn predict FILE` per file", rps, 1 / per_call, "files/s", "≥ 10x",
                 rps >= 10 / per_call and ok, per_call_seconds=round(per_call, 3), **extra),
            case(f"serve: 200 requests, {w}32 in flight, vs one attn predict call", f"{REQUESTS} FSDD files, "
                 "digits CNN", "`attn predict -m M -` with all the paths, one process", rps, REQUESTS / one_call,
                 "files/s", "≥ 0.5x", rps >= 0.5 * REQUESTS / one_call and ok, call_seconds=round(one_call, 3),
                 **extra),
            case(f"serve: 200 requests, {w}32 in flight, vs in-process batch", f"{REQUESTS} FSDD files, digits CNN",
                 "attn.load(M).predict(all files), one call", rps, REQUESTS / in_process, "files/s", "≥ 0.5x",
                 rps >= 0.5 * REQUESTS / in_process and ok, batch_seconds=round(in_process, 3), **extra),
        ]  # fmt: skip
    codes, rss = bad["codes"], bad["rss"]
    rows.append(case("serve: 100 bad requests, server memory", "garbage, empty, wrong type, unreadable, 21 MB upload",
                     "resident memory before them (after 100 others)", rss[2], rss[1], "MB",
                     "flat (≤ +5 MB), each a 4xx, alive after", rss[2] <= rss[1] + 5 and bad["alive"]
                     and all(400 <= c < 500 for c in codes), higher_is_better=False, rss_before_any_mb=round(rss[0], 1),
                     statuses=" ".join(f"{c}x{codes.count(c)}" for c in sorted(set(codes)))))  # fmt: skip
    return rows
