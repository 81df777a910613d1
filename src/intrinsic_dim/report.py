"""Plots (PNG + PDF) and markdown reports of one or several d90 runs, read back from their ``d90.json``."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Sequence

RESULT_NAME = "d90.json"


def load_result(run_dir: str | Path) -> dict[str, Any]:
    """The ``d90.json`` of a run directory, with a clear error if the run never finished."""
    path = Path(run_dir) / RESULT_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run `intrinsic-dim measure --run-dir {run_dir}` first (it resumes)")
    result = json.loads(path.read_text())
    if "points" not in result:
        raise ValueError(f"run {run_dir} ended without a curve ({result.get('status')}): {result.get('reason')}")
    if "train_sample" not in result:  # written when the training sample was the split's first examples: not a sample
        for p in result["points"]:
            p["train_mean"], p["train_values"] = None, [None] * len(p.get("train_values", []))
    return result


METHOD_NAMES = {"said": "SAID", "did": "DID", "lora": "LoRA"}


def method_name(r: dict[str, Any]) -> str:
    """'SAID', 'DID' or 'LoRA' (or the stored method name for other kinds of run)."""
    method = r.get("method") or ("said" if r.get("said") else "did")
    return METHOD_NAMES.get(method, method)


def size_name(r: dict[str, Any]) -> str:
    """What a run's searched number is: the LoRA rank r, or the subspace dimension d."""
    return "r" if r.get("method") == "lora" else "d"


def threshold_rule(r: dict[str, Any]) -> str:
    """How the threshold was set: a fraction of the baseline, or of the improvement over the base model for a loss."""
    if r.get("lower_is_better"):
        return (f"base model {_fmt(r.get('base_value'))} - {r['fraction']:g} x (base - baseline) = {_fmt(r['threshold'])} "
                f"(lower is better: {r['fraction']:g} of full fine-tuning's improvement over the base model)")
    return f"{r['fraction']:g} x baseline = {_fmt(r['threshold'])}"


def run_label(r: dict[str, Any]) -> str:
    """A short name of a run: model / task (method, projection[, layout][, groups])."""
    parts = [method_name(r)] + ([] if r.get("method") == "lora" else [r.get("projection", "fastfood")])
    if r.get("layout", "stacked") != "stacked":
        parts.append(r["layout"] + (f"/{r['normalisation']}" if r.get("layout") == "per_tensor" and r.get("normalisation") else ""))
    if r.get("said") and r.get("groups", "tensor") != "tensor":
        parts.append(f"groups={r['groups']}")
    label = f"{r['model']} / {r['task']} ({', '.join(parts)})"
    return f"{r['name']}: {label}" if r.get("name") else label


def format_interval(interval: Sequence[float | None] | None, largest_d: int) -> str:
    """The interval as text; an open upper end lies beyond the largest evaluated d."""
    if not interval:
        return "-"
    lo, hi = interval
    return f"{lo:,.0f} - {hi:,.0f}" if hi is not None else f"{lo:,.0f} - above {largest_d:,}"


def format_bracket(bracket: Sequence[int | None] | None) -> str:
    """The search's bracket (last failing d, first passing d] as text."""
    if not bracket:
        return "-"
    lo, hi = bracket
    return f"({'0' if lo is None else f'{lo:,}'}, {'above' if hi is None else f'{hi:,}'}]"


def _budget_text(r: dict[str, Any]) -> str:
    b = r.get("budget") or {}
    select = {"best": "checkpoint selected on validation", "final": "final checkpoint"}.get(b.get("select"), "")
    full_lr = f"full fine-tuning lr {b['full_lr_policy']}; " if b.get("full_lr_policy") else ""
    return (f"n_train {r['n_train']:,}, validation {b.get('n_val', '?'):,}, test {b.get('n_test', '?'):,}; "
            f"{b.get('steps_per_trial', '?')} steps per trial, batch {b.get('batch_size', '?')}; lr {b.get('lr_policy', '?')}; "
            f"{full_lr}{select}; baseline: {r['baseline_source']}; {r.get('mode', 'search')} mode, {r.get('seeds', '?')} seed(s)")


LEGEND_INSIDE_MAX_RUNS = 2
"""Curve plots of more runs than this put their legend under the axes instead of over the data."""


def plot_curves(results: Sequence[dict[str, Any]], path: str | Path, title: str | None = None, x: str = "d") -> list[Path]:
    """:func:`curves_figure` written as PNG and PDF beside each other; returns both paths."""
    import matplotlib.pyplot as plt

    fig = curves_figure(results, title, x)
    path = Path(path)
    out = [path.with_suffix(".png"), path.with_suffix(".pdf")]
    for p in out:
        fig.savefig(p)
    plt.close(fig)
    return out


