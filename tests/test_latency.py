"""Latency gates with pytest-benchmark: per backend x length bucket x batch size, speedup over the baseline.

The baseline (torch-int8 by default, the report's) is timed in the same test, each runtime in its own steady
state as a server would run it: blocks of back-to-back calls of one side, then of the other, each block after a
quiet CPU and a warm-up (embedgate.latency.BlockTimer). Blocks alternate, so machine drift hits both sides
alike. Speedup = the median over block pairs of baseline / backend block medians (BlockTimer.speedup). Calls
are fitted to --latency-budget.
"""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from embedgate.coldstart import coldstart_command
from embedgate.latency import case_batches, gate_speedup, latency_cell, time_blocks

pytestmark = pytest.mark.latency


def test_latency(backend, baseline, latency_case, egsession, thresholds, gate, benchmark):
    case = latency_case
    batches, tokens = case_batches(egsession, case)
    plan, timer = time_blocks(backend, baseline, case, batches, egsession.options.latency_budget, benchmark)
    cell, peak = latency_cell(egsession, backend, baseline, case, tokens, plan, timer, benchmark.stats.stats)
    gate.result("latency", key=case.id, values=cell)
    benchmark.extra_info.update(cell)  # pytest-benchmark's JSON: the latency store across runs, the record's numbers
    gate.detail(**{k: cell[k] for k in ("median_s", "baseline_median_s", "per_text_ms", "rounds", "tokens_per_text")},
                **timer.details(), roofline_peak=peak.as_dict())

    if backend.name == baseline.name:
        pytest.skip(f"{backend.name} is the baseline: speedup 1 by definition (median {1000 * cell['median_s']:.1f} ms)")
    gate_speedup(gate, thresholds["latency"], cell, plan)
    gate.enforce()


def test_cold_start(backend, egsession, thresholds, gate):
    """Load time and peak RSS in a fresh process, from the artifact this run built or was given."""
    if not egsession.registry[backend.name].builtin:
        pytest.skip(f"{backend.name} is registered by a plugin; cold start is measured for built-in backends")
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    done = subprocess.run(coldstart_command(egsession, backend.name), capture_output=True, text=True, env=env,
                          timeout=1800)
    assert done.returncode == 0, f"{backend.name}: cold-start process failed: {done.stderr.strip().splitlines()[-1:]}"
    measured = json.loads(done.stdout.strip().splitlines()[-1])
    assert not measured["built_now"], f"{backend.name}: the cold-start process rebuilt the artifact instead of loading it"
    gate.result("coldstart", measured)
    gate.detail(**measured)
    limits = thresholds["coldstart"]
    gate.measure("load-seconds", measured["import_seconds"] + measured["load_seconds"], limits.get("max_load_seconds"),
                 op="<=", unit="s", what="import and load in a fresh process")
    gate.measure("peak-rss", measured["peak_rss_mb"], limits.get("max_peak_rss_mb"), op="<=", unit=" MB",
                 what="peak resident memory after one encode")
    gate.enforce()
