"""What "a loaded model" is to the code that scores inputs: the `.attn` model
(`store.artifact.LoadedModel`) and the ONNX file from `attn export`
(`exported.ExportedModel`) both satisfy `Loaded`, so predict, listen, serve and the API's
`Model` take either. It lives here, below store/, so that both can name it."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class Loaded(Protocol):
    """A model ready to score windows. `recipe`: the resolved recipe (an exported file: its
    front end and data settings only), with `.modality`, `.features` and `.data` (extensions,
    multi_label); `labels`: in the order of the outputs; `header`: the file's facts
    (calibration, thresholds, events, ...); `tokenizer`: a text model's, else None; `device`:
    where it runs ("cpu" for ONNX); `model`: the torch module, None for ONNX."""

    recipe: Any
    labels: list[str]
    header: dict[str, Any]
    tokenizer: Any
    device: Any
    model: Any

    def window_probs(self, windows: list) -> Any:
        """Class probabilities (W, K) float32 for windows: 1-D float32 samples (audio) or token
        ids (text), one row per window, in order."""
        ...
