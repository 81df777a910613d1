"""The figure plumbing every plot shares: plain tick labels, the legend under the axes, PNG + PDF output."""

from __future__ import annotations

import math
import textwrap
from pathlib import Path
from typing import Any


def plain_number(v: float, pos: Any = None) -> str:
    """A tick label in plain digits with thousands separators (300, 1,000, 0.5), never 3×10²."""
    if v == 0 or not math.isfinite(v):
        return "0" if v == 0 else ""
    if abs(v) >= 1:
        return f"{v:,.0f}" if float(v).is_integer() else f"{v:,.2f}".rstrip("0").rstrip(".")
    return f"{v:.3g}"


def _minor_labels(axis: Any) -> Any:
    """A formatter for a log axis's minor ticks: 2, 3 and 5 x 10^k in plain digits when the axis spans under a
    decade, 2 and 5 when under one and a half, none beyond (the major ticks then say enough)."""
    from matplotlib.ticker import FuncFormatter

    def label(v: float, pos: Any = None) -> str:
        lo, hi = sorted(axis.get_view_interval())
        decades = math.log10(hi / lo) if lo > 0 else math.inf
        keep = {2, 3, 5} if decades < 1 else ({2, 5} if decades < 1.5 else set())
        return plain_number(v) if v > 0 and round(v / 10 ** math.floor(math.log10(v) + 1e-9), 6) in keep else ""

    return FuncFormatter(label)


def plain_ticks(ax: Any) -> None:
    """Plain tick labels on the log axes of ``ax`` (300, 1,000, 15,000), major and, on short axes, minor."""
    from matplotlib.ticker import FuncFormatter

    for axis in (ax.xaxis, ax.yaxis):
        if axis.get_scale() == "log":
            axis.set_major_formatter(FuncFormatter(plain_number))
            axis.set_minor_formatter(_minor_labels(axis))


def fit_title(ax: Any, fig: Any, share: float = 0.8) -> None:
    """Wrap the axes' title onto as many lines as it takes to span at most ``share`` of the figure's width (a long one,
    or one that names the runs not run yet, would otherwise run off both edges; the title centres on the axes, which
    sit off the figure's centre when a bar or legend stands beside them)."""
    title = ax.title
    text = title.get_text()
    if not text or "\n" in text:
        return
    width = title.get_window_extent(fig.canvas.get_renderer()).width
    if width > share * fig.bbox.width:
        title.set_text(textwrap.fill(text, max(20, int(len(text) * share * fig.bbox.width / width))))


def new_figure() -> tuple[Any, Any, Any]:
    """pyplot, a figure laid out by matplotlib's constrained layout (room for a legend outside the axes) and its axes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt, *plt.subplots(figsize=(7, 5.2), dpi=120, layout="constrained")


def save_figure(plt: Any, fig: Any, path: Path, layout: bool = True) -> list[Path]:
    """Plain tick labels on every log axis, then the figure as PNG and PDF (no creation date, so that a figure redrawn
    from the same summary is the same file); ``layout``: tighten a figure without a layout engine."""
    for ax in fig.axes:
        plain_ticks(ax)
        fit_title(ax, fig)
    if layout and fig.get_layout_engine() is None:
        fig.tight_layout()
    paths = [path.with_suffix(".png"), path.with_suffix(".pdf")]
    for p in paths:
        fig.savefig(p, metadata={"CreationDate": None} if p.suffix == ".pdf" else None)
    plt.close(fig)
    return paths


def drop_figure(path: Path) -> list[Path]:
    """Remove a plot (PNG and PDF) that has nothing left to show, so no stale one stays behind; returns no paths."""
    for p in (path.with_suffix(".png"), path.with_suffix(".pdf")):
        p.unlink(missing_ok=True)
    return []


def legend_below(fig: Any, handles: list[Any], labels: list[str], title: str | None = None) -> None:
    """The figure's legend under its axes (outside the data): in two columns when it has many entries and they fit side
    by side in the figure's width, else in one."""
    for ncols in ((2, 1) if len(handles) > 3 else (1,) if handles else ()):
        legend = fig.legend(handles, labels, loc="outside lower center", fontsize=7, ncols=ncols, title=title,
                            title_fontsize=7, frameon=False)
        if ncols == 1 or legend.get_window_extent(fig.canvas.get_renderer()).width <= fig.bbox.width:
            return
        legend.remove()
