"""The runtime protocol: what every backend gives the gates, the optional capabilities some gates use, and what a
backend factory is given.

A backend is any object that meets `EmbeddingBackend`; `RawOutput`, `DeployedSettings` and `TimedCall` are
capabilities a gate checks for with isinstance() (runtime-checkable Protocols) and skips, or times through
encode(), without. The built-in backends (the `backends` package) have all three; a plugin's backend is registered
through the `pytest_embedgate_register_backends` hook (embedgate/registry.py's BackendSpec).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

if TYPE_CHECKING:
    from embedgate.cache import ArtifactCache
    from embedgate.model import ModelSpec


@dataclass
class BackendMetadata:
    """What the report says about a loaded backend besides its measurements."""

    artifact_path: str
    size_bytes: int
    load_seconds: float
    build_seconds: float = 0.0
    built_now: bool = False
    source: str = "built"  # "reference", "built", "cached", "user artifact", "in memory"
    params: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class EmbeddingBackend(Protocol):
    """An embedding model behind some runtime; what every gate talks to."""

    name: str
    dimension: int
    max_tokens: int
    metadata: BackendMetadata

    def encode(self, texts: Sequence[str], *, role: str | None = None, batch_size: int = 32) -> np.ndarray:
        """L2-normalised float32 vectors, shape (len(texts), dimension), the model's prompt for `role` applied."""
        ...


# Optional capabilities: what a backend may offer beyond EmbeddingBackend, and the gates that use it. The built-in
# backends have all three (backends._base.BaseBackend); a plugin's backend without one skips that gate or, for
# TimedCall, is timed through encode().


@runtime_checkable
class RawOutput(Protocol):
    """The runtime's own output before encode()'s checks and normalisation: contract/raw_output checks its shape,
    dtype, NaN/inf and zero rows (a graph that emits NaN must not hide behind the normalisation)."""

    runtime_dimension: int  # the dims the runtime returns (what --truncate-dim cuts afterwards)

    def encode_raw(self, texts: Sequence[str], *, role: str | None = None, batch_size: int = 32) -> np.ndarray: ...

    def embeds_nothing(self, text: str) -> bool:
        """True where a zero vector is the right answer for this prompted text (a static model's unknown words)."""
        ...


@runtime_checkable
class DeployedSettings(Protocol):
    """What the artifact itself would do when deployed: {"pooling", "dimension", "normalize", "max_tokens"}, None
    for what it leaves to its caller; contract/deployed_settings compares them with the reference pipeline's."""

    def deployed_settings(self) -> dict[str, Any]: ...


@runtime_checkable
class TimedCall(Protocol):
    """The runtime's work alone, as the latency gates time it: already-prompted texts in calls of `batch_size`,
    raw output; prompts, input checks and normalisation stay outside the clock."""

    model: ModelSpec  # whose prompt_for(role) the timed texts get beforehand

    def embed_prompted(self, prompted: list[str], batch_size: int) -> np.ndarray: ...


@dataclass(frozen=True)
class BuildOptions:
    """The run's options a build may depend on, typed and frozen (a backend cannot change them for the next one).
    A build whose artifact depends on one puts it in its cache key (model2vec-tuned: its corpus)."""

    distill_corpus: Path | None = None  # --distill-corpus: model2vec-tuned's corpus, one text a line
    calibration_corpus: Path | None = None  # --calibration-corpus: the static INT8 builds' calibration text
    data_dir: Path | None = None  # --data-dir: both corpora fall back to STS-B train+dev under it
    probe: bool = True  # GGUF: embed one text at the file's context length in a subprocess after loading


@dataclass
class BuildContext:
    """Everything a backend factory may use: the reference model, the cache, the thread budget."""

    model: ModelSpec
    cache: ArtifactCache
    threads: int
    artifact: Path | None = None  # a user-supplied artifact (--artifact NAME=PATH): load it, never build or modify it
    options: BuildOptions = field(default_factory=BuildOptions)


# ---------------------------------------------------------------- what encode() and encode_raw() accept and promise

def check_texts(texts: object) -> list[str]:
    """Accept a list or tuple of str; anything else is a TypeError that says what was wrong.

    A str holding a lone surrogate ("\\ud800", e.g. from surrogateescape-decoded bytes) is a ValueError naming
    the text: tokenizers fail on it each in their own way (TypeError in three backends, UnicodeEncodeError in
    llama.cpp's), and one such text would fail its whole batch with a message that names none."""
    if isinstance(texts, (str, bytes)):
        raise TypeError(f"encode() takes a list of texts, not a single {type(texts).__name__}; wrap it in a list")
    if not isinstance(texts, Sequence):
        raise TypeError(f"encode() takes a list of str, got {type(texts).__name__}")
    for index, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"encode() takes a list of str; item {index} is {type(text).__name__}")
        if not text.isascii():
            try:
                text.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise ValueError(
                    f"encode(): text {index} is not valid Unicode (lone surrogate {text[exc.start]!r} at position "
                    f"{exc.start}); repair it before encoding, e.g. text.encode('utf-8', 'replace').decode()"
                ) from None
    return list(texts)


class EmbeddingError(RuntimeError):
    """The runtime returned something that is not a sentence vector (NaN/inf, an all-zero row, a wrong shape);
    raised by encode() rather than repaired, so that no gate sees a substitute for what the runtime produced."""


# What a runtime may return: float32, or float16 from a half-precision artifact (model2vec's float16 table),
# which encode() widens exactly, so every gate measures the values a deployment gets. float64 is a graph run in
# double precision (twice the memory and bandwidth, and what it returns is not what encode() gives): an error of
# the contract gates that check the raw output, as is any other dtype.
RAW_DTYPES = (np.dtype(np.float32), np.dtype(np.float16))


def l2_normalize(vectors: np.ndarray) -> np.ndarray:
    """Unit rows in float32; a zero row stays zero (encode() decides what a zero row means)."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    out = np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)
    return np.ascontiguousarray(out, dtype=np.float32)
