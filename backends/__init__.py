"""Embedding backends: the protocol every backend meets, and the registry of backends by name.

Each backend module imports its runtime (torch, onnxruntime, llama_cpp, model2vec) inside its loader,
so that listing or selecting backends never needs an optional extra that is not installed.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from embedgate import MissingDependency, UsageError

if TYPE_CHECKING:
    import numpy as np

    from embedgate.cache import ArtifactCache
    from embedgate.model import ModelSpec


@dataclass
class BackendMetadata:
    """What the report says about a loaded backend besides its measurements."""

    artifact_path: str
    size_bytes: int
    load_seconds: float
    build_seconds: float = 0.0
    built_now: bool = False
    source: str = "built"  # "reference", "built", "cached", "user artifact", "in memory"
    params: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class EmbeddingBackend(Protocol):
    """An embedding model behind some runtime; what every gate talks to."""

    name: str
    dimension: int
    max_tokens: int
    metadata: BackendMetadata

    def encode(self, texts: Sequence[str], *, role: str | None = None, batch_size: int = 32) -> np.ndarray:
        """L2-normalised float32 vectors, shape (len(texts), dimension), the model's prompt for `role` applied."""
        ...


# Optional capabilities: what a backend may offer beyond EmbeddingBackend, and the gates that use it. The built-in
# backends have all three (backends._base.BaseBackend); a plugin's backend without one skips that gate or, for
# TimedCall, is timed through encode().


@runtime_checkable
class RawOutput(Protocol):
    """The runtime's own output before encode()'s checks and normalisation: contract/raw_output checks its shape,
    dtype, NaN/inf and zero rows (a graph that emits NaN must not hide behind the normalisation)."""

    runtime_dimension: int  # the dims the runtime returns (what --truncate-dim cuts afterwards)

    def encode_raw(self, texts: Sequence[str], *, role: str | None = None, batch_size: int = 32) -> np.ndarray: ...

    def embeds_nothing(self, text: str) -> bool:
        """True where a zero vector is the right answer for this prompted text (a static model's unknown words)."""
        ...


@runtime_checkable
class DeployedSettings(Protocol):
    """What the artifact itself would do when deployed: {"pooling", "dimension", "normalize", "max_tokens"}, None
    for what it leaves to its caller; contract/deployed_settings compares them with the reference pipeline's."""

    def deployed_settings(self) -> dict[str, Any]: ...


@runtime_checkable
class TimedCall(Protocol):
    """The runtime's work alone, as the latency gates time it: already-prompted texts in calls of `batch_size`,
    raw output; prompts, input checks and normalisation stay outside the clock."""

    model: ModelSpec  # whose prompt_for(role) the timed texts get beforehand

    def embed_prompted(self, prompted: list[str], batch_size: int) -> np.ndarray: ...


@dataclass(frozen=True)
class BuildOptions:
    """The run's options a build may depend on, typed and frozen (a backend cannot change them for the next one).
    A build whose artifact depends on one puts it in its cache key (model2vec-tuned: its corpus)."""

    distill_corpus: Path | None = None  # --distill-corpus: model2vec-tuned's corpus, one text a line
    calibration_corpus: Path | None = None  # --calibration-corpus: the static INT8 builds' calibration text
    data_dir: Path | None = None  # --data-dir: both corpora fall back to STS-B train+dev under it
    probe: bool = True  # GGUF: embed one text at the file's context length in a subprocess after loading


@dataclass
class BuildContext:
    """Everything a backend factory may use: the reference model, the cache, the thread budget."""

    model: ModelSpec
    cache: ArtifactCache
    threads: int
    artifact: Path | None = None  # a user-supplied artifact (--artifact NAME=PATH): load it, never build or modify it
    options: BuildOptions = field(default_factory=BuildOptions)


@dataclass(frozen=True)
class BackendSpec:
    name: str
    family: str  # tolerances and thresholds may be set per family
    extra: str  # the pyproject extra that installs its runtime
    shares_reference_space: bool  # False for a model whose vectors are not comparable with the reference's
    factory: str | Callable[[BuildContext], EmbeddingBackend]  # "module:function" or a callable
    description: str
    requires: tuple[str, ...] = ()  # modules whose absence means "extra not installed"
    accepts_artifact: bool = True
    compute: str = "fp32"  # the roofline peak its work is held to: "fp32", "int8", or "" (no GEMMs: a lookup)

    @property
    def builtin(self) -> bool:
        """One of embedgate's own (a "module:function" factory a fresh process can import, e.g. for the cold start),
        not one a plugin registered."""
        return isinstance(self.factory, str)

    def load(self, ctx: BuildContext) -> EmbeddingBackend:
        for module in self.requires:
            if importlib.util.find_spec(module) is None:
                raise MissingDependency(self.extra, module)
        if ctx.artifact is not None and not self.accepts_artifact:
            raise UsageError(f"--artifact {self.name}=...: backend {self.name} is built in memory and takes no artifact")
        factory = self.factory
        if isinstance(factory, str):
            module_name, _, attr = factory.partition(":")
            factory = getattr(importlib.import_module(module_name), attr)
        backend = factory(ctx)
        if not isinstance(backend, EmbeddingBackend):
            raise TypeError(f"backend {self.name}: factory returned {type(backend).__name__}, not an EmbeddingBackend")
        return backend


