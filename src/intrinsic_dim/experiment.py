"""Experiments: one YAML file names a set of `measure` runs; one command runs them (each resumable)
and writes ``summary.json`` (a list of rows), the runs' own files and comparison plots (PNG + PDF).

File format::

    name: li2018_mnist                 # results go to experiments/results/<name>/ (or --out)
    description: what it reproduces
    defaults: {task: mnist-5k, said: false, epochs: 30, seeds: 3}   # measure options for every run
    runs:
      - {name: fc-own, model: fc-784-200-200-10}
      - {name: fc-abs, model: fc-784-200-200-10, baseline: 1.0, reuse: [fc-own], label: {threshold: absolute}}
    plots:                             # optional; default: one plot of every run
      - {name: fc, runs: [fc-own, fc-abs], title: "FC on MNIST"}
      - {name: params, runs: [said, lora], axis: trainable}    # x: trained parameters (d90 beside LoRA's r90)
      - {name: d90_vs_n, x: n_train, series: net, where: {rule: own}}   # d90 (with interval) against a
                                       # row field, one line per `series` value, rows filtered by `where`;
                                       # `y2: mlm_loss` adds a field on a second axis; `annotate: size`
                                       # writes a field beside each point

A run's ``reuse`` may name other runs of the file: their finished, identical trials are copied in.
A run's ``baseline: {from: RUN}`` takes the measured full fine-tuning baseline of an earlier run of the
file (e.g. every pre-training checkpoint against the last checkpoint's baseline); that run must finish first.
A run with no usable threshold (one that chance already passes, or a baseline that does not beat the
untrained model on a loss) is recorded with status ``no_baseline`` and
the experiment goes on with its other runs.
A run's ``label`` (a mapping) is copied into its summary row, so plots can use it as x or series; a
run whose model is a checkpoint of `intrinsic-dim pretrain` also gets its step and held-out MLM loss.
"""

from __future__ import annotations

import json
import math
import subprocess
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from intrinsic_dim.report import RESULT_NAME, load_result, plot_curves, run_label, write_report
from intrinsic_dim.search import BaselineError

SUMMARY = "summary.json"
PROVENANCE = "provenance.json"
"""Written into a run's directory when the experiment finishes it: the commit and command that ran it."""
RUN_KEYS = {"name", "label"}


class ExperimentError(ValueError):
    """An experiment file that cannot be run; the message says what to change."""


def load_experiment(path: str | Path) -> dict[str, Any]:
    """The experiment file, checked: a name, a list of uniquely named runs, optional defaults and plots."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ExperimentError(f"experiment file {path} not found")
    spec = yaml.safe_load(path.read_text())
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str) or not isinstance(spec.get("runs"), list) or not spec["runs"]:
        raise ExperimentError(f"{path} must be a mapping with a string 'name' and a non-empty list 'runs'")
    names = [r.get("name") if isinstance(r, dict) else None for r in spec["runs"]]
    if not all(isinstance(n, str) and n and "/" not in n for n in names) or len(set(names)) != len(names):
        raise ExperimentError(f"{path}: every run needs a unique 'name' without '/', got {names}")
    if not isinstance(spec.get("defaults", {}), dict):
        raise ExperimentError(f"{path}: 'defaults' must be a mapping of measure options")
    for p in spec.get("plots", []):
        unknown = set(p.get("runs", [])) - set(names)
        if unknown:
            raise ExperimentError(f"{path}: plot {p.get('name')!r} names runs that do not exist: {sorted(unknown)}")
    return spec


def run_options(spec: dict[str, Any], run: dict[str, Any], out: Path) -> dict[str, Any]:
    """The measure options of one run: the experiment's defaults overridden by the run's own; a name of
    another run in ``reuse`` becomes that run's directory."""
    options = {**spec.get("defaults", {}), **{k: v for k, v in run.items() if k not in RUN_KEYS}}
    names = {r["name"] for r in spec["runs"]}
    if "reuse" in options:
        reuse = options["reuse"] if isinstance(options["reuse"], list) else [options["reuse"]]
        options["reuse"] = [str(out / r) if r in names else r for r in reuse]
    if isinstance(options.get("baseline"), dict):
        options["baseline"] = _baseline_of(options["baseline"], names, out, run["name"])
    return options


