"""Roofline: how close a backend runs to what this CPU can do, so a verdict says how much speed is left.

The peak is measured in the run, with the same threads as the backends: the best of square int8 GEMMs
(`torch._int_mm`, what VNNI kernels do) and fp32 GEMMs (`torch.mm`). A backend's work is counted from the
model's shapes (config.json):
the matrix multiplications of every layer per token, attention's scores and weighted sum over the keys each
layer lets a token see (the whole text; the window of a sliding-window layer), and the Dense head per text. That is
the model's own work: a build that also scores the pairs a mask throws away (eager attention on EmbeddingGemma's
sliding layers) shows a lower share.
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

GEMM_SIZES = (1024, 2048)  # square GEMMs large enough to reach the kernels' peak (~0.1 s in fp32 at 2048)
GEMM_CALLS = 9
# Encoders whose feed-forward is one up- and one down-projection; the rest (Gemma, Llama, Qwen) are gated (3).
UNGATED = ("bert", "roberta", "xlm-roberta", "mpnet", "distilbert", "electra", "deberta", "deberta-v2", "nomic_bert")


@dataclass(frozen=True)
class Peak:
    int8_gops: float
    fp32_gflops: float
    threads: int

    def as_dict(self) -> dict:
        return {"int8_gops": round(self.int8_gops, 1), "fp32_gflops": round(self.fp32_gflops, 1),
                "threads": self.threads, "gemm": "best of " + ", ".join(f"{n}^3" for n in GEMM_SIZES)}


def _best_seconds(call) -> float:
    for _ in range(3):
        call()
    times = []
    for _ in range(GEMM_CALLS):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure_peak(threads: int) -> Peak:
    """The best of a square int8 and fp32 GEMM at GEMM_SIZES with `threads` threads, as operations per second:
    the best, because the peak is what this CPU can reach; GEMMs from 1024 on reach it (measured:
    docs/design/timing.md). A runtime whose kernels beat torch's GEMM can still show a share above 100%."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    best_int8 = best_fp32 = 0.0
    try:
        generator = torch.Generator().manual_seed(0)
        for n in GEMM_SIZES:
            a8 = torch.randint(-127, 127, (n, n), dtype=torch.int8, generator=generator)
            b8 = torch.randint(-127, 127, (n, n), dtype=torch.int8, generator=generator)
            a32, b32 = a8.float(), b8.float()
            with torch.inference_mode():
                int8 = _best_seconds(lambda a=a8, b=b8: torch._int_mm(a, b))
                fp32 = _best_seconds(lambda a=a32, b=b32: torch.mm(a, b))
                best_int8 = max(best_int8, 2 * n ** 3 / int8 / 1e9)
                best_fp32 = max(best_fp32, 2 * n ** 3 / fp32 / 1e9)
    finally:
        torch.set_num_threads(previous)
    return Peak(best_int8, best_fp32, threads)


@dataclass(frozen=True)
class Shapes:
    """What one token costs in each layer, read from config.json."""

    layers: int
    hidden: int
    intermediate: int
    q_dim: int
    kv_dim: int
    gated: bool
    dense: tuple[tuple[int, int], ...]
    sliding_layers: int = 0  # of `layers`, those that attend within |q - k| < window only
    window: int | None = None

    @classmethod
    def of(cls, model) -> Shapes | None:
        """None for a config without the usual size keys: the report then has no roofline, the gates are the same."""
        try:
            return cls._read(model)
        except (KeyError, TypeError, ValueError, OSError):
            return None

    @classmethod
    def _read(cls, model) -> Shapes:
        config = json.loads((Path(model.path) / "config.json").read_text(encoding="utf-8"))
        config = config.get("text_config", config)
        hidden = int(config["hidden_size"])
        heads = int(config["num_attention_heads"])
        head_dim = int(config.get("head_dim") or hidden // heads)
        kv_heads = int(config.get("num_key_value_heads") or heads)
        layers = int(config["num_hidden_layers"])
        sliding = sum(kind == "sliding_attention" for kind in (config.get("layer_types") or [])[:layers])
        window = None
        if sliding:
            from embedgate.model import effective_window

            window = effective_window(Path(model.path))
        return cls(layers, hidden, int(config["intermediate_size"]), heads * head_dim,
                   kv_heads * head_dim, config.get("model_type") not in UNGATED,
                   tuple((d.in_features, d.out_features) for d in model.dense),
                   sliding if window else 0, window)

    def operations(self, tokens: float, texts: int = 1) -> float:
        """Multiply-adds x 2 for `texts` texts of `tokens` tokens each."""
        projections = self.hidden * (2 * self.q_dim + 2 * self.kv_dim)  # q, k, v and the output projection
        feed_forward = self.hidden * self.intermediate * (3 if self.gated else 2)
        attention = 2 * tokens * self.q_dim  # scores and weighted sum, over every position
        per_token = 2 * self.layers * (projections + feed_forward + attention)
        if self.sliding_layers and self.window and tokens > self.window:
            # a sliding layer's token sees the keys with |q - k| < window: of tokens^2 pairs, (t - w)(t - w + 1) are out
            outside = (tokens - self.window) * (tokens - self.window + 1) / tokens
            per_token -= 2 * self.sliding_layers * 2 * outside * self.q_dim
        head = 2 * sum(i * o for i, o in self.dense)
        return texts * (tokens * per_token + head)


def roofline_cell(shapes: Shapes, peak: Peak, compute: str, tokens: float, texts: int, seconds: float) -> dict:
    """Achieved operations per second for one latency cell, and its share of the matching peak."""
    achieved = shapes.operations(tokens, texts) / seconds / 1e9
    peak_value = {"int8": peak.int8_gops, "fp32": peak.fp32_gflops}.get(compute)
    return {"gops": round(achieved, 2), "compute": compute,
            "roofline_share": round(achieved / peak_value, 4) if peak_value else None}
