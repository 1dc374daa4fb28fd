"""A `Blend`'s baseline in the model file: its summary and blend weight in the header, its buffers as
`baseline.*` tensors. Here in store/, beside the artifact that writes and reads it, so the file
format does not depend on the training code that fits the baseline (train/baseline.py)."""

from __future__ import annotations

from typing import Any


def baseline_state(blend) -> tuple[dict[str, Any], dict[str, Any]]:
    """(header entry, tensors) of a `Blend` for the model file: the baseline's summary, the
    blend weight and what rebuilds its features (MFCC settings); its buffers as `baseline.*`
    tensors."""
    module = blend.baseline
    header = {**blend.info, "blend_weight": blend.weight}
    if module.multi_label:
        header["multi_label"] = True
    if hasattr(module.features, "melkwargs"):
        header["melkwargs"], header["n_mfcc"] = module.features.melkwargs, module.features.n_mfcc
        header["remove_dc"] = module.features.remove_dc
    tensors = {f"baseline.{k}": v.detach().cpu() for k, v in module.state_dict().items()}
    return header, tensors


def baseline_from_state(header: dict[str, Any], tensors: dict[str, Any]):
    """The LinearBaseline module a model file holds."""
    from attn.models.linear import LinearBaseline, MfccStats, TfidfFeatures

    t = {k.removeprefix("baseline."): v for k, v in tensors.items() if k.startswith("baseline.")}
    if header["kind"] == "mfcc+logreg":
        # a model file from before DC removal has no such key: its baseline saw the offset
        features = MfccStats(header["n_mfcc"], header["melkwargs"], bool(header.get("remove_dc")))
    else:
        features = TfidfFeatures(t["features.unigram"], t["features.bigram_keys"], t["features.bigram_cols"],
                                 t["features.idf"])  # fmt: skip
    module = LinearBaseline(features, t["coef"], t["intercept"], t["mean"], t["scale"],
                            multi_label=bool(header.get("multi_label")))  # fmt: skip
    module.load_state_dict(t)
    return module.eval()


def blend_from_state(network, header: dict[str, Any], tensors: dict[str, Any]):
    """The `Blend` of a loaded network and the baseline its model file holds."""
    from attn.models.linear import Blend

    rebuild = ("blend_weight", "melkwargs", "n_mfcc", "remove_dc", "multi_label")  # the module's, not its summary
    info = {k: v for k, v in header.items() if k not in rebuild}
    return Blend(network, baseline_from_state(header, tensors), header.get("blend_weight", 0.0), info)
