"""Streams, pipes, exit codes and the environment as a shell script meets them: every test runs
`attn` in a real subprocess under bash (redirections, pipes, FIFOs, closed descriptors)."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys

import pytest

from helpers import tone, write_wav

SR = 8000
ATTN = f"{shlex.quote(sys.executable)} -m attn.cli"


def sh(script: str, cwd, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    """Run a bash script where $ATTN is the attn command (one torch thread: the machine is shared)."""
    e = {**os.environ, "ATTN": ATTN, "ATTN_THREADS": "1", **(env or {})}
    e.pop("ATTN_DEBUG", None)
    return subprocess.run(["bash", "-c", script], cwd=cwd, env=e, capture_output=True, text=True, timeout=timeout)


def not_warnings(stderr: str) -> list[str]:
    """stderr lines other than warnings (which -q keeps, e.g. a tiny run scoring below its baseline)."""
    return [line for line in stderr.splitlines() if not line.startswith("attn: warning: ")]


@pytest.fixture(scope="module")
def wav(tmp_path_factory):
    return write_wav(tmp_path_factory.mktemp("streams") / "one.wav", tone(440, 0.5, SR), SR)


TINY = """\
data: {synthetic: {classes: [sine, chirp], per_class: 6, seconds: 0.25}}
features: {sample_rate: 8000, frame_seconds: 0.25, hop_seconds: 0.25, n_fft: 256, hop_length: 128, n_mels: 16}
model: {name: cnn, channels: [4]}
train: {epochs: 2, batch_size: 4}
"""


def _commands(model, wav) -> dict[str, str]:
    """Each command that writes results to stdout, as a shell command line."""
    m = shlex.quote(str(model))
    return {
        "predict": f"$ATTN predict -m {m} {shlex.quote(str(wav))}",
        "evaluate": f"$ATTN evaluate -m {m} --format json",
        "evaluate-table": f"$ATTN evaluate -m {m}",
        "info": f"$ATTN info {m}",
        "train-json": "$ATTN train tiny.yaml --format json --quiet --out run-$$",
    }


@pytest.mark.parametrize("name", ["predict", "evaluate", "info", "train-json"])
def test_stdout_that_cannot_be_written_exits_3_with_one_line(name, trained_model, wav, tmp_path):
    """`> /dev/full`: the results cannot be written; docs/errors.md says exit 3, one line."""
    (tmp_path / "tiny.yaml").write_text(TINY)
    r = sh(_commands(trained_model, wav)[name] + " > /dev/full", cwd=tmp_path)
    assert r.returncode == 3, r.stderr
    assert not_warnings(r.stderr) == ["error: cannot write to stdout (no space left on device)"], r.stderr


@pytest.mark.parametrize("name", ["predict", "evaluate", "info", "train-json"])
def test_closed_stdout_exits_3_before_doing_any_work(name, trained_model, wav, tmp_path):
    """`>&-`: stdout is closed; nothing can be reported, so nothing is done (no run directory)."""
    (tmp_path / "tiny.yaml").write_text(TINY)
    r = sh(_commands(trained_model, wav)[name] + " >&-", cwd=tmp_path)
    assert r.returncode == 3, r.stderr
    assert r.stderr.strip().count("\n") == 0 and "error: stdout is closed" in r.stderr, r.stderr
    assert not list(tmp_path.glob("run-*")) and not (tmp_path / "runs").exists()


@pytest.mark.parametrize("name", ["predict", "evaluate", "evaluate-table", "info", "train-json"])
def test_a_reader_that_leaves_early_is_not_an_error(name, trained_model, wav, tmp_path):
    """`attn ... | head -1`: a closed pipe downstream is normal in a shell script. Every command
    stops quietly with exit 0 (the reader got what it wanted). `true` leaves before attn writes
    anything, so the write always meets a closed pipe."""
    (tmp_path / "tiny.yaml").write_text(TINY)
    r = sh(_commands(trained_model, wav)[name] + " | true; exit ${PIPESTATUS[0]}", cwd=tmp_path)
    assert r.returncode == 0 and not_warnings(r.stderr) == [], r.stderr


def test_head_takes_the_first_line_of_many_records(trained_model, wav, tmp_path):
    files = " ".join([shlex.quote(str(wav))] * 400)
    r = sh(f"$ATTN predict -m {shlex.quote(str(trained_model))} {files} | head -1; exit ${{PIPESTATUS[0]}}",
           cwd=tmp_path)  # fmt: skip
    assert r.returncode == 0 and r.stderr == "", r.stderr
    assert json.loads(r.stdout)["label"]


def test_quiet_train_prints_only_the_result_and_train_log_keeps_the_log(tmp_path):
    (tmp_path / "tiny.yaml").write_text(TINY)
    r = sh("$ATTN train tiny.yaml --out run -q", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert not_warnings(r.stderr) == [], "-q shows warnings and errors only"
    assert r.stdout.startswith("run ")
    log = (tmp_path / "run" / "train.log").read_text()
    assert "epoch 1/2" in log and "epoch 2/2" in log and "run directory" in log


@pytest.mark.parametrize("value", ["abc", "-4", "1.5"])
def test_bad_attn_threads_is_a_usage_error_naming_the_variable(value, trained_model, wav, tmp_path):
    r = sh(f"$ATTN predict -m {shlex.quote(str(trained_model))} {shlex.quote(str(wav))}", cwd=tmp_path,
           env={"ATTN_THREADS": value})  # fmt: skip
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip().count("\n") == 0 and "ATTN_THREADS" in r.stderr and repr(value) in r.stderr


def test_debug_shows_the_traceback_but_keeps_the_exit_code(tmp_path):
    plain = sh("$ATTN train missing.yaml", cwd=tmp_path)
    debug = sh("$ATTN --debug train missing.yaml", cwd=tmp_path)
    assert plain.returncode == debug.returncode == 2
    assert "Traceback" in debug.stderr and "Traceback" not in plain.stderr
    assert "missing.yaml: recipe file not found" in debug.stderr.strip().splitlines()[-1]


def test_process_substitution_and_fifo_are_read(trained_model, wav, tmp_path):
    """Pipes are a normal way to feed a batch job: `<(cat one.wav)` and a named pipe with a
    writer are read (buffered to a temporary file) and give the same record as the file."""
    m = shlex.quote(str(trained_model))
    w = shlex.quote(str(wav))
    direct = sh(f"$ATTN predict -m {m} {w}", cwd=tmp_path)
    sub = sh(f"$ATTN predict -m {m} <(cat {w})", cwd=tmp_path)
    # The writer holds none of our pipes and gives up after a minute, should attn never read.
    writer = f"(timeout 60 sh -c 'cat {w} > p.wav' >/dev/null 2>&1 &)"
    fifo = sh(f"mkfifo p.wav; {writer}; $ATTN predict -m {m} p.wav", cwd=tmp_path)
    assert direct.returncode == sub.returncode == fifo.returncode == 0, (sub.stderr, fifo.stderr)
    want = {k: v for k, v in json.loads(direct.stdout).items() if k != "input"}
    for r in (sub, fifo):
        got = json.loads(r.stdout)
        assert {k: v for k, v in got.items() if k != "input"} == want
    assert json.loads(fifo.stdout)["input"] == "p.wav"
    empty = sh(f"$ATTN predict -m {m} <(true)", cwd=tmp_path)
    assert empty.returncode == 1 and "empty" in json.loads(empty.stdout)["error"]
    feats = sh(f"$ATTN features <(cat {w}) -m {m} --out f.npy", cwd=tmp_path)
    assert feats.returncode == 0 and (tmp_path / "f.npy").exists(), feats.stderr


def test_a_huge_file_given_as_a_model_is_refused_on_its_first_bytes(tmp_path):
    """`attn info /dev/zero` read forever; a sparse 64 GB file with a valid model's start must be
    refused from its header too. Memory is capped at 1 GB, so reading either whole fails."""
    from attn.pipelines.store.container import MAGIC

    zero = sh("ulimit -v 1000000; $ATTN info /dev/zero", cwd=tmp_path, timeout=60)
    assert zero.returncode == 2 and "not an attn model file" in zero.stderr, zero.stderr
    big = tmp_path / "big.attn"
    with open(big, "wb") as f:
        f.write(MAGIC + (1).to_bytes(4, "little") + (10).to_bytes(8, "little") + b'{"kind":1}')
        f.write((100).to_bytes(8, "little"))
        f.truncate(64 << 30)
    r = sh(f"ulimit -v 1000000; $ATTN info {big}", cwd=tmp_path, timeout=60)
    assert r.returncode == 2 and "length mismatch" in r.stderr and str(big) in r.stderr, r.stderr


def test_default_threads_leave_busy_cores_alone(monkeypatch):
    """Without --threads or $ATTN_THREADS, torch gets the cores other work leaves free: one when
    the machine is loaded (torch's own default then ran 8-9x slower: bench/cases_threads.py),
    torch's default when it is idle."""
    import torch

    from attn.cli import common

    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    monkeypatch.setattr(common, "usable_cpus", lambda: 2)
    for busy, want in ((9.0, 1), (1.2, 1), (0.4, 2), (0.0, 2), (None, 2)):
        monkeypatch.setattr(common, "busy_cores", lambda busy=busy: busy)
        assert common.auto_threads() == want, busy
    monkeypatch.setattr(common, "usable_cpus", lambda: 16)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 8)  # physical cores
    monkeypatch.setattr(common, "busy_cores", lambda: 12.0)
    assert common.auto_threads() == 4
    assert isinstance(common.busy_cores(), float)  # Linux reports a load


