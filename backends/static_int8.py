"""onnx-int8-static and openvino-int8-static: INT8 with activation scales calibrated ahead of time.

Dynamic INT8 (onnx-int8) measures each activation tensor's range at run time, one scale for the whole padded
batch, so a text's vector depends on its batch-mates and those builds run one text per call. Static scales are
fixed in the artifact: a text's vector is the same alone or in any batch, so these builds batch for real (the
contract's batch-invariance gate checks it) and skip the run-time range pass.

Calibration text is general text no gate uses: --calibration-corpus, else STS-B train+dev sentences under --data-dir
minus every gated test text (backends/corpus.py: a user's corpus sharing a test text is refused). Its hash is in the
cache key and its name in the report.

What makes a transformer's activations quantize (measured on all-MiniLM-L6-v2, cosine to fp32 over 400 STS-B dev
sentences, docs/design/static-int8.md):
- onnxruntime: the MatMul outputs stay float (MatMulIntegerToFloat; a quantized output cost cosine 0.913 -> 0.989);
  SmoothQuant migration with alpha 0.8 (per-channel activation maxima moved into the weights through a Mul,
  0.989 -> 0.993); the FFN's down projection, whose input is the activation function's product with its outliers,
  as 8-bit MatMulNBits with activations quantized per block of a row (still batch-invariant): 0.993 -> 0.9988.
- OpenVINO: NNCF's post-training quantization for transformers (its own SmoothQuant and ignored patterns): 0.998.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from backends import BuildContext
from backends.corpus import Corpus, choose, clean_texts
from embedgate import EmbedgateError

if TYPE_CHECKING:
    from embedgate.cache import CachedArtifact

CALIBRATION = {"sentences": 256, "paragraphs": 16, "sentences_per_paragraph": 12, "seed": 0, "batch_size": 1}
ONNX_STATIC_PARAMS: dict[str, Any] = {
    "quantizer": "onnxruntime.quantization.quantize_static", "format": "QDQ", "weights": "QInt8 per channel",
    "activations": "QUInt8 per tensor", "calibrate_method": "MinMax", "matmul_outputs": "float (MatMulIntegerToFloat)",
    "smoothquant_alpha": 0.8,
    "ffn_down": "inputs wider than the hidden size: MatMulNBits 8-bit, blocks of 32, accuracy_level 4",
    "fused": ["SimplifiedLayerNormalization"], "calibration": CALIBRATION,
}
OPENVINO_STATIC_PARAMS: dict[str, Any] = {
    "from": "onnx-fp32", "quantizer": "nncf.quantize", "model_type": "TRANSFORMER", "preset": "default (performance)",
    "calibration": CALIBRATION,
}


def corpus(ctx: BuildContext, who: str) -> tuple[Corpus, list[str], int]:
    """The calibration corpus, its texts with every gated test text out, and how many the default corpus left out."""
    chosen = choose(ctx.options.calibration_corpus, ctx.options.data_dir, who=who, option="--calibration-corpus",
                    purpose="to calibrate its activation scales")
    texts, left_out = clean_texts(chosen, ctx.options.data_dir, who=who, option="--calibration-corpus")
    if left_out:
        ctx.cache.log(f"embedgate: {who}: {left_out} texts of {chosen.name} are in a gated test split; left out")
    return chosen, texts, left_out


def calibration_texts(texts: list[str]) -> list[str]:
    """A fixed sample: single sentences (the query and sentence buckets' lengths) and paragraphs of sentences
    joined (longer positions, whose activations reach other ranges), the same for the same corpus."""
    rng = random.Random(CALIBRATION["seed"])
    sentences = rng.sample(texts, min(CALIBRATION["sentences"], len(texts)))
    per = min(CALIBRATION["sentences_per_paragraph"], len(texts))
    paragraphs = [" ".join(rng.sample(texts, per)) for _ in range(CALIBRATION["paragraphs"])]
    return sentences + paragraphs


def feeds(ctx: BuildContext, texts: list[str]) -> list[dict[str, np.ndarray]]:
    """One text a feed of the exported graph's inputs, tokenized as the backends do and truncated at the model's
    maximum, each with one role's prompt in turn (every prompt the gates use is calibrated); no padding, so no pad
    position widens a range."""
    from transformers import AutoTokenizer

    from backends.onnx_runtime import input_names
    from embedgate.model import ROLES

    tokenizer = AutoTokenizer.from_pretrained(str(ctx.model.path), local_files_only=True, trust_remote_code=False)
    names = input_names(tokenizer)
    prompts = [ctx.model.prompt_for(role) for role in ROLES]
    out = []
    for index, text in enumerate(texts):
        encoded = tokenizer([prompts[index % len(prompts)] + text], truncation=True, max_length=ctx.model.max_seq_length,
                            return_tensors="np")
        out.append({name: encoded[name].astype(np.int64) for name in names})
    return out


def build(ctx: BuildContext, name: str, params: dict[str, Any], quantize: Callable[..., dict[str, Any]],
          versions: dict[str, str]) -> tuple[CachedArtifact, float]:
    """A static build from the project's fp32 ONNX export: the corpus checked (refused or skipped) before anything
    is built, `quantize(fp32_file, out_dir, feeds, log)` run on the calibration feeds, the artifact keyed on the
    export, the parameters and the corpus, and its facts and corpus in the manifest."""
    from backends.onnx_runtime import build_fp32
    from embedgate.cache import cache_key

    chosen, texts, left_out = corpus(ctx, name)
    fp32 = build_fp32(ctx)
    calibration = corpus_manifest(chosen, left_out)
    key = cache_key(source=fp32.manifest["files"]["model.onnx"]["sha256"], backend=name, params=params,
                    corpus=calibration, versions=versions)
    facts: dict[str, Any] = {}

    def run(out: Path) -> None:
        facts.update(quantize(fp32.path / "model.onnx", out, feeds(ctx, calibration_texts(texts)), ctx.cache.log))

    built = ctx.cache.get_or_build(
        name, key, run,
        {"source_model": str(ctx.model.path), "source_sha256": ctx.model.content_hash, "params": params,
         "calibration_corpus": calibration, "facts": facts},
    )
    return built, fp32.build_seconds


def corpus_manifest(chosen: Corpus, left_out: int) -> dict[str, Any]:
    from embedgate.cache import sha256_file

    return {"name": chosen.name, "sha256": [sha256_file(f) for f in chosen.files], "left_out": left_out}


# ---- onnxruntime -------------------------------------------------------------------------------------------------


def _weight_matmuls(model) -> tuple[dict[str, list], dict[str, Any]]:
    """MatMuls with a constant 2-D weight, grouped by their activation input (Q, K and V share one), and the
    graph's initializers by name."""
    initializers = {init.name: init for init in model.graph.initializer}
    groups: dict[str, list] = {}
    for node in model.graph.node:
        weight = initializers.get(node.input[1]) if node.op_type == "MatMul" else None
        if weight is not None and len(weight.dims) == 2:
            groups.setdefault(node.input[0], []).append(node)
    return groups, initializers


def _channel_maxima(model, tensors: list[str], batches: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Each tensor's per-channel (last axis) absolute maximum over the calibration feeds, from the fp32 graph."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    for name in tensors:
        probe.graph.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, None))
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # the tensors by their names
    options.log_severity_level = 3
    session = ort.InferenceSession(probe.SerializeToString(), options, providers=["CPUExecutionProvider"])
    del probe
    maxima: dict[str, np.ndarray] = {}
    for feed in batches:
        for name, value in zip(tensors, session.run(tensors, feed), strict=True):
            channel = np.abs(value.reshape(-1, value.shape[-1])).max(axis=0)
            maxima[name] = np.maximum(maxima[name], channel) if name in maxima else channel
    return maxima


