"""Fidelity to the reference: the embedding analogue of llama.cpp's KL-divergence check for quantized models.

Task scores can look fine while vectors drift (a dropped Dense layer, another pooling, a missing prompt, an
over-aggressive quantization); comparing each text's vector with the reference's catches it directly.

The gated corpus (247 texts) is the fixture corpus (embedgate.data.fidelity_corpus, 234) plus the 13 texts of
fixtures/hostile.jsonl: texts real callers send that prose lacks, on which a runtime's tokenizer can part from the
reference's. The artifact is gated as deployed: nothing here repairs its tokenization.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

import numpy as np

from embedgate.data import FIXTURES, CorpusText, fidelity_corpus

TOP_K = 10


@dataclass(frozen=True)
class Metric:
    """One fidelity metric: its name (the gate's id, report.json's key), its threshold key under [*.fidelity]
    (a floor: the metric must be at least that), what it measures (the gate's reason, the key's help), and the
    range a threshold of it may take."""

    name: str
    threshold_key: str
    what: str
    low: float = -1.0
    high: float = 1.0


# Everything that names a fidelity metric derives from this table: the gates (tests/test_fidelity.py and the
# release gates), the thresholds' keys (embedgate/thresholds.py) and the report's table.
METRICS: dict[str, Metric] = {metric.name: metric for metric in (
    Metric("cosine-mean", "cosine_mean_min", "mean cosine to the reference's vector of the same text"),
    Metric("cosine-p5", "cosine_p5_min", "5th percentile of the per-text cosine"),
    Metric("cosine-min", "cosine_min_min", "worst per-text cosine"),
    Metric("top10-overlap", "top10_overlap_min",
           "share of each text's 10 nearest neighbours that the reference also ranks top 10", low=0.0),
    Metric("similarity-spearman", "similarity_spearman_min",
           "rank correlation of all pairwise similarities with the reference's"),
)}


# The hostile texts are where runtimes' tokenizers part from the reference's: llama.cpp's WordPiece splits a word
# over 100 characters into pieces where the HF tokenizer gives one [UNK], and reads a literal "[SEP]" or "[MASK]" in
# user text as characters where the HF tokenizer matches the special token. They are gated as deployed, not
# repaired (measured per text and backend: docs/design/backends.md).
@cache
def hostile_corpus() -> list[CorpusText]:
    """fixtures/hostile.jsonl: long URLs, hashes, base64, literal special-token strings, a 100,000-character text.

    A row with "repeat_to_chars" is its text repeated to that many characters (kept short in the file)."""
    texts = []
    with (FIXTURES / "hostile.jsonl").open(encoding="utf-8") as fh:
        for row in (json.loads(line) for line in fh if line.strip()):
            text = row["text"]
            if "repeat_to_chars" in row:
                length = int(row["repeat_to_chars"])
                text = (text * (length // len(text) + 1))[:length]
            texts.append(CorpusText(row["id"], text, row["role"], "hostile"))
    return texts


def gated_corpus() -> list[CorpusText]:
    """What the fidelity gates compare: the fixture corpus and the hostile texts."""
    return fidelity_corpus() + hostile_corpus()


def encode_corpus(backend, corpus: Sequence[CorpusText], batch_size: int = 16) -> np.ndarray:
    """Vectors in corpus order, each text encoded with its own role's prompt."""
    out: np.ndarray | None = None
    for role in dict.fromkeys(text.role for text in corpus):
        index = [i for i, text in enumerate(corpus) if text.role == role]
        vectors = backend.encode([corpus[i].text for i in index], role=role, batch_size=batch_size)
        if out is None:
            out = np.zeros((len(corpus), vectors.shape[1]), dtype=np.float32)
        out[index] = vectors
    if out is None:
        raise ValueError("an empty corpus has no vectors")
    return out


def top_k_neighbours(vectors: np.ndarray, k: int = TOP_K) -> np.ndarray:
    sims = vectors @ vectors.T
    np.fill_diagonal(sims, -np.inf)
    return np.argsort(-sims, axis=1, kind="stable")[:, :k]


def cosine_stats(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """The per-text cosines of two sets of vectors of the same texts: mean, 5th percentile, min, and the worst
    text's index (the fidelity gates' cosines, and the release gates' index compatibility)."""
    cos = np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    return {"cosine-mean": float(cos.mean()), "cosine-p5": float(np.percentile(cos, 5)), "cosine-min": float(cos.min()),
            "worst_text_index": int(np.argmin(cos))}


def fidelity_metrics(candidate: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    """Every metric of METRICS, and the index of the text whose cosine is worst."""
    from scipy.stats import spearmanr

    if candidate.shape != reference.shape:
        raise ValueError(f"vectors of shape {candidate.shape} cannot be compared with the reference's {reference.shape}")
    cosines = cosine_stats(candidate, reference)
    worst = cosines.pop("worst_text_index")
    ours, theirs = top_k_neighbours(candidate), top_k_neighbours(reference)
    overlap = np.mean([len(set(a) & set(b)) / TOP_K for a, b in zip(ours, theirs, strict=True)])
    upper = np.triu_indices(len(candidate), k=1)
    rho = spearmanr((candidate @ candidate.T)[upper], (reference @ reference.T)[upper]).statistic
    return {**cosines, "top10-overlap": float(overlap), "similarity-spearman": float(rho), "worst_text_index": worst}
