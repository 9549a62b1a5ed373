"""Saved benchmark runs are filed per CPU model and thread count, and --benchmark-compare without a saved run for
this machine is a one-line usage error instead of pytest-benchmark's "Can't compare" and a pass."""

from __future__ import annotations

import json

import pytest

from embedgate import benchstore

TINY_LATENCY = ("-m", "latency", "-k", "test_latency", "--latency-buckets=query", "--latency-batch-sizes=1",
                "--latency-budget=0.5", "--backends=plain", "--baseline=torch-fp32")


@pytest.mark.fast
def test_machine_slug_names_cpu_model_and_threads():
    assert benchstore.machine_slug(2, "Intel(R) Xeon(R) Platinum 8480C") == "intel-xeon-platinum-8480c-t2"
    assert benchstore.machine_slug(4, "AMD EPYC 7763 64-Core Processor") == "amd-epyc-7763-64-core-t4"
    assert benchstore.machine_slug(1, "Intel(R) Core(TM) i7-8700 CPU @ 3.20GHz") == "intel-core-i7-8700-t1"
    assert benchstore.machine_slug(1, "") == "unknown-cpu-t1"
    assert benchstore.machine_slug(3).endswith("-t3")


@pytest.mark.fast
def test_machine_storage_appends_the_slug_once(tmp_path):
    slug = benchstore.machine_slug(2)
    assert benchstore.machine_storage(tmp_path, 2) == tmp_path / slug
    assert benchstore.machine_storage(f"file://{tmp_path}", 2) == tmp_path / slug
    assert benchstore.machine_storage(tmp_path / slug, 2) == tmp_path / slug, "already per machine: kept"
    assert benchstore.main(["runs", f"--storage={tmp_path}", "--threads=2"]) == 1, "no saved run: exit 1"


def test_compare_without_a_saved_run_is_a_usage_error(suite, tiny_model, tmp_path):
    storage = tmp_path / "benchmarks"
    result = suite.run(f"--model={tiny_model}", *TINY_LATENCY, f"--benchmark-storage={storage}",
                       "--threads=1", "--benchmark-compare")
    assert result.ret == pytest.ExitCode.USAGE_ERROR, result.stdout.str()[-2000:] + result.stderr.str()[-2000:]
    errors = [line for line in result.stderr.lines if line.startswith("ERROR:")]
    assert len(errors) == 1, result.stderr.str()
    line = errors[0]
    folder = storage / benchstore.machine_slug(1)
    assert f"--benchmark-compare: no saved run for this machine in {folder}" in line, line
    assert "make acceptance" in line, line
    assert "--benchmark-autosave" in line, line
    assert "Can't compare" not in result.stdout.str() + result.stderr.str()

    named = suite.run(f"--model={tiny_model}", *TINY_LATENCY, f"--benchmark-storage={storage}",
                      "--threads=1", "--benchmark-compare=0007")
    assert named.ret == pytest.ExitCode.USAGE_ERROR
    named.stderr.fnmatch_lines(["ERROR: --benchmark-compare: no saved run matching '0007' for this machine in *"])


def test_opting_out_keeps_pytest_benchmarks_layout(suite, tiny_model, tmp_path):
    storage = tmp_path / "benchmarks"
    with pytest.warns(Warning, match="Can't compare"):  # pytest-benchmark's own behaviour: a warning, and a pass
        result = suite.run(f"--model={tiny_model}", *TINY_LATENCY, f"--benchmark-storage={storage}",
                           "--shared-benchmark-storage", "--benchmark-compare", "--collect-only")
    assert result.ret == pytest.ExitCode.OK, result.stderr.str()
    assert storage.is_dir(), "no per-machine subfolder"
    assert not any(storage.iterdir()), "no per-machine subfolder"


def test_runs_with_other_thread_counts_land_in_other_folders(suite, tiny_model, tmp_path):
    storage = tmp_path / "benchmarks"
    args = (f"--model={tiny_model}", *TINY_LATENCY, f"--benchmark-storage={storage}")
    for threads in (1, 2):
        result = suite.run_in_subprocess(*args, f"--threads={threads}", "--benchmark-autosave")  # timed: own process
        assert result.ret in (0, 1), result.stdout.str()[-2000:]
    folders = {}
    for saved in storage.rglob("0001_*.json"):
        machine_info = json.loads(saved.read_text())["machine_info"]
        folders[machine_info["embedgate"]["threads"]] = saved.relative_to(storage).parts[0]
    assert folders == {1: benchstore.machine_slug(1), 2: benchstore.machine_slug(2)}, folders

    # the 1-thread run is this machine's baseline for --threads=1 only; a 3-thread compare has none
    same = suite.run(*args, "--threads=1", "--benchmark-compare", "--collect-only")
    assert same.ret == pytest.ExitCode.OK, same.stderr.str()
    other = suite.run(*args, "--threads=3", "--benchmark-compare", "--collect-only")
    assert other.ret == pytest.ExitCode.USAGE_ERROR
    assert benchstore.main(["runs", f"--storage={storage}", "--threads=2"]) == 0
