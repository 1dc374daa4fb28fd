"""The model artifact: save and load trained models as `.attn` files (container.py is the file
format they share with resume checkpoints).

The artifact is self-contained: weights, the resolved recipe (features, model), ordered labels,
tokenizer state, versions and a few facts for `attn info`. Nothing else is needed to predict.
"""

from __future__ import annotations

import datetime as _dt
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from attn.errors import ArtifactError

from ..recipe.config import Recipe
from .container import attn_commit, attn_version, read_container, stored_recipe, write_container


@dataclass
class LoadedModel:
    model: Any  # attn.models.classifier.Classifier, eval mode, on `device`
    recipe: Recipe
    labels: list[str]
    header: dict[str, Any]
    device: Any
    tokenizer: Any = None  # text models: the fitted tokenizer
    _last: tuple = field(default=(None, None), init=False, repr=False)  # (windows, embeddings): see window_embeddings

    @property
    def baseline(self):
        """The run's baseline module (attn.models.linear.LinearBaseline), or None."""
        return getattr(self.model, "baseline", None)

    def window_probs(self, windows: list) -> Any:
        """Class probabilities (W, K) float32 of windows: 1-D float32 samples, or token ids (T,)
        or (T, 1 + K); zero-padded into one batch with their lengths (padding never changes a
        prediction). Predict's one model call (`loaded.Loaded`, which `exported.ExportedModel` is too).
        A model with a novelty check computes the windows' embeddings in the same pass and keeps
        them for the `window_embeddings` call that follows on the same list."""
        import torch

        from ..data.batching import pad_rows
        from ..infer.inference import softmax

        x = torch.from_numpy(pad_rows(windows)).to(self.device)
        lengths = torch.tensor([len(w) for w in windows], dtype=torch.int64, device=self.device)
        with torch.inference_mode():
            if self.novelty is None:
                logits = self.model(x, lengths).float().cpu().numpy()
            else:
                from ..infer.novelty import logits_and_embedding

                out, emb = logits_and_embedding(self.model, x, lengths)
                logits = out.float().cpu().numpy()
                self._last = (windows, emb.cpu().numpy())
        if self.recipe.data.multi_label:  # independent per-class probabilities
            from ..infer.multilabel import sigmoid

            return sigmoid(logits)
        return softmax(logits)

    def window_embeddings(self, windows: list) -> Any:
        """The pooled vector each window's prediction rests on (W, D) float32: the network's
        penultimate layer (`Backbone.forward_features`; for the `pooled` head over a pretrained
        encoder, the pooled encoder states). An ensemble concatenates its members' vectors; a
        blended model gives its network's. Right after `window_probs` on the same list (a model
        with a novelty check): that pass's embeddings, without running the model again."""
        import torch

        from ..data.batching import pad_rows
        from ..infer.novelty import embed_batch

        last, emb = self._last
        self._last = (None, None)
        if last is windows and emb is not None:
            return emb
        x = torch.from_numpy(pad_rows(windows)).to(self.device)
        lengths = torch.tensor([len(w) for w in windows], dtype=torch.int64, device=self.device)
        with torch.inference_mode():
            return embed_batch(self.model, x, lengths)

    @property
    def novelty(self):
        """The model's novelty check (`attn.models.novelty.Novelty`, `train.abstain.novelty`) or None."""
        return getattr(self.model, "novelty", None)


def model_header(model, recipe: Recipe, labels: list[str], extra: dict[str, Any] | None = None,
                 plain_recipe: dict[str, Any] | None = None) -> dict[str, Any]:  # fmt: skip
    import torch

    from ..recipe.build import count_parameters
    from ..recipe.load import recipe_to_dict

    return {
        "kind": "model",
        "attn_version": attn_version(),
        **({"attn_commit": commit} if (commit := attn_commit()) else {}),
        "torch_version": torch.__version__.split("+")[0],
        "versions": _versions(),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "modality": recipe.modality,
        "labels": list(labels),
        "recipe": recipe_to_dict(recipe) if plain_recipe is None else plain_recipe,
        "parameters": count_parameters(model),
        "model_info": model.backbone.describe(),
        **(extra or {}),
    }


