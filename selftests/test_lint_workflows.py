"""`make lint-workflows` holds the GitHub workflows to GitHub's schema and zizmor's offline audits: the real
workflows pass, and one with a planted error fails with the error named."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parent.parent
WORKFLOWS = sorted((PROJECT / ".github" / "workflows").glob("*.yml"))

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs make")


def lint(*workflows: Path) -> subprocess.CompletedProcess:
    """The Makefile's own target (it installs the pinned linters into their venv when they are missing)."""
    return subprocess.run(
        ["make", "--no-print-directory", "-C", str(PROJECT), "lint-workflows",
         "WORKFLOWS=" + " ".join(str(w) for w in workflows)],
        check=False, capture_output=True, text=True, timeout=600,
    )


def test_the_real_workflows_are_clean():
    assert WORKFLOWS, "no workflows found"
    result = lint(*WORKFLOWS)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert "No findings to report" in result.stdout + result.stderr


def test_a_misspelt_key_fails_the_lint(tmp_path):
    source = (PROJECT / ".github" / "workflows" / "gates.yml").read_text()
    assert "timeout-minutes:" in source
    planted = tmp_path / "gates.yml"
    planted.write_text(source.replace("timeout-minutes:", "timeout-minute:", 1))
    result = lint(planted)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-4000:]
    assert "('timeout-minute' was unexpected)" in output, output[-4000:]


def test_an_unpinned_action_fails_the_lint(tmp_path):
    source = (PROJECT / ".github" / "workflows" / "gates.yml").read_text()
    pinned = "actions/checkout@11bd71901bbe5b1630ceea73d27597364c9af683 # v4.2.2"
    assert pinned in source
    planted = tmp_path / "gates.yml"
    planted.write_text(source.replace(pinned, "actions/checkout@v4", 1))
    result = lint(planted)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-4000:]
    assert "unpinned-uses" in output, output[-4000:]
