"""Distilling a Model2Vec static student from the reference's whole sentence-transformers pipeline.

`model2vec.distill` runs each vocabulary token through AutoModel alone (no Dense head, no prompts), weights tokens
by their rank as if the vocabulary were sorted by frequency, and passes every token of the vocabulary through the
model. Here each token goes through the pipeline as sentence-transformers runs it (transformer, pooling, Dense;
Normalize left out, the student normalises its mean), tokens are weighted by their real English frequency
(wordfreq, SIF), and a large vocabulary is cut to the tokens that matter: the rest get vectors predicted from the
model's input embeddings. Heavy imports stay inside functions.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from embedgate import EmbedgateError

Progress = Callable[[str], None]

# Vocabularies up to this size are passed through the model whole (seconds on 2 cores); beyond it only the selected
# tokens are: a 262k-token vocabulary whole takes minutes (measured: docs/design/students.md).
FULL_VOCAB_LIMIT = 60_000


@dataclass(frozen=True)
class DistillParams:
    """Everything that decides the student's table; recorded in the artifact manifest and the report."""

    # PCA dimension, chosen on STS-B dev with all-MiniLM-L6-v2 (docs/design/students.md); None keeps every dimension
    pca_dims: int | None = 256
    # SIF a/(a+p) with p the token's wordfreq English frequency
    # chosen on STS-B dev with all-MiniLM-L6-v2 (measured: 1e-3 0.761 vs 1e-2 0.744, docs/design/students.md)
    sif_coefficient: float = 1e-3
    punctuation_frequency: float = 1e-2  # the p of a token without letters or digits (wordfreq has none)
    weighting: str = "wordfreq"  # "wordfreq" or "zipf-rank" (model2vec's default, for the ablation)
    top_words: int = 50_000  # wordfreq's most frequent English words whose tokens are kept (large vocabularies)
    prompt_in_context: bool = False  # tokens passed with the role prompt in front (off: docs/design/students.md)
    batch_size: int = 256
    quantize_to: str = "float16"
    # the student's token limit, the reference pipeline's max_seq_length (model2vec's default, 512, cut
    # EmbeddingGemma's 2,048-token texts: the deployed-settings gate said so); set from the model at build
    max_length: int | None = None
    seed: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


# ---------------------------------------------------------------- the pipeline minus Normalize


def load_pipeline(model_path: Path, threads: int):
    """The reference's sentence-transformers pipeline, local files only; refuses a Dense head that is not linear,
    since only an affine head commutes with the student's mean (mean(W x + b) = W mean(x) + b) and so folds into
    token vectors. Any pooling is taken: it makes each token's vector (a one-token text through the pipeline), and
    the student means those whatever the teacher pools (as model2vec's students of CLS-pooled bge models do)."""
    import torch
    import transformers
    from sentence_transformers import SentenceTransformer

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    torch.set_num_threads(threads)
    st = SentenceTransformer(str(model_path), device="cpu", trust_remote_code=False, local_files_only=True)
    st.eval()
    for index, module in enumerate(st):
        kind = type(module).__name__
        if kind == "Dense":
            activation = type(getattr(module, "activation_function", None)).__name__
            if activation != "Identity":
                raise EmbedgateError(
                    f"cannot distill {model_path}: Dense layer {index} has activation {activation}; a static "
                    "student folds the Dense head into its token vectors, which is exact only for a linear one")
        elif kind not in ("Transformer", "Pooling", "Normalize"):
            raise EmbedgateError(f"cannot distill {model_path}: module {index} is {kind}, not a linear head")
    return st


def _special_affixes(tokenizer) -> tuple[list[int], list[int]]:
    """The ids the tokenizer puts before and after a text ([CLS]/[SEP], <bos>/<eos>), read from a probe."""
    bare = tokenizer("a", add_special_tokens=False)["input_ids"]
    full = tokenizer("a")["input_ids"]
    start = next(i for i in range(len(full)) if full[i:i + len(bare)] == bare)
    return full[:start], full[start + len(bare):]


