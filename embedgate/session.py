"""The state of one embedgate run: the model, the selected backends, loaded backends, thresholds, results."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from backends import BuildContext, EmbeddingBackend, Registry, TruncatedBackend
from embedgate import EmbedgateError, MissingDependency
from embedgate.cache import ArtifactCache
from embedgate.gates import TestRecord

if TYPE_CHECKING:
    from embedgate.model import ModelSpec
    from embedgate.thresholds import Thresholds


@dataclass
class LoadFailure:
    error: Exception

    @property
    def missing_dependency(self) -> bool:
        return isinstance(self.error, MissingDependency)


@dataclass
class EmbedgateSession:
    model: ModelSpec
    registry: Registry
    selected: list[str]
    thresholds: Thresholds
    cache: ArtifactCache
    threads: int
    strict: bool
    artifacts: dict[str, Path]
    data_dir: Path | None
    options: dict[str, Any] = field(default_factory=dict)
    loaded: dict[str, EmbeddingBackend | LoadFailure] = field(default_factory=dict)
    records: dict[str, TestRecord] = field(default_factory=dict)
    # backend -> kind -> measurements, filled by the gate tests (latency cells, fidelity, task scores, cold start)
    results: dict[str, dict[str, Any]] = field(default_factory=dict)
    memo: dict[Any, Any] = field(default_factory=dict)  # values computed once per run (reference vectors, scores)

    @property
    def baseline(self) -> str:
        return self.options.get("baseline") or self.thresholds.baseline

    @property
    def truncate_dim(self) -> int | None:
        """--truncate-dim: the vectors' dims every gate sees (None: full size)."""
        return self.options.get("truncate_dim")

    def thresholds_for(self, backend: str) -> dict[str, dict[str, Any]]:
        return self.thresholds.for_backend(backend, self.registry[backend].family)

    def load(self, name: str) -> EmbeddingBackend:
        """Load (building if needed) a backend once per run; a failure is remembered and raised again."""
        if name not in self.loaded:
            spec = self.registry[name]
            ctx = BuildContext(self.model, self.cache, self.threads, self.artifacts.get(name), dict(self.options))
            try:
                backend = spec.load(ctx)
                # --truncate-dim: every backend, the reference included, gives its first N dims renormalised
                self.loaded[name] = TruncatedBackend(backend, self.truncate_dim) if self.truncate_dim else backend
            except (EmbedgateError, ImportError, OSError, ValueError, RuntimeError) as exc:
                self.loaded[name] = LoadFailure(exc)
        value = self.loaded[name]
        if isinstance(value, LoadFailure):
            raise value.error
        return value

    def result(self, backend: str, kind: str) -> dict[str, Any]:
        return self.results.setdefault(backend, {}).setdefault(kind, {})

    def memoize(self, key: Any, compute):
        if key not in self.memo:
            self.memo[key] = compute()
        return self.memo[key]


def stderr_log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)  # noqa: T201 (the messages that pytest's reporter cannot show)
