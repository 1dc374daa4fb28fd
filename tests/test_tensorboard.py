"""TensorBoard logging (train.tensorboard / --tensorboard): event files whose scalars, confusion
image and hparams read back with TensorBoard's own reader."""

from __future__ import annotations

import json
import sys

import pytest
from typer.testing import CliRunner

from attn.cli.app import app

pytest.importorskip("tensorboard", reason="the attn[tensorboard] extra is not installed (CI installs it)")

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

runner = CliRunner()


def read(folder) -> EventAccumulator:
    acc = EventAccumulator(str(folder), size_guidance={"images": 0, "scalars": 0, "tensors": 0})
    acc.Reload()
    return acc


def test_a_run_logs_scalars_per_epoch_the_confusion_matrix_and_hparams(tmp_path, tiny_recipe):
    r = runner.invoke(app, ["train", str(tiny_recipe(epochs=3)), "--out", str(tmp_path / "run"),
                            "--set", "train.tensorboard=true", "--device", "cpu"])  # fmt: skip
    assert r.exit_code == 0, r.output
    acc = read(tmp_path / "run" / "tensorboard")
    tags = acc.Tags()
    history = [json.loads(x) for x in (tmp_path / "run" / "history.jsonl").read_text().splitlines()]
    pairs = (("loss/train", "train_loss"), ("loss/val", "val_loss"), ("accuracy/val", "val_accuracy"),
             ("accuracy/train", "train_accuracy"), ("macro_f1/val", "val_macro_f1"),
             ("learning_rate", "lr"))  # fmt: skip
    for tag, key in pairs:
        events = acc.Scalars(tag)
        assert [e.step for e in events] == [1, 2, 3], tag
        assert [e.value for e in events] == pytest.approx([h[key] for h in history], rel=1e-5), tag
    assert "confusion/test" in tags["images"]
    image = acc.Images("confusion/test")[-1]
    assert image.width > 100 and image.encoded_image_string[:4] == b"\x89PNG"
    assert acc.Scalars("hparam/test_accuracy")[-1].value == pytest.approx(
        json.loads((tmp_path / "run" / "metrics.json").read_text())["accuracy"]
    )
    content = acc.PluginTagToContent("hparams")
    assert content and any(b"train.lr" in v for v in content.values())


def test_the_flag_chooses_the_folder_and_an_ensemble_logs_each_member(tmp_path, tiny_recipe):
    import attn

    attn.train(tiny_recipe(epochs=1), ["train.ensemble=2"], out=tmp_path / "run", device="cpu",
               tensorboard=tmp_path / "tb")  # fmt: skip
    assert not (tmp_path / "run" / "tensorboard").exists()
    for member in ("member-1", "member-2"):
        assert [e.step for e in read(tmp_path / "tb" / "run" / member).Scalars("loss/train")] == [1]
    assert "confusion/test" in read(tmp_path / "tb" / "run").Tags()["images"]  # the ensemble's own
    # A second run given the same folder gets its own, beside the first (it merged into it).
    attn.train(tiny_recipe(epochs=1), out=tmp_path / "other", device="cpu", tensorboard=tmp_path / "tb")
    assert sorted(p.name for p in (tmp_path / "tb").iterdir()) == ["other", "run"]
    assert [e.step for e in read(tmp_path / "tb" / "other").Scalars("loss/train")] == [1]


def test_a_missing_package_is_a_clear_error_before_training(tmp_path, tiny_recipe, monkeypatch):
    import attn
    from attn.errors import ConfigError

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails as if not installed
    with pytest.raises(ConfigError, match=r"attn\[tensorboard\]"):
        attn.train(tiny_recipe(), ["train.tensorboard=true"], out=tmp_path / "run", device="cpu")
    assert not (tmp_path / "run").exists()
