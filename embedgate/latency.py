"""Latency cases: length buckets by measured token count in the model's own tokenizer, times batch sizes.

Bucket texts are windows cut from the fixture paragraphs at token boundaries, so a "paragraph" is ~512 real
tokens of prose for this model's tokenizer, prompt included. Every round gets different texts, so a backend
that caches vectors gains nothing from it.
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass
from functools import lru_cache

from embedgate.roofline import Peak, Shapes, measure_peak, roofline_cell

BUCKET_TOKENS = {"query": 16, "sentence": 64, "paragraph": 512}
BUCKET_ROLES = {"query": "query", "sentence": "similarity", "paragraph": "document", "long": "document"}
TEXT_VARIANTS = 6  # distinct batches that rounds rotate through


@dataclass(frozen=True)
class LatencyCase:
    bucket: str
    tokens: int
    batch_size: int

    @property
    def id(self) -> str:
        return f"b{self.batch_size}-{self.bucket}"

    @property
    def role(self) -> str:
        return BUCKET_ROLES[self.bucket]


def latency_cases(session) -> list[LatencyCase]:
    max_tokens = session.model.max_seq_length
    targets: dict[str, int] = {}
    for bucket in session.options.latency_buckets:
        tokens = max_tokens if bucket == "long" else BUCKET_TOKENS[bucket]
        if bucket != "long" and tokens >= max_tokens:
            continue  # the model's max length is the "long" bucket already
        targets[bucket] = tokens
    return [LatencyCase(bucket, tokens, size) for bucket, tokens in targets.items()
            for size in session.options.latency_batch_sizes]


@lru_cache(maxsize=8)
def _tokenizer(model_path: str):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model_path, local_files_only=True, trust_remote_code=False)


def bucket_texts(model, case: LatencyCase, count: int) -> tuple[list[str], float]:
    """`count` distinct texts of ~case.tokens tokens (prompt and special tokens included) and their mean length."""
    from embedgate.data import long_paragraphs

    tokenizer = _tokenizer(str(model.path))
    prompt = model.prompt_for(case.role)
    stream = " ".join(p["text"] for p in long_paragraphs())
    encoded = tokenizer(stream, add_special_tokens=False, return_offsets_mapping=True)
    offsets = encoded["offset_mapping"]
    overhead = len(tokenizer(prompt)["input_ids"]) if prompt else len(tokenizer("")["input_ids"])
    want = max(1, case.tokens - overhead)
    step = max(1, (len(offsets) - want) // max(1, count))
    texts, lengths = [], []
    for i in range(count):
        start = (i * step) % max(1, len(offsets) - want)
        window = offsets[start : start + want]
        # cycle the stream if the model's max is longer than all paragraphs together
        text = stream[window[0][0] : window[-1][1]]
        while len(tokenizer(prompt + text, add_special_tokens=True)["input_ids"]) < case.tokens and len(text) < 40 * case.tokens:
            text = text + " " + stream[: window[-1][1] - window[0][0]]
        ids = tokenizer(prompt + text, add_special_tokens=True, truncation=True, max_length=case.tokens)["input_ids"]
        lengths.append(len(ids))
        texts.append(text)
    return texts, sum(lengths) / len(lengths)


# ---------------------------------------------------------------- timing each runtime in its own steady state

# A runtime's first call after another runtime ran is not its steady state: another runtime's intra-op threads
# may still spin (onnxruntime's), and a pool that slept wakes slowly (torch's OpenMP threads); a call timed right
# after the other side's pays for it (measured: docs/design/timing.md). So both sides are timed in blocks: wait
# until the CPU is quiet (no thread of the other runtime still burning it), warm up, then several timed calls back
# to back.
QUIET_BUSY_FRACTION = 0.2  # process CPU time per wall second under which the other runtime is taken as gone
QUIET_PROBE_SECONDS = 0.01
QUIET_MAX_SECONDS = 2.0
MIN_CALLS, MAX_CALLS = 3, 100  # timed calls per side
MIN_BLOCKS, MAX_BLOCKS = 3, 20


def wait_for_quiet_cpu(max_seconds: float = QUIET_MAX_SECONDS) -> tuple[float, bool]:
    """Sleep in short probes until this process burns (almost) no CPU: threads a runtime left spinning, or work
    it left running, would otherwise slow the other side's timed calls. Returns (seconds waited, quiet)."""
    import time

    start = time.perf_counter()
    while True:
        cpu, wall = time.process_time(), time.perf_counter()
        time.sleep(QUIET_PROBE_SECONDS)
        busy = (time.process_time() - cpu) / max(time.perf_counter() - wall, 1e-9)
        waited = time.perf_counter() - start
        if busy < QUIET_BUSY_FRACTION:
            return waited, True
        if waited >= max_seconds:
            return waited, False