def _baseline_of(ref: dict[str, Any], names: set[str], out: Path, name: str) -> float:
    """The measured baseline of the run that ``{from: RUN}`` names, which must have finished."""
    source = ref.get("from")
    if set(ref) != {"from"} or source not in names or source == name:
        raise ExperimentError(f"run {name!r}: baseline must be a number or {{from: RUN}} naming another run of the file, got {ref}")
    path = out / source / RESULT_NAME
    result = json.loads(path.read_text()) if path.is_file() else {}
    if not isinstance(result.get("baseline"), (int, float)):
        raise ExperimentError(f"run {name!r} takes its baseline from run {source!r}, which has not finished with a baseline "
                              f"({path}): run it first (--only {source})")
    return float(result["baseline"])


def run_experiment(
    path: str | Path,
    measure: Callable[[dict[str, Any], Path], None],
    *,
    out: str | Path | None = None,
    only: Sequence[str] | None = None,
    command: str = "",
    log: Callable[[str], None] = print,
) -> Path:
    """Run the experiment's runs (``only`` some of them: a part), each by ``measure(options, run_dir)``
    which resumes a finished or interrupted run, then write the summary and plots of every finished run."""
    spec = load_experiment(path)
    out = Path(out or Path("experiments/results") / spec["name"])
    names = [r["name"] for r in spec["runs"]]
    unknown = sorted(set(only or []) - set(names))
    if unknown:
        raise ExperimentError(f"--only names runs that are not in {path}: {unknown}; its runs: {names}")
    for run in spec["runs"]:
        if only and run["name"] not in only:
            continue
        log(f"== {spec['name']} / {run['name']}")
        try:
            measure(run_options(spec, run, out), out / run["name"])
        except BaselineError as e:
            log(f"run {run['name']}: no usable threshold, recorded as no_baseline: {e}")
        provenance = {"commit": _git_commit(), "command": command, "finished": time.strftime("%Y-%m-%d %H:%M:%S")}
        (out / run["name"] / PROVENANCE).write_text(json.dumps(provenance, indent=2) + "\n")
    return summarise(spec, out, command=command)


