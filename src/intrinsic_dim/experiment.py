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
                                       # writes a field beside each point; `floors: {size: {bert-tiny: 42}}`
                                       # marks SAID's smallest d (groups + 1) of the rows with that value
      - {name: budget, x: full_steps, y: baseline, series: task}   # with `y`: that field, not d90, against x

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
import re
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from intrinsic_dim.configfile import ConfigFileError, load_mapping, show
from intrinsic_dim.report import (RESULT_NAME, knife_edge, load_result, plot_curves, plot_d90_against, plot_field_against, plot_gap,
                                  plot_gap_against_bound, write_report)
from intrinsic_dim.search import BaselineError
from intrinsic_dim.search.result import seed_noise_of, stop_unresolved_of
from intrinsic_dim.search.stats import cost_in_full_trials, full_trial_s
from intrinsic_dim.spec import MeasureSpec

SUMMARY = "summary.json"
PROVENANCE = "provenance.json"
"""Written into a run's directory when the experiment finishes it: the commit and command that ran it."""
RESULTS = "experiments/results"
"""Where experiment results are written (relative to the repository), and what a commit's "+dirty" leaves out."""
RUN_KEYS = {"name", "label", "quiet"}
"""Keys of a run (or the defaults) that are not measure options: its name, its summary label, and quiet (no progress bars)."""
TOP_KEYS = {"name", "description", "defaults", "runs", "plots"}
PLOT_KEYS = {"name", "runs", "title", "axis", "x", "y", "series", "where", "logx", "y2", "y2label", "xlabel", "ylabel", "annotate",
             "floors"}
_SAFE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


class ExperimentError(ConfigFileError):
    """An experiment file that cannot be run; the message says what to change."""


@dataclass(frozen=True)
class ExperimentRun:
    """One run of an experiment: its name, its spec (reuse naming runs of the file, resolved when it runs), the
    run its baseline comes from (if any) and the label copied into its summary row."""

    name: str
    spec: MeasureSpec
    label: dict[str, Any] = field(default_factory=dict)
    baseline_from: str | None = None
    quiet: bool = False


@dataclass(frozen=True)
class Experiment:
    """An experiment file, checked: its name, runs and plots."""

    name: str
    runs: list[ExperimentRun]
    plots: list[dict[str, Any]]
    description: str = ""


def _name(value: Any, what: str, where: str) -> str:
    """A name that is safe as a folder name under the results directory."""
    if not (isinstance(value, str) and _SAFE_NAME.match(value) and value not in (".", "..")):
        raise ExperimentError(f"{where}: {what} must be a name of letters, digits, '_', '.' and '-' (a folder name), got {show(value)}")
    return value


def load_experiment(path: str | Path) -> Experiment:
    """The experiment file read through the bounded loader and checked whole before anything runs: every run's
    options become a MeasureSpec, so a bad key or value anywhere is one error naming the run and the key."""
    where = str(path)
    data = load_mapping(path, what="experiment file")
    unknown = sorted(set(map(str, data)) - TOP_KEYS)
    if unknown:
        raise ExperimentError(f"{where}: unknown key(s) {unknown}; an experiment file has {sorted(TOP_KEYS)}")
    name = _name(data.get("name"), "'name'", where)
    defaults, runs = data.get("defaults", {}), data.get("runs")
    if not isinstance(defaults, dict):
        raise ExperimentError(f"{where}: 'defaults' must be a mapping of measure options, got {show(defaults)}")
    if not isinstance(runs, list) or not runs:
        raise ExperimentError(f"{where}: 'runs' must be a non-empty list of runs, each a mapping with a 'name'")
    parsed: list[ExperimentRun] = []
    for i, run in enumerate(runs):
        if not isinstance(run, dict):
            raise ExperimentError(f"{where}: run {i + 1} must be a mapping with a 'name', got {show(run)}")
        parsed.append(_run(run, defaults, where, i))
    names = [r.name for r in parsed]
    if len(set(names)) != len(names):
        raise ExperimentError(f"{where}: run names must be unique, got {sorted(n for n in set(names) if names.count(n) > 1)} twice")
    for r in parsed:
        if r.baseline_from is not None and (r.baseline_from not in names or r.baseline_from == r.name):
            raise ExperimentError(f"{where}: run {r.name!r}: baseline {{from: {r.baseline_from}}} must name another run of the file")
    description = data.get("description", "")
    return Experiment(name, parsed, _plots(data.get("plots"), set(names), where), description if isinstance(description, str) else "")


