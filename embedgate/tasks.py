"""The run's quality tasks as mteb tasks: which tasks a run has, their data, and their mteb task objects (scored
and aggregated by embedgate/scoring.py).

The built-in tasks (embedgate/taskdata.py's registry) become mteb tasks of their type (STS, Retrieval, Reranking,
Classification, PairClassification) and are scored by `mteb.evaluate`; `--mteb-tasks` adds any mteb task by name,
and `--hub-tasks` loads the built-in tasks that --data-dir lacks by their MTEB names (`load_from_hub`, the one path
that may reach the network, used before the run goes offline).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from embedgate import EmbedgateError, MissingDependency, UsageError
from embedgate.taskdata import (
    TASKS,
    ClassificationData,
    PairData,
    RetrievalData,
    STSData,
    TaskData,
    TaskSpec,
    cut,
)
from embedgate.taskdata import load as load_data

if TYPE_CHECKING:
    from mteb.abstasks.task_metadata import TaskType

BUILTIN_TASKS = tuple(TASKS)

_DATA: dict[tuple[str, str, str], TaskData] = {}  # (task, data dir, profile) -> its data, read once per process
_LOADED: dict[str, Any] = {}  # --mteb-tasks' mteb tasks and --hub-tasks' data (or whole task), loaded once per run


def reset() -> None:
    """A new run's start: tasks loaded from mteb belong to the run that asked for them (pytester runs many in one
    process), while the data read from files stays keyed by its folder."""
    _LOADED.clear()


def require_mteb():
    """mteb itself, or the missing extra's one line."""
    try:
        import mteb
    except ImportError as exc:
        raise MissingDependency("mteb", "mteb") from exc
    return mteb


def builtin_data(name: str, data_dir: Path | None, profile: str) -> TaskData:
    key = (name, str(data_dir), profile)
    if key not in _DATA:
        _DATA[key] = load_data(name, data_dir, profile)
    return _DATA[key]


def check_data_dir(data_dir: Path, profile: str) -> list[str]:
    """Read every task folder --data-dir holds before any test: a folder missing a file or a file not in its
    format is a usage error naming it, not the same failure under every backend after an hour of other gates.
    Returns the tasks found; a folder with none of them is an error too."""
    found = []
    for spec in TASKS.values():
        if not spec.real or not (Path(data_dir) / str(spec.folder)).is_dir():
            continue
        missing = [f for f in spec.required if not (Path(data_dir) / str(spec.folder) / f).is_file()]
        if missing:
            raise UsageError(f"--data-dir {data_dir}: {spec.folder}/ has no {', '.join(missing)} (task {spec.name})")
        try:
            builtin_data(spec.name, data_dir, profile)
        except (OSError, ValueError, UnicodeDecodeError) as exc:
            raise UsageError(f"--data-dir {data_dir}: task {spec.name}: {exc}") from None
        found.append(spec.name)
    if not found:
        folders = ", ".join(f"{s.folder}/" for s in TASKS.values() if s.real)
        raise UsageError(f"--data-dir {data_dir}: none of the task folders ({folders}) is there; "
                         "leave --data-dir out to run on the fixture sets alone")
    return found


def task_names(session) -> list[str]:
    """The run's tasks: every built-in task whose data this run has (--data-dir, or the hub under --hub-tasks),
    the fixture sets, and --mteb-tasks."""
    names = [name for name, spec in TASKS.items()
             if spec.real and (spec.available(session.data_dir) or name in _LOADED)]
    names += [name for name, spec in TASKS.items() if not spec.real]
    return names + [t for t in session.options.mteb_tasks if t not in names]


def task_type(name: str) -> str:
    if name in TASKS:
        return TASKS[name].task_type  # a hub substitute is of the same type
    task = _LOADED.get(name)
    return str(task.metadata.type) if task is not None else "unknown"


def is_real(name: str) -> bool:
    return name not in TASKS or TASKS[name].real


