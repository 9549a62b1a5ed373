"""--truncate-dim=N (Matryoshka truncation): every backend, the reference included, is gated on its vectors' first
N dims renormalised; fidelity compares like with like at N dims, task quality is held to the full-size reference's
score, so the reference's own quality gate says what truncation costs and can fail."""

from __future__ import annotations

import json

import numpy as np
import pytest

from backends import BuildContext, TruncatedBackend, builtin_registry
from backends._base import EmbeddingError
from embedgate.cache import ArtifactCache
from embedgate.model import load_model_spec
from selftests.test_usage_errors import one_error_line

TEXTS = ["Cheap CPUs make embeddings slow.", "ok", "Wie spät ist es?", ""]


def test_truncated_vectors_are_the_first_dims_renormalised(tiny_model, artifact_cache):
    """Directly: shape (n, N), unit norm at N dims, equal to the full-size vector's first N dims over their norm;
    the raw output the contract checks stays full size."""
    ctx = BuildContext(load_model_spec(tiny_model), ArtifactCache(artifact_cache, lambda line: None), 1)
    full = builtin_registry()["torch-fp32"].load(ctx)
    cut = TruncatedBackend(full, 8)
    vectors = cut.encode(TEXTS, role="query")
    assert (cut.dimension, cut.runtime_dimension, vectors.shape, vectors.dtype) == (8, 16, (4, 8), np.float32)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-6)
    expected = full.encode(TEXTS, role="query")[:, :8]
    np.testing.assert_allclose(vectors, expected / np.linalg.norm(expected, axis=1, keepdims=True), atol=1e-6)
    assert cut.encode([]).shape == (0, 8)
    assert cut.encode_raw(TEXTS).shape == (4, 16), "the runtime's own output is checked at full size"
    assert cut.embed_prompted(["x"], 1).shape == (1, 16), "the latency gates time the runtime, not the cut"


def test_a_full_size_defect_is_not_renormalised_away():
    """A plugin backend whose full-size vectors are not unit norm would pass `unit_norm` once the cut renormalises
    them: the wrapper refuses them instead."""

    class Unnormalised:
        name, dimension, max_tokens, metadata = "x", 4, 8, None

        def encode(self, texts, *, role=None, batch_size=32):
            return np.full((len(texts), 4), 3.0, dtype=np.float32)

    with pytest.raises(EmbeddingError, match="full-size vectors have norms 6.0000..6.0000, expected 1"):
        TruncatedBackend(Unnormalised(), 2).encode(["a"])


def test_truncated_run_gates_and_reports_n_dims(suite, tiny_model):
    """A built-in backend (torch-fp32), a plugin one (plain: not a BaseBackend) and a broken plugin one
    (broken-norm) at 8 of 16 dims: the contract passes for the first two and still fails the third; fidelity
    compares 8 dims with 8 dims; report.json and report.md say so."""
    jsonschema = pytest.importorskip("jsonschema")
    from embedgate.schema import SCHEMA_FILE

    result = suite.run(f"--model={tiny_model}", "-m", "contract or fidelity", "--truncate-dim=8",
                       "--backends=torch-fp32,plain,broken-norm",
                       "-k", "shape_and_dtype or raw_output or unit_norm or cosine-mean")
    verdicts = suite.verdicts()
    report = suite.report()
    errors = list(jsonschema.Draft202012Validator(json.loads(SCHEMA_FILE.read_text())).iter_errors(report))
    assert not errors, errors[:3]
    assert report["run"]["truncate_dim"] == 8
    for name in ("torch-fp32", "plain"):
        assert (report["backends"][name]["dimension"], report["backends"][name]["runtime_dimension"]) == (8, 16)
    assert verdicts[("torch-fp32", "contract/raw_output")] == "pass", "the raw output is checked at 16 dims"
    for gate in ("contract/shape_and_dtype", "contract/unit_norm"):
        assert verdicts[("torch-fp32", gate)] == verdicts[("plain", gate)] == "pass", gate
        assert verdicts[("broken-norm", gate)] == "fail", gate
    assert verdicts[("plain", "fidelity/cosine-mean")] == "pass"
    assert result.ret == 1
    markdown = (suite.pytester.path / "reports" / "report.md").read_text()
    assert "(16 dims, vectors truncated to 8 of 16 dims, max" in markdown
    assert "Vectors truncated to 8 of 16 dims (then renormalised) in every backend, torch-fp32 included" in markdown
    assert "| 8 of 16 |" in markdown
    result.stdout.fnmatch_lines(["*vectors truncated to 8 of 16 dims*"])