def _run(run: dict[str, Any], defaults: dict[str, Any], where: str, i: int) -> ExperimentRun:
    """One run of the file: name, label, ``baseline: {from: RUN}`` and the rest as a MeasureSpec over the defaults."""
    name = _name(run.get("name"), f"run {i + 1}'s 'name'", where)
    label = run.get("label", {})
    if not isinstance(label, dict) or not all(isinstance(k, str) for k in label):
        raise ExperimentError(f"{where}: run {name!r}: 'label' must be a mapping of names to values, got {show(label)}")
    options = {k: v for k, v in {**defaults, **run}.items() if k not in RUN_KEYS}
    baseline_from = None
    if isinstance(options.get("baseline"), dict):
        ref = options.pop("baseline")
        if set(ref) != {"from"} or not isinstance(ref["from"], str):
            raise ExperimentError(f"{where}: run {name!r}: baseline must be a number or {{from: RUN}}, got {show(ref)}")
        baseline_from = ref["from"]
    quiet = run.get("quiet", defaults.get("quiet", False))
    if not isinstance(quiet, bool):
        raise ExperimentError(f"{where}: run {name!r}: quiet: expected true or false, got {show(quiet)}")
    spec = MeasureSpec.from_dict(options, source=f"{where}, run {name!r}")
    if baseline_from is not None:  # the value arrives when the run starts: its options must already allow a given baseline
        try:
            spec.replace(baseline=1.0)
        except ConfigFileError as e:
            raise ExperimentError(f"{where}: run {name!r} takes its baseline from run {baseline_from!r}, so it trains no full "
                                  f"fine-tuning, but its options ask for one ({e}): set that option to null in the run") from None
    return ExperimentRun(name, spec, label, baseline_from, quiet)


def _plots(plots: Any, names: set[str], where: str) -> list[dict[str, Any]]:
    """The file's plots, each a mapping with a safe name, known keys and (if given) runs of the file."""
    if plots is None:
        return []
    if not isinstance(plots, list):
        raise ExperimentError(f"{where}: 'plots' must be a list of mappings, got {show(plots)}")
    for p in plots:
        if not isinstance(p, dict):
            raise ExperimentError(f"{where}: every plot must be a mapping with a 'name', got {show(p)}")
        pname = _name(p.get("name"), "a plot's 'name'", where)
        unknown = sorted(set(map(str, p)) - PLOT_KEYS)
        if unknown:
            raise ExperimentError(f"{where}: plot {pname!r}: unknown key(s) {unknown}; a plot has {sorted(PLOT_KEYS)}")
        runs = p.get("runs", [])
        if not isinstance(runs, list) or not all(isinstance(r, str) for r in runs):
            raise ExperimentError(f"{where}: plot {pname!r}: 'runs' must be a list of run names, got {show(runs)}")
        if set(runs) - names:
            raise ExperimentError(f"{where}: plot {pname!r} names runs that do not exist: {sorted(set(runs) - names)}")
        if p.get("logx", True) not in (True, False, "symlog"):
            raise ExperimentError(f"{where}: plot {pname!r}: 'logx' must be true, false or symlog, got {show(p['logx'])}")
        for key in ("where", "label", "floors"):
            if key in p and not isinstance(p[key], dict):
                raise ExperimentError(f"{where}: plot {pname!r}: '{key}' must be a mapping, got {show(p[key])}")
    return plots


def resolve(exp: Experiment, run: ExperimentRun, out: Path) -> MeasureSpec:
    """The run's spec as it runs: names of other runs in ``reuse`` become their directories, and a baseline
    taken from another run becomes that run's measured value (which must have finished)."""
    names = {r.name for r in exp.runs}
    reuse = tuple(str(out / r) if r in names else r for r in run.spec.run.reuse)
    changes: dict[str, Any] = {"reuse": reuse} if reuse != run.spec.run.reuse else {}
    if run.baseline_from is not None:
        path = out / run.baseline_from / RESULT_NAME
        result = json.loads(path.read_text()) if path.is_file() else {}
        if not isinstance(result.get("baseline"), (int, float)):
            raise ExperimentError(f"run {run.name!r} takes its baseline from run {run.baseline_from!r}, which has not finished with a "
                                  f"baseline ({path}): run it first (--only {run.baseline_from})")
        changes["baseline"] = float(result["baseline"])
    return run.spec.replace(**changes) if changes else run.spec


