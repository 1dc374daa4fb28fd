"""The one folder walk: the audio files under a folder, as training, predict and background
augmentation all list them."""

from __future__ import annotations

import os
from pathlib import Path

from attn.errors import InputError


def hidden(name: str) -> bool:
    """Names a folder walk passes over: dot-files and dot-folders (macOS's `._x.wav` AppleDouble
    files are not audio) and the `__MACOSX` folder zip files from macOS carry."""
    return name.startswith(".") or name == "__MACOSX"


def audio_files(folder: str | Path, extensions: tuple[str, ...], unreadable: list[str] | None = None) -> list[Path]:
    """The one folder walk: every file under `folder` (recursively, into symbolically linked
    folders too, each real folder once: a link loop ends) with one of `extensions` (any case),
    sorted, passing over `hidden` names. A broken symbolic link is listed too, so whoever reads
    it reports it like any unreadable file instead of it vanishing (training counts it as
    skipped, predict gives it an error record, background augmentation warns). A folder that
    cannot be read (permissions) is an InputError, or with `unreadable` is added to that list:
    it was passed over without a word, a class left out of training."""
    exts = {e.lower() for e in extensions}
    return sorted(f for f in _walk(folder, unreadable) if f.suffix.lower() in exts)


# Audio (or audio in video) containers libsndfile does not read: a folder walk passes them over,
# and says so, rather than leaving a class of phone recordings out without a word.
UNREAD_AUDIO = (".m4a", ".m4b", ".aac", ".alac", ".mp4", ".mov", ".mkv", ".mka", ".webm", ".wma", ".asf", ".amr",
                ".3gp", ".3gpp", ".ac3", ".ape", ".wv", ".dsf", ".mid", ".midi")  # fmt: skip


def unread_audio(folder: str | Path, extensions: tuple[str, ...]) -> dict[str, int]:
    """{suffix: count} of the files under `folder` (walked as `audio_files` walks) that hold audio
    in a container attn does not read (UNREAD_AUDIO) and that `extensions` leaves out."""
    exts = {e.lower() for e in extensions}
    counts: dict[str, int] = {}
    for f in _walk(folder, []):  # an unreadable folder is reported by `audio_files`' walk, not here
        suffix = f.suffix.lower()
        if suffix in UNREAD_AUDIO and suffix not in exts:
            counts[suffix] = counts.get(suffix, 0) + 1
    return counts


def unread_note(counts: dict[str, int]) -> str:
    """'6 .m4a, 1 .aac files: not read (convert them to WAV or FLAC, e.g. ffmpeg -i x.m4a x.wav)'."""
    if not counts:
        return ""
    kinds = ", ".join(f"{n} {s}" for s, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
    first = max(counts, key=counts.get)
    return f"{kinds} file(s) not read (convert them to WAV or FLAC, e.g. ffmpeg -i x{first} x.wav)"


def cannot_read(e: OSError) -> InputError:
    return InputError(f"{e.filename}: cannot read folder ({(e.strerror or str(e)).lower()})")


def _walk(folder: str | Path, unreadable: list[str] | None = None):
    """Every file under `folder` but `hidden` ones, into symbolically linked folders (each real
    folder once), broken links included; a folder that cannot be read: see `audio_files`."""

    def failed(e: OSError) -> None:
        if unreadable is None:
            raise cannot_read(e)
        unreadable.append(os.fsdecode(e.filename))

    seen = set()
    for top, dirs, files in os.walk(folder, followlinks=True, onerror=failed):
        real = os.path.realpath(top)
        if real in seen:
            dirs[:] = []
            continue
        seen.add(real)
        dirs[:] = [d for d in dirs if not hidden(d)]
        for name in files:
            f = Path(top, name)
            if not hidden(name) and (f.is_file() or (f.is_symlink() and not f.exists())):
                yield f
