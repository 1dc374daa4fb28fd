"""Novelty: how far an input's embedding lies from every example the model was trained on.

    Novelty(bank (M, D), min_similarity, neighbors).similarity(vectors (N, D)) -> (N,)

The bank holds the unit-length embeddings (the network's penultimate layer, a clip's the mean of
its windows', as `attn embed` gives them) of the model's training clips. An input's similarity is
the cosine similarity of its embedding to its k-th nearest bank row (deep k-nearest-neighbour
novelty detection, Sun et al. 2022): high for inputs like the training data, low for sounds or
texts of another kind, which a closed-set softmax still assigns to some class with a high score.
Below `min_similarity` (chosen at training, pipelines/infer/novelty.py) predict answers `unknown`.
Kept in the model file as a float16 tensor beside the weights (read with weights_only=True).
"""

from __future__ import annotations

import numpy as np

CHUNK = 1024  # inputs compared with the bank at a time: (CHUNK, M) similarities in memory


def unit_rows(x: np.ndarray) -> np.ndarray:
    """(N, D) rows scaled to unit length (a zero row stays zero), float32."""
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def kth_similarity(vectors: np.ndarray, bank: np.ndarray, k: int, leave_one_out: bool = False) -> np.ndarray:
    """(N,) cosine similarity of each row of `vectors` (N, D) to its k-th most similar row of the
    unit-length `bank` (M, D); `leave_one_out`: `vectors` is the bank itself and a row never counts
    as its own neighbour."""
    v = unit_rows(vectors)
    k = max(1, min(int(k), len(bank) - (1 if leave_one_out else 0)))
    out = np.empty(len(v), dtype=np.float32)
    for i in range(0, len(v), CHUNK):
        s = v[i : i + CHUNK] @ bank.T  # (n, M)
        if leave_one_out:
            s[np.arange(len(s)), np.arange(i, i + len(s))] = -np.inf
        out[i : i + CHUNK] = np.partition(s, s.shape[1] - k, axis=1)[:, s.shape[1] - k]
    return out


class Novelty:
    def __init__(self, bank: np.ndarray, min_similarity: float, neighbors: int, info: dict | None = None) -> None:
        bank = np.asarray(bank, dtype=np.float32)
        if bank.ndim != 2 or not len(bank):
            raise ValueError(f"novelty bank must be (M, D) with M >= 1, got shape {bank.shape}")
        if not -1.0 <= float(min_similarity) <= 1.0 or int(neighbors) < 1:
            raise ValueError(f"min_similarity {min_similarity} / neighbors {neighbors} out of range")
        self.bank, self.min_similarity, self.neighbors = unit_rows(bank), float(min_similarity), int(neighbors)
        self.info = dict(info or {})  # what the model file's header keeps (threshold, how it was chosen)

    def similarity(self, vectors: np.ndarray) -> np.ndarray:
        """(N,) similarity of embeddings (N, D) to the training clips (see the module doc)."""
        return kth_similarity(vectors, self.bank, self.neighbors)

    def tensors(self) -> dict:
        """The model file's tensor for the bank (float16: half the size, cosines good to ~1e-3)."""
        import torch

        return {"novelty.bank": torch.from_numpy(self.bank.astype(np.float16))}

    @classmethod
    def from_state(cls, info: dict, tensors: dict) -> Novelty:
        return cls(tensors["novelty.bank"].float().numpy(), info["min_similarity"], info["neighbors"], info)