def run_runs(exp: Experiment, measure: Callable[[ExperimentRun, MeasureSpec, Path], None], out: Path, *,
             only: Sequence[str] | None = None, command: str = "", log: Callable[[str], None] = print) -> Path:
    """Run the experiment's runs (``only`` some of them: a part), each by ``measure(run, spec, run_dir)``, which resumes a
    finished or interrupted run, then write the summary and plots of every finished run. A run's provenance names the
    commit that made its trials: a replay that adds or changes none keeps the provenance it had."""
    names = [r.name for r in exp.runs]
    unknown = sorted(set(only or []) - set(names))
    if unknown:
        raise ExperimentError(f"--only names runs that are not in the experiment {exp.name!r}: {unknown}; its runs: {names}")
    loaded = _git_commit()  # the code this process runs is the code it loaded, whatever is committed while it runs
    for run in exp.runs:
        if only and run.name not in only:
            continue
        log(f"== {exp.name} / {run.name}")
        before = _trials(out / run.name)
        try:
            measure(run, resolve(exp, run, out), out / run.name)
        except BaselineError as e:
            log(f"run {run.name}: no usable threshold, recorded as no_baseline: {e}")
        if before is not None and before == _trials(out / run.name) and (out / run.name / PROVENANCE).is_file():
            log(f"run {run.name}: no new trials; its provenance still names the commit that made them")
            continue
        head = _git_commit()
        provenance = {"commit": loaded, "command": command, "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
                      **({"head_at_finish": head} if head != loaded else {})}
        (out / run.name / PROVENANCE).write_text(json.dumps(provenance, indent=2) + "\n")
    return summarise(exp, out, command=command)


def _trials(run_dir: Path) -> list[Any] | None:
    """The trials a run's result file records, or None before it has one (or where it is unreadable: the run remakes it)."""
    try:
        return json.loads((run_dir / RESULT_NAME).read_text()).get("trials", [])
    except (OSError, ValueError, AttributeError):
        return None


