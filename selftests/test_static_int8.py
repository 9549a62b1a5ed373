"""The static INT8 builds (onnxruntime, OpenVINO, PT2E compiled by AOTInductor) on the tiny model: they build from a
calibration corpus no gate uses, pass the contract gates, and batch for real because the batch-invariance gate says
they may; a dynamic build made to batch fails that gate; a calibration corpus that shares a gated test text is
refused; the corpus is part of the artifact's key."""

from __future__ import annotations

import pytest

from selftests.test_model2vec_distill import CORPUS

STATIC = ("onnx-int8-static", "openvino-int8-static", "torch-int8-compiled")

BATCHED_DYNAMIC = '''
from selftests.broken_backends import pytest_embedgate_register_backends as _broken


def _onnx_int8_batched(ctx):
    """onnx-int8 (per-tensor scales measured at run time) as if it were batch-invariant: real batches."""
    from backends.onnx_runtime import _load, build_int8

    return _load("onnx-int8-batched", ctx, build_int8, one_text_per_call=False)


def pytest_embedgate_register_backends(registry):
    from backends import BackendSpec

    _broken(registry)
    registry.register(BackendSpec("onnx-int8-batched", "onnx", "onnx", True, _onnx_int8_batched,
                                  "onnx-int8 run in real batches", requires=("onnxruntime",), compute="int8"))
'''


def _data_dir(root):
    """The fixture tasks, plus STS-B train and dev sentences for the default calibration corpus (one of them a
    test sentence, which the default corpus must leave out)."""
    from embedgate.data import fixture_sts
    from selftests.task_folders import make_data_dir

    data = make_data_dir(root)
    test_sentence = fixture_sts()[5][0]
    for split in ("train", "dev"):
        rows = [f'"{CORPUS[i]}","{CORPUS[i + 1]}",2.0' for i in range(0, len(CORPUS) - 1, 2)]
        (data / "stsb" / f"stsb-en-{split}.csv").write_text("\n".join(rows + [f'"{test_sentence}","x y z",1.0']) + "\n")
    return data


@pytest.fixture(scope="module")
def built_models(tiny_model):
    """Created before the suite's first in-process run (see selftests/conftest.py: heavy_libraries)."""
    return tiny_model


def test_static_builds_batch_for_real_and_pass_the_contract(suite, built_models, tmp_path):
    data = _data_dir(tmp_path / "data")
    result = suite.run_in_subprocess(f"--model={built_models}", f"--data-dir={data}", "--backends=" + ",".join(STATIC),
                                     "-m", "contract")
    out = result.stdout.str()
    assert result.ret == 0, out[-3000:]
    report = suite.report()
    for name in STATIC:
        gates = {gate: v for (backend, gate), v in suite.verdicts().items() if backend == name}
        assert gates, f"{name} ran no gate"
        assert set(gates.values()) <= {"pass", "skip"}, f"{name}: {gates}"
        assert gates["contract/batch_invariance"] == "pass", f"{name}: static scales must not depend on batch-mates"
        params = report["backends"][name]["artifact"]["params"]
        assert params["batching"] == "real batches", f"{name}: {params['batching']}"
        assert params["calibration_corpus"] == "stsb-en-train+dev sentences (minus 1 texts found in gated test splits)"
        assert params["calibration_texts"] > 0, params
    compiled = report["backends"]["torch-int8-compiled"]["artifact"]
    assert compiled["params"]["quantized_linears"] > 0, compiled["params"]
    assert compiled["path"].endswith("model.pt2"), compiled["path"]
    onnx = report["backends"]["onnx-int8-static"]["artifact"]["params"]
    assert onnx["static_matmuls"] > 0, onnx
    assert onnx["ffn_down_matmuls_nbits"] > 0, onnx
    first = report["backends"]["onnx-int8-static"]["artifact"]["path"]

    # another calibration corpus is another artifact, named in the report
    corpus = tmp_path / "calibration.txt"
    corpus.write_text("\n".join(f"calibration text {i} on {w}" for i, w in enumerate(CORPUS)) + "\n")
    result = suite.run_in_subprocess(f"--model={built_models}", f"--data-dir={data}", f"--calibration-corpus={corpus}",
                                     "--backends=onnx-int8-static", "-m", "fidelity")
    assert result.ret == 0, result.stdout.str()[-3000:]
    artifact = suite.report()["backends"]["onnx-int8-static"]["artifact"]
    assert artifact["path"] != first, "the calibration corpus must be part of the artifact's cache key"
    assert artifact["params"]["calibration_corpus"] == str(corpus)


