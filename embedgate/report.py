"""The acceptance report: report.json (schema-versioned), report.md (for people) and pareto.png, plus the
terminal summary; all from what the run measured, with the report's decision rule for what to ship.

Decision rule (the user's report): ship the fastest backend that passes every gate; for every faster backend,
say which gate rejected it; if none passes, say so.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
from pathlib import Path
from typing import Any

from embedgate import __version__
from embedgate.families import CORE_FAMILIES, FAMILY_NAMES
from embedgate.gates import SECTIONS, TestRecord
from embedgate.release import ship_line
from embedgate.release import summary as release_summary
from embedgate.tasks import VECTOR_CACHE

SCHEMA_VERSION = 3  # 3: MTEB aggregation (run.tasks, quality_types, summary retention per type and overall)
SCHEMA_FILE = Path(__file__).resolve().parent / "report.schema.json"  # what report.json promises; the self-tests hold it to it
FAMILIES = FAMILY_NAMES  # embedgate/families.py
BAD = ("fail", "error")
VERDICT_ICONS = {"pass": "✅", "fail": "❌", "error": "💥"}


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
    if any(v == "error" for v in verdicts):
        verdict = "error"
    elif failures:
        verdict = "fail"
    elif "pass" in verdicts:
        verdict = "pass"
    elif verdicts:
        verdict = "skipped"  # every gate skipped: no evidence to ship on
    else:
        verdict = "not run"
    return {
        "verdict": verdict,
        "speedup_geomean": _geomean([cell["speedup"] for cell in latency.values()]),
        "speedup_b1": {cell["bucket"]: cell["speedup"] for cell in latency.values() if cell["batch_size"] == 1},
        "per_text_ms_b1": {cell["bucket"]: cell["per_text_ms"] for cell in latency.values() if cell["batch_size"] == 1},
        "quality_retention_min": min(retentions) if retentions else None,
        "quality_retention_overall": overall.get("retention"),
        "quality_retention_types": dict(overall.get("types") or {}),
        "quality_evidence": overall.get("evidence"),
        "task_scores": {task: q["score"] for task, q in quality.items()},
        "size_bytes": metadata.size_bytes if metadata else None,
        "load_seconds": (coldstart.get("import_seconds", 0) + coldstart.get("load_seconds", 0)) if coldstart else (
            metadata.load_seconds if metadata else None),
        "peak_rss_mb": coldstart.get("peak_rss_mb"),
        "gates": {"pass": verdicts.count("pass"), "fail": verdicts.count("fail"), "error": verdicts.count("error"),
                  "skip": verdicts.count("skip")},
        "first_failure": ({"gate": failures[0].gate, "reason": failures[0].message} if failures else None),
    }


def recommend(summaries: dict[str, dict[str, Any]]) -> dict[str, Any]:
    ran = {name: s for name, s in summaries.items() if s["verdict"] not in ("not run", "skipped")}
    ranked = sorted(ran, key=lambda n: -(ran[n]["speedup_geomean"] or 0.0))
    timed = any(s["speedup_geomean"] for s in ran.values())
    passing = [n for n in ranked if ran[n]["verdict"] == "pass"]
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


def build_report(session, config=None) -> dict[str, Any]:
    from embedgate.environment import environment_info

    records = [r for r in session.records.values() if r.verdict != "not run"]  # deselected tests were never gates
    ran_families = sorted({r.family for r in records})
    backends = {}
    for name in session.selected:
        mine = [r for r in records if r.backend == name]
        loaded = session.loaded.get(name)
        spec = session.registry[name]
        results = sections(mine)
        backends[name] = {
            "family": spec.family, "description": spec.description,
            "shares_reference_space": spec.shares_reference_space,
            "artifact": _metadata(loaded, session.model.content_hash),
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


def _metadata(loaded, model_sha256: str) -> dict[str, Any] | None:
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


# ---------------------------------------------------------------- text renderings

def _x(value: float | None, digits: int = 2, suffix: str = "") -> str:
    return "–" if value is None else f"{value:.{digits}f}{suffix}"


def _mb(value: float | None) -> str:
    return "–" if value is None else f"{value / 1e6:.1f}"


def terminal_lines(session) -> list[str]:
    # the report write_reports wrote (pytest's terminal summary comes after our sessionfinish), so the terminal
    # and the files say the same; built here only when no report was written
    report = session.report or build_report(session)
    lines = []
    if "quality" in report["run"]["families_run"] and not any(t["real"] for t in report["run"]["tasks"].values()):
        lines.append("no real task gated: quality is judged on the project's fixture sets alone (give --data-dir or --hub-tasks)")
    width = max([12, *map(len, report["backends"])])
    for name, backend in report["backends"].items():
        s = backend["summary"]
        retention = s["quality_retention_overall"]
        line = (f"{name:<{width}} {s['verdict'].upper():<7} speedup {_x(s['speedup_geomean'], 2, 'x'):>7}  "
                f"quality kept {_x(None if retention is None else 100 * retention, 1, '%'):>6}  size {_mb(s['size_bytes']):>6} MB  "
                f"rss {_x(s['peak_rss_mb'], 0, ' MB'):>7}  load {_x(s['load_seconds'], 2, 's'):>6}  "
                f"gates {s['gates']['pass']} pass / {s['gates']['fail']} fail / {s['gates']['error']} error")
        lines.append(line)
        if s["first_failure"]:
            lines.append(f"{'':<{width}} ↳ {s['first_failure']['gate']}: {s['first_failure']['reason'][:160]}")
    lines.append(_recommendation_line(report))
    lines += [ship_line(name, entry) for name, entry in report.get("release", {}).items()]
    if report["run"].get("truncate_dim"):
        lines.append(_truncation_sentence(report))
    if report["run"]["partial"]:
        lines.append(f"partial run: not measured: {', '.join(report['run']['families_not_run'])}")
    lines += [f"unsteady baseline: {line}" for line in unsteady_baselines(report)]
    if "quality" in report["run"]["families_run"]:
        lines += list(report["run"].get("tasks_not_run", {}).values())
    return lines


def _recommendation_line(report: dict[str, Any]) -> str:
    rec = report["recommendation"]
    if rec["ship"] is None:
        return f"ship: none — {rec['reason']}"
    return f"ship: {rec['ship']} — {rec['reason']}"


def _truncation_sentence(report: dict[str, Any]) -> str:
    dims, full = report["run"]["truncate_dim"], report["model"]["dimension"]
    return (f"Vectors truncated to {dims} of {full} dims (then renormalised) in every backend, torch-fp32 included: "
            f"fidelity compares each at {dims} dims with torch-fp32 at {dims}; task retention is against the "
            f"full-size torch-fp32 ({full} dims), so torch-fp32's own quality gate is what truncation costs.")


def render_markdown(report: dict[str, Any]) -> str:
    run, model, machine, rec = report["run"], report["model"], report["machine"], report["recommendation"]
    truncated = f", vectors truncated to {run['truncate_dim']} of {model['dimension']} dims" if run.get("truncate_dim") else ""
    no_real = "quality" in run["families_run"] and not any(t["real"] for t in run["tasks"].values())
    out = [
        "# embedgate acceptance report", "",
        *(["> **No real task gated**: quality is judged on the project's fixture sets alone (give --data-dir or "
           "--hub-tasks).", ""] if no_real else []),
        f"Model **{model['name']}** ({model['dimension']} dims{truncated}, max {model['max_tokens']} tokens, "
        f"sha256 `{model['sha256'][:12]}`) · "
        f"CPU {machine['cpu']['model']} ({', '.join(machine['cpu']['flags'])}) · {run['threads']} threads · "
        f"baseline **{run['baseline']}** · {report['generated_at']}", "",
        "## Recommendation", "",
        (f"**Ship `{rec['ship']}`**: {rec['reason']}." if rec["ship"] else f"**Ship nothing**: {rec['reason']}.")
        + (f" {_truncation_sentence(report)}" if run.get("truncate_dim") else ""),
    ]
    for rejected in rec["rejected"]:
        out.append(f"- `{rejected['backend']}` ({_x(rejected['speedup_geomean'], 2, 'x')}) rejected by "
                   f"`{rejected['gate']}`: {rejected['reason']}")
    if run["partial"]:
        out += ["", f"> Partial run: {', '.join(run['families_not_run'])} gates were not run; the recommendation covers only what ran."]
    if run.get("tasks_not_run") and "quality" in run["families_run"]:
        out += [""] + [f"> {reason}." for reason in run["tasks_not_run"].values()]
    out += ["", "## Backends", "",
            "| backend | verdict | speedup (geo-mean) | quality kept (MTEB mean over types) | size MB | peak RSS MB | load s | build s "
            "| gates pass/fail/error/skip | dims |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    for name, backend in report["backends"].items():
        s = backend["summary"]
        retention = s["quality_retention_overall"]
        build = (backend["artifact"] or {}).get("build_seconds") or None
        out.append(f"| `{name}` | {VERDICT_ICONS.get(s['verdict'], '–')} {s['verdict']} | {_x(s['speedup_geomean'], 2, 'x')} | "
                   f"{_x(None if retention is None else 100 * retention, 1, '%')} | {_mb(s['size_bytes'])} | "
                   f"{_x(s['peak_rss_mb'], 0)} | {_x(s['load_seconds'], 2)} | {_x(build, 1)} | "
                   f"{s['gates']['pass']}/{s['gates']['fail']}/{s['gates']['error']}/{s['gates']['skip']} | "
                   f"{_dims(backend)} |")
    failed = [(name, g) for name, b in report["backends"].items() for g in b["gates"] if g["verdict"] in BAD]
    if failed:
        out += ["", "## Failed gates", "", "| backend | gate | why |", "|---|---|---|"]
        out += [f"| `{name}` | `{g['gate']}` | {g['message'].replace('|', '/')} |" for name, g in failed]
    out += _release_section(report)
    out += _latency_section(report) + _quality_section(report) + _fidelity_section(report) + _cache_section(report)
    out += ["", f"_Thresholds: `{run['thresholds_file']}`{' profile ' + run['threshold_profile'] if run['threshold_profile'] else ''}. "
            f"Library versions and the full gate list are in report.json._", ""]
    return "\n".join(out)


def _release_section(report) -> list[str]:
    release = report.get("release") or {}
    if not release:
        return []
    out = ["", "## Release: candidate against production", ""]
    for name, entry in release.items():
        out.append(f"- **{ship_line(name, entry).removeprefix('release: ')}**")
        cells = report["backends"][name].get("release", {})
        quality = {k.split(":", 1)[1]: v for k, v in cells.items() if k.startswith("quality:")}
        if quality:
            out.append("  - task scores, candidate / production: " + ", ".join(
                f"{task} {v['candidate']:.4f} / {v['production']:.4f}" for task, v in quality.items()))
        latency = {k.split(":", 1)[1]: v for k, v in cells.items() if k.startswith("latency:")}
        if latency:
            out.append("  - latency, candidate / production (ms a text): " + ", ".join(
                f"{case} {v['per_text_ms']:.2f} / {v['production_per_text_ms']:.2f} ({v['speedup']:.2f}x)"
                for case, v in latency.items()))
        index = entry.get("index") or {}
        if index:
            cross = ", ".join(f"{t} {100 * v:.1f}%" for t, v in (index.get("cross_retrieval") or {}).items())
            out.append(f"  - index: cosine mean {index['cosine-mean']:.4f}, p5 {index['cosine-p5']:.4f}, min "
                       f"{index['cosine-min']:.4f} over {index['texts']} texts (worst: {index['worst_text']}); "
                       f"candidate queries over production documents keep {cross or '–'}")
    return out


def _dims(backend: dict[str, Any]) -> str:
    dims, runtime = backend.get("dimension"), backend.get("runtime_dimension")
    if dims is None:
        return "–"
    return f"{dims} of {runtime}" if runtime not in (None, dims) else str(dims)


# the baseline's median inside a backend's test against its median in its own test: beyond this factor either way,
# something took the cores during one side's blocks (EmbeddingGemma, 512 tokens: 1,078 ms inside onnx-int8's test,
# 466 ms in its own, 2.31x) and that cell's speedup is not the runtimes' own. Quiet runs stay within 1.51x (MiniLM,
# 676 gates: the worst, b32 query, 8.0 vs 5.3 ms; EmbeddingGemma: 364 vs 356 ms)
UNSTEADY_BASELINE = 1.75


def unsteady_baselines(report: dict[str, Any]) -> list[str]:
    """Latency cells whose baseline ran at another speed than in its own test: their speedup says more about the
    machine than the runtimes. One line each, for report.md and the terminal."""
    own = report["backends"].get(report["run"]["baseline"], {}).get("latency", {})
    lines = []
    for name, backend in report["backends"].items():
        if name == report["run"]["baseline"]:
            continue
        for case, cell in backend["latency"].items():
            steady = own.get(case, {}).get("median_s")
            inside = cell.get("baseline_median_s")
            if not steady or not inside:
                continue
            ratio = inside / steady
            if not 1 / UNSTEADY_BASELINE <= ratio <= UNSTEADY_BASELINE:
                lines.append(f"{name} {case}: the baseline took {1000 * inside / cell['batch_size']:.1f} ms a text inside "
                             f"this test, {1000 * steady / cell['batch_size']:.1f} ms in its own ({ratio:.2f}x): the "
                             f"speedup {cell['speedup']:.2f}x is unreliable (was the machine shared?); rerun on a quiet one")
    return lines


def _latency_section(report) -> list[str]:
    cells = sorted({(c["bucket"], c["batch_size"], c["tokens_per_text"]) for b in report["backends"].values()
                    for c in b["latency"].values()}, key=lambda c: (c[1], c[2]))
    if not cells:
        return []
    out = ["", "## Latency (ms per text, median; speedup vs the baseline in the same test)", "",
           "| backend | " + " | ".join(f"b{b} {bucket} (~{t:.0f} tok)" for bucket, b, t in cells) + " |",
           "|---|" + "---|" * len(cells)]
    for name, backend in report["backends"].items():
        row = []
        for bucket, size, _ in cells:
            cell = backend["latency"].get(f"b{size}-{bucket}")
            row.append("–" if cell is None else f"{cell['per_text_ms']:.2f} ({cell['speedup']:.2f}x)")
        out.append(f"| `{name}` | " + " | ".join(row) + " |")
    unsteady = unsteady_baselines(report)
    if unsteady:
        out += ["", f"**Unsteady baseline** (its median inside a test differs more than {UNSTEADY_BASELINE}x from its own "
                    "test's):", ""] + [f"- {line}" for line in unsteady]
    return out + _roofline_section(report, cells)


def _roofline_section(report, cells) -> list[str]:
    peak = report.get("roofline")
    if not peak:
        return []
    out = ["", f"Roofline: achieved GOP/s as a share of this CPU's GEMM peak measured in the run ({peak['gemm']}, "
               f"{peak['threads']} threads): int8 {peak['int8_gops']:.0f} GOP/s, fp32 {peak['fp32_gflops']:.0f} GFLOP/s; "
               "each backend against the peak of the arithmetic it runs.", "",
           "| backend | peak | " + " | ".join(f"b{b} {bucket}" for bucket, b, _ in cells) + " |",
           "|---|---|" + "---|" * len(cells)]
    for name, backend in report["backends"].items():
        shares = [backend["latency"].get(f"b{size}-{bucket}", {}).get("roofline_share") for bucket, size, _ in cells]
        if not any(share is not None for share in shares):
            continue
        compute = next(c.get("compute") for c in backend["latency"].values())
        out.append(f"| `{name}` | {compute} | " + " | ".join("–" if v is None else f"{100 * v:.0f}%" for v in shares) + " |")
    return out


def _quality_section(report) -> list[str]:
    info = report["run"].get("tasks", {})
    tasks = sorted({task for b in report["backends"].values() for task in b["quality"]},
                   key=lambda t: (not info.get(t, {}).get("real", True), info.get(t, {}).get("task_type", ""), t))
    if not tasks:
        return []
    truncate = report["run"].get("truncate_dim")
    against = (f"retention vs the full-size torch-fp32, {report['model']['dimension']} dims; scores at {truncate} dims"
               if truncate else "retention vs torch-fp32 in the same run")
    types = sorted({kind for b in report["backends"].values() for kind in b["summary"]["quality_retention_types"]})
    out = ["", f"## Task quality (mteb main score; {against})", "",
           f"Profile `{report['run'].get('quality_profile', 'default')}`. Retention is aggregated as MTEB aggregates: "
           "the mean per task type, then the mean over types (only real tasks count when any ran).", ""]
    if types:
        out += ["| backend | overall | " + " | ".join(types) + " |", "|---|---|" + "---|" * len(types)]
        for name, backend in report["backends"].items():
            s = backend["summary"]
            if s["quality_retention_overall"] is None:
                continue
            out.append(f"| `{name}` | **{100 * s['quality_retention_overall']:.1f}%** | " + " | ".join(
                _x(None if s["quality_retention_types"].get(k) is None else 100 * s["quality_retention_types"][k], 1, "%")
                for k in types) + " |")
        out.append("")
    heads = [f"{t} ({info[t]['task_type']}{'' if info[t]['real'] else ', fixture'})" if t in info else t for t in tasks]
    out += ["| backend | " + " | ".join(heads) + " |", "|---|" + "---|" * len(tasks)]
    if truncate:  # the scores every row is held to, which no row shows
        full = {task: q["reference_score"] for b in report["backends"].values() for task, q in b["quality"].items()}
        out.append(f"| torch-fp32 at {report['model']['dimension']} dims (the reference) | "
                   + " | ".join(f"{full[task]:.4f}" for task in tasks) + " |")
    for name, backend in report["backends"].items():
        row = []
        for task in tasks:
            q = backend["quality"].get(task)
            row.append("–" if q is None else f"{q['score']:.4f} ({100 * q['retention']:.1f}%)")
        out.append(f"| `{name}` | " + " | ".join(row) + " |")
    sources = [f"`{t}`: {i['source']}" + (f", {i['size']}" if i.get("size") else "") for t, i in info.items()]
    if sources:
        out += ["", "Tasks: " + "; ".join(sources) + "."]
    fitted = [(name, (b["artifact"] or {}).get("params", {}).get("corpus")) for name, b in report["backends"].items()]
    out += [f"`{name}` was fitted on: {corpus}." for name, corpus in fitted if corpus]
    return out


def _fidelity_section(report) -> list[str]:
    from embedgate.fidelity import METRICS

    rows = [(name, b["fidelity"]) for name, b in report["backends"].items() if b["fidelity"]]
    if not rows:
        return []
    out = ["", "## Fidelity to torch-fp32 (fixture corpus)", "", "| backend | " + " | ".join(METRICS) + " |",
           "|---|" + "---|" * len(METRICS)]
    out += [f"| `{name}` | " + " | ".join(f"{f[m]:.4f}" for m in METRICS) + " |" for name, f in rows]
    return out


def _cache_section(report) -> list[str]:
    events = report.get("cache_events") or []
    if not events:
        return []
    out = ["", "## Artifact cache", "", "| backend | event | seconds | detail |", "|---|---|---|---|"]
    vectors = [e for e in events if e["backend"] == VECTOR_CACHE]
    if vectors:  # one row: a run reads a dozen of them, each the reference's vectors of one task's texts in one role
        kinds = ", ".join(f"{sum(e['kind'] == k for e in vectors)} {k}" for k in dict.fromkeys(e["kind"] for e in vectors))
        out.append(f"| `{VECTOR_CACHE}` | {kinds} | {_x(sum(e['seconds'] or 0 for e in vectors), 1)} | torch-fp32's task "
                   f"vectors (per task, role and text set) under {Path(vectors[0]['path']).parent} |")
    for e in events:
        if e["backend"] == VECTOR_CACHE:
            continue
        detail = e["message"].removeprefix("embedgate: ").replace("|", "/")
        out.append(f"| `{e['backend']}` | {e['kind']} | {_x(e['seconds'], 1)} | {detail} |")
    return out


def _kept(summary: dict[str, Any]) -> float | None:
    """The quality a backend keeps as the pareto plot shows it: MTEB's overall retention (the worst task's where
    the overall gate did not run, e.g. under -k)."""
    overall = summary.get("quality_retention_overall")
    return overall if overall is not None else summary.get("quality_retention_min")


def render_pareto(report: dict[str, Any], path: Path) -> bool:
    """Speedup (log x) against worst-task quality retention, written to `path` (see `draw_pareto`)."""
    import matplotlib.pyplot as plt

    fig, _ = draw_pareto(report)
    fig.savefig(path)
    plt.close(fig)
    return True


# Label offsets tried in turn (points, from the marker): beside it, then stacked above and below it, then in
# columns further right and left.
_LABEL_OFFSETS = [(dx, dy) for dx in (6, 40, -36, 74, -70) for step in range(0, 9)
                  for dy in dict.fromkeys((12 * step + 4, -12 * step + 4))]


def draw_pareto(report: dict[str, Any]) -> tuple[Any, list[Any]]:
    """The Pareto figure and the window extents of its point labels. Points are numbered and keyed to a table beside
    the plot: on all-MiniLM-L6-v2 five backends sit within a pixel of 100% retention and their name labels overlapped
    into one illegible block. Points within 12 pixels of each other share one label ("3,5,7"); each label takes the
    first place whose box overlaps no earlier label (a self-test holds this), with a leader line when moved."""
    points = [(name, b["summary"]) for name, b in report["backends"].items()
              if b["summary"]["speedup_geomean"] and _kept(b["summary"]) is not None]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, key) = plt.subplots(1, 2, figsize=(11, 5.5), dpi=110, gridspec_kw={"width_ratios": [3, 2]})
    key.set_axis_off()
    fig.suptitle(f"embedgate: {report['model']['name']} — green passes every gate, red X fails one")
    placed: list[Any] = []  # labels; their text boxes are what must not overlap
    if not points:
        ax.text(0.5, 0.5, "no backend has both latency and quality measured in this run",
                ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        fig.tight_layout()
        return fig, placed
    for _, s in points:
        ok = s["verdict"] == "pass"
        ax.scatter(s["speedup_geomean"], 100 * (_kept(s) or 0.0), s=70, marker="o" if ok else "X",
                   color="#2a9d4b" if ok else "#d62828", zorder=3)
    ax.set_xscale("log")
    ax.axvline(1.0, color="grey", lw=0.8, ls=":")
    max_loss = report["backends"][points[0][0]]["thresholds"]["quality"].get("max_loss")
    if max_loss is not None:
        ax.axhline(100 * (1 - max_loss), color="#d62828", lw=0.8, ls="--",
                   label=f"retention gate ({100 * (1 - max_loss):.0f}%)")
        ax.legend(loc="lower left", fontsize=8)
    ax.set_xlabel(f"speedup vs {report['run']['baseline']} (geometric mean, log)")
    ax.set_ylabel("quality kept: MTEB retention vs torch-fp32, mean over task types (%)")
    ax.grid(True, which="both", alpha=0.3)
    rows = [f"{n:>2}  {name:<14} {s['speedup_geomean']:>6.2f}x {100 * (_kept(s) or 0.0):>6.1f}%  "
            + ("pass" if s["verdict"] == "pass" else (s["first_failure"] or {}).get("gate", s["verdict"])
               .replace("latency/latency", "latency")
               .replace("fidelity/fidelity", "fidelity"))
            for n, (name, s) in enumerate(points, start=1)]
    key.text(0, 1, "\n".join([" #  backend        speedup   kept  verdict", *rows]), family="monospace",
             fontsize=8, va="top", ha="left", transform=key.transAxes)
    fig.tight_layout()  # before the labels: it moves the axes, and labels are placed in pixels
    fig.canvas.draw()  # fixes the axes' limits, so data can be placed in pixels
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]  # the Agg canvas, chosen above
    for numbers, (x, y) in _label_groups(ax, points):
        text = ",".join(map(str, numbers))
        for offset in _LABEL_OFFSETS:
            moved = offset != _LABEL_OFFSETS[0]
            label = ax.annotate(text, (x, y), textcoords="offset points", xytext=offset, fontsize=9,
                                fontweight="bold", arrowprops={"arrowstyle": "-", "lw": 0.6, "color": "grey",
                                                               "shrinkA": 0, "shrinkB": 3} if moved else None)
            box = _text_box(label, renderer)
            if not any(box.overlaps(_text_box(other, renderer)) for other in placed):
                break
            label.remove()
        else:  # nowhere free: the numbers stay readable in the key table; this label overlaps
            label = ax.annotate(text, (x, y), textcoords="offset points", xytext=_LABEL_OFFSETS[0], fontsize=9,
                                fontweight="bold")
            box = _text_box(label, renderer)
        placed.append(label)
    fig.canvas.draw()
    return fig, [_text_box(label, renderer) for label in placed]


def _text_box(label: Any, renderer: Any) -> Any:
    """A label's text in pixels, without its leader line (Annotation.get_window_extent includes the arrow)."""
    from matplotlib.text import Text

    label.update_positions(renderer)
    return Text.get_window_extent(label, renderer)


