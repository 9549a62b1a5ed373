"""torch-int8-compiled: PyTorch 2 export quantization (PT2E), compiled ahead of time by AOTInductor.

PyTorch's own INT8 path for x86 CPUs, not the eager dynamic quantization torch-int8 stands for: the whole pipeline
(transformer, pooling, Dense, Normalize, eager attention) captured by `torch.export` with a dynamic batch and
sequence, quantized by torchao's `X86InductorQuantizer` (static: int8 weights per output channel, uint8 activations
per tensor with scales calibrated ahead of time), lowered by inductor with freezing to oneDNN int8 GEMMs, and
packaged by AOTInductor (`model.pt2`: a shared library and its constants, loaded by `aoti_load_package` without
compiling, pickling, Python model code or torchao). Static scales make a text's vector independent of its
batch-mates, so it batches for real (the contract's batch-invariance gate checks it).

Calibration text: the same corpus and sample as the static ONNX / OpenVINO builds (backends/static_int8.py), never a
gated test text. The package is compiled for this machine's vector ISA, which is in the cache key.

Measured on all-MiniLM-L6-v2 (docs/design/static-int8.md): torchao 0.18's linear + unary (GELU) fusion annotation
raises IndexError on a partition with no output node, so that one annotation is skipped (every Linear is still
quantized by the plain linear annotation; the GELU runs in float between two int8 GEMMs).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from backends import BackendMetadata, BuildContext
from backends._base import BaseBackend, Timer
from embedgate import EmbedgateError, MissingDependency
from embedgate.cache import CachedArtifact, cache_key

NAME = "torch-int8-compiled"
PACKAGE = "model.pt2"
PARAMS: dict[str, Any] = {
    "exporter": "torch.export (dynamic batch and sequence), decomposed to ATen with Linear kept",
    "quantizer": "torchao X86InductorQuantizer, static, torch.nn.Linear only", "weights": "int8 per output channel",
    "activations": "uint8 per tensor (HistogramObserver)", "linear_unary_fusion": "not annotated (torchao IndexError)",
    "compiler": "AOTInductor (aoti_compile_and_package), freezing",
    # eager for every model: the banded attention the ONNX export uses on sliding-window models sizes its blocks
    # from the data (.item()), which inductor cannot lower (GuardOnDataDependentSymNode in its bmm lowering); eager
    # attention under the model's own sliding-window mask gives the same vectors, scoring every pair
    "attn_implementation": "eager",
}
HEARTBEAT_SECONDS = 30.0


def _quantizer_imports():
    """torchao's PT2E quantizer (the build's, not the package's: loading needs torch alone), with the import-time
    notices kept off the terminal (torchao's CUDA-only kernels that do not load on a CPU build; torch's pytree
    deprecation lines)."""
    for logger in ("torchao", "torch.utils._pytree"):
        logging.getLogger(logger).setLevel(logging.ERROR)
    try:
        with quiet():
            import torchao.quantization.pt2e.quantizer.x86_inductor_quantizer as x86
            from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
    except ImportError as exc:
        raise MissingDependency("compiled", exc.name or "torchao") from exc
    return x86, prepare_pt2e, convert_pt2e


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """torch's and torchao's deprecation and advice warnings while importing, exporting and compiling (e.g.
    inductor's import of torch.jit.script_method): notices about the toolchain, not about the artifact, which the
    gates judge."""
    with warnings.catch_warnings():
        for category in (DeprecationWarning, FutureWarning, UserWarning):
            warnings.simplefilter("ignore", category)
        yield


def _versions() -> dict[str, str]:
    import importlib.metadata

    import torch
    from torch._inductor import cpu_vec_isa

    return {"torch": torch.__version__, "torchao": importlib.metadata.version("torchao"),
            "transformers": importlib.metadata.version("transformers"),
            "vec_isa": str(cpu_vec_isa.pick_vec_isa())}


@contextlib.contextmanager
def heartbeat(log: Callable[[str], None], what: str, every: float = HEARTBEAT_SECONDS) -> Iterator[None]:
    """A line every `every` seconds while one long blocking call runs (an AOTInductor compile: a minute for
    MiniLM, several for a 300M model), so the terminal says what the run is doing."""
    done = threading.Event()
    start = time.perf_counter()

    def beat() -> None:
        while not done.wait(every):
            log(f"embedgate: {what}: {time.perf_counter() - start:.0f} s so far")

    thread = threading.Thread(target=beat, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()
        log(f"embedgate: {what}: done in {time.perf_counter() - start:.0f} s")


def _compile(ctx: BuildContext, texts: list[str], out: Path) -> dict[str, Any]:
    """Export -> prepare -> calibrate -> convert -> export -> AOTInductor package, in `out`."""
    import torch
    import transformers
    from sentence_transformers import SentenceTransformer

    from backends import static_int8
    from backends.onnx_runtime import input_names

    x86, prepare_pt2e, convert_pt2e = _quantizer_imports()
    log = ctx.cache.log
    transformers.logging.set_verbosity_error()
    torch.set_num_threads(ctx.threads)
    st = SentenceTransformer(str(ctx.model.path), device="cpu", trust_remote_code=False, local_files_only=True,
                             model_kwargs={"attn_implementation": PARAMS["attn_implementation"]})
    st.eval()
    names = input_names(st.tokenizer)

    class Pipeline(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.st = st

        def forward(self, *inputs):
            return self.st(dict(zip(names, inputs, strict=True)))["sentence_embedding"]

    class Quantizer(x86.X86InductorQuantizer):  # type: ignore[name-defined]
        def _annotate_linear_unary(self, *args: Any, **kwargs: Any) -> None:
            """Skipped: raises IndexError on these graphs (module docstring); _annotate_linear quantizes them."""

    sample = st.tokenizer(["a short text", "a somewhat longer second text"], padding=True, return_tensors="pt")
    args = tuple(sample[n] for n in names)
    batch = torch.export.Dim("batch", min=1)
    sequence = torch.export.Dim("sequence", min=1, max=ctx.model.max_seq_length)
    shapes = tuple({0: batch, 1: sequence} for _ in names)
    quantizer = Quantizer()
    # Linear layers only, as the static ONNX build: the global config also annotates matmuls and elementwise
    # multiplications, among them integer ones (XLM-R's position ids, MPNet's relative buckets), which its
    # HistogramObserver cannot take ("histogram_cpu" not implemented for 'Int')
    quantizer.set_module_type_qconfig(torch.nn.Linear, x86.get_default_x86_inductor_quantization_config(is_dynamic=False))
    feeds = static_int8.feeds(ctx, static_int8.calibration_texts(texts))
    with torch.no_grad(), quiet():
        log(f"embedgate: {NAME}: torch.export of the pipeline")
        program = torch.export.export(Pipeline().eval(), args, dynamic_shapes={"inputs": shapes})
        # Decomposed to ATen before quantizing, Linear kept whole (the quantizer's pattern): the training IR keeps
        # functorch's vmap of transformers' mask builders (Gemma3's bidirectional mask), which the export of the
        # converted graph cannot trace again
        table = torch.export.default_decompositions()
        table.pop(torch.ops.aten.linear.default, None)
        prepared = prepare_pt2e(program.run_decompositions(table).module(), quantizer)
        for index, feed in enumerate(feeds, 1):
            prepared(*(torch.from_numpy(feed[n]) for n in names))
            if index % 64 == 0 or index == len(feeds):
                log(f"embedgate: {NAME}: calibrating: {index}/{len(feeds)} texts")
        converted = convert_pt2e(prepared)
        linears = sum(str(node.target) == "quantized_decomposed.dequantize_per_channel.default"
                      for node in converted.graph.nodes)
        if not linears:
            raise EmbedgateError(f"{NAME}: X86InductorQuantizer quantized no Linear of {ctx.model.path}")
        program = torch.export.export(converted, args, dynamic_shapes=shapes)
        dimension = int(converted(*args).shape[-1])
        import torch._inductor

        # under no_grad: inductor freezes (folds and prepacks the int8 weights into oneDNN qlinear calls) only for
        # inference; with grad enabled the same program compiled to fp32 addmm calls (docs/design/static-int8.md)
        with heartbeat(log, f"{NAME}: compiling with AOTInductor"), torch._inductor.config.patch({"freezing": True}):
            torch._inductor.aoti_compile_and_package(program, package_path=str(out / PACKAGE))
    check_int8(out / PACKAGE)
    return {"quantized_linears": linears, "calibration_texts": len(feeds), "inputs": names, "dimension": dimension}


def check_int8(package: Path) -> None:
    """Refuse a package whose wrapper (the C++ that calls the kernels) reaches no oneDNN int8 linear: inductor then
    folded the quantized weights back to fp32, and gating it as INT8 would judge another build."""
    import zipfile

    with zipfile.ZipFile(package) as archive:
        source = "".join(archive.read(n).decode("utf-8", "replace") for n in archive.namelist()
                         if n.endswith(".wrapper.cpp"))
    if "qlinear" not in source:
        raise EmbedgateError(f"{NAME}: {package} calls no oneDNN int8 linear (inductor did not keep the quantized "
                             "weights): an fp32 build, not gated as INT8")


def build(ctx: BuildContext) -> CachedArtifact:
    from backends import static_int8

    chosen, texts, left_out = static_int8.corpus(ctx, NAME)
    params = {**PARAMS, "calibration": static_int8.CALIBRATION}
    calibration = static_int8.corpus_manifest(chosen, left_out)
    key = cache_key(source=ctx.model.content_hash, backend=NAME, params=params, corpus=calibration,
                    versions=_versions())
    facts: dict[str, Any] = {}
    return ctx.cache.get_or_build(
        NAME, key, lambda out: facts.update(_compile(ctx, texts, out)),
        {"source_model": str(ctx.model.path), "source_sha256": ctx.model.content_hash, "params": params,
         "calibration_corpus": calibration, "facts": facts},
    )


class CompiledBackend(BaseBackend):
    """An AOTInductor package called with the tokenizer's int64 tensors; it returns the pipeline's vectors."""

    def __init__(self, ctx: BuildContext, package: Path, metadata: BackendMetadata):
        import torch
        import torch._inductor
        from transformers import AutoTokenizer

        from backends.onnx_runtime import GraphFeed, input_names

        torch.set_num_threads(ctx.threads)
        try:
            self.runner = torch._inductor.aoti_load_package(str(package))
        except Exception as exc:  # the loader raises RuntimeError (and others) for a file that is no package
            raise EmbedgateError(f"{package}: not a loadable AOTInductor package "
                                 f"({' '.join(str(exc).split())[:200]})") from exc
        self.torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(str(ctx.model.path), local_files_only=True, trust_remote_code=False)
        self.names = input_names(self.tokenizer)
        self.feed = GraphFeed(self.tokenizer, ctx.model.max_seq_length, self.names)
        try:
            probe = self._call(self.feed(["a probe text"]))
        except Exception as exc:  # a package compiled for other inputs fails its first call
            raise EmbedgateError(f"{package}: the package does not take this model's tokenizer inputs {self.names} "
                                 f"({' '.join(str(exc).split())[:200]})") from exc
        if probe.ndim != 2 or probe.shape[0] != 1:
            raise EmbedgateError(f"{package}: the package returned shape {probe.shape} for one text, not (1, dim)")
        metadata.params.update(torch_threads=torch.get_num_threads())
        super().__init__(NAME, ctx.model, int(probe.shape[1]), metadata)

    def _call(self, feed: dict[str, np.ndarray]) -> np.ndarray:
        out = self.runner(*(self.torch.from_numpy(feed[n]) for n in self.names))
        if isinstance(out, (list, tuple)):
            out = out[0]
        return out.numpy()

    def deployed_settings(self) -> dict:
        """The package's output dimension; pooling and normalization are compiled into it, not declared by it, and
        the tokenizer (so the max length) is the caller's: None, not compared."""
        return {"pooling": None, "dimension": self.dimension, "normalize": None, "max_tokens": None}

    def _embed(self, texts: list[str]) -> np.ndarray:
        return self._call(self.feed(texts))

    def runtime_call(self, prompted: list[str]) -> object:
        encoded = self.tokenizer(prompted, padding=True, truncation=True, max_length=self.max_tokens,
                                 return_tensors="np")
        return self._call({n: encoded[n].astype(np.int64) for n in self.names})


def load(ctx: BuildContext) -> CompiledBackend:
    from backends.onnx_runtime import artifact_params

    if ctx.artifact is not None:
        path = ctx.artifact / PACKAGE if ctx.artifact.is_dir() else ctx.artifact
        if not path.is_file():
            raise EmbedgateError(f"--artifact {NAME}={ctx.artifact}: no such AOTInductor package")
        metadata = BackendMetadata(str(path), path.stat().st_size, 0.0, source="user artifact")
    else:
        artifact = build(ctx)
        path = artifact.path / PACKAGE
        metadata = BackendMetadata(
            str(path), artifact.size_bytes, 0.0, build_seconds=artifact.build_seconds,
            built_now=artifact.built, source="built" if artifact.built else "cached",
            params=artifact_params(artifact.manifest),
        )
    with Timer() as timer:
        backend = CompiledBackend(ctx, path, metadata)
    backend.metadata.load_seconds = timer.seconds
    return backend
