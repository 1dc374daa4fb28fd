"""Load a recipe: YAML -> ${VAR} expansion -> --set overrides -> paths -> validated `Recipe`.

Every failure is a `ConfigError` with one line naming the file, the dotted key and the problem;
for an unknown key it names the nearest valid one.
"""

from __future__ import annotations

import copy
import os
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from attn.errors import ConfigError
from attn.schema import format_validation_error

from . import keys
from .builtin import builtin_recipe, drop_placeholder_root, not_found_hint
from .config import PATH_KEYS, Recipe

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
MAX_EXTENDS = 64  # recipes in one `extends:` chain; a deeper one is a mistake (and would exhaust the stack)
MAX_VALUES = 100_000  # values in a recipe once YAML aliases are expanded; real recipes hold a few hundred


def load_recipe(path: str | os.PathLike, overrides: list[str] | tuple[str, ...] = ()) -> Recipe:
    """Read, expand, override, resolve and validate the recipe at `path` (and the recipes it
    `extends`). A bare name that is not a file ("audio.yaml", "audio") is a shipped recipe."""
    raw = read_raw(find_recipe(path))
    apply_overrides(raw, overrides)
    drop_placeholder_root(raw)
    return _validate(raw, str(path), overrides)


def _validate(raw: dict[str, Any], source: str, overrides) -> Recipe:
    """`validate_recipe`; a problem with a value a `--set` gave is blamed on that --set, not on
    the recipe file (which says something else there)."""
    try:
        return validate_recipe(raw, source=source)
    except ConfigError as e:
        problem = str(e).removeprefix(f"{source}: ")
        for item in reversed(overrides):
            key = item.split("=", 1)[0].strip()
            parent, _, leaf = key.rpartition(".")
            # "train.epochs: ...", "unknown key 'train.epocs'; ...", "features: hop_seconds (3) is longer ..."
            if problem.startswith((f"{key}:", f"{key} ", f"unknown key '{key}'")) or (
                parent and problem.startswith((f"{parent}: {leaf} ", f"{parent}: {leaf}:"))
            ):
                raise ConfigError(f"--set {item}: {problem}") from None
        raise


def find_recipe(path: str | os.PathLike) -> Path:
    """`path`, or the shipped recipe of that name when `path` is a bare name and no such file
    exists here (builtin.py)."""
    given = Path(path)
    if not given.exists() and isinstance(path, str):
        return builtin_recipe(path) or given
    return given


