"""Compare a run's verdicts with an expected-verdict table (what CI enforces on the default model).

Gate verdicts are the product's output: a failing gate is not a broken build. A build is broken when a gate
errors, when a verdict differs from the table, or when the table and the run disagree on which gates exist.
Quality verdicts are deterministic and must match exactly. Latency verdicts are measured on a noisy machine:
a mismatch is tolerated when the measured value lies within --latency-margin of its threshold.

    python -m embedgate.verdicts reports/report.json fixtures/expected_verdicts/all-MiniLM-L6-v2.toml

Table format (TOML): one table per backend, gate = "pass" | "fail" | "skip" | "any", where gate is a gate's own
name (brackets literal) or a glob; the longest matching entry wins. "any" is for gates that are too close to call
on this machine (say why in a comment). `--suggest` prints a table written from a run, for review.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import re
import sys
import tomllib
from pathlib import Path

from embedgate.families import FAMILY_NAMES
from embedgate.gates import Verdict
from embedgate.schema import check_schema

ANY = "any"  # a table's entry for a gate too close to call on this machine: either verdict matches
VERDICTS = (Verdict.PASS, Verdict.FAIL, Verdict.SKIP, ANY)  # what a table entry may say


def is_latency(test: dict) -> bool:
    """A timed gate: the latency family's, and the release family's candidate-vs-production timing. Only these are
    noisy (the margin) and left out by --ignore-family=latency; the release family's quality, fidelity and index
    gates are measured values like any other."""
    return test.get("family") == "latency" or str(test.get("gate", "")).startswith("release/latency")


# a gate id of an older embedgate, FAMILY/FAMILY[PARAMS]: now FAMILY/PARAMS (embedgate.hooks.gate_id)
OLD_GATE_ID = re.compile(r"^(?P<family>[a-z_]+)/(?P=family)\[(?P<params>.*)\]$")


def load_table(path: Path) -> dict[str, dict[str, str]]:
    """The verdict table; ValueError with one line when it cannot be read, an entry is not a verdict, or a gate
    is named by an older id (the line says the new one)."""
    try:
        table = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"cannot read {path}: {exc}") from None
    for backend, gates in table.items():
        if not isinstance(gates, dict):
            raise ValueError(f"{path}: [{backend}] must be a table of gate = verdict")
        for gate, verdict in gates.items():
            old = OLD_GATE_ID.match(gate)
            if old:
                raise ValueError(f"{path}: [{backend}] {gate}: gate ids changed, {gate} is now "
                                 f"{old['family']}/{old['params']} (FAMILY/FAMILY[X] is FAMILY/X)")
            if verdict not in VERDICTS:
                raise ValueError(f"{path}: [{backend}] {gate} = {verdict!r}: expected one of {', '.join(VERDICTS)}")
    return table


def matching_entries(table: dict[str, dict[str, str]], backend: str, gate: str) -> list[tuple[str, str]]:
    """(entry, verdict) pairs of the backend's table that match the gate, the longest (the one that counts) first.
    A gate's own name matches itself, brackets literal; any other entry is a glob."""
    matches = [(pattern, verdict) for pattern, verdict in table.get(backend, {}).items()
               if pattern == gate or fnmatch.fnmatchcase(gate, pattern)]
    return sorted(matches, key=lambda match: -len(match[0]))


def expected_for(table: dict[str, dict[str, str]], backend: str, gate: str) -> tuple[str | None, str | None]:
    matches = matching_entries(table, backend, gate)
    return (matches[0][1], matches[0][0]) if matches else (None, None)


def within_margin(test: dict, margin: float) -> bool:
    """True when every gated measurement of a noisy gate lies within `margin` (relative) of its threshold."""
    gated = [m for m in test.get("measurements", []) if m.get("threshold") and m.get("value") is not None]
    return bool(gated) and all(abs(m["value"] / m["threshold"] - 1.0) <= margin for m in gated)


def compare(report: dict, table: dict[str, dict[str, str]], margin: float,
            optional: tuple[str, ...] = (), ignore_families: tuple[str, ...] = (),
            skippable: tuple[str, ...] = (), not_in_profile: tuple[str, ...] = ()) -> tuple[list[str], list[str]]:
    problems, notes = [], []
    used_patterns: set[tuple[str, str]] = set()
    if ignore_families:
        optional = (*optional, *(f"{family}/*" for family in ignore_families),
                    *(("release/latency*",) if "latency" in ignore_families else ()))
        notes.append(f"not compared: {', '.join(ignore_families)} verdicts (--ignore-family); errors still count")
    for test in report["tests"]:
        ignored = test.get("family") in ignore_families or ("latency" in ignore_families and is_latency(test))
        if ignored and test["verdict"] != Verdict.ERROR:
            continue
        backend, gate, verdict = test["backend"], test["gate"], test["verdict"]
        expected, _ = expected_for(table, backend, gate)
        used_patterns.update((backend, pattern) for pattern, _ in matching_entries(table, backend, gate))
        where = f"{backend} {gate}"
        if verdict == Verdict.ERROR:
            problems.append(f"{where}: error: {test.get('message', '')}")
        elif expected is None:
            problems.append(f"{where}: {verdict}, but the table has no entry for it")
        elif expected == ANY or verdict == expected:
            continue
        elif verdict == Verdict.SKIP and backend in skippable:
            notes.append(f"{where}: skip (table: {expected}); {backend} may skip here (its input was not given)")
        elif is_latency(test) and within_margin(test, margin):
            notes.append(f"{where}: {verdict} (table: {expected}), within the {margin:.0%} latency margin: {test.get('message', '')}")
        else:
            problems.append(f"{where}: {verdict}, expected {expected}: {test.get('message', '') or 'passed'}")
    ran_backends = {test["backend"] for test in report["tests"]}
    for backend, gates in table.items():
        if backend in not_in_profile:
            if backend in ran_backends:
                problems.append(f"{backend}: ran, but --not-in-profile says this profile leaves it out")
            else:
                notes.append(f"{backend}: in the table, not in this profile (--not-in-profile): not compared")
            continue
        if backend not in ran_backends:
            problems.append(f"{backend}: in the table but not in the run")
            continue
        for pattern in gates:
            if (backend, pattern) in used_patterns:
                continue
            if any(pattern == glob or fnmatch.fnmatchcase(pattern, glob) for glob in optional):
                notes.append(f"{backend} {pattern}: not in this run (optional: its data was not given)")
            else:
                problems.append(f"{backend} {pattern}: in the table but no gate of the run matches it")
    return problems, notes


