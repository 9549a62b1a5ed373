"""The ONNX builds' graph work: exact banded attention for sliding-window layers (its export included) and the
RMSNorm fusion, each checked against the computation it replaces, and each test shown able to fail."""

from __future__ import annotations

import numpy as np
import pytest

from backends import banded_attention


def band_mask(lengths: list[int], size: int, window: int):
    """transformers' additive mask for a bidirectional sliding layer: |q - k| < window, padded keys excluded."""
    import torch

    i = torch.arange(size)
    allowed = ((i[:, None] - i[None]).abs() < window)[None] & (i[None, None] < torch.tensor(lengths)[:, None, None])
    return torch.where(allowed, 0.0, torch.finfo(torch.float32).min)[:, None]


@pytest.mark.parametrize("size", [1, 2, 5, 6, 7, 13, 20, 21, 30, 45])
def test_banded_attention_equals_eager_attention(monkeypatch, size):
    """Blocks of 4 rows, window 6 (keys within 5 of a row, so a block's key span is 20): one block up to 20 tokens,
    several past it; a padded batch-mate too."""
    import torch

    monkeypatch.setattr(banded_attention, "CHUNK", 4)
    torch.manual_seed(size)
    query, key, value = torch.randn(2, 3, size, 8), torch.randn(2, 1, size, 8), torch.randn(2, 1, size, 8)
    mask = band_mask([size, max(1, size - 3)], size, window=6)
    eager = banded_attention.full(query, key, value, mask, 0.35)
    banded = banded_attention.banded(query, key, value, mask, 0.35, window=6)
    assert banded.shape == eager.shape, f"{size} tokens: shape {tuple(banded.shape)} != {tuple(eager.shape)}"
    diff = (banded - eager).abs().max().item()
    assert diff < 1e-5, f"{size} tokens: banded attention differs from eager attention by {diff:.2e}"


def test_a_band_narrower_than_the_mask_is_caught(monkeypatch):
    """What the equality test is for: banded attention told a window of 3 where the model's mask allows 6 leaves
    keys out, and the difference is far above the test's bound."""
    import torch

    monkeypatch.setattr(banded_attention, "CHUNK", 4)
    torch.manual_seed(0)
    query, key, value = torch.randn(1, 3, 30, 8), torch.randn(1, 1, 30, 8), torch.randn(1, 1, 30, 8)
    mask = band_mask([30], 30, window=6)
    diff = (banded_attention.banded(query, key, value, mask, 0.35, window=3)
            - banded_attention.full(query, key, value, mask, 0.35)).abs().max().item()
    assert diff > 1e-3, f"a too-narrow band went unnoticed: differs by only {diff:.2e}"


