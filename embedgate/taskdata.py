"""The built-in quality tasks: one `TaskSpec` each (its MTEB name, type, main score, where its data lives, how it
is read and cut to size), and the readers that turn a data folder into plain Python data.

Real tasks are read from --data-dir in the folder format of ../shared/data/README.md (mteb's own formats where
mteb has one); the project never carries a copy. The two fixture tasks are the project's own small sets, so a run
without data still measures something, but they are never the evidence for a verdict when a real task ran.

A task too large for a CI run is cut deterministically (a seeded sample named by the task, rows kept in file
order) by the quality profile: `quick` (a 300M model on 2 cores: ~3,400 texts a backend), `default` (a small model
in CI: ~6,500 texts, STS-B whole), `full` (every row, for releases). Retention compares a backend with torch-fp32
on the same rows, so a cut moves both scores together; the absolute scores of a cut are not MTEB's published ones.
"""

from __future__ import annotations

import csv
import random
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from embedgate.data import fixture_retrieval, fixture_sts, read_jsonl, read_sts_csv

PROFILES = ("quick", "default", "full")


@dataclass(frozen=True)
class STSData:
    pairs: list[tuple[str, str, float]]
    min_score: float
    max_score: float


@dataclass(frozen=True)
class RetrievalData:
    """Retrieval (rank the whole corpus) or, with `top_ranked`, reranking (rank each query's own candidates)."""

    queries: dict[str, str]
    corpus: dict[str, tuple[str, str]]  # id -> (title, text)
    qrels: dict[str, dict[str, int]]
    top_ranked: dict[str, list[str]] | None = None


@dataclass(frozen=True)
class ClassificationData:
    train: list[tuple[str, str]]  # (text, label): what the classifier is fitted on, as mteb does
    test: list[tuple[str, str]]


@dataclass(frozen=True)
class PairData:
    pairs: list[tuple[str, str, int]]  # (sentence1, sentence2, 1 = paraphrase)


TaskData = STSData | RetrievalData | ClassificationData | PairData


@dataclass(frozen=True)
class TaskSpec:
    """One built-in task. `test_texts` of a loaded task are what no build may be fitted or calibrated on."""

    name: str
    task_type: str  # mteb's: STS, Retrieval, Reranking, Classification, PairClassification
    main_score: str  # the key of mteb's scores that the gates compare
    description: str
    reader: Callable[[Path | None], TaskData]  # the whole test split (and a classifier's train split)
    folder: str | None = None  # under --data-dir; None: a fixture of this project
    required: tuple[str, ...] = ()  # files the folder must hold
    mteb_name: str | None = None  # the same task in mteb's registry, loaded from the hub where --data-dir lacks it
    hub_substitute: str | None = None  # not in MTEB: the mteb task of the same type loaded in its place from the hub
    # profile -> how many of each part the cut keeps: pairs; queries and corpus; train and test per label
    limits: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def real(self) -> bool:
        return self.folder is not None

    def available(self, data_dir: Path | None) -> bool:
        return self.folder is None or (data_dir is not None and all(
            (Path(data_dir) / self.folder / f).is_file() for f in self.required))

    def size(self, profile: str) -> str:
        """What the profile's cut keeps, for the report: '300 pairs', 'every row'."""
        limits = self.limits.get(profile)
        if not limits:
            return "every row"
        if "train" in limits:
            return f"train {limits['train']} / test {limits['test']} per label"
        return ", ".join(f"{n:,} {part}" for part, n in limits.items())


# ---------------------------------------------------------------- reading and cutting


def _field(row: dict[str, Any], key: str, path: Path, kind: type | tuple[type, ...] = str) -> Any:
    value = row.get(key)
    if not isinstance(value, kind):
        what = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
        raise ValueError(f"{path}: a row without a {what} {key!r}: {str(row)[:120]}")
    return value


