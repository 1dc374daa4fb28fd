"""`attn serve` as clients see it: the server runs in a subprocess on a free loopback port and
every check goes through HTTP (records against `attn predict`, batching, limits, the token,
SIGTERM draining). The page in a real browser: test_serve_page.py."""

from __future__ import annotations

import http.client
import json
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from serving import (  # noqa: F401 (fixtures)
    TOKEN,
    Server,
    attn_jsonl,
    clips_fixture,
    multipart,
    needs_web_stack,
    server_fixture,
    text_model_fixture,
    text_server_fixture,
)


def test_records_are_those_of_attn_predict(server, clips, trained_model):
    names = ["sine.wav", "chirp.wav", "stereo44k.wav", "bad.wav"]
    expected = attn_jsonl("-m", trained_model, "--top-k", "2", "--per-frame", *names, cwd=clips)
    status, body = server.upload([(n, (clips / n).read_bytes()) for n in names], "?top_k=2&per_frame=true")
    assert status == 422 and body["records"] == expected
    assert body["error"] == expected[3]["error"] and body["error"].startswith("bad.wav: ")  # the CLI's line
    status, body = server.upload([("chirp.wav", (clips / "chirp.wav").read_bytes())], "?aggregate=vote")
    assert status == 200 and body["records"] == attn_jsonl("-m", trained_model, "--aggregate", "vote", "chirp.wav",
                                                           cwd=clips)  # fmt: skip
    status, info = server.request("GET", "/info")
    r = subprocess.run([sys.executable, "-m", "attn.cli", "info", str(trained_model), "--format", "json"],
                       capture_output=True, text=True, timeout=120)  # fmt: skip
    assert status == 200 and info == json.loads(r.stdout)
    status, body = server.upload([("sine.wav", (clips / "sine.wav").read_bytes())], path="/explain")
    assert status == 200 and body["records"][0]["input"] == "sine.wav"
    assert abs(sum(body["records"][0]["weights"]) - 1) < 1e-3
    other = next(k for k in info["labels"] if k != body["records"][0]["label"])  # as `attn explain --label`
    status, body = server.upload([("sine.wav", (clips / "sine.wav").read_bytes())], f"?label={other}", "/explain")
    assert status == 200 and body["records"][0]["label"] == other
    status, body = server.upload([("sine.wav", (clips / "sine.wav").read_bytes())], "?label=nope", "/explain")
    assert status == 422 and "label='nope': not one of the model's labels" in body["error"]


def test_two_concurrent_requests_are_scored_in_one_batch(server, clips):
    wav = (clips / "sine.wav").read_bytes()
    barrier = threading.Barrier(2)

    def one(name):
        barrier.wait()
        return server.upload([(name, wav)])

    with ThreadPoolExecutor(2) as pool:
        (s1, b1), (s2, b2) = pool.map(one, ["a.wav", "b.wav"])
    assert s1 == s2 == 200 and b1["records"][0]["input"] == "a.wav" and b2["records"][0]["input"] == "b.wav"
    assert b1["batch"]["id"] == b2["batch"]["id"] and b1["batch"]["requests"] == 2
    _, metrics = server.request("GET", "/metrics")
    alone = float(re.search(r'attn_batch_requests_bucket\{le="1.0"\} (\S+)', metrics).group(1))
    total = float(re.search(r"attn_batch_requests_count (\S+)", metrics).group(1))
    assert total > alone  # at least one batch held more than one request


def test_the_batcher_groups_by_options_caps_batches_and_never_splits_a_request():
    import asyncio

    from attn.pipelines.serve.batching import Batcher

    seen = []

    def run(key, groups):
        seen.append((key, [len(g) for g in groups]))
        return [[f"{key}:{x}" for x in g] for g in groups]

    async def main():
        b = Batcher(run, max_batch=3, max_wait_ms=50)
        await b.start()
        jobs = [("a", [1]), ("a", [2, 3]), ("b", [4]), ("a", [5]), ("a", [6, 7, 8, 9])]
        out = await asyncio.gather(*(b.submit(k, items) for k, items in jobs))
        await b.stop()
        return out

    out = asyncio.run(main())
    assert [records for records, _ in out] == [["a:1"], ["a:2", "a:3"], ["b:4"], ["a:5"], ["a:6", "a:7", "a:8", "a:9"]]
    assert [info.id for _, info in out] == [1, 1, 2, 3, 4]  # the first two share a batch of 3 inputs
    assert seen == [("a", [1, 2]), ("b", [1]), ("a", [1]), ("a", [4])]  # options apart; 4 > 3 runs alone


