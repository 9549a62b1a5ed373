"""report.json's schema version: written by every run, checked by every tool that reads a report (embedgate
verdicts, embedgate merge), so that a report of another version is one line, not a wrong comparison."""

from __future__ import annotations

from pathlib import Path
from typing import Any

# 4: gate ids without their family twice (fidelity/M, latency/CASE), backends.NAME.runtime (was .family), the
#    verdict "skip" for a backend or release whose every gate skipped (was "skipped")
# 3: MTEB aggregation (run.tasks, quality_types, summary retention per type and overall)
SCHEMA_VERSION = 4
SCHEMA_FILE = Path(__file__).resolve().parent / "report.schema.json"  # what report.json promises; the self-tests hold it to it
CHANGED = ("gate ids fidelity/fidelity[M] and latency/latency[CASE] are fidelity/M and latency/CASE, backends' 'family' "
           "is 'runtime', a verdict 'skipped' is 'skip'")


def check_schema(report: Any, source: object) -> None:
    """A ValueError with one line unless `report` is a report.json of this schema version."""
    version = report.get("schema_version") if isinstance(report, dict) else None
    if version == SCHEMA_VERSION:
        return
    if not isinstance(version, int):
        raise ValueError(f"{source} is not an embedgate report.json (no schema_version)")
    raise ValueError(f"{source} is report.json schema {version}; this embedgate reads schema {SCHEMA_VERSION} "
                     f"({CHANGED}): re-run the acceptance run with this embedgate")