def _label_groups(ax, points, pixels: float = 12.0) -> list[tuple[list[int], tuple[float, float]]]:
    """Numbers of the points within `pixels` of each other on screen, each group at its first point."""
    groups: list[tuple[list[int], tuple[float, float], Any]] = []
    for number, (_, s) in enumerate(points, start=1):
        xy = (s["speedup_geomean"], 100 * (_kept(s) or 0.0))
        screen = ax.transData.transform(xy)
        for numbers, _, anchor in groups:
            if ((screen - anchor) ** 2).sum() ** 0.5 <= pixels:
                numbers.append(number)
                break
        else:
            groups.append(([number], xy, screen))
    return [(numbers, xy) for numbers, xy, _ in groups]


def write_reports(session, config) -> Path | None:
    """Write report.json, report.md and pareto.png; a folder that cannot take them is one EmbedgateError line."""
    from embedgate import EmbedgateError

    folder = session.options.report_dir
    report = session.report = build_report(session, config)  # the terminal summary shows it either way
    try:
        folder.mkdir(parents=True, exist_ok=True)
        _atomic_write(folder / "report.json", json.dumps(report, indent=2, default=str))
        _atomic_write(folder / "report.md", render_markdown(report))
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        raise EmbedgateError(f"report NOT written to {folder}: {where}{exc.strerror or exc}") from exc
    tmp = folder / ".pareto.tmp.png"
    try:
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