def curves_figure(results: Sequence[dict[str, Any]], title: str | None = None, x: str = "d") -> Any:
    """Test metric vs d on a log axis for each run: every seed, the seed mean ± sd, the baseline with its
    seed spread, the threshold, the chance level, d90 with its interval and the evaluated d as ticks.
    With ``x="trainable"`` the x axis is each point's number of trained parameters instead, so subspace
    and LoRA runs share one axis (d90 marks the trainable count at d90; the interval is left out)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    below = len(results) > LEGEND_INSIDE_MAX_RUNS  # a long legend goes under the plot, where it hides no curve
    legend_in = 0.17 * (len(results) + 4) if below else 0.0
    if below:
        fig, (ax, legend_ax) = plt.subplots(2, 1, figsize=(8, 5.6 + legend_in), dpi=120,
                                            gridspec_kw={"height_ratios": [5.6, legend_in]})
        legend_ax.axis("off")
    else:
        fig, ax = plt.subplots(figsize=(8, 5.6), dpi=120)
    handles = []
    for i, r in enumerate(results):
        color = f"C{i}"
        def xof(p: dict[str, Any]) -> float:
            return p.get("trainable") or p["d"] if x == "trainable" else p["d"]

        pts = [p for p in r["points"] if p["n_ok"]]
        ds = [xof(p) for p in pts]
        for p in pts:
            ax.scatter([xof(p)] * len(p["values"]), [_nan(v) for v in p["values"]], s=12, alpha=0.4, color=color, linewidths=0)
        d90 = r.get("d90")
        above = r.get("status") == "above_largest" and r["points"]
        found = f"= {d90}" if d90 else (f"> {max(p['d'] for p in r['points']):,}" if above else "not found")
        label = f"{run_label(r)}: {size_name(r)}{round(100 * r['fraction'])} {found}"
        if x == "trainable" and r.get("trainable_params"):
            label += f" ({r['trainable_params']:,} trained)"
            d90 = r["trainable_params"]
        elif r.get("interval"):
            label += f" [{format_interval(r['interval'], max(p['d'] for p in r['points']))}]"
        h = ax.errorbar(ds, [p["mean"] for p in pts], yerr=[p["std"] for p in pts], color=color, marker="o", ms=4, capsize=3, label=label)
        handles.append(h)
        base = r.get("baseline_values") or []
        if len(base) > 1:
            ax.axhspan(min(base), max(base), color=color, alpha=0.12, linewidth=0)
        ax.axhline(r["baseline"], color=color, linewidth=0.8, alpha=0.7)
        ax.axhline(r["threshold"], color=color, linestyle="--", linewidth=1)
        if r.get("chance") is not None:
            ax.axhline(r["chance"], color="0.5", linestyle=":", linewidth=1)
        if d90:
            ax.axvline(d90, color=color, linestyle="-.", linewidth=1.2)
            lo, hi = r["interval"] if r.get("interval") and x == "d" else (None, None)
            if lo is not None:
                ax.axvspan(lo, hi if hi is not None else max(p["d"] for p in r["points"]), color=color, alpha=0.08, linewidth=0)
        all_ds = [xof(p) for p in r["points"]]
        ax.plot(all_ds, [0.0] * len(all_ds), "|", color=color, ms=10, mew=1.2, transform=ax.get_xaxis_transform(), clip_on=False)
    lower = bool(results) and all(r.get("lower_is_better") for r in results)  # curves fall to the lower right
    styles = [
        Line2D([], [], color="0.3", linewidth=0.8, label="full fine-tuning baseline (band: seed range)"),
        Line2D([], [], color="0.3", linestyle="--", label="threshold = base - fraction x (base - baseline)" if lower
               else "threshold = fraction x baseline"),
        *([Line2D([], [], color="0.5", linestyle=":", label="chance (majority class)")]
          if any(r.get("chance") is not None for r in results) else []),
        Line2D([], [], color="0.3", linestyle="-.", label="d90 (shade: interval); ticks: evaluated d"),
    ]
    if below:
        legend_ax.legend(handles=handles + styles, fontsize=7, loc="upper left", frameon=False, borderaxespad=0)
    else:
        ax.legend(handles=handles + styles, fontsize=7, loc="upper right" if lower else "lower right", framealpha=0.9)
    ax.set_xscale("log")
    ax.set_xlabel("trained parameters (log scale)" if x == "trainable" else
                  ("LoRA rank r (log scale)" if all(r.get("method") == "lora" for r in results) else "subspace dimension d (trained numbers, log scale)"))
    first = results[0] if results else {"metric": "metric"}
    seeds = sorted({r.get("seeds", 1) for r in results})
    ax.set_ylabel(f"test {first['metric']} (mean ± sd over {'/'.join(map(str, seeds))} seed(s))")
    ax.set_title(title or (f"{first['model']} on {first['task']}" if len(results) == 1 else "Intrinsic dimension: runs compared"), fontsize=10)
    ax.grid(True, which="both", alpha=0.25)
    budgets = [_budget_text(r) for r in results]
    if len(set(budgets)) == 1:
        budgets = [("every run: " if len(results) > 1 else "") + budgets[0]]
    elif len(budgets) > 1:
        budgets = [f"[{i + 1}] {b}" for i, b in enumerate(budgets)]
    fig.text(0.01, 0.005, "\n".join(budgets), fontsize=6, va="bottom", wrap=True)
    fig.tight_layout(rect=(0, 0.03 + 0.035 * len(budgets), 1, 1))
    return fig


def _nan(v: Any) -> float:
    return float("nan") if v is None else v


def _fmt(x: Any, digits: int = 4) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return "-" if math.isnan(x) else (f"{x:.{digits}f}" if abs(x) < 100 else f"{x:,.0f}")
    return str(x)


def summary_table(results: Sequence[dict[str, Any]]) -> list[str]:
    """One markdown row per run: the numbers that matter for comparing d90s."""
    lines = [
        "| run | baseline | threshold | d90 / r90 | trained params | bracket | crossing | interval | status | sqrt(d90/n) | wall |",
        "|---|---:|---:|---:|---:|---|---:|---|---|---:|---:|",
    ]
    for r in results:
        largest = max(p["d"] for p in r["points"])
        lines.append(
            f"| {run_label(r)} | {_fmt(r['baseline'])} | {_fmt(r['threshold'])} | {_fmt(r['d90'])} | {_fmt(r.get('trainable_params'))} | "
            f"{format_bracket(r.get('bracket'))} | {_fmt(r['crossing'])} | {format_interval(r.get('interval'), largest)} | "
            f"{r['status']} | {_fmt(r.get('bound_sqrt_d90_over_n'))} | {r['wall_s'] / 60:.1f} min |"
        )
    return lines


def write_report(results: Sequence[dict[str, Any]], path: str | Path, plot_name: str = "curve.png") -> Path:
    """``report.md``: the comparison table, then per run its budget, points, trials and notes."""
    out = ["# Intrinsic dimension report", "", f"![curve]({plot_name})", ""]
    out += summary_table(results) + [""]
    for r in results:
        out += [f"## {run_label(r)}", ""]
        chance = f"; chance (majority class) {_fmt(r['chance'])}" if r.get("chance") is not None else ""
        out.append(
            f"Metric `{r['metric']}` on the test split; baseline {_fmt(r['baseline'])} ({r['baseline_source']}"
            f"{': ' + ', '.join(_fmt(v) for v in r['baseline_values']) if r.get('baseline_values') else ''}); threshold "
            f"{threshold_rule(r)}{chance}. Budget: {_budget_text(r)}. "
            f"{r['compute_s'] / 60:.1f} min of trial compute, {r.get('threads') or '?'} thread(s)."
        )
        out += ["", f"| {size_name(r)} | trained params | mean (test) | std | per seed (test) | per seed (validation) | train | passes |",
                "|---:|---:|---:|---:|---|---|---:|---|"]
        for p in r["points"]:
            vals = ", ".join(_fmt(v) for v in p["values"])
            vvals = ", ".join(_fmt(v) for v in p.get("val_values", []))
            out.append(f"| {p['d']:,} | {_fmt(p.get('trainable'))} | {_fmt(p['mean'])} | {_fmt(p['std'])} | {vals} | {vvals} | {_fmt(p.get('train_mean'))} | "
                       f"{'yes' if p['passed'] else 'no'} |")
        failed = [t for t in r["trials"] if t["status"] != "ok"]
        if failed:
            out += ["", "Failed trials:"] + [f"- d={t['config'].get('d')} seed={t['config']['seed']}: {t['status']} ({t['error']})" for t in failed]
        if r.get("notes"):
            out += ["", "Notes:"] + [f"- {n}" for n in r["notes"]]
        out.append("")
    Path(path).write_text("\n".join(out))
    return Path(path)


def report_runs(run_dirs: Sequence[str | Path], out_dir: str | Path | None = None) -> tuple[list[Path], Path]:
    """Plots and report of the given runs into ``out_dir`` (default: the first run directory); when LoRA
    runs are among them, also ``params.png`` / ``params.pdf``: every run against its trained parameters."""
    results = [load_result(d) for d in run_dirs]
    out = Path(out_dir or run_dirs[0])
    out.mkdir(parents=True, exist_ok=True)
    plots = plot_curves(results, out / "curve.png")
    if any(r.get("method") == "lora" for r in results):
        plots += plot_curves(results, out / "params.png", title="Metric against trained parameters", x="trainable")
    return plots, write_report(results, out / "report.md")
