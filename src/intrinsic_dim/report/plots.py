"""Plots of summary rows and of gaps: d90 against a field, any field against another, the generalisation gap against d
and against the bound term, and the pre-training loss."""

from __future__ import annotations

import csv
import json
import math
import textwrap
from pathlib import Path
from typing import Any

from intrinsic_dim.report.curves import MARKERS
from intrinsic_dim.report.figure import drop_figure, legend_below, new_figure, save_figure
from intrinsic_dim.report.labels import subspace, unique_labels


ARROW_FACTOR = 1.8
"""A run above the grid is an arrow from the largest d tried up to this multiple of it."""
DODGE_POINTS = 5
"""Series of one d90 plot are drawn this many points apart sideways, so equal points and arrows stay visible."""
MAX_VALUE_TICKS = 10
"""A log x axis of at most this many distinct values gets one labelled tick per value."""
NOTE_WIDTH = 100
"""Characters per line of the legend's list of runs not drawn, so a long list wraps inside the figure's width."""


def finished_rows(rows: list[dict[str, Any]], plot: dict[str, Any]) -> list[dict[str, Any]]:
    """The rows a d90-against-a-field plot shows: runs that have run, with the x field, passing ``plot['where']``."""
    return [r for r in rows if r.get("status") not in (None, "not run") and r.get(plot["x"]) is not None
            and all(r.get(k) == v for k, v in plot.get("where", {}).items())]


def d90_figure(rows: list[dict[str, Any]], plot: dict[str, Any]) -> Any:
    """d90 (marker) with its interval or bracket (bar) against the row field ``plot['x']``, one line per value of
    ``plot['series']`` joining measured d90s only, rows filtered by ``plot['where']``, points labelled with their
    ``plot['annotate']`` field. A run whose d90 lies above the grid is an upward arrow from the largest d tried, never
    joined to the line; a knife-edge d90 is ringed; ``plot['floors']`` ({field: {value: d}}) marks SAID's smallest d
    (groups + 1) of rows whose field has that value; runs with no threshold above chance are listed in the legend, not drawn.
    ``plot['logx']`` is true (log x), false (linear) or "symlog" (linear near 0, log above; ticks at the rows' x values,
    for pre-training steps that start at 0). Series are drawn DODGE_POINTS apart sideways; their data stay exact."""
    from matplotlib.lines import Line2D
    from matplotlib.ticker import NullLocator
    from matplotlib.transforms import ScaledTranslation

    plt, fig, ax = new_figure()
    x, series = plot["x"], plot.get("series")
    done = finished_rows(rows, plot)
    styles: dict[str, Any] = {}
    unmeasured = []
    keys = sorted({str(r.get(series)) for r in done}) if series else [None]
    for i, key in enumerate(keys):
        color = f"C{i}"
        shift = ax.transData + ScaledTranslation(DODGE_POINTS * (i - (len(keys) - 1) / 2) / 72, 0, fig.dpi_scale_trans)
        pts = sorted((r for r in done if series is None or str(r.get(series)) == key), key=lambda r: r[x])
        measured = [r for r in pts if r.get("d90")]
        if measured:
            spans = [r.get("interval") or r.get("bracket") or (None, None) for r in measured]
            ys = [r["d90"] for r in measured]
            lo = [y - (s[0] if s[0] is not None else y) for y, s in zip(ys, spans)]
            hi = [(s[1] if s[1] is not None else y) - y for y, s in zip(ys, spans)]
            xs = [r[x] for r in measured]
            ax.errorbar(xs, ys, yerr=[lo, hi], marker="o", capsize=3, color=color, label=key if series else "d90", transform=shift)
            # a shifted transform is not data coordinates, so the axes' data limits are told of the bars' ends here
            ax.update_datalim([(v, y - a) for v, y, a in zip(xs, ys, lo)] + [(v, y + b) for v, y, b in zip(xs, ys, hi)])
            knife = [(r[x], r["d90"]) for r in measured if r.get("knife_edge")]
            if knife:
                ax.plot(*zip(*knife), "o", ms=13, mfc="none", mec=color, mew=1.2, transform=shift)
                styles["knife"] = Line2D([], [], marker="o", ms=10, mfc="none", mec="0.3", linestyle="none",
                                         label="knife edge: d90's point passes the threshold by less than one standard error")
        above = [r for r in pts if not r.get("d90") and r.get("status") == "above_largest" and r.get("bracket")]
        for r in above:
            top = r["bracket"][0]
            ax.annotate("", xy=(r[x], top * ARROW_FACTOR), xytext=(r[x], top), xycoords=shift, textcoords=shift,
                        arrowprops={"arrowstyle": "-|>", "color": color, "lw": 1.6, "shrinkA": 0, "shrinkB": 0})
        if above:
            ax.plot([r[x] for r in above], [r["bracket"][0] for r in above], "_", ms=8, mew=2, color=color, linestyle="none",
                    transform=shift, label=None if measured or not series else key)  # the series' legend entry when it has no d90
            ax.plot([r[x] for r in above], [r["bracket"][0] * ARROW_FACTOR for r in above], linestyle="none")  # room for the arrow heads
            styles["above"] = Line2D([], [], color="0.3", marker=r"$\uparrow$", ms=10, linestyle="none",
                                     label="d90 above the largest d tried (arrow from it; not joined to the line)")
        for r in measured + above:
            if r.get(plot.get("annotate", "")) is not None:
                ax.annotate(str(r[plot["annotate"]]), (r[x], r.get("d90") or r["bracket"][0]), xytext=(5, 4), textcoords="offset points",
                            fontsize=7, color=color)
        unmeasured += [f"{r['run']} ({x} {r[x]})" for r in pts if r.get("status") == "no_baseline"]
    for field, values in (plot.get("floors") or {}).items():
        floors = [(r[x], values[r[field]]) for r in done if r.get("method") == "said" and r.get(field) in values]
        if floors:
            ax.plot(*zip(*floors), linestyle="none", marker="_", ms=16, mew=1.5, color="0.35")
            styles["floor"] = Line2D([], [], linestyle="none", marker="_", ms=12, mew=1.5, color="0.35",
                                     label="SAID's smallest d (groups + 1): no smaller d exists")
    if unmeasured:
        styles["none"] = Line2D([], [], linestyle="none", label=textwrap.fill(
            "not drawn, no threshold above chance: " + ", ".join(unmeasured), NOTE_WIDTH, subsequent_indent="  "))
    logx = plot.get("logx", True)
    xs = sorted({r[x] for r in done})
    if logx == "symlog":
        ax.set_xscale("symlog", linthresh=min((v for v in xs if v > 0), default=1))
    else:
        ax.set_xscale("log" if logx else "linear")
    if logx and len(xs) <= MAX_VALUE_TICKS:  # a tick at each value the runs take (a log axis skips most of them)
        ax.set_xticks(xs, [f"{v:,}" for v in xs])
        ax.xaxis.set_minor_locator(NullLocator())
    ax.set_yscale("log")
    if plot.get("annotate"):
        ax.margins(x=0.12)  # room for the label right of the last point
    ax.set_xlabel(plot.get("xlabel", x))
    ax.set_ylabel("d90 (bar: interval, or bracket with < 3 seeds)")
    handles, labels = ax.get_legend_handles_labels()
    y2 = plot.get("y2")
    if y2:
        twin = ax.twinx()
        pts2 = sorted({(r[x], r[y2]) for r in done if r.get(y2) is not None})
        handles += twin.plot([p[0] for p in pts2], [p[1] for p in pts2], color="0.4", linestyle="--", marker="s", ms=3)
        labels.append(plot.get("y2label", y2) + " (right axis)")
        twin.set_ylabel(plot.get("y2label", y2))
    handles += list(styles.values())
    labels += [h.get_label() for h in styles.values()]
    ax.set_title(plot.get("title", f"d90 against {x}"), fontsize=10)
    ax.grid(True, which="both", alpha=0.25)
    ax.autoscale_view()
    legend_below(fig, handles, labels, title=series)
    return fig


