"""The registry of backends by name: how a backend is described (BackendSpec), loaded, and selected by --backends.

The built-in backends are the `backends` package's; embedgate reaches them through one seam, BUILTIN, a
"module:function" string imported by name when a run (or a cold-start process) asks for the registry. embedgate
itself never imports `backends`, which imports embedgate's protocol: the two packages form no import cycle. A
plugin adds its own backends through the `pytest_embedgate_register_backends` hook.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from embedgate import MissingDependency, UsageError
from embedgate.protocol import BuildContext, EmbeddingBackend

REFERENCE = "torch-fp32"
DEFAULT_BASELINE = "torch-int8"
# The seam to the built-in backends: a function returning their Registry, imported by name (see the docstring)
BUILTIN = "backends:builtin_registry"


def resolve(target: str) -> Any:
    """The object a "module:attribute" string names, its module imported now."""
    module_name, _, attr = target.partition(":")
    return getattr(importlib.import_module(module_name), attr)


@dataclass(frozen=True)
class BackendSpec:
    name: str
    runtime: str  # the runtime it runs on (torch, onnx, openvino, gguf, model2vec): thresholds may be set per runtime
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
        factory = resolve(self.factory) if isinstance(self.factory, str) else self.factory
        backend = factory(ctx)
        if not isinstance(backend, EmbeddingBackend):
            raise TypeError(f"backend {self.name}: factory returned {type(backend).__name__}, not an EmbeddingBackend")
        return backend


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
    """A new registry of the built-in backends (through BUILTIN); the run's plugins add theirs to it."""
    registry = resolve(BUILTIN)()
    if not isinstance(registry, Registry):
        raise TypeError(f"{BUILTIN} returned {type(registry).__name__}, not a Registry")
    return registry
