"""The Python API: what the `attn` command does, as functions and one model object. The command
line itself goes through it.

    import attn
    m = attn.load("runs/latest")                    # a model file or a run directory
    m.predict(["a.wav", (samples, 16000)], top_k=3)  # the records `attn predict` prints
    m.labels, m.info()
    result = attn.train("recipes/quickstart.yaml", overrides=["train.epochs=3"], out="runs/q")
    attn.evaluate("runs/q")                         # metrics on the test split of its recipe

Importing attn imports no torch: each function imports what it needs when it runs.
"""

from .model import Model, load
from .runs import evaluate, report, resume, train, tune

__all__ = ["Model", "evaluate", "load", "report", "resume", "train", "tune"]
