"""Any sentence-transformers model: tiny random models of each architecture and pooling mode users bring
(selftests/tiny_families.py), every built-in backend, the contract and fidelity gates.

Each backend either passes the contract gates or is refused with one line that says why (no traceback), and the
full-precision builds keep the reference's vectors, so an export that lost the pooling, the prompt or the padding
side fails here. The outcome per architecture and backend is the support matrix (fixtures/support_matrix.json, shown
in docs/support.md): a changed outcome fails this test until the matrix is regenerated with
`make support-matrix`, so the published matrix is what the self-tests saw, never written by hand."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from selftests.support_matrix import MATRIX
from selftests.tiny_families import FAMILIES, make_tiny_family

BACKENDS = ("torch-fp32", "torch-int8", "torch-int8-compiled", "onnx-fp32", "onnx-int8", "onnx-int8-static", "onnx-q8w",
            "onnx-q4w", "openvino-fp32", "openvino-int8", "openvino-int8-static", "gguf-f16", "gguf-q8_0", "gguf-q4_k_m",
            "model2vec")
# the static INT8 builds' calibration text: general sentences no gate uses
CALIBRATION = [f"a plain sentence number {i} about {topic}, written for calibration" for i, topic in enumerate(
    ["weather", "cooking", "football", "history", "gardens", "trains", "music", "the sea"] * 8)]
# builds that keep full precision give the reference's vectors (an f16 GGUF within f16's rounding) for 95% of the
# fidelity texts: llama.cpp tokenizes a few hostile ones (literal special-token strings) its own way, as on
# all-MiniLM-L6-v2, and a lost pooling, prompt or padding side moves every text (cls vs mean pooling: cosine 0.5-0.85)
FULL_PRECISION = {"onnx-fp32": 0.9999, "openvino-fp32": 0.9999, "gguf-f16": 0.999}


def outcome(report: dict, backend: str) -> str:
    """"yes" when every contract gate passes, else the one reason the run gave (paths as PATH, the backend's name out)."""
    tests = [t for t in report["tests"] if t["backend"] == backend and t["family"] == "contract"]
    if tests and all(t["verdict"] == "pass" for t in tests):
        return "yes"
    reasons = {t["message"] for t in tests if t["verdict"] != "pass"} or {"no contract gate ran"}
    assert len(reasons) == 1, f"{backend}: one reason for all its gates, got {sorted(reasons)[:3]}"
    reason = re.sub(r"/[^\s:]+", "PATH", reasons.pop()).removeprefix(f"{backend}: ")
    return "no: " + reason.removeprefix("PATH: ").strip()


@pytest.fixture(scope="module")
def family_models(tmp_path_factory, heavy_libraries) -> dict[str, Path]:
    """Every tiny model, made before the first pytester run: pytester drops the modules a test imported (a
    transformers model class among them) when it ends, and transformers cannot import them again."""
    folder = tmp_path_factory.mktemp("families")
    return {name: make_tiny_family(folder / name, spec) for name, spec in FAMILIES.items()}


@pytest.mark.parametrize("family", list(FAMILIES))
def test_every_backend_takes_the_architecture_or_says_why(family_models, suite, family):
    spec = FAMILIES[family]
    model = family_models[family]
    # in a child process: torch.onnx and transformers' model modules cannot be imported again in one process
    corpus = suite.pytester.path / "calibration.txt"
    corpus.write_text("\n".join(CALIBRATION) + "\n", encoding="utf-8")
    result = suite.run_in_subprocess(f"--model={model}", f"--backends={','.join(BACKENDS)}", f"--calibration-corpus={corpus}",
                                     "-m", "contract or fidelity")
    output = result.stdout.str() + result.stderr.str()
    assert "Traceback" not in output, output[-3000:]
    report = suite.report()
    assert report["model"]["pooling"] == spec.pooling, report["model"]
    row = {backend: outcome(report, backend) for backend in BACKENDS}
    assert row["torch-fp32"] == "yes", row
    for backend, cosine_min in FULL_PRECISION.items():
        if row[backend] == "yes":
            fidelity = report["backends"][backend]["fidelity"]
            assert fidelity["cosine-p5"] >= cosine_min, (
                f"{backend} on {family} ({spec.architecture}, {spec.pooling} pooling): cosine-p5 "
                f"{fidelity['cosine-p5']:.5f} to torch-fp32 < {cosine_min}: the build lost part of the pipeline")
    if os.environ.get("EMBEDGATE_WRITE_SUPPORT_MATRIX"):
        matrix = json.loads(MATRIX.read_text()) if MATRIX.exists() else {}
        matrix[family] = {"architecture": spec.architecture, "pooling": spec.pooling, "backends": row}
        MATRIX.write_text(json.dumps(dict(sorted(matrix.items())), indent=2) + "\n")
        return
    expected = json.loads(MATRIX.read_text())[family]["backends"]
    changed = {b: (expected.get(b), row[b]) for b in BACKENDS if expected.get(b) != row[b]}
    assert not changed, (f"{family}: the support matrix says otherwise (expected, now): {changed}; if the change is "
                         "right, `make support-matrix` rewrites fixtures/support_matrix.json and docs/support.md")


@pytest.mark.fast
def test_the_published_matrix_is_the_generated_one():
    """README.md's and docs/support.md's tables are fixtures/support_matrix.json rendered, not edited by hand."""
    from selftests.support_matrix import main

    assert main(["--check"]) == 0, "run `python -m selftests.support_matrix` (or `make support-matrix`)"
