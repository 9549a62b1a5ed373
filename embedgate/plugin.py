"""The embedgate pytest plugin, registered through the `pytest11` entry point (the root conftest.py loads it when
the project is not installed). It acts only where the ini says `embedgate = true`.

Its parts: the options (embedgate/options.py), the session made from them (embedgate/session.py), the hooks
(embedgate/hooks.py) and the fixtures (embedgate/fixtures.py), registered here as one plugin; the benchmark storage
per machine (embedgate/benchstore.py) is a plugin of its own.
"""

from __future__ import annotations

from embedgate.fixtures import backend, baseline, candidate, egsession, gate, production, reference, thresholds
from embedgate.hooks import (
    pytest_addhooks,
    pytest_benchmark_update_machine_info,
    pytest_collection_modifyitems,
    pytest_configure,
    pytest_generate_tests,
    pytest_report_header,
    pytest_runtest_makereport,
    pytest_sessionfinish,
    pytest_terminal_summary,
)
from embedgate.options import pytest_addoption

__all__ = [
    "backend", "baseline", "candidate", "egsession", "gate", "production", "pytest_addhooks", "pytest_addoption",
    "pytest_benchmark_update_machine_info", "pytest_collection_modifyitems", "pytest_configure",
    "pytest_generate_tests", "pytest_report_header", "pytest_runtest_makereport", "pytest_sessionfinish",
    "pytest_terminal_summary", "reference", "thresholds",
]

# embedgate/benchstore.py: files pytest-benchmark's saved runs under <--benchmark-storage>/<cpu-model>-t<threads>/
# and makes --benchmark-compare with no saved run for this machine a usage error (its own hooks, registered here)
pytest_plugins = ["embedgate.benchstore"]