def test_a_dynamic_build_made_to_batch_fails_batch_invariance(suite, built_models):
    """The gate that lets a backend batch must be able to say no: onnx-int8's per-tensor scales measured at run
    time make a text's vector depend on its batch-mates."""
    suite.pytester.makeconftest(BATCHED_DYNAMIC)
    result = suite.run_in_subprocess(f"--model={built_models}", "--backends=onnx-int8-batched", "-k", "batch_invariance")
    out = result.stdout.str()
    verdicts = suite.verdicts()
    assert verdicts[("onnx-int8-batched", "contract/batch_invariance")] == "fail", out[-3000:]
    assert "cosine" in out, out[-3000:]


@pytest.mark.parametrize("name", STATIC)
def test_a_calibration_corpus_that_shares_a_gated_test_text_is_refused(name, tiny_model, tmp_path):
    """Scales calibrated on a gate's test texts would be judged on what they were fitted to: refused with a line
    naming the task, before anything is built."""
    from backends import BuildOptions, builtin_registry
    from embedgate import EmbedgateError
    from embedgate.data import fixture_sts
    from selftests.task_folders import make_data_dir
    from selftests.test_overhead import context_for

    data = make_data_dir(tmp_path / "data")
    corpus = tmp_path / "calibration.txt"
    corpus.write_text("\n".join(CORPUS + [fixture_sts()[0][1].upper()]) + "\n")
    ctx = context_for(tiny_model, tmp_path / "cache")
    ctx.options = BuildOptions(calibration_corpus=corpus, data_dir=data)
    with pytest.raises(EmbedgateError) as refused:
        builtin_registry()[name].load(ctx)
    line = str(refused.value)
    assert f"{name}: --calibration-corpus {corpus} shares texts with the test split of fixture-sts (1 texts)" in line
    assert "\n" not in line
    built = sorted(p.name for p in (tmp_path / "cache").glob("*/*"))
    assert not built, f"refused before any build, yet built {built}"


@pytest.mark.parametrize("name", STATIC)
def test_without_a_calibration_corpus_they_skip(name, tiny_model, tmp_path):
    from backends import BuildOptions, builtin_registry
    from embedgate import BackendUnavailable
    from selftests.test_overhead import context_for

    ctx = context_for(tiny_model, tmp_path / "cache")
    ctx.options = BuildOptions()
    with pytest.raises(BackendUnavailable, match="--calibration-corpus=FILE"):
        builtin_registry()[name].load(ctx)


@pytest.mark.fast
def test_a_compiled_package_without_int8_linears_is_refused(tmp_path):
    """Inductor can fold PT2E's quantized weights back to fp32 (compiled with grad enabled it did: fp32 addmm calls):
    such a package is refused rather than gated as INT8."""
    import zipfile

    from backends.torch_compiled import check_int8
    from embedgate import EmbedgateError

    def package(name: str, wrapper: str):
        path = tmp_path / name
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("model/data/aotinductor/model/x.wrapper.cpp", wrapper)
            archive.writestr("model/data/aotinductor/model/x.kernel.cpp", "qlinear in a kernel does not count")
        return path

    check_int8(package("int8.pt2", "aoti_torch_cpu__qlinear_pointwise_tensor(buf0, ...);"))
    fp32 = package("fp32.pt2", "aoti_torch_cpu_addmm_out(buf0, ...);")
    with pytest.raises(EmbedgateError, match="calls no oneDNN int8 linear") as refused:
        check_int8(fp32)
    assert "\n" not in str(refused.value)


@pytest.mark.fast
def test_a_long_compile_says_how_far_it_is():
    import time

    from backends.torch_compiled import heartbeat

    lines: list[str] = []
    with heartbeat(lines.append, "compiling", every=0.05):
        time.sleep(0.18)
    assert any("compiling:" in line and "s so far" in line for line in lines[:-1]), lines
    assert lines[-1].startswith("embedgate: compiling: done in"), lines
