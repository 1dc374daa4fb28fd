"""The .attn container: round trip, versions, checksums, and refusing code in files."""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import struct

import pytest
import torch

from attn.errors import ArtifactError
from attn.pipelines.recipe.build import build_model
from attn.pipelines.recipe.load import load_recipe
from attn.pipelines.store.artifact import load_model, save_model
from attn.pipelines.store.container import FORMAT_VERSION, MAGIC, read_container, write_container


def _model(tiny_recipe):
    r = load_recipe(tiny_recipe())
    torch.manual_seed(0)
    m = build_model(r, 3)
    m.train()
    x = torch.randn(8, 4000) * 0.1
    m(x, torch.full((8,), 4000))  # non-trivial batch-norm statistics
    return r, m.eval()


def test_save_load_gives_identical_logits(tmp_path, tiny_recipe):
    r, m = _model(tiny_recipe)
    path = tmp_path / "m.attn"
    save_model(path, m, r, ["a", "b", "c"])
    loaded = load_model(path)
    x = torch.randn(3, 3000) * 0.1
    lens = torch.tensor([3000, 2000, 100])
    with torch.no_grad():
        assert torch.equal(m(x, lens), loaded.model(x, lens))
    assert loaded.labels == ["a", "b", "c"] and loaded.recipe == r
    assert oct(path.stat().st_mode & 0o777) != oct(0o600)  # normal permissions, not mkstemp's


def _rewrite(path, fn):
    data = bytearray(path.read_bytes()[:-32])
    fn(data)
    path.write_bytes(bytes(data) + hashlib.sha256(bytes(data)).digest())


def test_newer_format_version_is_refused_naming_both_versions(tmp_path):
    p = tmp_path / "m.attn"
    write_container(p, {"kind": "model"}, {"w": torch.zeros(2)})
    _rewrite(p, lambda d: struct.pack_into("<I", d, len(MAGIC), FORMAT_VERSION + 1))
    with pytest.raises(ArtifactError) as e:
        read_container(p)
    msg = str(e.value)
    assert f"version {FORMAT_VERSION + 1}" in msg and f"format version {FORMAT_VERSION}" in msg and "upgrade" in msg