def suggest(report: dict, margin: float) -> str:
    """A table written from a run: one entry per gate, its measured values as a comment. A latency gate whose value
    lies within `margin` of its threshold is written "any": this machine cannot call it either way."""
    lines = [f"# Written by `python -m embedgate.verdicts --suggest` from a run of {report['model']['name']} "
             f"({report['generated_at']}); review every entry before committing it."]
    for backend in report["backends"]:
        lines += ["", f"[{backend}]"]
        mine = [t for t in report["tests"] if t["backend"] == backend]
        for family in dict.fromkeys(t["family"] for t in mine):
            entries = []
            for test in (t for t in mine if t["family"] == family):
                verdict = test["verdict"]
                gated = [m for m in test.get("measurements", []) if m.get("threshold") is not None]
                if is_latency(test) and within_margin(test, margin):
                    verdict = ANY
                note = "; ".join(m["reason"] for m in gated) or test.get("message", "")
                entries.append((test["gate"], verdict, note))
            if len({verdict for _, verdict, _ in entries}) == 1 and entries[0][1] != ANY:
                lines.append(f'"{family}/*" = "{entries[0][1]}"  # {len(entries)} gates')
                continue
            lines += [f'"{gate}" = "{verdict}"' + (f"  # {note[:150]}" if note else "") for gate, verdict, note in entries]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("report", type=Path)
    parser.add_argument("table", type=Path)
    parser.add_argument("--latency-margin", type=float, default=0.25,
                        help="relative distance from the threshold within which a latency verdict may flip (default 0.25)")
    parser.add_argument("--pytest-exit-code", type=int, default=None,
                        help="the acceptance run's exit code: 0 or 1 (gates failed) are fine, anything else is an error")
    parser.add_argument("--optional", action="append", default=[], metavar="GATE",
                        help="a table entry (name or glob) that may be absent from the run, e.g. "
                             "'quality/task[[]stsb]' when no --data-dir was given (repeatable)")
    parser.add_argument("--ignore-family", action="append", default=[], choices=FAMILY_NAMES,
                        help="do not compare this family's verdicts, e.g. latency on hardware the table was not "
                             "measured on (repeatable; errors still count)")
    parser.add_argument("--skippable", action="append", default=[], metavar="BACKEND",
                        help="a backend whose gates may skip in this run, e.g. model2vec-tuned without a corpus "
                             "(no --data-dir, no --distill-corpus) (repeatable; comma-separated lists too)")
    parser.add_argument("--not-in-profile", action="append", default=[], metavar="BACKEND",
                        help="a table backend this profile deliberately does not run, e.g. the 4-bit builds in CI's "
                             "EmbeddingGemma profile (repeatable; comma-separated lists too); one that ran anyway is a "
                             "mismatch")
    parser.add_argument("--suggest", action="store_true",
                        help="print a table written from the report's verdicts (for review) instead of comparing")
    args = parser.parse_args(argv)
    if args.pytest_exit_code not in (None, 0, 1):
        print(f"embedgate verdicts: the acceptance run itself failed (pytest exit code {args.pytest_exit_code})")
        return 2
    try:
        report = json.loads(args.report.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        print(f"embedgate verdicts: cannot read {args.report}: {exc}")
        return 2
    try:
        check_schema(report, args.report)
    except ValueError as exc:
        print(f"embedgate verdicts: {exc}")
        return 2
    if args.suggest:
        print(suggest(report, args.latency_margin), end="")
        return 0
    try:
        table = load_table(args.table)
    except ValueError as exc:  # a table that cannot be judged by: input the check cannot read, as a bad report
        print(f"embedgate verdicts: {exc}")
        return 2
    problems, notes = compare(report, table, args.latency_margin, tuple(args.optional),
                              tuple(args.ignore_family),
                              tuple(name for given in args.skippable for name in given.split(",") if name),
                              tuple(name for given in args.not_in_profile for name in given.split(",") if name))
    for note in notes:
        print(f"note       {note}")
    for problem in problems:
        print(f"MISMATCH   {problem}")
    counts: dict[str, int] = {}
    for test in report["tests"]:
        counts[test["verdict"]] = counts.get(test["verdict"], 0) + 1
    summary = ", ".join(f"{n} {v}" for v, n in sorted(counts.items()))
    print(f"embedgate verdicts: {len(report['tests'])} gates ({summary}); {len(problems)} mismatches with {args.table}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
