"""Plots (PNG + PDF) and markdown reports of one or several d90 runs, read back from their ``d90.json``: every plot and
table of the project (labels and formats in ``labels``, shared figure plumbing in ``figure``, the curve plot in
``curves``, row and gap plots in ``plots``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

from intrinsic_dim.report.curves import curves_figure, plot_curves
from intrinsic_dim.report.labels import (KNIFE_EDGE_SE, budget_text, fmt, format_bracket, format_interval, knife_edge, method_name, model_name,
                                         run_label, size_name, subspace, threshold_rule, unique_labels)
from intrinsic_dim.report.figure import plain_number, plain_ticks
from intrinsic_dim.report.plots import d90_figure, gap_rows, plot_d90_against, plot_field_against, plot_gap, plot_gap_against_bound, plot_loss

__all__ = ["KNIFE_EDGE_SE", "RESULT_NAME", "curves_figure", "d90_figure", "format_bracket", "format_interval", "gap_rows", "knife_edge",
           "load_result", "method_name", "model_name", "plain_number", "plain_ticks", "plot_curves", "plot_d90_against",
           "plot_field_against", "plot_gap", "plot_gap_against_bound", "plot_loss", "report_runs", "run_label", "size_name", "subspace",
           "summary_table", "threshold_rule", "unique_labels", "write_report"]


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


def summary_table(results: Sequence[dict[str, Any]]) -> list[str]:
    """One markdown row per run: the numbers that matter for comparing d90s."""
    lines = [
        "| run | baseline | threshold | d90 / r90 | trained params | bracket | crossing | interval | status | sqrt(d90/n) | wall |",
        "|---|---:|---:|---:|---:|---|---:|---|---|---:|---:|",
    ]
    for label, r in zip(unique_labels(results), results):
        largest = max((p["d"] for p in r["points"]), default=0)
        lines.append(
            f"| {label}{' (knife edge)' if knife_edge(r) else ''} | {fmt(r['baseline'])} | {fmt(r['threshold'])} | {fmt(r['d90'])} | {fmt(r.get('trainable_params'))} | "
            f"{format_bracket(r.get('bracket'))} | {fmt(r['crossing'])} | {format_interval(r.get('interval'), largest)} | "
            f"{r['status']} | {fmt(r.get('bound_sqrt_d90_over_n'))} | {r['wall_s'] / 60:.1f} min |"
        )
    return lines


def write_report(results: Sequence[dict[str, Any]], path: str | Path, plot_name: str = "curve.png") -> Path:
    """``report.md``: the comparison table, then per run its budget, points, trials and notes."""
    out = ["# Intrinsic dimension report", ""] + ([f"![curve]({plot_name})", ""] if any(r["points"] for r in results) else [])
    out += summary_table(results) + [""]
    for label, r in zip(unique_labels(results), results):
        out += [f"## {label}", ""]
        chance = f"; chance (majority class) {fmt(r['chance'])}" if r.get("chance") is not None else ""
        out.append(
            f"Metric `{r['metric']}` on the test split; baseline {fmt(r['baseline'])} ({r['baseline_source']}"
            f"{': ' + ', '.join(fmt(v) for v in r['baseline_values']) if r.get('baseline_values') else ''}); threshold "
            f"{threshold_rule(r)}{chance}. Budget: {budget_text(r)}. "
            f"{r['compute_s'] / 60:.1f} min of trial compute, {r.get('threads') or '?'} thread(s)."
        )
        out += _full_trials(r) if not r["points"] else []
        out += ["", f"| {size_name(r)} | trained params | mean (test) | std | per seed (test) | per seed (validation) | train | passes |",
                "|---:|---:|---:|---:|---|---|---:|---|"] if r["points"] else []
        for p in r["points"]:
            vals = ", ".join(fmt(v) for v in p["values"])
            vvals = ", ".join(fmt(v) for v in p.get("val_values", []))
            out.append(f"| {p['d']:,} | {fmt(p.get('trainable'))} | {fmt(p['mean'])} | {fmt(p['std'])} | {vals} | {vvals} | {fmt(p.get('train_mean'))} | "
                       f"{'yes' if p['passed'] else 'no'} |")
        failed = [t for t in r["trials"] if t["status"] != "ok"]
        if failed:
            out += ["", "Failed trials:"] + [f"- d={t['config'].get('d')} seed={t['config']['seed']}: {t['status']} ({t['error']})" for t in failed]
        if r.get("notes"):
            out += ["", "Notes:"] + [f"- {n}" for n in r["notes"]]
        out.append("")
    Path(path).write_text("\n".join(out))
    return Path(path)


def _full_trials(r: dict[str, Any]) -> list[str]:
    """The full fine-tuning trials of a run without subspace points (a baseline study): rate, seed, steps, validation, test."""
    rows = [t for t in r["trials"] if t["config"].get("method") == "full"]
    return ["", "| full fine-tuning trial | rate | seed | steps | validation | test | status |", "|---|---:|---:|---:|---:|---:|---|"] + [
        f"| {t['role']} | {t['config'].get('lr'):g} | {t['config']['seed']} | {fmt(t.get('steps'))} | {fmt(t.get('val_metric'))} | "
        f"{fmt(t.get('metric'))} | {t['status']} |" for t in rows]


def report_runs(run_dirs: Sequence[str | Path], out_dir: str | Path | None = None) -> tuple[list[Path], Path]:
    """Plots and report of the given runs into ``out_dir`` (default: the first run directory); when LoRA
    runs are among them, also ``params.png`` / ``params.pdf``: every run against its trained parameters."""
    results = [load_result(d) | {"run_dir": str(d)} for d in run_dirs]
    out = Path(out_dir or run_dirs[0])
    out.mkdir(parents=True, exist_ok=True)
    plots = plot_curves(results, out / "curve.png")
    if any(r.get("method") == "lora" for r in results):
        plots += plot_curves(results, out / "params.png", title="Metric against trained parameters", x="trainable")
    return plots, write_report(results, out / "report.md")
