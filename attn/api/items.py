"""What `Model.predict`, `embed`, `explain` and `events_iter` take in the Python API: one input
or a list of them, turned into what the predictors read (TextInputs; audio paths and arrays)."""

from __future__ import annotations

import os
from collections.abc import Iterator

from attn.errors import ConfigError


def model_inputs(inputs, modality: str, extensions) -> list | Iterator:
    """What `Model.predict` and friends read, from one input or a list of them. Text: strings
    ("text N"), TextInputs, or paths of files with a text a line. Audio: file or folder paths
    (a folder's files with `extensions`) and (samples, sample_rate) tuples ("array[i]")."""
    if single(inputs):
        inputs = [inputs]
    return _texts(inputs) if modality == "text" else _audio(inputs, extensions)


def single(inputs) -> bool:
    """One input rather than a list of them: a string, a path, an array, or a (samples, rate) tuple."""
    if isinstance(inputs, (str, os.PathLike)) or hasattr(inputs, "shape"):
        return True
    return isinstance(inputs, tuple) and len(inputs) == 2 and hasattr(inputs[0], "shape")


def _texts(inputs) -> Iterator:
    from attn.pipelines.infer.predict_text import TextInput, file_inputs, given_text

    for i, x in enumerate(inputs):
        if isinstance(x, TextInput):
            yield x
        elif isinstance(x, str):
            yield given_text(x, f"text {i + 1}")
        elif isinstance(x, os.PathLike):
            yield from file_inputs(os.fspath(x))
        else:
            raise ConfigError(f"input {i}: a text model takes strings or paths, got {type(x).__name__}")


def _audio(inputs, extensions) -> list:
    import numpy as np

    from attn.pipelines.infer.predict import AudioArray, expand_paths

    out: list = []
    for i, x in enumerate(inputs):
        if isinstance(x, (str, os.PathLike)):
            out += expand_paths([os.fspath(x)], extensions)
        elif isinstance(x, tuple) and len(x) == 2 and isinstance(x[0], np.ndarray):
            out.append(AudioArray(f"array[{i}]", x[0], int(x[1])))
        else:
            why = " (an array needs its sample rate)" if isinstance(x, np.ndarray) else ""
            raise ConfigError(f"input {i}: expected a file path or a (samples, sample_rate) tuple, "
                              f"got {type(x).__name__}{why}")  # fmt: skip
    return out