def _task_metadata(name: str, task_type: TaskType, main_score: str, description: str):
    from mteb.abstasks.task_metadata import TaskMetadata

    return TaskMetadata(
        name=name, dataset={"path": f"embedgate/{name}", "revision": "local"}, description=description,
        reference=None, type=task_type, category="t2t", modalities=["text"], eval_splits=["test"],
        eval_langs=["eng-Latn"], main_score=main_score, date=None, domains=None, task_subtypes=None,
        license=None, annotations_creators="human-annotated", dialect=None, sample_creation=None, bibtex_citation=None,
    )


def mteb_task(spec: TaskSpec, data: TaskData):
    """A built-in task's data as an mteb task of its type, scored by mteb's own evaluator."""
    base, dataset, extra = _mteb_parts(data)

    def load_data(self, num_proc=None, **kwargs) -> None:
        self.dataset = dataset
        self.data_loaded = True

    metadata = _task_metadata(spec.name, spec.task_type, spec.main_score, spec.description)  # type: ignore[arg-type]
    cls = type(f"Local{spec.task_type}", (base,), {"metadata": metadata, "load_data": load_data, **extra})
    return cls()


def _mteb_parts(data: TaskData) -> tuple[type, Any, dict[str, Any]]:
    """The mteb abstract task for the data's type, its dataset in the form that task reads, and class attributes."""
    from datasets import Dataset, DatasetDict
    from mteb.abstasks.classification import AbsTaskClassification
    from mteb.abstasks.pair_classification import AbsTaskPairClassification
    from mteb.abstasks.retrieval import AbsTaskRetrieval
    from mteb.abstasks.sts import AbsTaskSTS

    if isinstance(data, STSData):
        rows = {"sentence1": [p[0] for p in data.pairs], "sentence2": [p[1] for p in data.pairs],
                "score": [p[2] for p in data.pairs]}
        return AbsTaskSTS, DatasetDict({"test": Dataset.from_dict(rows)}), {
            "min_score": data.min_score, "max_score": data.max_score}
    if isinstance(data, RetrievalData):
        corpus = Dataset.from_dict({"id": list(data.corpus), "title": [t for t, _ in data.corpus.values()],
                                    "text": [x for _, x in data.corpus.values()]})
        queries = Dataset.from_dict({"id": list(data.queries), "text": list(data.queries.values())})
        return AbsTaskRetrieval, {"default": {"test": {"corpus": corpus, "queries": queries, "relevant_docs": data.qrels,
                                                       "top_ranked": data.top_ranked}}}, {}
    if isinstance(data, ClassificationData):
        splits = {split: Dataset.from_dict({"text": [t for t, _ in rows], "label": [lab for _, lab in rows]})
                  for split, rows in (("train", data.train), ("test", data.test))}
        return AbsTaskClassification, DatasetDict(splits), {}
    rows = {"sentence1": [p[0] for p in data.pairs], "sentence2": [p[1] for p in data.pairs],
            "labels": [p[2] for p in data.pairs]}
    return AbsTaskPairClassification, DatasetDict({"test": Dataset.from_dict(rows)}), {}


def make_task(name: str, data_dir: Path | None, profile: str = "default"):
    require_mteb()
    loaded = _LOADED.get(name)
    if name in TASKS and isinstance(loaded, TaskData):  # a hub task read as plain data: cut as a folder is
        return mteb_task(TASKS[name], cut(TASKS[name], loaded, profile))
    if loaded is not None:
        return loaded
    if name in TASKS:
        spec = TASKS[name]
        if not spec.available(data_dir):
            raise UsageError(f"task {name} needs --data-dir with {spec.folder}/ ({', '.join(spec.required)})")
        return mteb_task(spec, builtin_data(name, data_dir, profile))
    _LOADED[name] = _load_mteb_task(name, f"--mteb-tasks {name}")
    return _LOADED[name]


def _load_mteb_task(name: str, what: str, source: Callable[[str], Any] | None = None):
    """mteb.get_task(name) with its data loaded; an unknown name or data that cannot be had is an EmbedgateError."""
    mteb = require_mteb()
    get_task = source or mteb.get_task
    try:
        task = get_task(name)
    except (KeyError, ValueError) as exc:
        raise EmbedgateError(f"{what}: not an mteb task ({str(exc).splitlines()[0][:160]})") from None
    try:
        task.load_data()
    except Exception as exc:  # datasets/hub errors vary; the user needs the task name and the first line
        raise EmbedgateError(
            f"{what}: its data could not be loaded ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0][:200] if str(exc) else ''}); reach the hub or put it in the local Hugging Face cache"
        ) from None
    return task


