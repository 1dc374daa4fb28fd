"""The `.attn` file: one self-describing container for models and resume checkpoints.

Layout (all integers little-endian):
    magic  8 bytes  b"\\x89ATTN\\r\\n\\x1a\\n"
    format u32      FORMAT_VERSION of the writer; newer files are refused before anything else
    hlen   u64      then `hlen` bytes of UTF-8 JSON header: kind, versions, recipe, labels, ...
    plen   u64      then `plen` bytes of tensors saved by `torch.save` (tensors and plain data only)
    sha256 32 bytes of everything before it: a truncated or modified file is refused

Loading reads plain JSON and calls `torch.load(weights_only=True)`: no code in a file is ever run,
and a pickle passed as a model is refused on its first bytes. The header alone needs no torch,
so `attn info` is fast.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import os
import stat
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from attn.errors import ArtifactError

from ..fsutil import atomic_write_bytes

MAGIC = b"\x89ATTN\r\n\x1a\n"
FORMAT_VERSION = 1
_DIGEST = 32


def attn_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("attn")
    except PackageNotFoundError:
        return "0+unknown"


@functools.cache  # once a process: a run saves its model after every improved epoch
def attn_commit() -> str | None:
    """The git commit of the attn source that runs, "4c0e536" ("+changes" when files differ from
    it), for a checkout installed in place (`pip install -e`); None for an installed wheel or
    when git is missing. A version number alone does not say which code trained a model while
    it changes between releases."""
    import subprocess

    root = Path(__file__).resolve().parents[2]  # pipelines/store/container.py -> the source root
    if not (root / ".git").exists():
        return None

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=5,
                              check=True).stdout.strip()  # fmt: skip

    try:
        if Path(git("rev-parse", "--show-toplevel")).resolve() != root:
            return None
        sha = git("rev-parse", "--short=7", "HEAD")
        changed = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return None
    return sha + ("+changes" if changed else "") if sha else None


def made_with(header: dict[str, Any]) -> str:
    """ "attn 0.1.0 (4c0e536)": the version, and the commit when the header has one."""
    commit = header.get("attn_commit")
    return f"attn {header.get('attn_version', '?')}" + (f" ({commit})" if commit else "")


@dataclass
class Container:
    header: dict[str, Any]
    payload: bytes

    def tensors(self) -> dict[str, Any]:
        """The payload through `torch.load(weights_only=True)` (CPU tensors, plain data)."""
        import torch

        try:
            return torch.load(io.BytesIO(self.payload), map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - any failure here means a bad payload
            raise ArtifactError(f"{self.header.get('_path', 'model')}: unreadable tensor payload ({e})") from None


def write_container(path: str | os.PathLike, header: dict[str, Any], tensors: dict[str, Any]) -> None:
    """Serialise `header` (JSON-safe) and `tensors` and write them atomically to `path`."""
    import torch

    buf = io.BytesIO()
    torch.save(tensors, buf)
    payload = buf.getvalue()
    head = json.dumps(header, separators=(",", ":"), sort_keys=False).encode("utf-8")
    body = b"".join(
        [MAGIC, struct.pack("<I", FORMAT_VERSION), struct.pack("<Q", len(head)), head,
         struct.pack("<Q", len(payload)), payload]
    )  # fmt: skip
    atomic_write_bytes(path, body + hashlib.sha256(body).digest())


MAX_HEADER = 256 << 20  # a JSON header of recipe, labels and vocabulary is far smaller
_FIXED = len(MAGIC) + 4 + 8 + 8 + _DIGEST  # everything but the header and the payload


def read_container(path: str | os.PathLike, header_only: bool = False, what: str = "model file") -> Container:
    """Read and verify a container: magic, version, lengths, checksum. Raises `ArtifactError`.

    The magic bytes are checked first and then the lengths the file declares, before anything
    large is read: `attn info /dev/zero` or a 64 GB file is refused on its first bytes, and no
    more is read than the header says the file holds. With `header_only`, the payload is hashed
    in blocks and never held in memory.
    """
    p = Path(path)
    if not p.exists():
        raise ArtifactError(f"{path}: {what} not found")
    if p.is_dir():
        raise ArtifactError(f"{path}: is a directory, not a {what}")
    try:
        with open(p, "rb") as f:
            st = os.fstat(f.fileno())
            return _read(f, str(path), st.st_size if stat.S_ISREG(st.st_mode) else None, header_only, what)
    except OSError as e:
        raise ArtifactError(f"{path}: cannot read ({e.strerror or e})") from None


def _read(f, path: str, size: int | None, header_only: bool, what_file: str) -> Container:
    """`read_container` on an open file; `size` is None for something that is not a regular file."""
    digest = hashlib.sha256()

    def take(n: int, what: str) -> bytes:
        data = f.read(n)
        if len(data) < n:
            raise ArtifactError(f"{path}: {what_file} is truncated (ends inside the {what})")
        digest.update(data)
        return data

    head = f.read(len(MAGIC))
    if head and MAGIC.startswith(head) and head != MAGIC:  # an attn file's first bytes, no more
        raise ArtifactError(f"{path}: {what_file} is truncated (ends inside its first {len(MAGIC)} bytes)")
    if head != MAGIC:
        raise ArtifactError(f"{path}: not an attn {what_file} ({_sniff(head)}); refusing to load it")
    digest.update(head)
    (version,) = struct.unpack("<I", take(4, "format version"))
    if version > FORMAT_VERSION:
        raise ArtifactError(
            f"{path}: model format version {version} is newer than this attn {attn_version()} "
            f"supports (format version {FORMAT_VERSION}); upgrade attn to load it"
        )
    (hlen,) = struct.unpack("<Q", take(8, "header length"))
    if hlen > MAX_HEADER or (size is not None and _FIXED + hlen > size):
        raise ArtifactError(f"{path}: damaged {what_file} header (declares {hlen} bytes of header"
                            + (f"; the file has {size} bytes in all)" if size is not None else ")"))  # fmt: skip
    head_bytes = take(hlen, "header")
    (plen,) = struct.unpack("<Q", take(8, "payload length"))
    declared = _FIXED + hlen + plen
    if size is not None and size != declared:
        problem = "is truncated" if size < declared else "is damaged (length mismatch"
        raise ArtifactError(f"{path}: {what_file} {problem}: the header declares {declared} bytes, the file has "
                            f"{size}" + (")" if size > declared else ""))  # fmt: skip
    if size is not None and not header_only:
        payload = take(plen, "tensors")  # its length is checked against the file's size above
    else:  # in blocks: hashed only, or from something whose size is not known beforehand
        blocks, left = [], plen
        while left:
            block = take(min(left, 1 << 20), "tensors")
            left -= len(block)
            if not header_only:
                blocks.append(block)
        payload = b"".join(blocks)
    stored = f.read(_DIGEST)
    if stored != digest.digest() or f.read(1):
        raise ArtifactError(f"{path}: {what_file} is truncated or was modified (checksum mismatch)")
    try:
        header = json.loads(head_bytes.decode("utf-8"))
    except ValueError as e:
        raise ArtifactError(f"{path}: damaged {what_file} header ({e})") from None
    if not isinstance(header, dict):
        raise ArtifactError(f"{path}: damaged {what_file} header (not a JSON object)")
    header["_path"], header["_format_version"] = path, version  # read-side facts ("_": never written back)
    return Container(header, payload)


def _sniff(data: bytes) -> str:
    if not data:
        return "empty file"
    if data[:2] == b"PK":
        return (
            "looks like a zip: a torch.save or TorchScript file (a TorchScript export is for torch.jit.load; "
            "attn reads .attn and .onnx files)"
        )
    if data[:1] == b"\x80" or data[:1] in (b"(", b"]", b"}", b"c"):
        return "looks like a Python pickle, which could run code"
    return "unknown format"


def stored_recipe(header: dict[str, Any], path: Path, what: str):
    """(Recipe, labels) a model or checkpoint header holds; an ArtifactError names a missing key
    (`what`: "model", "checkpoint")."""
    from attn.errors import ConfigError

    from ..recipe.load import recipe_from_dict

    try:
        return recipe_from_dict(header["recipe"], source=f"{path} (stored recipe)"), list(header["labels"])
    except KeyError as e:
        raise ArtifactError(f"{path}: {what} header lacks {e}") from None
    except ConfigError as e:
        # a recipe key this attn does not know: it was said as the user's error, of a recipe never written
        made = str(header.get("attn_version") or "")
        if made and _newer(made, attn_version()):
            raise ArtifactError(f"{path}: made by attn {made}, newer than this attn {attn_version()}: upgrade attn "
                                f"to load it ({str(e).split('; valid keys')[0]})") from None  # fmt: skip
        raise


def _newer(a: str, b: str) -> bool:
    """Whether version `a` is later than `b` (numeric parts compared; anything else: no)."""
    import re

    def parts(v: str) -> tuple[int, ...]:
        return tuple(int(x) for x in re.findall(r"\d+", v.split("+")[0])[:3])

    try:
        return parts(a) > parts(b)
    except ValueError:
        return False