def test_tampered_and_truncated_files_are_refused(tmp_path):
    p = tmp_path / "m.attn"
    write_container(p, {"kind": "model", "labels": ["a"]}, {"w": torch.arange(100.0)})
    good = p.read_bytes()
    flipped = bytearray(good)
    flipped[len(good) // 2] ^= 0xFF
    p.write_bytes(bytes(flipped))
    with pytest.raises(ArtifactError, match="checksum"):
        read_container(p)
    p.write_bytes(good[: len(good) - 100])
    with pytest.raises(ArtifactError, match="truncated|checksum"):
        read_container(p)
    p.write_bytes(good[:10])
    with pytest.raises(ArtifactError, match="truncated"):
        read_container(p)


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickle_with_code_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "model.attn"
    evil.write_bytes(pickle.dumps(_Payload(marker)))
    with pytest.raises(ArtifactError, match="pickle"):
        load_model(evil)
    buf = io.BytesIO()
    torch.save({"x": _Payload(marker)}, buf)  # a torch.save file with code inside
    evil.write_bytes(buf.getvalue())
    with pytest.raises(ArtifactError, match="not an attn model"):
        load_model(evil)
    assert not marker.exists()


def test_code_inside_a_valid_container_is_refused_by_weights_only(tmp_path):
    marker = tmp_path / "pwned"
    p = tmp_path / "m.attn"
    write_container(p, {"kind": "model"}, {"w": torch.zeros(1)})
    buf = io.BytesIO()
    torch.save({"state_dict": _Payload(marker)}, buf)
    payload = buf.getvalue()

    def swap(d):
        hlen = struct.unpack_from("<Q", d, len(MAGIC) + 4)[0]
        start = len(MAGIC) + 12 + hlen
        d[start:] = struct.pack("<Q", len(payload)) + payload

    _rewrite(p, swap)
    with pytest.raises(ArtifactError, match="unreadable tensor payload"):
        read_container(p).tensors()
    assert not marker.exists()


def test_checkpoint_is_not_accepted_as_a_model(tmp_path):
    from attn.pipelines.store.artifact import read_info

    p = tmp_path / "last.ckpt"
    write_container(p, {"kind": "checkpoint", "epoch": 3}, {})
    with pytest.raises(ArtifactError, match="not a model"):
        load_model(p)
    # `attn info` showed it as a model of "0 parameters", modality None, exit 0 (sweep AG)
    with pytest.raises(ArtifactError, match=f"resume checkpoint \\(state after epoch 3\\).*--resume {tmp_path}"):
        read_info(str(p))


def test_info_gives_the_file_s_own_format_version_and_cut_files_are_truncated(tmp_path):
    from attn.pipelines.store.artifact import model_info

    p = tmp_path / "m.attn"
    write_container(p, {"kind": "model"}, {"w": torch.zeros(2)})
    _rewrite(p, lambda d: struct.pack_into("<I", d, len(MAGIC), 0))  # an older container version
    box = read_container(p, header_only=True)
    info = model_info(box.header, p)
    assert info["format_version"] == 0 and not any(k.startswith("_") for k in info)
    p.write_bytes(MAGIC[:5])  # "not an attn model file (unknown format)" of an attn file's first bytes
    with pytest.raises(ArtifactError, match="model file is truncated"):
        read_container(p)


def test_weights_that_do_not_fit_say_which(tmp_path, tiny_recipe):
    r = load_recipe(tiny_recipe())
    p = tmp_path / "m.attn"
    save_model(p, build_model(r, 3), r, ["a", "b", "c"])
    box = read_container(p)
    write_container(p, {**{k: v for k, v in box.header.items() if not k.startswith("_")}, "labels": ["a", "b"]},
                    box.tensors())  # fmt: skip
    with pytest.raises(ArtifactError, match="weights do not fit the stored recipe and labels \\(size mismatch"):
        load_model(p)


def test_a_damaged_checkpoint_is_called_a_checkpoint(tiny_recipe, tmp_path):
    from typer.testing import CliRunner

    from attn.cli.app import app
    from attn.errors import Interrupted
    from attn.pipelines.recipe.load import load_recipe
    from attn.pipelines.train.run import train

    class StopAt2:  # Ctrl-C as epoch 2 begins: epoch 1's state stays for --resume
        def on_epoch_begin(self, epoch, epochs, steps):
            if epoch == 2:
                raise KeyboardInterrupt

        def on_step(self, step, loss): ...
        def on_epoch_end(self, record): ...

    run, p = tmp_path / "run", tiny_recipe(epochs=3)
    with pytest.raises(Interrupted):
        train(load_recipe(p), str(p), out=str(run), device="cpu", callbacks=StopAt2())
    ckpt = run / "last.ckpt"
    ckpt.write_bytes(ckpt.read_bytes()[:-100])
    r = CliRunner().invoke(app, ["train", "--resume", str(run)])
    assert r.exit_code != 0 and f"{ckpt}: checkpoint is truncated" in r.output, r.output


def test_a_model_of_a_newer_attn_with_a_key_this_one_lacks_says_upgrade(tmp_path, tiny_recipe):
    """It said "(stored recipe): unknown key 'train.quantum'; valid keys here: ...", of a recipe
    the user never wrote (sweep AG)."""
    r = load_recipe(tiny_recipe())
    p = tmp_path / "m.attn"
    save_model(p, build_model(r, 3), r, ["a", "b", "c"])
    box = read_container(p)
    header = {k: v for k, v in box.header.items() if not k.startswith("_")}
    header["recipe"]["train"]["quantum"] = 1
    write_container(p, {**header, "attn_version": "99.0"}, box.tensors())
    with pytest.raises(ArtifactError, match=r"made by attn 99.0, newer than this attn .*: upgrade attn.*quantum") as e:
        load_model(p)
    assert "valid keys" not in str(e.value)
    write_container(p, {**header, "attn_version": "0.0.1"}, box.tensors())  # an older one: the recipe's own error
    with pytest.raises(Exception, match="unknown key 'train.quantum'"):
        load_model(p)


def test_a_model_file_records_the_versions_its_numbers_come_from(tmp_path, tiny_recipe):
    """attn and torch only: scikit-learn fits the baseline, numpy and torchaudio the features (sweep AG)."""
    import numpy as np

    r = load_recipe(tiny_recipe())
    p = tmp_path / "m.attn"
    save_model(p, build_model(r, 2), r, ["a", "b"])
    v = read_container(p, header_only=True).header["versions"]
    assert v["numpy"] == np.__version__ and set(v) == {"numpy", "scikit-learn", "torchaudio"}


def test_a_model_trained_from_a_checkout_records_its_commit_and_info_shows_it(tmp_path, tiny_recipe):
    """The version number stays 0.1.0 while the code changes: a model file names the commit that
    made it (and whether files differed from it), and `attn info` says so."""
    import subprocess
    from pathlib import Path

    from typer.testing import CliRunner

    import attn.pipelines.store.container as container
    from attn.cli.app import app

    root = Path(container.__file__).resolve().parents[2]
    if not (root / ".git").exists():
        pytest.skip("attn runs from an installed copy, not a git checkout")
    sha = subprocess.run(["git", "-C", str(root), "rev-parse", "--short=7", "HEAD"], capture_output=True,
                         text=True, check=True).stdout.strip()  # fmt: skip
    r = load_recipe(tiny_recipe())
    p = tmp_path / "m.attn"
    save_model(p, build_model(r, 2), r, ["a", "b"])
    commit = read_container(p, header_only=True).header["attn_commit"]
    assert commit in (sha, sha + "+changes")
    out = CliRunner().invoke(app, ["info", "-m", str(p)]).output
    assert f"({commit})" in out
