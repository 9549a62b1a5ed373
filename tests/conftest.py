"""Inputs shared by the gate tests."""

from __future__ import annotations

import pytest

# Mixed lengths on purpose: batch-invariance needs padding, and padding must not leak into any vector.
MIXED_TEXTS = [
    "Cheap CPUs make embeddings slow.",
    "ok",
    "The quarterly report shows revenue up eight percent, driven by subscriptions in Europe and a "
    "recovering hardware business, while costs stayed flat for the third quarter in a row.",
    "Wie spät ist es?",
    "A long text: " + " ".join(
        "Each optimization is a trade between speed and the quality of the vectors it produces." for _ in range(12)
    ),
    "猫はソファの上で寝ている。",
]


@pytest.fixture(scope="session")
def hostile_texts() -> list[str]:
    """fixtures/hostile.jsonl, the fidelity corpus's texts that prose lacks (URLs, hashes, literal "[SEP]",
    a 100,000-character text): every backend must embed them, truncated, without an error."""
    from embedgate.fidelity import hostile_corpus

    return [text.text for text in hostile_corpus()]


@pytest.fixture(scope="session")
def mixed_texts() -> list[str]:
    return list(MIXED_TEXTS)
