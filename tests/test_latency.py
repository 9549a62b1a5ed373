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
import time

import pytest

from embedgate.latency import MIN_CALLS, TEXT_VARIANTS, BlockPlan, BlockTimer, bucket_texts
from embedgate.roofline import Peak, Shapes, measure_peak, roofline_cell

pytestmark = pytest.mark.latency


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def timed_runner(target, batches: list[list[str]], case):
    """`run(i)` embeds batch i the way the latency gate times it: for embedgate's own backends the runtime's work
    alone (`embed_prompted`: prompts added and inputs checked before the clock starts, no normalisation), for a
    plugin's backend its `encode`."""
    embed = getattr(target, "embed_prompted", None)
    if embed is None:
        return lambda i: target.encode(batches[i], role=case.role, batch_size=case.batch_size)
    prompt = target.model.prompt_for(case.role)
    prompted = [[prompt + text for text in batch] for batch in batches]
    return lambda i: embed(prompted[i], case.batch_size)


def fit_plan(case, runs: list, one_text_runs: list, budget: float) -> BlockPlan:
    """One untimed call of each side (backend, then baseline) tells how many timed calls fit the budget; a case
    that cannot fit even MIN_CALLS is skipped, on an estimate from one text where a whole batch would take minutes
    (a 2,048-token batch of 32 on a 300M model)."""

    def too_slow(seconds: float, how: str) -> None:
        if seconds * MIN_CALLS > 4 * budget:
            pytest.skip(f"one round {how} {seconds:.1f}s (backend and baseline): {MIN_CALLS} rounds exceed 4x "
                        f"--latency-budget={budget:g}s; raise it to time {case.id}")

    if case.batch_size > 1:
        too_slow(case.batch_size * sum(timed(lambda run=run: run(0)) for run in one_text_runs), "would take about")
    each = [timed(lambda run=run: run(0)) for run in runs]
    too_slow(sum(each), "takes")
    return BlockPlan.fit(each[0], sum(each[1:]), budget)


def time_blocks(backend, baseline, case, batches: list[list[str]], budget: float, benchmark) -> tuple[BlockPlan, BlockTimer]:
    """Both sides in alternating blocks (BlockTimer), the backend's calls through pytest-benchmark; the baseline
    alone when it is the backend under test."""
    is_baseline = backend.name == baseline.name
    run_backend = timed_runner(backend, batches, case)
    run_baseline = None if is_baseline else timed_runner(baseline, batches, case)
    sides = [backend] if is_baseline else [backend, baseline]
    plan = fit_plan(case, [run for run in (run_backend, run_baseline) if run],
                    [timed_runner(side, [batches[0][:1]], case) for side in sides], budget)
    timer = BlockTimer(run_backend, run_baseline, TEXT_VARIANTS, plan)
    benchmark.group = f"{case.bucket} (~{case.tokens} tokens) batch {case.batch_size}"
    benchmark.pedantic(run_backend, setup=timer.setup, rounds=plan.timed_calls, warmup_rounds=0, iterations=1)
    if benchmark.disabled or benchmark.stats is None:
        pytest.skip("benchmarks are disabled (--benchmark-disable): nothing was timed")
    return plan, timer


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
    if not isinstance(spec.factory, str):
        pytest.skip(f"{backend.name} is registered by a plugin; cold start is measured for built-in backends")
    command = [sys.executable, "-m", "embedgate.coldstart", "--model", str(egsession.model.path),
               "--backend", backend.name, "--cache", str(egsession.cache.root), "--threads", str(egsession.threads)]
    if backend.name in egsession.artifacts:
        command += ["--artifact", str(egsession.artifacts[backend.name])]
    build = egsession.options.build  # model2vec-tuned's corpus decides its cached artifact
    for option, value in (("--distill-corpus", build.distill_corpus), ("--data-dir", build.data_dir)):
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
