"""The second stage, tokenlearn-style: fit a distilled student to the teacher's sentence vectors on a corpus.

The teacher's vectors are the reference pipeline's output (transformer, pooling, Dense, Normalize) with the role's
prompt, from sentence-transformers itself. They are reduced by PCA to the student's dimension (as tokenlearn
does), and the student (its token vectors, whose norms are its token weights, and a linear head) is fitted to them
by cosine loss. The head is affine, so it folds into the table exactly (mean(W v + b) = W mean(v) + b) and the
student stays a plain lookup-and-mean. Only rows of tokens seen in the corpus move; every row goes through the head.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from backends.distill import Progress
from embedgate import EmbedgateError


@dataclass(frozen=True)
class TuneParams:
    epochs: int = 30  # at most; training stops when the held-out loss has not improved for `patience` epochs
    patience: int = 3
    batch_size: int = 256
    # per unit of the table's RMS (the table is trained scaled to RMS 1, see fit): MiniLM's best rate at its RMS of
    # 0.4, 3e-3, scaled (measured: docs/design/students.md)
    learning_rate: float = 7.5e-3
    holdout: float = 0.1  # the corpus's share kept apart for early stopping
    role: str = "similarity"  # whose prompt the corpus texts get, for teacher and student alike
    seed: int = 0
    # the teacher's batches: "by-length" (texts of similar length together: less padding, same scores) or "corpus"
    # (as the corpus lists them); vectors come back in corpus order
    teacher_order: str = "by-length"

    def __post_init__(self) -> None:
        if self.teacher_order not in ("by-length", "corpus"):
            raise ValueError(f"teacher_order {self.teacher_order!r}: 'by-length' or 'corpus'")

    def as_dict(self) -> dict:
        return asdict(self)


def read_corpus(paths: list[Path]) -> list[str]:
    """Non-empty lines, stripped, de-duplicated in order."""
    texts: dict[str, None] = {}
    for path in paths:
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                texts[line.strip()] = None
    if not texts:
        raise EmbedgateError(f"distillation corpus {', '.join(map(str, paths))}: no text")
    return list(texts)


def stsb_sentences(files: list[Path]) -> list[str]:
    """The sentences of STS-B CSV files: train and dev (never test: a quality gate evaluates it), de-duplicated."""
    from embedgate.data import read_sts_csv

    texts: dict[str, None] = {}
    for path in files:
        for first, second, _ in read_sts_csv(path, header=False):
            texts[first.strip()] = None
            texts[second.strip()] = None
    texts.pop("", None)
    return list(texts)


def teacher_vectors(st, texts: list[str], progress: Progress, batch_size: int = 64, *, by_length: bool = True) -> np.ndarray:
    """The reference pipeline's normalised sentence vectors in the corpus's order, with a live line every 30 s.
    Batches hold texts of similar length (longest first, as sentence-transformers orders one call): in corpus order
    each batch of 64 was padded to its longest text."""
    import torch

    from backends._base import length_sorted

    def in_batches(ordered: list[str]) -> np.ndarray:
        out, start, last = [], time.perf_counter(), time.perf_counter()
        for begin in range(0, len(ordered), batch_size):
            with torch.inference_mode():
                out.append(st.encode(ordered[begin:begin + batch_size], batch_size=batch_size, convert_to_numpy=True,
                                     normalize_embeddings=True, show_progress_bar=False))
            if time.perf_counter() - last > 30:
                last = time.perf_counter()
                progress(f"embedgate: tuning: teacher vectors {begin + batch_size}/{len(ordered)} texts "
                         f"({time.perf_counter() - start:.0f}s)")
        return np.concatenate(out)

    vectors = length_sorted(texts, in_batches, longest_first=True) if by_length else in_batches(texts)
    return vectors.astype(np.float32)


def fit(table: np.ndarray, ids: list[list[int]], targets: np.ndarray, params: TuneParams, threads: int,
        progress: Progress) -> tuple[np.ndarray, dict]:
    """The tuned float32 table (head folded in) and facts about the fit."""
    import torch

    torch.manual_seed(params.seed)
    torch.set_num_threads(threads)
    rng = np.random.default_rng(params.seed)
    keep = [i for i, row in enumerate(ids) if row]
    ids, targets = [ids[i] for i in keep], targets[keep]
    # targets in the student's dimension: PCA of the teacher's vectors (centred), as tokenlearn does
    dims = table.shape[1]
    centred = targets - targets.mean(0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    targets = (centred @ vt[:dims].T).astype(np.float32)
    # only the rows of tokens in the corpus are trained: a compact sub-table, mapped back afterwards
    seen = np.unique(np.concatenate([np.asarray(row) for row in ids]))
    remap = {int(t): i for i, t in enumerate(seen)}
    local = [np.array([remap[t] for t in row]) for row in ids]
    order = rng.permutation(len(local))
    n_hold = max(1, int(len(local) * params.holdout))
    hold, train = order[:n_hold], order[n_hold:]

    def batch(indices):
        rows = [local[i] for i in indices]
        offsets = torch.tensor(np.cumsum([0] + [len(r) for r in rows[:-1]]), dtype=torch.long)
        return torch.from_numpy(np.concatenate(rows)).long(), offsets, torch.from_numpy(targets[indices])

    # Adam's steps are absolute, so the table is trained at RMS 1: EmbeddingGemma's distilled table has RMS 35.9
    # (its Dense head folded in), MiniLM's 0.4; at one learning rate for both, EmbeddingGemma's rows hardly moved and
    # its head (weights ~1/500) diverged: the held-out loss never improved (0.2371 before and after, 3 epochs)
    rows = int(table.any(1).sum())  # the RMS over rows in use: rows left empty on purpose do not count
    scale = math.sqrt(np.einsum("ij,ij->", table, table, dtype=np.float64) / (rows * table.shape[1])) if rows else 1.0
    scaled = (table / scale).astype(np.float32)
    emb = torch.nn.EmbeddingBag.from_pretrained(torch.from_numpy(scaled[seen]), freeze=False, mode="mean")
    # the head starts as the least-squares map from the untrained student's sentence vectors to the targets
    with torch.no_grad():
        flat, offsets, y = batch(np.arange(len(local)))
        x = emb(flat, offsets).numpy()
    x1 = np.hstack([x, np.ones((len(x), 1), np.float32)])
    solution = np.linalg.lstsq(x1, y.numpy(), rcond=None)[0]
    head = torch.nn.Linear(dims, dims)
    with torch.no_grad():
        head.weight.copy_(torch.from_numpy(solution[:-1].T.copy()))
        head.bias.copy_(torch.from_numpy(solution[-1].copy()))
    optimizer = torch.optim.AdamW([*emb.parameters(), *head.parameters()], lr=params.learning_rate, weight_decay=0.0)

    def loss_of(indices):
        flat, offsets, y = batch(indices)
        return 1 - torch.nn.functional.cosine_similarity(head(emb(flat, offsets)), y).mean()

    with torch.no_grad():
        best = float(loss_of(hold))
    first, since, epochs = best, 0, 0
    best_state = (emb.weight.detach().clone(), head.weight.detach().clone(), head.bias.detach().clone())
    start = time.perf_counter()
    for epoch in range(params.epochs):
        rng.shuffle(train)
        for begin in range(0, len(train), params.batch_size):
            optimizer.zero_grad()
            loss = loss_of(train[begin:begin + params.batch_size])
            loss.backward()
            optimizer.step()
        epochs = epoch + 1
        with torch.no_grad():
            held = float(loss_of(hold))
        progress(f"embedgate: tuning: epoch {epochs}, held-out cosine loss {held:.4f} "
                 f"({time.perf_counter() - start:.0f}s)")
        if held < best - 1e-4:
            best, since = held, 0
            best_state = (emb.weight.detach().clone(), head.weight.detach().clone(), head.bias.detach().clone())
        else:
            since += 1
            if since >= params.patience:
                break
    tuned = scaled  # the head was fitted to the scaled table: every row goes through it scaled
    weight, head_w, head_b = (t.numpy() for t in best_state)
    tuned[seen] = weight
    zero = ~tuned.any(1)  # rows left empty on purpose (padding, unused) stay empty
    tuned = tuned @ head_w.T + head_b
    tuned[zero] = 0.0
    facts = {"corpus_texts": len(ids), "trained_tokens": len(seen), "epochs_run": epochs, "table_rms": round(scale, 4),
             "held_out_loss_before": round(first, 4), "held_out_loss_after": round(best, 4)}
    return tuned.astype(np.float32), facts