REFERENCE = "torch-fp32"
DEFAULT_BASELINE = "torch-int8"

_BUILTIN = (
    BackendSpec("torch-fp32", "torch", "torch", True, "backends.torch_fp32:load",
                "the reference: the model's full sentence-transformers pipeline in fp32 PyTorch",
                requires=("torch", "sentence_transformers"), accepts_artifact=False),
    BackendSpec("torch-int8", "torch", "torch", True, "backends.torch_int8:load",
                "PyTorch dynamic INT8 quantization of every Linear layer (quantized at load)",
                requires=("torch", "sentence_transformers"), accepts_artifact=False, compute="int8"),
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


class Registry:
    """Backends by name, in the order they were registered (the report's order)."""

    def __init__(self, specs: Sequence[BackendSpec] = ()):
        self._specs: dict[str, BackendSpec] = {}
        for spec in specs:
            self.register(spec)

    def register(self, spec: BackendSpec, *, replace: bool = False) -> None:
        if spec.name in self._specs and not replace:
            raise ValueError(f"backend {spec.name} is registered already")
        self._specs[spec.name] = spec

    def __getitem__(self, name: str) -> BackendSpec:
        try:
            return self._specs[name]
        except KeyError:
            raise UsageError(f"unknown backend {name!r}; known backends: {', '.join(self._specs)}") from None

    def __contains__(self, name: object) -> bool:
        return name in self._specs

    def __iter__(self):
        return iter(self._specs.values())

    def names(self) -> list[str]:
        return list(self._specs)

    def select(self, value: str) -> list[str]:
        """Parse a --backends value: a comma list or 'all'; unknown names are a usage error."""
        if value.strip() == "all":
            return self.names()
        names = [part.strip() for part in value.split(",") if part.strip()]
        if not names:
            raise UsageError("--backends: give a comma list of backend names or 'all'")
        unknown = [name for name in names if name not in self._specs]
        if unknown:
            raise UsageError(f"--backends: unknown backend {', '.join(unknown)}; known backends: {', '.join(self._specs)}")
        return list(dict.fromkeys(names))


def builtin_registry() -> Registry:
    return Registry(_BUILTIN)


class TruncatedBackend:
    """A backend's vectors cut to their first `dimension` components, then L2-renormalised: a Matryoshka model
    (EmbeddingGemma: 768, 512, 256, 128) shipped truncated to cut index size. `--truncate-dim` wraps every backend
    of the run in one where the session loads it, the reference included, built-in or registered by a plugin.

    The wrapped backend's encode() runs as deployed and is checked at full size before the cut (BaseBackend checks
    the runtime's raw output; here, what the protocol promises: (n, D) finite float32 unit rows, so renormalising
    hides no defect). Everything else (encode_raw, embed_prompted, deployed_settings, metadata, ...) is the wrapped
    backend's: the contract's raw-output gates see the runtime's full-size output, and the latency gates time the
    runtime alone (the cut, a slice and a norm, stays off the clock)."""

    def __init__(self, inner: EmbeddingBackend, dimension: int):
        self.untruncated = inner
        self.name = inner.name
        self.runtime_dimension = int(inner.dimension)
        self.dimension = min(int(dimension), self.runtime_dimension)  # a smaller space (a static model's) is kept
        self.max_tokens = inner.max_tokens
        self.metadata = inner.metadata

    def __getattr__(self, attr: str) -> Any:
        if attr == "untruncated":  # not set yet (copy, pickle): no recursion
            raise AttributeError(attr)
        return getattr(self.untruncated, attr)

    def __repr__(self) -> str:
        return f"<truncated to {self.dimension} of {self.runtime_dimension} dims: {self.untruncated!r}>"

    def encode(self, texts: Sequence[str], *, role: str | None = None, batch_size: int = 32) -> np.ndarray:
        import numpy as np

        from backends._base import EmbeddingError, l2_normalize

        full = self.untruncated.encode(texts, role=role, batch_size=batch_size)
        what = f"{self.name}: before truncation to {self.dimension} dims, its full-size vectors"
        if not isinstance(full, np.ndarray) or full.ndim != 2 or full.shape[1] != self.runtime_dimension:
            raise EmbeddingError(f"{what} have shape {getattr(full, 'shape', type(full).__name__)}, "
                                 f"expected (n, {self.runtime_dimension})")
        if full.dtype != np.float32:
            raise EmbeddingError(f"{what} are {full.dtype}, expected float32")
        norms = np.linalg.norm(full, axis=1)
        if len(full) and not (np.isfinite(norms).all() and np.abs(norms - 1.0).max() <= 1e-3):
            raise EmbeddingError(f"{what} have norms {np.nanmin(norms):.4f}..{np.nanmax(norms):.4f}, "
                                 "expected 1 (renormalising after the cut would hide it)")
        cut = l2_normalize(full[:, : self.dimension])  # the renormalisation encode() applies, zero rows left zero
        zero = np.flatnonzero(~cut.any(axis=1))
        if zero.size:
            raise EmbeddingError(f"{self.name}: the first {self.dimension} dims of text {int(zero[0])}'s vector are "
                                 "all zero: nothing to renormalise")
        return cut


def untruncated(backend: EmbeddingBackend) -> EmbeddingBackend:
    """The full-size backend behind a TruncatedBackend (the quality gates' reference), else the backend itself."""
    return getattr(backend, "untruncated", backend)
