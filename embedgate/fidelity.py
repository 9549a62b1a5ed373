"""Fidelity to the reference: the embedding analogue of llama.cpp's KL-divergence check for quantized models.

Task scores can look fine while vectors drift (a dropped Dense layer, another pooling, a missing prompt, an
over-aggressive quantization); comparing each text's vector with the reference's catches it directly.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.stats import spearmanr

from embedgate.data import CorpusText

TOP_K = 10
METRICS = ("cosine-mean", "cosine-p5", "cosine-min", "top10-overlap", "similarity-spearman")
THRESHOLD_KEYS = {
    "cosine-mean": "cosine_mean_min", "cosine-p5": "cosine_p5_min", "cosine-min": "cosine_min_min",
    "top10-overlap": "top10_overlap_min", "similarity-spearman": "similarity_spearman_min",
}


def encode_corpus(backend, corpus: Sequence[CorpusText], batch_size: int = 16) -> np.ndarray:
    """Vectors in corpus order, each text encoded with its own role's prompt."""
    out: np.ndarray | None = None
    for role in dict.fromkeys(text.role for text in corpus):
        index = [i for i, text in enumerate(corpus) if text.role == role]
        vectors = backend.encode([corpus[i].text for i in index], role=role, batch_size=batch_size)
        if out is None:
            out = np.zeros((len(corpus), vectors.shape[1]), dtype=np.float32)
        out[index] = vectors
    return out


def top_k_neighbours(vectors: np.ndarray, k: int = TOP_K) -> np.ndarray:
    sims = vectors @ vectors.T
    np.fill_diagonal(sims, -np.inf)
    return np.argsort(-sims, axis=1, kind="stable")[:, :k]


def compare(candidate: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    if candidate.shape != reference.shape:
        raise ValueError(f"vectors of shape {candidate.shape} cannot be compared with the reference's {reference.shape}")
    cos = np.sum(candidate * reference, axis=1) / (
        np.linalg.norm(candidate, axis=1) * np.linalg.norm(reference, axis=1))
    ours, theirs = top_k_neighbours(candidate), top_k_neighbours(reference)
    overlap = np.mean([len(set(a) & set(b)) / TOP_K for a, b in zip(ours, theirs)])
    upper = np.triu_indices(len(candidate), k=1)
    rho = spearmanr((candidate @ candidate.T)[upper], (reference @ reference.T)[upper]).statistic
    return {
        "cosine-mean": float(cos.mean()), "cosine-p5": float(np.percentile(cos, 5)), "cosine-min": float(cos.min()),
        "top10-overlap": float(overlap), "similarity-spearman": float(rho),
        "worst_text_index": int(np.argmin(cos)),
    }
