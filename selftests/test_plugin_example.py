"""README's "Plug in your own runtime" example, as written there, registered from a conftest.py: it must pass the
contract and fidelity gates (its runtime here is the reference pipeline itself, so nothing else should differ)."""

from __future__ import annotations

import re

from selftests.conftest import PROJECT

RUNTIME = '''
"""A stand-in for a team's own runtime: the reference sentence-transformers pipeline, no normalisation."""
import os


class Session:
    def __init__(self, model_path):
        from sentence_transformers import SentenceTransformer

        self.st = SentenceTransformer(model_path, device="cpu", local_files_only=True)

    def embed(self, texts):
        return self.st.encode(list(texts), prompt="", normalize_embeddings=False, convert_to_numpy=True)


def load(path, threads):
    return Session(os.environ["MY_RUNTIME_MODEL"])
'''


def readme_example() -> str:
    readme = (PROJECT / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Plug in your own runtime"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_readme_plugin_example_passes_the_contract_gates(suite, tiny_model, monkeypatch):
    suite.pytester.makeconftest(readme_example())
    suite.pytester.makepyfile(my_runtime=RUNTIME)
    suite.pytester.syspathinsert()
    (suite.pytester.path / "my-model.bin").write_bytes(b"weights")
    monkeypatch.setenv("MY_RUNTIME_MODEL", str(tiny_model))
    result = suite.run(f"--model={tiny_model}", "--backends=torch-fp32,my-runtime", "-m", "contract or fidelity")
    assert result.ret == 0, result.stdout.str()[-3000:]
    mine = {gate: v for (backend, gate), v in suite.verdicts().items() if backend == "my-runtime"}
    assert mine, "the example's backend ran no gate"
    assert set(mine.values()) <= {"pass", "skip"}, mine
    assert sum(v == "pass" for v in mine.values()) >= 30, f"most contract gates and every fidelity gate run: {mine}"
    assert {g for g, v in mine.items() if v == "skip"} <= {"contract/raw_output", "contract/deployed_settings"}, mine
