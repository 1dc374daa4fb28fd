"""Masked-token pretraining for text models: BERT's masked language modelling (Devlin et al.
2019, "BERT: Pre-training of Deep Bidirectional Transformers for Language Understanding"),
tokens hidden and reconstructed from their context.

Runs on the recipe's own training texts before supervised training (nothing is downloaded):
`mask_prob` of the tokens are replaced by <unk> and a temporary linear head predicts them from
the encoder's per-token outputs. The head is discarded; the embedding and encoder keep what
they learned about which words occur in which contexts, which helps rare words.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from attn.errors import ConfigError

from ..data.batching import WindowSet
from ..recipe.config import TrainConfig
from .optim import lr_factor

log = logging.getLogger("attn")


def pretrain_masked_tokens(model, ws: WindowSet, cfg: TrainConfig, vocab_size: int, device) -> list[dict]:
    """Train `model.frontend` + `model.backbone` to fill in masked tokens; returns per-epoch logs."""
    from attn.features.tokenizers import PAD_ID, UNK_ID

    backbone = model.backbone
    if not backbone.token_outputs:
        raise ConfigError(f"train.pretrain_epochs needs per-token outputs; model {backbone.family!r} has none "
                          f"(use model.name: transformer)")  # fmt: skip
    head = nn.Linear(backbone.token_dim, vocab_size).to(device)
    params = [p for p in model.parameters() if p.requires_grad] + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    offset = backbone.class_tokens  # encode's outputs start with them: no token to predict there
    model.train()
    history = []
    steps = cfg.pretrain_epochs * int(np.ceil(len(ws) / cfg.batch_size))
    warmup = int(cfg.warmup * steps)
    step = 0
    for epoch in range(cfg.pretrain_epochs):
        t0 = time.perf_counter()
        gen = np.random.default_rng([cfg.seed, epoch, 0xB127])
        tgen = torch.Generator().manual_seed(int(gen.integers(2**62)))
        total, count = 0.0, 0
        for batch in ws.batches(ws.all_windows, cfg.batch_size, gen.permutation(ws.num_windows)):
            x, lengths = batch.x, batch.lengths  # (B, T) ids, or (B, T, 1 + K) ids with n-gram ids
            words = x[..., 0] if x.dim() == 3 else x  # (B, T)
            valid = words != PAD_ID
            masked = (torch.rand(words.shape, generator=tgen) < cfg.mask_prob) & valid
            if not masked.any():
                continue
            for g in opt.param_groups:  # the recipe's schedule, as in supervised training
                g["lr"] = cfg.lr * lr_factor(step, steps, warmup, cfg.schedule)
            inp = torch.where(masked, torch.full_like(words, UNK_ID), words)
            if x.dim() == 3:  # a masked token loses its n-grams too, else its spelling gives it away
                inp = torch.cat([inp[..., None], x[..., 1:].masked_fill(masked[..., None], 0)], dim=-1)
            inp = inp.to(device)
            emb, lens = model.frontend(inp, lengths.to(device))
            h, _ = backbone.encode(emb.transpose(1, 2), lens)  # (B, T', d)
            logits = head(h[:, offset:][masked.to(device)])  # (M, V)
            loss = F.cross_entropy(logits.float(), words.to(device)[masked.to(device)])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            opt.step()
            step += 1
            total += float(loss.detach()) * int(masked.sum())
            count += int(masked.sum())
        rec = {"pretrain_epoch": epoch + 1, "mlm_loss": round(total / max(1, count), 4),
               "seconds": round(time.perf_counter() - t0, 2)}  # fmt: skip
        history.append(rec)
        log.info("pretrain %d/%d masked-token loss=%.4f %.1fs", epoch + 1, cfg.pretrain_epochs, rec["mlm_loss"],
                 rec["seconds"])  # fmt: skip
    return history
