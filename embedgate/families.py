"""The gate families: the one list of them, in report order, with the help text of their pytest markers.

A gate test carries exactly one family marker (`@pytest.mark.latency`, or `pytestmark` in its module); the
family is the first part of its gate id ("latency/cold_start"). Everything else derives from this list: the
markers the plugin registers (embedgate/plugin.py), the report's families run and not run (embedgate/report.py),
`--ignore-family`'s choices (embedgate/verdicts.py); embedgate/report.schema.json spells it out once
(`$defs/gate_family`) and a self-test holds it to this list. A test that takes the `backend` fixture without a
family marker, or with two, is a usage error before any test runs: its verdict would be missing from the report.

Adding a family: its entry here, its test module (tests/test_<family>.py, marked), its thresholds section
(fixtures/thresholds.toml), and the schema's `$defs/gate_family` enum.
"""

from __future__ import annotations

GATE_FAMILIES: dict[str, str] = {
    "contract": "behaviour every backend must have (shape, norm, determinism, batching, odd input)",
    "fidelity": "vectors compared with the fp32 reference's (cosine, neighbours, similarity structure)",
    "quality": "task metrics through mteb's evaluators, retention against the reference and floors",
    "latency": "pytest-benchmark timings, in-run speedup against the baseline, cold start",
    "release": "a candidate against the production artifact (--production): quality, fidelity, latency, index",
}
FAMILY_NAMES: tuple[str, ...] = tuple(GATE_FAMILIES)
# the families every acceptance run has; release gates run only when --production names an artifact, so a run
# without them is not partial
CORE_FAMILIES: tuple[str, ...] = ("contract", "fidelity", "quality", "latency")
