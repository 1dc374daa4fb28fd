"""The recipes attn ships, found by name: `attn train audio.yaml` and `extends: audio.yaml` work
from any folder, also after `pip install attn` without a clone.

They are the files of recipes/ in a checkout; a wheel carries the same files as attn/recipes/
(pyproject.toml). This file sits two folders below either root (pipelines/recipe/ in a checkout,
attn/pipelines/recipe/ in site-packages), so one relative path finds both. A file the user names
that exists always wins: a built-in is only looked up for a bare name that is not a file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from attn.errors import ConfigError

SUFFIX = ".yaml"
DATASETS = "../../shared/data"  # the dataset recipes' default, ${ATTN_DATA:-../../shared/data}


def builtin_dir() -> Path | None:
    """The folder of the shipped recipes, or None (a partial install)."""
    folder = Path(__file__).resolve().parents[2] / "recipes"
    return folder if folder.is_dir() else None


def builtin_names() -> list[str]:
    """The shipped recipes' names, without the .yaml suffix, sorted."""
    folder = builtin_dir()
    return sorted(p.stem for p in folder.glob(f"*{SUFFIX}")) if folder else []


def builtin_recipe(name: str) -> Path | None:
    """The shipped recipe called `name` ("audio" or "audio.yaml"), or None: a name with a folder
    in it ("recipes/audio.yaml", "./audio.yaml") names a file, never a built-in."""
    folder = builtin_dir()
    if folder is None or not name or Path(name).name != name or name in (".", ".."):
        return None
    path = folder / (name if name.endswith(SUFFIX) else name + SUFFIX)
    return path if path.is_file() else None


def not_found_hint(name: str) -> str:
    """What to say after "recipe file not found" for a bare name: the built-ins to choose from."""
    names = builtin_names()
    if not names:
        return ""
    if Path(name).name != name:  # recipes/audio.yaml outside a clone: the shipped one goes by its name
        shipped = builtin_recipe(Path(name).name)
        return f"; the shipped recipe of that name: {Path(name).name}" if shipped else ""
    return f"; built-in recipes: {', '.join(names)}"


def check_placeholders(data: Any) -> None:
    """A shipped general recipe run as it is (`attn train audio.yaml`) names placeholder data
    beside the shipped file (my_sounds/, my_texts/train.csv): say which key to set, rather than
    "/.../site-packages/attn/recipes/my_sounds: data folder not found". `data` is a DataConfig."""
    folder = builtin_dir()
    if folder is None:
        return
    folder = folder.resolve()
    shared = (folder / DATASETS).resolve()  # where the dataset recipes look without $ATTN_DATA
    for key in ("root", "manifest", "train", "val", "test"):
        value = getattr(data, key, None)
        if isinstance(value, str) and Path(value).is_relative_to(shared) and not Path(value).exists():
            raise ConfigError(f"data.{key}: {value} not found: the shipped dataset recipes read their data from "
                              f"$ATTN_DATA{' (unset)' if not os.environ.get('ATTN_DATA') else ''}, else from "
                              f"{DATASETS} beside the recipes (a checkout's); e.g. ATTN_DATA=/path/to/datasets attn "
                              "train trec.yaml")  # fmt: skip
        if not isinstance(value, str) or not Path(value).is_relative_to(folder) or Path(value).exists():
            continue
        how = "DIR (a folder per class)" if key == "root" else "FILE"
        if key in ("val", "test"):
            how += f", or data.{key}=null to hold out data.{key}_fraction of data.train"
        raise ConfigError(f"data.{key}: {Path(value).relative_to(folder)} is a shipped recipe's placeholder; "
                          f"point it at your data: --set data.{key}={how}")  # fmt: skip


def drop_placeholder_root(raw: dict[str, Any]) -> None:
    """audio.yaml keeps `root: my_sounds` as its placeholder; `--set data.manifest=clips.csv` (the
    README's command) then read the manifest's relative paths from that missing folder, since a
    root beside a manifest is where its paths start. A placeholder root beside another source
    is dropped, so the paths start at the manifest's own folder. `raw`: a recipe as plain data."""
    data, folder = raw.get("data"), builtin_dir()
    if not isinstance(data, dict) or folder is None or not isinstance(data.get("root"), str):
        return
    root = Path(data["root"])
    others = any(data.get(k) is not None for k in ("manifest", "train", "synthetic"))
    if others and root.is_relative_to(folder.resolve()) and not root.exists():
        data["root"] = None
