"""Task quality through mteb's own abstract tasks and evaluators, and its aggregation as MTEB does it.

The built-in tasks (embedgate/taskdata.py's registry) become mteb tasks of their type (STS, Retrieval, Reranking,
Classification, PairClassification) and are scored by `mteb.evaluate`; `--mteb-tasks` adds any mteb task by name,
and `--hub-tasks` loads the built-in tasks that --data-dir lacks by their MTEB names (`load_from_hub`, the one path
that may reach the network, used before the run goes offline).

Aggregation (`aggregate`): a task's retention is its main score over torch-fp32's in the same run; a type's is the
mean of its tasks'; the overall is the mean over types (MTEB averages per type so that many STS tasks do not
outvote one retrieval task). Only real tasks count when any ran; the fixture sets count only when nothing else did,
and the report then says that no real task was gated.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from embedgate import EmbedgateError, MissingDependency, UsageError
from embedgate.taskdata import (
    PROFILES,
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

    from embedgate.cache import ArtifactCache
    from embedgate.protocol import EmbeddingBackend

BUILTIN_TASKS = tuple(TASKS)
# mteb task types -> the embedgate role whose prompt the model should get (retrieval and reranking: mteb says
# query or document per call)
TASK_TYPE_ROLES = {"STS": "similarity", "Classification": "classification", "Clustering": "clustering",
                   "PairClassification": "similarity", "BitextMining": "similarity"}
VECTOR_CACHE = "reference-vectors"  # the artifact cache's folder for the reference's task vectors

_DATA: dict[tuple[str, str, str], TaskData] = {}  # (task, data dir, profile) -> its data, read once per process
_LOADED: dict[str, Any] = {}  # --mteb-tasks' mteb tasks and --hub-tasks' data (or whole task), loaded once per run


def reset() -> None:
    """A new run's start: tasks loaded from mteb belong to the run that asked for them (pytester runs many in one
    process), while the data read from files stays keyed by its folder."""
    _LOADED.clear()


def _require_mteb():
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


def _metadata(name: str, task_type: TaskType, main_score: str, description: str):
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

    metadata = _metadata(spec.name, spec.task_type, spec.main_score, spec.description)  # type: ignore[arg-type]
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
    _require_mteb()
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
    mteb = _require_mteb()
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


def role_for(task_type: str, prompt_type: Any) -> str | None:
    """The embedgate role for an mteb call: query/document when mteb says so, else by task type."""
    if prompt_type is not None:
        kind = getattr(prompt_type, "value", prompt_type)
        if kind in ("query", "document"):
            return str(kind)
    return TASK_TYPE_ROLES.get(task_type)


def cached_vectors(cache: ArtifactCache, model_hash: str, backend: EmbeddingBackend, texts: list[str],
                   role: str | None, compute: Callable[[], np.ndarray]) -> np.ndarray:
    """The reference's vectors of these texts from the artifact cache (keyed by model, backend, dims, role and the
    texts themselves, so a changed task cut or prompt is a new entry), computed and stored atomically on a miss."""
    from importlib.metadata import PackageNotFoundError, version

    from embedgate.cache import cache_key

    def _version(package: str) -> str:
        try:
            return version(package)
        except PackageNotFoundError:
            return "none"

    digest = hashlib.sha256("\0".join(texts).encode("utf-8", "surrogatepass")).hexdigest()
    key = cache_key(model=model_hash, backend=backend.name, dimension=backend.dimension, role=role, texts=digest,
                    versions={p: _version(p) for p in ("torch", "sentence-transformers", "transformers")})

    def build(out: Path) -> None:
        np.save(out / "vectors.npy", np.asarray(compute(), dtype=np.float32), allow_pickle=False)

    artifact = cache.get_or_build(VECTOR_CACHE, key, build, {"texts": len(texts), "role": role, "model": model_hash})
    return np.load(artifact.path / "vectors.npy", allow_pickle=False)


def as_mteb_encoder(backend: EmbeddingBackend, model_hash: str, vectors: Callable[..., np.ndarray] | None = None):
    """An embedgate backend as an mteb encoder (mteb's AbsEncoder supplies the cosine similarity functions);
    `vectors(texts, role, compute)` stands between the call and the backend (the reference's cache)."""
    from mteb.models.abs_encoder import AbsEncoder
    from mteb.models.model_meta import ModelMeta, ScoringFunction

    class BackendEncoder(AbsEncoder):
        def __init__(self) -> None:
            self.backend = backend
            self.mteb_model_meta = ModelMeta.create_empty({
                "name": f"embedgate/{backend.name}", "revision": model_hash[:12], "similarity_fn_name": ScoringFunction.COSINE,
                "embed_dim": backend.dimension, "max_tokens": backend.max_tokens,
            })

        def encode(self, inputs, *, task_metadata, hf_split, hf_subset, prompt_type=None, **kwargs) -> np.ndarray:
            texts = [text for batch in inputs for text in batch["text"]]
            role = role_for(task_metadata.type, prompt_type)
            size = int(kwargs.get("batch_size") or 32)
            compute = lambda: self.backend.encode(texts, role=role, batch_size=size)  # noqa: E731
            return compute() if vectors is None else vectors(texts, role, compute)

    return BackendEncoder()


def score_task(backend: EmbeddingBackend, task_name: str, data_dir, model_hash: str, *, profile: str = "default",
               vectors: Callable[..., np.ndarray] | None = None, log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run one task for one backend through mteb.evaluate; returns the main score and every score mteb gave."""
    mteb = _require_mteb()
    logging.getLogger("mteb").setLevel(logging.WARNING)
    task = make_task(task_name, data_dir, profile)
    start = time.perf_counter()
    if log is not None:
        log(f"embedgate: quality {task_name} ({task_type(task_name)}) on {backend.name} ...")
    result = mteb.evaluate(as_mteb_encoder(backend, model_hash, vectors), task, cache=None, show_progress_bar=False,
                           encode_kwargs={"batch_size": 32})
    scores = result.task_results[0].scores
    split = scores.get("test") or next(iter(scores.values()))
    first = split[0]
    seconds = time.perf_counter() - start
    if log is not None:
        log(f"embedgate: quality {task_name} on {backend.name}: {task.metadata.main_score} "
            f"{float(first['main_score']):.4f} in {seconds:.0f}s")
    return {
        "task": task_name, "task_type": task_type(task_name), "real": is_real(task_name),
        "main_score_name": task.metadata.main_score, "main_score": float(first["main_score"]),
        "scores": {k: v for k, v in first.items() if isinstance(v, (int, float))},
        "seconds": round(seconds, 2), "mteb_version": getattr(mteb, "__version__", "unknown"),
    }


def session_task_score(egsession, backend: EmbeddingBackend, task_name: str) -> dict[str, Any]:
    """A task's scores for a backend, once per run (the quality and release gates share them); the reference's
    vectors come from the artifact cache after the first run."""
    from embedgate.registry import REFERENCE

    vectors = None
    if backend.name == REFERENCE:
        def vectors(texts, role, compute):
            return cached_vectors(egsession.cache, egsession.model.content_hash, backend, texts, role, compute)
    return egsession.memoize(
        ("task", backend.name, backend.dimension, task_name),
        lambda: score_task(backend, task_name, egsession.data_dir, egsession.model.content_hash,
                           profile=egsession.options.quality_profile, vectors=vectors, log=egsession.cache.log))


def aggregate(tasks: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """MTEB's aggregation of per-task retention: the mean per task type, then the mean over types. `tasks` maps a
    task to {"task_type", "real", "retention"}; only real tasks count when any is there."""
    real = {n: t for n, t in tasks.items() if t.get("real")}
    counted = real or tasks
    types: dict[str, list[float]] = {}
    for t in counted.values():
        value = t.get("retention")
        if value is not None and math.isfinite(value):
            types.setdefault(t["task_type"], []).append(float(value))
    means = {kind: sum(v) / len(v) for kind, v in sorted(types.items())}
    return {
        "types": means,
        "overall": sum(means.values()) / len(means) if means else None,
        "tasks": sorted(n for n, t in counted.items() if t.get("retention") is not None),
        "evidence": "real tasks" if real else "fixture sets only (no real task ran)",
    }


def counted_types(names: list[str]) -> list[str]:
    """The task types the run's aggregate is over (the types of its real tasks, or of the fixture sets alone)."""
    real = [n for n in names if is_real(n)]
    return sorted({task_type(n) for n in (real or names)})


def validate_profile(value: str) -> str:
    if value not in PROFILES:
        raise UsageError(f"--quality-profile {value}: one of {', '.join(PROFILES)}")
    return value
