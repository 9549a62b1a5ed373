"""model2vec and model2vec-tuned: static students distilled from the reference model (backends/distill.py).

A distilled model is a token-embedding table (PCA-reduced); encoding a text is a lookup and a mean, which is
why it is ~100x faster, and why its vectors live in a space of their own: the registry marks it as not sharing
the reference's vector space, so it is gated on task quality and latency, not on cosine to the reference.
`model2vec` is the distilled table; `model2vec-tuned` is that table fitted to the teacher's sentence vectors on a
corpus (backends/tune.py): --distill-corpus, else STS-B train+dev sentences under --data-dir, else it skips.

Quality evidence must not be in-domain for what it judges: no text of the corpus may be in a gated test split
(embedgate.taskdata.overlap, checked at every load, the cached artifact's too). A --distill-corpus that shares
texts with one is refused with a line naming the task; the default corpus leaves such texts out, and says how many.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from backends import BackendMetadata, BuildContext
from backends._base import BaseBackend, Timer
from backends.corpus import Corpus, choose, clean_texts
from embedgate import EmbedgateError
from embedgate.cache import cache_key


def _params(ctx: BuildContext):
    from backends.distill import DistillParams

    return DistillParams(max_length=ctx.model.max_seq_length)


def _versions() -> dict:
    from importlib.metadata import version

    import model2vec
    import sentence_transformers
    import transformers

    return {"model2vec": model2vec.__version__, "transformers": transformers.__version__,
            "sentence_transformers": sentence_transformers.__version__, "wordfreq": version("wordfreq")}


def _distill(ctx: BuildContext, out_dir: Path, params, facts_out: dict) -> None:
    from backends import distill

    table, facts = distill.distill_table(ctx.model.path, ctx.threads, params, ctx.model.prompt_for("similarity"),
                                         ctx.cache.log)
    facts_out.update(facts)
    distill.save_student(table, ctx.model.path, out_dir, params, facts)


def _built_student(ctx: BuildContext):
    """The cached `model2vec` artifact (distilled now when missing) and its parameters for the report."""
    try:
        import model2vec.distill  # noqa: F401  (the 'distill' extra: torch, transformers)
        import sentence_transformers  # noqa: F401
        import wordfreq  # noqa: F401
    except ImportError as exc:
        raise EmbedgateError(f"building model2vec needs: pip install 'embedgate[model2vec]' ({exc})") from exc
    params = _params(ctx)
    key = cache_key(source=ctx.model.content_hash, params=params.as_dict(), method="pipeline-wordfreq",
                    versions=_versions())
    facts: dict = {}
    artifact = ctx.cache.get_or_build(
        "model2vec", key, lambda out: _distill(ctx, out, params, facts),
        {"source_model": str(ctx.model.path), "source_sha256": ctx.model.content_hash,
         "method": "each token through the reference's sentence-transformers pipeline (transformer, pooling, Dense; "
                   "Normalize left out), wordfreq SIF weights, PCA", "params": params.as_dict(), "facts": facts},
    )
    recorded = {**artifact.manifest.get("params", {}), **artifact.manifest.get("facts", {})}
    return artifact, recorded


class Model2VecBackend(BaseBackend):
    def __init__(self, ctx: BuildContext, folder: Path, metadata: BackendMetadata, name: str = "model2vec"):
        from model2vec import StaticModel

        try:
            self.static = StaticModel.from_pretrained(str(folder), force_download=False)
        except Exception as exc:  # safetensors / json errors from a damaged folder
            raise EmbedgateError(f"{folder}: not a loadable Model2Vec folder ({str(exc).splitlines()[0][:200]})") from exc
        # BLAS threads are limited once, here, for the whole process (the budget every backend gets): a
        # `threadpool_limits` context per call re-reads the process's library map each time, which costs many
        # times the lookup itself (measured: docs/design/timing.md).
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=ctx.threads)
        vocabulary, dimension = self.static.embedding.shape
        metadata.params.update(vocabulary_size=int(vocabulary), dimensions=int(dimension), numpy_threads=ctx.threads,
                               normalize=bool(self.static.normalize))
        super().__init__(name, ctx.model, int(dimension), metadata)

    def embeds_nothing(self, text: str) -> bool:
        """No known token, nothing to average: a zero row by design (see _base)."""
        return not self.static.tokenize([text])[0]

    def deployed_settings(self) -> dict:
        """From the folder's config.json: whether StaticModel.encode normalizes and where it truncates. Pooling and
        dimension belong to the static model's own space and are not compared."""
        return {"pooling": None, "dimension": self.dimension, "normalize": bool(self.static.normalize),
                "max_tokens": self.static.max_length}

    def _embed(self, texts: list[str]) -> np.ndarray:
        return self.static.encode(
            texts, max_length=self.max_tokens, batch_size=len(texts), show_progress_bar=False,
            use_multiprocessing=False,
        )  # normalised or not as the artifact's config says: the deployed call

    def runtime_call(self, prompted: list[str]) -> object:
        return self.static.encode(prompted, max_length=self.max_tokens)