def _ffn_down(groups: dict[str, list], initializers: dict[str, Any]) -> set[str]:
    """The activations wider than the model's hidden size (the narrowest weight input): the FFN's down projection,
    whose input, the activation function's product, carries the outlier channels a per-tensor scale cannot hold.
    (Not "produced by a Mul": an exported RMSNorm ends in one too.)"""
    width = {activation: int(initializers[nodes[0].input[1]].dims[0]) for activation, nodes in groups.items()}
    hidden = min(width.values())
    return {activation for activation, k in width.items() if k > hidden}


def _smooth(model, groups: dict[str, list], initializers: dict[str, Any], maxima: dict[str, np.ndarray],
            alpha: float) -> None:
    """SmoothQuant: x W = (x / s)(s W) with s_j = max|x_j|^alpha / max|W_j|^(1-alpha), so the activation's outlier
    channels shrink and its per-tensor scale resolves the others; x / s is one Mul before the group's MatMuls."""
    from onnx import helper, numpy_helper

    for activation, nodes in groups.items():
        weights = [numpy_helper.to_array(initializers[node.input[1]]).astype(np.float32) for node in nodes]
        weight_max = np.max([np.abs(w).max(axis=1) for w in weights], axis=0)
        scale = np.maximum(maxima[activation], 1e-5) ** alpha / np.maximum(weight_max, 1e-5) ** (1 - alpha)
        scale = np.clip(scale, 1e-2, 1e4).astype(np.float32)
        inverse, smoothed = activation + "_smooth_inverse", activation + "_smoothed"
        model.graph.initializer.append(numpy_helper.from_array((1.0 / scale).astype(np.float32), inverse))
        first = min(list(model.graph.node).index(node) for node in nodes)
        model.graph.node.insert(first, helper.make_node("Mul", [activation, inverse], [smoothed], name=smoothed))
        for node, weight in zip(nodes, weights, strict=True):
            node.input[0] = smoothed
            initializers[node.input[1]].CopyFrom(numpy_helper.from_array(weight * scale[:, None], node.input[1]))


