"""`attn export`: a trained model as one ONNX or TorchScript file that maps what `attn predict`
reads to class probabilities, the front end inside the graph.

    audio: waveform (batch, samples) float32 at the model's sample rate, each row one window of
           `samples` valid samples -> probabilities (batch, classes)
    text:  ids (batch, tokens) int64, or (batch, tokens, 1 + K) with hashed n-grams (column 0 the
           token id, then the n-gram buckets, 0 = none); lengths (batch,) int64
           -> probabilities (batch, classes)

A model with a novelty check (train.abstain.novelty) also gives "embedding" (batch, D), the
vector `attn embed` gives, and its bank of training vectors goes into the metadata, so predict
with the exported file answers `unknown` for novel inputs as the model file does.
Batch, samples, tokens and K are dynamic. Audio features (STFT, mel filter bank, dB, DCT) are
ops in the graph, so a consumer feeds raw samples. ONNX goes through `torch.export`
(`torch.onnx.export(dynamo=True)`, which has a native STFT op; the legacy TorchScript-based
exporter cannot export the complex STFT); TorchScript through `torch.jit.trace`. The CPU chunk
loop of the mel spectrogram is switched off (`LogMel.chunk_bytes = None`): its Python arithmetic
on the input's shape would bake the example's length into the graph.

Labels, the front-end settings (and a text model's tokenizer) go into the ONNX metadata
(`metadata_props`) or the TorchScript file's `attn.json` extra file. After writing, the file is
run on a batch of another shape than the traced one and compared with the PyTorch model: the
result carries that difference, and a file that disagrees by more than `TOLERANCE` is refused.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import io
import json
import logging
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from attn.errors import AttnError, ConfigError

from ..fsutil import atomic_write_bytes, check_writable
from ..infer.exported import decode_metadata, encode_metadata
from ..store.artifact import LoadedModel
from ..store.container import attn_commit, attn_version

FORMATS = ("onnx", "torchscript")
SUFFIX = {"onnx": ".onnx", "torchscript": ".pt"}
TOLERANCE = 1e-4  # max |p_exported - p_torch| accepted on the check batch
EXTRA_FILE = "attn.json"  # TorchScript: the metadata, as one JSON extra file


def _probs(logits: torch.Tensor, multi_label: bool) -> torch.Tensor:
    """Softmax over the labels, or (multi-label) each label's own sigmoid."""
    return logits.float().sigmoid() if multi_label else logits.float().softmax(-1)


class AudioProbs(nn.Module):
    """waveform (B, N) -> probabilities (B, K): every row is one window of N valid samples.
    `embedding` (a model with a novelty check): also the window's vector (B, D), as `attn embed`."""

    def __init__(self, model: nn.Module, multi_label: bool = False, embedding: bool = False) -> None:
        super().__init__()
        self.model, self.multi_label, self.embedding = model, multi_label, embedding

    def forward(self, waveform: torch.Tensor):
        b, n = waveform.shape
        lengths = torch.full((b,), n, dtype=torch.int64, device=waveform.device)
        return _outputs(self.model, (waveform, lengths), self.multi_label, self.embedding)


class TextProbs(nn.Module):
    """ids (B, T) or (B, T, 1 + K) int64, lengths (B,) int64 -> probabilities (B, K) (and, with
    `embedding`, each text's vector (B, D))."""

    def __init__(self, model: nn.Module, multi_label: bool = False, embedding: bool = False) -> None:
        super().__init__()
        self.model, self.multi_label, self.embedding = model, multi_label, embedding

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor):
        return _outputs(self.model, (ids, lengths), self.multi_label, self.embedding)


def _outputs(model: nn.Module, inputs: tuple, multi_label: bool, embedding: bool):
    probs = _probs(model(*inputs), multi_label)
    if not embedding:
        return probs
    from ..infer.novelty import embed_tensor

    return probs, embed_tensor(model, *inputs)


@dataclass
class ExportResult:
    path: Path
    format: str
    modality: str
    inputs: list[dict[str, Any]]
    labels: list[str]
    bytes: int
    max_abs_diff: float  # exported vs PyTorch probabilities, over the check inputs
    check_shapes: list[dict[str, list[int]]]
    seconds: float
    metadata: dict[str, str] = field(repr=False, default_factory=dict)
    embedding: int | None = None  # a novelty check's "embedding" output: its width D

    def summary(self) -> dict[str, Any]:
        """What `attn export --json` prints."""
        emb = {"name": "embedding", "shape": ["batch", self.embedding], "dtype": "float32"}
        return {
            "path": str(self.path),
            "format": self.format,
            "modality": self.modality,
            "inputs": self.inputs,
            "output": {"name": "probabilities", "shape": ["batch", "classes"], "dtype": "float32"},
            **({"embedding_output": emb} if self.embedding else {}),
            "labels": self.labels,
            "bytes": self.bytes,
            "max_abs_diff": self.max_abs_diff,
            "check_shapes": self.check_shapes,
            "seconds": round(self.seconds, 2),
        }


