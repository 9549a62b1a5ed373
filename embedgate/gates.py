"""Gate measurements: a value, a threshold, a verdict and the reason, recorded for the report.

A gate test measures with `gate.measure(...)` (as many as it needs) and ends with `gate.enforce()`, which
fails the test with every failed measurement's reason. Every test outcome is recorded too, so that contract
tests (plain asserts) and errors appear in the report beside the measured gates.

The record is the test's only result: what it measured in full (a latency cell, a task's scores, the fidelity
metrics, the cold-start figures) goes in with `gate.result(section, values, key=...)`, and the report's per-backend
sections are assembled from the records alone (embedgate.report.sections).
"""

from __future__ import annotations

import math
import operator
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from embedgate.families import FAMILY_NAMES

OPS = {">=": operator.ge, "<=": operator.le}
# report.json's per-backend sections a gate's full measurement may go into (backends.<name>.<section>)
SECTIONS = ("latency", "fidelity", "quality", "quality_types", "coldstart", "release")
NEGATED = {">=": "<", "<=": ">"}


@dataclass
class Measurement:
    name: str
    value: float | None
    threshold: float | None
    op: str
    passed: bool | None  # None: measured, not gated (threshold "off")
    reason: str
    unit: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _fmt(value: float | None) -> str:
    if value is None:
        return "n/a"
    value = float(value)  # a threshold written 50 in TOML reads the same as 50.0
    if not math.isfinite(value):
        return str(value)  # nan, inf: int() of them raises
    if abs(value) >= 100 or value == int(value):
        return f"{value:.1f}"
    return f"{value:.4f}"


def judge(name: str, value: float | None, threshold: float | None, op: str = ">=", *,
             unit: str = "", what: str = "") -> Measurement:
    """Compare a value with its threshold; a None threshold means measured but not gated."""
    label = f"{name} {_fmt(value)}{unit}"
    if threshold is None:
        return Measurement(name, value, None, op, None, f"{label} (not gated)", unit)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        because = f" ({what})" if what else ""
        return Measurement(name, value, threshold, op, False, f"{label}: nothing to compare with {op} {threshold}{because}", unit)
    passed = OPS[op](value, threshold)
    shown = op if passed else NEGATED[op]
    reason = f"{label} {shown} {_fmt(threshold)}{unit}" + ("" if passed else f" required{f' ({what})' if what else ''}")
    return Measurement(name, float(value), float(threshold), op, passed, reason, unit)


class Verdict(StrEnum):
    """The one spelling of each verdict: a gate's (report.json's tests, the verdict tables), a backend's (its
    summary) and a release candidate's."""

    PASS = "pass"
    FAIL = "fail"
    ERROR = "error"  # the gate could not be judged: an exception, a setup or teardown failure
    SKIP = "skip"  # skipped: nothing gated (measured only), not applicable, a missing extra; a backend: every gate
    NOT_RUN = "not run"  # no gate ran: deselected, or a backend none of whose gates ran


BAD = (Verdict.FAIL, Verdict.ERROR)
_PYTEST_OUTCOMES = {"passed": Verdict.PASS, "failed": Verdict.FAIL, "skipped": Verdict.SKIP}


def verdict_of(report) -> Verdict:
    """A pytest TestReport's verdict: a failed setup or teardown is an error, the call's outcome is the gate's."""
    if report.when != "call" and report.failed:
        return Verdict.ERROR
    return _PYTEST_OUTCOMES[report.outcome]


@dataclass
class TestRecord:
    """One test's result as the report sees it."""

    nodeid: str
    backend: str | None
    family: str  # one of embedgate/families.py's; anything else would be a verdict the report cannot place
    gate: str
    verdict: Verdict = Verdict.NOT_RUN
    message: str = ""
    duration: float = 0.0
    measurements: list[Measurement] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    # the full measurement for the report: (section, key or None, values); key None merges into the section
    result: tuple[str, str | None, dict[str, Any]] | None = None

    def __post_init__(self) -> None:
        if self.family not in FAMILY_NAMES:
            raise ValueError(f"{self.nodeid}: gate family {self.family!r} is not one of {', '.join(FAMILY_NAMES)}")

    def as_dict(self) -> dict[str, Any]:
        return {
            "nodeid": self.nodeid, "backend": self.backend, "family": self.family, "gate": self.gate,
            "verdict": self.verdict, "message": self.message, "duration_s": round(self.duration, 3),
            "measurements": [m.as_dict() for m in self.measurements], "details": self.details,
        }


class GateRecorder:
    """The `gate` fixture: measurements of one test."""

    def __init__(self, record: TestRecord):
        self.record = record
        self._enforced = False

    def measure(self, name: str, value: float | None, threshold: float | None, op: str = ">=", *,
                unit: str = "", what: str = "") -> Measurement:
        measurement = judge(name, value, threshold, op, unit=unit, what=what)
        self.record.measurements.append(measurement)
        return measurement

    def detail(self, **values: Any) -> None:
        self.record.details.update(values)

    def result(self, section: str, values: dict[str, Any], *, key: str | None = None) -> dict[str, Any]:
        """The test's full measurement, as report.json shows it under backends.<name>.<section>[.<key>] (a key
        per latency case or task; none for fidelity and cold start, whose tests share one measurement). Returns
        `values`, e.g. for pytest-benchmark's extra_info, so every store gets the same numbers."""
        if section not in SECTIONS:
            raise ValueError(f"{self.record.nodeid}: result section {section!r} is not one of {', '.join(SECTIONS)}")
        self.record.result = (section, key, values)
        return values

    def enforce(self) -> None:
        """Fail the test with the reason of every failed measurement; skip if nothing was gated."""
        import pytest

        self._enforced = True
        failed = [m.reason for m in self.record.measurements if m.passed is False]
        if failed:
            pytest.fail(f"{self.record.backend}: " + "; ".join(failed), pytrace=False)
        if all(m.passed is None for m in self.record.measurements):
            pytest.skip("measured, not gated: " + "; ".join(m.reason for m in self.record.measurements))

    @property
    def enforced(self) -> bool:
        return self._enforced or not self.record.measurements
