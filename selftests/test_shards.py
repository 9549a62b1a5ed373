"""A run spread over runners: --shard=K/N splits the backends stably, the reference and baseline in every shard,
and `python -m embedgate.merge` joins the shards into the report a whole run writes (timings aside); `embedgate
--version` and report.json say what was gated."""

from __future__ import annotations

import json
import shutil

import pytest

BACKENDS = "--backends=torch-fp32,torch-int8,noisy,plain,cls-pooling,no-prompt,slight-noise"
RUN = ("-m", "contract or fidelity or quality", "-k", "not hostile and not unicode")


@pytest.mark.fast
def test_shards_split_stably_with_the_reference_and_baseline_in_each():
    from embedgate.merge import shard_backends

    selected = ["torch-fp32", "torch-int8", "a", "b", "c", "d", "e"]
    shards = [shard_backends(selected, {"torch-fp32", "torch-int8"}, (k, 3)) for k in (1, 2, 3)]
    assert shards == [["torch-fp32", "torch-int8", "a", "d"], ["torch-fp32", "torch-int8", "b", "e"],
                      ["torch-fp32", "torch-int8", "c"]]


def _verdicts(report: dict) -> dict:
    return {(t["backend"], t["gate"]): (t["verdict"], [m["value"] for m in t["measurements"]]) for t in report["tests"]}


def test_three_shards_merge_into_the_whole_runs_report(suite, tiny_model, tmp_path):
    from embedgate.merge import main

    suite.run(f"--model={tiny_model}", BACKENDS, *RUN)
    whole = suite.report()
    folders = []
    for k in (1, 2, 3):
        suite.run(f"--model={tiny_model}", BACKENDS, *RUN, f"--shard={k}/3")
        folder = tmp_path / f"shard-{k}"
        shutil.copytree(suite.pytester.path / "reports", folder)
        assert json.loads((folder / "report.json").read_text())["run"]["shard"] == f"{k}/3"
        folders.append(folder)
    assert main(["--out", str(tmp_path / "merged"), *map(str, folders)]) == 0
    # a shard missing or given twice, or a JSON file that is no report: one line, exit 2, nothing merged
    not_a_report = tmp_path / "other.json"
    not_a_report.write_text('{"run": {}}')
    for shards in (folders[:2], [folders[0], *folders[:2], folders[2]], [*folders, not_a_report], [not_a_report]):
        assert main(["--out", str(tmp_path / "not-merged"), *map(str, shards)]) == 2, shards
    assert not (tmp_path / "not-merged").exists()
    merged = json.loads((tmp_path / "merged" / "report.json").read_text())
    assert list(merged["backends"]) == list(whole["backends"]), "the whole run's backends, in its order"
    assert _verdicts(merged) == _verdicts(whole), "the same gates with the same verdicts and values"
    assert merged["recommendation"] == whole["recommendation"]
    for name, backend in whole["backends"].items():
        assert merged["backends"][name]["summary"]["verdict"] == backend["summary"]["verdict"], name
    assert (tmp_path / "merged" / "report.md").read_text().split("## Backends")[0].count("Ship") == 1


def test_a_bad_shard_is_a_usage_error(suite, tiny_model):
    result = suite.run(f"--model={tiny_model}", "--shard=4/3")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert any("expected K/N with 1 <= K <= N, e.g. 2/3; got '4/3'" in line for line in result.stderr.lines)


@pytest.mark.fast
def test_version_and_what_was_gated():
    import subprocess
    import sys

    from embedgate import __version__

    done = subprocess.run([sys.executable, "-m", "embedgate", "--version"], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == f"embedgate {__version__}"
    usage = subprocess.run([sys.executable, "-m", "embedgate.report", "merge", "--help"], capture_output=True, text=True,
                           check=True)
    assert "--out" in usage.stdout, "python -m embedgate.report merge is embedgate merge"
