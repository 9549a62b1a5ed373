"""The speedup gate: a backend 3x slower than the baseline fails, one as fast passes, a cached one is flagged.

Only ratios measured in the same run are asserted, never absolute times."""

from __future__ import annotations

LATENCY_RUN = ("-m", "latency", "-k", "test_latency", "--baseline=torch-fp32", "--latency-buckets=query,long",
               "--latency-batch-sizes=1", "--latency-budget=0.5", "--threshold=latency.min_speedup=0.6",
               "--threshold=latency.implausible_speedup=40")


def test_speedup_gates(suite, tiny_model):
    result = suite.run(f"--model={tiny_model}", "--backends=torch-fp32,plain,slow-3x,cached", *LATENCY_RUN)
    verdicts = suite.verdicts()
    assert result.ret == 1
    for bucket in ("query", "long"):
        gate = f"latency/b1-{bucket}"
        assert verdicts[("slow-3x", gate)] == "fail", f"3x slower must fail min_speedup 0.6 ({bucket})"
        assert verdicts[("plain", gate)] == "pass", f"as fast as the baseline must pass min_speedup 0.6 ({bucket})"
        assert verdicts[("cached", gate)] == "fail", f"a cached backend must be flagged ({bucket})"
        assert verdicts[("torch-fp32", gate)] == "skip", "the baseline is not compared with itself"
    tests = {(t["backend"], t["gate"]): t for t in suite.report()["tests"]}
    slow = tests[("slow-3x", "latency/b1-query")]["measurements"][0]
    assert 0.15 < slow["value"] < 0.6, f"3x the work should measure about 0.33x: {slow}"
    cached = tests[("cached", "latency/b1-query")]
    assert any(m["name"] == "plausible-speedup" and m["passed"] is False for m in cached["measurements"]), cached


def test_speedups_compare_each_runtime_in_its_steady_state(suite, tiny_model):
    """A backend identical to the baseline measures 1.0 +- 10%, and one that leaves a core burning after every
    call gains nothing from it (timing one baseline call right after each backend call would credit the burner
    with the baseline's slowdown). One thread: with two, the tiny model's calls on a 2-core machine switch between
    a fast and a slow regime, noise that is the machine's, not the method's (measured: docs/design/timing.md)."""
    suite.run_in_subprocess(f"--model={tiny_model}", "--backends=twin,spinner", *LATENCY_RUN, "--latency-buckets=query",
                            "--latency-budget=1", "--threads=1")  # one thread for the whole process: its own
    tests = {(t["backend"], t["gate"]): t for t in suite.report()["tests"]}
    gate = "latency/b1-query"
    twin = tests[("twin", gate)]
    speedup = twin["measurements"][0]["value"]
    assert 0.9 <= speedup <= 1.1, f"the baseline's own twin must measure 1.0 +- 10%: {speedup:.3f} ({twin['details']})"
    assert twin["details"]["timing"] == "blocks", twin["details"]
    assert twin["details"]["blocks"] >= 3, twin["details"]
    spinner = tests[("spinner", gate)]
    gained = spinner["measurements"][0]["value"]
    assert gained <= 1.1, f"CPU left burning after each call must not look faster than the baseline: {gained:.3f}"
    assert spinner["details"]["quiet_wait_s"] > 0.05, f"the harness waited out the burning core: {spinner['details']}"


def test_benchmark_json_keeps_extra_fields_and_machine_info(suite, tiny_model, tmp_path):
    saved = tmp_path / "bench.json"
    suite.run_in_subprocess(f"--model={tiny_model}", "--backends=plain", *LATENCY_RUN, f"--benchmark-json={saved}",
                            "--threads=1")
    import json

    data = json.loads(saved.read_text())
    assert data["machine_info"]["embedgate"]["threads"] == 1
    assert "onnxruntime" in data["machine_info"]["embedgate"]["libraries"]
    bench = data["benchmarks"][0]
    for key in ("speedup", "tokens_per_text", "texts_per_s", "tokens_per_s", "threads", "artifact_size_bytes", "baseline"):
        assert key in bench["extra_info"], f"extra_info lacks {key}: {bench['extra_info']}"
    assert bench["group"].startswith("query (~16 tokens) batch 1")


def test_benchmark_compare_across_runs(suite, tiny_model, tmp_path, monkeypatch):
    """pytest-benchmark's own storage and compare work on the suite: a run saved with --benchmark-autosave is
    compared by a later run, and --benchmark-compare-fail catches the same backend grown 4x slower."""
    storage = f"--benchmark-storage=file://{tmp_path / 'benchmarks'}"
    args = (f"--model={tiny_model}", "--backends=regresses", *LATENCY_RUN, "--latency-buckets=query", storage)
    monkeypatch.setenv("EMBEDGATE_SELFTEST_REPEAT", "1")
    first = suite.run(*args, "--benchmark-autosave")
    assert first.ret in (0, 1), first.stdout.str()[-2000:]
    saved = list((tmp_path / "benchmarks").rglob("0001_*.json"))
    assert len(saved) == 1, f"--benchmark-autosave wrote {saved}"

    same = suite.run(*args, "--benchmark-compare=0001", "--benchmark-compare-fail=median:300%")
    same.stderr.fnmatch_lines(["*Comparing against benchmarks from*0001_*"])
    assert "Performance has regressed" not in same.stdout.str() + same.stderr.str()

    monkeypatch.setenv("EMBEDGATE_SELFTEST_REPEAT", "4")
    slower = suite.run(*args, "--benchmark-compare=0001", "--benchmark-compare-fail=median:100%")
    assert "Performance has regressed" in slower.stdout.str() + slower.stderr.str(), slower.stdout.str()[-3000:]
    assert slower.ret != 0, "a regression beyond --benchmark-compare-fail must fail the run"


def test_cold_start_is_measured_in_a_fresh_process_and_gated_when_asked(suite, tiny_model):
    suite.run(f"--model={tiny_model}", "--backends=torch-fp32", "-k", "cold_start")
    measured = suite.report()["backends"]["torch-fp32"]["coldstart"]
    assert measured["built_now"] is False
    assert measured["load_seconds"] > 0
    assert measured["import_seconds"] > 0
    # the child's own peak: torch and a 2-layer model, not the pytest process that started it
    assert 100 < measured["peak_rss_mb"] < 1500, measured
    assert suite.verdicts()[("torch-fp32", "latency/cold_start")] == "skip", "measured, not gated by default"

    suite.run(f"--model={tiny_model}", "--backends=torch-fp32", "-k", "cold_start",
              "--threshold=coldstart.max_peak_rss_mb=50", "--threshold=coldstart.max_load_seconds=600")
    test = next(t for t in suite.report()["tests"] if t["gate"] == "latency/cold_start")
    assert test["verdict"] == "fail", test
    assert "peak-rss" in test["message"], test
    assert "> 50.0 MB" in test["message"], test
