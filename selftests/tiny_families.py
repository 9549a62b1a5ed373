"""Tiny random models of the architectures and pooling modes users bring, generated from a transformers config (no
download), in the sentence-transformers layout, with a real tokenizer, so only the weights are tiny: the published
one of the family where it can be had offline (XLM-RoBERTa's SentencePiece, Qwen's BPE: selftests/tiny_tokenizers.py),
else one of its kind: all-MiniLM-L6-v2's WordPiece files (BERT, MPNet), Qwen's byte-level BPE (ModernBERT).

Each `Family` says what a published model of that kind carries: BERT with CLS pooling (bge, gte, arctic-embed), MPNet
(all-mpnet-base-v2), XLM-RoBERTa with "query: " / "passage: " prompts (multilingual-e5), ModernBERT, Qwen3 as a
decoder embedder (last-token pooling, left padding, an instruction prompt: Qwen3-Embedding), and BERT with each
other pooling mode sentence-transformers has."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from selftests.conftest import _finish_folder, _pooling, _start_folder
from selftests.tiny_tokenizers import write_qwen_tokenizer, write_xlmr_tokenizer

E5_PROMPTS = {"query": "query: ", "document": "passage: "}
QWEN_PROMPTS = {"query": "Instruct: Given a web search query, retrieve relevant passages that answer the query\nQuery: "}


@dataclass(frozen=True)
class Family:
    name: str
    architecture: str  # the transformers class, as config.json's "architectures" names it
    pooling: str
    prompts: dict = field(default_factory=dict)
    padding_side: str = "right"
    tokenizer: str = "wordpiece"  # "wordpiece" (all-MiniLM-L6-v2's files), "xlm-roberta" or "qwen" (rebuilt)


FAMILIES = {f.name: f for f in (
    Family("bert-cls", "BertModel", "cls"),
    Family("mpnet", "MPNetModel", "mean"),
    Family("xlm-roberta-e5", "XLMRobertaModel", "mean", E5_PROMPTS, tokenizer="xlm-roberta"),
    # ModernBERT's own BPE cannot be had offline; Qwen's is of its kind (byte-level, merges) and the converter
    # recognizes it, as it does ModernBERT's, so the GGUF cell shows what the architecture itself meets
    Family("modernbert", "ModernBertModel", "mean", tokenizer="qwen"),
    Family("qwen3-lasttoken", "Qwen3Model", "lasttoken", QWEN_PROMPTS, padding_side="left", tokenizer="qwen"),
    Family("bert-max", "BertModel", "max"),
    Family("bert-mean-sqrt-len", "BertModel", "mean_sqrt_len_tokens"),
    Family("bert-weightedmean", "BertModel", "weightedmean"),
)}

HIDDEN = 32


# each tokenizer's vocabulary size and special ids, as the model's config must have them
TOKEN_IDS = {"wordpiece": {"vocab_size": 30522, "pad_token_id": 0, "bos_token_id": 101, "eos_token_id": 102},
             "xlm-roberta": {"vocab_size": 250002, "pad_token_id": 1, "bos_token_id": 0, "eos_token_id": 2},
             "qwen": {"vocab_size": 151646, "pad_token_id": 151643, "bos_token_id": 151643, "eos_token_id": 151643}}


def _config(architecture: str, tokenizer: str = "wordpiece"):
    import transformers

    # std 0.2, not the usual 0.02: at 0.02 a random encoder's CLS vectors of any two texts have cosine 1.0, and a
    # lost pooling or prompt could not show in the fidelity gates
    ids = TOKEN_IDS[tokenizer]
    common = {"vocab_size": ids["vocab_size"], "hidden_size": HIDDEN, "num_hidden_layers": 2, "num_attention_heads": 2,
              "intermediate_size": 64, "max_position_embeddings": 128, "pad_token_id": ids["pad_token_id"],
              "initializer_range": 0.2}
    special = {"bos_token_id": ids["bos_token_id"], "eos_token_id": ids["eos_token_id"]}
    if architecture == "BertModel":
        return transformers.BertConfig(**common)
    if architecture == "MPNetModel":
        return transformers.MPNetConfig(**common, **special)
    if architecture == "XLMRobertaModel":
        # RoBERTa positions start after the padding index: max_position_embeddings covers it
        return transformers.XLMRobertaConfig(**dict(common, max_position_embeddings=130), **special)
    if architecture == "ModernBertModel":
        return transformers.ModernBertConfig(**common, **special, cls_token_id=ids["bos_token_id"],
                                             sep_token_id=ids["eos_token_id"], global_attn_every_n_layers=2,
                                             local_attention=16)
    if architecture == "Qwen3Model":
        return transformers.Qwen3Config(**common, **special, num_key_value_heads=1, head_dim=16,
                                        tie_word_embeddings=False)
    raise ValueError(f"no tiny config for {architecture}")


def _write_tokenizer(folder: Path, kind: str) -> None:
    if kind == "wordpiece":
        _start_folder(folder)
        return
    written = (write_xlmr_tokenizer if kind == "xlm-roberta" else write_qwen_tokenizer)(folder)
    assert written == TOKEN_IDS[kind]["vocab_size"], (kind, written)


def make_tiny_family(folder: Path, family: Family, *, seed: int = 0) -> Path:
    """The family's tiny model: transformer, its pooling, Normalize; its tokenizer, prompts and padding side."""
    import torch
    import transformers

    torch.manual_seed(seed)
    _write_tokenizer(folder, family.tokenizer)
    config = _config(family.architecture, family.tokenizer)
    model = getattr(transformers, family.architecture)(config)
    if config.pad_token_id == config.eos_token_id:
        # transformers zeroes the padding token's row at init; Qwen pads with <|endoftext|>, which ends every text and
        # which last-token pooling reads, so a zero row made every empty text a zero vector: trained, it is not zero
        with torch.no_grad():
            model.get_input_embeddings().weight[config.pad_token_id].normal_(0.0, config.initializer_range)
    model.save_pretrained(str(folder), safe_serialization=True)
    tokenizer_config = json.loads((folder / "tokenizer_config.json").read_text())
    tokenizer_config["padding_side"] = family.padding_side
    if family.architecture != "BertModel":  # these models take no token_type_ids
        tokenizer_config["model_input_names"] = ["input_ids", "attention_mask"]
    (folder / "tokenizer_config.json").write_text(json.dumps(tokenizer_config))
    _finish_folder(folder, _pooling(folder, HIDDEN, family.pooling), 64, family.prompts)
    return folder
