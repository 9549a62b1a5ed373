"""Benchmark storage per machine: saved runs are compared only with runs of the same CPU model and thread count.

pytest-benchmark files a saved run under ``<--benchmark-storage>/<system>-<python>-<bits>/`` (its
``get_machine_id``), so ``--benchmark-compare`` picks up a run from any CPU with the same OS and Python, and with
no saved run it prints "Can't compare" and passes. None of its hooks names that folder
(``pytest_benchmark_generate_machine_info`` only fills the JSON), so this plugin, loaded by
:mod:`embedgate.plugin`, moves ``--benchmark-storage`` one level down, before pytest-benchmark opens it:

    reports/benchmarks/<cpu-model-slug>-t<threads>/Linux-CPython-3.11-64bit/0001_*.json

and turns ``--benchmark-compare`` with no saved run in that folder into a usage error (exit 4) naming the folder
and the command that saves a baseline. ``--shared-benchmark-storage`` opts out (pytest-benchmark's own layout).
Only file storage is touched; an ``elasticsearch+`` URI is left alone.

``python -m embedgate.benchstore slug|folder|runs`` prints the same names for scripts and CI cache keys (``slug``
needs only the standard library: ``PYTHONPATH=. python3 -m embedgate.benchstore slug --threads=2`` before install).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from embedgate.environment import usable_cpus

if TYPE_CHECKING:  # pytest is imported where it is used: `python -m embedgate.benchstore slug` needs the stdlib only
    import pytest

FILE_SCHEME = "file://"
DEFAULT_STORAGE = "file://./.benchmarks"  # pytest-benchmark's default --benchmark-storage
RUN_GLOB = "[0-9][0-9][0-9][0-9]_"  # what pytest-benchmark's compare loads when no run is named
NOISE = re.compile(r"\((r|tm|c)\)|\b(cpu|processor)\b", re.IGNORECASE)


def cpu_model() -> str:
    from embedgate.environment import cpu_info

    return cpu_info()["model"] or "unknown-cpu"


def machine_slug(threads: int | None = None, model: str | None = None) -> str:
    """`intel-xeon-platinum-8480c-t2`: the CPU model (marks and filler words dropped) and the thread budget."""
    text = NOISE.sub(" ", model if model is not None else cpu_model()).lower()
    text = re.sub(r"@.*$", "", text)  # "@ 2.10GHz": the nominal clock is part of the model name anyway
    slug = re.sub(r"[^a-z0-9]+", "-", text).strip("-")[:60].rstrip("-") or "unknown-cpu"
    return f"{slug}-t{threads or usable_cpus()}"


def split_storage(uri: str) -> Path | None:
    """The folder of a file storage URI (pytest-benchmark's rule: no scheme means a path), else None."""
    if "://" not in uri:
        return Path(uri)
    if uri.startswith(FILE_SCHEME):
        return Path(uri[len(FILE_SCHEME):])
    return None


def machine_storage(storage: str | Path, threads: int | None = None) -> Path:
    """`<storage>/<slug>`; a storage already ending in this machine's slug is kept as it is."""
    base = split_storage(str(storage))
    if base is None:
        raise ValueError(f"not a file storage: {storage}")
    slug = machine_slug(threads)
    return base if base.name == slug else base / slug


def saved_runs(folder: Path, compare: str | bool = True) -> list[Path]:
    """The saved runs `--benchmark-compare[=compare]` would load from this machine's folder."""
    from pytest_benchmark.storage.file import FileStorage
    from pytest_benchmark.utils import get_machine_id

    if not folder.is_dir():
        return []
    storage = FileStorage(folder, logger=None, default_machine_id=get_machine_id())
    return storage.query(RUN_GLOB if compare is True else str(compare))


# ---------------------------------------------------------------- pytest hooks (registered by embedgate.plugin)

def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("embedgate", "embedgate: gates for CPU embedding-model optimizations")
    group.addoption("--shared-benchmark-storage", action="store_true", default=False,
                    help="save and compare pytest-benchmark runs in --benchmark-storage itself, not in its "
                         "<cpu-model>-t<threads> subfolder (runs of other CPUs and thread counts get compared)")


def pytest_configure(config: pytest.Config) -> None:
    """After embedgate's configure (tryfirst: threads known), before pytest-benchmark's (trylast: opens storage)."""
    import pytest

    if not config.getini("embedgate") or config.getoption("shared_benchmark_storage"):
        return
    if config.pluginmanager.get_plugin("benchmark") is None or not hasattr(config.option, "benchmark_storage"):
        return  # pytest-benchmark not loaded (-p no:benchmark)
    storage = config.option.benchmark_storage or DEFAULT_STORAGE
    if split_storage(storage) is None:
        return  # elasticsearch: its documents carry machine_info; nothing to file
    from embedgate.hooks import SESSION_KEY

    session = config.stash.get(SESSION_KEY, None)
    threads = session.threads if session is not None else (config.getoption("threads") or usable_cpus())
    folder = machine_storage(storage, threads)
    config.option.benchmark_storage = FILE_SCHEME + str(folder)
    compare = config.getoption("benchmark_compare", None)
    if compare and not (isinstance(compare, str) and Path(compare).is_file()):
        try:
            runs = saved_runs(folder, compare)
        except ValueError:
            return  # a glob pytest-benchmark rejects itself, with its own message
        if not runs:
            what = "no saved run" if compare is True else f"no saved run matching {compare!r}"
            raise pytest.UsageError(
                f"--benchmark-compare: {what} for this machine in {folder} (runs are stored per CPU model and "
                f"thread count); save a baseline here first: make acceptance, or rerun with --benchmark-autosave"
            )


# ---------------------------------------------------------------- command line (scripts, CI cache keys)

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m embedgate.benchstore", description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=("slug", "folder", "runs"),
                        help="slug: <cpu-model>-t<threads>; folder: this machine's storage folder; "
                             "runs: its saved runs, one a line (exit 1 when there is none)")
    parser.add_argument("--threads", type=int, default=None, help="thread budget (default: the usable CPUs)")
    parser.add_argument("--storage", default="reports/benchmarks",
                        help="--benchmark-storage (default: reports/benchmarks)")
    args = parser.parse_args(argv)
    if args.what == "slug":
        print(machine_slug(args.threads))
        return 0
    folder = machine_storage(args.storage, args.threads)
    if args.what == "folder":
        print(folder)
        return 0
    runs = saved_runs(folder)
    for run in runs:
        print(run)
    return 0 if runs else 1


if __name__ == "__main__":
    sys.exit(main())
