"""Reports: terminal summary now; JSON, Markdown and the Pareto plot follow."""

from __future__ import annotations

import json
from pathlib import Path


def terminal_lines(session) -> list[str]:
    by_backend: dict[str, dict[str, int]] = {}
    for record in session.records.values():
        counts = by_backend.setdefault(record.backend, {})
        counts[record.verdict] = counts.get(record.verdict, 0) + 1
    return [f"{name:<14} " + ", ".join(f"{v} {k}" for k, v in sorted(c.items())) for name, c in by_backend.items()]


def write_reports(session, config) -> Path | None:
    folder = Path(session.options["report_dir"])
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "report.json"
    path.write_text(json.dumps({"tests": [r.as_dict() for r in session.records.values()]}, indent=2))
    return folder
