"""The fixtures a gate test takes: the run's session, the backend under test (and the reference, the baseline, a
release candidate and its production artifact), the resolved thresholds, and the `gate` recorder."""

from __future__ import annotations

import pytest

from embedgate import BackendUnavailable, EmbedgateError, MissingDependency
from embedgate.hooks import get_session


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
    """The backend under test (parametrized over --backends). pytest runs one backend's tests together and tears
    this down when it moves on to the next: the session then releases the backend (its memory), not the others."""
    yield load_or_skip(request.config, request.param)
    get_session(request.config).release(request.param)


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
    from embedgate.registry import REFERENCE

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