def pipeline_token_vectors(st, token_ids: np.ndarray, params: DistillParams, prompt: str,
                           progress: Progress) -> np.ndarray:
    """Each token as a one-token text through transformer, pooling and Dense (Normalize left out)."""
    import torch

    tokenizer = st.tokenizer
    prefix, suffix = _special_affixes(tokenizer)
    if params.prompt_in_context and prompt:
        prefix = prefix + tokenizer(prompt, add_special_tokens=False)["input_ids"]
    modules = [m for m in st if type(m).__name__ != "Normalize"]
    out = np.zeros((len(token_ids), st.get_embedding_dimension()), dtype=np.float32)
    start, last = time.perf_counter(), time.perf_counter()
    for begin in range(0, len(token_ids), params.batch_size):
        chunk = token_ids[begin:begin + params.batch_size]
        ids = torch.tensor([[*prefix, int(t), *suffix] for t in chunk], dtype=torch.long)
        features = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
        if "token_type_ids" in getattr(tokenizer, "model_input_names", ()):
            features["token_type_ids"] = torch.zeros_like(ids)
        with torch.inference_mode():
            for module in modules:
                features = module(features)
        out[begin:begin + len(chunk)] = features["sentence_embedding"].float().numpy()
        if time.perf_counter() - last > 30:  # a live line every 30 s: EmbeddingGemma's pass takes minutes
            last = time.perf_counter()
            done = begin + len(chunk)
            progress(f"embedgate: distilling: {done}/{len(token_ids)} tokens through the pipeline "
                     f"({time.perf_counter() - start:.0f}s)")
    return out


# ---------------------------------------------------------------- frequencies, vocabulary


def token_surface(token: str) -> str:
    """The text a vocabulary entry stands for: WordPiece's '##' and SentencePiece's/BPE's word markers removed."""
    return token.removeprefix("##").replace("\u2581", " ").replace("\u0120", " ").strip()


def sif_weights(tokens: list[str], params: DistillParams) -> np.ndarray:
    """SIF weights a/(a+p). 'wordfreq': p is the token's surface string's English frequency (a piece that is no
    word has p=0, weight 1). 'zipf-rank': model2vec's default, p from the token's rank as if sorted by frequency."""
    a = params.sif_coefficient
    if params.weighting == "zipf-rank":
        inv_rank = 1 / np.arange(2, len(tokens) + 2)
        return a / (a + inv_rank / inv_rank.sum())
    from wordfreq import word_frequency

    surfaces = [token_surface(t) for t in tokens]
    p = np.array([word_frequency(s, "en") if s else 0.0 for s in surfaces])
    # wordfreq drops punctuation (p=0, weight 1), yet ',' and '.' are as frequent as 'the' (measured: STS-B dev
    # 0.800 vs 0.761 without this, docs/design/students.md)
    p[[bool(s) and not re.search(r"\w", s) for s in surfaces]] = params.punctuation_frequency
    return a / (a + p)


def select_tokens(tokenizer, vocab_size: int, params: DistillParams, corpus: Iterable[str] = ()) -> np.ndarray:
    """The ids passed through the model: all of a small vocabulary; of a large one, those the tokenizer makes of
    wordfreq's `top_words` English words (as written, capitalised, after a space), of printable ASCII, and of the
    corpus."""
    if vocab_size <= FULL_VOCAB_LIMIT:
        return np.arange(vocab_size)
    import string

    from wordfreq import top_n_list

    words = top_n_list("en", params.top_words)
    texts = [*words, *(" " + w for w in words), *(w.capitalize() for w in words),
             *(" " + w.capitalize() for w in words), *string.printable, *corpus]
    ids: set[int] = set()
    for begin in range(0, len(texts), 10_000):
        for row in tokenizer(texts[begin:begin + 10_000], add_special_tokens=False)["input_ids"]:
            ids.update(row)
    return np.array(sorted(i for i in ids if i < vocab_size))


def predict_unselected(st, selected: np.ndarray, vectors: np.ndarray, vocab_size: int) -> np.ndarray:
    """Vectors for the tokens not passed through the model: a ridge map from the model's input embeddings to the
    pipeline vectors, fitted on the selected tokens."""
    table = st[0].auto_model.get_input_embeddings().weight.detach().float().numpy()[:vocab_size]
    if len(table) < vocab_size:  # tokens the tokenizer knows and the model has no row for (Gemma's image token)
        table = np.vstack([table, np.zeros((vocab_size - len(table), table.shape[1]), table.dtype)])
    x = table[selected]
    x_mean, y_mean = x.mean(0), vectors.mean(0)
    xc = x - x_mean
    gram = xc.T @ xc
    gram[np.diag_indices_from(gram)] += 1e-3 * np.trace(gram) / len(gram)
    coef = np.linalg.solve(gram, xc.T @ (vectors - y_mean))
    full = (table - x_mean) @ coef + y_mean
    full[selected] = vectors
    return full.astype(np.float32)


