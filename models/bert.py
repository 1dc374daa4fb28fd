"""BERT-family text encoders (BERT, MiniLM, bge, RoBERTa, XLM-R, DistilBERT) in plain torch, built
from a Hugging Face `config.json` and loaded from its safetensors weights.

    BertEncoder(ids (B, T) int64, lengths (B,)) -> hidden states (B, T, H)
    EncoderFrontend(ids (B, T), lengths (B,)) -> (hidden (B, H, T), lengths (B,))

Written here rather than imported from `transformers` because importing its model classes costs
~3.5 s on top of torch, which `attn predict` would pay on every call; the layout is the original
post-LayerNorm transformer (Devlin et al. 2019: embeddings + LayerNorm, then per layer
x = LN(x + Attn(x)), x = LN(x + FFN(x))). Parameter names mirror Hugging Face's `BertModel`, so
a checkpoint loads by name (tests/test_pretrained.py checks the hidden states against
`transformers` on random checkpoints of each architecture). Padding is a key mask built from
`lengths`: outputs at valid steps never depend on the padding.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

# model_type values whose checkpoints this module runs (config.json "model_type").
ARCHITECTURES = ("bert", "roberta", "xlm-roberta", "camembert", "distilbert")


def encoder_shape(config: dict[str, Any]) -> dict[str, Any]:
    """The architecture facts of a Hugging Face config, in one vocabulary for every family.
    Raises ValueError naming what is missing or unsupported."""
    kind = config.get("model_type")
    if kind not in ARCHITECTURES:
        raise ValueError(f"model_type {kind!r} is not a supported text encoder (supported: {', '.join(ARCHITECTURES)})")
    try:
        if kind == "distilbert":
            if config.get("sinusoidal_pos_embds"):
                raise ValueError("DistilBERT with sinusoidal positions is not supported")
            shape = dict(hidden=config["dim"], layers=config["n_layers"], heads=config["n_heads"],
                         intermediate=config["hidden_dim"], act=config.get("activation", "gelu"), eps=1e-12,
                         types=0, offset=0)  # fmt: skip
        else:
            # RoBERTa counts positions from pad_token_id + 1 (its position table has those rows unused).
            offset = config.get("pad_token_id", 1) + 1 if kind != "bert" else 0
            shape = dict(hidden=config["hidden_size"], layers=config["num_hidden_layers"],
                         heads=config["num_attention_heads"], intermediate=config["intermediate_size"],
                         act=config.get("hidden_act", "gelu"), eps=config.get("layer_norm_eps", 1e-12),
                         types=config.get("type_vocab_size", 2), offset=offset)  # fmt: skip
            if config.get("position_embedding_type", "absolute") != "absolute":
                raise ValueError(f"position_embedding_type {config['position_embedding_type']!r} is not supported")
        shape.update(vocab=config["vocab_size"], positions=config["max_position_embeddings"], kind=kind)
    except KeyError as e:
        raise ValueError(f"config.json lacks {e.args[0]!r}") from None
    if shape["act"] not in _ACTIVATIONS:
        raise ValueError(f"activation {shape['act']!r} is not supported (supported: {', '.join(_ACTIVATIONS)})")
    if shape["hidden"] % shape["heads"]:
        raise ValueError(f"hidden size {shape['hidden']} is not a multiple of {shape['heads']} heads")
    return shape


_ACTIVATIONS = {
    "gelu": lambda x: F.gelu(x),
    "gelu_new": lambda x: F.gelu(x, approximate="tanh"),
    "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "relu": F.relu,
}


class _BareLinear(nn.Linear):
    """nn.Linear left uninitialised (`torch.empty`): for an encoder whose every weight is loaded next."""

    def reset_parameters(self) -> None:
        pass


class _BareEmbedding(nn.Embedding):
    """nn.Embedding left uninitialised, as `_BareLinear`."""

    def reset_parameters(self) -> None:
        pass


class _Embeddings(nn.Module):
    def __init__(self, s: dict[str, Any]) -> None:
        super().__init__()
        emb = s["embedding"]
        self.word_embeddings = emb(s["vocab"], s["hidden"])
        self.position_embeddings = emb(s["positions"], s["hidden"])
        self.token_type_embeddings = emb(s["types"], s["hidden"]) if s["types"] else None
        self.LayerNorm = nn.LayerNorm(s["hidden"], eps=s["eps"])
        self.offset = s["offset"]

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        t = ids.shape[1]
        pos = torch.arange(self.offset, self.offset + t, device=ids.device)  # (T,); right padding only
        x = self.word_embeddings(ids) + self.position_embeddings(pos)[None]  # (B, T, H)
        if self.token_type_embeddings is not None:  # one segment: type 0 everywhere
            x = x + self.token_type_embeddings.weight[0]
        return self.LayerNorm(x)


class _SelfAttention(nn.Module):
    def __init__(self, s: dict[str, Any]) -> None:
        super().__init__()
        h, lin = s["hidden"], s["linear"]
        self.query, self.key, self.value = lin(h, h), lin(h, h), lin(h, h)
        self.heads = s["heads"]


class _Output(nn.Module):
    def __init__(self, d_in: int, d_out: int, eps: float, lin: type[nn.Linear]) -> None:
        super().__init__()
        self.dense = lin(d_in, d_out)
        self.LayerNorm = nn.LayerNorm(d_out, eps=eps)


class _Attention(nn.Module):
    def __init__(self, s: dict[str, Any]) -> None:
        super().__init__()
        self.self = _SelfAttention(s)
        self.output = _Output(s["hidden"], s["hidden"], s["eps"], s["linear"])


class _Intermediate(nn.Module):
    def __init__(self, s: dict[str, Any]) -> None:
        super().__init__()
        self.dense = s["linear"](s["hidden"], s["intermediate"])


class _Layer(nn.Module):
    def __init__(self, s: dict[str, Any], dropout: float) -> None:
        super().__init__()
        self.attention = _Attention(s)
        self.intermediate = _Intermediate(s)
        self.output = _Output(s["intermediate"], s["hidden"], s["eps"], s["linear"])
        self.act = _ACTIVATIONS[s["act"]]
        self.p = dropout

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """x (B, T, H), keep (B, 1, 1, T) bool: True at valid key steps."""
        b, t, h = x.shape
        sa = self.attention.self
        q, k, v = (lin(x).view(b, t, sa.heads, h // sa.heads).transpose(1, 2) for lin in (sa.query, sa.key, sa.value))
        drop = self.p if self.training else 0.0
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=keep, dropout_p=drop)  # (B, nh, T, hs)
        a = a.transpose(1, 2).reshape(b, t, h)
        out = self.attention.output
        x = out.LayerNorm(x + F.dropout(out.dense(a), drop, self.training))
        f = self.output.dense(self.act(self.intermediate.dense(x)))
        return self.output.LayerNorm(x + F.dropout(f, drop, self.training))


class _Stack(nn.Module):
    def __init__(self, s: dict[str, Any], dropout: float) -> None:
        super().__init__()
        self.layer = nn.ModuleList(_Layer(s, dropout) for _ in range(s["layers"]))


class BertEncoder(nn.Module):
    """The encoder of a Hugging Face BERT-family `config` (dict of config.json), freshly
    initialised; `load_hf_state` puts a checkpoint's weights in. `dropout` is the checkpoint's
    hidden dropout (training only)."""

    def __init__(self, config: dict[str, Any], initialise: bool = True) -> None:
        super().__init__()
        self.shape = encoder_shape(config)
        dropout = float(config.get("hidden_dropout_prob", config.get("dropout", 0.1)))
        # initialise=False: matrices and embeddings keep torch.empty's memory (every weight is loaded next)
        linear, embedding = (nn.Linear, nn.Embedding) if initialise else (_BareLinear, _BareEmbedding)
        built = {**self.shape, "linear": linear, "embedding": embedding}
        self.embeddings = _Embeddings(built)
        self.encoder = _Stack(built, dropout)
        self.p = dropout
        self.hidden = self.shape["hidden"]

    @property
    def max_positions(self) -> int:
        return self.shape["positions"] - self.shape["offset"]

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        t = ids.shape[1]
        keep = (torch.arange(t, device=ids.device)[None, :] < lengths.clamp_min(1)[:, None])[:, None, None, :]
        x = F.dropout(self.embeddings(ids), self.p, self.training)  # (B, T, H)
        for layer in self.encoder.layer:
            x = layer(x, keep)
        return x

    def depth_of(self, name: str) -> int:
        """0 for the embeddings, i + 1 for layer i: how deep a parameter sits (layer-wise lr decay
        and `finetune: N` count from the top)."""
        if name.startswith("encoder.layer."):
            return int(name.split(".")[2]) + 1
        return 0


def base_name(name: str, prefixes: tuple[str, ...]) -> str:
    """A checkpoint tensor's name in the base model: a task model's prefix (`bert.`, ...) dropped."""
    for p in prefixes:
        if name.startswith(p):
            return name[len(p) :]
    return name


def hf_to_attn_names(state: dict[str, torch.Tensor], kind: str) -> dict[str, torch.Tensor]:
    """A checkpoint's tensors under this module's names: the base model's prefix dropped
    (`bert.`, `roberta.`, ...), DistilBERT's names mapped to BERT's, the pooler and task heads left
    out (an encoder's hidden states are what attn trains on)."""
    out = {}
    for name, t in state.items():
        name = base_name(name, ("bert.", "roberta.", "xlm-roberta.", "camembert.", "distilbert.", "model."))
        if kind == "distilbert":
            name = _distil_name(name)
        if name.startswith(("embeddings.", "encoder.layer.")) and not name.endswith("position_ids"):
            out[name] = t
    return out


_DISTIL = (
    ("transformer.layer.", "encoder.layer."),
    ("attention.q_lin.", "attention.self.query."),
    ("attention.k_lin.", "attention.self.key."),
    ("attention.v_lin.", "attention.self.value."),
    ("attention.out_lin.", "attention.output.dense."),
    ("sa_layer_norm.", "attention.output.LayerNorm."),
    ("ffn.lin1.", "intermediate.dense."),
    ("ffn.lin2.", "output.dense."),
    ("output_layer_norm.", "output.LayerNorm."),
)


def _distil_name(name: str) -> str:
    for a, b in _DISTIL:
        name = name.replace(a, b)
    return name


def init_weights(module: nn.Module, std: float = 0.02) -> None:
    """BERT's initialisation (normal(0, 0.02) matrices, zero biases, unit LayerNorms), for an
    encoder built without a checkpoint's weights."""
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=std)
            if isinstance(m, nn.Linear) and m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def state_key(ids) -> str:
    """A frozen encoder's cache key for one input: a digest of its valid ids (T,) as int64 (another
    tokenizer or max_len gives other ids). The disk cache (pipelines/data/encoder_cache.py) keys
    its files by the same function."""
    return hashlib.sha1(np.ascontiguousarray(ids, dtype=np.int64).tobytes()).hexdigest()


