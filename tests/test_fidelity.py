"""Fidelity gates: each backend's vectors against torch-fp32's on the project's fixture corpus.

Corpus: fixtures/ (retrieval queries and documents, STS sentences, 35 lines in 30+ languages, 8 paragraphs of
512+ tokens, 13 hostile texts: URLs, hashes, literal special tokens, 100,000 characters), 247 texts, each encoded
with its role's prompt. Thresholds: [*.fidelity] in the thresholds file.
"""

from __future__ import annotations

import pytest

from embedgate.fidelity import METRICS, encode_corpus, fidelity_metrics, gated_corpus
from embedgate.registry import REFERENCE

pytestmark = pytest.mark.fidelity

@pytest.mark.parametrize("metric", list(METRICS))
def test_fidelity(backend, reference, egsession, thresholds, gate, metric):
    spec = egsession.registry[backend.name]
    if backend.name == REFERENCE:
        pytest.skip("the reference itself")
    if not spec.shares_reference_space:
        pytest.skip(f"{backend.name} has a vector space of its own; it is gated on task quality instead")
    threshold = thresholds["fidelity"][METRICS[metric].threshold_key]
    if backend.dimension != reference.dimension:
        gate.measure(metric, None, threshold, what=f"{backend.dimension}-dim vectors cannot match the reference's "
                     f"{reference.dimension}-dim ones: a dropped or extra Dense layer?")
        gate.enforce()
    corpus = gated_corpus()
    ref_vectors = egsession.memoize(("corpus-vectors", REFERENCE), lambda: encode_corpus(reference, corpus))
    metrics = egsession.memoize(
        ("fidelity", backend.name), lambda: fidelity_metrics(encode_corpus(backend, corpus), ref_vectors))
    gate.result("fidelity", {**{k: v for k, v in metrics.items() if k in METRICS}, "texts": len(corpus)})
    worst = corpus[metrics["worst_text_index"]]
    gate.detail(texts=len(corpus), worst_text=f"{worst.id} ({worst.kind}, {worst.role})")
    gate.measure(metric, metrics[metric], threshold, what=METRICS[metric].what)
    gate.enforce()
