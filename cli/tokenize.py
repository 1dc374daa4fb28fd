"""attn tokenize"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from .common import ModelOpt, SetOpt, check_model_or_recipe, err, handle_errors, no_inputs, recipe_opt, setup_logging

EPILOG = """\
Examples:

  attn tokenize -m runs/trec/model.attn "How far is it from Denver to Aspen?"

  attn tokenize --recipe recipes/trec.yaml --ids "Who wrote Hamlet?"   # built from the recipe's training texts

  attn tokenize --recipe recipes/text_pretrained.yaml "Unbelievable!"   # the encoder's word pieces, no data needed

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
    from attn.api import argument_texts, tokenize

    result = tokenize(argument_texts(texts), model=model, recipe=recipe, overrides=set_ or [])
    cut = failed = total = 0
    for rec in result.records:
        total += 1
        if "error" in rec:  # blank or not UTF-8: an empty line keeps the output in step
            failed += 1
            print()
            err(f"error: {rec['error']}")
            continue
        cut += rec["truncated"]
        out = " ".join(rec["tokens"])
        if ids:
            out += "\t" + " ".join((["cls"] if result.class_token else []) + [str(i) for i in rec["ids"]])
        print(out)
    if not total:  # `attn tokenize - < /dev/null`: exit 0 without a word, where predict, embed and explain say so
        raise no_inputs(texts)
    if cut:
        print(f"attn: {cut} text(s) cut to max_len={result.max_len} tokens", file=sys.stderr)
    if failed:
        print(f"attn: {failed} of {total} input(s) failed", file=sys.stderr)
        raise typer.Exit(1)
