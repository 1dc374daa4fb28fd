"""Build the model a recipe describes (used by training and by artifact loading alike)."""

from __future__ import annotations

from attn.errors import ConfigError
from attn.features.config import TextFeatures

from .config import Recipe


def build_frontend(recipe: Recipe, vocab_size: int | None = None, initialise: bool = True):
    """The modality's front-end: log-mel/MFCC/... for audio, a token embedding for text.
    `initialise=False`: the caller loads every weight next, so a pretrained text encoder is left
    uninitialised (the other front-ends are small and initialised as usual)."""
    if isinstance(recipe.features, TextFeatures) and recipe.features.encoder is not None:
        from attn.models.bert import EncoderFrontend

        enc = recipe.features.encoder
        if enc.config is None:
            raise ValueError("features.encoder.config is filled when a run starts (pipelines/data/auto.py)")
        return EncoderFrontend(enc.config, enc.finetune, initialise)
    if isinstance(recipe.features, TextFeatures):
        from attn.features.text import TextFrontend

        if vocab_size is None:
            raise ValueError("a text front-end needs the tokenizer's vocabulary size")
        return TextFrontend.from_config(recipe.features, vocab_size)
    if recipe.features.encoder is not None:
        from attn.models.hf_audio import build_audio_frontend

        enc = recipe.features.encoder
        if enc.config is None:
            raise ValueError("features.encoder.config is filled when a run starts (pipelines/data/auto.py)")
        front = build_audio_frontend(enc.config, enc.finetune)
        longest, window = getattr(front, "max_seconds", None), recipe.features.frame_seconds
        if longest is not None and isinstance(window, int | float) and window > longest + 1e-6:
            raise ConfigError(f"features.frame_seconds ({window:g}) is longer than the {longest:g} s the encoder "
                              f"{enc.name!r} reads (its max_length); use at most {longest:g} (longer recordings are "
                              "framed into windows)")  # fmt: skip
        return front
    from attn.features.transforms import AudioFrontend

    return AudioFrontend.from_config(recipe.features)


def member_recipe(recipe: Recipe, i: int) -> Recipe:
    """Member i of a `train.ensemble` recipe: the same recipe, one model, seed `seed + i` (the
    ensemble fits the one baseline, not each member)."""
    train = recipe.train.model_copy(update={"seed": recipe.train.seed + i, "ensemble": 1, "baseline": False})
    return recipe.model_copy(update={"train": train})


def build_model(recipe: Recipe, num_classes: int, vocab_size: int | None = None, initialise: bool = True):
    """Front-end + registered backbone -> `Classifier` (on the CPU, freshly initialised); with
    `train.ensemble: N`, an `Ensemble` of N of them. `initialise=False` when every weight is
    loaded next (`load_state_dict`, strict): see `build_frontend`."""
    if recipe.train.ensemble > 1:
        from attn.models.ensemble import Ensemble

        members = [build_model(member_recipe(recipe, i), num_classes, vocab_size, initialise)
                   for i in range(recipe.train.ensemble)]  # fmt: skip
        return Ensemble(members, multi_label=recipe.data.multi_label)
    from attn.models import registry
    from attn.models.classifier import Classifier

    frontend = build_frontend(recipe, vocab_size, initialise)
    backbone = registry.build(recipe.model.name, frontend.out_dim, num_classes, recipe.model.config)
    # A learned position table must cover the windows the recipe trains on; only inputs longer
    # than those, at prediction time, get it interpolated.
    limit = backbone.max_steps()
    if limit is not None and recipe.features.window_steps > limit:  # tokens, STFT frames or samples
        raise ConfigError(
            f"model.max_positions covers {limit} steps but one window has up to {recipe.features.window_steps}; "
            f"raise model.max_positions or shorten the window"
        )
    positions = getattr(getattr(frontend, "encoder", None), "max_positions", None)
    if positions is not None and recipe.features.window_steps > positions:
        raise ConfigError(
            f"features.tokenizer.max_len ({recipe.features.window_steps}) exceeds the encoder's {positions} positions"
        )
    augment = None
    if not isinstance(recipe.features, TextFeatures):
        from attn.features.augment import Augment

        augment = Augment.from_config(recipe.train.augment)
    return Classifier(frontend, backbone, augment=augment)


def count_parameters(model, trainable_only: bool = False) -> int:
    """The model's parameters (a frozen encoder's included; `trainable_only`: those training updates)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
