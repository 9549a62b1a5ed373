"""onnx-fp32 and onnx-int8: the whole pipeline (transformer, pooling, Dense, Normalize) as one ONNX graph.

Exported with `torch.onnx.export(..., dynamo=True)` from the sentence-transformers modules themselves, with
eager attention (the TorchScript exporter and optimum cannot export gemma3). INT8 is onnxruntime's dynamic
quantization of the MatMul weights, per channel by default: on all-MiniLM-L6-v2 per-tensor INT8 keeps a mean
cosine of 0.968 to fp32, per-channel 0.993, at the same speed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from backends import BackendMetadata, BuildContext
from backends._base import BaseBackend, Timer
from embedgate import EmbedgateError, MissingDependency
from embedgate.cache import CachedArtifact, cache_key

OUTPUT_NAME = "sentence_vector"  # not "embedding": that name clashes with a value inside exported graphs
OPSET = 18
EXPORT_PARAMS = {"exporter": "torch.onnx dynamo", "opset": OPSET, "attn_implementation": "eager"}
# Models with sliding-window layers whose texts can outgrow a block's key span are exported with exact banded attention
# (backends/banded_attention.py): the same vectors, without scoring the pairs the window masks (measured:
# docs/design/onnx-export.md).
# onnxruntime's intra-op threads spin after a run by default; the next runtime to run on those cores pays for it
# (measured: docs/design/timing.md). A server that runs only onnxruntime is not slowed by it, and block timing
# (embedgate.latency) keeps it out of the other side's figures, so the default stays: spinning on, recorded in the
# report's params.
SPINNING = True
INT8_PARAMS = {"weight_type": "QInt8", "per_channel": True, "reduce_range": False, "op_types": ["MatMul"],
               "fused": ["SimplifiedLayerNormalization"]}
# Weight-only: MatMulNBits, symmetric blocks of 32 along K, accuracy_level 4 (activations quantized to int8 per
# block of a row, so a text's vector does not depend on its batch-mates: these backends batch for real), and the
# token-embedding table quantized too (GatherBlockQuantized: onnxruntime's quantizer does 4 bits, 8 bits here).
NBITS_PARAMS: dict[str, Any] = {"quantizer": "MatMulNBitsQuantizer", "block_size": 32, "symmetric": True, "accuracy_level": 4,
                "op_types": ["MatMul", "Gather"], "fused": ["SimplifiedLayerNormalization"]}


def _versions() -> dict[str, str]:
    import onnxruntime

    versions = {"onnxruntime": onnxruntime.__version__}
    try:
        import onnx
        import torch

        versions.update(onnx=onnx.__version__, torch=torch.__version__)
    except ImportError:
        pass
    return versions


def export_params(model) -> dict[str, Any]:
    """What the export does for this model (and its cache key): eager attention, or banded for a model with
    sliding-window layers its texts can outgrow."""
    from backends import banded_attention

    window = banded_attention.sliding_window(model.path, model.max_seq_length)
    if window is None:
        return dict(EXPORT_PARAMS)
    return dict(EXPORT_PARAMS, attn_implementation=banded_attention.NAME, sliding_window=window,
                attention_chunk=banded_attention.CHUNK)


def _export(model, out_dir: Path, params: dict[str, Any]) -> None:
    try:
        import torch
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:
        raise MissingDependency("torch", exc.name or "torch") from exc
    import transformers

    transformers.logging.set_verbosity_error()
    if params["attn_implementation"] != "eager":
        from backends import banded_attention

        banded_attention.register()
    st = SentenceTransformer(
        str(model.path), device="cpu", trust_remote_code=False, local_files_only=True,
        model_kwargs={"attn_implementation": params["attn_implementation"]},
    )
    st.eval()
    names = input_names(st.tokenizer)

    class Pipeline(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.st = st

        def forward(self, *inputs):
            return self.st(dict(zip(names, inputs, strict=True)))["sentence_embedding"]

    sample = st.tokenizer(["a short text", "a somewhat longer second text"], padding=True, return_tensors="pt")
    batch, sequence = torch.export.Dim("batch"), torch.export.Dim("sequence")
    with torch.inference_mode():
        torch.onnx.export(
            Pipeline().eval(), tuple(sample[n] for n in names), str(out_dir / "model.onnx"), dynamo=True,
            input_names=names, output_names=[OUTPUT_NAME], opset_version=OPSET,
            dynamic_shapes={"inputs": tuple({0: batch, 1: sequence} for _ in names)},
            external_data=False, optimize=True, verbose=False,
        )


def input_names(tokenizer) -> list[str]:
    return [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in tokenizer.model_input_names]


def _quantize(fp32_dir: Path, out_dir: Path) -> None:
    import logging

    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    logging.getLogger().setLevel(logging.ERROR)  # the "consider pre-processing" advice; it changes nothing here
    quantize_dynamic(
        str(fp32_dir / "model.onnx"), str(out_dir / "model.onnx"), weight_type=QuantType.QInt8,
        per_channel=INT8_PARAMS["per_channel"], reduce_range=INT8_PARAMS["reduce_range"],
        op_types_to_quantize=INT8_PARAMS["op_types"],
    )
    _fuse_and_save(onnx.load(str(out_dir / "model.onnx")), out_dir / "model.onnx")


def _fuse_and_save(model, path: Path) -> None:
    """The onnxruntime-only fusions (backends/onnx_fusion.py), last: onnx.checker does not know their kernels."""
    import onnx

    from backends.onnx_fusion import fuse_rms_norms

    fuse_rms_norms(model)
    onnx.save_model(model, str(path))


def _nbits_quantizer(source: Path, bits: int, *, gathers: bool):
    """onnxruntime's MatMulNBits quantizer over every float MatMul with a constant weight (and, for 4 bits with
    `gathers`, the token-embedding Gather), as NBITS_PARAMS says."""
    import logging

    from onnxruntime.quantization import QuantFormat
    from onnxruntime.quantization.matmul_nbits_quantizer import DefaultWeightOnlyQuantConfig, MatMulNBitsQuantizer

    logging.getLogger("onnxruntime.quantization.matmul_nbits_quantizer").setLevel(logging.ERROR)
    config = DefaultWeightOnlyQuantConfig(
        block_size=NBITS_PARAMS["block_size"], is_symmetric=NBITS_PARAMS["symmetric"],
        accuracy_level=NBITS_PARAMS["accuracy_level"], quant_format=QuantFormat.QOperator, bits=bits,
        op_types_to_quantize=("MatMul", "Gather") if bits == 4 and gathers else ("MatMul",),
        quant_axes=(("MatMul", 0), ("Gather", 1)),
    )
    return MatMulNBitsQuantizer(str(source), algo_config=config)


def _quantize_nbits(fp32_dir: Path, out_dir: Path, bits: int) -> None:
    quantizer = _nbits_quantizer(fp32_dir / "model.onnx", bits, gathers=True)
    quantizer.process()
    model = quantizer.model.model
    if bits == 8:
        _quantize_gathers_8bit(model, NBITS_PARAMS["block_size"])
    if not any(node.op_type == "MatMulNBits" for node in model.graph.node):
        raise EmbedgateError(f"MatMulNBits quantization left no MatMul quantized in {fp32_dir / 'model.onnx'}")
    _fuse_and_save(model, out_dir / "model.onnx")


def _quantize_gathers_8bit(model, block_size: int) -> None:
    """Every Gather of a constant 2-D fp32 table (the token, position and type embeddings) as GatherBlockQuantized
    with uint8 data: symmetric int8 per block of `block_size` along the row, stored offset by 128 (the op's default
    zero point for 8 bits)."""
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    tables = {init.name: init for init in model.graph.initializer}
    for index, node in enumerate(list(model.graph.node)):
        table = tables.get(node.input[0]) if node.op_type == "Gather" else None
        axis = next((helper.get_attribute_value(a) for a in node.attribute if a.name == "axis"), 0)
        if table is None or len(table.dims) != 2 or table.dims[1] % block_size or axis != 0:
            continue
        data = numpy_helper.to_array(table).astype(np.float32)
        blocks = data.reshape(data.shape[0], -1, block_size)
        scales = np.abs(blocks).max(axis=2) / 127.0
        scales[scales == 0] = 1.0
        quantized = (np.clip(np.rint(blocks / scales[..., None]), -127, 127) + 128).astype(np.uint8)
        model.graph.initializer.extend([
            numpy_helper.from_array(quantized.reshape(data.shape), table.name + "_Q8"),
            numpy_helper.from_array(scales.astype(np.float32), table.name + "_scales"),
        ])
        model.graph.node.remove(node)
        model.graph.node.insert(index, helper.make_node(
            "GatherBlockQuantized", [table.name + "_Q8", node.input[1], table.name + "_scales"], list(node.output),
            name=(node.name or table.name) + "_Q8", domain="com.microsoft", bits=8, block_size=block_size,
            gather_axis=0, quantize_axis=1))
        model.graph.initializer.remove(table)
    onnx.checker.check_model(model, full_check=False)


def build_fp32(ctx: BuildContext) -> CachedArtifact:
    params = export_params(ctx.model)
    key = cache_key(source=ctx.model.content_hash, backend="onnx-fp32", params=params, versions=_versions())
    return ctx.cache.get_or_build(
        "onnx-fp32", key, lambda out: _export(ctx.model, out, params),
        {"source_model": str(ctx.model.path), "source_sha256": ctx.model.content_hash, "params": params},
    )


def build_int8(ctx: BuildContext) -> tuple[CachedArtifact, float]:
    fp32 = build_fp32(ctx)
    key = cache_key(source=fp32.manifest["files"]["model.onnx"]["sha256"], backend="onnx-int8",
                    params=INT8_PARAMS, versions=_versions())
    int8 = ctx.cache.get_or_build(
        "onnx-int8", key, lambda out: _quantize(fp32.path, out),
        {"source_model": str(ctx.model.path), "source_sha256": ctx.model.content_hash, "params": INT8_PARAMS},
    )
    return int8, fp32.build_seconds


def build_nbits(ctx: BuildContext, bits: int) -> tuple[CachedArtifact, float]:
    fp32 = build_fp32(ctx)
    name, params = f"onnx-q{bits}w", dict(NBITS_PARAMS, bits=bits)
    key = cache_key(source=fp32.manifest["files"]["model.onnx"]["sha256"], backend=name, params=params,
                    versions=_versions())
    built = ctx.cache.get_or_build(
        name, key, lambda out: _quantize_nbits(fp32.path, out, bits),
        {"source_model": str(ctx.model.path), "source_sha256": ctx.model.content_hash, "params": params},
    )
    return built, fp32.build_seconds


def build_int8_static(ctx: BuildContext) -> tuple[CachedArtifact, float]:
    from backends import static_int8

    return static_int8.build(ctx, "onnx-int8-static", static_int8.ONNX_STATIC_PARAMS, static_int8.quantize_onnx,
                             _versions())


def artifact_params(manifest: dict[str, Any]) -> dict[str, Any]:
    """What the report shows of a built artifact: its build parameters, the facts its build recorded, and the
    calibration corpus it learned its scales from."""
    params = {**manifest.get("params", {}), **manifest.get("facts", {})}
    calibration = manifest.get("calibration_corpus")
    if calibration:
        left_out = calibration.get("left_out", 0)
        params["calibration_corpus"] = calibration["name"] + (
            f" (minus {left_out} texts found in gated test splits)" if left_out else "")
    return params


class GraphFeed:
    """Texts to the int64 inputs of an exported graph, through the Rust tokenizer itself set up as the transformers
    call would be (truncation at the model's max, padding to the longest): the same ids without transformers'
    per-call Python, as a lean server would call it. Shared by the onnxruntime and OpenVINO backends."""

    COLUMNS = {"input_ids": "ids", "attention_mask": "attention_mask", "token_type_ids": "type_ids"}

    def __init__(self, tokenizer, max_length: int, names: list[str]):
        self.names = names
        self.fast = tokenizer.backend_tokenizer
        self.fast.enable_truncation(max_length)
        self.fast.enable_padding(pad_id=tokenizer.pad_token_id, pad_token=tokenizer.pad_token,
                                 pad_type_id=tokenizer.pad_token_type_id)

    def __call__(self, texts: list[str]) -> dict[str, np.ndarray]:
        encodings = self.fast.encode_batch(texts)
        return {name: np.array([getattr(e, self.COLUMNS[name]) for e in encodings], dtype=np.int64)
                for name in self.names}


class OnnxBackend(BaseBackend):
    def __init__(self, name: str, ctx: BuildContext, onnx_file: Path, metadata: BackendMetadata, *,
                 one_text_per_call: bool = False):
        import onnxruntime as ort
        from transformers import AutoTokenizer

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = ctx.threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.log_severity_level = 3
        # Spinning is set on purpose, not left to the default: see SPINNING.
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if SPINNING else "0")
        try:
            self.session = ort.InferenceSession(str(onnx_file), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types for bad files
            raise EmbedgateError(f"{onnx_file}: not a loadable ONNX model ({str(exc).splitlines()[0][:200]})") from exc
        self.tokenizer = AutoTokenizer.from_pretrained(str(ctx.model.path), local_files_only=True, trust_remote_code=False)
        self.input_names = [i.name for i in self.session.get_inputs()]
        expected = input_names(self.tokenizer)
        if sorted(self.input_names) != sorted(expected):
            raise EmbedgateError(
                f"{onnx_file}: graph inputs {self.input_names} do not match the tokenizer's {expected}"
            )
        self.feed = GraphFeed(self.tokenizer, ctx.model.max_seq_length, self.input_names)
        dimension = int(self.session.get_outputs()[0].shape[-1])
        metadata.params.update(
            graph_optimization_level="ORT_ENABLE_ALL", intra_op_threads=ctx.threads, inter_op_threads=1,
            execution_mode="sequential", allow_spinning=SPINNING,
        )
        super().__init__(name, ctx.model, dimension, metadata, one_text_per_call=one_text_per_call)

    def deployed_settings(self) -> dict:
        """The graph's output dimension. Pooling and normalization are inside the graph, not declared by it, and the
        tokenizer (so the max length) is the caller's: None, not compared."""
        return {"pooling": None, "dimension": self.dimension, "normalize": None, "max_tokens": None}

    def _embed(self, texts: list[str]) -> np.ndarray:
        return self.session.run(None, self.feed(texts))[0]

    def runtime_call(self, prompted: list[str]) -> object:
        encoded = self.tokenizer(prompted, padding=True, truncation=True, max_length=self.max_tokens,
                                 return_tensors="np")
        return self.session.run(None, {name: encoded[name].astype(np.int64) for name in self.input_names})[0]


def _load(name: str, ctx: BuildContext, build, *, one_text_per_call: bool = False) -> OnnxBackend:
    if ctx.artifact is not None:
        path = ctx.artifact / "model.onnx" if ctx.artifact.is_dir() else ctx.artifact
        if not path.is_file():
            raise EmbedgateError(f"--artifact {name}={ctx.artifact}: no such ONNX file")
        metadata = BackendMetadata(str(path), path.stat().st_size, 0.0, source="user artifact")
    else:
        artifact, build_seconds = build(ctx)
        path = artifact.path / "model.onnx"
        metadata = BackendMetadata(
            str(path), artifact.size_bytes, 0.0, build_seconds=artifact.build_seconds + build_seconds,
            built_now=artifact.built, source="built" if artifact.built else "cached",
            params=artifact_params(artifact.manifest),
        )
    with Timer() as timer:
        backend = OnnxBackend(name, ctx, path, metadata, one_text_per_call=one_text_per_call)
    backend.metadata.load_seconds = timer.seconds
    return backend


def load_fp32(ctx: BuildContext) -> OnnxBackend:
    return _load("onnx-fp32", ctx, lambda c: (build_fp32(c), 0.0))


def load_int8(ctx: BuildContext) -> OnnxBackend:
    # DynamicQuantizeLinear: one activation scale per tensor (see _base)
    backend = _load("onnx-int8", ctx, build_int8, one_text_per_call=True)
    backend.metadata.params["batching"] = "one text per call (per-tensor activation scales measured at run time)"
    return backend


def load_int8_static(ctx: BuildContext) -> OnnxBackend:
    # static activation scales: a text's vector does not depend on its batch-mates, so batches are real batches
    return _load("onnx-int8-static", ctx, build_int8_static)


def load_q8w(ctx: BuildContext) -> OnnxBackend:
    return _load("onnx-q8w", ctx, lambda c: build_nbits(c, 8))


def load_q4w(ctx: BuildContext) -> OnnxBackend:
    return _load("onnx-q4w", ctx, lambda c: build_nbits(c, 4))
