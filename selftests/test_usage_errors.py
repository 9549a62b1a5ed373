"""Bad input fails fast, before any test runs, with one readable line (pytest's usage error, exit code 4)."""

from __future__ import annotations

import shutil

import pytest


def one_error_line(result: pytest.RunResult) -> str:
    errors = [line for line in result.stderr.lines if line.startswith("ERROR:")]
    assert len(errors) == 1, f"expected one ERROR line, got {errors or result.stderr.lines}"
    return errors[0]


def test_missing_model_folder(suite):
    result = suite.run("--model=/nonexistent/model", "--backends=torch-fp32")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "--model /nonexistent/model: no such folder" in one_error_line(result)


def test_folder_without_weights(suite, tmp_path, tiny_model):
    folder = tmp_path / "noweights"
    shutil.copytree(tiny_model, folder)
    (folder / "model.safetensors").unlink()
    result = suite.run(f"--model={folder}", "--backends=torch-fp32")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "no weights for the transformer" in one_error_line(result)


def test_pickled_weights_are_refused(suite, tmp_path, tiny_model):
    folder = tmp_path / "pickled"
    shutil.copytree(tiny_model, folder)
    (folder / "model.safetensors").rename(folder / "pytorch_model.bin")
    result = suite.run(f"--model={folder}", "--backends=torch-fp32")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "only pickled weights (pytorch_model.bin)" in one_error_line(result)


def test_truncated_weights(suite, tmp_path, tiny_model):
    folder = tmp_path / "truncated"
    shutil.copytree(tiny_model, folder)
    (folder / "model.safetensors").write_bytes(b"\x00" * 8)
    result = suite.run(f"--model={folder}", "--backends=torch-fp32")
    assert "model.safetensors of the transformer is truncated" in one_error_line(result)


def test_unknown_backend_lists_the_known_ones(suite, tiny_model):
    result = suite.run(f"--model={tiny_model}", "--backends=torch-fp32,onnx-int4")
    line = one_error_line(result)
    assert "unknown backend onnx-int4" in line, line
    assert "torch-fp32, torch-int8, torch-int8-compiled, onnx-fp32" in line, line


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("[defaults.fidelity]\ncosine_avg_min = 0.9\n", "unknown key 'fidelity.cosine_avg_min'"),
        ("[defaults.quality]\nmax_loss = 'five percent'\n", "quality.max_loss: expected a number or \"off\", got 'five percent'"),
        ("[defaults.quality]\nmax_loss = 3\n", "quality.max_loss: 3 is outside [0, 1]"),
        ("[defaults\n", "not valid TOML"),
        ("[weights]\nx = 1\n", "unknown key 'weights'"),
    ],
    ids=["unknown-key", "not-a-number", "out-of-range", "bad-toml", "unknown-table"],
)
def test_malformed_thresholds_file(suite, tiny_model, tmp_path, content, message):
    bad = tmp_path / "thresholds.toml"
    bad.write_text(content)
    result = suite.run(f"--model={tiny_model}", "--backends=torch-fp32", f"--thresholds={bad}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert message in one_error_line(result)


def test_bad_threshold_override_names_it(suite, tiny_model):
    result = suite.run(f"--model={tiny_model}", "--backends=torch-fp32", "--threshold=latency.min_speedup=fast")
    assert "--threshold latency.min_speedup=fast" in one_error_line(result)


def test_artifact_for_unknown_backend(suite, tiny_model, tmp_path):
    artifact = tmp_path / "x.gguf"
    artifact.write_bytes(b"GGUF")
    result = suite.run(f"--model={tiny_model}", f"--artifact=gguf-q3={artifact}")
    assert "unknown backend 'gguf-q3'" in one_error_line(result)


def test_missing_artifact_file(suite, tiny_model):
    result = suite.run(f"--model={tiny_model}", "--artifact=gguf-q4_k_m=/no/such/file.gguf")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "no such file or folder: /no/such/file.gguf" in " ".join(result.stderr.lines)


@pytest.mark.parametrize(("task", "message"), [
    ("NoSuchTaskAnywhere", "--mteb-tasks NoSuchTaskAnywhere: not an mteb task"),
    ("STSBenchmark", "--mteb-tasks STSBenchmark: its data could not be loaded (ConnectionError: "),
    ("fixture-sts", "--mteb-tasks fixture-sts: a built-in task of embedgate"),
], ids=["unknown", "no-offline-data", "built-in"])
def test_mteb_task_that_cannot_run(suite, tiny_model, task, message):
    result = suite.run(f"--model={tiny_model}", "--backends=torch-fp32", f"--mteb-tasks={task}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert message in one_error_line(result)


@pytest.mark.parametrize(("marks", "said"), [
    ("", "has no gate family marker"),  # e.g. a new family's module marked with a marker families.py does not list
    ("@pytest.mark.contract\n@pytest.mark.latency\n", "is marked contract and latency"),
], ids=["no-family", "two-families"])
def test_gate_test_without_one_family_is_a_usage_error(suite, tiny_model, marks, said):
    """Such a test would run and vanish from the report: its verdict would be recorded under no family."""
    suite.pytester.makepyfile(**{"tests/test_odd.py": f"import pytest\n\n\n{marks}def test_odd(backend):\n    pass\n"})
    result = suite.run(f"--model={tiny_model}", "--backends=torch-fp32", "--collect-only")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    line = one_error_line(result)
    assert f"tests/test_odd.py::test_odd[torch-fp32] takes a backend but {said}" in line, line
    assert "one of contract, fidelity, quality, latency" in line, line
