"""Hostile inputs (docs/errors.md): a wrong input is one usage-error line before any test runs (exit 4), a bad cache or
report folder is one line, never a traceback, and the run always says what it did not gate.

The self-tests run as root, which chmod does not stop: an unwritable folder is made by putting a regular file where
a folder must be (a path under a file cannot be created by anyone)."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from embedgate.cache import PID_FILE, ArtifactCache
from embedgate.model import load_model_spec
from selftests.test_usage_errors import one_error_line

PROJECT = Path(__file__).resolve().parent.parent
QUICK = ("-m", "contract", "-k", "shape_and_dtype")

# the self-tests' broken backends, plus one that keeps a one-file artifact in the cache (fast: no export)
CACHED_BACKEND_CONFTEST = '''
from backends import BackendSpec
from selftests import broken_backends


def _load(ctx):
    artifact = ctx.cache.get_or_build("cached-plain", "k1", lambda out: (out / "v.txt").write_text("vectors"), {})
    backend = broken_backends.Wrapped("cached-plain", ctx)
    backend.metadata.artifact_path = str(artifact.path)
    return backend


def pytest_embedgate_register_backends(registry):
    broken_backends.pytest_embedgate_register_backends(registry)
    registry.register(BackendSpec("cached-plain", "test", "torch", True, _load, "the reference, cached artifact",
                                  requires=("torch",)))
'''


def no_traceback(result: pytest.RunResult) -> None:
    text = result.stdout.str() + result.stderr.str()
    assert "Traceback" not in text, text[-3000:]


def usage_error(result: pytest.RunResult) -> str:
    assert result.ret == pytest.ExitCode.USAGE_ERROR, (result.ret, result.stdout.str()[-2000:])
    no_traceback(result)
    return one_error_line(result)


# ---------------------------------------------------------------- 3: pickles and the content hash

@pytest.mark.parametrize("where", ["pytorch_model.bin", "2_Dense/pytorch_model.bin", "1_Pooling/extra.pt"])
def test_pickle_beside_safetensors_is_refused(suite, tmp_path, tiny_model, where):
    folder = tmp_path / "mixed"
    shutil.copytree(tiny_model, folder)
    (folder / where).write_bytes(b"\x80\x04 a pickle")
    line = usage_error(suite.run(f"--model={folder}", "--backends=torch-fp32"))
    assert f"--model {folder}: {where} is a pickled weight file" in line, line
    assert "safetensors" in line, line


def test_content_hash_covers_every_weight_file(tiny_model, tmp_path):
    spec = load_model_spec(tiny_model)
    for name in ("pytorch_model.bin", "model.onnx", "model.gguf", "tf_model.h5"):
        folder = tmp_path / name
        shutil.copytree(tiny_model, folder)
        (folder / name).write_bytes(b"other weights")
        other = dataclasses.replace(spec, path=folder)  # a ModelSpec built directly: the hash alone is under test
        assert other.content_hash != spec.content_hash, f"{name} is not in the model's content hash"
    twin = tmp_path / "twin"
    shutil.copytree(tiny_model, twin)
    assert dataclasses.replace(spec, path=twin).content_hash == spec.content_hash


# ---------------------------------------------------------------- 5: the report folder

def test_report_dir_that_is_a_file(suite, tiny_model, tmp_path):
    blocker = tmp_path / "reports.txt"
    blocker.write_text("a file")
    line = usage_error(suite.run(f"--model={tiny_model}", "--backends=torch-fp32", f"--report-dir={blocker}", *QUICK))
    assert line == f"ERROR: --report-dir {blocker}: is a file; give a folder", line


def test_report_dir_under_a_file(suite, tiny_model, tmp_path):
    # as root, a chmod 0o555 folder is still writable: a folder under a regular file is what nobody can create
    blocker = tmp_path / "file"
    blocker.write_text("a file")
    line = usage_error(suite.run(f"--model={tiny_model}", "--backends=torch-fp32", f"--report-dir={blocker}/sub",
                                 *QUICK))
    assert line == f"ERROR: --report-dir {blocker}/sub: cannot be created: {blocker} is a file; give a folder", line


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a chmod 0o555 folder; GitHub's runner user does not")
@pytest.mark.parametrize("option", ["--report-dir", "--artifact-cache"])
def test_read_only_folder(suite, tiny_model, tmp_path, option):
    read_only = tmp_path / "ro"
    read_only.mkdir()
    read_only.chmod(0o555)
    try:
        line = usage_error(suite.run(f"--model={tiny_model}", "--backends=torch-fp32", f"{option}={read_only}/sub"))
    finally:
        read_only.chmod(0o755)
    assert line == f"ERROR: {option} {read_only}/sub: {read_only} is not writable (Permission denied); " \
                   "give a writable folder", line


def test_report_lost_at_the_end_is_one_line_and_fails_the_run(suite, tiny_model):
    """A report folder that was fine at the start but cannot be written at the end (here a file takes its place
    just before the report is written): one line, exit 1 although every gate passed, no traceback."""
    reports = suite.pytester.path / "reports"
    suite.pytester.makeconftest(
        "import pathlib\nimport pytest\n"
        "from selftests.broken_backends import pytest_embedgate_register_backends  # noqa: F401\n\n\n"
        "@pytest.hookimpl(tryfirst=True)\ndef pytest_sessionfinish(session):\n"
        f"    pathlib.Path({str(reports)!r}).write_text('in the way')\n"
    )
    result = suite.run(f"--model={tiny_model}", "--backends=torch-fp32", *QUICK)
    assert result.ret == pytest.ExitCode.TESTS_FAILED, result.stdout.str()[-2000:]
    no_traceback(result)
    result.stdout.fnmatch_lines([f"embedgate: report NOT written to {reports}: {reports}: File exists"])
    result.stdout.fnmatch_lines(["*embedgate verdicts*", "torch-fp32 * PASS *"])  # the verdicts are still shown


# ---------------------------------------------------------------- 6: cache events, stale builds, locking

@pytest.mark.fast
def test_stale_tmp_folders_are_removed_and_reported(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    folder = tmp_path / "onnx-fp32"
    killed = folder / ".tmp-k1-deadbeef"  # its builder's pid is gone
    killed.mkdir(parents=True)
    (killed / PID_FILE).write_text(f"{dead.pid} {os.uname().nodename}\n")
    old = folder / ".tmp-k2-0ld0ld00"  # no pid file (a build from before pids were recorded), two hours old
    old.mkdir()
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    running = folder / ".tmp-k3-11ve11ve"  # this process is alive: its build may still be running
    running.mkdir()
    (running / PID_FILE).write_text(f"{os.getpid()} {os.uname().nodename}\n")

    cache = ArtifactCache(tmp_path, log=lambda line: None)
    cache.get_or_build("onnx-fp32", "k4", lambda out: (out / "model.onnx").write_bytes(b"m"), {})
    assert not killed.exists()
    assert not old.exists()
    assert running.exists()
    stale = {Path(e.path).name: e.message for e in cache.events if e.kind == "stale-removed"}
    assert stale.keys() == {killed.name, old.name}, stale
    assert f"its builder, pid {dead.pid}, is gone" in stale[killed.name]
    assert "2.0 h old, no live builder recorded" in stale[old.name]
    assert [e.kind for e in cache.events][-1] == "built"
    assert not (folder / "k4" / PID_FILE).exists(), "the pid file is not part of the artifact"


BUILDER = textwrap.dedent('''
    import json, sys, time
    from pathlib import Path
    from embedgate.cache import ArtifactCache

    root, counter = Path(sys.argv[1]), Path(sys.argv[2])

    def slow_build(out):
        with counter.open("a") as fh:
            fh.write("built\\n")
        time.sleep(3)
        (out / "model.bin").write_bytes(b"weights")

    cache = ArtifactCache(root, log=lambda line: print(line, flush=True))
    artifact = cache.get_or_build("gguf-f16", "same-key", slow_build, {})
    print(json.dumps({"path": str(artifact.path), "events": [e.kind for e in cache.events]}))
''')


@pytest.mark.fast
def test_two_processes_build_a_key_once(tmp_path):
    counter = tmp_path / "builds.txt"
    env = dict(os.environ, PYTHONPATH=str(PROJECT))
    procs = [subprocess.Popen([sys.executable, "-c", BUILDER, str(tmp_path / "cache"), str(counter)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    assert counter.read_text().splitlines() == ["built"], "the build function ran more than once"
    results = [json.loads(out.strip().splitlines()[-1]) for out, _ in outputs]
    assert results[0]["path"] == results[1]["path"]
    assert sorted(r["events"] for r in results) == [["built"], ["waited", "reused"]], results
    waiter = next(out for out, _ in outputs if "waiting for" in out)
    assert "embedgate: waiting for pid " in waiter, waiter
    assert "building the same gguf-f16 artifact" in waiter, waiter


def run_in_subprocess(suite, monkeypatch, *args: str) -> pytest.RunResult:
    """The suite in a child pytest whose stdout is a pipe: pytest's fd capture then takes a test's output as it does
    on a terminal (in-process, pytester's own capture lets the reporter's writes through whatever the plugin does)."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(PROJECT), os.environ.get("PYTHONPATH")])))
    return suite.pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", f"--report-dir={suite.pytester.path / 'reports'}",
        "--thresholds=" + str(suite.pytester.path / "fixtures" / "thresholds.toml"), *args, timeout=300)


