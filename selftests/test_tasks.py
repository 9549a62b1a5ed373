"""The task registry and MTEB aggregation: each task type's loader and mteb evaluator, retention per type and
overall, gates that fail a backend whose loss an STS-only gate would not see, the hub path with a fake task
source, and bad task data as one line before any test."""

from __future__ import annotations

import pytest

from selftests.task_folders import make_data_dir

REAL = {"stsb": "STS", "sickr": "STS", "scifact": "Retrieval", "wikiqa": "Reranking", "banking77": "Classification",
        "msrp": "PairClassification"}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return make_data_dir(tmp_path_factory.mktemp("data"))


# ---------------------------------------------------------------- pure functions (fast)

@pytest.mark.fast
def test_aggregate_is_the_mean_per_type_then_over_types():
    from embedgate.scoring import aggregate

    tasks = {"a": {"task_type": "STS", "real": True, "retention": 1.0},
             "b": {"task_type": "STS", "real": True, "retention": 0.9},
             "c": {"task_type": "Retrieval", "real": True, "retention": 0.7},
             "fixture": {"task_type": "Classification", "real": False, "retention": 0.1}}
    summary = aggregate(tasks)
    assert summary["types"] == pytest.approx({"STS": 0.95, "Retrieval": 0.7}), "fixtures must not count beside real tasks"
    assert summary["overall"] == pytest.approx(0.825), "two STS tasks must not outvote one retrieval task"
    assert summary["evidence"] == "real tasks"
    only_fixtures = aggregate({"fixture": tasks["fixture"]})
    assert only_fixtures["overall"] == pytest.approx(0.1)
    assert only_fixtures["evidence"].startswith("fixture sets only"), only_fixtures


@pytest.mark.fast
def test_every_task_folder_loads_in_every_profile_and_cuts_deterministically(data_dir):
    from embedgate.taskdata import PROFILES, REAL_TASKS, load, sample, texts

    assert set(REAL_TASKS) == set(REAL)
    for name in REAL_TASKS:
        for profile in PROFILES:
            assert texts(load(name, data_dir, profile)), f"{name} ({profile}) has no texts"
    rows = list(range(1000))
    first = sample(rows, 10, "scifact", "corpus")
    assert first == sample(rows, 10, "scifact", "corpus") == sorted(first), "a cut must be the same rows in order"
    assert first != sample(rows, 10, "sickr"), "each task has its own sample"


@pytest.mark.fast
def test_a_retrieval_cut_keeps_every_relevant_document(data_dir):
    from embedgate.taskdata import load

    full, cut = load("scifact", data_dir, "full"), load("scifact", data_dir, "quick")
    assert len(cut.queries) <= len(full.queries)
    relevant = {d for docs in cut.qrels.values() for d in docs}
    assert relevant <= cut.corpus.keys(), "a relevant document was cut from the corpus"


@pytest.mark.fast
def test_overlap_with_a_test_split_is_found(data_dir):
    from embedgate.data import fixture_sts
    from embedgate.taskdata import overlap

    sentence = fixture_sts()[3][0]
    found = overlap(["a text of no task at all", "  " + sentence.upper() + " "], data_dir)
    assert found.get("stsb") == 1, f"case and spacing do not make a test sentence new: {found}"
    assert overlap(["a text of no task at all"], data_dir) == {}


@pytest.mark.fast
@pytest.mark.parametrize(("folder", "file", "content", "message"), [
    ("scifact", "qrels.tsv", "query-id\tcorpus-id\tscore\nq1\tnot-a-doc\t1\n", "relevant documents not in corpus.jsonl: not-a-doc"),
    ("msrp", "test.jsonl", '{"sentence1": "a", "sentence2": "b", "label": 7}\n', "label is not 0 or 1"),
    ("banking77", "test.jsonl", '{"text": "a"\n', "test.jsonl:1: not a JSON line"),
    ("wikiqa", "test.jsonl", '{"query": "q", "positive": "not a list", "negative": []}\n', "a row without a list 'positive'"),
    ("sickr", "test.csv", "sentence1,sentence2,score\na,b,9\n", "test.csv:2: score '9' is outside 1-5"),
], ids=["qrels-unknown-doc", "label", "json", "positive-not-list", "sick-range"])
def test_a_malformed_task_file_is_one_line(tmp_path, folder, file, content, message):
    from embedgate import UsageError
    from embedgate.tasks import check_data_dir

    root = make_data_dir(tmp_path / "data")
    (root / folder / file).write_text(content, encoding="utf-8")
    with pytest.raises(UsageError, match=message) as caught:
        check_data_dir(root, "default")
    assert f"task {folder}" in str(caught.value)
    assert "\n" not in str(caught.value)


