"""The text a build learns from: model2vec-tuned's fitting corpus, the static INT8 builds' calibration corpus.

Quality evidence must not be in-domain for what it judges: no text a build learns from may be in a gated test
split (embedgate.taskdata.overlap, checked at every load, a cached artifact's too). A corpus the user gave that
shares texts with one is refused with a line naming the task; the default corpus (STS-B train+dev sentences under
--data-dir, never test) leaves such texts out, and says how many.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from embedgate import BackendUnavailable, EmbedgateError


class Corpus(NamedTuple):
    """What a build learns from: its name for the report, its files (hashed into the cache key), and whether they
    are STS-B CSVs (sentence pairs) or a text file of one text a line."""

    name: str
    files: list[Path]
    stsb_csv: bool


def choose(given: Path | None, data_dir: Path | None, *, who: str, option: str, purpose: str) -> Corpus:
    """`given` (the option's file), else STS-B train+dev under `data_dir` (never test), else the backend skips."""
    if given:
        return Corpus(str(given), [Path(given)], stsb_csv=False)
    if data_dir:
        folder = Path(data_dir) / "stsb"
        files = [folder / "stsb-en-train.csv", folder / "stsb-en-dev.csv"]
        if all(f.is_file() for f in files):
            return Corpus("stsb-en-train+dev sentences", files, stsb_csv=True)
    raise BackendUnavailable(
        f"{who} needs a corpus {purpose}: {option}=FILE (one text a line), "
        "or --data-dir with stsb/stsb-en-train.csv and stsb-en-dev.csv")


def clean_texts(corpus: Corpus, data_dir: Path | None, *, who: str, option: str) -> tuple[list[str], int]:
    """The corpus's texts with no gated test text among them, and how many the default corpus left out. A corpus the
    user gave that shares a text with a test split is an error naming the task: the build would be judged on what
    it learned from."""
    from backends import tune
    from embedgate.taskdata import normalise, overlap, test_split_texts

    # by how the corpus was chosen, not by its name: a user's file may well be called stsb-*.txt
    texts = tune.stsb_sentences(corpus.files) if corpus.stsb_csv else tune.read_corpus(corpus.files)
    try:
        shared = overlap(texts, data_dir)
    except (OSError, ValueError) as exc:
        raise EmbedgateError(f"{who}: cannot read the test splits to check its corpus against: {exc}") from None
    if not shared:
        return texts, 0
    if not corpus.stsb_csv:
        listed = ", ".join(f"{task} ({n} texts)" for task, n in sorted(shared.items()))
        raise EmbedgateError(f"{who}: {option} {corpus.name} shares texts with the test split of {listed}: a build "
                             "that learned from a gate's test texts is not judged fairly; remove them")
    held_out = set().union(*test_split_texts(data_dir).values())
    kept = [t for t in texts if normalise(t) not in held_out]
    return kept, len(texts) - len(kept)
