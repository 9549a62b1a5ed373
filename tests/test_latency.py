"""Latency gates with pytest-benchmark: per backend x length bucket x batch size, speedup over the baseline.

The baseline (torch-int8 by default, the report's) is timed in the same test, one baseline call before every
timed round (pytest-benchmark's pedantic `setup`, which it does not time), so rounds alternate and machine drift
hits both sides alike. Speedup = baseline median / backend median. Rounds are fitted to --latency-budget.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time

import pytest

from embedgate.latency import TEXT_VARIANTS, bucket_texts
from embedgate.plugin import load_or_skip

pytestmark = pytest.mark.latency

MIN_ROUNDS, MAX_ROUNDS = 3, 25


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def test_latency(backend, latency_case, egsession, thresholds, gate, benchmark, request):
    case = latency_case
    baseline_name = egsession.baseline
    baseline = None if backend.name == baseline_name else load_or_skip(request.config, baseline_name)
    texts, tokens = egsession.memoize(("bucket", case), lambda: bucket_texts(egsession.model, case, TEXT_VARIANTS * case.batch_size))
    batches = [texts[i * case.batch_size:(i + 1) * case.batch_size] for i in range(TEXT_VARIANTS)]

    def run(target, batch):
        return target.encode(batch, role=case.role, batch_size=case.batch_size)

    budget = egsession.options["latency_budget"]

    def too_slow(seconds: float, how: str) -> None:
        if seconds * MIN_ROUNDS > 4 * budget:
            pytest.skip(f"one round {how} {seconds:.1f}s (backend and baseline): {MIN_ROUNDS} rounds exceed 4x "
                        f"--latency-budget={budget:g}s; raise it to time {case.id}")

    # one text of the batch first: a 2,048-token batch of 32 on a 300M model takes minutes, so a case that cannot
    # fit the budget is skipped on an estimate instead of after paying for a whole round
    if case.batch_size > 1:
        one = [batches[0][0]]
        estimate = timed(lambda: run(backend, one)) + (timed(lambda: run(baseline, one)) if baseline else 0.0)
        too_slow(estimate * case.batch_size, "would take about")
    # one untimed call each: warms caches and tells how many rounds fit the budget
    first = timed(lambda: run(backend, batches[0])) + (timed(lambda: run(baseline, batches[0])) if baseline else 0.0)
    too_slow(first, "takes")
    rounds = max(MIN_ROUNDS, min(MAX_ROUNDS, int(budget / max(first, 1e-6))))

    baseline_times: list[float] = []
    state = {"round": 0}

    def setup():
        batch = batches[state["round"] % len(batches)]
        state["round"] += 1
        if baseline is not None:
            baseline_times.append(timed(lambda: run(baseline, batch)))
        return (batch,), {}

    benchmark.group = f"{case.bucket} (~{case.tokens} tokens) batch {case.batch_size}"
    benchmark.pedantic(lambda batch: run(backend, batch), setup=setup, rounds=rounds, warmup_rounds=1, iterations=1)
    if benchmark.disabled or benchmark.stats is None:
        pytest.skip("benchmarks are disabled (--benchmark-disable): nothing was timed")

    median = benchmark.stats.stats.median
    baseline_median = statistics.median(baseline_times[1:]) if baseline is not None else median  # [0] was warm-up
    speedup = baseline_median / median
    cell = {
        "bucket": case.bucket, "batch_size": case.batch_size, "tokens_per_text": round(tokens, 1),
        "median_s": median, "iqr_s": benchmark.stats.stats.iqr, "rounds": rounds,
        "per_text_ms": 1000 * median / case.batch_size, "texts_per_s": case.batch_size / median,
        "tokens_per_s": tokens * case.batch_size / median, "baseline": baseline_name,
        "baseline_median_s": baseline_median, "speedup": speedup, "threads": egsession.threads,
        "artifact_size_bytes": backend.metadata.size_bytes,
    }
    benchmark.extra_info.update(cell)
    egsession.result(backend.name, "latency")[case.id] = cell
    gate.detail(**{k: cell[k] for k in ("median_s", "baseline_median_s", "per_text_ms", "rounds", "tokens_per_text")})

    latency = thresholds["latency"]
    if backend.name == baseline_name:
        pytest.skip(f"{backend.name} is the baseline: speedup 1 by definition (median {1000 * median:.1f} ms)")
    gate.measure("speedup", speedup, latency.get("min_speedup"), unit="x",
                 what=f"vs {baseline_name}: {1000 * median / case.batch_size:.2f} ms vs {1000 * baseline_median / case.batch_size:.2f} ms per text")
    if latency.get("implausible_speedup") is not None and speedup > latency["implausible_speedup"]:
        gate.measure("plausible-speedup", speedup, latency["implausible_speedup"], op="<=", unit="x",
                     what="faster than a real computation could be: cached or skipped work?")
    gate.enforce()


def test_cold_start(backend, egsession, thresholds, gate):
    """Load time and peak RSS in a fresh process, from the artifact this run built or was given."""
    spec = egsession.registry[backend.name]
    if not isinstance(spec.factory, str):
        pytest.skip(f"{backend.name} is registered by a plugin; cold start is measured for built-in backends")
    command = [sys.executable, "-m", "embedgate.coldstart", "--model", str(egsession.model.path),
               "--backend", backend.name, "--cache", str(egsession.cache.root), "--threads", str(egsession.threads)]
    if backend.name in egsession.artifacts:
        command += ["--artifact", str(egsession.artifacts[backend.name])]
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=1800)
    assert done.returncode == 0, f"{backend.name}: cold-start process failed: {done.stderr.strip().splitlines()[-1:]}"
    measured = json.loads(done.stdout.strip().splitlines()[-1])
    assert not measured["built_now"], f"{backend.name}: the cold-start process rebuilt the artifact instead of loading it"
    egsession.result(backend.name, "coldstart").update(measured)
    gate.detail(**measured)
    limits = thresholds["coldstart"]
    gate.measure("load-seconds", measured["import_seconds"] + measured["load_seconds"], limits.get("max_load_seconds"),
                 op="<=", unit="s", what="import and load in a fresh process")
    gate.measure("peak-rss", measured["peak_rss_mb"], limits.get("max_peak_rss_mb"), op="<=", unit=" MB",
                 what="peak resident memory after one encode")
    gate.enforce()
