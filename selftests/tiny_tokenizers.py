"""The published tokenizers of XLM-RoBERTa and Qwen, rebuilt offline from llama.cpp's own vocabulary files, so that a
tiny model of those families tokenizes as the published models do (SentencePiece Unigram, byte-level BPE) and its
GGUF cell in the support matrix says something about them.

llama.cpp's tokenizer tests carry the vocabularies (`models/ggml-vocab-*.gguf`, in the llama-cpp-python source
package on PyPI; `make install` extracts the two used here into `<venv>/opt/llama-vocab`): `qwen2` is Qwen1.5's
byte-level BPE, the vocabulary Qwen3-Embedding also uses, with llama.cpp's expected token ids for its test texts;
`nomic-bert-moe` holds XLM-RoBERTa's SentencePiece model (pieces, scores, types, normalization map), the one
multilingual-e5 and paraphrase-multilingual use. Rebuilt here as Hugging Face files (XLM-RoBERTa:
`sentencepiece.bpe.model`, which llama.cpp's converter reads, + tokenizer.json; Qwen: tokenizer.json) and checked:
Qwen's against llama.cpp's expected ids, XLM-RoBERTa's against xlm-roberta-base's ids of one text."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from selftests.gguf_files import read_metadata

QWEN_VOCAB = "ggml-vocab-qwen2.gguf"
XLMR_VOCAB = "ggml-vocab-nomic-bert-moe.gguf"
# llama.cpp's token types (llama_token_type): 1 normal, 2 unknown, 3 control, 4 user defined, 5 unused, 6 byte
NORMAL, UNKNOWN, CONTROL = 1, 2, 3
# Qwen3-Embedding's tokenizer appends <|endoftext|> to every text (its post-processor): last-token pooling reads it
QWEN_EOS = "<|endoftext|>"
XLMR_HELLO = [0, 35378, 8999, 2]  # "Hello world" as xlm-roberta-base tokenizes it


def vocab_dir() -> Path:
    """Where `make install` put llama.cpp's vocabulary files."""
    explicit = os.environ.get("EMBEDGATE_LLAMA_VOCAB")
    folder = Path(explicit) if explicit else Path(sys.prefix) / "opt" / "llama-vocab"
    missing = [name for name in (QWEN_VOCAB, XLMR_VOCAB) if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(f"llama.cpp's vocabulary files {missing} are not in {folder}: `make install` extracts "
                                "them from the llama-cpp-python source package (or set EMBEDGATE_LLAMA_VOCAB)")
    return folder


def write_qwen_tokenizer(folder: Path) -> int:
    """Qwen's byte-level BPE as Qwen3-Embedding ships it (left padding is the family's; <|endoftext|> appended);
    returns the vocabulary size."""
    from tokenizers import processors
    from transformers import Qwen2TokenizerFast

    meta = read_metadata(vocab_dir() / QWEN_VOCAB)
    tokens, types = meta["tokenizer.ggml.tokens"], meta["tokenizer.ggml.token_type"]
    regular = {token: i for i, (token, kind) in enumerate(zip(tokens, types, strict=True)) if kind == NORMAL}
    specials = [token for token, kind in zip(tokens, types, strict=True) if kind == CONTROL]
    assert max(regular.values()) + 1 == len(regular) == tokens.index(QWEN_EOS), "Qwen's specials follow the BPE"
    merges = [tuple(m.split(" ")) for m in meta["tokenizer.ggml.merges"]]
    tokenizer = Qwen2TokenizerFast(vocab=regular, merges=merges, unk_token=None,
                                   bos_token=None, eos_token=QWEN_EOS, pad_token=QWEN_EOS)
    tokenizer.add_special_tokens({"additional_special_tokens": specials})
    eos_id = tokenizer.convert_tokens_to_ids(QWEN_EOS)
    tokenizer.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single=f"$A:0 {QWEN_EOS}:0", pair=f"$A:0 {QWEN_EOS}:0 $B:1 {QWEN_EOS}:1", special_tokens=[(QWEN_EOS, eos_id)])
    tokenizer.padding_side = "left"
    tokenizer.save_pretrained(str(folder))
    _check_qwen(folder)
    return len(tokenizer)


