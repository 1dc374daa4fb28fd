"""The layers point down: cli -> attn (the API) -> pipelines -> models -> features -> the bottom
(attn.errors, attn.schema). Read from the source: every import statement of every module,
wherever it sits (top level or inside a function), parsed with `ast`.
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
        for f in sorted((REPO / folder).glob("*.py")):
            out[pkg if f.stem == "__init__" else f"{pkg}.{f.stem}"] = f
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
    "cli": {"bottom", "features", "models", "pipelines", "api"},
}
UI = ("typer", "rich", "click")


@pytest.mark.parametrize("name", sorted(modules()))
def test_imports_point_down(name):
    mine = layer(name)
    for target in sorted(imports(name, modules()[name])):
        other = layer(target)
        if other and other != mine:
            assert other in ALLOWED[mine], f"{name} ({mine}) imports {target} ({other})"
        if mine != "cli":
            assert target.split(".")[0] not in UI, f"{name}: only cli/ imports {target.split('.')[0]}"


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
    found = imports("attn.pipelines.train", REPO / "pipelines" / "train.py")
    assert "attn.pipelines.train_model" in found and "attn.pipelines.recipe" in found  # relative, in a function
    assert layer("attn.errors") == "bottom" and layer("attn.api") == "api" and layer("typer") == ""
