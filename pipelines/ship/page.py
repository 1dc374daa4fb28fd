"""The pieces report.html is made of: inline PNG figures, sections, tables and the page itself
(no network, no other file: it opens from disk in any browser)."""

from __future__ import annotations

import base64
import html
import math
from typing import Any


def img(fig, alt: str) -> str:
    from ..infer import plots

    data = base64.b64encode(plots.png_bytes(fig)).decode("ascii")
    return f"<img alt='{html.escape(alt)}' src='data:image/png;base64,{data}'>"


def section(title: str, body: str) -> str:
    return f"<section><h2>{html.escape(title)}</h2>\n{body}\n</section>"


def kv(rows: list[tuple[str, str]]) -> str:
    return "<table class='kv'>" + "".join(
        f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows) + "</table>"  # fmt: skip


def num(v: Any, spec: str = ".4f", big: str = ".1f") -> str:
    """A value as text (not yet escaped): a fraction to `spec`, another float to `big` (seconds:
    one place; a temperature or a ratio near 1 wants its decimals: `big=spec`), an integer as
    written, anything else (a string where a number belongs) as its text."""
    if v is None:
        return "–"
    if isinstance(v, float) and math.isfinite(v):
        return f"{v:{spec}}" if abs(v) <= 1 else f"{v:{big}}"
    return str(v)


def td(v: Any, spec: str = ".4f") -> str:
    return f"<td>{html.escape(num(v, spec))}</td>"


def fact(v: Any) -> str:
    if isinstance(v, dict):
        return ", ".join(f"{k} {fact(x)}" for k, x in v.items())
    return str(v)


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1000px; color: #222; padding: 0 1em; }}
h1 {{ margin-bottom: 0; }} h2 {{ border-bottom: 1px solid #ddd; padding-bottom: .2em; margin-top: 1.6em; }}
.path, .note {{ color: #666; }}
table {{ border-collapse: collapse; margin: .5em 0; }}
th, td {{ padding: .2em .7em; border-bottom: 1px solid #eee; text-align: right; vertical-align: middle; }}
th:first-child, td:first-child {{ text-align: left; }}
table.kv th {{ text-align: left; font-weight: 600; }} table.kv td {{ text-align: left; }}
img {{ max-width: 100%; }}
pre {{ background: #f6f6f6; padding: .8em; overflow-x: auto; font-size: 12px; }}
</style></head>
<body>
{body}
</body></html>
"""