def load_from_hub(names: list[str], data_dir: Path | None, source: Callable[[str], Any] | None = None) -> dict[str, str]:
    """--hub-tasks: each built-in real task that --data-dir lacks, loaded by its MTEB name (or, for a task MTEB
    does not have, the mteb task of the same type named as its substitute) through `source` (mteb.get_task; the
    Hugging Face datasets cache keeps it between runs). Returns task -> the mteb task that stands in for it."""
    loaded = {}
    for name in names:
        spec = TASKS[name]
        if not spec.real or spec.available(data_dir) or name in _LOADED:
            continue
        mteb_name = spec.mteb_name or spec.hub_substitute
        if mteb_name is None:
            continue
        try:
            task = _load_mteb_task(mteb_name, f"--hub-tasks {name} ({mteb_name})", source)
        except EmbedgateError as exc:
            raise UsageError(str(exc)) from None
        data = from_mteb(task, spec.task_type)
        _LOADED[name] = task if data is None else data  # whole, where its layout is not one from_mteb reads
        loaded[name] = mteb_name
    return loaded


def from_mteb(task, kind: str) -> TaskData | None:
    """A loaded mteb task's test split as plain data, so that the quality profile cuts it as it cuts a folder (a
    whole hub task can be many times the CI budget: TwitterSemEval2015 has 16,777 pairs); None where its layout
    is not the one read here, and the task is then scored whole."""
    dataset = task.dataset

    def split(name: str):
        return dataset[name] if name in dataset else dataset["default"][name]

    def rows(part, *columns: str) -> list[tuple]:
        if len(part) == 1 and isinstance(part[0][columns[0]], list):  # mteb v1's one-row layout
            return list(zip(*(part[0][c] for c in columns), strict=True))
        return list(zip(*(part[c] for c in columns), strict=True))

    try:
        if kind == "STS":
            first, second = getattr(task, "column_names", ("sentence1", "sentence2"))
            pairs = [(str(a), str(b), float(x)) for a, b, x in rows(split("test"), first, second, "score")]
            return STSData(pairs, float(task.min_score), float(task.max_score))
        if kind == "PairClassification":
            labelled = rows(split("test"), task.input1_column_name, task.input2_column_name, task.label_column_name)
            return PairData([(str(a), str(b), int(x)) for a, b, x in labelled])
        if kind == "Classification":
            text, label = task.input_column_name, task.label_column_name
            return ClassificationData([(str(t), str(x)) for t, x in rows(split(task.train_split), text, label)],
                                      [(str(t), str(x)) for t, x in rows(split("test"), text, label)])
        if kind in ("Retrieval", "Reranking"):
            part = dataset["default"]["test"]
            corpus = {str(r["id"]): (str(r.get("title") or ""), str(r["text"])) for r in part["corpus"]}
            queries = {str(r["id"]): str(r["text"]) for r in part["queries"]}
            qrels = {str(q): {str(d): int(x) for d, x in docs.items()} for q, docs in part["relevant_docs"].items()}
            top = part.get("top_ranked")
            return RetrievalData(queries, corpus, qrels,
                                 {str(q): [str(d) for d in docs] for q, docs in top.items()} if top else None)
    except (KeyError, TypeError, AttributeError, IndexError, ValueError):
        return None
    return None


def preload_mteb_tasks(names: list[str], data_dir) -> None:
    """Load every --mteb-tasks task before any test runs: an unknown name or data that cannot be loaded offline is
    a usage error, not the same failure repeated under every backend after an hour of other gates."""
    for name in names:
        if name in BUILTIN_TASKS:
            raise UsageError(f"--mteb-tasks {name}: a built-in task of embedgate, gated without being named")
        try:
            make_task(name, data_dir)
        except EmbedgateError as exc:
            raise UsageError(str(exc)) from None


def counted_types(names: list[str]) -> list[str]:
    """The task types the run's aggregate is over (the types of its real tasks, or of the fixture sets alone)."""
    real = [n for n in names if is_real(n)]
    return sorted({task_type(n) for n in (real or names)})


