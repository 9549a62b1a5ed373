"""A release run spread over runners: `--shard=K/N` runs a stable K-th of the backends (the reference and the
baseline in every shard, so every speedup is measured in its own test), and `merge` joins the shards' reports
into the one report a single run would have written (same verdicts, same recommendation; timings are each
runner's own).

    python -m embedgate.merge --out reports/ shard-1/ shard-2/ shard-3/
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from embedgate import UsageError
from embedgate.schema import check_schema


def shard_spec(value: str) -> tuple[int, int]:
    """--shard=K/N: shard K (1-based) of N."""
    k, sep, n = value.partition("/")
    if not sep or not k.strip().isdigit() or not n.strip().isdigit() or not 1 <= int(k) <= int(n):
        raise argparse.ArgumentTypeError(f"expected K/N with 1 <= K <= N, e.g. 2/3; got {value!r}")
    return int(k), int(n)


def shard_backends(selected: list[str], always: set[str], shard: tuple[int, int]) -> list[str]:
    """The backends of shard K of N: those in `always` (reference, baseline) and every N-th of the others, in
    the order of --backends, starting at the K-th: the same split on every runner."""
    k, n = shard
    others = [name for name in selected if name not in always]
    mine = set(others[k - 1::n])
    return [name for name in selected if name in always or name in mine]


def merge(reports: list[dict[str, Any]]) -> dict[str, Any]:
    """Shard reports joined: each backend from its own shard, the shared ones (reference, baseline) from the first
    that has them; the recommendation and release lines recomputed from the joined backends."""
    from embedgate.decision import recommend
    from embedgate.families import CORE_FAMILIES

    if not reports:
        raise UsageError("merge: give at least one shard's report")
    shards = sorted(str(r["run"].get("shard") or "1/1") for r in reports)
    total = {s.partition("/")[2] for s in shards}
    expected = sorted(f"{k}/{n}" for n in total for k in range(1, int(n) + 1)) if len(total) == 1 else None
    if expected != shards:
        raise UsageError(f"merge: the shards given are {', '.join(shards)}: every shard of one run, once each")
    first = reports[0]
    for report in reports[1:]:
        for what, a, b in (("model", first["model"]["sha256"], report["model"]["sha256"]),
                           ("baseline", first["run"]["baseline"], report["run"]["baseline"]),
                           ("schema", first["schema_version"], report["schema_version"])):
            if a != b:
                raise UsageError(f"merge: the shards differ in {what} ({a} vs {b}): not one run")
    order = first["run"].get("all_backends") or []
    backends: dict[str, Any] = {}
    tests: list[dict[str, Any]] = []
    for report in reports:
        fresh = [name for name in report["backends"] if name not in backends]
        for name in fresh:
            backends[name] = report["backends"][name]
        tests += [t for t in report["tests"] if t["backend"] in fresh]
    ordered = [n for n in order if n in backends] + [n for n in backends if n not in order]
    backends = {name: backends[name] for name in ordered}
    families = sorted({t["family"] for t in tests})
    run = dict(first["run"], backends=ordered, shard=None, families_run=families,
               families_not_run=[f for f in CORE_FAMILIES if f not in families],
               partial=any(f not in families for f in CORE_FAMILIES), merged_shards=len(reports))
    release: dict[str, Any] = {}
    for report in reports:
        release.update(report.get("release") or {})
    return dict(first, run=run, backends=backends, tests=tests, release=release,
                recommendation=recommend({name: b["summary"] for name, b in backends.items()}),
                roofline=next((r["roofline"] for r in reports if r.get("roofline")), None),
                cache_events=[e for r in reports for e in r.get("cache_events") or []])


def main(argv: list[str] | None = None) -> int:
    from embedgate.pareto import render_pareto
    from embedgate.report_markdown import render_markdown

    parser = argparse.ArgumentParser(prog="python -m embedgate.merge", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for the joined report.json, report.md, pareto.png")
    parser.add_argument("shards", type=Path, nargs="+", help="each shard's report folder (or its report.json)")
    args = parser.parse_args(argv)
    reports = []
    for shard in args.shards:
        path = shard / "report.json" if shard.is_dir() else shard
        try:
            reports.append(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError) as exc:
            print(f"embedgate merge: cannot read {path}: {exc}", file=sys.stderr)
            return 2
        try:
            check_schema(reports[-1], path)
        except ValueError as exc:
            print(f"embedgate merge: {exc}", file=sys.stderr)
            return 2
    try:
        report = merge(reports)
    except UsageError as exc:
        print(f"embedgate {exc}", file=sys.stderr)
        return 2
    except (KeyError, TypeError, AttributeError) as exc:  # a file that is JSON but no embedgate report
        print(f"embedgate merge: not an embedgate report ({type(exc).__name__}: {exc})", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "report.json").write_text(json.dumps(report, indent=2, default=str), encoding="utf-8")
    (args.out / "report.md").write_text(render_markdown(report), encoding="utf-8")
    render_pareto(report, args.out / "pareto.png")
    print(f"embedgate merge: {len(reports)} shards, {len(report['backends'])} backends -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
