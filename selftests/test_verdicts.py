"""The expected-verdict check that CI relies on: what it lets through and what it stops."""

from __future__ import annotations

import json
import tomllib

import pytest

from embedgate.schema import SCHEMA_VERSION
from embedgate.verdicts import compare, main, suggest

pytestmark = pytest.mark.fast


def gate(backend, name, verdict, family=None, value=None, threshold=None, message=""):
    measurements = [] if value is None else [{"name": "speedup", "value": value, "threshold": threshold, "op": ">=",
                                              "passed": verdict == "pass", "reason": f"speedup {value}", "unit": "x"}]
    return {"backend": backend, "gate": name, "verdict": verdict, "family": family or name.split("/")[0],
            "message": message, "measurements": measurements}


REPORT = {
    "schema_version": SCHEMA_VERSION, "model": {"name": "m"}, "generated_at": "now", "backends": {"a": {}, "b": {}},
    "tests": [
        gate("a", "contract/unit_norm", "pass"),
        gate("a", "quality/task[stsb]", "fail", message="retention 0.80 < 0.95"),
        gate("a", "latency/b1-query", "pass", value=1.1, threshold=1.0),
        gate("b", "contract/unit_norm", "pass"),
        gate("b", "latency/b1-query", "fail", value=0.5, threshold=1.0, message="speedup 0.5 < 1.0"),
    ],
}
TABLE = {
    "a": {"contract/*": "pass", "quality/task[stsb]": "fail", "latency/*": "pass"},
    "b": {"contract/*": "pass", "latency/b1-query": "fail"},
}


def test_matching_table_passes():
    problems, notes = compare(REPORT, TABLE, 0.25)
    assert problems == []
    assert notes == []


def test_gate_names_with_brackets_are_literal_and_the_longest_entry_wins():
    table = {**TABLE, "a": {**TABLE["a"], "quality/*": "pass"}}  # the exact name is longer than the glob
    assert compare(REPORT, table, 0.25)[0] == []


@pytest.mark.parametrize(("change", "expected"), [
    (lambda t: t["b"].update({"latency/b1-query": "pass"}), "b latency/b1-query: fail, expected pass"),
    (lambda t: t["a"].pop("quality/task[stsb]"), "a quality/task[stsb]: fail, but the table has no entry"),
    (lambda t: t.update(c={"contract/*": "pass"}), "c: in the table but not in the run"),
    (lambda t: t["a"].update({"fidelity/*": "pass"}), "a fidelity/*: in the table but no gate of the run matches it"),
], ids=["verdict-differs", "gate-not-in-table", "backend-not-run", "entry-matches-nothing"])
def test_mismatches_fail(change, expected):
    table = json.loads(json.dumps(TABLE))
    change(table)
    problems, _ = compare(REPORT, table, 0.25)
    assert any(p.startswith(expected) for p in problems), problems


def test_an_error_is_always_a_problem():
    report = {**REPORT, "tests": REPORT["tests"] + [gate("a", "contract/finite", "error", message="boom")]}
    problems, _ = compare(report, TABLE, 0.25)
    assert problems == ["a contract/finite: error: boom"]


def test_latency_flips_only_within_the_margin():
    near = {**REPORT, "tests": [t if t["backend"] != "b" or t["family"] != "latency" else
                                gate("b", "latency/b1-query", "pass", value=1.1, threshold=1.0)
                                for t in REPORT["tests"]]}
    problems, notes = compare(near, TABLE, 0.25)
    assert problems == []
    assert len(notes) == 1
    assert "within the 25% latency margin" in notes[0]
    far = {**near, "tests": [t if t["gate"] != "latency/b1-query" or t["backend"] != "b" else
                             gate("b", "latency/b1-query", "pass", value=1.6, threshold=1.0)
                             for t in near["tests"]]}
    assert compare(far, TABLE, 0.25)[0], "a latency verdict far from its threshold must match the table"
    quality = {**REPORT, "tests": [t if t["family"] != "quality" else
                                   gate("a", "quality/task[stsb]", "pass", value=0.951, threshold=0.95)
                                   for t in REPORT["tests"]]}
    assert compare(quality, TABLE, 0.25)[0], "quality verdicts are deterministic: no margin"


def test_of_the_release_gates_only_the_timed_one_is_noise():
    """release/index 0.88 against 0.90 is a measured verdict, not timing noise; release/latency is timing."""
    report = {**REPORT, "backends": {"a": {}}, "tests": [
        gate("a", "release/index", "fail", value=0.88, threshold=0.90, message="index cosine-min 0.88 < 0.90"),
        gate("a", "release/latency[b1-query]", "fail", value=0.93, threshold=0.95, message="speedup 0.93 < 0.95")]}
    table = {"a": {"release/*": "pass"}}
    problems, notes = compare(report, table, 0.25)
    assert [p.split(":")[0] for p in problems] == ["a release/index"], problems
    assert any("release/latency[b1-query]" in n and "latency margin" in n for n in notes), notes
    problems, notes = compare(report, table, 0.25, ignore_families=("latency",))
    assert [p.split(":")[0] for p in problems] == ["a release/index"], "--ignore-family=latency leaves release/latency out"