def rms_norm_graph(reuse_square: bool = False):
    """x -> RMSNorm(x) * (1 + w) as the exporter writes it, and a LayerNorm-like chain (mean subtracted) beside it;
    with reuse_square, the RMSNorm's x^2 is also a graph output (then it must not be fused)."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(np.array(2.0, np.float32), "two"), numpy_helper.from_array(np.array([-1], np.int64), "axes"),
             numpy_helper.from_array(np.array(1e-6, np.float32), "eps"),
             numpy_helper.from_array((1 + rng.standard_normal(8)).astype(np.float32), "weight")]
    nodes = [
        helper.make_node("Pow", ["x", "two"], ["sq"]), helper.make_node("ReduceMean", ["sq", "axes"], ["ms"], keepdims=1),
        helper.make_node("Add", ["ms", "eps"], ["mse"]), helper.make_node("Sqrt", ["mse"], ["rt"]),
        helper.make_node("Reciprocal", ["rt"], ["inv"]), helper.make_node("Mul", ["x", "inv"], ["normed"]),
        helper.make_node("Mul", ["normed", "weight"], ["rms"]),
        helper.make_node("ReduceMean", ["x", "axes"], ["mean"], keepdims=1), helper.make_node("Sub", ["x", "mean"], ["centred"]),
        helper.make_node("Pow", ["centred", "two"], ["csq"]), helper.make_node("ReduceMean", ["csq", "axes"], ["var"], keepdims=1),
        helper.make_node("Add", ["var", "eps"], ["vare"]), helper.make_node("Sqrt", ["vare"], ["sd"]),
        helper.make_node("Div", ["centred", "sd"], ["ln"]),
    ]
    outputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ["rms", "ln"] + (["sq"] if reuse_square else [])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, None, 8])], outputs, inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=9)


def run(model, x):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # the graph as written
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})


def test_rms_norm_chains_become_one_kernel_with_the_same_values():
    from backends.onnx_fusion import fuse_rms_norms

    x = np.random.default_rng(1).standard_normal((2, 5, 8)).astype(np.float32) * 3
    model = rms_norm_graph()
    before = run(model, x)
    assert fuse_rms_norms(model) == 1, "the RMSNorm chain was not fused (or the LayerNorm chain was)"
    ops = [node.op_type for node in model.graph.node]
    assert (ops.count("SimplifiedLayerNormalization"), "Reciprocal" in ops) == (1, False), f"fused graph: {ops}"
    assert {"Sub", "Div"} <= set(ops), f"the LayerNorm-like chain (mean subtracted) was touched: {ops}"
    assert {init.name for init in model.graph.initializer} >= {"weight", "axes", "eps"}, "an initializer still in use was dropped"
    after = run(model, x)
    for name, old, new in zip(("rms", "ln"), before, after, strict=True):
        diff = float(np.abs(old - new).max())
        assert diff < 1e-5, f"{name}: the fused graph differs from the exported one by {diff:.2e}"


def test_an_rms_norm_chain_whose_values_are_used_elsewhere_is_left_alone():
    from backends.onnx_fusion import fuse_rms_norms

    model = rms_norm_graph(reuse_square=True)
    assert fuse_rms_norms(model) == 0, "fused a chain whose x^2 is also a graph output"
    assert "SimplifiedLayerNormalization" not in [node.op_type for node in model.graph.node]


@pytest.fixture(scope="module")
def tiny_gemma(tmp_path_factory, heavy_libraries):
    from selftests.conftest import make_tiny_gemma

    return make_tiny_gemma(tmp_path_factory.mktemp("models") / "tiny-gemma")


def test_a_sliding_window_model_is_exported_banded_and_matches_torch(tiny_gemma, tiny_model, tmp_path, monkeypatch):
    """End to end on a tiny Gemma3 (window 8, applied as 5; blocks of 4 rows against 12 keys; texts up to 48
    tokens): the export records banded
    attention, onnx-fp32 keeps cosine >= 0.99999 to torch-fp32 on texts from 2 to 48 tokens one by one and in a
    padded batch, and onnx-int8's graph has its RMSNorms fused. A BERT (no sliding layers) keeps eager attention."""
    from backends import builtin_registry
    from selftests.test_overhead import context_for

    monkeypatch.setattr(banded_attention, "CHUNK", 4)
    ctx = context_for(tiny_gemma, tmp_path / "cache")
    registry = builtin_registry()
    reference, onnx_fp32 = registry["torch-fp32"].load(ctx), registry["onnx-fp32"].load(ctx)
    params = onnx_fp32.metadata.params
    # transformers applies a bidirectional Gemma3 window of 8 as |q - k| < 8 // 2 + 1 = 5
    assert (params.get("attn_implementation"), params.get("sliding_window")) == (banded_attention.NAME, 5), params
    words = "the quick brown fox jumps over a lazy dog while seven small birds sing in the old oak tree".split()
    texts = [" ".join((words * 4)[:n]) for n in (1, 3, 6, 7, 9, 15, 22, 30, 45)]
    for batch in ([[t] for t in texts] + [texts]):
        a, b = reference.encode(batch), onnx_fp32.encode(batch)
        cosine = (a * b).sum(axis=1)
        assert cosine.min() >= 0.99999, f"onnx-fp32 (banded) vs torch-fp32: cosine {cosine.round(6).tolist()} for {len(batch)} text(s)"
    import onnx

    int8 = registry["onnx-int8"].load(ctx)
    ops = [node.op_type for node in onnx.load(int8.metadata.artifact_path, load_external_data=False).graph.node]
    assert ops.count("SimplifiedLayerNormalization") >= 4, f"onnx-int8's norms not fused: {sorted(set(ops))}"
    assert "Reciprocal" not in ops, f"onnx-int8 kept an unfused norm: {sorted(set(ops))}"
    bert = registry["onnx-fp32"].load(context_for(tiny_model, tmp_path / "cache"))
    assert bert.metadata.params.get("attn_implementation") == "eager", bert.metadata.params


def test_roofline_counts_the_pairs_a_sliding_layer_attends(tiny_gemma):
    """The roofline's work for a text is the model's own: a sliding layer's tokens see the keys within the window
    only (counted here pair by pair), the full layer every key; below the window both are the whole square."""
    import dataclasses

    from embedgate.model import resolve_model
    from embedgate.roofline import Shapes

    shapes = Shapes.of(resolve_model(str(tiny_gemma)))
    assert shapes is not None
    assert (shapes.sliding_layers, shapes.window) == (1, 5), shapes
    all_full = dataclasses.replace(shapes, sliding_layers=0)
    for tokens in (3, 5, 6, 40):
        pairs = sum(abs(i - j) < 5 for i in range(tokens) for j in range(tokens))
        skipped = 2 * 2 * (tokens * tokens - pairs) * shapes.q_dim  # one sliding layer: scores and weighted sum
        assert all_full.operations(tokens) - shapes.operations(tokens) == pytest.approx(skipped), (
            f"{tokens} tokens: the sliding layer's work is not the {pairs} pairs within the window")
