"""The state of one embedgate run (the model, the selected backends, its options, loaded backends, gate records),
and how it is made from the command line's options, once, before any test runs."""

from __future__ import annotations

import gc
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from embedgate import EmbedgateError, MissingDependency, UsageError
from embedgate.cache import ArtifactCache
from embedgate.gates import TestRecord
from embedgate.protocol import BuildContext, BuildOptions, EmbeddingBackend
from embedgate.registry import Registry
from embedgate.truncation import TruncatedBackend

if TYPE_CHECKING:
    import pytest

    from embedgate.model import ModelSpec
    from embedgate.thresholds import Thresholds


@dataclass
class LoadFailure:
    error: Exception

    @property
    def missing_dependency(self) -> bool:
        return isinstance(self.error, MissingDependency)


@dataclass(frozen=True)
class Released:
    """A backend whose tests are done, let go to free its memory, and what the report still reads of it. Every backend
    held to the end of a run is every runtime's weights and buffers at once: EmbeddingGemma's CI profile grew to
    23 GB and was killed by the kernel on a 24 GB machine (2026-12-01, an openvino-int8-static build in the run)."""

    metadata: Any
    dimension: int
    runtime_dimension: int


@dataclass(frozen=True)
class RunOptions:
    """The run's command-line options the gates read, validated by the plugin's parsers, typed and frozen: one
    place that says what a test may depend on."""

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
    loaded: dict[str, EmbeddingBackend | LoadFailure | Released] = field(default_factory=dict)
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
        return self.thresholds.for_backend(backend, self.registry[backend].runtime)

    def load(self, name: str) -> EmbeddingBackend:
        """Load (building if needed) a backend once per run; a failure is remembered and raised again. A released
        backend that a later test needs is loaded again from the cache, keeping what its first load recorded."""
        previous = self.loaded.get(name)
        if previous is None or isinstance(previous, Released):
            if previous is not None:
                stderr_log(f"embedgate: loading {name} again (released after its tests; a later test needs it)")
            spec = self.registry[name]
            ctx = BuildContext(self.model, self.cache, self.threads, self.artifacts.get(name), self.options.build)
            try:
                backend = spec.load(ctx)
                if previous is not None:
                    backend.metadata = previous.metadata  # the build and load this run reports
                # --truncate-dim: every backend, the reference included, gives its first N dims renormalised
                self.loaded[name] = TruncatedBackend(backend, self.truncate_dim) if self.truncate_dim else backend
            except (EmbedgateError, ImportError, OSError, ValueError, RuntimeError) as exc:
                self.loaded[name] = LoadFailure(exc)
        value = self.loaded[name]
        if isinstance(value, LoadFailure):
            raise value.error
        assert not isinstance(value, Released)  # loaded again above
        return value

    def held_to_the_end(self) -> set[str]:
        """The backends other gates use throughout: the reference, the baseline, release candidates and production."""
        from embedgate.registry import REFERENCE

        production = self.options.production
        return {REFERENCE, self.baseline, *production, *production.values()}

    def release(self, name: str) -> None:
        """Let go of a backend whose tests are done (the `backend` fixture's teardown, when pytest moves on to the
        next backend), keeping what the report reads of it; the reference and the baseline stay loaded."""
        value = self.loaded.get(name)
        if value is None or isinstance(value, (LoadFailure, Released)) or name in self.held_to_the_end():
            return
        self.loaded[name] = Released(value.metadata, value.dimension,
                                     getattr(value, "runtime_dimension", value.dimension))
        del value
        gc.collect()

    def memoize(self, key: Any, compute):
        if key not in self.memo:
            self.memo[key] = compute()
        return self.memo[key]


def stderr_log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)  # noqa: T201 (the messages that pytest's reporter cannot show)


# ---------------------------------------------------------------- the run's session, made from its options