WARMUP_SECONDS = 0.02  # of untimed calls before each block of a side whose calls are short


def warmup_calls(call_seconds: float) -> int:
    """Untimed calls that bring a runtime back to its steady state after the quiet wait: short calls until ~20 ms
    of work (at least two), one call up to a second, none beyond (a call that long amortises a slow wake-up by
    itself). A runtime needs a few calls, not time, to be back at its back-to-back speed (measured per runtime:
    docs/design/timing.md)."""
    if call_seconds > 1.0:
        return 0
    if call_seconds > WARMUP_SECONDS:
        return 1
    return max(2, min(20, math.ceil(WARMUP_SECONDS / max(call_seconds, 1e-6))))


@dataclass(frozen=True)
class BlockPlan:
    """How one latency case is timed: `blocks` blocks per side, `calls` timed calls per block, each block after a
    quiet CPU and `warmup` (backend) or `baseline_warmup` untimed calls of the same side."""

    blocks: int
    calls: int
    warmup: int
    baseline_warmup: int = 0

    @property
    def timed_calls(self) -> int:
        return self.blocks * self.calls

    @classmethod
    def fit(cls, backend_seconds: float, baseline_seconds: float, budget: float) -> BlockPlan:
        """Fit timed calls into `budget` from one call of each side (baseline_seconds 0 when there is none)."""
        pair_seconds = backend_seconds + baseline_seconds
        calls = max(MIN_CALLS, min(MAX_CALLS, int(budget / max(pair_seconds, 1e-6))))
        # many short blocks rather than a few long ones: the machine drifts between blocks (see speedup()), and
        # more block pairs keep a twin of the baseline nearer 1.0x (measured: docs/design/timing.md)
        blocks = max(min(calls, MIN_BLOCKS), min(MAX_BLOCKS, calls // 5))
        return cls(blocks, calls // blocks, warmup_calls(backend_seconds),
                   warmup_calls(baseline_seconds) if baseline_seconds else 0)


class BlockTimer:
    """Drives pytest-benchmark's pedantic mode so that it times the backend in blocks, and times the baseline's
    blocks in between (in pedantic `setup`, which pytest-benchmark does not time).

    `run_backend(i)` and `run_baseline(i)` embed batch i of `variants` distinct batches. Round r of the benchmark
    is call r % plan.calls of backend block r // plan.calls. Before each backend block: a quiet CPU, the baseline's
    warm-up and its timed block, a quiet CPU again, the backend's warm-up. Consecutive calls of either side get
    different batches, so caching vectors gains nothing."""

    def __init__(self, run_backend, run_baseline, variants: int, plan: BlockPlan):
        self.run_backend = run_backend
        self.run_baseline = run_baseline
        self.variants = variants
        self.plan = plan
        self.baseline_times: list[float] = []
        self.quiet_waits: list[float] = []
        self.not_quiet = 0
        self._round = 0
        self._next = 0

    def _batch(self) -> int:
        index = self._next % self.variants
        self._next += 1
        return index

    def _settle(self) -> None:
        waited, quiet = wait_for_quiet_cpu()
        self.quiet_waits.append(waited)
        self.not_quiet += not quiet

    def _block_of(self, run, timed: list[float] | None, warmup: int) -> None:
        import time

        for _ in range(warmup):
            run(self._batch())
        if timed is None:
            return
        for _ in range(self.plan.calls):
            batch = self._batch()
            start = time.perf_counter()
            run(batch)
            timed.append(time.perf_counter() - start)

    def setup(self):
        """pedantic's setup: at the start of a backend block, the baseline's block and the backend's warm-up."""
        if self._round % self.plan.calls == 0:
            if self.run_baseline is not None:
                self._settle()
                self._block_of(self.run_baseline, self.baseline_times, self.plan.baseline_warmup)
            self._settle()
            self._block_of(self.run_backend, None, self.plan.warmup)
        self._round += 1
        return (self._batch(),), {}

    def speedup(self, backend_times: list[float]) -> float:
        """The median, over block pairs, of baseline block median / backend block median. Each pair ran within a
        fraction of a second, so the machine's slow drifts (per-call times that switch between a fast and a slow
        regime every few seconds) cancel within it; a ratio of whole-run medians would depend on which side had
        more calls in the slow regime (measured: docs/design/timing.md)."""
        import statistics

        calls = self.plan.calls
        ratios = [statistics.median(self.baseline_times[i:i + calls]) / statistics.median(backend_times[i:i + calls])
                  for i in range(0, min(len(backend_times), len(self.baseline_times)), calls)]
        return statistics.median(ratios)

    def details(self) -> dict:
        return {
            "timing": "blocks", "blocks": self.plan.blocks, "calls_per_block": self.plan.calls,
            "warmup_calls": self.plan.warmup, "baseline_warmup_calls": self.plan.baseline_warmup,
            "quiet_wait_s": round(sum(self.quiet_waits), 3),
            "not_quiet_blocks": self.not_quiet,
        }


# ---------------------------------------------------------------- the harness's own cost

MAX_HARNESS_OVERHEAD = 0.03  # of the runtime's own call: what a latency gate may add, so it times the runtime


def harness_overhead(backend, texts: list[str], rounds: int = 200) -> dict[str, float]:
    """How much longer what the latency gates time (`embed_prompted`) takes than the runtime's own call
    (`runtime_call`) for the same texts. The two are timed alternately, in alternating order, and compared as the
    median of the paired differences, so drift and the order of the pair cancel out."""
    import statistics
    import time

    prompted = [backend.model.prompt_for("query") + text for text in texts]
    size = len(prompted)
    for _ in range(5):  # warm both paths
        backend.runtime_call(prompted)
        backend.embed_prompted(prompted, size)
    calls = {"runtime": lambda: backend.runtime_call(prompted), "timed": lambda: backend.embed_prompted(prompted, size)}
    natives, differences = [], []
    for index in range(rounds):
        took = {}
        for name in (("runtime", "timed") if index % 2 else ("timed", "runtime")):
            start = time.perf_counter()
            calls[name]()
            took[name] = time.perf_counter() - start
        natives.append(took["runtime"])
        differences.append(took["timed"] - took["runtime"])
    native = statistics.median(natives)
    return {"runtime_s": native, "overhead_s": statistics.median(differences),
            "overhead": statistics.median(differences) / native}


# ---------------------------------------------------------------- one latency case, timed against another backend

def _skip(reason: str):
    import pytest

    pytest.skip(reason)


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def timed_runner(target, batches: list[list[str]], case):
    """`run(i)` embeds batch i the way the latency gate times it: for embedgate's own backends the runtime's work
    alone (`embed_prompted`: prompts added and inputs checked before the clock starts, no normalisation), for a
    plugin's backend its `encode`."""
    from embedgate.protocol import TimedCall

    if not isinstance(target, TimedCall):
        return lambda i: target.encode(batches[i], role=case.role, batch_size=case.batch_size)
    embed = target.embed_prompted
    prompt = target.model.prompt_for(case.role)
    prompted = [[prompt + text for text in batch] for batch in batches]
    return lambda i: embed(prompted[i], case.batch_size)


def fit_plan(case, runs: list, one_text_runs: list, budget: float) -> BlockPlan:
    """One untimed call of each side (backend, then baseline) tells how many timed calls fit the budget; a case
    that cannot fit even MIN_CALLS is skipped, on an estimate from one text where a whole batch would take minutes
    (a 2,048-token batch of 32 on a 300M model)."""

    def too_slow(seconds: float, how: str) -> None:
        if seconds * MIN_CALLS > 4 * budget:
            _skip(f"one round {how} {seconds:.1f}s (backend and baseline): {MIN_CALLS} rounds exceed 4x "
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
        _skip("benchmarks are disabled (--benchmark-disable): nothing was timed")
    return plan, timer


# ---------------------------------------------------------------- a latency gate's cell: what it measured, for the report

def case_batches(egsession, case: LatencyCase) -> tuple[list[list[str]], float]:
    """TEXT_VARIANTS distinct batches of the case's texts (cut once per run; the latency and release gates share
    them) and their mean length in tokens."""
    texts, tokens = egsession.memoize(("bucket", case),
                                      lambda: bucket_texts(egsession.model, case, TEXT_VARIANTS * case.batch_size))
    return [texts[i * case.batch_size:(i + 1) * case.batch_size] for i in range(TEXT_VARIANTS)], tokens


def roofline_of(egsession, backend, case: LatencyCase, tokens: float, median: float) -> tuple[Peak, dict]:
    """The CPU's GEMM peak (measured once per run, between two latency cases: nothing else runs then) and the
    cell's share of it; no share when the backend's compute or the model's shapes are unknown."""
    peak = egsession.memoize("roofline_peak", lambda: measure_peak(egsession.threads))
    shapes = egsession.memoize("roofline_shapes", lambda: Shapes.of(egsession.model))  # None: shapes unknown
    compute = egsession.registry[backend.name].compute
    return peak, roofline_cell(shapes, peak, compute, tokens, case.batch_size, median) if compute and shapes else {}


def latency_cell(egsession, backend, baseline, case: LatencyCase, tokens: float, plan: BlockPlan, timer: BlockTimer,
                 stats) -> tuple[dict, Peak]:
    """The case's cell as report.json and pytest-benchmark's extra_info show it, from the backend's timed calls
    (`stats`: pytest-benchmark's) and the baseline's blocks; and the run's GEMM peak. The baseline against itself
    is 1 by definition."""
    is_baseline = backend.name == baseline.name
    median = stats.median
    baseline_median = median if is_baseline else statistics.median(timer.baseline_times)
    speedup = 1.0 if is_baseline else timer.speedup(list(stats.data))
    peak, roofline = roofline_of(egsession, backend, case, tokens, median)
    return {
        "bucket": case.bucket, "batch_size": case.batch_size, "tokens_per_text": round(tokens, 1),
        "median_s": median, "iqr_s": stats.iqr, "rounds": plan.timed_calls,
        "per_text_ms": 1000 * median / case.batch_size, "texts_per_s": case.batch_size / median,
        "tokens_per_s": tokens * case.batch_size / median, "baseline": baseline.name,
        "baseline_median_s": baseline_median, "speedup": speedup, "threads": egsession.threads,
        "artifact_size_bytes": backend.metadata.size_bytes, **timer.details(),
        **roofline,
    }, peak


def gate_speedup(gate, latency: dict, cell: dict, plan: BlockPlan) -> None:
    """The speedup against its floor, and against the ceiling above which no real computation could be."""
    speedup, per_text = cell["speedup"], 1000 / cell["batch_size"]
    gate.measure("speedup", speedup, latency.get("min_speedup"), unit="x",
                 what=f"vs {cell['baseline']}, median of {plan.blocks} block pairs: {per_text * cell['median_s']:.2f} "
                      f"ms vs {per_text * cell['baseline_median_s']:.2f} ms per text over the test")
    if latency.get("implausible_speedup") is not None and speedup > latency["implausible_speedup"]:
        gate.measure("plausible-speedup", speedup, latency["implausible_speedup"], op="<=", unit="x",
                     what="faster than a real computation could be: cached or skipped work?")
