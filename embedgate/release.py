"""The release question: may the candidate replace the artifact in production, and can the index stay?

`--production=BACKEND=PATH` loads the artifact at PATH through BACKEND's own loader (as `--artifact` would) as a
backend named `BACKEND-production`, beside BACKEND's candidate (built now, or its `--artifact`). The release gates
(tests/test_release.py) compare the two on the same texts in the same run: no task or fidelity regression, no
latency regression (timed block by block in one test), and index compatibility: the candidate's vectors against
production's for the same texts, and retrieval with the candidate's queries over production's documents, which is
what serving a new model over an index built by the old one does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from embedgate.data import CorpusText
from embedgate.fidelity import cosine_stats
from embedgate.gates import BAD, Verdict

SUFFIX = "-production"


def production_name(candidate: str) -> str:
    return candidate + SUFFIX


class CrossBackend:
    """Queries embedded by one backend, documents by another: retrieval over an index the other one built."""

    def __init__(self, queries, documents):
        self.queries, self.documents = queries, documents
        self.name = f"{queries.name} queries over {documents.name} documents"
        self.dimension = queries.dimension
        self.max_tokens = queries.max_tokens
        self.metadata = queries.metadata

    def encode(self, texts: Sequence[str], *, role: str | None = None, batch_size: int = 32) -> np.ndarray:
        side = self.documents if role == "document" else self.queries
        return side.encode(texts, role=role, batch_size=batch_size)


def retrieval_corpus(task_data: dict[str, Any]) -> list[CorpusText]:
    """The queries and documents of the run's retrieval and reranking tasks, with their roles: texts an index
    holds and the queries sent to it."""
    from embedgate.taskdata import RetrievalData

    texts: list[CorpusText] = []
    for name, data in task_data.items():
        if not isinstance(data, RetrievalData):
            continue
        texts += [CorpusText(f"{name}-q-{qid}", text, "query", "query") for qid, text in data.queries.items()]
        texts += [CorpusText(f"{name}-d-{did}", f"{title} {text}".strip(), "document", "document")
                  for did, (title, text) in data.corpus.items()]
    return texts


def index_cosines(candidate: np.ndarray, production: np.ndarray) -> dict[str, float]:
    """The index compatibility's cosines: the candidate's and production's vectors of the same texts."""
    if candidate.shape != production.shape:
        raise ValueError(f"the candidate's vectors {candidate.shape} and production's {production.shape} differ in shape")
    stats = cosine_stats(candidate, production)
    worst = stats.pop("worst_text_index")
    return {**stats, "texts": len(candidate), "worst_text_index": worst}


def summary(records: list, production: dict[str, str], artifacts: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per candidate: production's name and path, the release verdict, what blocks it, and whether the stored
    index can stay; from the release gates' records alone."""
    out = {}
    for candidate, prod in production.items():
        mine = [r for r in records if r.backend == candidate and r.family == "release"]
        if not mine:
            continue
        failed = [r for r in mine if r.verdict in BAD]
        index = next((r for r in mine if r.gate == "release/index"), None)
        out[candidate] = {
            "production": prod, "production_path": str(artifacts.get(prod, "")),
            "verdict": Verdict.FAIL if failed else (Verdict.PASS if any(r.verdict == Verdict.PASS for r in mine)
                                                    else Verdict.SKIP),
            "blocked_by": [{"gate": r.gate, "reason": r.message} for r in failed],
            "index_compatible": (None if index is None or index.verdict not in (Verdict.PASS, Verdict.FAIL)
                                 else index.verdict == Verdict.PASS),
            "index": (index.result[2] if index is not None and index.result else None),
        }
    return out


def ship_line(candidate: str, entry: dict[str, Any]) -> str:
    """One line on the release question for the terminal and report.md."""
    index = entry["index"] or {}
    if entry["index_compatible"] is False:
        stay = (f"re-embed the corpus before switching (index cosine mean {index.get('cosine-mean', float('nan')):.4f}, "
                f"p5 {index.get('cosine-p5', float('nan')):.4f}; cross retrieval kept "
                f"{_pct(index.get('cross_retrieval_min'))})")
    elif entry["index_compatible"]:
        stay = "the stored index can stay"
    else:
        stay = "index compatibility not measured"
    if entry["verdict"] == Verdict.PASS:
        return f"release: {candidate} may replace production ({entry['production_path']}): {stay}"
    blocks = "; ".join(f"{b['gate']}: {b['reason'][:160]}" for b in entry["blocked_by"]) or entry["verdict"]
    return f"release: {candidate} may not replace production yet: {blocks}; {stay}"


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"
