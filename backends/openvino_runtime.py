"""openvino-fp32 and openvino-int8: the project's ONNX export (the whole pipeline) run by OpenVINO's CPU plugin.

openvino-fp32 is that graph read by `openvino.Core.read_model` and saved as OpenVINO IR; openvino-int8 is the IR
with NNCF's INT8 weight compression (symmetric, per output channel), run with the CPU plugin's dynamic
quantization of activations (groups of 32 along a row, so a text's vector does not depend on its batch-mates).

Both pin the inference precision to f32: on a CPU with AVX512-BF16 the CPU plugin otherwise runs in bfloat16 by
default, which is another optimization, with other fidelity, than the one gated here, and would make verdicts
depend on the CPU model. The model is read with `Core.read_model`, not
`openvino.convert_model` (whose converter would look for a telemetry consent).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from backends import BackendMetadata, BuildContext
from backends._base import BaseBackend, Timer
from backends.onnx_runtime import OUTPUT_NAME, GraphFeed, artifact_params, build_fp32, input_names
from embedgate import EmbedgateError
from embedgate.cache import CachedArtifact, cache_key

IR_PARAMS = {"from": "onnx-fp32", "reader": "openvino.Core.read_model", "compress_to_fp16": False}
INT8_PARAMS = dict(IR_PARAMS, weights="nncf.compress_weights INT8_SYM (per output channel)")
RUNTIME_PARAMS = {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": "1"}
DYNAMIC_QUANTIZATION_GROUP_SIZE = 32


def _versions() -> dict[str, str]:
    import openvino

    versions = {"openvino": openvino.get_version()}
    try:
        import nncf

        versions["nncf"] = nncf.__version__
    except ImportError:
        pass
    return versions


def _convert(onnx_file: Path, out_dir: Path, int8: bool) -> None:
    import openvino

    model = openvino.Core().read_model(str(onnx_file))
    if int8:
        try:
            import nncf
        except ImportError as exc:
            from embedgate import MissingDependency

            raise MissingDependency("openvino", "nncf") from exc
        model = nncf.compress_weights(model, mode=nncf.CompressWeightsMode.INT8_SYM)
    openvino.save_model(model, str(out_dir / "model.xml"), compress_to_fp16=False)


def build_static(ctx: BuildContext) -> tuple[CachedArtifact, float]:
    from backends import static_int8

    return static_int8.build(ctx, "openvino-int8-static", static_int8.OPENVINO_STATIC_PARAMS,
                             static_int8.quantize_openvino, _versions())


def build(ctx: BuildContext, int8: bool) -> tuple[CachedArtifact, float]:
    fp32 = build_fp32(ctx)
    name, params = ("openvino-int8", INT8_PARAMS) if int8 else ("openvino-fp32", IR_PARAMS)
    key = cache_key(source=fp32.manifest["files"]["model.onnx"]["sha256"], backend=name, params=params,
                    versions=_versions())
    built = ctx.cache.get_or_build(
        name, key, lambda out: _convert(fp32.path / "model.onnx", out, int8),
        {"source_model": str(ctx.model.path), "source_sha256": ctx.model.content_hash, "params": params},
    )
    return built, fp32.build_seconds


class OpenVinoBackend(BaseBackend):
    def __init__(self, name: str, ctx: BuildContext, model_file: Path, metadata: BackendMetadata, int8: bool):
        import openvino
        from transformers import AutoTokenizer

        core = openvino.Core()
        config = dict(RUNTIME_PARAMS, INFERENCE_NUM_THREADS=str(ctx.threads))
        if int8:
            config["DYNAMIC_QUANTIZATION_GROUP_SIZE"] = str(DYNAMIC_QUANTIZATION_GROUP_SIZE)
        try:
            model = core.read_model(str(model_file))
            self.compiled = core.compile_model(model, "CPU", config)
        except Exception as exc:  # OpenVINO raises RuntimeError subclasses of its own for bad files
            first = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
            raise EmbedgateError(f"{model_file}: not a loadable OpenVINO model ({first})") from exc
        self.request = self.compiled.create_infer_request()
        self.tokenizer = AutoTokenizer.from_pretrained(str(ctx.model.path), local_files_only=True,
                                                       trust_remote_code=False)
        self.input_names = [port.get_any_name() for port in self.compiled.inputs]
        expected = input_names(self.tokenizer)
        if sorted(self.input_names) != sorted(expected):
            raise EmbedgateError(
                f"{model_file}: graph inputs {self.input_names} do not match the tokenizer's {expected}")
        outputs = [port.get_any_name() for port in self.compiled.outputs]
        self.output = self.compiled.output(OUTPUT_NAME if OUTPUT_NAME in outputs else 0)
        dimension = int(self.output.get_partial_shape()[-1].get_length())
        self.feed = GraphFeed(self.tokenizer, ctx.model.max_seq_length, self.input_names)
        metadata.params.update({key.lower(): value for key, value in config.items()})
        metadata.params["openvino"] = openvino.get_version()
        super().__init__(name, ctx.model, dimension, metadata)

    def deployed_settings(self) -> dict:
        """The graph's output dimension; pooling and normalization are inside the graph (as for ONNX)."""
        return {"pooling": None, "dimension": self.dimension, "normalize": None, "max_tokens": None}

    def _embed(self, texts: list[str]) -> np.ndarray:
        feed = self.feed(texts)
        # share_inputs: the arrays are built for this call; the overhead self-test caught a copying `infer` (+96 us
        # of a 355 us call on the tiny model) against the compiled model's own call
        return self.request.infer(feed, share_inputs=True)[self.output]

    def runtime_call(self, prompted: list[str]) -> object:
        encoded = self.tokenizer(prompted, padding=True, truncation=True, max_length=self.max_tokens,
                                 return_tensors="np")
        return self.compiled({name: encoded[name].astype(np.int64) for name in self.input_names})[self.output]


def _load(name: str, ctx: BuildContext, int8: bool, *, static: bool = False) -> OpenVinoBackend:
    if ctx.artifact is not None:
        path = ctx.artifact / "model.xml" if ctx.artifact.is_dir() else ctx.artifact
        if not path.is_file() or path.suffix != ".xml" or not path.with_suffix(".bin").is_file():
            raise EmbedgateError(
                f"--artifact {name}={ctx.artifact}: expected an OpenVINO IR (model.xml beside model.bin)")
        size = path.stat().st_size + path.with_suffix(".bin").stat().st_size
        metadata = BackendMetadata(str(path), size, 0.0, source="user artifact")
    else:
        artifact, upstream_seconds = build_static(ctx) if static else build(ctx, int8)
        path = artifact.path / "model.xml"
        metadata = BackendMetadata(
            str(path), artifact.size_bytes, 0.0, build_seconds=artifact.build_seconds + upstream_seconds,
            built_now=artifact.built, source="built" if artifact.built else "cached",
            params=artifact_params(artifact.manifest),
        )
    with Timer() as timer:
        # static INT8 carries its quantizers in the IR: the CPU plugin's dynamic quantization is for weight-only
        backend = OpenVinoBackend(name, ctx, path, metadata, int8 and not static)
    backend.metadata.load_seconds = timer.seconds
    return backend


def load_fp32(ctx: BuildContext) -> OpenVinoBackend:
    return _load("openvino-fp32", ctx, int8=False)


def load_int8(ctx: BuildContext) -> OpenVinoBackend:
    return _load("openvino-int8", ctx, int8=True)


def load_int8_static(ctx: BuildContext) -> OpenVinoBackend:
    return _load("openvino-int8-static", ctx, int8=True, static=True)
