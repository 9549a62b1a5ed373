"""The state of one embedgate run: the model, the selected backends, its options, loaded backends, gate records."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from embedgate import EmbedgateError, MissingDependency
from embedgate.cache import ArtifactCache
from embedgate.gates import TestRecord
from embedgate.protocol import BuildContext, BuildOptions, EmbeddingBackend
from embedgate.registry import Registry
from embedgate.truncation import TruncatedBackend

if TYPE_CHECKING:
    from embedgate.model import ModelSpec
    from embedgate.thresholds import Thresholds


@dataclass
class LoadFailure:
    error: Exception

    @property
    def missing_dependency(self) -> bool:
        return isinstance(self.error, MissingDependency)


@dataclass(frozen=True)
class RunOptions:
    """The run's command-line options the gates read, validated by the plugin's parsers, typed and frozen: one
    place that says what a test may depend on (it used to be a dict copied into every build)."""

    baseline: str | None = None  # --baseline; None: the thresholds file's
    mteb_tasks: tuple[str, ...] = ()
    quality_profile: str = "default"  # --quality-profile: how far the built-in tasks are cut (embedgate/taskdata.py)
    hub_tasks: dict[str, str] = field(default_factory=dict)  # --hub-tasks: task -> the mteb task loaded in its place
    production: dict[str, str] = field(default_factory=dict)  # --production: candidate -> its production backend
    shard: tuple[int, int] | None = None  # --shard K/N
    all_backends: tuple[str, ...] = ()  # the backends of the whole run, every shard's (the merge keeps this order)
    latency_buckets: tuple[str, ...] = ()
    latency_batch_sizes: tuple[int, ...] = ()
    latency_budget: float = 6.0  # seconds per latency case (--latency-budget)
    report_dir: Path = Path("reports")
    truncate_dim: int | None = None  # --truncate-dim: the vectors' dims every gate sees (None: full size)
    build: BuildOptions = field(default_factory=BuildOptions)  # what a backend's build may read


@dataclass
class EmbedgateSession:
    """The run: what was asked (model, backends, thresholds, options), what was loaded, and one record per gate.
    The records are the only result: the report, the terminal summary and pytest-benchmark's extra_info are all
    written from them."""

    model: ModelSpec
    registry: Registry
    selected: list[str]
    thresholds: Thresholds
    cache: ArtifactCache
    threads: int
    strict: bool
    artifacts: dict[str, Path]
    options: RunOptions = field(default_factory=RunOptions)
    loaded: dict[str, EmbeddingBackend | LoadFailure] = field(default_factory=dict)
    records: dict[str, TestRecord] = field(default_factory=dict)
    memo: dict[Any, Any] = field(default_factory=dict)  # values computed once per run (reference vectors, scores)
    report: dict[str, Any] | None = None  # the report as written at the session's end (the terminal summary shows it)

    @property
    def baseline(self) -> str:
        return self.options.baseline or self.thresholds.baseline

    @property
    def data_dir(self) -> Path | None:
        """--data-dir: external evaluation data (the STS Benchmark), also what model2vec-tuned may fit on."""
        return self.options.build.data_dir

    @property
    def truncate_dim(self) -> int | None:
        """--truncate-dim: the vectors' dims every gate sees (None: full size)."""
        return self.options.truncate_dim

    def thresholds_for(self, backend: str) -> dict[str, dict[str, Any]]:
        return self.thresholds.for_backend(backend, self.registry[backend].family)

    def load(self, name: str) -> EmbeddingBackend:
        """Load (building if needed) a backend once per run; a failure is remembered and raised again."""
        if name not in self.loaded:
            spec = self.registry[name]
            ctx = BuildContext(self.model, self.cache, self.threads, self.artifacts.get(name), self.options.build)
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

    def memoize(self, key: Any, compute):
        if key not in self.memo:
            self.memo[key] = compute()
        return self.memo[key]


def stderr_log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)  # noqa: T201 (the messages that pytest's reporter cannot show)
