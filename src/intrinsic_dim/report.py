"""Plots (PNG + PDF) and markdown reports of one or several d90 runs, read back from their ``d90.json``."""

from __future__ import annotations

import csv
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

    return _save(plt, curves_figure(results, title, x), Path(path))


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


def _figure():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt, *plt.subplots(figsize=(7, 4.6), dpi=120)


def _save(plt, fig, path: Path) -> list[Path]:
    fig.tight_layout()
    paths = [path.with_suffix(".png"), path.with_suffix(".pdf")]
    for p in paths:
        fig.savefig(p)
    plt.close(fig)
    return paths


def plot_d90_against(rows: list[dict[str, Any]], plot: dict[str, Any], path: Path) -> list[Path]:
    """d90 (marker) with its interval or bracket (bar) against the row field ``plot['x']``, one line per
    value of ``plot['series']``, rows filtered by ``plot['where']``, each point labelled with its ``plot['annotate']`` field;
    a run without d90 is drawn at its bracket's lower end inside an open triangle (d90 lies above it), a run with no threshold above chance as a cross on the x axis."""
    plt, fig, ax = _figure()
    x, series, where = plot["x"], plot.get("series"), plot.get("where", {})
    done = [r for r in rows if r.get("status") not in (None, "not run") and r.get(x) is not None
            and all(r.get(k) == v for k, v in where.items())]
    for i, key in enumerate(sorted({str(r.get(series)) for r in done}) if series else [None]):
        pts = sorted((r for r in done if series is None or str(r.get(series)) == key), key=lambda r: r[x])
        xs, ys, lo, hi = [], [], [], []
        for r in pts:
            span = r.get("interval") or r.get("bracket") or (None, None)
            y = r.get("d90") or (r.get("bracket") or [None])[0]
            if y is None:
                continue
            xs.append(r[x])
            ys.append(y)
            lo.append(y - (span[0] if span[0] is not None else y))
            hi.append((span[1] if span[1] is not None else y) - y)
            if r.get(plot.get("annotate", "")) is not None:
                ax.annotate(str(r[plot["annotate"]]), (r[x], y), xytext=(5, 4), textcoords="offset points", fontsize=7, color=f"C{i}")
        ax.errorbar(xs, ys, yerr=[lo, hi], marker="o", capsize=3, color=f"C{i}", label=f"{series} = {key}" if series else None)
        above = [(r[x], r["bracket"][0]) for r in pts if not r.get("d90") and r.get("bracket")]
        if above:
            ax.plot(*zip(*above), "^", ms=11, mfc="none", color=f"C{i}",
                    label=(f"{series} = {key}: " if series else "") + "d90 above the largest d tried")
        unmeasurable = [r[x] for r in pts if r["status"] == "no_baseline"]
        if unmeasurable:
            ax.plot(unmeasurable, [0.03] * len(unmeasurable), "x", ms=8, color=f"C{i}", transform=ax.get_xaxis_transform(),
                    label=f"{series} = {key}: no threshold above chance" if series else "no threshold above chance")
    ax.set_xscale("log" if plot.get("logx", True) else "linear")
    ax.set_yscale("log")
    if plot.get("annotate"):
        ax.margins(x=0.12)  # room for the label right of the last point
    ax.set_xlabel(plot.get("xlabel", x))
    ax.set_ylabel("d90 (bar: interval, or bracket with < 3 seeds)")
    y2 = plot.get("y2")
    if y2:
        twin = ax.twinx()
        pts = sorted({(r[x], r[y2]) for r in done if r.get(y2) is not None})
        twin.plot([p[0] for p in pts], [p[1] for p in pts], color="0.4", linestyle="--", marker="s", ms=3, label=y2)
        twin.set_ylabel(plot.get("y2label", y2) + " (dashed)")
    ax.set_title(plot.get("title", f"d90 against {x}"), fontsize=10)
    ax.grid(True, which="both", alpha=0.25)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)
    return _save(plt, fig, path)


def plot_gap(results: list[dict[str, Any]], path: Path) -> list[Path]:
    """Generalisation gap (training-sample metric minus test metric, seed means) against d, one line per run."""
    plt, fig, ax = _figure()
    for i, r in enumerate(results):
        pts = [p for p in r["points"] if p["n_ok"] and p.get("train_mean") is not None and math.isfinite(p["train_mean"])]
        if not pts:  # no training values (a run stored before the sample was drawn at random): left out
            continue
        ax.plot([p["d"] for p in pts], [p["train_mean"] - p["mean"] for p in pts], marker="o", ms=3, color=f"C{i}", label=run_label(r))
        if r.get("d90"):
            ax.axvline(r["d90"], color=f"C{i}", linestyle="-.", linewidth=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("subspace dimension d (log scale); dash-dot: d90")
    ax.set_ylabel(f"train - test {results[0]['metric']} (seed mean)")
    ax.set_title("Generalisation gap against d", fontsize=10)
    ax.grid(True, which="both", alpha=0.25)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=6)
    return _save(plt, fig, path)


def plot_gap_against_bound(rows: list[dict[str, Any]], path: Path) -> list[Path]:
    """Each run's generalisation gap at d90 against sqrt(d90 / n_train), the term of Aghajanyan et al.'s
    compression bound: the bound predicts the gap grows with it."""
    plt, fig, ax = _figure()
    pts = [r for r in rows if r.get("gap_at_d90") is not None and r.get("bound_sqrt_d90_over_n")]
    ax.scatter([r["bound_sqrt_d90_over_n"] for r in pts], [r["gap_at_d90"] for r in pts], color="C0")
    for r in pts:
        ax.annotate(f"{r['run']} (d90 {r['d90']:,})", (r["bound_sqrt_d90_over_n"], r["gap_at_d90"]), fontsize=6,
                    xytext=(3, 3), textcoords="offset points")
    ax.margins(x=0.2)  # room for the label right of the last point
    ax.set_xlabel("sqrt(d90 / n_train)")
    ax.set_ylabel("train - test metric at d90 (seed mean)")
    ax.set_title("Generalisation gap at d90 against the compression-bound term", fontsize=10)
    ax.grid(True, alpha=0.25)
    return _save(plt, fig, path)


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
    fig.tight_layout()
    png = out / "loss.png"
    fig.savefig(png)
    fig.savefig(out / "loss.pdf")
    plt.close(fig)
    return png
