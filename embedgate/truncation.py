"""--truncate-dim: every backend of the run, the reference included, gated on its vectors' first N dims."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from embedgate.protocol import EmbeddingBackend, EmbeddingError, l2_normalize


class TruncatedBackend:
    """A backend's vectors cut to their first `dimension` components, then L2-renormalised: a Matryoshka model
    (EmbeddingGemma: 768, 512, 256, 128) shipped truncated to cut index size. `--truncate-dim` wraps every backend
    of the run in one where the session loads it, the reference included, built-in or registered by a plugin.

    The wrapped backend's encode() runs as deployed and is checked at full size before the cut (BaseBackend checks
    the runtime's raw output; here, what the protocol promises: (n, D) finite float32 unit rows, so renormalising
    hides no defect). Everything else (encode_raw, embed_prompted, deployed_settings, metadata, ...) is the wrapped
    backend's: the contract's raw-output gates see the runtime's full-size output, and the latency gates time the
    runtime alone (the cut, a slice and a norm, stays off the clock)."""

    def __init__(self, inner: EmbeddingBackend, dimension: int):
        self.untruncated = inner
        self.name = inner.name
        self.runtime_dimension = int(inner.dimension)
        self.dimension = min(int(dimension), self.runtime_dimension)  # a smaller space (a static model's) is kept
        self.max_tokens = inner.max_tokens
        self.metadata = inner.metadata

    def __getattr__(self, attr: str) -> Any:
        if attr == "untruncated":  # not set yet (copy, pickle): no recursion
            raise AttributeError(attr)
        return getattr(self.untruncated, attr)

    def __repr__(self) -> str:
        return f"<truncated to {self.dimension} of {self.runtime_dimension} dims: {self.untruncated!r}>"

    def encode(self, texts: Sequence[str], *, role: str | None = None, batch_size: int = 32) -> np.ndarray:
        full = self.untruncated.encode(texts, role=role, batch_size=batch_size)
        what = f"{self.name}: before truncation to {self.dimension} dims, its full-size vectors"
        if not isinstance(full, np.ndarray) or full.ndim != 2 or full.shape[1] != self.runtime_dimension:
            raise EmbeddingError(f"{what} have shape {getattr(full, 'shape', type(full).__name__)}, "
                                 f"expected (n, {self.runtime_dimension})")
        if full.dtype != np.float32:
            raise EmbeddingError(f"{what} are {full.dtype}, expected float32")
        norms = np.linalg.norm(full, axis=1)
        if len(full) and not (np.isfinite(norms).all() and np.abs(norms - 1.0).max() <= 1e-3):
            raise EmbeddingError(f"{what} have norms {np.nanmin(norms):.4f}..{np.nanmax(norms):.4f}, "
                                 "expected 1 (renormalising after the cut would hide it)")
        cut = l2_normalize(full[:, : self.dimension])  # the renormalisation encode() applies, zero rows left zero
        zero = np.flatnonzero(~cut.any(axis=1))
        if zero.size:
            raise EmbeddingError(f"{self.name}: the first {self.dimension} dims of text {int(zero[0])}'s vector are "
                                 "all zero: nothing to renormalise")
        return cut


def untruncated(backend: EmbeddingBackend) -> EmbeddingBackend:
    """The full-size backend behind a TruncatedBackend (the quality gates' reference), else the backend itself."""
    return getattr(backend, "untruncated", backend)
