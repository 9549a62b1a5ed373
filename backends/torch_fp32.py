"""torch-fp32: the reference, the model's own sentence-transformers pipeline in fp32 on the CPU.

Using sentence-transformers itself (not a re-implementation) is what makes it the reference: truncation
at max_seq_length, the pooling of 1_Pooling, every Dense layer and Normalize run exactly as in production.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from backends import BackendMetadata, BuildContext
from backends._base import BaseBackend, Timer

if TYPE_CHECKING:
    from embedgate.model import ModelSpec


def load_sentence_transformer(model: ModelSpec, threads: int):
    """Load the folder with sentence-transformers, local files only and no remote code."""
    import torch
    import transformers
    from sentence_transformers import SentenceTransformer

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    torch.set_num_threads(threads)
    st = SentenceTransformer(
        str(model.path), device="cpu", trust_remote_code=False, local_files_only=True
    )
    st.eval()
    return st


def weights_size(model: ModelSpec) -> int:
    return sum(p.stat().st_size for p in model.path.rglob("*.safetensors"))


class SentenceTransformerBackend(BaseBackend):
    def __init__(self, name: str, model: ModelSpec, st, metadata: BackendMetadata, *, one_text_per_call: bool = False):
        if not model.include_prompt:
            raise ValueError(f"{name}: models whose pooling excludes the prompt (include_prompt=false) are not supported")
        super().__init__(name, model, int(st.get_embedding_dimension()), metadata, one_text_per_call=one_text_per_call)
        self.st = st

    def deployed_settings(self) -> dict:
        """Read from the loaded pipeline's modules, not from the harness's ModelSpec: what sentence-transformers
        itself will do with this folder."""
        modules = list(self.st._modules.values())
        pooling = next((m.pooling_mode for m in modules if type(m).__name__ == "Pooling"), None)
        if isinstance(pooling, (tuple, list)):  # several modes concatenated
            pooling = "+".join(pooling)
        return {"pooling": pooling, "dimension": int(self.st.get_embedding_dimension()),
                "normalize": any(type(m).__name__ == "Normalize" for m in modules),
                "max_tokens": int(self.st.max_seq_length)}

    def _embed(self, texts: list[str]) -> np.ndarray:
        import torch

        with torch.inference_mode():
            return self.st.encode(
                texts, batch_size=len(texts), convert_to_numpy=True, normalize_embeddings=False, show_progress_bar=False
            )


def load(ctx: BuildContext) -> SentenceTransformerBackend:
    import torch

    with Timer() as timer:
        st = load_sentence_transformer(ctx.model, ctx.threads)
    metadata = BackendMetadata(
        artifact_path=str(ctx.model.path),
        size_bytes=weights_size(ctx.model),
        load_seconds=timer.seconds,
        source="reference",
        params={"dtype": "float32", "torch_threads": torch.get_num_threads()},
    )
    return SentenceTransformerBackend("torch-fp32", ctx.model, st, metadata)