def test_bad_requests_get_json_4xx_and_the_server_lives_on(server, clips):
    wav = (clips / "sine.wav").read_bytes()
    garbage = np.random.default_rng(0).bytes(3000)
    form = multipart([("x.wav", wav)])
    cases = [  # (expected status, method, path, body, headers, token)
        (422, "POST", "/predict", multipart([("junk.wav", garbage)])[0], {"Content-Type": multipart([])[1]}, "default"),
        (400, "POST", "/predict", b"", {"Content-Type": form[1]}, "default"),
        (400, "POST", "/predict", b"--nope\r\n\r\n", {"Content-Type": "multipart/form-data; boundary=xyz"}, "default"),
        (413, "POST", "/predict", multipart([("big.wav", b"\0" * 600_000)])[0], {"Content-Type": form[1]}, "default"),
        (415, "POST", "/predict", b'{"texts": ["hi"]}', {"Content-Type": "application/json"}, "default"),
        (415, "POST", "/predict", wav, {"Content-Type": "audio/wav"}, "default"),
        (422, "POST", "/predict?colour=red", form[0], {"Content-Type": form[1]}, "default"),
        (422, "POST", "/predict?top_k=0", form[0], {"Content-Type": form[1]}, "default"),
        (422, "POST", "/predict?top_k=%C2%B9", form[0], {"Content-Type": form[1]}, "default"),  # "¹": was a 500
        (422, "POST", "/predict?top_k=2&top_k=3", form[0], {"Content-Type": form[1]}, "default"),  # was the last
        (422, "POST", "/predict?min_similarity=0.5", form[0], {"Content-Type": form[1]}, "default"),  # no novelty check
        (401, "POST", "/predict", form[0], {"Content-Type": form[1]}, None),
        (401, "GET", "/info", None, {}, "wrong"),
        (401, "GET", "/metrics", None, {}, None),
        (404, "GET", "/nothing-here", None, {}, "default"),
        (405, "GET", "/predict", None, {}, "default"),
        (405, "DELETE", "/info", None, {}, "default"),
        (413, "POST", "/predict", *_many(65), "default"),  # over --max-inputs (64)
    ]
    # the boundaries of the two "multipart" bodies above differ from the header's: fix the first
    body, ctype = multipart([("junk.wav", garbage)])
    cases[0] = (422, "POST", "/predict", body, {"Content-Type": ctype}, "default")
    # an unknown (non-file) field
    b = uuid.uuid4().hex
    field = (f'--{b}\r\nContent-Disposition: form-data; name="colour"\r\n\r\nred\r\n--{b}--\r\n').encode()
    cases.append((422, "POST", "/predict", field, {"Content-Type": f"multipart/form-data; boundary={b}"}, "default"))
    rss_before = _rss(server.proc.pid)
    for i in range(100):
        want, method, path, body, headers, token = cases[i % len(cases)]
        status, answer = server.request(method, path, body, headers, token=token)
        assert status == want and isinstance(answer, dict) and answer["error"], (cases[i % len(cases)][:3], answer)
        assert "\n" not in answer["error"]
    assert _rss(server.proc.pid) < rss_before + 40 * 2**20  # memory flat (40 MB of slack for allocator noise)
    status, body = server.upload([("junk.wav", garbage)])
    assert body["error"] == "junk.wav: not a readable audio file (Format not recognised)"  # the CLI's text
    assert server.request("GET", "/healthz", token=None) == (200, {"status": "ok", "model": str(server_model(server)),
                                                                   "modality": "audio"})  # fmt: skip
    assert server.upload([("sine.wav", wav)])[0] == 200
    # the scheme's name is case-insensitive (RFC 7235): "bearer" was refused
    lower = {"Content-Type": form[1], "Authorization": f"bearer {server.token}"}
    assert server.request("POST", "/predict", form[0], lower, token=None)[0] == 200
    logged = [line for line in server.lines if re.match(r"attn: 127\.0\.0\.1 (GET|POST|DELETE) /", line)]
    assert len(logged) >= 100  # one line per request
    assert all(line.startswith("attn: ") for line in server.lines), [x for x in server.lines if "attn: " not in x]
    # a client that leaves mid-upload: counted as such (499), not as a bug of the server's
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        head = f"POST /predict HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {server.token}\r\n" \
               f"Content-Type: {form[1]}\r\nContent-Length: 1000000\r\n\r\n"  # fmt: skip
        sock.sendall(head.encode() + form[0][:100])
    deadline = time.time() + 10
    while not any(" 499 " in line for line in server.lines) and time.time() < deadline:
        time.sleep(0.05)
    _, metrics = server.request("GET", "/metrics")
    assert re.search(r'attn_errors_total\{endpoint="/predict",kind="too_large"\} [1-9]', metrics)
    assert re.search(r'attn_errors_total\{endpoint="/predict",kind="unauthorized"\} [1-9]', metrics)
    assert re.search(r'attn_errors_total\{endpoint="/predict",kind="unreadable_input"\} [1-9]', metrics)
    assert re.search(r'attn_errors_total\{endpoint="/predict",kind="client_disconnected"\} 1', metrics), metrics
    assert 'kind="internal"' not in metrics and not any("internal error" in line for line in server.lines)


