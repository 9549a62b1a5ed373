"""embedgate's pytest hooks: the session made at configure time, tests parametrized over the run's backends, one
gate record per test that takes a backend, its verdict recorded as pytest reports it, and the report written at
the end. It acts only where the ini says `embedgate = true`."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import pytest

from embedgate import EmbedgateError, UsageError
from embedgate.environment import usable_cpus
from embedgate.families import FAMILY_NAMES, GATE_FAMILIES
from embedgate.gates import Verdict, verdict_of
from embedgate.options import PATH_OPTIONS

if TYPE_CHECKING:
    from embedgate.session import EmbedgateSession

SESSION_KEY: pytest.StashKey[EmbedgateSession] = pytest.StashKey()  # the run's session, set at configure time


def get_session(config: pytest.Config) -> EmbedgateSession:
    try:
        return config.stash[SESSION_KEY]
    except KeyError:
        raise pytest.UsageError("embedgate is not enabled here: set 'embedgate = true' in the [pytest] ini section") from None


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    from embedgate import hookspecs

    pluginmanager.add_hookspecs(hookspecs)


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
    threads = config.getoption("threads") or usable_cpus()
    for variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[variable] = str(threads)  # before any numeric library starts its thread pool
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from embedgate.session import make_session

    try:
        config.stash[SESSION_KEY] = make_session(config, threads)
    except UsageError as exc:
        raise pytest.UsageError(str(exc)) from None


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


def _family(item: pytest.Item) -> str:
    """The gate family of a test that takes a backend: exactly one family marker, or a usage error (a test without
    one would run and its verdict would be missing from the report)."""
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
        name = getattr(item, "originalname", item.name).removeprefix("test_")
        egsession.records[item.nodeid] = TestRecord(item.nodeid, backend, family, gate_id(family, name, rest))


def gate_id(family: str, name: str, params: str) -> str:
    """FAMILY/NAME[PARAMS]; a test named as its family is that family's gate, named by its parameters alone
    (fidelity/cosine-mean, latency/b1-query), so that no id says its family twice."""
    if name == family and params:
        return f"{family}/{params}"
    return f"{family}/{name}" + (f"[{params}]" if params else "")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    report = outcome.get_result()
    egsession = item.config.stash.get(SESSION_KEY, None)
    record = egsession.records.get(item.nodeid) if egsession is not None else None
    if record is None:
        return
    if report.when == "call" or report.outcome != "passed":
        verdict = verdict_of(report)
        if record.verdict in (Verdict.NOT_RUN, Verdict.PASS) or verdict is Verdict.ERROR:
            record.verdict = verdict
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
    from embedgate.report import build_report
    from embedgate.report_markdown import terminal_lines

    session = config.stash.get(SESSION_KEY, None)
    if session is None or not session.records:
        return
    terminalreporter.section("embedgate verdicts")
    # the report write_reports wrote (pytest's terminal summary comes after our sessionfinish), so the terminal
    # and the files say the same; built here only when no report was written
    for line in terminal_lines(session.report or build_report(session)):
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
