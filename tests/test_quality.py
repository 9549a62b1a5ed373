"""Task-quality gates through mteb's own evaluators: main-score retention against torch-fp32 measured in the
same run (the report's rule: loss under 5%), plus absolute floors per task.

Under --truncate-dim=N each backend, the reference included, is scored on its vectors cut to N dims against the
full-size reference's score: the reference's own gate says what truncation costs.

Tasks: fixture-sts and fixture-retrieval (the project's own labelled data, always offline), stsb-test (the STS
Benchmark test split, with --data-dir), and any --mteb-tasks.
"""

from __future__ import annotations

import pytest

from backends import REFERENCE, untruncated
from embedgate.tasks import evaluate

pytestmark = pytest.mark.quality


def task_score(egsession, backend, task_name):
    return egsession.memoize(
        ("task", backend.name, backend.dimension, task_name),
        lambda: evaluate(backend, task_name, egsession.data_dir, egsession.model.content_hash))


def test_task_quality(backend, reference, egsession, thresholds, gate, task_name):
    full_reference = untruncated(reference)  # under --truncate-dim, the full-size reference run once per task
    result = task_score(egsession, backend, task_name)
    reference_result = task_score(egsession, full_reference, task_name)
    score, reference_score = result["main_score"], reference_result["main_score"]
    retention = score / reference_score if reference_score else float("nan")
    gate.result("quality", key=task_name, values={
        "main_score_name": result["main_score_name"], "score": score, "reference_score": reference_score,
        "retention": retention, "scores": result["scores"],
        "dimension": backend.dimension, "reference_dimension": full_reference.dimension,
    })
    gate.detail(main_score=result["main_score_name"], score=score, reference_score=reference_score,
                dimension=backend.dimension, reference_dimension=full_reference.dimension)
    truncated = reference is not full_reference
    if backend.name != REFERENCE or truncated:  # the full-size reference's retention is 1 by definition: not a gate
        max_loss = thresholds["quality"].get("max_loss")
        at = f" at {backend.dimension} dims" if truncated else ""
        of = f" at full size ({full_reference.dimension} dims)" if truncated else ""
        gate.measure("retention", retention, None if max_loss is None else 1.0 - max_loss,
                     what=f"{result['main_score_name']} {score:.4f}{at} vs torch-fp32{of} {reference_score:.4f}")
    floor = thresholds["quality"]["floors"].get(task_name)
    gate.measure(f"{result['main_score_name']}", score, floor, what=f"absolute floor for {task_name}")
    gate.enforce()
