"""Keys and names of an older embedgate are refused with one line that says the new ones: a thresholds file's
[family.NAME] (now [runtime.NAME]), a report.json of an older schema, a verdict table's old gate ids."""

from __future__ import annotations

import pytest

from embedgate import UsageError
from embedgate.thresholds import Scopes, load_thresholds

pytestmark = pytest.mark.fast

SCOPES = Scopes(["torch-fp32", "gguf-q8_0"], ["torch", "gguf"], ["stsb"])


@pytest.mark.parametrize(("text", "said"), [
    ("[family.gguf.contract]\nbatch_min_cosine = 0.998\n", "thresholds: [family.gguf] is now [runtime.gguf]"),
    ("[profile.p.family.gguf.contract]\nbatch_min_cosine = 0.998\n",
     "thresholds: [profile.p.family.gguf] is now [profile.p.runtime.gguf]"),
], ids=["family", "profile-family"])
def test_an_old_thresholds_scope_names_its_new_one(tmp_path, text, said):
    path = tmp_path / "thresholds.toml"
    path.write_text(text)
    with pytest.raises(UsageError) as caught:
        load_thresholds(path, scopes=SCOPES)
    assert str(caught.value).startswith(said), caught.value
    assert "\n" not in str(caught.value)


def test_an_old_threshold_override_names_its_new_scope(tmp_path):
    path = tmp_path / "thresholds.toml"
    path.write_text("")
    with pytest.raises(UsageError, match=r"^thresholds: \[family.gguf\] is now \[runtime.gguf\]"):
        load_thresholds(path, ["family.gguf.contract.batch_min_cosine=0.99"], scopes=SCOPES)


def test_the_runtime_scope_applies(tmp_path):
    path = tmp_path / "thresholds.toml"
    path.write_text("[runtime.gguf.contract]\nbatch_min_cosine = 0.998\n")
    thresholds = load_thresholds(path, scopes=SCOPES)
    assert thresholds.for_backend("gguf-q8_0", "gguf")["contract"]["batch_min_cosine"] == 0.998
    assert "batch_min_cosine" not in thresholds.for_backend("torch-fp32", "torch")["contract"]


def test_a_verdict_table_with_old_gate_ids_names_the_new_ones(tmp_path):
    from embedgate.verdicts import load_table

    path = tmp_path / "table.toml"
    path.write_text('[onnx-int8]\n"latency/latency[b1-query]" = "pass"\n')
    with pytest.raises(ValueError, match=r"latency/latency\[b1-query\] is now latency/b1-query") as caught:
        load_table(path)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(("family", "name", "params", "gate"), [
    ("fidelity", "fidelity", "cosine-mean", "fidelity/cosine-mean"),
    ("latency", "latency", "b1-query", "latency/b1-query"),
    ("latency", "cold_start", "", "latency/cold_start"),
    ("quality", "task", "stsb", "quality/task[stsb]"),
    ("release", "latency", "b1-query", "release/latency[b1-query]"),
])
def test_gate_ids_say_their_family_once(family, name, params, gate):
    from embedgate.hooks import gate_id

    assert gate_id(family, name, params) == gate


def test_the_expected_verdict_tables_use_the_current_gate_ids():
    from embedgate.verdicts import load_table
    from selftests.conftest import PROJECT

    for path in sorted((PROJECT / "fixtures" / "expected_verdicts").glob("*.toml")):
        assert load_table(path), path


@pytest.mark.parametrize("tool", ["verdicts", "merge"])
def test_a_report_of_an_older_schema_is_one_line_and_exit_2(tmp_path, capsys, tool):
    import json

    from embedgate.__main__ import main
    from embedgate.schema import SCHEMA_VERSION

    report = tmp_path / "report.json"
    report.write_text(json.dumps({"schema_version": SCHEMA_VERSION - 1, "tests": [], "backends": {}}))
    table = tmp_path / "table.toml"
    table.write_text("")
    args = [str(report), str(table)] if tool == "verdicts" else ["--out", str(tmp_path / "out"), str(report)]
    assert main([tool, *args]) == 2
    out = capsys.readouterr()
    lines = (out.out + out.err).strip().splitlines()
    assert len(lines) == 1, lines
    assert f"schema {SCHEMA_VERSION - 1}; this embedgate reads schema {SCHEMA_VERSION}" in lines[0], lines
    assert "re-run" in lines[0], lines
