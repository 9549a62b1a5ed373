"""report.md and the terminal summary: the report (report.json's dict) rendered for people."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from embedgate.gates import BAD, Verdict
from embedgate.release import ship_line
from embedgate.scoring import VECTOR_CACHE

VERDICT_ICONS = {Verdict.PASS: "✅", Verdict.FAIL: "❌", Verdict.ERROR: "💥"}


def _x(value: float | None, digits: int = 2, suffix: str = "") -> str:
    return "–" if value is None else f"{value:.{digits}f}{suffix}"


def _mb(value: float | None) -> str:
    return "–" if value is None else f"{value / 1e6:.1f}"


def terminal_lines(report: dict[str, Any]) -> list[str]:
    """The terminal summary's lines: one per backend, the recommendation, and what the run left out."""
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
# something took the cores during one side's blocks and that cell's speedup is not the runtimes' own; quiet runs
# stay well inside it (measured: docs/design/timing.md)
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
    out += _throughput_table(report, [bucket for bucket, size, _ in cells if size == 32])
    unsteady = unsteady_baselines(report)
    if unsteady:
        out += ["", f"**Unsteady baseline** (its median inside a test differs more than {UNSTEADY_BASELINE}x from its own "
                    "test's):", ""] + [f"- {line}" for line in unsteady]
    return out + _roofline_section(report, cells)


def _throughput_table(report, buckets: list[str]) -> list[str]:
    """Texts per second in calls of 32 beside b1's ms a text: what batching for real buys (a backend that must run
    one text per call gains nothing from the batch)."""
    if not buckets:
        return []
    out = ["", "Throughput in calls of 32 (texts/s; x the baseline in the same test), beside b1 ms a text:", "",
           "| backend | batching | " + " | ".join(f"b32 {b} texts/s | b1 {b} ms" for b in buckets) + " |",
           "|---|---|" + "---|---|" * len(buckets)]
    for name, backend in report["backends"].items():
        latency = backend["latency"]
        if not any(f"b32-{b}" in latency for b in buckets):
            continue
        row = []
        for bucket in buckets:
            cell, single = latency.get(f"b32-{bucket}"), latency.get(f"b1-{bucket}")
            row.append("–" if cell is None else f"{1000 / cell['per_text_ms']:.0f} ({cell['speedup']:.2f}x)")
            row.append("–" if single is None else f"{single['per_text_ms']:.2f}")
        batching = ((backend.get("artifact") or {}).get("params") or {}).get("batching", "")
        out.append(f"| `{name}` | {batching.split(' (')[0] or '–'} | " + " | ".join(row) + " |")
    return out


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
    names = list(METRICS)
    out = ["", "## Fidelity to torch-fp32 (fixture corpus)", "", "| backend | " + " | ".join(names) + " |",
           "|---|" + "---|" * len(names)]
    out += [f"| `{name}` | " + " | ".join(f"{f[m]:.4f}" for m in names) + " |" for name, f in rows]
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
