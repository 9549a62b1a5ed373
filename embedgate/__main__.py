"""`embedgate` on the command line: the version, and the tools beside the pytest plugin.

    embedgate --version
    embedgate merge --out DIR SHARD_DIR...        (python -m embedgate.merge)
    embedgate verdicts REPORT TABLE [...]         (python -m embedgate.verdicts)

The gates themselves run under pytest: `pytest --backends=...` in a project whose pytest.ini says `embedgate = true`.
"""

from __future__ import annotations

import argparse
import sys

from embedgate import __version__

TOOLS = {"merge": "embedgate.merge", "verdicts": "embedgate.verdicts"}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in TOOLS:
        import importlib

        return int(importlib.import_module(TOOLS[argv[0]]).main(argv[1:]))
    parser = argparse.ArgumentParser(prog="embedgate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", action="version", version=f"embedgate {__version__}")
    parser.add_argument("tool", nargs="?", choices=sorted(TOOLS), help="merge or verdicts; --help after it for its options")
    parser.parse_args(argv)
    parser.print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())
