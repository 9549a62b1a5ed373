"""Exact banded attention for sliding-window layers, for the ONNX export.

transformers' eager attention (what the export traces) scores every query against every key and masks the
keys outside the window afterwards: on EmbeddingGemma's 20 sliding layers (|q - k| < 257 as transformers applies
the bidirectional window) at 2,048 tokens that is 4x the pairs the window allows, most of onnx-int8's time there
(measured: docs/design/onnx-export.md).
This attention computes long texts by blocks of CHUNK query rows against their key window only; shorter texts
are one block of all rows against all keys, i.e. the eager computation itself. It is exact, not an
approximation: every key it leaves out is one the model's own mask excludes, and the mask values inside the window
are taken from that mask (padding included), so the softmax sums the same terms.

Shapes that depend on the text's length are data-dependent ints (`.item()`), and rows and keys are gathered with
clamped indices instead of padded: torch.export then needs no proof about padded lengths, which it cannot make for
a symbolic length and would otherwise answer by specialising the graph to the sample's length.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import cast

from embedgate.model import effective_window

NAME = "embedgate_banded"
CHUNK = 256  # query rows per block; the key window of a block is (2 * ceil((window - 1) / CHUNK) + 1) * CHUNK keys


def sliding_window(model_path: Path, max_tokens: int) -> int | None:
    """effective_window if texts can outgrow a block's key span; else None (BERT-like models, or a window no text
    outgrows: the export keeps eager attention)."""
    window = effective_window(model_path)
    return window if window is not None and max_tokens > key_span(window) else None


def key_span(window: int) -> int:
    """Keys a block of CHUNK rows is scored against; texts up to this length are computed as one block (banding
    them would score more pairs than the whole square: 2 x 256 rows x 768 keys > 512 x 512)."""
    return (2 * math.ceil((window - 1) / CHUNK) + 1) * CHUNK


def attention(module, query, key, value, attention_mask, dropout: float = 0.0, scaling: float | None = None,
              sliding_window: int | None = None, **kwargs):
    """transformers' attention-function signature; [batch, heads, seq, dim] in, [batch, seq, heads, dim] out."""
    if scaling is None:
        scaling = module.head_dim ** -0.5
    if sliding_window is None:
        out = full(query, key, value, attention_mask, scaling)
    elif attention_mask is None:
        # transformers' eager mask is always built for this attention (register()); without it the window would be
        # lost, and the export would attend to every key: an error of this build, not a wrong graph
        raise ValueError(f"{NAME}: a sliding-window layer got no attention mask; cannot export its window")
    else:
        out = banded(query, key, value, attention_mask, scaling, sliding_window)
    return out.transpose(1, 2).contiguous(), None


def full(query, key, value, mask, scaling):
    """transformers' eager attention: grouped key/value heads repeated by expand + reshape."""
    import torch

    b, hkv, kl, d = key.shape
    groups = query.shape[1] // hkv
    if groups > 1:
        key = key[:, :, None].expand(b, hkv, groups, kl, d).reshape(b, hkv * groups, kl, d)
        value = value[:, :, None].expand(b, hkv, groups, kl, d).reshape(b, hkv * groups, kl, d)
    scores = torch.matmul(query, key.transpose(2, 3)) * scaling
    if mask is not None:
        scores = scores + mask
    probs = torch.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
    return torch.matmul(probs, value)


def banded(query, key, value, mask, scaling, window: int):
    """Blocks of CHUNK query rows against keys [block start - reach, block start + CHUNK + reach), reach =
    ceil((window - 1) / CHUNK) * CHUNK >= window - 1; one block of everything when the text is no longer than
    that span (key_span)."""
    import torch

    b, h, s, d = query.shape
    hkv = key.shape[1]
    groups = h // hkv
    long_span = key_span(window)
    long = torch.full((), s, dtype=torch.int64) > long_span
    rows_t = torch.where(long, CHUNK, s)
    span_t = torch.where(long, long_span, s)
    back_t = torch.where(long, (long_span - CHUNK) // 2, 0)  # keys before a block's first row: the reach
    # cast, not int(): int() of a traced size would fix it to the sample's value
    rows, span = cast(int, rows_t.item()), cast(int, span_t.item())
    blocks = cast(int, torch.where(long, (s + CHUNK - 1) // CHUNK, 1).item())
    for size in (rows, span, blocks):
        torch._check(size >= 1)
    # query rows past the text (the last block's tail) repeat its last row and are dropped at the end
    qi = torch.arange(blocks * rows, device=query.device).clamp(max=s - 1)
    flat = torch.arange(blocks * span, device=query.device)
    block_of = torch.div(flat, span_t, rounding_mode="floor")
    ki = block_of * rows_t - back_t + (flat - block_of * span_t)
    inside = (ki >= 0) & (ki < s)
    kc = ki.clamp(0, s - 1)
    q = (query.index_select(2, qi).view(b, hkv, groups, blocks, rows, d).permute(0, 1, 3, 2, 4, 5)
         .reshape(b, hkv, blocks, groups * rows, d))
    k = key.index_select(2, kc).view(b, hkv, blocks, span, d)
    v = value.index_select(2, kc).view(b, hkv, blocks, span, d)
    scores = torch.matmul(q, k.transpose(-1, -2)) * scaling
    m = mask.index_select(2, qi)
    m = m.view(b, m.shape[1], blocks, rows, s)
    m = torch.gather(m, -1, kc.view(1, 1, blocks, 1, span).expand(b, m.shape[1], blocks, rows, span))
    m = torch.where(inside.view(1, 1, blocks, 1, span), m, torch.finfo(scores.dtype).min)
    scores = scores.view(b, hkv, blocks, groups, rows, span) + m.unsqueeze(3)
    probs = torch.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
    out = torch.matmul(probs.view(b, hkv, blocks, groups * rows, span), v)
    out = out.view(b, hkv, blocks, groups, rows, d).permute(0, 1, 3, 2, 4, 5).reshape(b, h, blocks * rows, d)
    return out.index_select(2, torch.arange(s, device=query.device))


def register() -> str:
    """Register the attention (and transformers' eager mask builder for it) under NAME; idempotent."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, eager_mask

    AttentionInterface.register(NAME, attention)
    AttentionMaskInterface.register(NAME, eager_mask)
    return NAME
