"""Task quality scored and aggregated: a backend as an mteb encoder, `mteb.evaluate` on the run's tasks
(embedgate/tasks.py), the reference's task vectors cached, and MTEB's aggregation of retention.

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

from embedgate.tasks import is_real, make_task, require_mteb, task_type

if TYPE_CHECKING:
    from embedgate.cache import ArtifactCache
    from embedgate.protocol import EmbeddingBackend

# mteb task types -> the embedgate role whose prompt the model should get (retrieval and reranking: mteb says
# query or document per call)
TASK_TYPE_ROLES = {"STS": "similarity", "Classification": "classification", "Clustering": "clustering",
                   "PairClassification": "similarity", "BitextMining": "similarity"}


VECTOR_CACHE = "reference-vectors"  # the artifact cache's folder for the reference's task vectors


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
    mteb = require_mteb()
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