def test_corrupt_cache_is_reported_without_s(suite, tiny_model, tmp_path, monkeypatch):
    suite.pytester.makeconftest(CACHED_BACKEND_CONFTEST)
    cache = tmp_path / "cache"
    run = (f"--model={tiny_model}", "--backends=cached-plain", f"--artifact-cache={cache}", *QUICK)
    first = suite.run(*run)
    assert first.ret == 0, first.stdout.str()[-2000:]
    first.stdout.fnmatch_lines(["*embedgate: building cached-plain -> *", "*embedgate cache*",
                                "embedgate: built cached-plain in *s -> *"])
    (cache / "cached-plain" / "k1" / "v.txt").write_text("tampered")
    second = run_in_subprocess(suite, monkeypatch, *run)  # captured as pytest captures by default: no -s
    assert second.ret == 0, second.stdout.str()[-2000:]
    no_traceback(second)
    corrupt = f"embedgate: cached cached-plain artifact at {cache}/cached-plain/k1 is corrupt (v.txt has 8 bytes, " \
              "expected 7); rebuilding"
    second.stdout.fnmatch_lines([corrupt, "*embedgate cache*", corrupt, "embedgate: built cached-plain in *"])
    events = suite.report()["cache_events"]
    assert [e["kind"] for e in events] == ["corrupt", "built"], events
    assert events[0]["message"] == corrupt
    markdown = (suite.pytester.path / "reports" / "report.md").read_text()
    assert "## Artifact cache" in markdown
    assert "| `cached-plain` | corrupt |" in markdown
    third = suite.run(*run)
    third.stdout.fnmatch_lines([f"embedgate: reused cached cached-plain from {cache}"])
    assert [e["kind"] for e in suite.report()["cache_events"]] == ["reused"]


