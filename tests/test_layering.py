"""The layers point down: cli -> attn (the API) -> pipelines -> models -> features -> the bottom
(attn.errors, attn.schema); the command line goes through the API alone, never below it. Read
from the source: every import statement of every module, wherever it sits (top level or inside
a function), parsed with `ast`.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
# Where each attn.* package's source lives (pyproject.toml's package-dir).
PACKAGES = {"attn": "attn", "attn.cli": "cli", "attn.pipelines": "pipelines", "attn.features": "features",
            "attn.models": "models"}  # fmt: skip
BOTTOM = {"attn.errors", "attn.schema"}


def modules() -> dict[str, Path]:
    """Every module of the package: dotted name -> file."""
    out = {}
    for pkg, folder in PACKAGES.items():
        for f in sorted((REPO / folder).rglob("*.py")):
            parts = f.relative_to(REPO / folder).with_suffix("").parts
            out[".".join((pkg, *parts[:-1]) if f.stem == "__init__" else (pkg, *parts))] = f
    return out


def imports(name: str, path: Path) -> set[str]:
    """Absolute names of everything `name` imports (relative imports resolved; `from a import b`
    gives a.b when that is a module of ours, else a)."""
    ours = modules()
    package = name if path.stem == "__init__" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - node.level + 1]
                base = ".".join(parts + ([node.module] if node.module else []))
            for a in node.names:
                sub = f"{base}.{a.name}"
                found.add(sub if sub in ours else base)
    return found


def layer(module: str) -> str:
    """bottom, features, models, pipelines, api (attn itself, attn.api) or cli; '' if not ours."""
    if module in BOTTOM:
        return "bottom"
    for pkg in ("attn.cli", "attn.pipelines", "attn.features", "attn.models"):
        if module == pkg or module.startswith(pkg + "."):
            return pkg.split(".")[1]
    if module == "attn" or module.startswith("attn."):
        return "api"
    return ""


# What each layer may import from the others (itself always).
ALLOWED = {
    "bottom": {"bottom"},
    "features": {"bottom"},
    "models": {"bottom", "features"},
    "pipelines": {"bottom", "features", "models"},
    "api": {"bottom", "features", "models", "pipelines"},
    "cli": {"bottom", "api"},  # every command through attn.api: parse, one library call, render
}
UI = ("typer", "rich", "click")


def violations(name: str, path: Path) -> list[str]:
    """What module `name` (source at `path`) imports against ALLOWED, or a UI package outside cli/."""
    mine, found = layer(name), []
    for target in sorted(imports(name, path)):
        other = layer(target)
        if other and other != mine and other not in ALLOWED[mine]:
            found.append(f"{name} ({mine}) imports {target} ({other})")
        if mine != "cli" and target.split(".")[0] in UI:
            found.append(f"{name}: only cli/ imports {target.split('.')[0]}")
    return found


@pytest.mark.parametrize("name", sorted(modules()))
def test_imports_point_down(name):
    assert not violations(name, modules()[name])


def test_a_command_that_skips_the_api_is_caught(tmp_path):
    """cli/ reaches the library through attn.api only: a command importing a pipeline, a model
    family or a feature module directly (at top level or in a function) is a violation; the API,
    errors, schema, typer and its own modules are not."""
    bad = tmp_path / "bad.py"
    bad.write_text("import typer\nfrom attn.api import load\nfrom attn.errors import ConfigError\n"
                   "from .common import fail\ndef cmd():\n    from attn.pipelines.infer.predict import expand_inputs\n"
                   "    import attn.models.registry\n    from attn.features.tokenizers import CLS\n")  # fmt: skip
    found = violations("attn.cli.bad", bad)
    assert len(found) == 3, found
    assert all(" (cli) imports attn." in v for v in found)
    assert {v.split()[3] for v in found} == {"attn.pipelines.infer.predict", "attn.models.registry",
                                             "attn.features.tokenizers"}  # fmt: skip


def test_the_issue_s_greps_find_nothing():
    """models/ and features/ never name attn.pipelines or attn.cli, not even in a string."""
    for folder in ("models", "features"):
        for f in (REPO / folder).glob("*.py"):
            text = f.read_text(encoding="utf-8")
            assert "attn.pipelines" not in text and "attn.cli" not in text, f


def test_no_module_imports_another_s_private_names():
    ours = modules()
    for name, path in ours.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and (node.level or node.module.startswith("attn")):
                private = [a.name for a in node.names if a.name.startswith("_") and not a.name.startswith("__")]
                assert not private, f"{name} imports private {private} from {node.module}"


def test_no_import_cycles():
    """The module import graph (top-level and function-level imports alike) has no cycle."""
    ours = modules()
    graph = {n: {t for t in imports(n, p) if t in ours and t != n} for n, p in ours.items()}
    # A package's __init__ runs before its modules; an import of a.b is also an import of a.
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> None:
        state[n] = 1
        stack.append(n)
        for m in sorted(graph[n]):
            if state.get(m) == 1:
                cycle = stack[stack.index(m) :] + [m]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if m not in state:
                visit(m)
        stack.pop()
        state[n] = 2

    for n in sorted(graph):
        if n not in state:
            visit(n)


def test_the_walk_sees_imports_at_every_level(tmp_path):
    """The checks above would pass vacuously if function-level and relative imports were missed."""
    found = imports("attn.pipelines.train.run", REPO / "pipelines" / "train" / "run.py")
    assert "attn.pipelines.train.model" in found and "attn.pipelines.recipe.load" in found  # relative, in a function
    assert layer("attn.errors") == "bottom" and layer("attn.api") == "api" and layer("typer") == ""


# pipelines/ by job: each tier may import the tiers before it (and fsutil/device, the floor at the
# top level), never one after it nor a sibling in its own tier. A reader knows from a file's
# folder what it may import.
PIPELINES_FLOOR = ("fsutil", "device")
PIPELINES_ORDER = (("recipe",), ("data",), ("infer",), ("store",), ("ship", "serve"), ("train",), ("tune",))


def pipelines_part(module: str) -> str:
    """The sub-package (or floor module) of an attn.pipelines module; '' for attn.pipelines itself
    or a module outside pipelines."""
    if not module.startswith("attn.pipelines."):
        return ""
    return module.split(".")[2]


def tier(part: str) -> int:
    """Index of a sub-package in PIPELINES_ORDER; -1 for the floor."""
    if part in PIPELINES_FLOOR:
        return -1
    return next(i for i, t in enumerate(PIPELINES_ORDER) if part in t)


def test_every_pipelines_module_has_a_place():
    """A module at pipelines/ top level must be one of the floor's; a sub-package must be in the order."""
    placed = set(PIPELINES_FLOOR) | {p for t in PIPELINES_ORDER for p in t}
    for name, path in modules().items():
        part = pipelines_part(name)
        if not part:
            continue
        where = path.relative_to(REPO / "pipelines")
        if len(where.parts) == 1:
            assert part in PIPELINES_FLOOR, (
                f"{where}: a module at pipelines/ top level outside the floor {PIPELINES_FLOOR}"
            )
        else:
            assert len(where.parts) == 2, f"{where}: pipelines/ sub-packages are one level deep"
            assert part in placed, f"{where}: sub-package {part}/ is not in PIPELINES_ORDER"
    tops = [p for p in (REPO / "pipelines").glob("*.py") if p.stem != "__init__"]
    subs = [d for d in (REPO / "pipelines").iterdir() if (d / "__init__.py").exists()]
    assert len(tops) <= 4 and len(subs) >= 6


@pytest.mark.parametrize("name", sorted(n for n in modules() if pipelines_part(n)))
def test_pipelines_tiers_point_down(name):
    mine = pipelines_part(name)
    for target in sorted(imports(name, modules()[name])):
        other = pipelines_part(target)
        if not other or other == mine:
            continue
        assert tier(other) < tier(mine) or other in PIPELINES_FLOOR, f"{name} ({mine}) imports {target} ({other})"


def test_the_tier_check_can_fail(tmp_path):
    """The order is not vacuous: a store module importing train, or a floor module importing any
    sub-package, breaks it; a sibling in the same tier (ship -> serve) breaks it too."""
    assert not tier("train") < tier("store")
    assert not tier("serve") < tier("ship") and not tier("ship") < tier("serve")
    assert tier("recipe") > tier("fsutil")