def _git_commit(code: Path = Path(__file__).resolve().parent) -> str | None:
    """The commit of the code that is running (not of the working directory), '+dirty' if its tracked files have changes
    outside experiments/results/ (results another run is writing are outputs, not code)."""
    here = ["git", "-C", str(code)]
    try:
        head = subprocess.run([*here, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run([*here, "status", "--porcelain", "--untracked-files=no", "--", ":/", f":(top,exclude){RESULTS}"],
                               capture_output=True, text=True).stdout.strip()
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
        "full_steps": b.get("full_steps"), "full_lr": b.get("full_lr"),
        "select": b.get("select"),
        "seeds": r.get("seeds"), "mode": r.get("mode"), "baseline": r["baseline"], "baseline_source": r["baseline_source"],
        "baseline_values": r.get("baseline_values"), "threshold": r["threshold"], "chance": r.get("chance"),
        "d90": r["d90"], "crossing": r["crossing"], "bracket": r.get("bracket"), "interval": r.get("interval"),
        "status": r["status"], "monotone": r.get("monotone"), "knife_edge": knife_edge(r), "gap_at_d90": _gap_at(r, r["d90"]),
        "bound_sqrt_d90_over_n": r.get("bound_sqrt_d90_over_n"), "trials": len(r["trials"]),
        "compute_s": r["compute_s"], "wall_s": r.get("wall_s"), "threads": r.get("threads"), **_cost_fields(r),
        **({"model_weights": r["model_weights"]} if r.get("model_weights") else {}),
        **_checkpoint_fields(r["model"]), **(label or {}),
    }


def _cost_fields(r: dict[str, Any]) -> dict[str, Any]:
    """The search and evaluation settings a d90 was measured with and what it cost: in full fine-tunings of its own, and
    the mean full fine-tuning trial's seconds (so that runs of other settings can be put in one unit); counted as the
    search counts them in d90.json, each trial once."""
    b = r.get("budget") or {}
    once = {json.dumps(t["config"], sort_keys=True): t for t in r["trials"]}  # a trial listed under two roles ran once
    trials = [(t["config"].get("method"), t.get("wall_s") or 0.0) for t in once.values()]
    return {"seed_rule": r.get("seed_rule", "all"), "seed_noise": seed_noise_of(r), "stop_unresolved": stop_unresolved_of(r), "placement": r.get("placement", "bisect"), "select_examples": b.get("select_examples"), "gap_examples": b.get("gap_examples"),
            "cost_full_trials": cost_in_full_trials(trials), "full_trial_s": full_trial_s(trials)}


def _checkpoint_fields(model: str) -> dict[str, Any]:
    """The pre-training step and held-out MLM loss of a checkpoint made by `intrinsic-dim pretrain` (else nothing)."""
    from intrinsic_dim.pretrain import checkpoint_info

    info = checkpoint_info(model) if Path(model).is_dir() else None
    if not info:
        return {}
    return {"step": info["step"], "mlm_loss": info["eval_loss"], "params": info["params"], "non_embedding_params": info["non_embedding_params"]}


CHECKPOINT_KEYS = ("step", "mlm_loss", "params", "non_embedding_params")
PLANNED = ("not run", "no_baseline")
"""Fields a summary row takes from a pre-training checkpoint; kept from the earlier summary when the checkpoint is not here."""


def _keep_checkpoint_fields(row: dict[str, Any], earlier: dict[str, Any]) -> dict[str, Any]:
    """The row with its earlier summary row's checkpoint fields: where both rows are of a finished run, those win (they
    describe the checkpoint the run was measured on, and pre-training run again at the same path on a machine of other
    float kernels differs in the last bits); otherwise they fill in what the row lacks (a fresh clone has no runs/)."""
    kept = {k: earlier[k] for k in CHECKPOINT_KEYS if k in earlier}
    if row.get("status") not in PLANNED and earlier.get("status", "not run") not in PLANNED:
        return row | kept
    return kept | row


def _planned_row(run: ExperimentRun, status: str) -> dict[str, Any]:
    """The summary row of a run without a d90: what it was asked to measure, so a reader can filter it like the others."""
    d = run.spec.data
    return {"run": run.name, "model": d.model, "task": d.task, "method": run.spec.trial.method, "status": status,
            **_checkpoint_fields(d.model), **run.label}


def summarise(exp: Experiment, out: Path, command: str = "") -> Path:
    """Write ``summary.json`` (one row per run; unfinished runs as status 'not run'), ``report.md`` and the plots."""
    out.mkdir(parents=True, exist_ok=True)
    rows, results = [], {}
    commit = _git_commit()
    earlier = {r.get("run"): r for r in json.loads((out / SUMMARY).read_text())} if (out / SUMMARY).is_file() else {}
    for run in exp.runs:
        run_dir = out / run.name
        outcome = json.loads((run_dir / RESULT_NAME).read_text()) if (run_dir / RESULT_NAME).is_file() else {}
        if outcome.get("status") == "no_baseline":
            rows.append(_planned_row(run, "no_baseline") | {"reason": outcome.get("reason")})
        elif outcome:
            results[run.name] = r = load_result(run_dir) | {"name": run.name}
            made = json.loads((run_dir / PROVENANCE).read_text()) if (run_dir / PROVENANCE).is_file() else {}
            rows.append(summary_row(run.name, r, run.label) | {"command": made.get("command", command),
                                                                          "commit": made.get("commit", commit)})
        else:
            rows.append(_planned_row(run, "not run"))
        rows[-1] = _keep_checkpoint_fields(rows[-1], earlier.get(run.name, {}))
    (out / SUMMARY).write_text(json.dumps(rows, indent=2, default=float) + "\n")
    for plot in exp.plots or [{"name": "curves", "runs": [r.name for r in exp.runs]}]:
        if "x" in plot:
            (plot_field_against if "y" in plot else plot_d90_against)(rows, plot, out / plot["name"])
            continue
        chosen = [results[n] for n in plot.get("runs", results) if n in results]
        if chosen:
            plot_curves(chosen, out / f"{plot['name']}.png", title=plot.get("title"), x=plot.get("axis", "d"),
                        missing=[n for n in plot.get("runs", []) if n not in results])
    if results:
        plot_gap(list(results.values()), out / "generalisation.png")
        plot_gap_against_bound(rows, out / "generalisation_vs_d90.png")
        write_report(list(results.values()), out / "report.md", plot_name=f"{(exp.plots or [{'name': 'curves'}])[0]['name']}.png")
    return out / SUMMARY
