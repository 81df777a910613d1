"""The curve plot: the test metric against d (or trained parameters) for one or several runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from intrinsic_dim.report.figure import fit_title, save_figure
from intrinsic_dim.report.labels import as_float, budget_text, format_interval, knife_edge, model_name, size_name, unique_labels


MARKERS = "osD^vP<>"


DODGE_DECADES = 0.012
"""Runs of one curve plot are offset by this many decades of d from each other, so equal points stay visible."""


def plot_curves(results: Sequence[dict[str, Any]], path: str | Path, title: str | None = None, x: str = "d",
                missing: Sequence[str] = ()) -> list[Path]:
    """:func:`curves_figure` written as PNG and PDF beside each other; returns both paths."""
    import matplotlib.pyplot as plt

    return save_figure(plt, curves_figure(results, title, x, missing), Path(path), layout=False)


def curves_figure(results: Sequence[dict[str, Any]], title: str | None = None, x: str = "d", missing: Sequence[str] = ()) -> Any:
    """Test metric vs d on a log axis for each run: every seed, the seed mean ± sd, the baseline (its seed range as a bar
    right of the axes), the threshold, the chance level, d90 with its interval (a bar on the threshold line) and the
    evaluated d as ticks; the legend sits below the axes, off the data. With ``x="trainable"`` the x axis is each
    point's number of trained parameters instead, so subspace and LoRA runs share one axis (d90 marks the trainable
    count at d90; the interval is left out). ``missing`` names runs of the plot that have not run (said in the title)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.transforms import ScaledTranslation, blended_transform_factory

    legend_in = 0.17 * (len(results) + 5)
    fig, (ax, legend_ax) = plt.subplots(2, 1, figsize=(8, 5.6 + legend_in), dpi=120, gridspec_kw={"height_ratios": [5.6, legend_in]})
    legend_ax.axis("off")
    right = blended_transform_factory(ax.transAxes, ax.transData)
    handles, labels, n = [], unique_labels(results), len(results)
    intervals = False
    for i, r in enumerate(results):
        color, marker, shift = f"C{i}", MARKERS[i % len(MARKERS)], 10 ** (DODGE_DECADES * (i - (n - 1) / 2))

        def xof(p: dict[str, Any]) -> float:
            return p.get("trainable") or p["d"] if x == "trainable" else p["d"]

        pts = [p for p in r["points"] if p["n_ok"]]
        ds = [xof(p) * shift for p in pts]
        for p, d in zip(pts, ds):
            ax.scatter([d] * len(p["values"]), [as_float(v) for v in p["values"]], s=12, alpha=0.4, color=color, marker=marker, linewidths=0)
        d90 = r.get("d90")
        above = r.get("status") == "above_largest" and r["points"]
        found = f"= {d90:,}" if d90 else (f"> {max(p['d'] for p in r['points']):,}" if above else "not found")
        label = f"{labels[i]}: {size_name(r)}{round(100 * r['fraction'])} {found}"
        if x == "trainable" and r.get("trainable_params"):
            label += f" ({r['trainable_params']:,} trained)"
            d90 = r["trainable_params"]
        elif r.get("interval"):
            label += f" [{format_interval(r['interval'], max(p['d'] for p in r['points']))}]"
        if knife_edge(r):
            label += " (knife edge)"
        h = ax.errorbar(ds, [p["mean"] for p in pts], yerr=[p["std"] for p in pts], color=color, marker=marker, ms=5,
                        mfc="none" if n > 1 else color, capsize=3, label=label)
        handles.append(h)
        base = r.get("baseline_values") or []
        if len(base) > 1:
            ax.plot([1.012 + 0.014 * i] * 2, [min(base), max(base)], color=color, linewidth=3, solid_capstyle="butt",
                    transform=right, clip_on=False)
        ax.axhline(r["baseline"], color=color, linewidth=0.8, alpha=0.7)
        ax.axhline(r["threshold"], color=color, linestyle="--", linewidth=1)
        if r.get("chance") is not None:
            ax.axhline(r["chance"], color="0.5", linestyle=":", linewidth=1)
        if d90:
            ax.axvline(d90, color=color, linestyle="-.", linewidth=1.2)
            lo, hi = r["interval"] if r.get("interval") and x == "d" else (None, None)
            if lo is not None:
                intervals = True
                hi = hi if hi is not None else max(p["d"] for p in r["points"])
                offset = ScaledTranslation(0, 3 * (i - (n - 1) / 2) / 72, fig.dpi_scale_trans)
                ax.errorbar([d90], [r["threshold"]], xerr=[[d90 - lo], [hi - d90]], fmt="none", ecolor=color, elinewidth=2.5,
                            capsize=5, capthick=1.5, transform=ax.transData + offset)
        all_ds = [xof(p) for p in r["points"]]
        ax.plot(all_ds, [0.0] * len(all_ds), "|", color=color, ms=10, mew=1.2, transform=ax.get_xaxis_transform(), clip_on=False)
    lower = bool(results) and all(r.get("lower_is_better") for r in results)  # curves fall to the lower right
    styles = [
        Line2D([], [], color="0.3", linewidth=0.8, label="full fine-tuning baseline" + (" (bar right of the axes: seed range)"
               if any(len(r.get("baseline_values") or []) > 1 for r in results) else "")),
        Line2D([], [], color="0.3", linestyle="--", label="threshold = base - fraction x (base - baseline)" if lower
               else "threshold = fraction x baseline"),
        *([Line2D([], [], color="0.5", linestyle=":", label="chance (majority class)")]
          if any(r.get("chance") is not None for r in results) else []),
        Line2D([], [], color="0.3", linestyle="-.", label="d90" + (" (bar on its threshold: interval)" if intervals else "")
               + "; ticks: evaluated d"),
    ]
    legend_ax.legend(handles=handles + styles, fontsize=7, loc="upper left", frameon=False, borderaxespad=0)
    ax.set_xscale("log")
    ax.set_xlabel("trained parameters (log scale)" if x == "trainable" else
                  ("LoRA rank r (log scale)" if all(r.get("method") == "lora" for r in results) else "subspace dimension d (trained numbers, log scale)"))
    first = results[0] if results else {"metric": "metric"}
    seeds = sorted({r.get("seeds", 1) for r in results})
    ax.set_ylabel(f"test {first['metric']} (mean ± sd over {'/'.join(map(str, seeds))} seed(s))")
    title = title or (f"{model_name(first['model'])} on {first['task']}" if len(results) == 1 else "Intrinsic dimension: runs compared")
    ax.set_title(title + (f" (not run yet: {', '.join(missing)})" if missing else ""), fontsize=10)
    ax.grid(True, which="both", alpha=0.25)
    budgets = [budget_text(r) for r in results]
    if len(set(budgets)) == 1:
        budgets = [("every run: " if len(results) > 1 else "") + budgets[0]]
    elif len(budgets) > 1:
        budgets = [f"[{i + 1}] {b}" for i, b in enumerate(budgets)]
    if n > 1:
        budgets.append(f"markers of the {n} runs are offset by up to {(10 ** (DODGE_DECADES * (n - 1) / 2) - 1) * 100:.0f}% in d so equal points stay visible")
    fig.text(0.01, 0.005, "\n".join(budgets), fontsize=6, va="bottom", wrap=True)
    fit_title(ax, fig)  # before the layout, which must make room for every line of it
    fig.tight_layout(rect=(0, 0.03 + 0.035 * len(budgets), 1, 1))
    return fig