def quantize_onnx(fp32_file: Path, out_dir: Path, batches: list[dict[str, np.ndarray]], log) -> dict[str, Any]:
    """fp32 graph -> smoothed -> onnxruntime static QDQ INT8 (weights per channel, activations per tensor, MatMul
    outputs float) with the FFN down projections as 8-bit MatMulNBits; returns facts for the report."""
    import logging

    import onnx
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static

    from backends.onnx_runtime import NBITS_PARAMS, _fuse_and_save, _nbits_quantizer

    logging.getLogger().setLevel(logging.ERROR)
    model = onnx.load(str(fp32_file))
    groups, initializers = _weight_matmuls(model)
    if not groups:
        raise EmbedgateError(f"{fp32_file}: no MatMul with a constant weight to quantize")
    down = _ffn_down(groups, initializers)
    static = {a: nodes for a, nodes in groups.items() if a not in down}
    log(f"embedgate: calibrating: per-channel maxima of {len(static)} activations over {len(batches)} texts")
    _smooth(model, static, initializers, _channel_maxima(model, list(static), batches), ONNX_STATIC_PARAMS["smoothquant_alpha"])
    smoothed = out_dir / "smoothed.onnx"
    onnx.save_model(model, str(smoothed))
    quantized = {node.name for nodes in static.values() for node in nodes}
    excluded = [node.name for node in model.graph.node if node.op_type == "MatMul" and node.name not in quantized]
    del model

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.feeds = iter(batches)

        def get_next(self):
            return next(self.feeds, None)

    log(f"embedgate: calibrating: activation ranges of {len(quantized)} MatMuls (onnxruntime MinMax)")
    # ranges are merged every `merge` texts, not all kept (memory); onnxruntime's calibrator finds no data when the
    # last merge took every text, so `merge` must not divide their number
    merge = next(n for n in range(16, 1, -1) if len(batches) % n) if len(batches) > 2 else 0
    static_file = out_dir / "static.onnx"
    quantize_static(
        str(smoothed), str(static_file), Reader(), quant_format=QuantFormat.QDQ, op_types_to_quantize=["MatMul"],
        per_channel=True, reduce_range=False, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
        calibrate_method=CalibrationMethod.MinMax, nodes_to_exclude=excluded,
        # float MatMul outputs: no requantization before the next float op
        extra_options={"OpTypesToExcludeOutputQuantization": ["MatMul"],
                       **({"CalibMaxIntermediateOutputs": merge} if merge else {})},
    )
    smoothed.unlink()
    quantizer = _nbits_quantizer(static_file, bits=8, gathers=False)  # only float MatMuls left: the down projections
    quantizer.process()
    static_file.unlink()
    out = quantizer.model.model
    counts = {op: sum(node.op_type == op for node in out.graph.node) for op in ("MatMulNBits", "QuantizeLinear")}
    if counts["MatMulNBits"] != sum(len(groups[a]) for a in down):
        raise EmbedgateError(f"{fp32_file}: {counts['MatMulNBits']} MatMulNBits, expected one per FFN down projection")
    _fuse_and_save(out, out_dir / "model.onnx")
    return {"static_matmuls": len(quantized), "ffn_down_matmuls_nbits": counts["MatMulNBits"],
            "calibration_texts": len(batches), "nbits_block_size": NBITS_PARAMS["block_size"]}


# ---- OpenVINO ----------------------------------------------------------------------------------------------------


def quantize_openvino(fp32_file: Path, out_dir: Path, batches: list[dict[str, np.ndarray]], log) -> dict[str, Any]:
    """NNCF post-training quantization of the fp32 graph read as OpenVINO IR (transformer mode: SmoothQuant and the
    ops it keeps in float are NNCF's own choice)."""
    import logging

    import nncf
    import openvino

    logging.getLogger("nncf").setLevel(logging.ERROR)
    model = openvino.Core().read_model(str(fp32_file))
    log(f"embedgate: calibrating: nncf.quantize over {len(batches)} texts")
    quantized = nncf.quantize(model, nncf.Dataset(batches), model_type=nncf.ModelType.TRANSFORMER,
                              subset_size=len(batches))
    openvino.save_model(quantized, str(out_dir / "model.xml"), compress_to_fp16=False)
    fake_quantize = sum(op.get_type_name() == "FakeQuantize" for op in quantized.get_ops())
    if not fake_quantize:
        raise EmbedgateError(f"{fp32_file}: nncf.quantize placed no quantizer")
    return {"fake_quantize_ops": fake_quantize, "calibration_texts": len(batches)}
