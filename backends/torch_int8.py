"""torch-int8: PyTorch dynamic INT8 quantization of every Linear layer, the report's "PyTorch INT8".

Quantized at load (seconds at most) rather than cached: a cached quantized module could only be stored as a
pickle, which embedgate does not load. `torch.ao.quantization.quantize_dynamic` is deprecated in favour of torchao
but is the classic path that "PyTorch INT8", the default baseline, stands for.
"""

from __future__ import annotations

import io
import warnings

from backends import BackendMetadata, BuildContext
from backends._base import Timer
from backends.torch_fp32 import SentenceTransformerBackend, load_sentence_transformer


def load(ctx: BuildContext) -> SentenceTransformerBackend:
    import torch

    with Timer() as timer:
        st = load_sentence_transformer(ctx.model, ctx.threads)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", UserWarning)  # quantized-tensor deprecation notice
            st = torch.ao.quantization.quantize_dynamic(st, {torch.nn.Linear}, dtype=torch.qint8, inplace=True)
    buffer = io.BytesIO()
    torch.save(st.state_dict(), buffer)  # only to measure the quantized size; nothing is written or loaded
    metadata = BackendMetadata(
        artifact_path=f"{ctx.model.path} (quantized in memory)",
        size_bytes=buffer.getbuffer().nbytes,
        load_seconds=timer.seconds,
        source="in memory",
        params={
            "quantization": "dynamic int8, torch.nn.Linear",
            "quantized_engine": torch.backends.quantized.engine,
            "torch_threads": torch.get_num_threads(),
            "batching": "one text per call (per-tensor activation scales)",
        },
    )
    # dynamic INT8: one activation scale per tensor, so one text per call (see _base)
    return SentenceTransformerBackend("torch-int8", ctx.model, st, metadata, one_text_per_call=True)