class EncoderFrontend(nn.Module):
    """A pretrained text encoder as attn's text front-end: token ids -> hidden states.

    finetune: "all" trains every encoder weight, an int N only the top N layers (0 = frozen:
    the encoder stays in eval mode, no dropout, no gradients), "frozen" the same as 0.
    Same (features, lengths) convention as the other front-ends: (B, H, T), lengths unchanged.
    """

    def __init__(self, config: dict[str, Any], finetune: str | int = "all", initialise: bool = True) -> None:
        super().__init__()
        # initialise=False: every weight is loaded next (a model file's, strictly), so none is
        # initialised: MiniLM's 22.6M parameters, initialised twice (torch's default, then BERT's),
        # took 0.3 s of `attn predict`'s cold start. (Not the meta device: initialising a meta
        # tensor imports torch._dynamo, 1.1 s.)
        self.encoder = BertEncoder(config, initialise)
        if initialise:
            init_weights(self.encoder, float(config.get("initializer_range", 0.02)))
        self.out_dim = self.encoder.hidden
        layers = self.encoder.shape["layers"]
        # Depths at or above this one train: 0 (embeddings too) for all, layers + 1 for none.
        top = {"all": layers + 1, "frozen": 0}.get(finetune, finetune)
        self.trained_from = layers + 1 - min(int(top), layers + 1)
        for name, p in self.encoder.named_parameters():
            p.requires_grad_(self.encoder.depth_of(name) >= self.trained_from)
        # Frozen: each distinct input's states, computed once (`enable_cache`); not in the state dict.
        self._cache: dict[str, torch.Tensor] | None = None
        self._fresh: set[str] = set()  # keys computed in this process (what a disk cache lacks)
        self._cache_bytes = 0
        self.cache_limit = 0
        self.train()  # a frozen encoder starts in eval mode too (modules are built in training mode)

    def enable_cache(self, limit_bytes: int = 4 << 30) -> None:
        """Keep a frozen encoder's hidden states per distinct input (token ids), up to
        `limit_bytes`: training reads each example every epoch, and a frozen encoder gives it the
        same states each time, so only the first epoch pays for the encoder."""
        if self.frozen:
            self._cache, self._cache_bytes, self.cache_limit = {}, 0, limit_bytes

    def preload(self, states: dict[str, torch.Tensor]) -> None:
        """Cached states from an earlier run (`new_states` of one with the same checkpoint)."""
        if self._cache is not None:
            for k, v in states.items():
                if self._cache_bytes + v.numel() * v.element_size() > self.cache_limit:
                    break
                self._cache[k] = v
                self._cache_bytes += v.numel() * v.element_size()

    def new_states(self) -> dict[str, torch.Tensor]:
        """{key: (T, H) states} computed in this process: what to add to a disk cache."""
        return {k: self._cache[k] for k in self._fresh if self._cache is not None and k in self._cache}

    @property
    def frozen(self) -> bool:
        return self.trained_from > self.encoder.shape["layers"]

    def train(self, mode: bool = True) -> EncoderFrontend:
        super().train(mode)
        if self.frozen:  # a frozen encoder computes the same states in training as at prediction
            self.encoder.eval()
        return self

    def frame_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        return lengths

    def lr_scales(self, decay: float) -> dict[int, float]:
        """{id(parameter): learning-rate multiplier}: decay ** (layers + 1 - depth), so the top
        layer learns at decay x the head's rate and each layer below at decay times the one above
        (layer-wise learning-rate decay, Howard & Ruder 2018; Clark et al. 2020)."""
        top = self.encoder.shape["layers"] + 1
        return {id(p): decay ** (top - self.encoder.depth_of(n)) for n, p in self.encoder.named_parameters()}

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if ids.dim() == 3:  # attn's n-gram columns never reach an encoder; keep the ids
            ids = ids[..., 0]
        if self._cache is not None and not torch.jit.is_scripting():
            return self._cached(ids, lengths)
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen):
            h = self.encoder(ids, lengths)  # (B, T, H)
        return h.transpose(1, 2), lengths  # (B, H, T)

    def _cached(self, ids: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`forward` through the cache: rows seen before are looked up, the rest run in one batch."""
        cache = self._cache
        assert cache is not None
        rows = ids.cpu().numpy()  # one copy off the device per batch, not one per row
        keys = [state_key(rows[i, : max(1, n)]) for i, n in enumerate(lengths.tolist())]
        miss = [i for i, k in enumerate(keys) if k not in cache]
        if miss:
            with torch.no_grad():
                h = self.encoder(ids[miss], lengths[miss])  # (M, T, H)
            for j, i in enumerate(miss):
                state = h[j, : max(1, int(lengths[i]))].detach().clone()  # its own storage, not the batch's
                if self._cache_bytes + state.numel() * state.element_size() <= self.cache_limit:
                    cache[keys[i]] = state
                    self._fresh.add(keys[i])
                    self._cache_bytes += state.numel() * state.element_size()
            fresh = dict(zip(miss, h, strict=True))
        else:
            fresh = {}
        out = ids.new_zeros((*ids.shape, self.out_dim), dtype=torch.float32)  # (B, T, H), zero past each length
        for i, k in enumerate(keys):
            row = fresh[i] if i in fresh else cache[k]
            n = min(row.shape[0], ids.shape[1]) if i not in fresh else ids.shape[1]
            out[i, :n] = row[:n]
        return out.transpose(1, 2), lengths
