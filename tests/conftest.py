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
def mixed_texts() -> list[str]:
    return list(MIXED_TEXTS)
