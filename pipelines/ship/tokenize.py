"""`attn tokenize`: the tokenizer a text model uses, from its model file or built from a recipe."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from attn.errors import ConfigError
from attn.features.config import TextFeatures
from attn.features.tokenizers import CLS, UNK, UNK_ID, cut_to

from ..data.sources import list_items, split_items
from ..data.text import fit_tokenizer
from ..recipe.config import Recipe
from ..recipe.load import load_recipe
from ..store.artifact import load_model, resolve_model_path


def tokenizer_for(model: str | None = None, recipe: str | None = None, overrides: list[str] | None = None):
    """(tokenizer, TextFeatures, uses_class_token) from a model file, or built from a recipe's
    training split exactly as `attn train` would build it."""
    if recipe is not None:
        r = load_recipe(recipe, overrides or [])
        if not isinstance(r.features, TextFeatures):
            raise ConfigError(f"{recipe}: not a text recipe (features.kind is {r.features.kind!r})")
        if r.features.encoder is not None:  # the checkpoint's own tokenizer: no training texts needed
            return _encoder_tokenizer(r)
        if r.features.tokenizer.max_len == "auto":  # resolved from the training texts as `attn train` would
            from ..data.auto import resolve_auto
            from ..data.prepared import prepare_data

            r, prepared, _ = resolve_auto(r, prepare_data(r))
            return prepared.tokenizer, r.features, uses_class_token(r)
        splits = split_items(list_items(r.data, "text"), r.data)
        return fit_tokenizer(r.features, [it.source for it in splits["train"]]), r.features, uses_class_token(r)
    path = resolve_model_path(model)
    loaded = load_model(path, purpose="attn tokenize")
    if loaded.tokenizer is None:
        raise ConfigError(f"{path}: an audio model has no tokenizer")
    return loaded.tokenizer, loaded.recipe.features, uses_class_token(loaded.recipe)


def _encoder_tokenizer(r: Recipe):
    """A pretrained encoder recipe's tokenizer, read from its checkpoint. `max_len: auto` (which
    training sets from the training texts) shows up to what the encoder can read."""
    from attn.models.bert import encoder_shape

    from ..data.encoders import encoder_tokenizer, resolve_encoder

    f = r.features
    max_len = f.tokenizer.max_len
    if max_len == "auto":
        shape = encoder_shape(resolve_encoder(f.encoder).config)
        max_len = shape["positions"] - shape["offset"]
    f = f.model_copy(update={"tokenizer": f.tokenizer.model_copy(update={"max_len": max_len})})
    return encoder_tokenizer(f), f, uses_class_token(r)


def uses_class_token(recipe: Recipe) -> bool:
    """Whether the recipe's model prepends a class token (`attn tokenize` shows it as <cls>)."""
    return recipe.model.family.uses_class_token(recipe.model.config)


@dataclass
class Tokenized:
    """`attn tokenize`'s answer: the model's `max_len`, whether it prepends a class token, and one
    record per input, in order: {"input", "tokens", "ids", "truncated"} (tokens start with <cls>
    where the model prepends one, which has no id; both cut at max_len), or {"input", "error"}
    for a blank input or a line that is not UTF-8."""

    max_len: int
    class_token: bool
    records: Iterator[dict[str, Any]]


def tokenize(items: Iterable, tok, max_len: int, cls: bool) -> Iterator[dict[str, Any]]:
    """Records of `Tokenized` for text inputs (`predict_text.TextInput`s)."""
    for item in items:
        if item.error is not None:
            yield {"input": item.input, "error": item.error}
            continue
        tokens, ids = tok.tokens(item.text), tok.encode(item.text)
        # a token the model sees as <unk> shows as <unk> (a subword piece outside the vocabulary showed as written)
        if len(tokens) == len(ids) and tok.level != "encoder":
            tokens = [UNK if i == UNK_ID else t for t, i in zip(tokens, ids, strict=True)]
        cut = len(tokens) > max_len
        tokens, ids = cut_to(tokens, max_len, tok.end_token), cut_to(ids, max_len, tok.end_token)
        yield {"input": item.input, "tokens": ([CLS] if cls else []) + tokens, "ids": ids, "truncated": cut}
