"""embedgate: pass/fail gates for CPU optimizations of a text-embedding model.

The pytest plugin lives in :mod:`embedgate.plugin`; backends live in the top-level ``backends`` package.
"""

__version__ = "0.1.0"


class EmbedgateError(Exception):
    """A problem the user can fix (bad input, missing artifact, missing extra); shown as one line."""


class UsageError(EmbedgateError):
    """A bad command-line value or configuration file, reported before any test runs."""


class MissingDependency(EmbedgateError):
    """An optional extra is not installed; the message names the pip command that installs it."""

    def __init__(self, extra: str, module: str):
        self.extra = extra
        self.module = module
        super().__init__(
            f"the '{extra}' extra is needed for this backend (no module '{module}'): "
            f"pip install 'embedgate[{extra}]'"
        )


class BackendUnavailable(EmbedgateError):
    """A backend that cannot run in this configuration (e.g. model2vec-tuned without a corpus): a skip with the
    reason, not a failure."""