def sample(rows: list, k: int | None, task: str, what: str = "") -> list:
    """A deterministic sample of k rows in their file order, seeded by the task's name (the same rows on every
    machine and run); all rows when k is None or not smaller."""
    if k is None or k >= len(rows):
        return list(rows)
    rng = random.Random(zlib.crc32(f"{task}/{what}".encode()))
    keep = sorted(rng.sample(range(len(rows)), k))
    return [rows[i] for i in keep]


def per_label(rows: list[tuple[str, str]], k: int | None, task: str, what: str) -> list[tuple[str, str]]:
    """At most k rows of every label (stratified, deterministic), in file order."""
    if k is None:
        return list(rows)
    by_label: dict[str, list[int]] = {}
    for i, (_, label) in enumerate(rows):
        by_label.setdefault(label, []).append(i)
    keep: list[int] = []
    for label in sorted(by_label):
        keep += sample(by_label[label], k, task, f"{what}/{label}")
    return [rows[i] for i in sorted(keep)]


def cut(spec: TaskSpec, data: TaskData, profile: str) -> TaskData:
    """The profile's deterministic cut of a task's data (the same rows on every machine): pairs sampled; retrieval
    queries sampled with every relevant document kept and the corpus filled up with a fixed sample of the others;
    reranking questions sampled with their candidates; classification sampled per label."""
    limits = spec.limits.get(profile) or {}
    if not limits:
        return data
    if isinstance(data, STSData):
        return STSData(sample(data.pairs, limits["pairs"], spec.name), data.min_score, data.max_score)
    if isinstance(data, PairData):
        return PairData(sample(data.pairs, limits["pairs"], spec.name))
    if isinstance(data, ClassificationData):
        return ClassificationData(per_label(data.train, limits["train"], spec.name, "train"),
                                  per_label(data.test, limits["test"], spec.name, "test"))
    if data.top_ranked is not None:  # reranking: whole questions, each with its own candidates
        kept = sample(list(data.queries), limits["queries"], spec.name)
        docs = {d for q in kept for d in data.top_ranked[q]}
        return RetrievalData({q: data.queries[q] for q in kept}, {d: t for d, t in data.corpus.items() if d in docs},
                             {q: data.qrels[q] for q in kept if q in data.qrels}, {q: data.top_ranked[q] for q in kept})
    judged = sorted((q for q in data.qrels if q in data.queries), key=_natural)
    kept = sample(judged, limits.get("queries"), spec.name, "queries")
    qrels = {q: data.qrels[q] for q in kept}
    relevant = {d for docs in qrels.values() for d in docs}
    others = [d for d in data.corpus if d not in relevant]
    size = limits.get("corpus")
    keep = relevant | set(sample(others, None if size is None else max(0, size - len(relevant)), spec.name, "corpus"))
    return RetrievalData({q: data.queries[q] for q in kept}, {d: t for d, t in data.corpus.items() if d in keep}, qrels)


def read_stsb(data_dir: Path | None) -> STSData:
    return STSData(read_sts_csv(Path(data_dir or ".") / "stsb" / "stsb-en-test.csv", header=False), 0.0, 5.0)


def read_sickr(data_dir: Path | None) -> STSData:
    path = Path(data_dir or ".") / "sickr" / "test.csv"
    rows = []
    with path.open(encoding="utf-8", newline="") as fh:
        for number, row in enumerate(csv.DictReader(fh), 2):
            try:
                score = float(row["score"])
            except (KeyError, TypeError, ValueError):
                raise ValueError(f"{path}:{number}: expected columns sentence1,sentence2,score with a number") from None
            if not 1.0 <= score <= 5.0:
                raise ValueError(f"{path}:{number}: score {row['score']!r} is outside 1-5")
            rows.append((row["sentence1"], row["sentence2"], score))
    if not rows:
        raise ValueError(f"{path}:1: no sentence pairs in the file")
    return STSData(rows, 1.0, 5.0)