def _user_artifact(ctx: BuildContext, name: str) -> tuple[Path, BackendMetadata]:
    folder = ctx.artifact
    if folder is None or not folder.is_dir():
        raise EmbedgateError(f"--artifact {name}={folder}: expected a Model2Vec folder (save_pretrained output)")
    size = sum(int(p.stat().st_size) for p in folder.rglob("*") if p.is_file())
    return folder, BackendMetadata(str(folder), size, 0.0, source="user artifact")


def _finish(ctx: BuildContext, name: str, folder: Path, metadata: BackendMetadata) -> Model2VecBackend:
    with Timer() as timer:
        backend = Model2VecBackend(ctx, folder, metadata, name)
    backend.metadata.load_seconds = timer.seconds
    return backend


def load(ctx: BuildContext) -> Model2VecBackend:
    if ctx.artifact is not None:
        return _finish(ctx, "model2vec", *_user_artifact(ctx, "model2vec"))
    artifact, recorded = _built_student(ctx)
    metadata = BackendMetadata(
        str(artifact.path), artifact.size_bytes, 0.0, build_seconds=artifact.build_seconds, built_now=artifact.built,
        source="built" if artifact.built else "cached", params=recorded,
    )
    return _finish(ctx, "model2vec", artifact.path, metadata)


def corpus_for(ctx: BuildContext) -> Corpus:
    """The tuning corpus: --distill-corpus, else STS-B train+dev under --data-dir (never test), else none."""
    return choose(ctx.options.distill_corpus, ctx.options.data_dir, who="model2vec-tuned",
                  option="--distill-corpus", purpose="to fit the student to the teacher")


def corpus_texts(ctx: BuildContext, chosen: Corpus) -> tuple[list[str], int]:
    """The corpus's texts with no gated test text among them, and how many the default corpus left out."""
    return clean_texts(chosen, ctx.options.data_dir, who="model2vec-tuned", option="--distill-corpus")


def _tune(ctx: BuildContext, base: Path, texts: list[str], params, out_dir: Path, facts_out: dict):
    from model2vec import StaticModel

    from backends import distill, tune

    prompt = ctx.model.prompt_for(params.role)
    prompted = [prompt + text for text in texts]
    student = StaticModel.from_pretrained(str(base), force_download=False)
    table = np.asarray(student.embedding, dtype=np.float32)
    st = distill.load_pipeline(ctx.model.path, ctx.threads)
    ctx.cache.log(f"embedgate: tuning: teacher vectors of {len(texts)} texts from the reference pipeline "
                  "(sentence-transformers, fp32)")
    targets = tune.teacher_vectors(st, prompted, ctx.cache.log, by_length=params.teacher_order == "by-length")
    del st
    tuned, facts = tune.fit(table, student.tokenize(prompted), targets, params, ctx.threads, ctx.cache.log)
    facts_out.update(facts)
    recorded: dict[str, Any] = dict(student.config)["embedgate_distill"]  # type: ignore[assignment]  # our own key in the student's config.json
    base_params = distill.DistillParams(**{k: v for k, v in recorded.items()
                                           if k in distill.DistillParams.__dataclass_fields__})
    distill.save_student(tuned, ctx.model.path, out_dir, base_params, {**recorded, **facts})


def load_tuned(ctx: BuildContext) -> Model2VecBackend:
    if ctx.artifact is not None:
        return _finish(ctx, "model2vec-tuned", *_user_artifact(ctx, "model2vec-tuned"))
    from backends.tune import TuneParams
    from embedgate.cache import sha256_file

    corpus = corpus_for(ctx)
    base, recorded = _built_student(ctx)
    params = TuneParams()
    texts, left_out = corpus_texts(ctx, corpus)
    if left_out:
        ctx.cache.log(f"embedgate: model2vec-tuned: {left_out} texts of {corpus.name} are in a gated test split; left out")
    corpus_hash = [sha256_file(f) for f in corpus.files]
    key = cache_key(base=base.manifest["key"], corpus=corpus_hash, left_out=left_out, params=params.as_dict(),
                    versions=_versions())
    facts: dict = {"corpus_left_out": left_out}
    artifact = ctx.cache.get_or_build(
        "model2vec-tuned", key, lambda out: _tune(ctx, base.path, texts, params, out, facts),
        {"source_model": str(ctx.model.path), "source_sha256": ctx.model.content_hash,
         "base": {"backend": "model2vec", "key": base.manifest["key"], "params": recorded},
         "teacher": "torch-fp32: the reference sentence-transformers pipeline, normalised, with the role's prompt",
         "corpus": {"name": corpus.name, "sha256": corpus_hash}, "params": params.as_dict(), "facts": facts},
    )
    manifest = artifact.manifest
    report_params = {**{f"distill_{k}": v for k, v in recorded.items()}, **manifest.get("params", {}),
                     **manifest.get("facts", {}), "corpus": manifest["corpus"]["name"] + (
                         f" (minus {left_out} texts found in gated test splits)" if left_out else ""),
                     "teacher": "torch-fp32 (sentence-transformers pipeline)"}
    metadata = BackendMetadata(
        str(artifact.path), artifact.size_bytes, 0.0, build_seconds=artifact.build_seconds + base.build_seconds,
        built_now=artifact.built, source="built" if artifact.built else "cached", params=report_params,
    )
    return _finish(ctx, "model2vec-tuned", artifact.path, metadata)
