"""A --data-dir of the six real tasks' folder formats, written from the project's own fixture texts.

The self-tests cannot use ../shared/data (GitHub's runners have none, and its licences keep it out of the
project), so each folder is made here, small and meaningful enough that all-MiniLM-L6-v2 scores well above
chance on it: retrieval and reranking from fixtures/retrieval (queries, relevant documents, other documents as
distractors), classification by a document's domain, STS and pair classification from fixtures/sts.csv.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from embedgate.data import fixture_retrieval, fixture_sts


def _jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")


def make_data_dir(root: Path) -> Path:
    corpus, queries, qrels = fixture_retrieval()
    pairs = fixture_sts()
    text = {d["id"]: d["text"] for d in corpus}
    for name in ("stsb", "sickr", "scifact", "wikiqa", "banking77", "msrp"):
        (root / name).mkdir(parents=True)
    with (root / "stsb" / "stsb-en-test.csv").open("w", encoding="utf-8", newline="") as fh:
        csv.writer(fh).writerows(pairs)
    with (root / "sickr" / "test.csv").open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["sentence1", "sentence2", "score", "entailment", "pair_id"])
        writer.writerows([a, b, round(1 + 0.8 * s, 2), "NEUTRAL", i] for i, (a, b, s) in enumerate(pairs))
    _jsonl(root / "scifact" / "queries.jsonl", queries)
    _jsonl(root / "scifact" / "corpus.jsonl", [{"id": d["id"], "title": "", "text": d["text"]} for d in corpus])
    (root / "scifact" / "qrels.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(
        f"{q}\t{d}\t{s}\n" for q, docs in qrels.items() for d, s in docs.items()), encoding="utf-8")
    ids = list(text)
    rerank = []
    for q in queries:
        relevant = list(qrels.get(q["id"], {}))
        others = [d for d in ids if d not in relevant][(len(rerank) * 7) % 50:][:6]
        rerank.append({"id": q["id"], "query": q["text"], "positive": [text[d] for d in relevant],
                       "negative": [text[d] for d in others]})
    _jsonl(root / "wikiqa" / "test.jsonl", rerank)
    labelled = [{"text": d["text"], "label": d["id"].rsplit("-", 1)[0]} for d in corpus]  # the domain: cook-1 -> cook
    _jsonl(root / "banking77" / "train.jsonl", labelled[0::2])
    _jsonl(root / "banking77" / "test.jsonl", labelled[1::2])
    _jsonl(root / "msrp" / "test.jsonl", [{"sentence1": a, "sentence2": b, "label": int(s >= 3.0)} for a, b, s in pairs])
    return root
