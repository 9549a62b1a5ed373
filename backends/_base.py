"""What every backend does the same way: input checks, prompts, batching, normalisation.

Backends implement only `_embed(texts)` for already-prompted texts; the rules that make their
outputs comparable (same prompt per role, same truncation length, float32 unit vectors) live here.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from backends import BackendMetadata

if TYPE_CHECKING:
    from embedgate.model import ModelSpec


def check_texts(texts: object) -> list[str]:
    """Accept a list or tuple of str; anything else is a TypeError that says what was wrong."""
    if isinstance(texts, (str, bytes)):
        raise TypeError(f"encode() takes a list of texts, not a single {type(texts).__name__}; wrap it in a list")
    if not isinstance(texts, Sequence):
        raise TypeError(f"encode() takes a list of str, got {type(texts).__name__}")
    for index, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"encode() takes a list of str; item {index} is {type(text).__name__}")
    return list(texts)


def l2_normalize(vectors: np.ndarray) -> np.ndarray:
    """Unit rows in float32. A row with nothing to embed (all zeros, e.g. a static model given an
    empty string) becomes the first basis vector, so outputs stay unit-norm and equal inputs stay equal."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    zero = (norms[:, 0] == 0) | ~np.isfinite(norms[:, 0])
    out = np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)
    if zero.any():
        out[zero] = 0.0
        out[zero, 0] = 1.0
    return np.ascontiguousarray(out, dtype=np.float32)


class BaseBackend:
    """Shared encode(): validate, prompt, batch, embed, normalise."""

    name: str
    dimension: int
    max_tokens: int
    metadata: BackendMetadata
    # Dynamic INT8 computes one activation scale per tensor, so inside a padded batch a text's vector depends on
    # its batch-mates (MiniLM, onnx-int8: cosine 0.952 between "ok" alone and "ok" in a batch of six). Such
    # backends run one text per call: exact batch invariance, and batch latencies that say what that costs.
    one_text_per_call = False

    def __init__(self, name: str, model: ModelSpec, dimension: int, metadata: BackendMetadata):
        self.name = name
        self.model = model
        self.dimension = dimension
        self.max_tokens = model.max_seq_length
        self.metadata = metadata

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} dim={self.dimension} artifact={self.metadata.artifact_path}>"

    def encode(self, texts: Sequence[str], *, role: str | None = None, batch_size: int = 32) -> np.ndarray:
        texts = check_texts(texts)
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        prompt = self.model.prompt_for(role)
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        vectors = l2_normalize(self.embed_prompted([prompt + text for text in texts], batch_size))
        if vectors.shape != (len(texts), self.dimension):
            raise RuntimeError(f"{self.name}: produced shape {vectors.shape}, expected {(len(texts), self.dimension)}")
        return vectors

    def embed_prompted(self, prompted: list[str], batch_size: int) -> np.ndarray:
        """The runtime's work as it would be deployed, and what the latency gates time: already-prompted texts in
        calls of `batch_size` (one text per call where batching would change vectors), raw runtime output. Input
        checks, prompts and normalisation stay outside, so the clock measures the runtime, not the harness."""
        if self.one_text_per_call:
            batch_size = 1
        if len(prompted) <= batch_size:
            return self._embed(prompted)
        return np.concatenate([self._embed(prompted[i : i + batch_size]) for i in range(0, len(prompted), batch_size)])

    def _embed(self, texts: list[str]) -> np.ndarray:  # pragma: no cover - every backend overrides it
        raise NotImplementedError

    def runtime_call(self, prompted: list[str]) -> object:
        """The runtime's own call for these texts, as a production caller would make it, without embedgate in
        between: what the harness-overhead self-test holds `embed_prompted` to. Defaults to `_embed`."""
        return self._embed(prompted)


class Timer:
    """`with Timer() as t: ...; t.seconds` for load and build times."""

    def __enter__(self) -> Timer:
        self._start = time.perf_counter()
        self.seconds = 0.0
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self._start
