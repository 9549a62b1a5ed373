"""Deliberately broken backends for the self-tests, each wrong in one way a real optimization can be wrong.

They wrap the real torch-fp32 backend of whatever model the run uses and are registered through the
`pytest_embedgate_register_backends` hook, the same way a team would add its own backend.
"""

from __future__ import annotations

import numpy as np

from backends import BackendSpec, BuildContext
from backends._base import check_texts


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


def pytest_embedgate_register_backends(registry) -> None:
    for name, cls in BROKEN.items():
        registry.register(BackendSpec(
            name, "test", "torch", True, (lambda ctx, name=name, cls=cls: cls(name, ctx)), cls.__doc__ or name,
            requires=("torch",), accepts_artifact=False,
        ))