def _versions() -> dict[str, str]:
    """The other packages a model's numbers come from (scikit-learn fits the baseline, numpy and
    torchaudio compute features): from the installed metadata, without importing them."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("numpy", "scikit-learn", "torchaudio"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            pass
    return out


def save_model(
    path,
    model,
    recipe: Recipe,
    labels: list[str],
    extra: dict[str, Any] | None = None,
    tokenizer=None,
    state_dict: dict[str, Any] | None = None,
    plain_recipe: dict[str, Any] | None = None,
) -> None:
    """Write the artifact atomically. `extra` goes into the JSON header; a text model's
    tokenizer state goes in too; `state_dict` overrides the network's current weights;
    `plain_recipe`: `recipe` as plain data when the caller has it (a run writes its model file
    after every improved epoch, the recipe unchanged). A
    `Blend` (network + the run's baseline) keeps the network's weights as `state_dict` and the
    baseline as its scores in the header and its parameters as `baseline.*` tensors."""
    from attn.models.calibrated import Tempered, untempered
    from attn.models.linear import Blend

    from ..data.text import tokenizer_state

    calibration = model.calibration if isinstance(model, Tempered) else None
    novelty = model.novelty if isinstance(model, Tempered) else None
    model = untempered(model)
    network = model.network if isinstance(model, Blend) else model
    state = {k: v.detach().cpu() for k, v in (state_dict or network.state_dict()).items()}
    header = model_header(model, recipe, labels, extra, plain_recipe)
    if calibration is not None:
        header["calibration"] = calibration  # temperature, validation ECE, min_score (calibration.py)
    tensors: dict[str, Any] = {"state_dict": state}
    if novelty is not None:  # its threshold in the header, its bank of training embeddings as a tensor
        header["novelty"] = novelty.info
        tensors.update(novelty.tensors())
    if tokenizer is not None:
        header["tokenizer"], tok_tensors = tokenizer_state(tokenizer)
        header["tokenizer"]["vocab_size"] = tokenizer.vocab_size
        tensors.update(tok_tensors)
    if isinstance(model, Blend):
        from .blend import baseline_state

        header["baseline"], base_tensors = baseline_state(model)
        tensors.update(base_tensors)
    write_container(path, header, tensors)


def update_header(path, dest=None, tensors: dict[str, Any] | None = None, **fields: Any) -> None:
    """Rewrite a model file (or write a copy to `dest`) with `fields` set in its header and
    `tensors` added to (or replacing those of) its payload (weights unchanged), atomically: a
    reader never sees a half-written file, and a failure keeps the old one."""
    box = read_container(path)
    header = {k: v for k, v in box.header.items() if not k.startswith("_")}
    write_container(dest if dest is not None else path, {**header, **fields}, {**box.tensors(), **(tensors or {})})


def add_novelty(loaded: LoadedModel, path, novelty) -> None:
    """Store a novelty check (`attn.models.novelty.Novelty`) in the model file at `path` and in
    `loaded`, which then applies it."""
    from attn.models.calibrated import Tempered

    update_header(path, tensors=novelty.tensors(), novelty=novelty.info)
    if isinstance(loaded.model, Tempered):
        loaded.model.novelty = novelty
    else:
        loaded.model = Tempered(loaded.model, 1.0, {}, novelty)
    loaded.header["novelty"] = novelty.info


def load_model(path, device=None, purpose: str = "this command") -> LoadedModel:
    """Verify, rebuild and load a model artifact; eval mode, on `device` (default CPU). `purpose`
    names the command in the refusal of an exported ONNX file."""
    import torch

    from ..recipe.build import build_model

    if Path(path).suffix.lower() == ".onnx":
        from ..infer.exported import only_predicts

        raise only_predicts(path, purpose)
    box = read_container(path)
    header = box.header
    if header.get("kind") != "model":
        raise ArtifactError(
            f"{path}: is a {header.get('kind', 'unknown')!r} file, not a model (pass the run's model.attn)"
        )
    recipe, labels = stored_recipe(header, path, "model")
    tensors = box.tensors()
    tokenizer = None
    if recipe.modality == "text":
        from ..data.text import tokenizer_from_artifact

        try:
            tokenizer = tokenizer_from_artifact(recipe, header, tensors)
        except (ValueError, KeyError, RuntimeError) as e:
            raise ArtifactError(f"{path}: damaged tokenizer state ({e})") from None
    vocab = None if tokenizer is None else tokenizer.vocab_size
    model = build_model(recipe, len(labels), vocab_size=vocab, initialise=False)  # every weight is loaded next
    try:
        model.load_state_dict(tensors["state_dict"])  # strict: no weight is left uninitialised
    except (KeyError, RuntimeError) as e:
        raise ArtifactError(f"{path}: weights do not fit the stored recipe and labels ({_first_problem(e)})") from None
    if header.get("baseline"):
        from .blend import blend_from_state

        try:
            model = blend_from_state(model, header["baseline"], tensors)
        except (KeyError, ValueError, RuntimeError) as e:
            raise ArtifactError(f"{path}: damaged baseline state ({e})") from None
    cal, nov = header.get("calibration"), header.get("novelty")
    if cal or nov:
        from attn.models.calibrated import Tempered
        from attn.models.novelty import Novelty

        try:
            novelty = Novelty.from_state(nov, tensors) if nov else None
            model = Tempered(model, float(cal["temperature"]) if cal else 1.0, cal or {}, novelty)
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise ArtifactError(f"{path}: damaged calibration or novelty entry ({e})") from None
    device = device or torch.device("cpu")
    model.to(device).eval()
    return LoadedModel(model, recipe, labels, header, device, tokenizer)


def resolve_model_path(model: str | None) -> Path:
    """--model, else $ATTN_MODEL, else runs/latest; a run directory means its model.attn."""
    arg = model or os.environ.get("ATTN_MODEL")
    if not arg:
        p = Path("runs/latest")
        if p.is_symlink() and not p.exists():
            raise ArtifactError(f"runs/latest points to {os.readlink(p)}, which no longer exists: pass --model PATH "
                                "(or set ATTN_MODEL), or train again")  # fmt: skip
        if not p.exists():
            raise ArtifactError(
                "no model given and runs/latest does not exist: train one with `attn train RECIPE`, "
                "or pass --model PATH (or set ATTN_MODEL)"
            )
    else:
        p = Path(arg)
    if p.is_dir():
        p = p / "model.attn"
    if not p.exists():
        raise ArtifactError(f"{p}: model file not found")
    return p


def model_info(header: dict[str, Any], path) -> dict[str, Any]:
    """What `attn info --format json` shows of a model: its path, the container format version and
    the header (recipe, labels, versions, parameters, test metrics, ...)."""
    from .container import FORMAT_VERSION

    version = header.get("_format_version", FORMAT_VERSION)  # the file's own (a loaded model's header lacks it)
    return {"path": str(path), "format_version": version, **{k: v for k, v in header.items() if not k.startswith("_")}}


def read_info(model: str | None) -> dict[str, Any]:
    """`model_info` of a model file or run directory (default $ATTN_MODEL, else runs/latest),
    from its header alone: fast, no torch; the checksum is still verified."""
    path = resolve_model_path(model)
    if path.suffix.lower() == ".onnx":  # an `attn export` file: its metadata
        from ..infer.exported import exported_info

        return exported_info(path)
    header = read_container(path, header_only=True).header
    if header.get("kind") == "checkpoint":  # showed as a model of "0 parameters", modality None
        run = Path(path).resolve().parent
        raise ArtifactError(
            f"{path}: a run's resume checkpoint (state after epoch {header.get('epoch')}), not a "
            f"model: attn train --resume {run} continues the run; its model is {run / 'model.attn'}"
        )
    return model_info(header, path)


def _first_problem(e: Exception) -> str:
    """The first line of load_state_dict's error that says what is wrong: its first line is only
    "Error(s) in loading state_dict for Classifier:"."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    said = [ln for ln in lines if not ln.startswith("Error(s) in loading")]
    return (said or lines or [type(e).__name__])[0][:300]
