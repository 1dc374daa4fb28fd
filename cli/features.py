"""attn features"""

from __future__ import annotations

from typing import Annotated

import typer

from .common import (
    DeviceOpt,
    ModelOpt,
    SetOpt,
    ThreadsOpt,
    check_model_or_recipe,
    check_out,
    handle_errors,
    recipe_opt,
    set_threads,
)

EPILOG = """\
Examples:

  attn features clip.wav --model runs/latest --out clip.npy

  attn features clip.wav --recipe recipes/digits.yaml --set features.n_mels=40 --out clip.npy

The array is exactly what the model sees: float32 (windows, bins, frames), log-mel in dB for
the default features; frames past a window's valid length are padding the model ignores.
"""


@handle_errors
def features_cmd(
    file: Annotated[str, typer.Argument(help="Audio file.", show_default=False)],
    out: Annotated[str, typer.Option("--out", "-o", help="Output .npy file.", show_default=False)],
    model: ModelOpt = None,
    recipe: recipe_opt("Use this recipe's features section instead of a model's.") = None,
    set_: SetOpt = None,
    device: DeviceOpt = "cpu",
    threads: ThreadsOpt = None,
) -> None:
    """Write the feature tensor a model computes for FILE (for inspection or other tools)."""
    check_out(out)
    check_model_or_recipe(model, recipe, set_)
    set_threads(threads)
    from attn.api import export_features

    shape, frames = export_features(file, out, model=model, recipe=recipe, overrides=set_ or [], device=device)
    print(f"{out}: float32 {shape} (windows, bins, frames); valid frames per window: " + " ".join(map(str, frames)))
