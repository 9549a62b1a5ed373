"""The project's own evaluation data (fixtures/) and external data found under --data-dir.

Everything under fixtures/ was written for this project (texts and labels), so quality gates always have
offline data. STS Benchmark is read from --data-dir only: it is never copied into the project.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


@dataclass(frozen=True)
class CorpusText:
    id: str
    text: str
    role: str
    kind: str  # query, document, sentence, multilingual, paragraph


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The file's rows; a line that is not JSON, or a file with no rows, is an error naming the file and line."""
    rows = []
    with path.open(encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{number}: not a JSON line ({exc.msg})") from None
    if not rows:
        raise ValueError(f"{path}:1: no rows in the file")
    return rows


def read_sts_csv(path: Path, *, header: bool) -> list[tuple[str, str, float]]:
    """Rows of (sentence1, sentence2, score 0-5); a malformed row is an error naming the file and line."""
    rows = []
    line_number = 1
    try:
        with path.open(encoding="utf-8", newline="") as fh:
            reader = csv.reader(fh)
            if header:
                next(reader, None)
            for row in reader:
                line_number = reader.line_num
                if len(row) != 3:
                    raise ValueError(
                        f"{path}:{line_number}: expected sentence1,sentence2,score; got {len(row)} columns")
                try:
                    score = float(row[2])
                except ValueError:
                    raise ValueError(f"{path}:{line_number}: score {row[2]!r} is not a number") from None
                if not 0.0 <= score <= 5.0:  # also refuses nan
                    raise ValueError(f"{path}:{line_number}: score {row[2]!r} is outside 0-5")
                rows.append((row[0], row[1], score))
    except UnicodeDecodeError:  # decoding runs ahead in chunks: find the line in the bytes
        raw = path.read_bytes()
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            line_number = raw.count(b"\n", 0, exc.start) + 1
            raise ValueError(f"{path}:{line_number}: not UTF-8 text ({exc.reason})") from None
        raise
    except csv.Error as exc:
        raise ValueError(f"{path}:{line_number + 1}: not a CSV row ({exc})") from None
    if not rows:
        raise ValueError(f"{path}:1: no sentence pairs in the file")
    return rows


@cache
def fixture_sts() -> list[tuple[str, str, float]]:
    return read_sts_csv(FIXTURES / "sts.csv", header=True)


@cache
def fixture_retrieval() -> tuple[list[dict], list[dict], dict[str, dict[str, int]]]:
    folder = FIXTURES / "retrieval"
    corpus, queries = read_jsonl(folder / "corpus.jsonl"), read_jsonl(folder / "queries.jsonl")
    qrels: dict[str, dict[str, int]] = {}
    with (folder / "qrels.tsv").open(encoding="utf-8") as fh:
        next(fh)
        for line in fh:
            query, doc, score = line.rstrip("\n").split("\t")
            qrels.setdefault(query, {})[doc] = int(score)
    return corpus, queries, qrels


@cache
def long_paragraphs() -> list[dict]:
    return read_jsonl(FIXTURES / "long_paragraphs.jsonl")


@cache
def fidelity_corpus() -> list[CorpusText]:
    """Every fixture text once, with the role a real caller would give it (prompts differ by role)."""
    corpus, queries, _ = fixture_retrieval()
    texts = [CorpusText(q["id"], q["text"], "query", "query") for q in queries]
    texts += [CorpusText(d["id"], d["text"], "document", "document") for d in corpus]
    sentences = dict.fromkeys(s for pair in fixture_sts() for s in pair[:2])
    texts += [CorpusText(f"sts-{i}", s, "similarity", "sentence") for i, s in enumerate(sentences)]
    texts += [CorpusText(f"ml-{i}-{m['lang']}", m["text"], "document", "multilingual")
              for i, m in enumerate(read_jsonl(FIXTURES / "multilingual.jsonl"))]
    texts += [CorpusText(p["id"], p["text"], "document", "paragraph") for p in long_paragraphs()]
    return texts


def stsb_test_file(data_dir: Path | None) -> Path | None:
    if data_dir is None:
        return None
    path = Path(data_dir) / "stsb" / "stsb-en-test.csv"
    return path if path.is_file() else None
