"""report.json: the run as data (schema-versioned, embedgate/report.schema.json), and the writing of the run's
report files (report.json, report.md from embedgate/report_markdown.py, pareto.png from embedgate/pareto.py).

Everything in it comes from what the run measured (the gate records); the verdicts and the recommendation follow
the decision rule of embedgate/decision.py.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path
from typing import Any

from embedgate import __version__
from embedgate.decision import backend_summary, recommend, sections
from embedgate.families import CORE_FAMILIES
from embedgate.gates import TestRecord, Verdict
from embedgate.release import summary as release_summary
from embedgate.schema import SCHEMA_VERSION


def build_report(session, config=None) -> dict[str, Any]:
    from embedgate.environment import environment_info

    records = [r for r in session.records.values() if r.verdict != Verdict.NOT_RUN]  # deselected: never gates
    ran_families = sorted({r.family for r in records})
    backends = {}
    for name in session.selected:
        mine = [r for r in records if r.backend == name]
        loaded = session.loaded.get(name)
        spec = session.registry[name]
        results = sections(mine)
        backends[name] = {
            "runtime": spec.runtime, "description": spec.description,
            "shares_reference_space": spec.shares_reference_space,
            "artifact": _artifact_entry(loaded, session.model.content_hash),
            "dimension": getattr(loaded, "dimension", None),  # what the gates saw: N under --truncate-dim=N
            "runtime_dimension": getattr(loaded, "runtime_dimension", getattr(loaded, "dimension", None)),
            "load_error": str(getattr(loaded, "error", "")) or None,
            "summary": backend_summary(session, name, mine),
            **results,  # latency, fidelity, quality, coldstart
            "thresholds": session.thresholds_for(name),
            "gates": [r.as_dict() for r in mine],
        }
    summaries = {name: b["summary"] for name, b in backends.items()}
    return {
        "schema_version": SCHEMA_VERSION,
        "embedgate_version": __version__,
        "generated_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "run": {
            "command": list(config.invocation_params.args) if config is not None else [],
            "backends": list(session.selected), "baseline": session.baseline, "threads": session.threads,
            "families_run": ran_families, "families_not_run": [f for f in CORE_FAMILIES if f not in ran_families],
            "partial": any(f not in ran_families for f in CORE_FAMILIES),
            "thresholds_file": session.thresholds.source, "threshold_profile": session.thresholds.profile,
            "data_dir": str(session.data_dir) if session.data_dir else None,
            "tasks_not_run": tasks_not_run(session),
            "quality_profile": session.options.quality_profile,
            "shard": "{}/{}".format(*session.options.shard) if session.options.shard else None,
            "all_backends": list(session.options.all_backends or session.selected),
            "tasks": tasks_run(session),
            "truncate_dim": session.truncate_dim,
        },
        "model": session.model.describe(),
        "machine": environment_info(session.threads),
        "backends": backends,
        "roofline": _roofline(records),
        "recommendation": recommend(summaries),
        "release": {candidate: dict(entry, production_sha256=artifact_sha256(entry["production_path"]))
                    for candidate, entry in release_summary(records, session.options.production,
                                                            session.artifacts).items()},
        "tests": [r.as_dict() for r in records],
        "cache_events": [event.as_dict() for event in session.cache.events],
    }


def _roofline(records: list[TestRecord]) -> dict[str, Any] | None:
    """The GEMM peak the latency gates measured their roofline shares against (one per run, in each record)."""
    return next((r.details["roofline_peak"] for r in records if "roofline_peak" in r.details), None)


def tasks_run(session) -> dict[str, dict[str, Any]]:
    """What each task of the run is: its type, whether it is real evidence, where its data came from, its cut."""
    from embedgate.taskdata import TASKS
    from embedgate.tasks import is_real, task_names, task_type

    out = {}
    for name in task_names(session):
        spec = TASKS.get(name)
        hub = session.options.hub_tasks.get(name)
        source = ("the hub: mteb " + hub if hub else "--data-dir" if spec and spec.real else
                  "fixtures/" if spec else "mteb (--mteb-tasks)")
        size = spec.size(session.options.quality_profile) if spec and spec.real else None
        out[name] = {"task_type": task_type(name), "real": is_real(name), "source": source, "size": size,
                     "mteb_name": spec.mteb_name if spec else name}
    return out


def tasks_not_run(session) -> dict[str, str]:
    """Built-in real tasks this run could not gate, and why: a gate that drops out (and its floor with it) must be
    said, not left to be noticed missing."""
    from embedgate.taskdata import TASKS
    from embedgate.tasks import task_names

    ran = set(task_names(session))
    out = {}
    for name, spec in TASKS.items():
        if not spec.real or name in ran:
            continue
        floors = sorted({session.thresholds_for(b)["quality"]["floors"].get(name) for b in session.selected} - {None})
        floor = f" (its floor {', '.join(f'{f:g}' for f in floors)} not gated)" if floors else ""
        where = (f"no {spec.folder}/ in --data-dir {session.data_dir}" if session.data_dir is not None
                 else "no --data-dir (nor --hub-tasks)")
        out[name] = f"{name} ({spec.task_type}) not run: {where}{floor}"
    return out


def _artifact_entry(loaded, model_sha256: str) -> dict[str, Any] | None:
    metadata = getattr(loaded, "metadata", None)
    if metadata is None:
        return None
    return {"path": metadata.artifact_path, "size_bytes": metadata.size_bytes, "load_seconds": round(metadata.load_seconds, 3),
            "build_seconds": round(metadata.build_seconds, 2), "built_now": metadata.built_now, "source": metadata.source,
            "params": metadata.params,
            # what exactly was gated: the model's own hash for what runs from its folder (the reference, in-memory
            # quantization), else the artifact's (a built one's manifest, a user's file or folder)
            "sha256": model_sha256 if metadata.source in ("reference", "in memory") else artifact_sha256(
                metadata.artifact_path, trust_manifest=metadata.source in ("built", "cached"))}


def artifact_sha256(path: str, *, trust_manifest: bool = False) -> str | None:
    """sha256 of an artifact file; of a folder, over its files' names and sha256 (read from the manifest only for
    a build of this cache, which verified them; a user's folder may hold a copied manifest its files no longer
    match). None where there is nothing to read."""
    import hashlib

    from embedgate.cache import MANIFEST, sha256_file

    target = Path(path)
    try:
        if target.is_file():
            return sha256_file(target)
        if not target.is_dir():
            return None
        manifest = target / MANIFEST
        if trust_manifest and manifest.is_file():
            files = {name: entry["sha256"] for name, entry in json.loads(manifest.read_text())["files"].items()}
        else:
            files = {p.relative_to(target).as_posix(): sha256_file(p) for p in sorted(target.rglob("*"))
                     if p.is_file() and p.name != MANIFEST}
        return hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()
    except (OSError, ValueError, KeyError):
        return None


# ---------------------------------------------------------------- the report files

def write_reports(session, config) -> Path | None:
    """Write report.json, report.md and pareto.png; a folder that cannot take them is one EmbedgateError line."""
    from embedgate import EmbedgateError

    folder = session.options.report_dir
    report = session.report = build_report(session, config)  # the terminal summary shows it either way
    try:
        folder.mkdir(parents=True, exist_ok=True)
        _atomic_write(folder / "report.json", json.dumps(report, indent=2, default=str))
        from embedgate.report_markdown import render_markdown

        _atomic_write(folder / "report.md", render_markdown(report))
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        raise EmbedgateError(f"report NOT written to {folder}: {where}{exc.strerror or exc}") from exc
    tmp = folder / ".pareto.tmp.png"
    try:
        from embedgate.pareto import render_pareto

        render_pareto(report, tmp)
        os.replace(tmp, folder / "pareto.png")
    except Exception as exc:  # the plot must never cost the JSON and Markdown reports
        from embedgate.session import stderr_log

        stderr_log(f"embedgate: pareto.png not written: {exc}")
    return folder


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


if __name__ == "__main__":  # `python -m embedgate.report merge --out DIR SHARD...`, as `embedgate merge`
    import sys

    from embedgate.__main__ import main

    sys.exit(main())
