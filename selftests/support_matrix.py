"""Render fixtures/support_matrix.json (written by selftests/test_families.py under `make support-matrix`) as the
architecture x backend table of docs/support.md and README.md, between their `support-matrix` markers.

    python -m selftests.support_matrix          rewrite both tables from the JSON
    python -m selftests.support_matrix --check  exit 1 if either table differs from the JSON
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
MATRIX = PROJECT / "fixtures" / "support_matrix.json"
BEGIN, END = "<!-- support-matrix: begin (generated) -->", "<!-- support-matrix: end -->"


def columns(matrix: dict) -> dict[str, str]:
    """Column title -> the backend whose cell it shows: one `runtime-*` column where every build of a runtime
    (torch-*, onnx-*, ...) has the same outcome on every model, else one column a backend."""
    backends = list(next(iter(matrix.values()))["backends"])
    runtimes: dict[str, list[str]] = {}
    for backend in backends:
        runtimes.setdefault(backend.split("-")[0], []).append(backend)
    out = {}
    for runtime, members in runtimes.items():
        same = all(len({entry["backends"][b] for b in members}) == 1 for entry in matrix.values())
        if same and len(members) > 1:
            out[f"{runtime}-*"] = members[0]
        else:
            out.update({b: b for b in members})
    return out


def render(matrix: dict, *, notes_shown: bool = True) -> str:
    """A table with one row per tiny model; each "no" becomes a numbered note giving the line the run gave (README
    shows the table alone and links to docs/support.md for the notes)."""
    shown = columns(matrix)
    notes: list[str] = []
    lines = ["| model (tiny, random) | pooling | " + " | ".join(f"`{title}`" for title in shown) + " |",
             "|---|---|" + "---|" * len(shown)]
    for family, entry in matrix.items():
        cells = []
        for backend in shown.values():
            outcome = entry["backends"][backend]
            if outcome == "yes":
                cells.append("yes")
                continue
            reason = outcome.removeprefix("no: ")
            if reason not in notes:
                notes.append(reason)
            cells.append(f"no ({notes.index(reason) + 1})" if notes_shown else "no")
        lines.append(f"| {family} ({entry['architecture']}) | {entry['pooling']} | " + " | ".join(cells) + " |")
    if notes_shown:
        lines.append("")
        lines += [f"{i}. {reason}" for i, reason in enumerate(notes, start=1)]
    return "\n".join(lines)


def splice(text: str, table: str) -> str:
    head, rest = text.split(BEGIN, 1)
    return f"{head}{BEGIN}\n{table}\n{END}{rest.split(END, 1)[1]}"


def main(argv: list[str]) -> int:
    matrix = json.loads(MATRIX.read_text())
    stale = []
    for path, table in ((PROJECT / "docs" / "support.md", render(matrix)),
                        (PROJECT / "README.md", render(matrix, notes_shown=False))):
        text = path.read_text()
        new = splice(text, table)
        if new != text:
            stale.append(path.name)
            if "--check" not in argv:
                path.write_text(new)
    if "--check" in argv and stale:
        sys.stderr.write(f"support matrix: {', '.join(stale)} differ from fixtures/support_matrix.json; run "
                         "`python -m selftests.support_matrix`\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
