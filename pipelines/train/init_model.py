"""The recipe's model at the start of training: seeded, with a background-noise bank, pretrained
encoder weights, word vectors and masked-token pretraining as the recipe asks."""

from __future__ import annotations

import logging

from ..data.prepared import Datasets
from ..recipe.config import Recipe

log = logging.getLogger("attn")


def init_model(recipe: Recipe, data: Datasets, device, fresh: bool = True):
    """(model, facts): the recipe's model, initialised from train.seed. When `fresh` (not resuming,
    where the checkpoint brings the weights), word vectors and masked-token pretraining are
    applied as the recipe asks; `facts` is `data.info` plus what they report."""
    import torch

    from ..data.encoder_cache import cache_folder, load_states, state_keys
    from ..recipe.build import build_model

    facts = dict(data.info)
    tok = data.tokenizer
    torch.manual_seed(recipe.train.seed)
    model = build_model(recipe, len(data.labels), vocab_size=None if tok is None else tok.vocab_size)
    if recipe.modality == "audio" and recipe.train.augment.background:
        from ..data.clips import load_background

        f = recipe.features
        bank = load_background(recipe.train.augment.background, recipe.data.extensions, f.sample_rate, f.frame_samples)
        model.augment.set_background(torch.from_numpy(bank))
        facts["background_segments"] = len(bank)
    if fresh and getattr(recipe.features, "encoder", None) is not None:
        from ..data.encoders import load_encoder_weights

        for member in getattr(model, "members", [model]):
            facts["encoder"] = load_encoder_weights(member.frontend, recipe.features.encoder)
    changing = recipe.modality == "audio" and recipe.train.augment.changes_samples
    for member in getattr(model, "members", [model]):
        if changing and getattr(member.frontend, "frozen", False):
            log.info("frozen encoder: its states are not kept (train.augment changes the training waveforms "
                     "every epoch), so every epoch runs it")  # fmt: skip
        elif hasattr(member.frontend, "enable_cache"):
            member.frontend.enable_cache()  # a frozen encoder's states: computed in epoch 1 only
            folder = cache_folder(recipe)
            if folder is not None:
                wanted = state_keys([s for s in (data.train, data.val, data.test) if s is not None])
                facts["encoder_cache"] = {"folder": str(folder), "reused": load_states(member.frontend, folder, wanted)}
    if fresh and tok is not None and recipe.features.tokenizer.vectors:
        from ..data.text import apply_vectors

        facts["vectors"] = apply_vectors(model, tok, recipe.features)
    if fresh and recipe.train.pretrain_epochs:
        from .pretrain import pretrain_masked_tokens

        facts["pretrain"] = pretrain_masked_tokens(model.to(device), data.train, recipe.train, tok.vocab_size, device)
    return model, facts