def make_session(config: pytest.Config, threads: int) -> EmbedgateSession:
    """The run's session from its validated options; a bad combination of them is a UsageError line."""
    from embedgate.cache import default_cache_dir
    from embedgate.model import resolve_model
    from embedgate.registry import builtin_registry
    from embedgate.tasks import BUILTIN_TASKS, reset
    from embedgate.thresholds import Scopes, default_thresholds_file, load_thresholds

    reset()
    registry = builtin_registry()
    config.hook.pytest_embedgate_register_backends(registry=registry)
    selected = registry.select(config.getoption("backends"))
    artifacts = dict(config.getoption("artifact"))
    _check_artifacts(registry, selected, artifacts)
    production = _register_production(registry, selected, dict(config.getoption("production")), artifacts)
    mteb_tasks = [t.strip() for t in config.getoption("mteb_tasks").split(",") if t.strip()]
    # after the register hook: a [backend.NAME] may name a backend a conftest.py registers
    scopes = Scopes(registry.names(), list(dict.fromkeys(spec.runtime for spec in registry)),
                    list(BUILTIN_TASKS) + [t for t in mteb_tasks if t not in BUILTIN_TASKS])
    thresholds = load_thresholds(
        config.getoption("thresholds") or default_thresholds_file(),
        config.getoption("threshold"), config.getoption("threshold_profile"), scopes,
    )
    baseline = config.getoption("baseline") or thresholds.baseline
    registry[baseline]  # noqa: B018
    all_backends, shard = tuple(selected), config.getoption("shard")
    if shard is not None:
        from embedgate.merge import shard_backends
        from embedgate.registry import REFERENCE

        selected = shard_backends(selected, {REFERENCE, baseline}, shard)
        production = {c: p for c, p in production.items() if c in selected}
    data_dir, profile = config.getoption("data_dir"), config.getoption("quality_profile")
    if data_dir is not None:
        from embedgate.tasks import check_data_dir

        check_data_dir(data_dir, profile)
    hub_tasks = {}
    if config.getoption("hub_tasks"):
        from embedgate.tasks import load_from_hub

        hub_tasks = load_from_hub(list(BUILTIN_TASKS), data_dir)
    cache_dir = config.getoption("artifact_cache") or default_cache_dir()
    report_dir = config.getoption("report_dir") or Path(config.invocation_params.dir) / "reports"
    _check_writable_dir(cache_dir, "--artifact-cache")
    _check_writable_dir(report_dir, "--report-dir")
    model = resolve_model(config.getoption("model"))
    truncate_dim = config.getoption("truncate_dim")
    if truncate_dim is not None and truncate_dim >= model.dimension:
        raise UsageError(f"--truncate-dim {truncate_dim}: {model.name} has {model.dimension}-dim vectors, so there is "
                         f"nothing to cut; give fewer than {model.dimension} dims")
    # the model is a local folder now: nothing after this point may reach for a hub
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    if mteb_tasks:
        from embedgate.tasks import preload_mteb_tasks

        preload_mteb_tasks(mteb_tasks, config.getoption("data_dir"))

    return EmbedgateSession(
        model=model, registry=registry, selected=selected, thresholds=thresholds,
        cache=ArtifactCache(cache_dir, lambda line: live_line(config, line)), threads=threads,
        strict=config.getoption("strict_backends"), artifacts=artifacts,
        options=RunOptions(
            baseline=baseline,
            mteb_tasks=tuple(mteb_tasks),
            quality_profile=profile,
            hub_tasks=hub_tasks,
            production=production,
            shard=shard,
            all_backends=all_backends,
            latency_buckets=tuple(config.getoption("latency_buckets")),
            latency_batch_sizes=tuple(config.getoption("latency_batch_sizes")),
            latency_budget=config.getoption("latency_budget"),
            report_dir=Path(report_dir),
            truncate_dim=truncate_dim,
            build=BuildOptions(distill_corpus=config.getoption("distill_corpus"),
                               calibration_corpus=config.getoption("calibration_corpus"),
                               data_dir=config.getoption("data_dir")),
        ),
    )


def live_line(config: pytest.Config, line: str) -> None:
    """Write a line to the terminal now, even from inside a test: pytest captures a test's output (a build's
    "building onnx-fp32" showed only with -s), so capture is suspended around the write."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")  # not registered yet at configure time
    if reporter is None:
        stderr_log(line)
        return
    capman = config.pluginmanager.get_plugin("capturemanager")
    if capman is None:
        reporter.write_line(line)
        return
    with capman.global_and_fixture_disabled():
        reporter.write_line(line)


def _register_production(registry, selected: list[str], given: dict[str, Path], artifacts: dict[str, Path]) -> dict[str, str]:
    """--production BACKEND=PATH: PATH loaded through BACKEND's own loader as backend BACKEND-production (not
    among --backends: it is gated only against its candidate). Returns candidate -> production backend."""
    import dataclasses

    from embedgate.release import production_name

    out = {}
    for name, path in given.items():
        spec = registry[name]  # an unknown name is a usage error that lists the known ones
        if name not in selected:
            raise UsageError(f"--production {name}={path}: the candidate {name} is not among --backends "
                             f"({', '.join(selected)}); add it")
        if not spec.accepts_artifact:
            raise UsageError(f"--production {name}={path}: backend {name} is built in memory and loads no artifact")
        prod = production_name(name)
        registry.register(dataclasses.replace(spec, name=prod, factory=_named(spec, prod),
                                              description=f"{name} in production: {path}"), replace=True)
        artifacts[prod] = path
        out[name] = prod
    return out


def _named(spec, name: str):
    """spec's loader, its backend renamed: the production artifact is another backend than its candidate (every
    measurement of a run is kept by backend name)."""
    def load(ctx):
        backend = spec.load(ctx)
        backend.name = name
        return backend

    return load


def _check_artifacts(registry, selected: list[str], artifacts: dict[str, Path]) -> None:
    """--artifact NAME=PATH must name a backend of this run that takes an artifact: a usage error before any test,
    not an option silently ignored or refused once per test."""
    for name, path in artifacts.items():
        spec = registry[name]  # an unknown name is a usage error that lists the known ones
        if not spec.accepts_artifact:
            raise UsageError(f"--artifact {name}={path}: backend {name} is built in memory and takes no artifact")
        if name not in selected:
            raise UsageError(
                f"--artifact {name}={path}: {name} is not among --backends ({', '.join(selected)}); add it")


def _check_writable_dir(path: Path, option: str) -> None:
    """The folder, or the nearest existing folder it would be created in, takes a file, so that an unwritable
    --report-dir is a usage error before the run, not a report lost after it. Probes without creating the folder
    itself."""
    path = Path(path).expanduser().absolute()
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        what = "is a file" if existing == path else f"cannot be created: {existing} is a file"
        raise UsageError(f"{option} {path}: {what}; give a folder")
    probe = existing / f".embedgate-probe-{os.getpid()}"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise UsageError(
            f"{option} {path}: {existing} is not writable ({exc.strerror or exc}); give a writable folder") from None
