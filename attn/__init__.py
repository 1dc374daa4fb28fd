"""attn: train and run audio and text classifiers.

    import attn
    result = attn.train("recipes/quickstart.yaml", overrides=["train.epochs=3"])
    model = attn.load(result.run_dir)              # or a model file; default runs/latest
    model.predict(["clip.wav"], top_k=3)          # the records `attn predict` prints
    attn.evaluate(model)                          # test-split metrics, as metrics.json
    attn.tune("recipe.yaml", trials=20, timeout="30m")  # hyperparameter search (Optuna)
    model.explain(["clip.wav"])                   # where it looks: weights per token/frame
    attn.report(result.run_dir)                   # (re)write the run's report.html

`import attn` is light (no torch); the work is imported when a function runs. The layers
below: attn.pipelines (recipes, data, training, artifacts), attn.models (the registry and
model families), attn.features (DSP and tokenizers); attn.errors and attn.schema at the bottom.
"""

from attn.api import Model, evaluate, load, report, resume, train, tune
from attn.errors import ArtifactError, AttnError, ConfigError, InputError, Interrupted, OutputError, TrainingError


def __getattr__(name: str):
    # attn.__version__, read from the installed metadata when asked (import attn stays light)
    if name == "__version__":
        from importlib.metadata import version

        return version("attn")
    raise AttributeError(f"module 'attn' has no attribute {name!r}")


__all__ = [
    "ArtifactError",
    "AttnError",
    "ConfigError",
    "InputError",
    "Interrupted",
    "Model",
    "OutputError",
    "TrainingError",
    "evaluate",
    "load",
    "report",
    "resume",
    "train",
    "tune",
]
