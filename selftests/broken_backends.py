"""Deliberately broken backends for the self-tests, each wrong in one way a real optimization can be wrong.

They wrap the real torch-fp32 backend of whatever model the run uses and are registered through the
`pytest_embedgate_register_backends` hook, the same way a team would add its own backend.
"""

from __future__ import annotations

import numpy as np

from backends import BackendSpec, BuildContext
from backends._base import check_texts
from backends.torch_fp32 import SentenceTransformerBackend


class Wrapped:
    """Delegates to the reference; subclasses break one thing."""

    def __init__(self, name: str, ctx: BuildContext):
        from backends.torch_fp32 import load

        self.inner = load(ctx)
        self.name = name
        self.dimension = self.inner.dimension
        self.max_tokens = self.inner.max_tokens
        self.metadata = self.inner.metadata

    def encode(self, texts, *, role=None, batch_size=32):
        return self.inner.encode(texts, role=role, batch_size=batch_size)


class Unnormalised(Wrapped):
    """Forgets the final L2 normalisation."""

    def encode(self, texts, *, role=None, batch_size=32):
        return super().encode(texts, role=role, batch_size=batch_size) * 3.0


class BatchDependent(Wrapped):
    """Leaks batch statistics into each vector, as a wrongly-masked pooling over padding would."""

    def encode(self, texts, *, role=None, batch_size=32):
        vectors = super().encode(texts, role=role, batch_size=batch_size)
        if len(vectors) > 1:
            vectors = vectors + 0.5 * vectors.mean(axis=0, keepdims=True)
        return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


class CrashesOnEmpty(Wrapped):
    """Crashes on an empty string, as a tokenizer wrapper that indexes the first token would."""

    def encode(self, texts, *, role=None, batch_size=32):
        texts = check_texts(texts)
        if any(text == "" for text in texts):
            raise IndexError("list index out of range: empty text has no first token")
        return super().encode(texts, role=role, batch_size=batch_size)


class NoTruncation(Wrapped):
    """Embeds only the tail of a long text, as a backend that truncates from the wrong side would."""

    def encode(self, texts, *, role=None, batch_size=32):
        texts = [text[-200:] if len(text) > 200 else text for text in check_texts(texts)]
        return super().encode(texts, role=role, batch_size=batch_size)


BROKEN = {
    "broken-norm": Unnormalised,
    "broken-batch": BatchDependent,
    "broken-empty": CrashesOnEmpty,
    "broken-truncation": NoTruncation,
}


# ---------------------------------------------------------------- wrong raw output, through the real BaseBackend.encode

class RawBroken:
    """Mixin for a real SentenceTransformerBackend whose `_embed` goes wrong: unlike the Wrapped backends above,
    these keep the harness's own encode() (checks, normalisation), which is what their self-tests exercise."""

    def __init__(self, name: str, ctx: BuildContext):
        from backends.torch_fp32 import load

        inner = load(ctx)
        super().__init__(name, ctx.model, inner.st, inner.metadata)


class NanOnLongInput(RawBroken, SentenceTransformerBackend):
    """Returns NaN for texts over 200 characters (an fp16 graph whose attention overflows on long inputs)."""

    def _embed(self, texts):
        out = super()._embed(texts)
        out[[len(text) > 200 for text in texts]] = np.nan
        return out


class Float64Output(RawBroken, SentenceTransformerBackend):
    """Returns float64 (a graph exported in double precision: twice the memory, slower kernels)."""

    def _embed(self, texts):
        return super()._embed(texts).astype(np.float64)


class ZeroForShortText(RawBroken, SentenceTransformerBackend):
    """Returns an all-zero vector for ordinary short texts (a pooling that divides by the wrong mask)."""

    def _embed(self, texts):
        out = super()._embed(texts)
        out[[0 < len(text.split()) <= 2 for text in texts]] = 0.0
        return out


# ---------------------------------------------------------------- degraded backends for the quality gates

def _text_noise(texts, dimension: int, sigma: float) -> np.ndarray:
    """Noise that depends only on the text (deterministic across calls, batches and runs)."""
    import zlib

    return np.stack([np.random.default_rng(zlib.crc32(t.encode("utf-8"))).normal(0, sigma, dimension) for t in texts])


class Noisy(Wrapped):
    """Reference vectors plus noise (what an over-aggressive quantization does to them)."""

    sigma = 0.08

    def encode(self, texts, *, role=None, batch_size=32):
        texts = check_texts(texts)
        vectors = super().encode(texts, role=role, batch_size=batch_size)
        if not texts:
            return vectors
        vectors = vectors + _text_noise([f"{role}|{t}" for t in texts], self.dimension, self.sigma).astype(np.float32)
        return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


class Retention90(Noisy):
    """Noise tuned so that all-MiniLM-L6-v2 keeps ~90% of its fixture-STS Spearman (measured: 90.8%)."""

    sigma = 0.06


class SlightNoise(Noisy):
    """Noise small enough that all-MiniLM-L6-v2 keeps its fixture-STS Spearman (measured: 100.2%)."""

    sigma = 0.04