@pytest.mark.fast
def test_a_folder_without_a_file_or_a_dir_without_tasks_is_refused(tmp_path):
    from embedgate import UsageError
    from embedgate.tasks import check_data_dir

    root = make_data_dir(tmp_path / "data")
    (root / "scifact" / "qrels.tsv").unlink()
    with pytest.raises(UsageError, match=r"scifact/ has no qrels.tsv \(task scifact\)"):
        check_data_dir(root, "default")
    with pytest.raises(UsageError, match="none of the task folders"):
        check_data_dir(tmp_path, "default")


# ---------------------------------------------------------------- through the suite

def test_every_task_type_runs_through_mteb_on_the_tiny_model(suite, tiny_model, data_dir):
    result = suite.run(f"--model={tiny_model}", "-m", "quality", "--backends=torch-fp32,plain", f"--data-dir={data_dir}",
                       "--threshold=quality.floors.stsb=-1")  # a random model's STS is no floor's business
    assert result.ret == 0, result.stdout.str()[-3000:]
    report = suite.report()
    tasks = report["run"]["tasks"]
    assert {n: t["task_type"] for n, t in tasks.items() if t["real"]} == REAL
    assert {n for n, t in tasks.items() if not t["real"]} == {"fixture-sts", "fixture-retrieval"}
    plain = report["backends"]["plain"]
    for name, kind in REAL.items():
        q = plain["quality"][name]
        assert q["task_type"] == kind, q
        assert q["real"], q
        assert q["retention"] == pytest.approx(1.0), f"an unchanged pipeline keeps {name}: {q}"
    names = {q["main_score_name"] for q in plain["quality"].values()}
    assert names == {"cosine_spearman", "ndcg_at_10", "map_at_1000", "accuracy", "max_ap"}, names
    verdicts = suite.verdicts()
    for kind in set(REAL.values()):
        assert verdicts[("plain", f"quality/task_type[{kind}]")] == "pass"
        assert verdicts[("torch-fp32", f"quality/task_type[{kind}]")] == "skip", "the reference's retention is 1 by definition"
    assert verdicts[("plain", "quality/overall")] == "pass"
    assert plain["summary"]["quality_retention_overall"] == pytest.approx(1.0)
    assert plain["summary"]["quality_evidence"] == "real tasks"
    assert report["run"]["tasks_not_run"] == {}


def test_a_loss_an_sts_gate_would_not_see_fails_retrieval_and_classification(suite, data_dir):
    """On the real default model: a backend right on similarity texts and scrambled on queries, documents and
    classification inputs keeps STS whole (an STS-only gate passes it) and fails the retrieval, reranking and
    classification types and the overall MTEB retention."""
    result = suite.run("-m", "quality", "--backends=torch-fp32,role-scrambled", f"--data-dir={data_dir}")
    assert result.ret == 1, result.stdout.str()[-3000:]
    report = suite.report()
    mine = report["backends"]["role-scrambled"]
    assert mine["quality"]["stsb"]["retention"] == pytest.approx(1.0), mine["quality"]["stsb"]
    verdicts = suite.verdicts()
    assert verdicts[("role-scrambled", "quality/task_type[STS]")] == "pass"
    assert verdicts[("role-scrambled", "quality/task_type[PairClassification]")] == "pass"
    for kind in ("Retrieval", "Reranking", "Classification"):
        assert verdicts[("role-scrambled", f"quality/task_type[{kind}]")] == "fail", kind
        assert mine["summary"]["quality_retention_types"][kind] < 0.9, mine["summary"]
    assert verdicts[("role-scrambled", "quality/overall")] == "fail"
    overall = next(t for t in report["tests"] if t["gate"] == "quality/overall" and t["backend"] == "role-scrambled")
    assert "mean over task types (" in overall["message"], overall["message"]
    assert "Retrieval" in overall["message"], overall["message"]


