"""What every backend does the same way: input checks, prompts, batching, normalisation.

Backends implement only `_embed(texts)` for already-prompted texts; the rules that make their
outputs comparable (same prompt per role, same truncation length, float32 unit vectors) live here. What the
runtime returns is checked before it is normalised (NaN, inf, a zero row are errors, never repaired), and
`encode_raw` hands it to the contract gates as it came.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from embedgate.protocol import BackendMetadata, EmbeddingError, check_texts, l2_normalize

if TYPE_CHECKING:
    from embedgate.model import ModelSpec


RAW_DTYPE = np.float32  # what an empty batch returns


def check_raw(name: str, raw: object, n: int, dimension: int) -> np.ndarray:
    """The runtime's own output before normalisation: an (n, dimension) float array with finite rows.

    The dtype is not checked here (encode() casts to float32); the contract gate test_raw_output checks it."""
    if not isinstance(raw, np.ndarray):
        raise EmbeddingError(f"{name}: the runtime returned {type(raw).__name__}, not a numpy array")
    if raw.shape != (n, dimension):
        raise EmbeddingError(f"{name}: the runtime returned shape {raw.shape}, expected {(n, dimension)}")
    if not np.issubdtype(raw.dtype, np.floating):
        raise EmbeddingError(f"{name}: the runtime returned dtype {raw.dtype}, not floating point")
    finite = np.isfinite(raw).all(axis=1)
    if not finite.all():
        bad = np.flatnonzero(~finite).tolist()
        raise EmbeddingError(f"{name}: NaN or inf in the runtime's vector of text {bad[0]}"
                             + (f" (and {len(bad) - 1} more: texts {bad[1:6]})" if len(bad) > 1 else ""))
    return raw


def length_sorted(texts: list[str], embed: Callable[[list[str]], np.ndarray], *, longest_first: bool = False) -> np.ndarray:
    """`embed(texts)` with the texts sorted by length (as sentence-transformers' own encode() orders them), so that
    a batch is not padded to one long text's length; the vectors come back in the caller's order."""
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]), reverse=longest_first)
    vectors = np.asarray(embed([texts[i] for i in order]))
    out = np.empty_like(vectors)
    out[order] = vectors
    return out


class BaseBackend:
    """Shared encode(): validate, prompt, batch, embed, check the runtime's output, normalise."""

    name: str
    dimension: int
    max_tokens: int
    metadata: BackendMetadata
    # Dynamic INT8 computes one activation scale per tensor, so inside a padded batch a text's vector depends on
    # its batch-mates (MiniLM, onnx-int8: cosine 0.952 between "ok" alone and "ok" in a batch of six). Such
    # backends run one text per call: exact batch invariance, and batch latencies that say what that costs.
    one_text_per_call: bool  # set by the constructor

    def __init__(self, name: str, model: ModelSpec, dimension: int, metadata: BackendMetadata, *,
                 one_text_per_call: bool = False):
        self.name = name
        self.model = model
        self.dimension = dimension
        self.max_tokens = model.max_seq_length
        self.metadata = metadata
        self.one_text_per_call = one_text_per_call
        metadata.params.setdefault("batching", "one text per call" if one_text_per_call else "real batches")

    @property
    def runtime_dimension(self) -> int:
        """The dims the runtime itself returns (TruncatedBackend cuts them to `dimension` after)."""
        return self.dimension

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} dim={self.dimension} artifact={self.metadata.artifact_path}>"

    def encode_raw(self, texts: Sequence[str], *, role: str | None = None, batch_size: int = 32) -> np.ndarray:
        """What the runtime itself returns for the texts, un-normalised and in its own dtype (the contract gates
        check it: a graph that outputs NaN or float64 must not hide behind encode()'s normalisation)."""
        return self._raw(check_texts(texts), role, batch_size)

    def encode(self, texts: Sequence[str], *, role: str | None = None, batch_size: int = 32) -> np.ndarray:
        texts = check_texts(texts)
        raw = check_raw(self.name, self._raw(texts, role, batch_size), len(texts), self.dimension)
        vectors = l2_normalize(raw)
        zero = ~vectors.any(axis=1)
        if zero.any():
            prompt = self.model.prompt_for(role)
            wrong = [int(i) for i in np.flatnonzero(zero)
                     if not self.embeds_nothing(prompt + texts[i])]
            if wrong:
                raise EmbeddingError(f"{self.name}: the runtime returned an all-zero vector for text {wrong[0]} "
                                     f"({texts[wrong[0]][:40]!r})")
            vectors[zero, 0] = 1.0  # nothing to embed: a unit vector all such texts share, so equal inputs stay equal
        return vectors

    def _raw(self, texts: list[str], role: str | None, batch_size: int) -> np.ndarray:
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        prompt = self.model.prompt_for(role)
        if not texts:
            return np.zeros((0, self.dimension), dtype=RAW_DTYPE)
        if len(texts) <= batch_size or self.one_text_per_call:
            return self.embed_prompted([prompt + text for text in texts], batch_size)
        # Many texts: batches of similar length, so that a batch is not padded to one long text's length.
        return length_sorted([prompt + text for text in texts], lambda ordered: self.embed_prompted(ordered, batch_size))

    def embeds_nothing(self, text: str) -> bool:
        """True when a zero vector is the runtime's right answer for this (prompted) text. A static model averages
        token vectors, so a text with no known token (or an empty one) is a zero row by design, and encode() gives
        it the first basis vector; anywhere else a zero row is an error, so this default says no."""
        return False

    def deployed_settings(self) -> dict[str, Any]:
        """What the artifact itself would do when deployed: pooling, dimension, normalize, max_tokens.

        None means the artifact does not say (the runtime's caller decides); test_deployed_settings compares the
        rest with the reference pipeline's. This default is what the harness configures from the reference model,
        right for backends that run the reference's own pipeline; backends that load a file override it."""
        return {"pooling": self.model.pooling, "dimension": self.dimension, "normalize": self.model.normalize,
                "max_tokens": self.max_tokens}

    def embed_prompted(self, prompted: list[str], batch_size: int) -> np.ndarray:
        """The runtime's work as it would be deployed, and what the latency gates time: already-prompted texts in
        calls of `batch_size` (one text per call where batching would change vectors), raw runtime output. Input
        checks, prompts and normalisation stay outside, so the clock measures the runtime, not the harness."""
        if self.one_text_per_call:
            batch_size = 1
        if len(prompted) <= batch_size:
            return np.asarray(self._embed(prompted))
        return np.concatenate([np.asarray(self._embed(prompted[i : i + batch_size]))
                               for i in range(0, len(prompted), batch_size)])

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
