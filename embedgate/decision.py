"""The decision rule: a backend's verdict from its gates, and what to ship.

Ship the fastest backend that passes every gate; for every faster backend, say which gate rejected it; if none
passes, say so. A backend's summary (its verdict, speedups, retention, size) is assembled from its gate records
alone, the run's only result; merging shards recomputes the recommendation from the joined summaries.
"""

from __future__ import annotations

import math
from typing import Any

from embedgate.gates import BAD, SECTIONS, TestRecord, Verdict


def _geomean(values: list[float]) -> float | None:
    values = [v for v in values if v and v > 0 and math.isfinite(v)]
    return math.exp(sum(math.log(v) for v in values) / len(values)) if values else None


def sections(records: list[TestRecord]) -> dict[str, dict[str, Any]]:
    """A backend's report sections (latency cells by case, quality by task, fidelity, cold start), assembled from
    its gate records' results: the records are the run's only result."""
    out: dict[str, dict[str, Any]] = {section: {} for section in SECTIONS}
    for record in records:
        if record.result is None:
            continue
        section, key, values = record.result
        if key is None:
            out[section].update(values)
        else:
            out[section][key] = values
    return out


def backend_summary(session, name: str, records: list[TestRecord]) -> dict[str, Any]:
    results = sections(records)
    latency, quality, coldstart = results["latency"], results["quality"], results["coldstart"]
    overall = results["quality_types"].get("overall", {})
    loaded = session.loaded.get(name)
    metadata = getattr(loaded, "metadata", None)
    verdicts = [r.verdict for r in records]  # build_report passes only the tests that ran
    retentions = [q["retention"] for q in quality.values() if q.get("retention") is not None and math.isfinite(q["retention"])]
    failures = [r for r in records if r.verdict in BAD]
    if Verdict.ERROR in verdicts:
        verdict = Verdict.ERROR
    elif failures:
        verdict = Verdict.FAIL
    elif Verdict.PASS in verdicts:
        verdict = Verdict.PASS
    elif verdicts:
        verdict = Verdict.SKIP  # every gate skipped: no evidence to ship on
    else:
        verdict = Verdict.NOT_RUN
    return {
        "verdict": verdict,
        "speedup_geomean": _geomean([cell["speedup"] for cell in latency.values()]),
        "speedup_b1": {cell["bucket"]: cell["speedup"] for cell in latency.values() if cell["batch_size"] == 1},
        "per_text_ms_b1": {cell["bucket"]: cell["per_text_ms"] for cell in latency.values() if cell["batch_size"] == 1},
        # throughput where batching pays: a backend that batches for real against one that runs a text per call
        "texts_per_s_b32": {cell["bucket"]: 1000.0 / cell["per_text_ms"] for cell in latency.values()
                            if cell["batch_size"] == 32 and cell["per_text_ms"] > 0},
        "quality_retention_min": min(retentions) if retentions else None,
        "quality_retention_overall": overall.get("retention"),
        "quality_retention_types": dict(overall.get("types") or {}),
        "quality_evidence": overall.get("evidence"),
        "task_scores": {task: q["score"] for task, q in quality.items()},
        "size_bytes": metadata.size_bytes if metadata else None,
        "load_seconds": (coldstart.get("import_seconds", 0) + coldstart.get("load_seconds", 0)) if coldstart else (
            metadata.load_seconds if metadata else None),
        "peak_rss_mb": coldstart.get("peak_rss_mb"),
        "gates": {v.value: verdicts.count(v) for v in (Verdict.PASS, Verdict.FAIL, Verdict.ERROR, Verdict.SKIP)},
        "first_failure": ({"gate": failures[0].gate, "reason": failures[0].message} if failures else None),
    }


def recommend(summaries: dict[str, dict[str, Any]]) -> dict[str, Any]:
    ran = {name: s for name, s in summaries.items() if s["verdict"] not in (Verdict.NOT_RUN, Verdict.SKIP)}
    ranked = sorted(ran, key=lambda n: -(ran[n]["speedup_geomean"] or 0.0))
    timed = any(s["speedup_geomean"] for s in ran.values())
    passing = [n for n in ranked if ran[n]["verdict"] == Verdict.PASS]
    if not passing:
        return {"ship": None, "reason": "no backend passed every gate", "rejected": _rejected(ranked, ran), "timed": timed}
    ship = passing[0]
    faster = ranked[: ranked.index(ship)]
    how = (f"fastest backend that passes every gate ({ran[ship]['speedup_geomean']:.2f}x the baseline, geometric mean)"
           if timed and ran[ship]["speedup_geomean"] else "passes every gate that ran (no latency measured, so not ranked by speed)")
    return {"ship": ship, "reason": how, "rejected": _rejected(faster, ran), "timed": timed}


def _rejected(names: list[str], summaries: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for name in names:
        failure = summaries[name]["first_failure"] or {"gate": "?", "reason": summaries[name]["verdict"]}
        out.append({"backend": name, "speedup_geomean": summaries[name]["speedup_geomean"], **failure})
    return out
