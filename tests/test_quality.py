"""Task-quality gates through mteb's own evaluators, aggregated as MTEB aggregates them (embedgate/scoring.py).

- quality/task[T]: task T's main score and its retention against torch-fp32 measured in the same run; gated by
  the task's absolute floor and, where set, `quality.max_task_loss`.
- quality/task_type[K]: the mean retention of the run's tasks of type K; gated by `quality.max_type_loss`, so a
  type that collapses (retrieval, say) fails even where the overall mean would hide it.
- quality/overall: the mean over types, the user's rule "MTEB loss < 5%": `quality.max_loss`.

Only real tasks (--data-dir, --hub-tasks, --mteb-tasks) count in the aggregates when any ran; the fixture sets are
measured beside them, and are the aggregate's only evidence (said so in the report) when nothing else ran.

Under --truncate-dim=N each backend, the reference included, is scored on its vectors cut to N dims against the
full-size reference's score: the reference's own gates say what truncation costs.
"""

from __future__ import annotations

import pytest

from embedgate.registry import REFERENCE
from embedgate.scoring import aggregate, session_task_score
from embedgate.tasks import task_names
from embedgate.truncation import untruncated

pytestmark = pytest.mark.quality
task_score = session_task_score


def task_retention(egsession, backend, reference, task_name) -> dict:
    """One task scored for the backend and the full-size reference, with the retention between them."""
    full_reference = untruncated(reference)  # under --truncate-dim, the full-size reference run once per task
    result = task_score(egsession, backend, task_name)
    reference_score = task_score(egsession, full_reference, task_name)["main_score"]
    score = result["main_score"]
    return {
        "task_type": result["task_type"], "real": result["real"], "main_score_name": result["main_score_name"],
        "score": score, "reference_score": reference_score,
        "retention": score / reference_score if reference_score else float("nan"), "scores": result["scores"],
        "dimension": backend.dimension, "reference_dimension": full_reference.dimension, "seconds": result["seconds"],
    }


def _gated(backend, reference) -> bool:
    """The full-size reference's retention is 1 by definition: not a gate (its truncated self is one)."""
    return backend.name != REFERENCE or reference is not untruncated(reference)


def _suffix(backend, reference) -> tuple[str, str]:
    full = untruncated(reference)
    truncated = reference is not full
    return (f" at {backend.dimension} dims" if truncated else "",
            f" at full size ({full.dimension} dims)" if truncated else "")


def test_task(backend, reference, egsession, thresholds, gate, task_name):
    values = task_retention(egsession, backend, reference, task_name)
    gate.result("quality", key=task_name, values=values)
    gate.detail(main_score=values["main_score_name"], score=values["score"], reference_score=values["reference_score"],
                task_type=values["task_type"], dimension=backend.dimension,
                reference_dimension=values["reference_dimension"])
    at, of = _suffix(backend, reference)
    if _gated(backend, reference):
        max_loss = thresholds["quality"].get("max_task_loss")
        gate.measure("retention", values["retention"], None if max_loss is None else 1.0 - max_loss,
                     what=f"{values['main_score_name']} {values['score']:.4f}{at} vs torch-fp32{of} "
                          f"{values['reference_score']:.4f}")
    floor = thresholds["quality"]["floors"].get(task_name)
    gate.measure(values["main_score_name"], values["score"], floor, what=f"absolute floor for {task_name}")
    gate.enforce()


def _aggregate(egsession, backend, reference) -> dict:
    names = task_names(egsession)
    return aggregate({name: task_retention(egsession, backend, reference, name) for name in names})


def test_task_type(backend, reference, egsession, thresholds, gate, task_type_name):
    summary = _aggregate(egsession, backend, reference)
    value = summary["types"].get(task_type_name)
    members = [n for n in summary["tasks"] if _type_of(egsession, backend, reference, n) == task_type_name]
    gate.result("quality_types", key=task_type_name, values={"retention": value, "tasks": members})
    if not _gated(backend, reference):
        gate.measure("retention", value, None)
    else:
        max_loss = thresholds["quality"].get("max_type_loss")
        gate.measure("retention", value, None if max_loss is None else 1.0 - max_loss,
                     what=f"mean retention of {task_type_name} tasks ({', '.join(members)}) vs torch-fp32")
    gate.enforce()


def _type_of(egsession, backend, reference, name: str) -> str:
    return task_retention(egsession, backend, reference, name)["task_type"]


def test_overall(backend, reference, egsession, thresholds, gate):
    summary = _aggregate(egsession, backend, reference)
    gate.result("quality_types", key="overall", values={"retention": summary["overall"], "tasks": summary["tasks"],
                                                         "types": summary["types"], "evidence": summary["evidence"]})
    types = ", ".join(f"{kind} {100 * v:.1f}%" for kind, v in summary["types"].items())
    if not _gated(backend, reference):
        gate.measure("retention", summary["overall"], None)
    else:
        max_loss = thresholds["quality"].get("max_loss")
        full = untruncated(reference)
        against = (f"at {backend.dimension} dims vs the full-size torch-fp32 ({full.dimension} dims)"
                   if reference is not full else "vs torch-fp32")
        gate.measure("retention", summary["overall"], None if max_loss is None else 1.0 - max_loss,
                     what=f"mean over task types ({types}) {against}; {summary['evidence']}")
    gate.enforce()
