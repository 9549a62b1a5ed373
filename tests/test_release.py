"""Release gates: the candidate against the artifact in production (--production=BACKEND=PATH), same texts, same run.

- release/quality[T]: the candidate's main score of task T not below production's by more than
  `release.max_task_drop` (relative).
- release/fidelity[M]: its fidelity metric M to torch-fp32 not below production's by more than
  `release.max_fidelity_drop`.
- release/latency[case]: candidate vs production timed block by block in one test (embedgate.latency.BlockTimer),
  speedup >= `release.min_speedup`.
- release/index: can the stored index stay? Cosine of the two's vectors of the same texts (the fidelity corpus and
  the run's retrieval corpora: mean, p5, min) and, per retrieval task, the main score of candidate queries over
  production documents as a share of production's own. A failure says: re-embed the corpus before switching.
"""

from __future__ import annotations

import statistics

import pytest

from embedgate.fidelity import METRICS, encode_corpus, fidelity_metrics, gated_corpus
from embedgate.latency import case_batches, time_blocks
from embedgate.registry import REFERENCE
from embedgate.release import CrossBackend, index_cosines, retrieval_corpus
from embedgate.scoring import score_task, session_task_score
from embedgate.tasks import builtin_data, task_names, task_type

pytestmark = pytest.mark.release


def _limits(egsession, candidate) -> dict:
    return egsession.thresholds_for(candidate.name)["release"]


def test_quality(candidate, production, egsession, gate, task_name):
    mine = session_task_score(egsession, candidate, task_name)
    theirs = session_task_score(egsession, production, task_name)
    kept = mine["main_score"] / theirs["main_score"] if theirs["main_score"] else float("nan")
    gate.result("release", key=f"quality:{task_name}", values={
        "main_score_name": mine["main_score_name"], "candidate": mine["main_score"],
        "production": theirs["main_score"], "kept": kept})
    max_drop = _limits(egsession, candidate).get("max_task_drop")
    gate.measure("kept", kept, None if max_drop is None else 1.0 - max_drop,
                 what=f"{mine['main_score_name']} {mine['main_score']:.4f} vs production's {theirs['main_score']:.4f}")
    gate.enforce()


@pytest.mark.parametrize("metric", list(METRICS))
def test_fidelity(candidate, production, reference, egsession, gate, metric):
    if not egsession.registry[candidate.name].shares_reference_space:
        pytest.skip(f"{candidate.name} has a vector space of its own: compared on task quality and the index")
    if candidate.dimension != production.dimension:
        gate.measure(f"{metric} drop", None, _limits(egsession, candidate).get("max_fidelity_drop"), op="<=",
                     what=f"{candidate.dimension}-dim candidate vs {production.dimension}-dim production")
        gate.enforce()
    corpus = gated_corpus()
    ref_vectors = egsession.memoize(("corpus-vectors", REFERENCE), lambda: encode_corpus(reference, corpus))
    mine, theirs = (egsession.memoize(("fidelity", side.name), lambda side=side: fidelity_metrics(encode_corpus(side, corpus), ref_vectors))
                    for side in (candidate, production))
    gate.result("release", key=f"fidelity:{metric}", values={"candidate": mine[metric], "production": theirs[metric]})
    max_drop = _limits(egsession, candidate).get("max_fidelity_drop")
    gate.measure(f"{metric} drop", theirs[metric] - mine[metric], max_drop, op="<=",
                 what=f"{metric} to torch-fp32 {mine[metric]:.4f} vs production's {theirs[metric]:.4f}")
    gate.enforce()


def test_latency(candidate, production, latency_case, egsession, gate, benchmark):
    case = latency_case
    batches, _ = case_batches(egsession, case)
    plan, timer = time_blocks(candidate, production, case, batches, egsession.options.latency_budget, benchmark)
    median = benchmark.stats.stats.median
    speedup = timer.speedup(list(benchmark.stats.stats.data))
    per_text = 1000 / case.batch_size
    production_median = statistics.median(timer.baseline_times)
    gate.result("release", key=f"latency:{case.id}", values={
        "per_text_ms": per_text * median, "production_per_text_ms": per_text * production_median, "speedup": speedup})
    gate.measure("speedup", speedup, _limits(egsession, candidate).get("min_speedup"), unit="x",
                 what=f"vs production, median of {plan.blocks} block pairs: {per_text * median:.2f} ms vs "
                      f"{per_text * production_median:.2f} ms per text")
    gate.enforce()


def test_index(candidate, production, egsession, gate):
    if candidate.dimension != production.dimension:
        gate.measure("index cosine-mean", None, _limits(egsession, candidate).get("index_cosine_mean_min"),
                     what=f"re-embed the corpus before switching: {candidate.dimension}-dim candidate vectors "
                          f"beside {production.dimension}-dim stored ones")
        gate.enforce()
    names = task_names(egsession)
    retrieval = [n for n in names if task_type(n) in ("Retrieval", "Reranking")]
    data = {}
    for name in retrieval:
        try:
            data[name] = builtin_data(name, egsession.data_dir, egsession.options.quality_profile)
        except (KeyError, OSError, ValueError):
            continue  # an mteb task of its own (--mteb-tasks): it still counts in the cross-retrieval scores below
    corpus = gated_corpus() + retrieval_corpus(data)
    measured = index_cosines(encode_corpus(candidate, corpus), encode_corpus(production, corpus))
    model_hash = egsession.model.content_hash
    cross: dict[str, float] = {}
    for name in retrieval:
        own = session_task_score(egsession, production, name)["main_score"]
        mixed = score_task(CrossBackend(candidate, production), name, egsession.data_dir, model_hash,
                           profile=egsession.options.quality_profile, log=egsession.cache.log)["main_score"]
        cross[name] = mixed / own if own else float("nan")
    worst = corpus[measured.pop("worst_text_index")]
    values = {**measured, "cross_retrieval": cross, "cross_retrieval_min": min(cross.values()) if cross else None,
              "worst_text": f"{worst.id} ({worst.kind}, {worst.role})"}
    gate.result("release", key="index", values=values)
    limits = _limits(egsession, candidate)
    why = "re-embed the corpus before switching"
    for metric, key in (("cosine-mean", "index_cosine_mean_min"), ("cosine-p5", "index_cosine_p5_min"),
                        ("cosine-min", "index_cosine_min_min")):
        gate.measure(f"index {metric}", measured[metric], limits.get(key),
                     what=f"{why}: candidate vs production vectors of the same {measured['texts']} texts")
    for name, kept in cross.items():
        gate.measure(f"cross-retrieval {name}", kept, limits.get("cross_retrieval_min"),
                     what=f"{why}: candidate queries over production documents keep this share of production's score")
    gate.enforce()
