"""The release gates (--production): a re-export identical in effect passes and keeps the index; a candidate
quantized more aggressively fails index compatibility with its figures; a slower one fails the latency regression
gate; a bad --production is one usage-error line."""

from __future__ import annotations

from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parent.parent

FAST_LATENCY = ("--latency-buckets=query", "--latency-batch-sizes=1", "--latency-budget=0.5")


def built(name: str, model: Path, cache: Path) -> Path:
    """The cached artifact folder of a built-in backend, as a team would keep the one in production.

    Built in a child process: pytester's in-process runs drop the torch.onnx and onnx modules they imported, and
    those cannot be imported a second time in one process (torch's cache registry and onnx's extension refuse)."""
    import subprocess
    import sys

    script = ("import sys; from backends import builtin_registry; from selftests.test_overhead import context_for; "
              "backend = builtin_registry()[sys.argv[1]].load(context_for(sys.argv[2], sys.argv[3])); "
              "print(backend.metadata.artifact_path)")
    done = subprocess.run([sys.executable, "-c", script, name, str(model), str(cache)], cwd=PROJECT,
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return Path(done.stdout.strip().splitlines()[-1])


def release_gates(suite, backend: str) -> dict[str, dict]:
    return {t["gate"]: t for t in suite.report()["tests"] if t["backend"] == backend and t["family"] == "release"}


def test_an_identical_reexport_passes_every_release_gate(suite, tiny_model):
    production = built("onnx-int8", tiny_model, suite.cache)
    result = suite.run(f"--model={tiny_model}", "--backends=onnx-int8", "-m", "release", *FAST_LATENCY,
                       f"--production=onnx-int8={production}",
                       "--threshold=release.min_speedup=0.8")  # the same artifact: only timing noise between them
    assert result.ret == 0, result.stdout.str()[-3000:]
    gates = release_gates(suite, "onnx-int8")
    assert {g.split("[")[0] for g in gates} == {"release/quality", "release/fidelity", "release/latency", "release/index"}
    assert {t["verdict"] for t in gates.values()} == {"pass"}, {g: t["message"] for g, t in gates.items()}
    entry = suite.report()["release"]["onnx-int8"]
    assert entry["production"] == "onnx-int8-production"
    assert entry["index_compatible"] is True
    assert entry["index"]["cosine-min"] > 0.9999, entry["index"]
    assert entry["index"]["cross_retrieval"]["fixture-retrieval"] == pytest.approx(1.0), entry["index"]
    result.stdout.fnmatch_lines([f"release: onnx-int8 may replace production ({production}): the stored index can stay"])
    markdown = (suite.pytester.path / "reports" / "report.md").read_text()
    assert "## Release: candidate against production" in markdown
    assert "release" not in suite.report()["run"]["families_not_run"], "release gates are no core family"
    import hashlib

    from embedgate import __version__

    report = suite.report()
    assert report["embedgate_version"] == __version__
    artifact = report["backends"]["onnx-int8"]["artifact"]
    assert artifact["sha256"] == hashlib.sha256(Path(artifact["path"]).read_bytes()).hexdigest(), (
        "report.json says exactly which artifact was gated")
    assert entry["production_sha256"] == hashlib.sha256(Path(entry["production_path"]).read_bytes()).hexdigest()
    assert len(artifact["sha256"]) == 64


@pytest.fixture(scope="module")
def outlier_model(tmp_path_factory, heavy_libraries) -> Path:
    from selftests.conftest import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("models") / "outliers", outliers=True)


def test_a_more_aggressive_quantization_fails_index_compatibility(suite, outlier_model):
    """4-bit weights against the fp32 export in production: the stored vectors no longer match the new queries'.

    The model's layers weigh as trained ones do (make_tiny_model's `outliers`): the plain tiny model loses almost
    nothing to 4 bits (index cosine mean 0.996), unlike a real one (onnx-q4w keeps 0.962 on all-MiniLM-L6-v2)."""
    production = built("onnx-fp32", outlier_model, suite.cache)
    result = suite.run(f"--model={outlier_model}", "--backends=onnx-q4w", "-m", "release", "-k", "index",
                       f"--production=onnx-q4w={production}")
    assert result.ret == 1, result.stdout.str()[-3000:]
    index = release_gates(suite, "onnx-q4w")["release/index"]
    assert index["verdict"] == "fail", index
    assert "re-embed the corpus before switching" in index["message"], index["message"]
    failed = {m["name"] for m in index["measurements"] if m["passed"] is False}
    assert failed & {"index cosine-mean", "index cosine-p5", "index cosine-min"}, index["measurements"]
    assert suite.report()["release"]["onnx-q4w"]["index_compatible"] is False
    result.stdout.fnmatch_lines(["release: onnx-q4w may not replace production yet: *re-embed the corpus before "
                                 "switching (index cosine mean 0.*"])


def test_a_slower_candidate_fails_the_latency_regression_gate(suite, tiny_model, tmp_path):
    production = tmp_path / "production-artifact"
    production.mkdir()
    result = suite.run(f"--model={tiny_model}", "--backends=slower-rebuild", "-m", "release", *FAST_LATENCY,
                       f"--production=slower-rebuild={production}")
    assert result.ret == 1, result.stdout.str()[-3000:]
    gates = release_gates(suite, "slower-rebuild")
    latency = gates["release/latency[b1-query]"]
    assert latency["verdict"] == "fail", latency
    assert latency["measurements"][0]["value"] < 0.6, "three times the work must show as < 0.6x"
    assert gates["release/index"]["verdict"] == "pass", "the same vectors: the index can stay"
    assert {t["verdict"] for g, t in gates.items() if g.startswith("release/quality")} == {"pass"}


@pytest.mark.parametrize(("given", "message"), [
    ("onnx-int8=.", "--production onnx-int8=*: the candidate onnx-int8 is not among --backends (torch-fp32); add it"),
    ("torch-int8=.", "--production torch-int8=*: backend torch-int8 is built in memory and loads no artifact"),
], ids=["not-a-candidate", "no-artifact"])
def test_a_bad_production_is_one_usage_line(suite, tiny_model, given, message):
    import fnmatch

    backends = "torch-fp32,torch-int8" if given.startswith("torch-int8") else "torch-fp32"
    result = suite.run(f"--model={tiny_model}", f"--backends={backends}", f"--production={given}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    errors = [line for line in result.stderr.lines if line.startswith("ERROR:")]
    assert len(errors) == 1, result.stderr.lines
    if given.startswith("torch-int8"):
        message = message.replace("(torch-fp32)", "(torch-fp32, torch-int8)")
    assert fnmatch.fnmatch(errors[0], "ERROR: " + message.replace("(", "[(]").replace(")", "[)]")), errors[0]