def _many(n: int) -> tuple[bytes, dict]:
    body, ctype = multipart([(f"{i}.wav", b"RIFF") for i in range(n)])
    return body, {"Content-Type": ctype}


def test_predict_takes_a_per_request_min_score_validated_like_the_cli(server, clips):
    wav = [("sine.wav", (clips / "sine.wav").read_bytes())]
    status, plain = server.upload(wav)
    rec = plain["records"][0]
    assert status == 200 and rec["label"] != "unknown"
    status, above = server.upload(wav, f"?min_score={min(1.0, rec['score'] + 1e-6)}")
    got = above["records"][0]
    assert status == 200 and got["label"] == "unknown" and got["best_label"] == rec["label"]
    assert got["score"] == rec["score"]
    assert server.upload(wav)[1]["records"][0]["label"] == rec["label"]  # an option holds for its own request only
    for query, words in (("?min_score=1.5", "min_score"), ("?min_score=abc", "min_score"),
                         ("?min_similarity=-2", "min_similarity"), ("?threshold=0.3", "multi-label")):  # fmt: skip
        status, body = server.upload(wav, query)
        assert status == 422 and words in body["error"] and "\n" not in body["error"], (query, body)


def server_model(server: Server) -> str:
    return re.search(r"serving (\S+) ", "\n".join(server.lines)).group(1)


def _rss(pid: int) -> int:
    text = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", text).group(1)) * 1024


def test_sigterm_answers_requests_in_flight_then_exits_zero(trained_model, clips):
    needs_web_stack()
    # a lone request waits 1.5 s for company: SIGTERM comes while it is in flight
    s = Server(trained_model, "--max-wait-ms", "1500", "--timeout", "3")
    try:
        c = http.client.HTTPConnection("127.0.0.1", s.port, timeout=30)  # a client that stalls mid-upload
        c.putrequest("POST", "/predict")
        c.putheader("Content-Type", "multipart/form-data; boundary=x")
        c.putheader("Content-Length", "1000")
        c.endheaders(b"--x\r\n")
        t0 = time.perf_counter()
        assert c.getresponse().status == 408 and time.perf_counter() - t0 < 10  # the client's: was a 504
        c.close()
        with ThreadPoolExecutor(1) as pool:
            answer = pool.submit(s.upload, [("sine.wav", (clips / "sine.wav").read_bytes())])
            deadline = time.perf_counter() + 10
            while "attn_queued_items 1.0" not in s.request("GET", "/metrics")[1]:  # it waits for the model
                assert time.perf_counter() < deadline and not answer.done(), "the request never queued"
                time.sleep(0.02)
            s.proc.send_signal(signal.SIGTERM)
            status, body = answer.result(timeout=30)
        assert status == 200 and body["records"][0]["label"]
        assert s.proc.wait(30) == 0
        assert any("POST /predict 200" in line for line in s.lines)
    finally:
        s.stop()