def pca(vectors: np.ndarray, dims: int | None, fit_rows: np.ndarray | None = None) -> np.ndarray:
    """Centre and rotate onto the principal axes of the fitted rows (all rows when None), keeping `dims`."""
    fit = vectors if fit_rows is None else vectors[fit_rows]
    mean = fit.mean(0)
    centred = fit - mean
    _, eigvecs = np.linalg.eigh(centred.T @ centred / max(len(fit) - 1, 1))
    eigvecs = eigvecs[:, ::-1]
    eigvecs = eigvecs * np.sign(eigvecs[np.abs(eigvecs).argmax(0), range(eigvecs.shape[1])])  # a stable sign
    keep = eigvecs.shape[1] if dims is None else min(dims, eigvecs.shape[1])
    return ((vectors - mean) @ eigvecs[:, :keep]).astype(np.float32)


# ---------------------------------------------------------------- the student


def vocabulary(tokenizer_path: Path) -> tuple[list[str], int]:
    """The tokens by id, and the table size (ids must be 0..n-1, as StaticModel indexes its table by id)."""
    from tokenizers import Tokenizer

    vocab = Tokenizer.from_file(str(tokenizer_path)).get_vocab()
    size = max(vocab.values()) + 1
    if size != len(vocab):
        raise EmbedgateError(f"{tokenizer_path}: token ids are not 0..{len(vocab) - 1}; cannot index a table by id")
    tokens = [""] * size
    for token, index in vocab.items():
        tokens[index] = token
    return tokens, size


def distill_table(model_path: Path, threads: int, params: DistillParams, prompt: str, progress: Progress,
                  corpus: Iterable[str] = ()) -> tuple[np.ndarray, dict]:
    """The student's float32 table (weights folded in, PCA applied) and facts about the build for the manifest."""
    import torch

    torch.manual_seed(params.seed)
    tokens, size = vocabulary(model_path / "tokenizer.json")
    st = load_pipeline(model_path, threads)
    rows = st[0].auto_model.get_input_embeddings().weight.shape[0]
    selected = select_tokens(st.tokenizer, min(size, rows), params, corpus)
    progress(f"embedgate: distilling: {len(selected)} of {size} tokens through {model_path.name}'s pipeline")
    start = time.perf_counter()
    vectors = pipeline_token_vectors(st, selected, params, prompt, progress)
    seconds = time.perf_counter() - start
    if len(selected) < size:
        vectors = predict_unselected(st, selected, vectors, size)
    special = [i for i, t in enumerate(tokens) if re.fullmatch(r"\[unused\d+\]|<unused\d+>", t)]
    table = pca(vectors, params.pca_dims, fit_rows=selected)
    table *= sif_weights(tokens, params)[:, None].astype(np.float32)
    table[special] = 0.0
    facts = {"vocabulary_size": size, "tokens_through_model": len(selected),
             "token_pass_seconds": round(seconds, 1), "dimensions": int(table.shape[1])}
    return table, facts


def save_student(table: np.ndarray, model_path: Path, out_dir: Path, params: DistillParams, facts: dict) -> None:
    """A StaticModel folder (model.safetensors, tokenizer.json, config.json) with the model's own tokenizer."""
    from model2vec import StaticModel
    from model2vec.quantization import DType, quantize_embeddings
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(model_path / "tokenizer.json"))
    tokenizer.no_truncation()
    tokenizer.no_padding()  # MiniLM's tokenizer.json pads to 128: [PAD] rows would join every mean
    config = {"model_type": "model2vec", "architectures": ["StaticModel"], "tokenizer_name": model_path.name,
              "apply_pca": params.pca_dims, "sif_coefficient": params.sif_coefficient, "hidden_dim": table.shape[1],
              "seq_length": 1000000, "normalize": True, "pooling": "mean",
              "embedgate_distill": {**params.as_dict(), **facts}}
    static = StaticModel(vectors=quantize_embeddings(table, DType(params.quantize_to)), tokenizer=tokenizer, config=config,
                         base_model_name=model_path.name, normalize=True,
                         max_length=params.max_length or 512)  # 512: model2vec's own default
    static.save_pretrained(str(out_dir))
