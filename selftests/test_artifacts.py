"""Artifacts: cached builds are atomic and verified, user artifacts are gated as given, and a damaged file is a
one-line error that names it, never a crash of the run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from embedgate.cache import MANIFEST, ArtifactCache
from selftests.conftest import make_tiny_model

GGUF_RUN = ("-m", "contract", "-k", "shape_and_dtype")


@pytest.fixture(scope="module")
def plain_model(tmp_path_factory) -> Path:
    """A tiny BERT without Dense layers: what llama.cpp's converter takes for any BERT."""
    return make_tiny_model(tmp_path_factory.mktemp("models") / "plain", dense=False)


def cached_files(cache: Path, backend: str) -> list[Path]:
    return sorted(p for p in (cache / backend).glob("*/model.gguf"))


@pytest.mark.fast
def test_interrupted_build_leaves_nothing(tmp_path):
    cache = ArtifactCache(tmp_path, log=lambda line: None)

    def dies_halfway(out: Path) -> None:
        (out / "model.onnx").write_bytes(b"half a model")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        cache.get_or_build("onnx-fp32", "k1", dies_halfway, {})
    assert not any((tmp_path / "onnx-fp32").iterdir()), "an interrupted build left files in the cache"

    built = cache.get_or_build("onnx-fp32", "k1", lambda out: (out / "model.onnx").write_bytes(b"whole"), {})
    assert built.built
    assert (built.path / "model.onnx").read_bytes() == b"whole"
    again = cache.get_or_build("onnx-fp32", "k1", lambda out: pytest.fail("rebuilt a valid artifact"), {})
    assert not again.built


def test_gguf_built_cached_corrupted_and_rebuilt(suite, plain_model, artifact_cache):
    first = suite.run(f"--model={plain_model}", "--backends=gguf-f16", *GGUF_RUN)
    assert first.ret == 0, first.stdout.str()[-3000:]
    first.stdout.fnmatch_lines(["embedgate: built gguf-f16 in *s -> *"])
    files = cached_files(artifact_cache, "gguf-f16")
    assert len(files) == 1, files

    second = suite.run(f"--model={plain_model}", "--backends=gguf-f16", *GGUF_RUN)
    assert second.ret == 0, "a second run must build nothing"
    assert "embedgate: built" not in second.stdout.str(), "a second run must build nothing"

    data = bytearray(files[0].read_bytes())
    data[len(data) // 2] ^= 0xFF
    files[0].write_bytes(bytes(data))
    third = suite.run(f"--model={plain_model}", "--backends=gguf-f16", *GGUF_RUN)
    assert third.ret == 0, third.stdout.str()[-3000:]
    third.stdout.fnmatch_lines(["embedgate: cached gguf-f16 artifact at * is corrupt (model.gguf checksum mismatch); rebuilding",
                                "embedgate: built gguf-f16 in *"])
    manifest = json.loads((files[0].parent / MANIFEST).read_text())
    assert manifest["files"]["model.gguf"]["bytes"] == files[0].stat().st_size


@pytest.mark.parametrize("damage", ["truncated", "garbage-after-magic"])
def test_damaged_user_artifact_is_a_one_line_error(suite, plain_model, artifact_cache, tmp_path, damage):
    if not cached_files(artifact_cache, "gguf-f16"):
        suite.run(f"--model={plain_model}", "--backends=gguf-f16", *GGUF_RUN)
    source = cached_files(artifact_cache, "gguf-f16")[0]
    bad = tmp_path / f"{damage}.gguf"
    if damage == "truncated":
        bad.write_bytes(source.read_bytes()[: source.stat().st_size // 2])
    else:
        bad.write_bytes(b"GGUF" + bytes(range(256)) * 64)
    before = bad.read_bytes()
    result = suite.run(f"--model={plain_model}", "--backends=gguf-q4_k_m", f"--artifact=gguf-q4_k_m={bad}", *GGUF_RUN)
    assert result.ret == 1, result.stdout.str()[-3000:]
    messages = [t["message"] for t in suite.report()["tests"] if t["backend"] == "gguf-q4_k_m"]
    assert messages, "the damaged artifact's gates must be in the report"
    for message in messages:  # llama.cpp refuses the file, or crashes on it inside the probe process
        assert message.startswith((f"gguf-q4_k_m: {bad}: llama.cpp ", f"gguf-q4_k_m: {bad}: this llama.cpp ")), message
        assert "corrupt" in message, message
        assert len(message.splitlines()) == 1, message
    assert bad.read_bytes() == before, "a user artifact is never modified"
    assert not cached_files(artifact_cache, "gguf-q4_k_m"), "a user artifact must not trigger a build"


def test_user_artifact_is_gated_as_given(suite, plain_model, artifact_cache, tmp_path):
    if not cached_files(artifact_cache, "gguf-f16"):
        suite.run(f"--model={plain_model}", "--backends=gguf-f16", *GGUF_RUN)
    mine = tmp_path / "downloaded-q4.gguf"
    shutil.copy(cached_files(artifact_cache, "gguf-f16")[0], mine)
    result = suite.run(f"--model={plain_model}", "--backends=gguf-q4_k_m", f"--artifact=gguf-q4_k_m={mine}", *GGUF_RUN)
    assert result.ret == 0, result.stdout.str()[-3000:]
    artifact = suite.report()["backends"]["gguf-q4_k_m"]["artifact"]
    assert artifact["source"] == "user artifact", artifact
    assert artifact["path"] == str(mine), artifact