def read_raw(path: Path, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """The recipe file as plain data: ${VAR}s expanded, paths resolved against its folder, and
    `extends: other.yaml` (relative to it) merged in: the other recipe's sections are the start,
    and this one's keys replace theirs key by key, except that a `data` section replaces the
    whole `data` section, and a model of another `name` the whole `model` section."""
    if not path.is_file():
        what = "a folder, not a recipe file" if path.is_dir() else "recipe file not found" + not_found_hint(str(path))
        raise ConfigError(f"{path}: {what}")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read recipe ({e})") from e
    raw = parse_yaml(text, str(path))
    _resolve_paths(raw, path.resolve().parent, str(path))
    raw = expand_env(raw, str(path))
    base = raw.pop("extends", None)
    if base is None:
        return raw
    if not isinstance(base, str) or not base.strip():
        raise ConfigError(f"{path}: extends: expected the file name of another recipe, got {keys.kind(base)}")
    base_path = Path(base).expanduser()
    base_path = base_path if base_path.is_absolute() else path.resolve().parent / base_path
    if not base_path.exists() or base_path.resolve() == path.resolve():
        # `extends: audio.yaml` from any folder; from a file itself named audio.yaml, the shipped one
        base_path = builtin_recipe(base) or base_path
    seen = (*_seen, path.resolve())
    if base_path.resolve() in seen:
        raise ConfigError(f"{path}: extends {base}: the recipes extend each other in a cycle")
    if len(seen) >= MAX_EXTENDS:
        raise ConfigError(f"{path}: extends {base}: a chain of more than {MAX_EXTENDS} recipes (from {seen[0]}); "
                          "merge some of them")  # fmt: skip
    if not base_path.is_file():
        what = "a folder, not a recipe file" if base_path.is_dir() else "recipe file not found"
        raise ConfigError(f"{path}: extends {base}: {what} ({base_path}){not_found_hint(base)}")
    return merge_recipes(read_raw(base_path, seen), raw)


def merge_recipes(base: dict[str, Any], child: dict[str, Any]) -> dict[str, Any]:
    """`child` over `base` (see `read_raw`)."""
    out = copy.deepcopy(base)
    for section, value in child.items():
        old = out.get(section)
        replace_whole = section == "data" or (
            section == "model" and isinstance(value, dict) and isinstance(old, dict)
            and value.get("name", old.get("name")) != old.get("name")
        )  # fmt: skip
        if isinstance(value, dict) and isinstance(old, dict) and not replace_whole:
            out[section] = _deep_merge(old, value)
        else:
            out[section] = copy.deepcopy(value)
    return out


def _deep_merge(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    out = dict(old)
    for k, v in new.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


def resolve_recipe(
    recipe: str | os.PathLike | dict[str, Any] | Recipe, overrides: list[str] | tuple[str, ...] = ()
) -> Recipe:
    """A `Recipe` from a YAML file (`load_recipe`), a mapping shaped like one (paths relative to the
    working directory) or a Recipe, with `--set`-style overrides ("train.epochs=3") applied."""
    if isinstance(recipe, (str, os.PathLike)):
        return load_recipe(recipe, overrides)
    raw = recipe_to_dict(recipe) if isinstance(recipe, Recipe) else copy.deepcopy(dict(recipe))
    _resolve_paths(raw, Path.cwd(), "recipe")
    raw = expand_env(raw, "recipe")
    apply_overrides(raw, overrides)
    drop_placeholder_root(raw)
    return _validate(raw, "recipe", overrides)


def apply_overrides(raw: dict[str, Any], overrides: list[str] | tuple[str, ...]) -> None:
    """`--set a.b=value` items into a raw recipe; a path value is relative to the working directory.

    `--set model.name=X` of another family starts the model section afresh, as a model of another
    name does under `extends:` (the recipe's other model keys are the old family's: `channels`
    means nothing to a transformer); it goes first, so `--set model.layers=2` beside it, before or
    after, sets the new family's key."""
    parsed = [(item, *parse_override(item)) for item in overrides]
    parsed.sort(key=lambda p: p[1] != "model.name")  # stable: the rest keep their order
    for item, key, value in parsed:
        if _is_path_key(key) and isinstance(value, str):
            value = _resolve(value, Path.cwd())
        model = raw.get("model")
        if key == "model.name" and isinstance(model, dict) and model.get("name") != value:
            raw["model"] = {}
        keys.put(raw, key, value, source=f"--set {item}")


def recipe_from_dict(raw: dict[str, Any], source: str = "recipe") -> Recipe:
    """Validate an already-resolved recipe (e.g. the one stored in an artifact). The rules only
    new recipes follow are not applied: a model file written before them still loads."""
    return validate_recipe(raw, source=source, new=False)


def parse_yaml(text: str, source: str) -> dict[str, Any]:
    try:
        _bounded(yaml.compose(text, Loader=yaml.SafeLoader), source)
        raw = yaml.safe_load(text)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark
        where = f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""
        raise ConfigError(f"{source}{where}: YAML syntax error: {' '.join(str(e.problem).split())}") from None
    except yaml.reader.ReaderError as e:
        line = text.count("\n", 0, e.position) + 1
        raise ConfigError(f"{source}:{line}: character {e.character!r} is not allowed in YAML") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{source}: YAML error: {' '.join(str(e).split())}") from e
    if raw is None:
        raise ConfigError(f"{source}: recipe is empty")
    _no_duplicate_keys(yaml.compose(text, Loader=yaml.SafeLoader), source)
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: a recipe must be a mapping of sections, got {keys.kind(raw)}")
    return raw


def _bounded(node: yaml.Node | None, source: str) -> None:
    """Refuse a recipe whose aliases (`*name`) would expand it past MAX_VALUES values: PyYAML
    shares an aliased node, but every later step (${VAR} expansion, merging, validation) walks
    the expanded tree, so nine nested aliases of nine would be 387 million values, then a
    MemoryError. Sizes are counted per node once (memoised), so the count itself stays cheap."""
    sizes: dict[int, int] = {}

    def size(n: yaml.Node) -> int:
        if id(n) not in sizes:
            sizes[id(n)] = 0  # a recursive alias meets itself here; PyYAML refuses it when loading
            if isinstance(n, yaml.MappingNode):
                total = 1 + sum(size(k) + size(v) for k, v in n.value)
            elif isinstance(n, yaml.SequenceNode):
                total = 1 + sum(size(v) for v in n.value)
            else:
                total = 1
            sizes[id(n)] = min(total, MAX_VALUES + 1)
        return sizes[id(n)]

    if node is not None and size(node) > MAX_VALUES:
        raise ConfigError(f"{source}: the recipe expands to over {MAX_VALUES:,} values through YAML aliases (*name); "
                          "refusing to load it")  # fmt: skip


def _no_duplicate_keys(node: yaml.Node | None, source: str, path: tuple[str, ...] = (), seen=None) -> None:
    """A key given twice in one mapping is an error, as in strict YAML loaders (PyYAML keeps the
    last one silently): `recipe.yaml:5: duplicate key 'train.epochs' (first on line 3)`."""
    seen = set() if seen is None else seen
    if node is None or id(node) in seen:  # an alias repeats a node already checked
        return
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        first: dict[str, int] = {}
        for key, value in node.value:
            name = str(key.value) if isinstance(key, yaml.ScalarNode) else None
            if name is not None and key.tag != "tag:yaml.org,2002:merge":
                dotted = ".".join((*path, name))
                if name in first:
                    raise ConfigError(f"{source}:{key.start_mark.line + 1}: duplicate key {dotted!r} "
                                      f"(first on line {first[name]})")  # fmt: skip
                first[name] = key.start_mark.line + 1
            _no_duplicate_keys(value, source, (*path, name or "?"), seen)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _no_duplicate_keys(item, source, (*path, str(i)), seen)


def expand_env(value: Any, source: str) -> Any:
    """Expand ${VAR} and ${VAR:-default} in string values. A value that is one whole ${...}
    expression is re-read as YAML, so `epochs: ${EPOCHS:-10}` gives an integer."""
    if isinstance(value, dict):
        return {k: expand_env(v, source) for k, v in value.items()}
    if isinstance(value, list):
        return [expand_env(v, source) for v in value]
    if not isinstance(value, str) or "${" not in value:
        return value

    def sub(m: re.Match) -> str:
        name, default = m.group(1), m.group(2)
        got = os.environ.get(name)
        if got is None or (got == "" and default is not None):
            if default is None:
                raise ConfigError(f"{source}: environment variable {name} is not set (used as ${{{name}}})")
            return default
        return got

    out = _ENV.sub(sub, value)
    if _ENV.fullmatch(value):
        try:
            return yaml.safe_load(out) if out.strip() else out
        except yaml.YAMLError:
            return out
    return out


def parse_override(item: str) -> tuple[str, Any]:
    """`a.b=value` -> ("a.b", value read as YAML: 3 -> int, true -> bool, [1,2] -> list)."""
    key, sep, text = item.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(f"--set {item!r}: expected KEY=VALUE with a dotted key, e.g. train.epochs=5")
    if text.strip() in ("|", ">"):  # YAML's block markers, alone: the character itself (data.label_sep=|)
        return key, text.strip()
    try:
        value = yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError as e:
        if text.strip()[:1] in "[{":  # a list or mapping with a typo, not a string ("[8,16" lacks its "]")
            why = " ".join(str(getattr(e, "problem", "") or e).split())
            raise ConfigError(f"--set {item}: the value is not valid YAML ({why})") from None
        value = text  # any other text is a string as written (a path, a label with a colon)
    return key, value


def validate_recipe(raw: dict[str, Any], source: str, new: bool = True) -> Recipe:
    """Validate the recipe, the model family's hyperparameters included (see `ModelSection`);
    `new`: also the rules for a recipe about to be trained or evaluated (e.g. features that would
    leave audio unseen), which a model file's stored recipe is exempt from."""
    try:
        return Recipe.model_validate(raw, context={"new_recipe": new})
    except ValidationError as e:
        raise ConfigError(format_validation_error(e, Recipe, source)) from None


def recipe_to_dict(recipe: Recipe) -> dict[str, Any]:
    """Plain data (JSON/YAML-safe) with every default filled in: the resolved recipe."""
    return recipe.model_dump(mode="json")


def recipe_to_yaml(recipe: Recipe) -> str:
    return yaml.safe_dump(recipe_to_dict(recipe), sort_keys=False, default_flow_style=None)


# -- paths --------------------------------------------------------------------------------------


def _is_path_key(key: str) -> bool:
    return tuple(key.split(".")) in PATH_KEYS


def _resolve(value: str, base: Path) -> str:
    from attn.features.vectors import is_named

    if is_named(value):  # a named set of word vectors, not a file
        return value
    p = Path(value).expanduser()
    return str(p if p.is_absolute() else (base / p).resolve())


def _resolve_paths(raw: dict[str, Any], base: Path, source: str) -> None:
    """Expand and resolve path keys. A relative path written in the recipe is relative to the
    recipe's folder; one that comes from an environment variable (`${ATTN_DATA}/fsdd` with
    ATTN_DATA=data) is relative to the working directory, where the user typed it."""
    for parts in PATH_KEYS:
        node: Any = raw
        for k in parts[:-1]:
            node = node.get(k) if isinstance(node, dict) else None
        if isinstance(node, dict) and isinstance(node.get(parts[-1]), str):
            value = node[parts[-1]]
            m = _ENV.match(value)
            from_env = m is not None and m.start() == 0 and os.environ.get(m.group(1)) not in (None, "")
            node[parts[-1]] = _resolve(expand_env(value, source), Path.cwd() if from_env else base)
    _resolve_encoder(raw, base, source)


def _resolve_encoder(raw: dict[str, Any], base: Path, source: str) -> None:
    """`features.encoder.name` is a directory, a package or a hub name (pipelines/data/encoders.py):
    a relative directory (one that starts with "." or exists under the recipe's folder) resolves
    against the recipe's folder, as the other paths do; a name stays a name."""
    features = raw.get("features")
    enc = features.get("encoder") if isinstance(features, dict) else None
    if isinstance(enc, str):  # the shorthand `encoder: NAME` (EncoderConfig reads it so too)
        enc = features["encoder"] = {"name": enc}
    if not isinstance(enc, dict) or not isinstance(enc.get("name"), str) or _ENV.match(enc["name"]):
        return
    name = expand_env(enc["name"], source)
    p = Path(name).expanduser()
    if not p.is_absolute() and (name.startswith(".") or (base / p).exists()):
        enc["name"] = str((base / p).resolve())