def plot_d90_against(rows: list[dict[str, Any]], plot: dict[str, Any], path: Path) -> list[Path]:
    """:func:`d90_figure` written as PNG and PDF; no plot (and any old one removed) while none of its runs has run
    (an experiment run in parts)."""
    import matplotlib.pyplot as plt

    if not finished_rows(rows, plot):
        return drop_figure(path)
    return save_figure(plt, d90_figure(rows, plot), path)


def plot_field_against(rows: list[dict[str, Any]], plot: dict[str, Any], path: Path) -> list[Path]:
    """A summary field ``plot['y']`` (e.g. the baseline) against ``plot['x']`` (e.g. the full fine-tuning steps), one
    line per ``plot['series']`` value, rows filtered by ``plot['where']``, each point labelled with ``plot['annotate']``;
    log x unless ``logx`` is false, linear y, one labelled tick per x value. No plot while none of its runs has run."""
    from matplotlib.ticker import NullLocator

    x, y, series = plot["x"], plot["y"], plot.get("series")
    done = [r for r in finished_rows(rows, plot) if r.get(y) is not None]
    if not done:
        return drop_figure(path)
    plt, fig, ax = new_figure()
    keys = sorted({str(r.get(series)) for r in done}) if series else [None]
    for i, key in enumerate(keys):
        pts = sorted((r for r in done if series is None or str(r.get(series)) == key), key=lambda r: r[x])
        ax.plot([r[x] for r in pts], [r[y] for r in pts], marker=MARKERS[i % len(MARKERS)], color=f"C{i}", label=key if series else y)
        for r in pts:
            if r.get(plot.get("annotate", "")) is not None:
                ax.annotate(str(r[plot["annotate"]]), (r[x], r[y]), xytext=(5, 4), textcoords="offset points", fontsize=7, color=f"C{i}")
    xs = sorted({r[x] for r in done})
    if plot.get("logx", True):
        ax.set_xscale("log")
        ax.set_xticks(xs, [f"{v:,}" for v in xs])
        ax.xaxis.set_minor_locator(NullLocator())
    if plot.get("annotate"):
        ax.margins(x=0.12)
    ax.set_xlabel(plot.get("xlabel", x))
    ax.set_ylabel(plot.get("ylabel", y))
    ax.set_title(plot.get("title", f"{y} against {x}"), fontsize=10)
    ax.grid(True, which="both", alpha=0.25)
    legend_below(fig, *ax.get_legend_handles_labels(), title=series)
    return save_figure(plt, fig, path)


