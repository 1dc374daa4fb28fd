"""The Python API: what the `attn` command does, as functions and one model object. The command
line itself goes through it.

    import attn
    m = attn.load("runs/latest")                    # a model file or a run directory
    m.predict(["a.wav", (samples, 16000)], top_k=3)  # the records `attn predict` prints
    m.labels, m.info()
    result = attn.train("recipes/quickstart.yaml", overrides=["train.epochs=3"], out="runs/q")
    attn.evaluate("runs/q")                         # metrics on the test split of its recipe

Importing attn imports no torch: each function imports what it needs when it runs.

By job: model.py (`load`, `Model`), runs.py (train, resume, tune, evaluate, report, recipes),
inputs.py (the inputs a command line names, embeddings files), inspection.py (`info`,
`export_features`, `tokenize`), serving.py (`attn serve`). Every `attn` command goes through
these names; none is imported from a module below them.
"""

from .inputs import (
    argument_texts,
    audio_files,
    check_min_score,
    check_min_similarity,
    env_threads,
    text_inputs,
    write_embeddings,
)
from .inspection import export_features, info, label_list, tokenize
from .model import Model, load
from .runs import clear_stop, evaluate, load_recipe, main_process, report, request_stop, resume, train, tune
from .serving import bind, serve, serve_app, serve_config

__all__ = ["Model", "argument_texts", "audio_files", "bind", "check_min_score", "check_min_similarity", "clear_stop",
           "env_threads", "evaluate", "export_features", "info", "label_list", "load", "load_recipe",
           "main_process", "report", "request_stop", "resume", "serve", "serve_app", "serve_config", "text_inputs",
           "tokenize", "train", "tune", "write_embeddings"]  # fmt: skip