def test_optional_entries_may_be_absent():
    report = {**REPORT, "tests": [t for t in REPORT["tests"] if "stsb" not in t["gate"]]}
    assert compare(report, TABLE, 0.25)[0] == ["a quality/task[stsb]: in the table but no gate of the run matches it"]
    problems, notes = compare(report, TABLE, 0.25, ("quality/task[[]stsb]",))
    assert problems == []
    assert "not in this run" in notes[0]


def test_suggested_table_matches_its_own_run():
    table = tomllib.loads(suggest(REPORT, 0.25))
    assert table["a"]["contract/*"] == "pass"
    assert table["b"]["latency/*"] == "fail"
    assert compare(REPORT, table, 0.25)[0] == []


def test_cli_exit_codes(tmp_path, capsys):
    report, table = tmp_path / "report.json", tmp_path / "table.toml"
    report.write_text(json.dumps(REPORT))
    table.write_text(suggest(REPORT, 0.25))
    assert main([str(report), str(table), "--pytest-exit-code=1"]) == 0, "failing gates as expected are fine"
    assert main([str(report), str(table), "--pytest-exit-code=139"]) == 2, "a crashed run is never fine"
    table.write_text('[a]\n"contract/*" = "fail"\n')
    assert main([str(report), str(table)]) == 1
    assert "MISMATCH" in capsys.readouterr().out
    for bad in ('[a]\n"contract/*" = "passes"\n', "[a\n", None):  # not a verdict, not TOML, no file
        if bad is None:
            table.unlink()
        else:
            table.write_text(bad)
        assert main([str(report), str(table)]) == 2, bad
        assert len(capsys.readouterr().out.strip().splitlines()) == 1, "one line"


def test_ignored_family_is_not_compared_but_its_errors_are():
    table = {"a": {"contract/*": "pass", "quality/task[stsb]": "fail"}, "b": {"contract/*": "pass"}}
    problems, notes = compare(REPORT, table, 0.25, ignore_families=("latency",))
    assert problems == []
    assert "not compared: latency" in notes[0]
    crashed = {**REPORT, "tests": REPORT["tests"] + [gate("b", "latency/cold_start", "error", message="died")]}
    assert compare(crashed, table, 0.25, ignore_families=("latency",))[0] == ["b latency/cold_start: error: died"]


def test_a_skippable_backend_may_skip_but_not_err():
    """model2vec-tuned without a corpus (no --data-dir on a hosted runner) skips: a note there, not a mismatch."""
    report = {**REPORT, "tests": [{**t, "verdict": "skip"} if t["backend"] == "b" else t for t in REPORT["tests"]]}
    assert len(compare(report, TABLE, 0.25)[0]) == 2
    problems, notes = compare(report, TABLE, 0.25, skippable=("b",))
    assert problems == []
    assert all("may skip here" in note for note in notes)
    errored = {**report, "tests": [*report["tests"], gate("b", "contract/shape", "error", message="boom")]}
    assert compare(errored, TABLE, 0.25, skippable=("b",))[0] == ["b contract/shape: error: boom"]


def test_skippable_takes_a_comma_list(tmp_path, capsys):
    """`make verdicts` without data lets model2vec-tuned and both static INT8 builds skip in one option."""
    report = {**REPORT, "tests": [{**t, "verdict": "skip"} if t["backend"] == "b" else t for t in REPORT["tests"]]}
    report_file, table = tmp_path / "report.json", tmp_path / "table.toml"
    report_file.write_text(json.dumps(report))
    table.write_text(suggest(REPORT, 0.25))
    assert main([str(report_file), str(table)]) == 1
    assert main([str(report_file), str(table), "--skippable=x,b"]) == 0, capsys.readouterr().out


def test_a_backend_left_out_of_the_profile_is_a_note_and_one_that_ran_anyway_a_mismatch():
    """CI's EmbeddingGemma profile leaves the 4-bit builds to the by-hand run: their table entries are not compared,
    but only when the profile says so, and a backend said to be left out that ran is a mismatch (a stale list)."""
    table = {**TABLE, "c": {"contract/*": "pass"}}
    assert compare(REPORT, table, 0.25)[0] == ["c: in the table but not in the run"]
    problems, notes = compare(REPORT, table, 0.25, not_in_profile=("c",))
    assert problems == []
    assert notes == ["c: in the table, not in this profile (--not-in-profile): not compared"]
    assert compare(REPORT, table, 0.25, not_in_profile=("b", "c"))[0] == [
        "b: ran, but --not-in-profile says this profile leaves it out"]