def plot_gap(results: list[dict[str, Any]], path: Path) -> list[Path]:
    """Generalisation gap (training-sample metric minus test metric, seed means) against d, one line per subspace run
    with training values; no plot (and any old one removed) when no run has them."""
    measured = [(label, r, [p for p in r["points"] if p["n_ok"] and p.get("train_mean") is not None and math.isfinite(p["train_mean"])])
                for label, r in zip(unique_labels(results), results) if subspace(r)]
    measured = [m for m in measured if m[2]]  # a run stored before the sample was drawn at random has none: left out
    if not measured:
        return drop_figure(path)
    plt, fig, ax = new_figure()
    for i, (label, r, pts) in enumerate(measured):
        ax.plot([p["d"] for p in pts], [p["train_mean"] - p["mean"] for p in pts], marker=MARKERS[i % len(MARKERS)], ms=4,
                color=f"C{i}", label=label)
        if r.get("d90"):
            ax.axvline(r["d90"], color=f"C{i}", linestyle="-.", linewidth=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("subspace dimension d (log scale); dash-dot: d90")
    ax.set_ylabel(f"train - test {measured[0][1]['metric']} (seed mean)")
    ax.set_title("Generalisation gap against d", fontsize=10)
    ax.grid(True, which="both", alpha=0.25)
    legend_below(fig, *ax.get_legend_handles_labels())
    return save_figure(plt, fig, path)


def gap_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The summary rows a gap-against-bound plot shows: subspace runs with a d90 and a gap measured at it."""
    return [r for r in rows if subspace(r) and r.get("d90") and r.get("gap_at_d90") is not None and r.get("bound_sqrt_d90_over_n")]


def plot_gap_against_bound(rows: list[dict[str, Any]], path: Path) -> list[Path]:
    """Each subspace run's generalisation gap at d90 against sqrt(d90 / n_train), the term of Aghajanyan et al.'s
    compression bound (the bound predicts the gap grows with it); rows without a measured gap, and LoRA's rank (not a
    d90), are left out, and with none left no plot is written (an old one is removed)."""
    pts = gap_rows(rows)
    if not pts:
        return drop_figure(path)
    plt, fig, ax = new_figure()
    ax.scatter([r["bound_sqrt_d90_over_n"] for r in pts], [r["gap_at_d90"] for r in pts], color="C0")
    for r in pts:
        ax.annotate(f"{r['run']} (d90 {r['d90']:,})", (r["bound_sqrt_d90_over_n"], r["gap_at_d90"]), fontsize=6,
                    xytext=(3, 3), textcoords="offset points")
    ax.margins(x=0.2)  # room for the label right of the last point
    ax.set_xlabel("sqrt(d90 / n_train)")
    ax.set_ylabel("train - test metric at d90 (seed mean)")
    ax.set_title("Generalisation gap at d90 against the compression-bound term", fontsize=10)
    ax.grid(True, alpha=0.25)
    return save_figure(plt, fig, path)


def _read_csv(path: Path) -> list[dict[str, str]]:
    """The rows of a CSV file with a header (none if it is missing)."""
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def plot_loss(out: str | Path) -> Path:
    """``loss.png`` and ``loss.pdf``: training MLM loss per step (and its running mean) and held-out loss at each checkpoint."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    rows = _read_csv(out / "log.csv")
    steps = [int(r["step"]) for r in rows]
    losses = [float(r["loss"]) for r in rows]
    points = json.loads((out / "checkpoints.json").read_text())
    fig, ax = plt.subplots(figsize=(7.5, 4.5), dpi=120)
    if steps:
        ax.plot(steps, losses, color="C0", alpha=0.3, lw=0.8, label="training loss (per step)")
        w = max(1, len(losses) // 50)
        run = [sum(losses[max(0, i - w + 1) : i + 1]) / len(losses[max(0, i - w + 1) : i + 1]) for i in range(len(losses))]
        ax.plot(steps, run, color="C0", lw=1.6, label=f"training loss (mean of {w})")
    ev = [(p["step"], p["eval_loss"]) for p in points if p["eval_loss"] is not None]
    if ev:
        ax.plot(*zip(*ev), color="C3", marker="o", label="held-out loss at checkpoints")
    ax.set_xlabel("update step")
    ax.set_ylabel("MLM loss (cross-entropy, nats)")
    ax.set_title(f"MLM pre-training: {out.name}")
    ax.grid(alpha=0.3)
    ax.legend()
    return save_figure(plt, fig, out / "loss")[0]
