"""Hooks other plugins and conftest.py files may implement."""

from __future__ import annotations

import pytest

hookspec = pytest.hookspec


@hookspec
def pytest_embedgate_register_backends(registry) -> None:
    """Add backends to the registry (registry.register(BackendSpec(...))) before --backends is parsed.

    How the self-tests plug in deliberately broken backends, and how a team gates its own runtime.
    """
