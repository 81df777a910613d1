"""Names and numbers of runs as plots and tables show them: labels, formats, knife edges."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path
from typing import Any, Sequence


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
        return (f"base model {fmt(r.get('base_value'))} - {r['fraction']:g} x (base - baseline) = {fmt(r['threshold'])} "
                f"(lower is better: {r['fraction']:g} of full fine-tuning's improvement over the base model)")
    return f"{r['fraction']:g} x baseline = {fmt(r['threshold'])}"


def model_name(model: str) -> str:
    """A model as a title shows it: a registry name as is, a folder as its last two parts, one under the temporary folder."""
    path = Path(model)
    if len(path.parts) <= 1:
        return model
    if path.is_absolute() and Path(tempfile.gettempdir()).resolve() in path.resolve().parents:
        return path.name
    return str(Path(*path.parts[-2:]))


def run_label(r: dict[str, Any]) -> str:
    """A short name of a run: model / task (method, projection[, layout][, groups]); a baseline-only run's method is
    full fine-tuning."""
    if r.get("status") == "baseline_only":
        label = f"{model_name(r['model'])} / {r['task']} (full fine-tuning)"
        return f"{r['name']}: {label}" if r.get("name") else label
    parts = [method_name(r)] + ([] if r.get("method") == "lora" else [r.get("projection", "fastfood")])
    if r.get("layout", "stacked") != "stacked":
        parts.append(r["layout"] + (f"/{r['normalisation']}" if r.get("layout") == "per_tensor" and r.get("normalisation") else ""))
    if r.get("said") and r.get("groups", "tensor") != "tensor":
        parts.append(f"groups={r['groups']}")
    label = f"{model_name(r['model'])} / {r['task']} ({', '.join(parts)})"
    return f"{r['name']}: {label}" if r.get("name") else label


def unique_labels(results: Sequence[dict[str, Any]]) -> list[str]:
    """Each run's :func:`run_label`, with its run name (or folder) appended where two runs would share a label."""
    base = [run_label(r) for r in results]
    labels = [label + (f" [{r.get('name') or Path(r.get('run_dir') or f'run {i + 1}').name}]" if base.count(label) > 1 else "")
              for i, (label, r) in enumerate(zip(base, results))]
    return [label if labels.count(label) == 1 else f"{label} #{i + 1}" for i, label in enumerate(labels)]


KNIFE_EDGE_SE = 0.25
"""A d90 whose deciding points lie within this many standard errors of the threshold is marked as a knife edge."""


def knife_edge(r: dict[str, Any]) -> bool:
    """Whether d90 rests on a knife edge. A result that records the search's own verdict (the d90 point passes tau by
    less than the margin's standard error, baseline seeds included) is taken at its word, so d90.json, the report and
    the plots agree; for results written before it: the mean at d90 passes, or the mean at the bracket's lower end
    fails, the threshold by less than KNIFE_EDGE_SE standard errors of that mean (sd / sqrt(seeds))."""
    if r.get("knife_edge") is not None:
        return bool(r["knife_edge"])
    bracket = r.get("bracket") or (None, None)
    sign = -1.0 if r.get("lower_is_better") else 1.0
    for p in r.get("points") or []:
        if p["d"] in bracket and p.get("n_ok") and p.get("mean") is not None and p.get("std"):
            if abs(sign * (p["mean"] - r["threshold"])) < KNIFE_EDGE_SE * p["std"] / math.sqrt(p["n_ok"]):
                return True
    return False


def subspace(r: dict[str, Any]) -> bool:
    """Whether a run (result or summary row) searched a subspace dimension d (SAID or DID), not a LoRA rank."""
    return (r.get("method") or ("said" if r.get("said") else "did")) in ("said", "did")


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


def budget_text(r: dict[str, Any]) -> str:
    """A run's budget in one line: data sizes, steps, batch, rates, checkpoint rule, baseline, mode and seeds."""
    b = r.get("budget") or {}
    subset = f" ({b['select_examples']:,} examples)" if b.get("select_examples") else ""
    select = {"best": f"checkpoint selected on validation{subset}", "final": "final checkpoint"}.get(b.get("select"), "")
    seed_rule = ", sequential seed rule" if r.get("seed_rule") == "sequential" else ""
    aimed = ", aimed refinement" if r.get("placement") == "aim" and r.get("mode", "search") == "search" else ""
    full_lr = f"full fine-tuning lr {b['full_lr_policy']}; " if b.get("full_lr_policy") else ""
    if r.get("status") == "baseline_only":
        return (f"n_train {r['n_train']:,}, validation {fmt(b.get('n_val', '?'))}, test {fmt(b.get('n_test', '?'))}; "
                f"{fmt(b.get('full_steps'))} full fine-tuning steps, batch {b.get('batch_size', '?')}; {full_lr}{select}; "
                f"{r.get('seeds', '?')} seed(s); no subspace trial")
    return (f"n_train {r['n_train']:,}, validation {fmt(b.get('n_val', '?'))}, test {fmt(b.get('n_test', '?'))}; "
            f"{b.get('steps_per_trial', '?')} steps per trial, batch {b.get('batch_size', '?')}; lr {b.get('lr_policy', '?')}; "
            f"{full_lr}{select}; baseline: {r['baseline_source']}; {r.get('mode', 'search')} mode, {r.get('seeds', '?')} seed(s)"
            f"{seed_rule}{aimed}")


def as_float(v: Any) -> float:
    """A value to plot: NaN for none."""
    return float("nan") if v is None else v


def fmt(x: Any, digits: int = 4) -> str:
    """A number for a table: '-' for none, a float to ``digits`` places (whole with separators from 100), an int with separators."""
    if x is None:
        return "-"
    if isinstance(x, int) and not isinstance(x, bool):
        return f"{x:,}"
    if isinstance(x, float):
        return "-" if math.isnan(x) else (f"{x:.{digits}f}" if abs(x) < 100 else f"{x:,.0f}")
    return str(x)