def test_quality_is_held_to_the_full_size_reference(suite, tiny_model):
    """The reference's task score at full size is what every backend at N dims is held to: the same number as in a
    run without truncation, while the reference's own score at 8 dims is another."""
    suite.run(f"--model={tiny_model}", "-m", "quality", "-k", "fixture-sts", "--backends=torch-fp32")
    full = suite.report()["backends"]["torch-fp32"]["quality"]["fixture-sts"]
    suite.run(f"--model={tiny_model}", "-m", "quality", "-k", "fixture-sts", "--backends=torch-fp32,plain",
              "--truncate-dim=8", "--threshold=quality.max_loss=off")
    report = suite.report()
    for name in ("torch-fp32", "plain"):
        cut = report["backends"][name]["quality"]["fixture-sts"]
        assert cut["reference_score"] == pytest.approx(full["score"], abs=1e-9), (name, cut, full)
        assert (cut["dimension"], cut["reference_dimension"]) == (8, 16)
    cut = report["backends"]["torch-fp32"]["quality"]["fixture-sts"]
    assert cut["score"] != pytest.approx(full["score"], abs=1e-6)
    assert cut["retention"] == pytest.approx(cut["score"] / full["score"])
    markdown = (suite.pytester.path / "reports" / "report.md").read_text()
    assert f"| torch-fp32 at 16 dims (the reference) | {full['score']:.4f} |" in markdown


def test_truncation_that_costs_quality_fails_the_reference(suite):
    """all-MiniLM-L6-v2 was not trained for Matryoshka truncation: at 8 of its 384 dims the reference itself loses
    far more than 5% of its fixture-sts score, and its own overall retention gate fails (a gate that can fail)."""
    result = suite.run("-m", "quality", "-k", "fixture-sts or overall", "--backends=torch-fp32", "--truncate-dim=8")
    assert result.ret == 1
    mine = {t["gate"]: t for t in suite.report()["tests"] if t["backend"] == "torch-fp32"}
    retention = next(m for m in mine["quality/task[fixture-sts]"]["measurements"] if m["name"] == "retention")
    assert retention["value"] < 0.95, retention
    assert retention["threshold"] is None, "one task's loss is measured, not gated"
    overall = mine["quality/overall"]
    assert overall["verdict"] == "fail", overall
    assert overall["measurements"][0]["value"] < 0.95, overall
    assert overall["measurements"][0]["threshold"] == 0.95, overall
    assert "at 8 dims vs the full-size torch-fp32 (384 dims)" in overall["message"], overall["message"]


@pytest.mark.parametrize(("value", "message"), [
    ("16", "--truncate-dim 16: tiny has 16-dim vectors, so there is nothing to cut; give fewer than 16 dims"),
    ("400", "--truncate-dim 400: tiny has 16-dim vectors"),
    ("0", "expected a positive whole number, got '0'"),
    ("half", "expected a positive whole number, got 'half'"),
], ids=["equal", "larger", "zero", "not-a-number"])
def test_bad_truncate_dim_is_a_usage_error(suite, tiny_model, value, message):
    result = suite.run(f"--model={tiny_model}", "--backends=torch-fp32", f"--truncate-dim={value}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    if value.isdigit() and int(value) > 0:  # embedgate's own check: one ERROR line
        assert message in one_error_line(result)
    else:  # argparse's, through pytest: its usage line, then this
        assert f"argument --truncate-dim: {message}" in " ".join(result.stderr.lines)
