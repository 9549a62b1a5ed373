"""Tiny random models of the architectures and pooling modes users bring, generated from a transformers config (no
download), in the sentence-transformers layout; all-MiniLM-L6-v2's WordPiece tokenizer files, so tokenization is
real and only the weights are tiny.

Each `Family` says what a published model of that kind carries: BERT with CLS pooling (bge, gte, arctic-embed), MPNet
(all-mpnet-base-v2), XLM-RoBERTa with "query: " / "passage: " prompts (multilingual-e5), ModernBERT, Qwen3 as a
decoder embedder (last-token pooling, left padding, an instruction prompt: Qwen3-Embedding), and BERT with each
other pooling mode sentence-transformers has."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from selftests.conftest import _finish_folder, _pooling, _start_folder

E5_PROMPTS = {"query": "query: ", "document": "passage: "}
QWEN_PROMPTS = {"query": "Instruct: Given a web search query, retrieve relevant passages that answer the query\nQuery: "}


@dataclass(frozen=True)
class Family:
    name: str
    architecture: str  # the transformers class, as config.json's "architectures" names it
    pooling: str
    prompts: dict = field(default_factory=dict)
    padding_side: str = "right"


FAMILIES = {f.name: f for f in (
    Family("bert-cls", "BertModel", "cls"),
    Family("mpnet", "MPNetModel", "mean"),
    Family("xlm-roberta-e5", "XLMRobertaModel", "mean", E5_PROMPTS),
    Family("modernbert", "ModernBertModel", "mean"),
    Family("qwen3-lasttoken", "Qwen3Model", "lasttoken", QWEN_PROMPTS, padding_side="left"),
    Family("bert-max", "BertModel", "max"),
    Family("bert-mean-sqrt-len", "BertModel", "mean_sqrt_len_tokens"),
    Family("bert-weightedmean", "BertModel", "weightedmean"),
)}

HIDDEN = 32


def _config(architecture: str):
    import transformers

    # std 0.2, not the usual 0.02: at 0.02 a random encoder's CLS vectors of any two texts have cosine 1.0, and a
    # lost pooling or prompt could not show in the fidelity gates
    common = {"vocab_size": 30522, "hidden_size": HIDDEN, "num_hidden_layers": 2, "num_attention_heads": 2,
              "intermediate_size": 64, "max_position_embeddings": 128, "pad_token_id": 0, "initializer_range": 0.2}
    if architecture == "BertModel":
        return transformers.BertConfig(**common)
    if architecture == "MPNetModel":
        return transformers.MPNetConfig(**common, bos_token_id=101, eos_token_id=102)
    if architecture == "XLMRobertaModel":
        # RoBERTa positions start after the padding index: max_position_embeddings covers it
        return transformers.XLMRobertaConfig(**dict(common, max_position_embeddings=130), bos_token_id=101,
                                              eos_token_id=102)
    if architecture == "ModernBertModel":
        return transformers.ModernBertConfig(**common, bos_token_id=101, eos_token_id=102, cls_token_id=101,
                                             sep_token_id=102, global_attn_every_n_layers=2, local_attention=16)
    if architecture == "Qwen3Model":
        return transformers.Qwen3Config(**common, num_key_value_heads=1, head_dim=16, bos_token_id=101,
                                        eos_token_id=102, tie_word_embeddings=False)
    raise ValueError(f"no tiny config for {architecture}")


def make_tiny_family(folder: Path, family: Family, *, seed: int = 0) -> Path:
    """The family's tiny model: transformer, its pooling, Normalize; its prompts and padding side."""
    import torch
    import transformers

    torch.manual_seed(seed)
    _start_folder(folder)
    model = getattr(transformers, family.architecture)(_config(family.architecture))
    model.save_pretrained(str(folder), safe_serialization=True)
    tokenizer_config = json.loads((folder / "tokenizer_config.json").read_text())
    tokenizer_config["padding_side"] = family.padding_side
    if family.architecture != "BertModel":  # these models take no token_type_ids
        tokenizer_config["model_input_names"] = ["input_ids", "attention_mask"]
    (folder / "tokenizer_config.json").write_text(json.dumps(tokenizer_config))
    _finish_folder(folder, _pooling(folder, HIDDEN, family.pooling), 64, family.prompts)
    return folder
