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
import statistics
import subprocess
import sys

import pytest

from embedgate.latency import TEXT_VARIANTS, BlockPlan, bucket_texts, time_blocks
from embedgate.roofline import Peak, Shapes, measure_peak, roofline_cell

pytestmark = pytest.mark.latency


def roofline_of(egsession, backend, case, tokens: float, median: float) -> tuple[Peak, dict]:
    """The CPU's GEMM peak (measured once per run, between two latency cases: nothing else runs then) and the
    cell's share of it; no share when the backend's compute or the model's shapes are unknown."""
    peak = egsession.memoize("roofline_peak", lambda: measure_peak(egsession.threads))
    shapes = egsession.memoize("roofline_shapes", lambda: Shapes.of(egsession.model))  # None: shapes unknown
    compute = egsession.registry[backend.name].compute
    return peak, roofline_cell(shapes, peak, compute, tokens, case.batch_size, median) if compute and shapes else {}


def test_latency(backend, baseline, latency_case, egsession, thresholds, gate, benchmark):
    case = latency_case
    texts, tokens = egsession.memoize(("bucket", case),
                                      lambda: bucket_texts(egsession.model, case, TEXT_VARIANTS * case.batch_size))
    batches = [texts[i * case.batch_size:(i + 1) * case.batch_size] for i in range(TEXT_VARIANTS)]
    is_baseline = backend.name == baseline.name
    plan, timer = time_blocks(backend, baseline, case, batches, egsession.options.latency_budget, benchmark)

    median = benchmark.stats.stats.median
    baseline_median = median if is_baseline else statistics.median(timer.baseline_times)
    speedup = 1.0 if is_baseline else timer.speedup(list(benchmark.stats.stats.data))
    peak, roofline = roofline_of(egsession, backend, case, tokens, median)
    cell = gate.result("latency", key=case.id, values={
        "bucket": case.bucket, "batch_size": case.batch_size, "tokens_per_text": round(tokens, 1),
        "median_s": median, "iqr_s": benchmark.stats.stats.iqr, "rounds": plan.timed_calls,
        "per_text_ms": 1000 * median / case.batch_size, "texts_per_s": case.batch_size / median,
        "tokens_per_s": tokens * case.batch_size / median, "baseline": baseline.name,
        "baseline_median_s": baseline_median, "speedup": speedup, "threads": egsession.threads,
        "artifact_size_bytes": backend.metadata.size_bytes, **timer.details(),
        **roofline,
    })
    benchmark.extra_info.update(cell)  # pytest-benchmark's JSON: the latency store across runs, the record's numbers
    gate.detail(**{k: cell[k] for k in ("median_s", "baseline_median_s", "per_text_ms", "rounds", "tokens_per_text")},
                **timer.details(), roofline_peak=peak.as_dict())

    if is_baseline:
        pytest.skip(f"{backend.name} is the baseline: speedup 1 by definition (median {1000 * median:.1f} ms)")
    gate_speedup(gate, thresholds["latency"], cell, plan)
    gate.enforce()


def gate_speedup(gate, latency: dict, cell: dict, plan: BlockPlan) -> None:
    """The speedup against its floor, and against the ceiling above which no real computation could be."""
    speedup, per_text = cell["speedup"], 1000 / cell["batch_size"]
    gate.measure("speedup", speedup, latency.get("min_speedup"), unit="x",
                 what=f"vs {cell['baseline']}, median of {plan.blocks} block pairs: {per_text * cell['median_s']:.2f} "
                      f"ms vs {per_text * cell['baseline_median_s']:.2f} ms per text over the test")
    if latency.get("implausible_speedup") is not None and speedup > latency["implausible_speedup"]:
        gate.measure("plausible-speedup", speedup, latency["implausible_speedup"], op="<=", unit="x",
                     what="faster than a real computation could be: cached or skipped work?")


def test_cold_start(backend, egsession, thresholds, gate):
    """Load time and peak RSS in a fresh process, from the artifact this run built or was given."""
    spec = egsession.registry[backend.name]
    if not spec.builtin:
        pytest.skip(f"{backend.name} is registered by a plugin; cold start is measured for built-in backends")
    command = [sys.executable, "-m", "embedgate.coldstart", "--model", str(egsession.model.path),
               "--backend", backend.name, "--cache", str(egsession.cache.root), "--threads", str(egsession.threads)]
    if backend.name in egsession.artifacts:
        command += ["--artifact", str(egsession.artifacts[backend.name])]
    build = egsession.options.build  # the corpora decide model2vec-tuned's and the static builds' cached artifacts
    for option, value in (("--distill-corpus", build.distill_corpus), ("--calibration-corpus", build.calibration_corpus),
                          ("--data-dir", build.data_dir)):
        if value:
            command += [option, str(value)]
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=1800)
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