def test_without_data_the_report_says_no_real_task_was_gated(suite, tiny_model):
    result = suite.run(f"--model={tiny_model}", "--backends=torch-fp32", "-m", "quality")
    assert result.ret == 0, result.stdout.str()[-2000:]
    report = suite.report()
    assert set(report["run"]["tasks_not_run"]) == set(REAL)
    assert report["run"]["tasks_not_run"]["stsb"] == "stsb (STS) not run: no --data-dir (nor --hub-tasks) (its floor 0.65 not gated)"
    first = "no real task gated: quality is judged on the project's fixture sets alone (give --data-dir or --hub-tasks)"
    result.stdout.fnmatch_lines(["*embedgate verdicts*", first])
    markdown = (suite.pytester.path / "reports" / "report.md").read_text()
    assert "**No real task gated**" in markdown.split("## Recommendation")[0]


def test_hub_tasks_load_by_their_mteb_names(suite, tiny_model, data_dir, monkeypatch):
    """--hub-tasks asks mteb for each task --data-dir lacks by its MTEB name (a substitute of the same type where
    MTEB has none); here the hub is a fake source handing out the local folders' tasks."""
    import mteb

    from embedgate.taskdata import TASKS, load
    from embedgate.tasks import mteb_task

    by_mteb = {spec.mteb_name or spec.hub_substitute: spec for spec in TASKS.values() if spec.real}
    asked = []

    def fake_get_task(name):
        asked.append(name)
        if name not in by_mteb:
            raise KeyError(name)
        return mteb_task(by_mteb[name], load(by_mteb[name].name, data_dir, "default"))

    monkeypatch.setattr(mteb, "get_task", fake_get_task)
    result = suite.run(f"--model={tiny_model}", "--backends=torch-fp32", "-m", "quality", "--hub-tasks",
                       "-k", "stsb or scifact or overall", "--threshold=quality.floors.stsb=-1")
    assert result.ret == 0, result.stdout.str()[-3000:]
    assert sorted(asked) == sorted(by_mteb), asked
    tasks = suite.report()["run"]["tasks"]
    assert tasks["scifact"]["source"] == "the hub: mteb SciFact", tasks["scifact"]
    assert tasks["msrp"]["source"] == "the hub: mteb TwitterSemEval2015", tasks["msrp"]
    assert suite.report()["run"]["tasks_not_run"] == {}
    from embedgate import tasks as loaded
    from embedgate.taskdata import RetrievalData

    assert isinstance(loaded._LOADED["scifact"], RetrievalData), "a hub task is read back and cut as a folder is"

    class Unreachable:  # mteb knows the task; its data is what needs the network
        def __init__(self, name):
            self.name = name

        def load_data(self):
            raise ConnectionError(f"cannot reach the hub for {self.name}\nmore detail")

    monkeypatch.setattr(mteb, "get_task", Unreachable)
    result = suite.run(f"--model={tiny_model}", "--backends=torch-fp32", "--hub-tasks")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    errors = [line for line in result.stderr.lines if line.startswith("ERROR:")]
    assert errors == ["ERROR: --hub-tasks stsb (STSBenchmark): its data could not be loaded (ConnectionError: cannot "
                      "reach the hub for STSBenchmark); reach the hub or put it in the local Hugging Face cache"], errors


def test_an_unknown_quality_profile_is_a_usage_error(suite, tiny_model):
    result = suite.run(f"--model={tiny_model}", "--quality-profile=huge")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert any("unknown quality profile 'huge'; profiles: quick, default, full" in line for line in result.stderr.lines)