def default_path(model_path: Path, fmt: str) -> Path:
    """Beside the model file: runs/x/model.attn -> runs/x/model.onnx (or .pt)."""
    return Path(model_path).with_suffix(SUFFIX[fmt])


def export_model(loaded: LoadedModel, out: str | Path, fmt: str = "onnx") -> ExportResult:
    """Write `loaded` as one `fmt` file at `out` (atomically) and check it against PyTorch."""
    if fmt not in FORMATS:
        raise ConfigError(f"unknown export format {fmt!r} (onnx or torchscript)")
    if fmt == "onnx":
        _require_onnx()
    t0 = time.perf_counter()
    out = Path(out)
    check_writable(out)  # an export takes seconds to minutes: a bad --out fails first
    model = copy.deepcopy(loaded.model).cpu().eval()  # never touch the caller's model (device, caches)
    model.requires_grad_(False)  # a consumer's outputs carry no autograd graph
    _one_pass(model)
    text = loaded.recipe.modality == "text"
    multi = loaded.recipe.data.multi_label
    novel = loaded.novelty is not None  # the graph also gives each window's vector for the check
    wrapper = (TextProbs if text else AudioProbs)(model, multi, novel).eval()
    example, checks = _examples(loaded)
    meta = metadata(loaded, list(example))
    names = ["probabilities", *(["embedding"] if novel else [])]
    with _quiet(), torch.no_grad():
        if fmt == "onnx":
            data = _onnx_bytes(wrapper, example, meta, _dynamic_shapes(example), names)
        else:
            data = _torchscript_bytes(wrapper, example, meta)
        diff = max(_max_diff(_run_file(data, fmt, c), wrapper(*c.values())) for c in checks)
    if not diff <= TOLERANCE:
        raise AttnError(
            f"exported {fmt} model disagrees with the PyTorch model by {diff:.2g} (> {TOLERANCE:g}) on "
            f"check inputs; nothing written (please report this with `attn info --format json`)"
        )
    atomic_write_bytes(out, data)
    shapes = [{k: list(v.shape) for k, v in c.items()} for c in checks]
    return ExportResult(out, fmt, loaded.recipe.modality, json.loads(meta["inputs"]), list(loaded.labels),
                        len(data), diff, shapes, time.perf_counter() - t0, meta,
                        loaded.novelty.bank.shape[1] if novel else None)  # fmt: skip


def _max_diff(got: list[np.ndarray], want) -> float:
    """The largest |exported - PyTorch| over every output (probabilities, and the embedding)."""
    want = want if isinstance(want, tuple) else (want,)
    return max(float(np.abs(g - w.numpy()).max()) for g, w in zip(got, want, strict=True))