def _check_qwen(folder: Path) -> None:
    """llama.cpp's own test: its texts must give its expected ids (the published tokenizer, <|endoftext|> aside)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    texts = (vocab_dir() / (QWEN_VOCAB + ".inp")).read_text(encoding="utf-8").split("\n__ggml_vocab_test__\n")[:-1]
    expected = (vocab_dir() / (QWEN_VOCAB + ".out")).read_text(encoding="utf-8").splitlines()
    for text, ids in zip(texts, expected, strict=True):
        got = tokenizer(text, add_special_tokens=False)["input_ids"]
        assert got == [int(i) for i in ids.split()], f"rebuilt Qwen tokenizer: {text!r} -> {got}, llama.cpp: {ids}"


def write_xlmr_tokenizer(folder: Path) -> int:
    """XLM-RoBERTa's SentencePiece model and tokenizer.json, as multilingual-e5 ships them; returns the vocabulary size.
    The GGUF holds the pieces in the Hugging Face order (<s> <pad> </s> <unk>, then the model's from its id 3): the
    SentencePiece model has <unk> <s> </s> first and no <pad>."""
    os.environ.setdefault("PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION", "python")
    from sentencepiece import sentencepiece_model_pb2 as spm
    from transformers import XLMRobertaTokenizerFast

    meta = read_metadata(vocab_dir() / XLMR_VOCAB)
    tokens, scores, types = (meta[f"tokenizer.ggml.{key}"] for key in ("tokens", "scores", "token_type"))
    end = meta["tokenizer.ggml.mask_token_id"]  # <mask>, added by the Hugging Face tokenizer, ends the pieces
    model = spm.ModelProto()
    kinds = {NORMAL: spm.ModelProto.SentencePiece.NORMAL, UNKNOWN: spm.ModelProto.SentencePiece.UNKNOWN,
             CONTROL: spm.ModelProto.SentencePiece.CONTROL}
    for piece, score, kind in [("<unk>", 0.0, UNKNOWN), ("<s>", 0.0, CONTROL), ("</s>", 0.0, CONTROL)] + list(
            zip(tokens[4:end], scores[4:end], types[4:end], strict=True)):
        entry = model.pieces.add()
        entry.piece, entry.score, entry.type = piece, score, kinds[kind]
    model.trainer_spec.model_type = spm.TrainerSpec.UNIGRAM
    model.trainer_spec.unk_id, model.trainer_spec.bos_id, model.trainer_spec.eos_id, model.trainer_spec.pad_id = 0, 1, 2, -1
    model.normalizer_spec.name = "nmt_nfkc"
    model.normalizer_spec.precompiled_charsmap = bytes(meta["tokenizer.ggml.precompiled_charsmap"])
    model.normalizer_spec.add_dummy_prefix = bool(meta["tokenizer.ggml.add_space_prefix"])
    model.normalizer_spec.remove_extra_whitespaces = bool(meta["tokenizer.ggml.remove_extra_whitespaces"])
    model.normalizer_spec.escape_whitespaces = True
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sentencepiece.bpe.model").write_bytes(model.SerializeToString())
    (folder / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "XLMRobertaTokenizer"}))
    tokenizer = XLMRobertaTokenizerFast.from_pretrained(str(folder))  # converted from the SentencePiece model
    tokenizer.save_pretrained(str(folder))
    got = tokenizer("Hello world")["input_ids"]
    assert got == XLMR_HELLO, f"rebuilt XLM-RoBERTa tokenizer: 'Hello world' -> {got}, xlm-roberta-base: {XLMR_HELLO}"
    assert len(tokenizer) == end + 1, (len(tokenizer), end)
    return len(tokenizer)
