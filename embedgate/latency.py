"""Latency cases: length buckets by measured token count in the model's own tokenizer, times batch sizes.

Bucket texts are windows cut from the fixture paragraphs at token boundaries, so a "paragraph" is ~512 real
tokens of prose for this model's tokenizer, prompt included. Every round gets different texts, so a backend
that caches vectors gains nothing from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

BUCKET_TOKENS = {"query": 16, "sentence": 64, "paragraph": 512}
BUCKET_ROLES = {"query": "query", "sentence": "similarity", "paragraph": "document", "long": "document"}
TEXT_VARIANTS = 6  # distinct batches that rounds rotate through


@dataclass(frozen=True)
class LatencyCase:
    bucket: str
    tokens: int
    batch_size: int

    @property
    def id(self) -> str:
        return f"b{self.batch_size}-{self.bucket}"

    @property
    def role(self) -> str:
        return BUCKET_ROLES[self.bucket]


def latency_cases(session) -> list[LatencyCase]:
    max_tokens = session.model.max_seq_length
    targets: dict[str, int] = {}
    for bucket in session.options["latency_buckets"]:
        tokens = max_tokens if bucket == "long" else BUCKET_TOKENS[bucket]
        if bucket != "long" and tokens >= max_tokens:
            continue  # the model's max length is the "long" bucket already
        targets[bucket] = tokens
    return [LatencyCase(bucket, tokens, size) for bucket, tokens in targets.items()
            for size in session.options["latency_batch_sizes"]]


@lru_cache(maxsize=8)
def _tokenizer(model_path: str):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model_path, local_files_only=True, trust_remote_code=False)


def bucket_texts(model, case: LatencyCase, count: int) -> tuple[list[str], float]:
    """`count` distinct texts of ~case.tokens tokens (prompt and special tokens included) and their mean length."""
    from embedgate.data import long_paragraphs

    tokenizer = _tokenizer(str(model.path))
    prompt = model.prompt_for(case.role)
    stream = " ".join(p["text"] for p in long_paragraphs())
    encoded = tokenizer(stream, add_special_tokens=False, return_offsets_mapping=True)
    offsets = encoded["offset_mapping"]
    overhead = len(tokenizer(prompt)["input_ids"]) if prompt else len(tokenizer("")["input_ids"])
    want = max(1, case.tokens - overhead)
    step = max(1, (len(offsets) - want) // max(1, count))
    texts, lengths = [], []
    for i in range(count):
        start = (i * step) % max(1, len(offsets) - want)
        window = offsets[start : start + want]
        # cycle the stream if the model's max is longer than all paragraphs together
        text = stream[window[0][0] : window[-1][1]]
        while len(tokenizer(prompt + text, add_special_tokens=True)["input_ids"]) < case.tokens and len(text) < 40 * case.tokens:
            text = text + " " + stream[: window[-1][1] - window[0][0]]
        ids = tokenizer(prompt + text, add_special_tokens=True, truncation=True, max_length=case.tokens)["input_ids"]
        lengths.append(len(ids))
        texts.append(text)
    return texts, sum(lengths) / len(lengths)