# ---------------------------------------------------------------- 7: threshold scopes

@pytest.mark.parametrize(("override", "message"), [
    ("backend.onnx_int8.fidelity.cosine_mean_min=0.9999",
     "unknown backend 'onnx_int8' in [backend.onnx_int8] (did you mean 'onnx-int8'?); known: torch-fp32, torch-int8, "),
    ("quality.floors.stsb_tset=0.99",
     ("unknown task 'stsb_tset' in defaults.quality.floors (did you mean 'stsb'?); "
      "known tasks: stsb, sickr, scifact, wikiqa, banking77, msrp, fixture-sts, fixture-retrieval")),
    ("runtime.ggfu.contract.batch_min_cosine=0.99",
     "unknown runtime 'ggfu' in [runtime.ggfu] (did you mean 'gguf'?); known: torch, onnx, openvino, gguf, model2vec"),
], ids=["backend", "floor-task", "runtime"])
def test_threshold_scope_that_matches_nothing(suite, tiny_model, override, message):
    line = usage_error(suite.run(f"--model={tiny_model}", "--backends=torch-fp32", f"--threshold={override}"))
    assert line.startswith(f"ERROR: --threshold {override}: {message}"), line


def test_thresholds_file_scope_that_matches_nothing(suite, tiny_model, tmp_path):
    bad = tmp_path / "thresholds.toml"
    bad.write_text((PROJECT / "fixtures" / "thresholds.toml").read_text()
                   + "\n[profile.report-gguf.backend.gguf-q4km.latency]\nmin_speedup = 2.0\n")
    line = usage_error(suite.run(f"--model={tiny_model}", "--backends=torch-fp32", f"--thresholds={bad}"))
    assert line.startswith(f"ERROR: {bad}: unknown backend 'gguf-q4km' in [profile.report-gguf.backend.gguf-q4km] "
                           "(did you mean 'gguf-q4_k_m'?)"), line