def _git_commit() -> str | None:
    """The commit of the code that is running (not of the working directory), '+dirty' if it has changes."""
    here = ["git", "-C", str(Path(__file__).resolve().parent)]
    try:
        head = subprocess.run([*here, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run([*here, "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True).stdout.strip()
        return head + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return None


def _gap_at(r: dict[str, Any], d: int | None) -> float | None:
    p = next((p for p in r["points"] if p["d"] == d), None)
    if p is None or not p["n_ok"] or p.get("train_mean") is None:
        return None
    gap = p["train_mean"] - p["mean"]
    return gap if math.isfinite(gap) else None


def summary_row(name: str, r: dict[str, Any], label: dict[str, Any] | None = None) -> dict[str, Any]:
    """One row of ``summary.json`` for a finished run (its d90.json as a dict)."""
    b = r.get("budget") or {}
    return {
        "run": name, "model": r["model"], "task": r["task"], "metric": r.get("metric"),
        "method": r.get("method") or ("said" if r.get("said") else "did"),
        "trainable_params": r.get("trainable_params"), "lower_is_better": r.get("lower_is_better", False),
        "base_value": r.get("base_value"),
        "projection": r.get("projection"), "layout": r.get("layout"), "normalisation": r.get("normalisation"),
        "groups": r.get("groups") if r.get("said") else None, "n_train": r["n_train"],
        "steps_per_trial": b.get("steps_per_trial"), "lr_policy": b.get("lr_policy"), "full_lr_policy": b.get("full_lr_policy"),
        "select": b.get("select"),
        "seeds": r.get("seeds"), "mode": r.get("mode"), "baseline": r["baseline"], "baseline_source": r["baseline_source"],
        "baseline_values": r.get("baseline_values"), "threshold": r["threshold"], "chance": r.get("chance"),
        "d90": r["d90"], "crossing": r["crossing"], "bracket": r.get("bracket"), "interval": r.get("interval"),
        "status": r["status"], "monotone": r.get("monotone"), "gap_at_d90": _gap_at(r, r["d90"]),
        "bound_sqrt_d90_over_n": r.get("bound_sqrt_d90_over_n"), "trials": len(r["trials"]),
        "compute_s": r["compute_s"], "threads": r.get("threads"), **_checkpoint_fields(r["model"]), **(label or {}),
    }


def _checkpoint_fields(model: str) -> dict[str, Any]:
    """The pre-training step and held-out MLM loss of a checkpoint made by `intrinsic-dim pretrain` (else nothing)."""
    from intrinsic_dim.pretrain import checkpoint_info

    info = checkpoint_info(model) if Path(model).is_dir() else None
    if not info:
        return {}
    return {"step": info["step"], "mlm_loss": info["eval_loss"], "params": info["params"], "non_embedding_params": info["non_embedding_params"]}


def _planned_row(spec: dict[str, Any], run: dict[str, Any], status: str) -> dict[str, Any]:
    """The summary row of a run without a d90: what it was asked to measure, so a reader can filter it like the others."""
    options = {**spec.get("defaults", {}), **run}
    method = options.get("method") or ("said" if options.get("said", True) else "did")
    return {"run": run["name"], "model": options.get("model"), "task": options.get("task"), "method": method, "status": status,
            **_checkpoint_fields(str(options.get("model"))), **(run.get("label") or {})}


def summarise(spec: dict[str, Any], out: Path, command: str = "") -> Path:
    """Write ``summary.json`` (one row per run; unfinished runs as status 'not run'), ``report.md`` and the plots."""
    out.mkdir(parents=True, exist_ok=True)
    rows, results = [], {}
    commit = _git_commit()
    for run in spec["runs"]:
        run_dir = out / run["name"]
        outcome = json.loads((run_dir / RESULT_NAME).read_text()) if (run_dir / RESULT_NAME).is_file() else {}
        if outcome.get("status") == "no_baseline":
            rows.append(_planned_row(spec, run, "no_baseline") | {"reason": outcome.get("reason")})
        elif outcome:
            results[run["name"]] = r = load_result(run_dir) | {"name": run["name"]}
            made = json.loads((run_dir / PROVENANCE).read_text()) if (run_dir / PROVENANCE).is_file() else {}
            rows.append(summary_row(run["name"], r, run.get("label")) | {"command": made.get("command", command),
                                                                          "commit": made.get("commit", commit)})
        else:
            rows.append(_planned_row(spec, run, "not run"))
    (out / SUMMARY).write_text(json.dumps(rows, indent=2, default=float) + "\n")
    for plot in spec.get("plots") or [{"name": "curves", "runs": [r["name"] for r in spec["runs"]]}]:
        if "x" in plot:
            plot_d90_against(rows, plot, out / plot["name"])
            continue
        chosen = [results[n] for n in plot.get("runs", results) if n in results]
        if chosen:
            plot_curves(chosen, out / f"{plot['name']}.png", title=plot.get("title"), x=plot.get("axis", "d"))
    if results:
        plot_gap(list(results.values()), out / "generalisation.png")
        plot_gap_against_bound(rows, out / "generalisation_vs_d90.png")
        write_report(list(results.values()), out / "report.md", plot_name=f"{(spec.get('plots') or [{'name': 'curves'}])[0]['name']}.png")
    return out / SUMMARY


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