def test_serve_imports_nothing_until_it_runs_and_refuses_bad_settings(tmp_path, trained_model):
    code = ("import sys, attn\nfrom attn.cli.app import app\ntry: app(['serve', '--help'])\nexcept SystemExit: pass\n"
            "bad = [m for m in ('uvicorn', 'starlette', 'prometheus_client', 'torch') if m in sys.modules]\n"
            "assert not bad, bad")  # fmt: skip
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    needs_web_stack()  # the settings below are checked once the server's packages are known to be there
    r = subprocess.run([sys.executable, "-m", "attn.cli", "serve", "-m", str(tmp_path / "none.attn")],
                       capture_output=True, text=True, timeout=120)  # fmt: skip
    assert r.returncode == 2 and r.stderr.strip().endswith("model file not found") and "Traceback" not in r.stderr
    with __import__("socket").socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        r = subprocess.run([sys.executable, "-m", "attn.cli", "serve", "-m", str(trained_model), "--port",
                            str(taken.getsockname()[1])], capture_output=True, text=True, timeout=120)  # fmt: skip
    assert r.returncode == 2 and "cannot listen on 127.0.0.1:" in r.stderr and "Traceback" not in r.stderr


def test_serve_without_the_serve_extra_says_how_to_get_it(trained_model):
    code = ("import sys\nsys.modules['uvicorn'] = None  # as if not installed\nfrom attn.cli.app import app\n"
            f"app(['serve', '-m', {str(trained_model)!r}])")  # fmt: skip
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr
    line = r.stderr.strip()  # names uvicorn, and whatever else of the extra this environment lacks
    assert "\n" not in line and line.startswith("error: attn serve needs ") and "uvicorn" in line
    assert line.endswith(": pip install 'attn[serve]'")
    # without python-multipart the server started and answered every upload 400 (the client's fault)
    code = code.replace(
        "sys.modules['uvicorn'] = None", "sys.modules['python_multipart'] = sys.modules['multipart'] = None"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "python-multipart" in r.stderr, r.stderr


def test_a_text_model_takes_json_and_answers_as_attn_predict_text(text_server, text_model):
    s = text_server
    texts = ["Who built the radio ?", "Where is a very very long river of words here ?", "  "]
    status, body = s.request("POST", "/predict?top_k=2", json.dumps({"texts": texts}).encode(),
                             {"Content-Type": "application/json"})  # fmt: skip
    args = [a for t in texts for a in ("--text", t)]
    assert status == 422 and body["records"] == attn_jsonl("-m", text_model, "--top-k", "2", *args)
    assert body["error"] == "text 3: empty text"
    for doc, want in (({"texts": "hi"}, 422), ({"texts": ["a"], "lang": "en"}, 422), ({"texts": [1]}, 422)):
        assert s.request("POST", "/predict", json.dumps(doc).encode(), {"Content-Type": "application/json"})[0] \
            == want  # fmt: skip
    assert s.request("POST", "/predict", b"{nope", {"Content-Type": "application/json"})[0] == 400
    # a lone surrogate (a JSON "\ud800", no UTF-8 text) echoed in a record was a plain-text 500 'Internal Server Error'
    status, body = s.request("POST", "/predict", b'{"texts": ["\\ud800"]}', {"Content-Type": "application/json"})
    assert status == 422 and body["error"] == "text 1: not valid UTF-8", body
    assert s.request("POST", "/predict?per_frame=1", b'{"texts": ["a b"]}',
                     {"Content-Type": "application/json"})[0] == 422  # fmt: skip
    # aggregate combines a recording's windows: on a text it was accepted and ignored
    status, body = s.request(
        "POST", "/predict?aggregate=max", b'{"texts": ["a b"]}', {"Content-Type": "application/json"}
    )
    assert status == 422 and body["error"].startswith("aggregate is for audio models")
    cmd = [sys.executable, "-m", "attn", "predict", "-m", text_model, "--text", "a b", "--aggregate", "max"]
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.strip() == (
        "error: --aggregate is for audio models (how a recording's windows combine); this is a text model"
    )
    status, body = s.request("POST", "/explain", json.dumps({"texts": texts[:1]}).encode(),
                             {"Content-Type": "application/json"})  # fmt: skip
    assert status == 200 and body["records"][0]["tokens"] == ["who", "built", "the", "radio", "?"]
    counts = []
    for _ in range(6):  # the answers come from either process; every count is the sum of both
        _, metrics = s.request("GET", "/metrics")
        counts.append(sum(float(x) for x in re.findall(r'attn_requests_total\{endpoint="/predict",status="422"\} '
                                                        r"(\S+)", metrics)))  # fmt: skip
    assert set(counts) == {7.0}, counts  # the first request, three bad documents, a surrogate, per_frame, aggregate


def test_ctrl_c_stops_a_server_of_several_workers_as_an_interruption(text_model):
    """With --workers 2 Ctrl-C exited 0 (the supervisor's stop); one worker, README and --help say 130."""
    import signal

    needs_web_stack()
    s = Server(text_model, "--workers", "2")
    try:
        assert s.request("GET", "/healthz", token=None)[0] == 200
        s.proc.send_signal(signal.SIGINT)
        assert s.proc.wait(60) == 130
    finally:
        s.stop()


def test_options_a_multi_label_model_refuses_are_the_clients_422():
    """aggregate=vote came back a 500 'internal error: ConfigError' from the model code, and
    top_k was accepted and ignored (the records hold every class's score)."""
    import pytest

    from attn.pipelines.serve.inputs import ApiError, RequestReader

    reader = RequestReader("audio", 10.0, 10, multi_label=True)
    assert reader.options({"aggregate": "max"})[2] == "max"
    for query, words in (({"aggregate": "vote"}, "aggregate=vote counts each window's one best label"),
                         ({"top_k": "2"}, "top_k is for single-label models")):  # fmt: skip
        with pytest.raises(ApiError) as e:
            reader.options(query)
        assert e.value.status == 422 and e.value.message.startswith(words)


def test_a_compressed_body_is_read_as_the_client_sent_it(text_server):
    """`Content-Encoding: gzip` (requests' and curl --compressed's clients, proxies) was read as
    raw bytes: a gzipped JSON answered 400 "invalid JSON"."""
    import gzip
    import zlib

    s, doc = text_server, json.dumps({"texts": ["Who built the radio ?"]}).encode()
    want = s.request("POST", "/predict", doc, {"Content-Type": "application/json"})
    assert want[0] == 200
    for coding, body in (("gzip", gzip.compress(doc)), ("deflate", zlib.compress(doc)),
                         ("x-gzip", gzip.compress(doc)), ("identity", doc)):  # fmt: skip
        got = s.request("POST", "/predict", body, {"Content-Type": "application/json", "Content-Encoding": coding})
        assert got[0] == 200 and got[1]["records"] == want[1]["records"], (coding, got)
    status, body = s.request("POST", "/predict", doc, {"Content-Type": "application/json", "Content-Encoding": "br"})
    assert status == 415 and "'br' is not supported" in body["error"]
    status, body = s.request("POST", "/predict", b"not gzip", {"Content-Type": "application/json",
                                                                "Content-Encoding": "gzip"})  # fmt: skip
    assert status == 400 and body["error"].startswith("Content-Encoding gzip: the body cannot be decompressed")
    status, body = s.request("POST", "/predict", gzip.compress(doc)[:-9], {"Content-Type": "application/json",
                                                                          "Content-Encoding": "gzip"})  # fmt: skip
    assert status == 400, body  # cut short
    bomb = gzip.compress(b" " * (21 * 1024 * 1024) + doc)  # 21 MB of spaces: valid JSON, ~20 KB sent
    status, body = s.request("POST", "/predict", bomb, {"Content-Type": "application/json", "Content-Encoding": "gzip"})
    assert status == 413 and "once gzip is undone" in body["error"]


def test_port_0_prints_the_url_it_took_also_under_quiet(trained_model):
    """--port 0 took a free port that only the log named, and -q silenced the log: a script
    could not find its server."""
    needs_web_stack()
    cmd = [sys.executable, "-m", "attn.cli", "serve", "-m", str(trained_model), "--port", "0", "-q"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = proc.stdout.readline().strip()
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", url), url
        port = int(url.rsplit(":", 1)[1])
        for _ in range(600):  # the model loads and the app starts; the socket already queues connections
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
                c.request("GET", "/healthz")
                assert c.getresponse().status == 200
                break
            except ConnectionError:
                time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