def metadata(loaded: LoadedModel, inputs: list[str]) -> dict[str, str]:
    """String key -> string value (JSON where structured): what a consumer needs besides the graph."""
    recipe = loaded.header.get("recipe", {})
    feats = dict(recipe.get("features", {}))
    text = loaded.recipe.modality == "text"
    shapes = {
        "waveform": ("float32", ["batch", "samples"], "one window per row, mono, at features.sample_rate"),
        "ids": ("int64", ["batch", "tokens", *(["1+ngrams"] if _ngrams(loaded) else [])],
                "token ids from the tokenizer (0 pads), cut to tokenizer.max_len; with hashed n-grams column 0 "
                "is the token and the others its n-gram buckets (0 = none)"),
        "lengths": ("int64", ["batch"], "valid tokens per row"),
    }  # fmt: skip
    meta = {
        "attn_version": attn_version(),
        **({"attn_commit": commit} if (commit := attn_commit()) else {}),
        "modality": loaded.recipe.modality,
        "labels": list(loaded.labels),
        "features": feats,
        "model": recipe.get("model", {}),
        "data": {
            "extensions": list(loaded.recipe.data.extensions),
            **({"multi_label": True} if loaded.recipe.data.multi_label else {}),
        },
        "inputs": [{"name": n, "dtype": shapes[n][0], "shape": shapes[n][1], "doc": shapes[n][2]} for n in inputs],
        "parameters": loaded.header.get("parameters"),
        "created": loaded.header.get("created"),  # when the model (not this file) was trained
        "torch_version": loaded.header.get("torch_version"),
        "metrics": loaded.header.get("metrics"),
        "output": {
            "name": "probabilities",
            "dtype": "float32",
            "shape": ["batch", "classes"],
            "doc": (
                "each label's sigmoid (multi-label: a label applies at or above its threshold)"
                if loaded.recipe.data.multi_label
                else "softmax over the labels"
            )
            + ", in the order of `labels`",
        },
    }
    if loaded.header.get("calibration"):  # the temperature is in the graph; predict reads min_score from here
        meta["calibration"] = loaded.header["calibration"]
    if loaded.novelty is not None:  # the bank (float16, as in the model file); the graph gives "embedding"
        bank = loaded.novelty.bank.astype("<f2")
        meta["novelty"] = {**loaded.header.get("novelty", {}), "bank_rows": len(bank), "bank_dim": bank.shape[1],
                           "doc": "an input's \"embedding\" output (audio: the mean over its windows) has cosine "
                                  "similarity to its k-th nearest (neighbors) row of the bank; below min_similarity "
                                  "predict answers unknown"}  # fmt: skip
        meta["novelty_bank_base64"] = base64.b64encode(bank.tobytes()).decode("ascii")
    from attn.models.calibrated import untempered
    from attn.models.linear import Blend

    blend = untempered(loaded.model)
    if isinstance(blend, Blend) and blend.weight > 0:  # the graph holds the baseline too: say so, and how
        w = float(blend.weight)
        b = {**(loaded.header.get("baseline") or {}), "blend_weight": w}
        meta["baseline"] = {
            **b,
            "doc": "the graph holds only this baseline (blend weight 1: the network scored no better on validation)"
            if w >= 1
            else f"the graph blends this baseline's "
            f"probabilities with the network's: (1 - {w:g}) network + {w:g} baseline",
        }
    if loaded.header.get("thresholds") is not None:  # multi-label: the per-class thresholds
        meta["thresholds"] = loaded.header["thresholds"]
    if text and "tokenizer" in loaded.header:
        meta["tokenizer"] = loaded.header["tokenizer"]
        if loaded.tokenizer is not None:
            _, blob = loaded.tokenizer.state()
            if hasattr(loaded.tokenizer, "portable_spec"):  # a pretrained encoder's tokenizer.json
                blob = loaded.tokenizer.portable_spec(loaded.recipe.features.tokenizer.max_len)
            if blob:  # sentencepiece model, or tokenizer.json
                meta["tokenizer_model_base64"] = base64.b64encode(blob).decode("ascii")
    return encode_metadata(meta)


def _one_pass(model: nn.Module) -> None:
    from attn.features.transforms import LogMel

    for m in model.modules():
        if isinstance(m, LogMel):
            m.chunk_bytes = None


def _ngrams(loaded: LoadedModel) -> bool:
    return loaded.recipe.modality == "text" and loaded.recipe.features.tokenizer.hashed_ngrams


