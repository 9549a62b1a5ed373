"""A backend is let go once its tests are done (session.release, the `backend` fixture's teardown): a run holding
every backend to its end holds every runtime's weights and buffers at once, and EmbeddingGemma's CI profile was
killed by the kernel at 23 GB on a 24 GB machine. The reference and the baseline stay loaded; the report still says
what was gated."""

from __future__ import annotations

import json

from selftests.test_plugin_example import RUNTIME, readme_example

WATCH = '''
import json, weakref
import pytest
from embedgate.hooks import get_session

SEEN = {}


@pytest.fixture(autouse=True)
def _watch(request):
    if "backend" in request.fixturenames:
        backend = request.getfixturevalue("backend")
        SEEN.setdefault(backend.name, weakref.ref(backend))


def pytest_sessionfinish(session):
    import gc

    gc.collect()
    loaded = get_session(session.config).loaded
    with open("held.json", "w") as fh:
        json.dump({name: {"state": type(loaded[name]).__name__, "alive": ref() is not None}
                   for name, ref in SEEN.items()}, fh)
'''


def test_a_backend_is_released_after_its_tests(suite, tiny_model, monkeypatch):
    suite.pytester.makeconftest(readme_example() + WATCH)
    suite.pytester.makepyfile(my_runtime=RUNTIME)
    suite.pytester.syspathinsert()
    (suite.pytester.path / "my-model.bin").write_bytes(b"weights")
    monkeypatch.setenv("MY_RUNTIME_MODEL", str(tiny_model))
    # in a child process: pytester's in-process recorder keeps every test's call, its exceptions' frames and their
    # locals (the backend) with it, which a real run does not
    result = suite.run_in_subprocess(f"--model={tiny_model}", "--backends=torch-fp32,my-runtime", "-m",
                                     "contract or fidelity")
    assert result.ret == 0, result.stdout.str()[-3000:]
    held = json.loads((suite.pytester.path / "held.json").read_text())
    assert held["my-runtime"] == {"state": "Released", "alive": False}, (
        f"my-runtime's tests are done but the run still holds it: {held['my-runtime']}")
    assert held["torch-fp32"] == {"state": "SentenceTransformerBackend", "alive": True}, (
        f"the reference is used to the end and must stay loaded: {held['torch-fp32']}")
    assert "loading my-runtime again" not in result.stderr.str(), "its tests ran apart: it was loaded twice"
    artifact = suite.report()["backends"]["my-runtime"]["artifact"]
    assert artifact is not None, "the report lost what was gated"
    assert artifact["source"] == "user artifact", f"the report lost what was gated: {artifact}"
