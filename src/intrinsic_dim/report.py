"""Plots and markdown reports of one or several d90 runs (read back from their ``d90.json``)."""

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
    return json.loads(path.read_text())


def _label(r: dict[str, Any]) -> str:
    method = "SAID" if r.get("said") else "DID"
    return f"{r['model']} / {r['task']} ({method}, {r.get('projection', 'fastfood')})"


def plot_curves(results: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """Metric vs d on a log axis: every seed, the mean, the threshold line and the d90 line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.8), dpi=120)
    for i, r in enumerate(results):
        color = f"C{i}"
        pts = r["points"]
        ds = [p["d"] for p in pts]
        for p in pts:
            ax.scatter([p["d"]] * len(p["values"]), [v if v == v else float("nan") for v in p["values"]], s=14, alpha=0.45, color=color)
        ax.errorbar(ds, [p["mean"] for p in pts], yerr=[p["std"] for p in pts], color=color, marker="o", capsize=3, label=_label(r))
        ax.axhline(r["threshold"], color=color, linestyle="--", linewidth=1,
                   label=f"threshold {r['fraction']:g} x {r['baseline']:.3f} = {r['threshold']:.3f}")
        if r.get("d90"):
            ax.axvline(r["d90"], color=color, linestyle=":", linewidth=1.5, label=f"d{round(100 * r['fraction'])} = {r['d90']}")
    ax.set_xscale("log")
    ax.set_xlabel("subspace dimension d (log scale)")
    ax.set_ylabel(results[0]["metric"] if results else "metric")
    ax.set_title("Intrinsic dimension: metric vs subspace size")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)


def _fmt(x: Any, digits: int = 4) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return "-" if math.isnan(x) else (f"{x:.{digits}f}" if abs(x) < 100 else f"{x:,.0f}")
    return str(x)


def format_ci(ci: Sequence[float | None] | None, largest_d: int) -> str:
    """The bootstrap interval as text; an open upper end lies beyond the largest evaluated d."""
    if not ci:
        return "-"
    return f"{ci[0]:,.0f} - {ci[1]:,.0f}" if ci[1] is not None else f"{ci[0]:,.0f} - above {largest_d:,}"


def summary_table(results: Sequence[dict[str, Any]]) -> list[str]:
    """One markdown row per run: the numbers that matter for comparing d90s."""
    lines = [
        "| run | baseline | threshold | d90 | crossing | 95% CI | status | sqrt(d90/n) | wall |",
        "|---|---:|---:|---:|---:|---|---|---:|---:|",
    ]
    for r in results:
        ci_s = format_ci(r.get("ci"), max(p["d"] for p in r["points"]))
        lines.append(
            f"| {_label(r)} | {_fmt(r['baseline'])} | {_fmt(r['threshold'])} | {_fmt(r['d90'])} | {_fmt(r['crossing'])} | "
            f"{ci_s} | {r['status']} | {_fmt(r.get('bound_sqrt_d90_over_n'))} | {r['wall_s'] / 60:.1f} min |"
        )
    return lines


def write_report(results: Sequence[dict[str, Any]], path: str | Path, plot_name: str = "curve.png") -> Path:
    """``report.md``: the comparison table, then per run its points, trials and notes."""
    out = ["# Intrinsic dimension report", "", f"![curve]({plot_name})", ""]
    out += summary_table(results) + [""]
    for r in results:
        out += [f"## {_label(r)}", ""]
        out.append(
            f"Metric `{r['metric']}`; baseline {_fmt(r['baseline'])} ({r['baseline_source']}); threshold "
            f"{r['fraction']:g} x baseline = {_fmt(r['threshold'])}; {r['n_train']:,} training examples; "
            f"subspace learning rate {r['lr'] if r.get('lr') is not None else 'default (see README)'}; "
            f"{r['compute_s'] / 60:.1f} min of trial compute."
        )
        out += ["", "| d | mean | std | per seed | passes |", "|---:|---:|---:|---|---|"]
        for p in r["points"]:
            vals = ", ".join(_fmt(v) for v in p["values"])
            out.append(f"| {p['d']:,} | {_fmt(p['mean'])} | {_fmt(p['std'])} | {vals} | {'yes' if p['passed'] else 'no'} |")
        failed = [t for t in r["trials"] if t["status"] != "ok"]
        if failed:
            out += ["", "Failed trials:"] + [f"- d={t['config'].get('d')} seed={t['config']['seed']}: {t['status']} ({t['error']})" for t in failed]
        if r.get("notes"):
            out += ["", "Notes:"] + [f"- {n}" for n in r["notes"]]
        out.append("")
    Path(path).write_text("\n".join(out))
    return Path(path)


def report_runs(run_dirs: Sequence[str | Path], out_dir: str | Path | None = None) -> tuple[Path, Path]:
    """Plot and report of the given runs into ``out_dir`` (default: the first run directory)."""
    results = [load_result(d) for d in run_dirs]
    out = Path(out_dir or run_dirs[0])
    out.mkdir(parents=True, exist_ok=True)
    return plot_curves(results, out / "curve.png"), write_report(results, out / "report.md")
