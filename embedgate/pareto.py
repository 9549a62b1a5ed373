"""pareto.png: speedup against quality kept, one numbered point per backend, labels placed so none overlaps."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from embedgate.gates import Verdict


def _kept(summary: dict[str, Any]) -> float | None:
    """The quality a backend keeps as the pareto plot shows it: MTEB's overall retention (the worst task's where
    the overall gate did not run, e.g. under -k)."""
    overall = summary.get("quality_retention_overall")
    return overall if overall is not None else summary.get("quality_retention_min")


def render_pareto(report: dict[str, Any], path: Path) -> bool:
    """Speedup (log x) against worst-task quality retention, written to `path` (see `draw_pareto`)."""
    import matplotlib.pyplot as plt

    fig, _ = draw_pareto(report)
    fig.savefig(path)
    plt.close(fig)
    return True


# Label offsets tried in turn (points, from the marker): beside it, then stacked above and below it, then in
# columns further right and left.
_LABEL_OFFSETS = [(dx, dy) for dx in (6, 40, -36, 74, -70) for step in range(0, 9)
                  for dy in dict.fromkeys((12 * step + 4, -12 * step + 4))]


def draw_pareto(report: dict[str, Any]) -> tuple[Any, list[Any]]:
    """The Pareto figure and the window extents of its point labels. Points are numbered and keyed to a table beside
    the plot, because backends that keep the same quality and speed sit within a pixel of each other and their name
    labels would overlap into one illegible block. Points within 12 pixels of each other share one label ("3,5,7"); each label takes the
    first place whose box overlaps no earlier label (a self-test holds this), with a leader line when moved."""
    points = [(name, b["summary"]) for name, b in report["backends"].items()
              if b["summary"]["speedup_geomean"] and _kept(b["summary"]) is not None]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, key) = plt.subplots(1, 2, figsize=(11, 5.5), dpi=110, gridspec_kw={"width_ratios": [3, 2]})
    key.set_axis_off()
    fig.suptitle(f"embedgate: {report['model']['name']} — green passes every gate, red X fails one")
    placed: list[Any] = []  # labels; their text boxes are what must not overlap
    if not points:
        ax.text(0.5, 0.5, "no backend has both latency and quality measured in this run",
                ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        fig.tight_layout()
        return fig, placed
    for _, s in points:
        ok = s["verdict"] == Verdict.PASS
        ax.scatter(s["speedup_geomean"], 100 * (_kept(s) or 0.0), s=70, marker="o" if ok else "X",
                   color="#2a9d4b" if ok else "#d62828", zorder=3)
    ax.set_xscale("log")
    ax.axvline(1.0, color="grey", lw=0.8, ls=":")
    max_loss = report["backends"][points[0][0]]["thresholds"]["quality"].get("max_loss")
    if max_loss is not None:
        ax.axhline(100 * (1 - max_loss), color="#d62828", lw=0.8, ls="--",
                   label=f"retention gate ({100 * (1 - max_loss):.0f}%)")
        ax.legend(loc="lower left", fontsize=8)
    ax.set_xlabel(f"speedup vs {report['run']['baseline']} (geometric mean, log)")
    ax.set_ylabel("quality kept: MTEB retention vs torch-fp32, mean over task types (%)")
    ax.grid(True, which="both", alpha=0.3)
    rows = [f"{n:>2}  {name:<14} {s['speedup_geomean']:>6.2f}x {100 * (_kept(s) or 0.0):>6.1f}%  "
            + (Verdict.PASS if s["verdict"] == Verdict.PASS else (s["first_failure"] or {}).get("gate", s["verdict"]))
            for n, (name, s) in enumerate(points, start=1)]
    key.text(0, 1, "\n".join([" #  backend        speedup   kept  verdict", *rows]), family="monospace",
             fontsize=8, va="top", ha="left", transform=key.transAxes)
    fig.tight_layout()  # before the labels: it moves the axes, and labels are placed in pixels
    fig.canvas.draw()  # fixes the axes' limits, so data can be placed in pixels
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]  # the Agg canvas, chosen above
    for numbers, (x, y) in _label_groups(ax, points):
        text = ",".join(map(str, numbers))
        for offset in _LABEL_OFFSETS:
            moved = offset != _LABEL_OFFSETS[0]
            label = ax.annotate(text, (x, y), textcoords="offset points", xytext=offset, fontsize=9,
                                fontweight="bold", arrowprops={"arrowstyle": "-", "lw": 0.6, "color": "grey",
                                                               "shrinkA": 0, "shrinkB": 3} if moved else None)
            box = _text_box(label, renderer)
            if not any(box.overlaps(_text_box(other, renderer)) for other in placed):
                break
            label.remove()
        else:  # nowhere free: the numbers stay readable in the key table; this label overlaps
            label = ax.annotate(text, (x, y), textcoords="offset points", xytext=_LABEL_OFFSETS[0], fontsize=9,
                                fontweight="bold")
            box = _text_box(label, renderer)
        placed.append(label)
    fig.canvas.draw()
    return fig, [_text_box(label, renderer) for label in placed]


def _text_box(label: Any, renderer: Any) -> Any:
    """A label's text in pixels, without its leader line (Annotation.get_window_extent includes the arrow)."""
    from matplotlib.text import Text

    label.update_positions(renderer)
    return Text.get_window_extent(label, renderer)


def _label_groups(ax, points, pixels: float = 12.0) -> list[tuple[list[int], tuple[float, float]]]:
    """Numbers of the points within `pixels` of each other on screen, each group at its first point."""
    groups: list[tuple[list[int], tuple[float, float], Any]] = []
    for number, (_, s) in enumerate(points, start=1):
        xy = (s["speedup_geomean"], 100 * (_kept(s) or 0.0))
        screen = ax.transData.transform(xy)
        for numbers, _, anchor in groups:
            if ((screen - anchor) ** 2).sum() ** 0.5 <= pixels:
                numbers.append(number)
                break
        else:
            groups.append(([number], xy, screen))
    return [(numbers, xy) for numbers, xy, _ in groups]
