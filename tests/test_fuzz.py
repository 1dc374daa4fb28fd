"""Property tests: random bytes and random YAML never crash with an unexpected exception."""

from __future__ import annotations

import string

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from attn.errors import ConfigError, InputError
from attn.features.audio import read_audio
from attn.pipelines.recipe.load import load_recipe

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

RIFF = b"RIFF\x24\x00\x00\x00WAVEfmt \x10\x00\x00\x00\x01\x00\x01\x00\x40\x1f\x00\x00\x80\x3e\x00\x00\x02\x00\x10\x00"


@FUZZ
@given(head=st.sampled_from([b"", RIFF, b"fLaC", b"OggS", b"ID3"]), body=st.binary(max_size=2048))
def test_random_bytes_give_input_errors_only(tmp_path, head, body):
    p = tmp_path / "fuzz.wav"
    p.write_bytes(head + body)
    try:
        y = read_audio(str(p), 8000)
    except InputError as e:
        assert str(e).startswith(str(p)) and "\n" not in str(e)
    else:
        assert y.ndim == 1 and y.size > 0


keys = st.sampled_from(["data", "features", "model", "train", "root", "epochs", "lr", "name", "kind",
                        "synthetic", "n_mels", "tokenizer", "level", "x"])  # fmt: skip
scalars = st.one_of(st.none(), st.booleans(), st.integers(-5, 10**6), st.floats(allow_nan=True),
                    st.text(string.printable, max_size=12))  # fmt: skip
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(keys, inner, max_size=4)),
    max_leaves=12,
)


@FUZZ
@given(doc=st.dictionaries(keys, values, max_size=5))
def test_random_recipes_give_config_errors_only(tmp_path, doc):
    p = tmp_path / "fuzz.yaml"
    p.write_text(yaml.safe_dump(doc))
    try:
        load_recipe(p)
    except ConfigError as e:
        assert "\n" not in str(e)


@FUZZ
@given(text=st.text(max_size=200))
def test_random_text_gives_config_errors_only(tmp_path, text):
    p = tmp_path / "fuzz.yaml"
    p.write_text(text)
    try:
        load_recipe(p)
    except ConfigError as e:
        assert "\n" not in str(e)
