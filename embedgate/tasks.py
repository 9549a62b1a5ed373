"""Task quality through mteb's own evaluators: offline tasks built from local data, and mteb tasks by name.

- fixture-sts:        fixtures/sts.csv, pairs written and scored (0-5) for this project
- fixture-retrieval:  fixtures/retrieval/, 60 documents, 36 queries with their relevant documents
- stsb-test:          the STS Benchmark test split from --data-dir (DIR/stsb/stsb-en-test.csv)
- any --mteb-tasks:   mteb.get_task(name), whose data must load without the hub (e.g. from a local HF cache)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from embedgate import EmbedgateError, MissingDependency, UsageError
from embedgate.data import fixture_retrieval, fixture_sts, read_sts_csv, stsb_test_file

if TYPE_CHECKING:
    from mteb.abstasks.task_metadata import TaskType

    from backends import EmbeddingBackend

BUILTIN_TASKS = ("fixture-sts", "fixture-retrieval", "stsb-test")
# mteb task types -> the embedgate role whose prompt the model should get
TASK_TYPE_ROLES = {"STS": "similarity", "Classification": "classification", "Clustering": "clustering",
                   "PairClassification": "similarity", "BitextMining": "similarity"}


def task_names(session) -> list[str]:
    names = ["fixture-sts", "fixture-retrieval"]
    if stsb_test_file(session.data_dir) is not None:
        names.append("stsb-test")
    return names + list(session.options.mteb_tasks)


def _metadata(name: str, task_type: TaskType, main_score: str, description: str):
    from mteb.abstasks.task_metadata import TaskMetadata

    return TaskMetadata(
        name=name, dataset={"path": f"embedgate/{name}", "revision": "local"}, description=description,
        reference=None, type=task_type, category="t2t", modalities=["text"], eval_splits=["test"],
        eval_langs=["eng-Latn"], main_score=main_score, date=None, domains=None, task_subtypes=None,
        license=None, annotations_creators="human-annotated", dialect=None, sample_creation=None, bibtex_citation=None,
    )


def _sts_task(name: str, rows: list[tuple[str, str, float]], description: str):
    from datasets import Dataset, DatasetDict
    from mteb.abstasks.sts import AbsTaskSTS

    class LocalSTS(AbsTaskSTS):
        metadata = _metadata(name, "STS", "cosine_spearman", description)
        min_score, max_score = 0, 5

        def load_data(self, num_proc=None, **kwargs) -> None:
            self.dataset = DatasetDict({"test": Dataset.from_dict({
                "sentence1": [r[0] for r in rows], "sentence2": [r[1] for r in rows], "score": [r[2] for r in rows],
            })})
            self.data_loaded = True

    return LocalSTS()


def _retrieval_task():
    from datasets import Dataset
    from mteb.abstasks.retrieval import AbsTaskRetrieval

    corpus, queries, qrels = fixture_retrieval()

    class LocalRetrieval(AbsTaskRetrieval):
        metadata = _metadata("fixture-retrieval", "Retrieval", "ndcg_at_10",
                             "embedgate's own retrieval set: 36 queries over 60 documents in 10 domains")

        def load_data(self, num_proc=None, **kwargs) -> None:
            self.dataset = {"default": {"test": {
                "corpus": Dataset.from_dict({"id": [d["id"] for d in corpus], "text": [d["text"] for d in corpus]}),
                "queries": Dataset.from_dict({"id": [q["id"] for q in queries], "text": [q["text"] for q in queries]}),
                "relevant_docs": qrels, "top_ranked": None,
            }}}
            self.data_loaded = True

    return LocalRetrieval()


def make_task(name: str, data_dir):
    try:
        import mteb
    except ImportError as exc:
        raise MissingDependency("mteb", "mteb") from exc
    if name == "fixture-sts":
        return _sts_task(name, fixture_sts(), "embedgate's own STS pairs, scored 0-5 by the team")
    if name == "fixture-retrieval":
        return _retrieval_task()
    if name == "stsb-test":
        path = stsb_test_file(data_dir)
        if path is None:
            raise UsageError("stsb-test needs --data-dir with stsb/stsb-en-test.csv")
        return _sts_task(name, read_sts_csv(path, header=False), f"STS Benchmark test split from {path}")
    if name in _LOADED:
        return _LOADED[name]
    try:
        task = mteb.get_task(name)
    except (KeyError, ValueError) as exc:
        raise EmbedgateError(f"--mteb-tasks {name}: not an mteb task ({str(exc).splitlines()[0][:160]})") from None
    try:
        task.load_data()
    except Exception as exc:  # datasets/hub errors vary; the user needs the task name and the first line
        raise EmbedgateError(
            f"--mteb-tasks {name}: its data could not be loaded offline ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0][:200] if str(exc) else ''}); put it in the local Hugging Face cache first"
        ) from None
    _LOADED[name] = task
    return task


_LOADED: dict[str, Any] = {}  # --mteb-tasks loaded once per process, then shared by every backend


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


def as_mteb_encoder(backend: EmbeddingBackend, model_hash: str):
    """An embedgate backend as an mteb encoder (mteb's AbsEncoder supplies the cosine similarity functions)."""
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
            return self.backend.encode(texts, role=role, batch_size=int(kwargs.get("batch_size") or 32))

    return BackendEncoder()


def evaluate(backend: EmbeddingBackend, task_name: str, data_dir, model_hash: str) -> dict[str, Any]:
    """Run one task for one backend through mteb.evaluate; returns the main score and every score mteb gave."""
    import logging

    import mteb

    logging.getLogger("mteb").setLevel(logging.WARNING)
    task = make_task(task_name, data_dir)
    result = mteb.evaluate(as_mteb_encoder(backend, model_hash), task, cache=None, show_progress_bar=False,
                           encode_kwargs={"batch_size": 32})
    scores = result.task_results[0].scores
    split = scores.get("test") or next(iter(scores.values()))
    first = split[0]
    return {
        "task": task_name, "main_score_name": task.metadata.main_score, "main_score": float(first["main_score"]),
        "scores": {k: v for k, v in first.items() if isinstance(v, (int, float))},
        "mteb_version": getattr(mteb, "__version__", "unknown"),
    }
