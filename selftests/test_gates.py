"""Gate measurements: the verdict and the one-line reason a failing gate shows."""

from __future__ import annotations

import pytest

from embedgate.gates import judge

pytestmark = pytest.mark.fast


@pytest.mark.parametrize(("args", "passed", "reason"), [
    (("retention", 0.9013, 0.95), False, "retention 0.9013 < 0.9500 required"),
    (("retention", 0.97, 0.95), True, "retention 0.9700 >= 0.9500"),
    (("peak-rss", 535.5, 50, "<="), False, "peak-rss 535.5 > 50.0 required"),
    (("speedup", 2.5, None), None, "speedup 2.5000 (not gated)"),
    (("retention", float("nan"), 0.95), False, "retention nan: nothing to compare with >= 0.95"),
    (("cosine-mean", None, 0.99), False, "cosine-mean n/a: nothing to compare with >= 0.99"),
], ids=["fails", "passes", "int-threshold", "off", "nan", "missing"])
def test_evaluate(args, passed, reason):
    measurement = judge(*args)
    assert measurement.passed is passed, measurement
    assert measurement.reason == reason, measurement.reason
