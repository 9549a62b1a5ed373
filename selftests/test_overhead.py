"""The harness's own cost: what a latency gate times stays within 3% of the runtime's own call, for every
built-in backend, on the tiny model; and a backend that adds per-call work of its own is caught."""

from __future__ import annotations

import pytest

from embedgate.latency import MAX_HARNESS_OVERHEAD, harness_overhead

QUERY = ["how fast is a cheap cpu"]  # the shortest bucket: where a fixed per-call cost weighs most


def context_for(model, cache):
    from backends import BuildContext
    from embedgate.cache import ArtifactCache
    from embedgate.model import resolve_model

    return BuildContext(resolve_model(str(model)), ArtifactCache(cache), threads=2)


@pytest.fixture(scope="module")
def build_context(tiny_model, artifact_cache):
    return context_for(tiny_model, artifact_cache)


@pytest.fixture(scope="module")
def linear_context(linear_head_model, artifact_cache):
    """model2vec folds the Dense head into its table, which it does only for a linear head."""
    return context_for(linear_head_model, artifact_cache)


@pytest.mark.parametrize("name", ["torch-fp32", "torch-int8", "onnx-fp32", "onnx-int8", "onnx-q8w", "onnx-q4w", "openvino-fp32",
                                  "openvino-int8", "gguf-f16", "gguf-q8_0", "gguf-q4_k_m", "model2vec"])
def test_timed_call_is_the_runtime_call(build_context, linear_context, name):
    from backends import builtin_registry

    backend = builtin_registry()[name].load(linear_context if name == "model2vec" else build_context)
    measured = harness_overhead(backend, QUERY)
    assert measured["overhead"] <= MAX_HARNESS_OVERHEAD, (
        f"{name}: the timed call takes {1e6 * measured['overhead_s']:.1f} us more than the runtime's own call "
        f"({1e6 * measured['runtime_s']:.1f} us): {100 * measured['overhead']:.1f}% > {100 * MAX_HARNESS_OVERHEAD:.0f}%")


@pytest.mark.parametrize("name", ["onnx-int8-static", "openvino-int8-static", "torch-int8-compiled"])
def test_timed_call_is_the_runtime_call_for_calibrated_builds(build_context, tmp_path_factory, name):
    """The builds calibrated on a corpus (no gate's test text) hold to the same bound."""
    from backends import BuildOptions, builtin_registry
    from selftests.test_families import CALIBRATION

    corpus = tmp_path_factory.mktemp("calibration") / "calibration.txt"
    corpus.write_text("\n".join(CALIBRATION) + "\n", encoding="utf-8")
    build_context.options = BuildOptions(calibration_corpus=corpus)
    try:
        backend = builtin_registry()[name].load(build_context)
    finally:
        build_context.options = BuildOptions()
    measured = harness_overhead(backend, QUERY)
    assert measured["overhead"] <= MAX_HARNESS_OVERHEAD, (
        f"{name}: the timed call takes {1e6 * measured['overhead_s']:.1f} us more than the runtime's own call "
        f"({1e6 * measured['runtime_s']:.1f} us): {100 * measured['overhead']:.1f}% > {100 * MAX_HARNESS_OVERHEAD:.0f}%")


def test_per_call_thread_limits_are_caught(linear_context):
    """A threadpoolctl context around every call of a model2vec backend costs many times its lookup (measured:
    docs/design/timing.md). The bound must catch that kind of harness cost."""
    from threadpoolctl import threadpool_limits

    from backends import builtin_registry

    backend = builtin_registry()["model2vec"].load(linear_context)
    embed = backend._embed

    def limited(texts):
        with threadpool_limits(limits=2):
            return embed(texts)

    backend._embed = limited
    measured = harness_overhead(backend, QUERY, rounds=50)
    assert measured["overhead"] > MAX_HARNESS_OVERHEAD, f"a per-call threadpool_limits went unnoticed: {measured}"
