"""Artifacts are gated as deployed: a GGUF's own pooling and context length are what runs, a mismatch with the
reference fails test_deployed_settings by name, and a file that cannot serve sentence vectors is a one-line error
for its backend; the run always ends with a report, the other backends keep their verdicts."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from selftests.conftest import make_tiny_model
from selftests.gguf_files import metadata_offsets, set_uint32

POOLING_TYPE = {"none": 0, "mean": 1, "cls": 2}
RUN = ("-m", "contract", "-k", "deployed_settings or shape_and_dtype or beyond_max_length or hostile_input")


def convert(model: Path, out: Path) -> Path:
    """model -> GGUF f16 with llama.cpp's converter, as the gguf backends build it (~2 s for a tiny BERT)."""
    from backends.gguf import _convert
    from embedgate.model import load_model_spec

    out.mkdir(parents=True)
    _convert(load_model_spec(model), out)
    return out / "model.gguf"


@pytest.fixture(scope="module")
def plain_model(tmp_path_factory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("models") / "plain", dense=False)


@pytest.fixture(scope="module")
def plain_gguf(plain_model, tmp_path_factory) -> Path:
    return convert(plain_model, tmp_path_factory.mktemp("gguf") / "plain")


def messages(suite, backend: str) -> dict[str, str]:
    return {t["gate"]: t["message"] for t in suite.report()["tests"] if t["backend"] == backend}


def test_gguf_pooling_from_the_file_is_gated(suite, plain_model, plain_gguf, tmp_path):
    cls = tmp_path / "cls-pooling.gguf"
    shutil.copy(plain_gguf, cls)
    assert set_uint32(cls, "bert.pooling_type", POOLING_TYPE["cls"]) == POOLING_TYPE["mean"], "the converter wrote mean"

    result = suite.run(f"--model={plain_model}", "--backends=torch-fp32,gguf-q8_0", f"--artifact=gguf-q8_0={cls}", *RUN)
    assert result.ret == 1, result.stdout.str()[-3000:]
    verdicts, gguf = suite.verdicts(), messages(suite, "gguf-q8_0")
    assert verdicts[("gguf-q8_0", "contract/deployed_settings")] == "fail", verdicts
    message = gguf["contract/deployed_settings"]
    assert "gguf-q8_0: the artifact's pooling is cls, the reference pipeline's is mean" in message, message
    assert verdicts[("gguf-q8_0", "contract/shape_and_dtype")] == "pass", "the file runs: only the settings gate fails"
    reference = {gate: v for (backend, gate), v in verdicts.items() if backend == "torch-fp32"}
    assert set(reference.values()) == {"pass"}, f"the reference keeps its verdicts: {reference}"
    details = next(t["details"] for t in suite.report()["tests"]
                   if t["backend"] == "gguf-q8_0" and t["gate"] == "contract/deployed_settings")
    assert details["deployed"]["pooling"] == "cls", details
    assert details["reference"]["pooling"] == "mean", details


def test_gguf_without_pooling_is_a_one_line_error(suite, plain_model, plain_gguf, tmp_path):
    none = tmp_path / "no-pooling.gguf"
    shutil.copy(plain_gguf, none)
    set_uint32(none, "bert.pooling_type", POOLING_TYPE["none"])
    result = suite.run(f"--model={plain_model}", "--backends=torch-fp32,gguf-q8_0", f"--artifact=gguf-q8_0={none}",
                       *RUN)
    assert result.ret == 1, result.stdout.str()[-3000:]
    for gate, message in messages(suite, "gguf-q8_0").items():
        assert message.startswith(f"gguf-q8_0: {none}: the file's pooling is none"), f"{gate}: {message}"
        assert len(message.splitlines()) == 1, message
    assert {v for (b, _), v in suite.verdicts().items() if b == "torch-fp32"} == {"pass"}, suite.verdicts()


def test_gguf_of_a_shorter_context_model_is_gated_not_a_crash(suite, plain_model, tmp_path):
    """A GGUF of another model with 32 positions, for a reference that truncates at 64 tokens: llama.cpp aborts the
    process (GGML_ASSERT in get_rows, rc 134, no report) on a text past the file's 32 positions unless the
    harness truncates where the file's context says."""
    short_model = make_tiny_model(tmp_path / "short", dense=False, seed=1, max_positions=32)
    short = convert(short_model, tmp_path / "gguf")
    assert metadata_offsets(short)["bert.context_length"], "the converter writes the context length"

    result = suite.run(f"--model={plain_model}", "--backends=torch-fp32,gguf-q8_0", f"--artifact=gguf-q8_0={short}",
                       "-m", "contract or fidelity", "-k", RUN[-1] + " or cosine-mean")
    assert result.ret == 1, result.stdout.str()[-3000:]
    verdicts, gguf = suite.verdicts(), messages(suite, "gguf-q8_0")
    assert "gguf-q8_0: max length 32 vs 64 tokens" in gguf["contract/deployed_settings"], gguf
    for gate in ("contract/shape_and_dtype", "contract/beyond_max_length", "contract/hostile_input"):
        assert verdicts[("gguf-q8_0", gate)] == "pass", f"{gate}: texts past 32 tokens are truncated: {gguf[gate]}"
    assert verdicts[("gguf-q8_0", "fidelity/cosine-mean")] == "fail", "another model's vectors differ"
    assert {v for (b, g), v in verdicts.items() if b == "torch-fp32" and g.startswith("contract")} == {"pass"}, verdicts