def read_scifact(data_dir: Path | None) -> RetrievalData:
    folder = Path(data_dir or ".") / "scifact"
    queries = {str(_field(q, "id", folder / "queries.jsonl", (str, int))): _field(q, "text", folder / "queries.jsonl")
               for q in read_jsonl(folder / "queries.jsonl")}
    corpus = {str(_field(d, "id", folder / "corpus.jsonl", (str, int))): (str(d.get("title") or ""),
                                                                         _field(d, "text", folder / "corpus.jsonl"))
              for d in read_jsonl(folder / "corpus.jsonl")}
    qrels = {q: docs for q, docs in _qrels(folder / "qrels.tsv").items() if q in queries}
    missing = sorted({d for docs in qrels.values() for d in docs} - corpus.keys())
    if missing:
        raise ValueError(f"{folder / 'qrels.tsv'}: relevant documents not in corpus.jsonl: {', '.join(missing[:5])}")
    return RetrievalData(queries, corpus, qrels)


def _natural(key: str) -> tuple[int, str]:
    return (int(key), "") if key.isdigit() else (1 << 62, key)


def _qrels(path: Path) -> dict[str, dict[str, int]]:
    qrels: dict[str, dict[str, int]] = {}
    with path.open(encoding="utf-8") as fh:
        header = next(fh, "")
        if "query" not in header:
            raise ValueError(f"{path}:1: expected the header 'query-id corpus-id score'")
        for number, line in enumerate(fh, 2):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 3 or not parts[2].lstrip("-").isdigit():
                raise ValueError(f"{path}:{number}: expected query-id, corpus-id and a whole-number score")
            qrels.setdefault(parts[0], {})[parts[1]] = int(parts[2])
    return qrels


def read_wikiqa(data_dir: Path | None) -> RetrievalData:
    path = Path(data_dir or ".") / "wikiqa" / "test.jsonl"
    rows = read_jsonl(path)
    queries: dict[str, str] = {}
    corpus: dict[str, tuple[str, str]] = {}
    qrels: dict[str, dict[str, int]] = {}
    top: dict[str, list[str]] = {}
    for i, row in enumerate(rows):
        qid = str(row.get("id", i))
        queries[qid] = _field(row, "query", path)
        candidates = [(s, 1) for s in _field(row, "positive", path, list)] + [(s, 0) for s in _field(row, "negative", path, list)]
        top[qid] = []
        for j, (sentence, relevant) in enumerate(candidates):
            doc = f"{qid}-{j}"
            corpus[doc] = ("", sentence)
            top[qid].append(doc)
            if relevant:
                qrels.setdefault(qid, {})[doc] = 1
    return RetrievalData(queries, corpus, qrels, top)


def _labelled(path: Path) -> list[tuple[str, str]]:
    return [(_field(r, "text", path), str(_field(r, "label", path, (str, int)))) for r in read_jsonl(path)]


def read_banking77(data_dir: Path | None) -> ClassificationData:
    folder = Path(data_dir or ".") / "banking77"
    return ClassificationData(_labelled(folder / "train.jsonl"), _labelled(folder / "test.jsonl"))


def read_msrp(data_dir: Path | None) -> PairData:
    path = Path(data_dir or ".") / "msrp" / "test.jsonl"
    rows = []
    for r in read_jsonl(path):
        label = r.get("label")
        if label not in (0, 1):
            raise ValueError(f"{path}: a row whose label is not 0 or 1: {str(r)[:120]}")
        rows.append((_field(r, "sentence1", path), _field(r, "sentence2", path), int(label)))
    return PairData(rows)


def read_fixture_sts(data_dir: Path | None) -> STSData:
    return STSData(fixture_sts(), 0.0, 5.0)


def read_fixture_retrieval(data_dir: Path | None) -> RetrievalData:
    corpus, queries, qrels = fixture_retrieval()
    return RetrievalData({q["id"]: q["text"] for q in queries}, {d["id"]: ("", d["text"]) for d in corpus}, qrels)


# ---------------------------------------------------------------- the registry