# ---------------------------------------------------------------- 8: --data-dir and STS Benchmark

def test_data_dir_without_any_task(suite, tiny_model, tmp_path):
    line = usage_error(suite.run(f"--model={tiny_model}", "--backends=torch-fp32", f"--data-dir={tmp_path}"))
    assert line.startswith(f"ERROR: --data-dir {tmp_path}: none of the task folders (stsb/, sickr/, scifact/"), line


@pytest.mark.parametrize(("content", "message"), [
    ("A cat sits.,A cat is sitting.,4.2\nA dog runs.,A dog is running.,high\n", "csv:2: score 'high' is not a number"),
    ("A cat sits.,A cat is sitting.,4.2\nonly two,columns\n",
     "csv:2: expected sentence1,sentence2,score; got 2 columns"),
    ("a,b,1\nc,d,2\n\xe9t\xe9,x,3\n".encode("latin-1").decode("utf-8", "surrogateescape"),
     "csv:3: not UTF-8 text (invalid continuation byte)"),
    ("a,b,1\nc,d,2\ne,f,7.5\n", "csv:3: score '7.5' is outside 0-5"),
    ("", "csv:1: no sentence pairs in the file"),
], ids=["not-a-number", "columns", "latin-1", "out-of-range", "empty"])
def test_malformed_stsb_csv(suite, tiny_model, tmp_path, content, message):
    (tmp_path / "stsb").mkdir()
    (tmp_path / "stsb" / "stsb-en-test.csv").write_bytes(content.encode("utf-8", "surrogateescape"))
    line = usage_error(suite.run(f"--model={tiny_model}", "--backends=torch-fp32", f"--data-dir={tmp_path}"))
    assert line == f"ERROR: --data-dir {tmp_path}: task stsb: {tmp_path}/stsb/stsb-en-test.{message}", line


def test_valid_stsb_csv_is_gated(suite, tiny_model, tmp_path):
    (tmp_path / "stsb").mkdir()
    (tmp_path / "stsb" / "stsb-en-test.csv").write_text("A cat sits.,A cat is sitting.,4.2\nA dog.,Stock prices.,0.0\n")
    result = suite.run(f"--model={tiny_model}", "--backends=torch-fp32", f"--data-dir={tmp_path}", "-m", "quality",
                       "--collect-only", "-q")
    assert result.ret == 0, result.stdout.str()[-2000:]
    result.stdout.fnmatch_lines(["*test_task[[]torch-fp32-stsb[]]"])


def test_no_data_dir_says_stsb_was_not_run(suite, tiny_model):
    result = suite.run(f"--model={tiny_model}", "--backends=torch-fp32", "-m", "quality", "-k", "fixture-sts")
    assert result.ret == 0, result.stdout.str()[-2000:]
    said = "stsb (STS) not run: no --data-dir (nor --hub-tasks) (its floor 0.65 not gated)"
    assert suite.report()["run"]["tasks_not_run"]["stsb"] == said
    assert f"> {said}." in (suite.pytester.path / "reports" / "report.md").read_text()
    result.stdout.fnmatch_lines(["*embedgate verdicts*", said])