def _examples(loaded: LoadedModel) -> tuple[dict[str, torch.Tensor], list[dict[str, torch.Tensor]]]:
    """(the traced example, check inputs of other sizes in every dynamic dimension).

    Audio checks span consecutive frame counts and lengths that differ in their low bits: a graph
    that got a stride, a pool or a `size % 2` wrong for some lengths fails on one of them.
    """
    gen = torch.Generator().manual_seed(0)
    if loaded.recipe.modality == "audio":
        f = loaded.recipe.features
        n = f.frame_samples
        step = 1 if f.kind == "waveform" else f.hop_length
        base = max(n // 2, f.n_fft + 1 if f.kind != "waveform" and not f.center else 2)
        example = {"waveform": 0.1 * torch.randn(2, n, generator=gen)}
        checks = [{"waveform": 0.1 * torch.randn(3 if j == 0 else 1, base + j * step, generator=gen)}
                  for j in (0, 1, 2, 3, 5, 9, 17, 33)]  # fmt: skip
        return example, checks
    vocab = loaded.tokenizer.vocab_size
    tok = loaded.recipe.features.tokenizer

    def ids(b: int, t: int, lengths: list[int], k: int) -> dict[str, torch.Tensor]:
        x = torch.randint(2, vocab, (b, t), generator=gen)
        if k:
            grams = torch.randint(1, tok.ngram_buckets + 1, (b, t, k), generator=gen)
            grams[:, ::2, k - 1] = 0  # some tokens with fewer n-grams than the widest
            x = torch.cat([x[..., None], grams], dim=-1)
        lens = torch.tensor(lengths)
        x[torch.arange(t)[None, :] >= lens[:, None]] = 0  # padding
        return {"ids": x, "lengths": lens}

    k = 3 if _ngrams(loaded) else 0
    t = min(tok.max_len, 8)
    checks = [ids(3, t + 3, [t + 3, 2, 1], k + 2 if k else 0), ids(1, 1, [1], k), ids(2, 2 * t, [2 * t, t], k)]
    return ids(2, t, [t, max(1, t // 2)], k), checks


def _dynamic_shapes(example: dict[str, torch.Tensor]) -> dict[str, dict[int, Any]]:
    batch = torch.export.Dim("batch")
    if "waveform" in example:
        return {"waveform": {0: batch, 1: torch.export.Dim("samples", min=2)}}
    ids: dict[int, Any] = {0: batch, 1: torch.export.Dim("tokens")}
    if example["ids"].dim() == 3:
        ids[2] = torch.export.Dim("ngram_columns", min=2)
    return {"ids": ids, "lengths": {0: batch}}


def _onnx_bytes(wrapper: nn.Module, example: dict, meta: dict[str, str], dynamic: dict, names: list[str]) -> bytes:
    try:
        program = torch.onnx.export(wrapper, tuple(example.values()), dynamo=True, verbose=False,
                                    input_names=list(example), output_names=names,
                                    dynamic_shapes=dynamic)  # fmt: skip
    except Exception as e:  # noqa: BLE001 - the exporter raises many kinds; the message says which step
        raise AttnError(f"ONNX export failed: {_first_line(e)} (run `attn --debug export ...` for details)") from e
    program.model.metadata_props.update(meta)
    proto = program.model_proto
    _drop_unused_initializers(proto.graph)
    if proto.ByteSize() >= 2**31:
        raise AttnError("the model is over 2 GB, beyond what one ONNX file holds")
    return proto.SerializeToString()


def _drop_unused_initializers(graph) -> None:
    """Remove constants no node reads (the exporter leaves e.g. an embedding's `num_embeddings_scalar`
    behind): onnxruntime warns of each, in colour, every time anyone loads the file."""
    used: set[str] = {o.name for o in graph.output}

    def collect(g) -> None:
        for node in g.node:
            used.update(node.input)
            for attr in node.attribute:  # If/Loop/Scan bodies read the outer graph's names too
                for sub in [attr.g, *attr.graphs] if attr.HasField("g") else attr.graphs:
                    collect(sub)

    collect(graph)
    keep = [t for t in graph.initializer if t.name in used]
    if len(keep) < len(graph.initializer):
        del graph.initializer[:]
        graph.initializer.extend(keep)


def _torchscript_bytes(wrapper: nn.Module, example: dict, meta: dict[str, str]) -> bytes:
    try:
        traced = torch.jit.trace(wrapper, tuple(example.values()), check_trace=False)
    except Exception as e:  # noqa: BLE001
        raise AttnError(f"TorchScript trace failed: {_first_line(e)}") from e
    buf = io.BytesIO()
    torch.jit.save(traced, buf, _extra_files={EXTRA_FILE: json.dumps(meta)})
    return buf.getvalue()


def _run_file(data: bytes, fmt: str, inputs: dict[str, torch.Tensor]) -> list[np.ndarray]:
    """The written bytes run on `inputs`, as a consumer would: onnxruntime, or torch.jit.load;
    every output, in order."""
    if fmt == "onnx":
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.log_severity_level = 3  # errors only, as `attn predict -m model.onnx` loads it
        session = ort.InferenceSession(data, sess_options=opts, providers=["CPUExecutionProvider"])
        return session.run(None, {k: v.numpy() for k, v in inputs.items()})
    out = torch.jit.load(io.BytesIO(data))(*inputs.values())
    return [t.numpy() for t in (out if isinstance(out, tuple) else (out,))]


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The metadata of an exported file (ONNX or TorchScript), JSON values decoded."""
    path = Path(path)
    if path.suffix == ".onnx":
        import onnx

        raw = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
    else:
        files = {EXTRA_FILE: ""}
        with _quiet():
            torch.jit.load(str(path), _extra_files=files)
        raw = json.loads(files[EXTRA_FILE])
    return decode_metadata(raw)


def _require_onnx() -> None:
    missing = [m for m in ("onnx", "onnxscript", "onnxruntime") if not _importable(m)]
    if missing:
        raise ConfigError(
            f"ONNX export needs {', '.join(missing)}: pip install 'attn[export]' (or use --format torchscript)"
        )


def _importable(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


@contextlib.contextmanager
def _quiet():
    """The exporters log and warn about things that are not the user's business (torchvision ops
    not registered, optimizer passes skipped, torch.jit's deprecation notice); the library never
    prints."""
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "onnxscript", "onnx_ir")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def _first_line(e: BaseException) -> str:
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    return f"{type(e).__name__}: {lines[0] if lines else ''}"
