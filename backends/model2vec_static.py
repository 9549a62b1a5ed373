"""model2vec: a static model distilled from the reference model with model2vec's `distill`.

A distilled model is a token-embedding table (PCA-reduced); encoding a text is a lookup and a mean, which is
why it is ~100x faster, and why its vectors live in a space of their own: the registry marks it as not sharing
the reference's vector space, so it is gated on task quality and latency, not on cosine to the reference.
Distillation takes ~10 s for MiniLM and ~11 min for EmbeddingGemma's 262k-token vocabulary on 2 cores.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from backends import BackendMetadata, BuildContext
from backends._base import BaseBackend, Timer
from embedgate import EmbedgateError
from embedgate.cache import cache_key

DISTILL_PARAMS: dict[str, Any] = {"pca_dims": 256, "sif_coefficient": 1e-4, "quantize_to": "float16", "pooling": "mean"}


def _distill(model, out_dir: Path, threads: int) -> None:
    import torch
    import transformers
    from model2vec.distill import distill

    transformers.logging.set_verbosity_error()
    torch.set_num_threads(threads)
    static = distill(
        model_name=str(model.path), device="cpu", trust_remote_code=False,
        pca_dims=DISTILL_PARAMS["pca_dims"], sif_coefficient=DISTILL_PARAMS["sif_coefficient"],
        quantize_to=DISTILL_PARAMS["quantize_to"], pooling=DISTILL_PARAMS["pooling"],
    )
    static.save_pretrained(str(out_dir))


class Model2VecBackend(BaseBackend):
    def __init__(self, ctx: BuildContext, folder: Path, metadata: BackendMetadata):
        from model2vec import StaticModel

        try:
            self.static = StaticModel.from_pretrained(str(folder), force_download=False)
        except Exception as exc:  # safetensors / json errors from a damaged folder
            raise EmbedgateError(f"{folder}: not a loadable Model2Vec folder ({str(exc).splitlines()[0][:200]})") from exc
        # BLAS threads are limited once, here, for the whole process (the budget every backend gets): a
        # `threadpool_limits` context per call re-reads the process's library map each time, measured 3.0 ms of a
        # 3.1 ms call on all-MiniLM-L6-v2 with torch loaded (StaticModel.encode itself: 0.074 ms).
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=ctx.threads)
        vocabulary, dimension = self.static.embedding.shape
        metadata.params.update(vocabulary_size=int(vocabulary), dimensions=int(dimension), numpy_threads=ctx.threads,
                               normalize=bool(self.static.normalize))
        super().__init__("model2vec", ctx.model, int(dimension), metadata)

    zero_vector_for_empty = True  # no known token, nothing to average: a zero row by design (see _base)

    def _embeds_nothing(self, text: str) -> bool:
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


def load(ctx: BuildContext) -> Model2VecBackend:
    if ctx.artifact is not None:
        folder = ctx.artifact
        if not folder.is_dir():
            raise EmbedgateError(f"--artifact model2vec={folder}: expected a Model2Vec folder (save_pretrained output)")
        size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
        metadata = BackendMetadata(str(folder), size, 0.0, source="user artifact")
    else:
        try:
            import model2vec.distill  # noqa: F401  (the 'distill' extra: torch, transformers)
        except ImportError as exc:
            raise EmbedgateError(f"building model2vec needs model2vec's distill extra: pip install 'embedgate[model2vec]' ({exc})") from exc
        import model2vec
        import transformers

        key = cache_key(source=ctx.model.content_hash, params=DISTILL_PARAMS,
                        versions={"model2vec": model2vec.__version__, "transformers": transformers.__version__})
        artifact = ctx.cache.get_or_build(
            "model2vec", key, lambda out: _distill(ctx.model, out, ctx.threads),
            {"source_model": str(ctx.model.path), "source_sha256": ctx.model.content_hash, "params": DISTILL_PARAMS},
        )
        folder = artifact.path
        metadata = BackendMetadata(
            str(folder), artifact.size_bytes, 0.0, build_seconds=artifact.build_seconds, built_now=artifact.built,
            source="built" if artifact.built else "cached", params=dict(DISTILL_PARAMS),
        )
    with Timer() as timer:
        backend = Model2VecBackend(ctx, folder, metadata)
    backend.metadata.load_seconds = timer.seconds
    return backend
