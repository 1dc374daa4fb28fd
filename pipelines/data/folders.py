"""The one folder walk: the audio files under a folder, as training, predict and background
augmentation all list them."""

from __future__ import annotations

import os
from pathlib import Path


def hidden(name: str) -> bool:
    """Names a folder walk passes over: dot-files and dot-folders (macOS's `._x.wav` AppleDouble
    files are not audio) and the `__MACOSX` folder zip files from macOS carry."""
    return name.startswith(".") or name == "__MACOSX"


def audio_files(folder: str | Path, extensions: tuple[str, ...]) -> list[Path]:
    """The one folder walk: every file under `folder` (recursively, into symbolically linked
    folders too, each real folder once: a link loop ends) with one of `extensions` (any case),
    sorted, passing over `hidden` names. A broken symbolic link is listed too, so whoever reads
    it reports it like any unreadable file instead of it vanishing (training counts it as
    skipped, predict gives it an error record, background augmentation warns)."""
    exts = {e.lower() for e in extensions}
    found, seen = [], set()
    for top, dirs, files in os.walk(folder, followlinks=True):
        real = os.path.realpath(top)
        if real in seen:
            dirs[:] = []
            continue
        seen.add(real)
        dirs[:] = [d for d in dirs if not hidden(d)]
        for name in files:
            f = Path(top, name)
            if not hidden(name) and f.suffix.lower() in exts and (f.is_file() or (f.is_symlink() and not f.exists())):
                found.append(f)
    return sorted(found)