TASKS: dict[str, TaskSpec] = {spec.name: spec for spec in (
    TaskSpec("stsb", "STS", "cosine_spearman", "STS Benchmark test split (1,379 pairs, 0-5)", read_stsb,
             "stsb", ("stsb-en-test.csv",), "STSBenchmark", limits={"quick": {"pairs": 300}}),
    TaskSpec("sickr", "STS", "cosine_spearman", "SICK test split (4,927 pairs, relatedness 1-5)", read_sickr,
             "sickr", ("test.csv",), "SICK-R", limits={"quick": {"pairs": 300}, "default": {"pairs": 500}}),
    TaskSpec("scifact", "Retrieval", "ndcg_at_10", "SciFact: scientific claims over abstracts (BEIR test split)",
             read_scifact, "scifact", ("queries.jsonl", "corpus.jsonl", "qrels.tsv"), "SciFact",
             limits={"quick": {"queries": 50, "corpus": 150}, "default": {"queries": 150, "corpus": 500}}),
    TaskSpec("wikiqa", "Reranking", "map_at_1000", "WikiQA: Bing questions, rank each one's Wikipedia sentences",
             read_wikiqa, "wikiqa", ("test.jsonl",), None, "AskUbuntuDupQuestions",
             limits={"quick": {"queries": 50}, "default": {"queries": 120}}),
    TaskSpec("banking77", "Classification", "accuracy", "Banking77: 77 intents, logistic regression on train vectors",
             read_banking77, "banking77", ("train.jsonl", "test.jsonl"), "Banking77Classification",
             limits={"quick": {"train": 8, "test": 3}, "default": {"train": 12, "test": 5}}),
    TaskSpec("msrp", "PairClassification", "max_ap", "MSR paraphrase corpus test split (1,725 pairs)", read_msrp,
             "msrp", ("test.jsonl",), None, "TwitterSemEval2015",
             limits={"quick": {"pairs": 300}, "default": {"pairs": 500}}),
    TaskSpec("fixture-sts", "STS", "cosine_spearman", "embedgate's own STS pairs, scored 0-5 by the team",
             read_fixture_sts),
    TaskSpec("fixture-retrieval", "Retrieval", "ndcg_at_10",
             "embedgate's own retrieval set: 36 queries over 60 documents in 10 domains", read_fixture_retrieval),
)}
REAL_TASKS = tuple(name for name, spec in TASKS.items() if spec.real)


def load(name: str, data_dir: Path | None, profile: str) -> TaskData:
    """A built-in task's data cut by the profile; a file not in its format is a ValueError naming the file and line."""
    spec = TASKS[name]
    return cut(spec, spec.reader(data_dir), profile)


def texts(data: TaskData) -> list[str]:
    """Every text a task's gate scores (for the overlap check: nothing may be fitted on these)."""
    if isinstance(data, STSData):
        return [t for a, b, _ in data.pairs for t in (a, b)]
    if isinstance(data, PairData):
        return [t for a, b, _ in data.pairs for t in (a, b)]
    if isinstance(data, ClassificationData):
        return [t for t, _ in data.test]
    return list(data.queries.values()) + [f"{title} {text}".strip() for title, text in data.corpus.values()] + [
        text for _, text in data.corpus.values()]


def normalise(text: str) -> str:
    """How texts are compared for overlap: case and whitespace do not make a test sentence new."""
    return " ".join(text.lower().split())


def test_split_texts(data_dir: Path | None) -> dict[str, set[str]]:
    """Every gated test split this data can give (the fixture sets, and every real task's whole test split: every
    profile's cut is inside it), normalised, by task name."""
    out = {}
    for name, spec in TASKS.items():
        if spec.available(data_dir):
            out[name] = {normalise(t) for t in texts(load(name, data_dir, "full"))}
    return out


def overlap(corpus: list[str], data_dir: Path | None) -> dict[str, int]:
    """How many of the corpus's texts each available test split holds (normalised): the fit-on-test check."""
    mine = {normalise(t) for t in corpus}
    return {name: len(mine & split) for name, split in test_split_texts(data_dir).items() if mine & split}
