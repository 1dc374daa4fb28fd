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

import hashlib
import io
import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from attn.errors import ArtifactError

from .fsutil import atomic_write_bytes

MAGIC = b"\x89ATTN\r\n\x1a\n"
FORMAT_VERSION = 1
_DIGEST = 32


def attn_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("attn")
    except PackageNotFoundError:
        return "0+unknown"


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


def read_container(path: str | os.PathLike, header_only: bool = False) -> Container:
    """Read and verify a container: magic, version, lengths, checksum. Raises `ArtifactError`."""
    p = Path(path)
    if not p.exists():
        raise ArtifactError(f"{path}: model file not found")
    if p.is_dir():
        raise ArtifactError(f"{path}: is a directory, not a model file")
    try:
        data = p.read_bytes()
    except OSError as e:
        raise ArtifactError(f"{path}: cannot read ({e.strerror or e})") from None
    if not data.startswith(MAGIC):
        raise ArtifactError(f"{path}: not an attn model file ({_sniff(data)}); refusing to load it")
    pos = len(MAGIC)
    if len(data) < pos + 4 + 8:
        raise ArtifactError(f"{path}: truncated model file ({len(data)} bytes)")
    (version,) = struct.unpack_from("<I", data, pos)
    if version > FORMAT_VERSION:
        raise ArtifactError(
            f"{path}: model format version {version} is newer than this attn {attn_version()} "
            f"supports (format version {FORMAT_VERSION}); upgrade attn to load it"
        )
    if len(data) < pos + 12 + _DIGEST or hashlib.sha256(data[:-_DIGEST]).digest() != data[-_DIGEST:]:
        raise ArtifactError(f"{path}: model file is truncated or was modified (checksum mismatch)")
    pos += 4
    (hlen,) = struct.unpack_from("<Q", data, pos)
    pos += 8
    try:
        header = json.loads(data[pos : pos + hlen].decode("utf-8"))
        pos += hlen
        (plen,) = struct.unpack_from("<Q", data, pos)
        pos += 8
    except (ValueError, struct.error) as e:
        raise ArtifactError(f"{path}: damaged model header ({e})") from None
    if pos + plen != len(data) - _DIGEST:
        raise ArtifactError(f"{path}: damaged model file (length mismatch)")
    header["_path"] = str(path)
    return Container(header, b"" if header_only else data[pos : pos + plen])


def _sniff(data: bytes) -> str:
    if not data:
        return "empty file"
    if data[:2] == b"PK":
        return "looks like a zip/torch.save file"
    if data[:1] == b"\x80" or data[:1] in (b"(", b"]", b"}", b"c"):
        return "looks like a Python pickle, which could run code"
    return "unknown format"