class RoleScrambled(Wrapped):
    """Right on similarity texts, noise for queries, documents and classification inputs: a runtime whose
    role-specific path (a prompt, a head, a cache key) is broken. An STS-only gate cannot see it."""

    def encode(self, texts, *, role=None, batch_size=32):
        texts = check_texts(texts)
        if role == "similarity" or not texts:
            return super().encode(texts, role=role, batch_size=batch_size)
        vectors = _text_noise([f"{role}|{t}" for t in texts], self.dimension, 1.0)
        return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


class OtherPooling(Wrapped):
    """CLS pooling where the model says mean (a converter that ignores 1_Pooling)."""

    def __init__(self, name, ctx):
        super().__init__(name, ctx)
        from sentence_transformers.sentence_transformer.modules import Pooling

        st = self.inner.st
        key = next(k for k, module in st._modules.items() if isinstance(module, Pooling))
        st._modules[key] = Pooling(st._modules[key].get_embedding_dimension(), pooling_mode="cls")


class DroppedPrompt(Wrapped):
    """Ignores the role, so the model's prompts are never applied (an exporter that forgets them)."""

    def encode(self, texts, *, role=None, batch_size=32):
        return super().encode(texts, role=None, batch_size=batch_size)


class DroppedLastDense(Wrapped):
    """Leaves out the last Dense layer (a GGUF converted without --sentence-transformers-dense-modules)."""

    def __init__(self, name, ctx):
        super().__init__(name, ctx)
        from sentence_transformers.sentence_transformer.modules import Dense

        st = self.inner.st
        last = [k for k, module in st._modules.items() if isinstance(module, Dense)][-1]
        del st._modules[last]
        self.dimension = self.inner.dimension = int(st.get_embedding_dimension())


# ---------------------------------------------------------------- latency

class SlowedDown(Wrapped):
    """Does the reference's work three times (a backend 3x slower than the reference)."""

    def encode(self, texts, *, role=None, batch_size=32):
        for _ in range(2):
            super().encode(texts, role=role, batch_size=batch_size)
        return super().encode(texts, role=role, batch_size=batch_size)


class SlowedByEnvironment(Wrapped):
    """Does the reference's work EMBEDGATE_SELFTEST_REPEAT times (default 1): the same backend, slower in a later
    run, which is what --benchmark-compare across runs must catch."""

    def encode(self, texts, *, role=None, batch_size=32):
        import os

        for _ in range(int(os.environ.get("EMBEDGATE_SELFTEST_REPEAT", "1")) - 1):
            super().encode(texts, role=role, batch_size=batch_size)
        return super().encode(texts, role=role, batch_size=batch_size)


class Twin(Wrapped):
    """A second, independent copy of the reference with everything the harness times: the baseline's twin, which
    must measure a speedup of 1."""

    def __init__(self, name: str, ctx: BuildContext):
        super().__init__(name, ctx)
        self.model = self.inner.model
        self.embed_prompted = self.inner.embed_prompted


def _burn_cpu(seconds: float) -> None:
    """Burn one core for `seconds` without holding the GIL (hashlib releases it for large inputs)."""
    import hashlib
    import time

    block = bytes(1 << 20)
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        hashlib.sha256(block).digest()


class LeavesThreadsSpinning(Wrapped):
    """The reference's work, then a thread that keeps burning a core for 60 ms after every call (as onnxruntime's
    intra-op threads spin after a run): a runtime timed right after it pays for that, so a harness that times the
    baseline there credits this backend with a speedup it does not have."""

    spin_seconds = 0.06

    def encode(self, texts, *, role=None, batch_size=32):
        import threading

        vectors = super().encode(texts, role=role, batch_size=batch_size)
        threading.Thread(target=_burn_cpu, args=(self.spin_seconds,), daemon=True).start()
        return vectors


class Cached(Wrapped):
    """Returns remembered vectors without computing (what a benchmark must not believe)."""

    def encode(self, texts, *, role=None, batch_size=32):
        texts = check_texts(texts)
        vector = np.zeros((len(texts), self.dimension), dtype=np.float32)
        vector[:, 0] = 1.0
        return vector


BROKEN.update({
    "nan-long": NanOnLongInput, "float64": Float64Output, "zero-short": ZeroForShortText,
    "noisy": Noisy, "retention-90": Retention90, "slight-noise": SlightNoise, "cls-pooling": OtherPooling,
    "no-prompt": DroppedPrompt, "no-last-dense": DroppedLastDense, "plain": Wrapped, "slow-3x": SlowedDown,
    "cached": Cached, "regresses": SlowedByEnvironment, "spinner": LeavesThreadsSpinning,
    "twin": Twin, "role-scrambled": RoleScrambled,
})


def slower_rebuild(ctx):
    """A release candidate 3x slower than what is in production: built, it is SlowedDown; loaded from an artifact
    (--production's), the reference's own speed. Same vectors either way."""
    return SlowedDown("slower-rebuild", ctx) if ctx.artifact is None else Wrapped("slower-rebuild", ctx)


def pytest_embedgate_register_backends(registry) -> None:
    for name, cls in BROKEN.items():
        registry.register(BackendSpec(
            name, "test", "torch", True, (lambda ctx, name=name, cls=cls: cls(name, ctx)), cls.__doc__ or name,
            requires=("torch",), accepts_artifact=False,
        ))
    registry.register(BackendSpec("slower-rebuild", "test", "torch", True, slower_rebuild, slower_rebuild.__doc__ or "",
                                  requires=("torch",)))
