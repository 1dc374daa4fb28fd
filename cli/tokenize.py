"""attn tokenize"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from .common import ModelOpt, SetOpt, check_model_or_recipe, err, handle_errors, recipe_opt, setup_logging

EPILOG = """\
Examples:

  attn tokenize -m runs/trec/model.attn "How far is it from Denver to Aspen?"

  attn tokenize --recipe recipes/trec.yaml --set features.tokenizer.level=subword --ids "Who wrote Hamlet?"

  cut -d, -f1 questions.csv | attn tokenize -m runs/latest -

One line per input: the tokens the model sees, space-separated (<unk> for unknown ones, cut at
max_len, <cls> first where the model prepends a class token); with --ids, a tab and their ids.
A blank input or a line that is not UTF-8 gets an empty line and an error on stderr (exit 1).
"""


@handle_errors
def tokenize_cmd(
    texts: Annotated[
        list[str], typer.Argument(help="Texts, or - to read one per line from stdin.", show_default=False)
    ],
    model: ModelOpt = None,
    recipe: recipe_opt("Build the tokenizer from this recipe's training data.") = None,
    set_: SetOpt = None,
    ids: Annotated[bool, typer.Option("--ids", help="Also print the token ids (after a tab).")] = False,
) -> None:
    """Show how a text model's tokenizer splits text: exactly the tokens the model sees."""
    check_model_or_recipe(model, recipe, set_)
    setup_logging(quiet=True)
    from attn.features.tokenizers import CLS
    from attn.pipelines.infer.predict_text import argument_inputs
    from attn.pipelines.ship.tokenize import tokenizer_for

    tok, features, cls = tokenizer_for(model=model, recipe=recipe, overrides=list(set_ or []))
    max_len = features.tokenizer.max_len
    cut = failed = total = 0
    for item in argument_inputs(texts):
        total += 1
        if item.error is not None:  # blank or not UTF-8: an empty line keeps the output in step
            failed += 1
            print()
            err(f"error: {item.error}")
            continue
        tokens = tok.tokens(item.text)
        token_ids = tok.encode(item.text)
        if len(tokens) > max_len:
            cut += 1
            tokens, token_ids = tokens[:max_len], token_ids[:max_len]
        shown = ([CLS] if cls else []) + tokens
        out = " ".join(shown)
        if ids:
            out += "\t" + " ".join((["cls"] if cls else []) + [str(i) for i in token_ids])
        print(out)
    if cut:
        print(f"attn: {cut} text(s) cut to max_len={max_len} tokens", file=sys.stderr)
    if failed:
        print(f"attn: {failed} of {total} input(s) failed", file=sys.stderr)
        raise typer.Exit(1)
