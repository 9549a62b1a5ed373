"""The built-in embedding backends: their specs, by name (the registry's order is the report's).

The protocol they meet (EmbeddingBackend and its optional capabilities, BuildContext) and the registry (BackendSpec,
Registry) are embedgate's (embedgate/protocol.py, embedgate/registry.py), re-exported here for the backends'
modules and for plugins written against them. embedgate reaches this package only through
embedgate.registry.BUILTIN ("backends:builtin_registry"), imported by name.

Each backend module imports its runtime (torch, onnxruntime, llama_cpp, model2vec) inside its loader,
so that listing or selecting backends never needs an optional extra that is not installed.
"""

from __future__ import annotations

from embedgate.protocol import (
    BackendMetadata,
    BuildContext,
    BuildOptions,
    DeployedSettings,
    EmbeddingBackend,
    RawOutput,
    TimedCall,
)
from embedgate.registry import DEFAULT_BASELINE, REFERENCE, BackendSpec, Registry
from embedgate.truncation import TruncatedBackend, untruncated

__all__ = [
    "DEFAULT_BASELINE", "REFERENCE", "BackendMetadata", "BackendSpec", "BuildContext", "BuildOptions", "DeployedSettings",
    "EmbeddingBackend", "RawOutput", "Registry", "TimedCall", "TruncatedBackend", "builtin_registry", "untruncated",
]

_BUILTIN = (
    BackendSpec("torch-fp32", "torch", "torch", True, "backends.torch_fp32:load",
                "the reference: the model's full sentence-transformers pipeline in fp32 PyTorch",
                requires=("torch", "sentence_transformers"), accepts_artifact=False),
    BackendSpec("torch-int8", "torch", "torch", True, "backends.torch_int8:load",
                "PyTorch dynamic INT8 quantization of every Linear layer (quantized at load)",
                requires=("torch", "sentence_transformers"), accepts_artifact=False, compute="int8"),
    BackendSpec("torch-int8-compiled", "torch", "compiled", True, "backends.torch_compiled:load",
                "PyTorch 2 export quantization (torchao X86InductorQuantizer, static INT8, activations calibrated on "
                "--calibration-corpus, else STS-B train+dev) compiled ahead of time by AOTInductor",
                requires=("torch", "torchao", "sentence_transformers"), compute="int8"),
    BackendSpec("onnx-fp32", "onnx", "onnx", True, "backends.onnx_runtime:load_fp32",
                "the whole pipeline exported to one ONNX graph, run by onnxruntime",
                requires=("onnxruntime", "transformers")),
    BackendSpec("onnx-int8", "onnx", "onnx", True, "backends.onnx_runtime:load_int8",
                "the ONNX graph with onnxruntime dynamic INT8 quantization of its MatMuls",
                requires=("onnxruntime", "transformers"), compute="int8"),
    BackendSpec("onnx-int8-static", "onnx", "onnx", True, "backends.onnx_runtime:load_int8_static",
                "the ONNX graph with onnxruntime static INT8 (QDQ): SmoothQuant-migrated, activation scales calibrated "
                "on --calibration-corpus (else STS-B train+dev), FFN down projections as 8-bit MatMulNBits",
                requires=("onnxruntime", "transformers"), compute="int8"),
    BackendSpec("onnx-q8w", "onnx", "onnx", True, "backends.onnx_runtime:load_q8w",
                "the ONNX graph with 8-bit weight-only MatMulNBits (blocks of 32, int8 compute) and 8-bit embeddings",
                requires=("onnxruntime", "transformers"), compute="int8"),
    BackendSpec("onnx-q4w", "onnx", "onnx", True, "backends.onnx_runtime:load_q4w",
                "the ONNX graph with 4-bit weight-only MatMulNBits (blocks of 32, int8 compute) and 4-bit embeddings",
                requires=("onnxruntime", "transformers"), compute="int8"),
    BackendSpec("openvino-fp32", "openvino", "openvino", True, "backends.openvino_runtime:load_fp32",
                "the ONNX graph as OpenVINO IR, run by OpenVINO's CPU plugin in f32",
                requires=("openvino", "transformers")),
    BackendSpec("openvino-int8", "openvino", "openvino", True, "backends.openvino_runtime:load_int8",
                "OpenVINO IR with NNCF INT8 weight compression and the CPU plugin's dynamic activation quantization",
                requires=("openvino", "nncf", "transformers"), compute="int8"),
    BackendSpec("openvino-int8-static", "openvino", "openvino", True, "backends.openvino_runtime:load_int8_static",
                "OpenVINO IR quantized by NNCF post-training quantization (transformer mode), activations calibrated "
                "on --calibration-corpus (else STS-B train+dev)", requires=("openvino", "nncf", "transformers"),
                compute="int8"),
    BackendSpec("gguf-f16", "gguf", "gguf", True, "backends.gguf:load_f16",
                "llama.cpp GGUF in f16 through llama-cpp-python", requires=("llama_cpp",)),
    BackendSpec("gguf-q8_0", "gguf", "gguf", True, "backends.gguf:load_q8_0",
                "llama.cpp GGUF quantized to Q8_0 through llama-cpp-python", requires=("llama_cpp",), compute="int8"),
    BackendSpec("gguf-q4_k_m", "gguf", "gguf", True, "backends.gguf:load_q4_k_m",
                "llama.cpp GGUF quantized to Q4_K_M through llama-cpp-python", requires=("llama_cpp",), compute="int8"),
    BackendSpec("model2vec", "model2vec", "model2vec", False, "backends.model2vec_static:load",
                "a Model2Vec static model distilled from the reference's whole pipeline (Dense folded in, wordfreq "
                "weights)", requires=("model2vec", "wordfreq"), compute=""),
    BackendSpec("model2vec-tuned", "model2vec", "model2vec", False, "backends.model2vec_static:load_tuned",
                "the model2vec student fitted to the reference's sentence vectors on a corpus (--distill-corpus, "
                "else STS-B train+dev)", requires=("model2vec", "wordfreq"), compute=""),
)


def builtin_registry() -> Registry:
    return Registry(_BUILTIN)