def test_busy_cores_measure_the_cpus_since_the_command_started_not_the_lagging_load_average(monkeypatch):
    """The 1-minute load average still counted a run that had just ended, so every run of a batch
    script after the first trained on one thread of two (SST-2 fine-tuning: 714 s against 405 s).
    The cores other work used are now measured from /proc/stat over the command's own start-up,
    less this process's own CPU time."""
    import os

    from attn.cli import common

    tick = os.sysconf("SC_CLK_TCK")
    monkeypatch.setattr(common, "_cpus", lambda: {0, 1})
    monkeypatch.setattr(os, "getloadavg", lambda: (2.0, 2.0, 2.0))  # what a finished run leaves behind
    monkeypatch.setattr(common, "_runnable_now", lambda: 1.0)  # not this machine's (tests run in parallel)
    monkeypatch.setattr(common, "_START", ((1000, 5000), 10.0))

    def after(seconds: float, other_cores: float, own_cores: float) -> float:
        """busy_cores() `seconds` later, with other work on `other_cores` and this process on `own_cores`."""
        busy = 1000 + round((other_cores + own_cores) * seconds * tick)
        monkeypatch.setattr(common, "_cpu_jiffies", lambda cpus: (busy, 5000 + round(2 * seconds * tick)))
        monkeypatch.setattr(common, "_own_seconds", lambda: 10.0 + own_cores * seconds)
        return common.busy_cores()

    assert after(3.0, 0.0, 1.0) == pytest.approx(0.0, abs=0.02)  # idle but for our own import
    assert after(3.0, 1.5, 0.5) == pytest.approx(1.5, abs=0.02)  # another training beside us
    assert after(0.1, 0.0, 1.0) == 2.0  # too short to measure: the load average decides
    import torch

    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    monkeypatch.setattr(common, "usable_cpus", lambda: 2)
    after(3.0, 0.0, 1.0)
    assert common.auto_threads() == 2  # the load average alone said 2 busy cores: 1 thread
    after(3.0, 1.5, 0.5)
    assert common.auto_threads() == 1


def test_help_and_version_follow_the_stdout_rules_of_every_command(tmp_path):
    """What click writes itself was outside the guard: `--help > /dev/full` was a traceback
    (exit 1), `--help | true` exit 1 and `--version >&-` exit 0 with nothing said."""
    for cmd in ("$ATTN --help", "$ATTN --version", "$ATTN predict --help"):
        full = sh(f"{cmd} > /dev/full", cwd=tmp_path)
        assert (full.returncode, full.stderr) == (3, "error: cannot write to stdout (no space left on device)\n"), cmd
        closed = sh(f"{cmd} >&-", cwd=tmp_path)
        assert closed.returncode == 3 and closed.stderr.startswith("error: stdout is closed"), cmd
        piped = sh(f"set -o pipefail; {cmd} | true", cwd=tmp_path)
        assert (piped.returncode, piped.stderr) == (0, ""), (cmd, piped.stderr)
