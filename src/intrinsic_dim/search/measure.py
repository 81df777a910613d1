"""measure_d90: the phases of a measurement (range of d, baseline and threshold, optional rate searches,
the search or curve) and the D90Result built from the points. Method: docs/search.md."""

from __future__ import annotations

import math
import time
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import torch

from intrinsic_dim.executors import Executor, InProcess
from intrinsic_dim.fingerprint import KEY as FINGERPRINT
from intrinsic_dim.groups import subspace_extent
from intrinsic_dim.results import TrialResult
from intrinsic_dim.search.result import D90Result, method_of, trial_entry
from intrinsic_dim.search.stats import (
    MIN_SEEDS_FOR_INTERVAL, BaselineError, bootstrap_interval, check_baseline, cost_in_full_trials, crossing, mean, pass_margin,
    threshold,
)
from intrinsic_dim.search.sweep import Sweep, rate_search, reuse_stores, search_grid, shared_stores
from intrinsic_dim.spec import MeasureSpec, SearchSpec
from intrinsic_dim.store import RunLock, Store
from intrinsic_dim.tasks import Task, compute_metrics
from intrinsic_dim.train import SUBSPACE_REF_D, SUBSPACE_REF_LR, ModelFactory, TrialConfig, run_trial

if TYPE_CHECKING:
    from intrinsic_dim.tracking import Tracker

DEFAULT_DIMS = (10, 30, 100, 300, 1000, 3000, 10000, 30000)
DEFAULT_RANKS = (1, 2, 4, 8, 16, 32, 64)
"""The coarse grid of LoRA ranks (``method lora``: the search variable d is the rank r)."""

Runner = Callable[[TrialConfig], TrialResult]


def trial_templates(spec: MeasureSpec) -> tuple[TrialConfig, TrialConfig]:
    """The subspace (or LoRA) trial and the full fine-tuning trial a spec describes (d and seed filled in later)."""
    t, lora = spec.trial, spec.trial.method == "lora"
    trial = TrialConfig(
        method="lora" if lora else "subspace", lora_alpha=t.lora_alpha if lora else None, lora_targets=t.lora_targets if lora else None,
        said=spec.said, projection=t.projection, layout=t.layout, groups=t.groups, normalisation=t.normalisation,
        dense_max_elements=t.dense_max_elements, lr=t.lr, epochs=t.epochs, max_steps=t.max_steps, batch_size=t.batch_size,
        eval_every=t.eval_every, select=t.select, select_examples=t.select_examples, gap_examples=t.gap_examples,
        autocast=t.autocast, base_quant=t.base_quant,
    )
    return trial, replace(trial, method="full", base_quant=None, lr=spec.full.full_lr, epochs=spec.full.full_epochs or t.epochs)


def spec_factory(spec: MeasureSpec, task: Task | None = None) -> tuple[Task, ModelFactory]:
    """The task a spec names (loaded unless given; a bad task is refused here) and a function giving a fresh model for a seed."""
    from intrinsic_dim.models import load_model
    from intrinsic_dim.tasks import load_task

    d = spec.data
    task = task or load_task(d.task, seed=0, **d.task_options())

    def factory(seed: int):
        return load_model(d.model, task, seed=seed, max_length=d.max_length)

    return task, factory


def measure_d90(
    spec: MeasureSpec | ModelFactory | None,
    task: Task | None = None,
    *,
    run_dir: str | Path | None = None,
    run_config: dict[str, Any] | None = None,
    model_name: str | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
    runner: Runner | None = None,
    executor: Executor | None = None,
    tracker: Tracker | None = None,
    shared: Sequence[str | Path] = (),
    **keywords: Any,
) -> D90Result:
    """Measure d90 (or d_fraction) as ``spec`` (a :class:`~intrinsic_dim.spec.MeasureSpec`) describes.

    ``measure_d90(spec, run_dir=...)`` loads the spec's model and task itself. The keyword form
    ``measure_d90(model_factory, task, dims=..., seeds=..., trial=TrialConfig(...), full_trial=...,
    lr_candidates=..., full_lr_candidates=..., reuse=..., wait=...)`` takes a model factory (a seed -> fresh
    model function) and a loaded task, with the search settings of :class:`~intrinsic_dim.spec.SearchSpec`.
    With ``run_dir`` every trial goes to its SQLite store as it finishes and a rerun resumes; one process at
    a time holds a run directory. ``runner`` runs one trial here (default :func:`run_trial`; a synthetic
    objective in tests); ``executor`` runs batches of independent trials elsewhere; ``tracker`` receives
    every trial and the summary. ``shared`` names sibling run directories whose full fine-tuning trials of the same
    run configuration stand in for this run's (they read no subspace setting).
    """
    if isinstance(spec, MeasureSpec):
        if keywords:
            raise TypeError(f"pass either a MeasureSpec or keywords, not both (got {sorted(keywords)})")
        search, (trial, full) = spec.search, trial_templates(spec)
        task, factory = spec_factory(spec, task)
        reuse, wait = spec.run.reuse, spec.run.wait
        model_name = model_name or spec.data.model
        run_config = run_config if run_config is not None else spec.run_config(torch.get_num_threads())
    else:
        factory, search, trial, full, reuse, wait = spec, *_keyword_form(keywords)
    if task is None:
        raise TypeError("measure_d90 needs a task beside a model factory")
    return _run(factory, task, search, trial, full, reuse, wait, run_dir, run_config or {}, model_name or "model", progress, log,
                runner, executor, tracker, shared)


_KEYWORDS = {"dims", "seeds", "fraction", "baseline", "baseline_seeds", "precision", "curve", "seed_rule", "seed_noise",
             "stop_unresolved", "placement"}


def _keyword_form(kw: dict[str, Any]) -> tuple[SearchSpec, TrialConfig, TrialConfig, Sequence[str | Path], bool]:
    """The search settings, trial templates, reused runs and wait flag of the keyword form (checked by SearchSpec)."""
    unknown = set(kw) - _KEYWORDS - {"trial", "full_trial", "lr_candidates", "lr_search_d", "full_lr_candidates", "reuse", "wait"}
    if unknown:
        raise TypeError(f"measure_d90 got unexpected keywords {sorted(unknown)}")
    search = SearchSpec(**{k: tuple(v) if k == "dims" and v is not None else v for k, v in kw.items() if k in _KEYWORDS},
                        lr_search=tuple(kw["lr_candidates"]) if kw.get("lr_candidates") else None,
                        lr_search_d=kw.get("lr_search_d", 1000),
                        full_lr_search=tuple(kw["full_lr_candidates"]) if kw.get("full_lr_candidates") else None)
    if search.full_lr_search and search.baseline is not None:
        raise ValueError("a full fine-tuning rate search needs a measured baseline: drop the given baseline "
                         "(--baseline) or the search of the full fine-tuning rate (--full-lr-search)")
    given = kw.get("trial")
    trial = replace(given or TrialConfig(), method="lora" if given is not None and given.method == "lora" else "subspace")
    full = replace(kw.get("full_trial") or TrialConfig(method="full"), method="full", d=None)
    return search, trial, full, kw.get("reuse") or (), bool(kw.get("wait", False))


def _run(factory: ModelFactory | None, task: Task, search: SearchSpec, trial: TrialConfig, full: TrialConfig,
         reuse: Sequence[str | Path], wait: bool, run_dir: str | Path | None, run_config: dict[str, Any], model_name: str,
         progress: bool, log: Callable[[str], None], runner: Runner | None, executor: Executor | None,
         tracker: Tracker | None, shared: Sequence[str | Path] = ()) -> D90Result:
    """The measurement inside its run directory's lock and stores."""
    start = time.perf_counter()
    lock = RunLock(run_dir, wait=wait) if run_dir is not None else None
    store = Store(run_dir) if run_dir is not None else None
    others: list[Store] = []
    siblings: list[Store] = []
    try:
        if store is not None:
            store.check_run_config(run_config)
        others = reuse_stores(reuse, run_config)
        siblings = shared_stores(shared, run_config)
        executor = executor or InProcess(runner or (lambda cfg: run_trial(factory, task, cfg, progress=progress)))
        s = Sweep(executor, task, trial, store, log, others, tracker, sequential=search.seed_rule == "sequential",
                  baseline_noise=search.seed_noise == "baseline+points", stop_unresolved=search.stop_unresolved,
                  progress=progress, shared=siblings)
        try:
            result = replace(_measure(s, factory, task, search, full, model_name, start), model_weights=run_config.get(FINGERPRINT))
        finally:
            s.bar.close()
        if tracker is not None:
            tracker.log_summary(result.to_dict())
        return result
    finally:
        for other in others + siblings:
            other.close()
        if store is not None:
            store.close()
        if lock is not None:
            lock.release()


def chance_level(task: Task) -> float | None:
    """The metric of always predicting the training split's most frequent class, on the report split (None for a
    regression or a loss: no constant prediction sets a floor there)."""
    if task.is_regression or task.lower_is_better:
        return None
    majority = int(torch.bincount(task.train.labels).argmax())
    labels = task.report_split.labels
    return compute_metrics(task, torch.full_like(labels, majority), labels)[task.metric]


def d_range(model: torch.nn.Module, trial: TrialConfig) -> tuple[int, float]:
    """The smallest and largest d a trial can take on ``model``: SAID needs d > its number of groups m,
    and z (d - m numbers) cannot exceed D, the number of projected weights (tied weights counted once)."""
    m, D = subspace_extent(model, trial.said, trial.groups)
    return m + 1, D + m


@dataclass
class _Baseline:
    """What the baseline phase settles: the value and where it came from, the threshold, and the full trial used."""

    value: float
    source: str
    values: list[float]
    base_value: float | None
    tau: float
    full: TrialConfig
    full_lr_policy: str


def _baseline_phase(s: Sweep, task: Task, q: SearchSpec, full: TrialConfig, chance: float | None) -> _Baseline:
    """The full fine-tuning rate (searched or fixed), the baseline's seeds (or the given value) and the threshold."""
    lower = task.lower_is_better
    full_lr_policy = f"AdamW {full.resolved_lr(task.kind):g}" + (" (fixed)" if full.lr is not None else "")
    if q.full_lr_search:
        best = rate_search(s, "full_lr_search", [replace(full, seed=0, lr=lr) for lr in q.full_lr_search], lower, "full fine-tuning")
        full = replace(full, lr=best)
        full_lr_policy = f"AdamW {best:g} (best on validation of {', '.join(f'{k:g}' for k in q.full_lr_search)}, seed 0)"
    values: list[float] = []
    if q.baseline is None:
        s.bar.expect(q.baseline_seeds or q.seeds)
        base = s.run_many("baseline", [replace(full, seed=k) for k in range(q.baseline_seeds or q.seeds)])
        values = [r.metric for r in base if r.ok]
        if not values:
            raise BaselineError(f"every full fine-tuning baseline trial failed: {[r.error for r in base]}")
        baseline, source = mean(values), f"full fine-tuning, mean of {len(values)} seed(s)"
    else:
        baseline, source = q.baseline, "given"
    base_value = None
    if lower:
        start_run = s.run_many("base", [TrialConfig(method="base", seed=0, eval_batch_size=s.trial.eval_batch_size)])[0]
        base_value = start_run.metric if start_run.ok else float("nan")
    try:
        check_baseline(baseline, q.fraction, chance, source, base_value)
    except BaselineError as e:
        if not q.baseline_only:  # a study of the baseline wants its value, and a note, where a d90 would measure nothing
            raise
        s.notes.append(f"no d90 could be measured against this baseline: {e}")
    tau = threshold(q.fraction, baseline, base_value, lower)
    s.tau, s.baseline_values = tau, values
    rule = (f"threshold base {base_value:.4f} - {q.fraction:g} x (base - baseline) = {tau:.4f} (lower is better)" if lower
            else f"threshold {q.fraction:g} x baseline = {tau:.4f}")
    s.log(f"baseline {task.metric} = {baseline:.4f} ({source}); {rule}" + (f"; chance {chance:.4f}" if chance is not None else ""))
    return _Baseline(baseline, source, values, base_value, tau, full, full_lr_policy)


def _rate_phase(s: Sweep, task: Task, q: SearchSpec) -> str:
    """The subspace rate: searched at ``lr_search_d`` (the sweep's trial template then uses it) or the default rule; its policy."""
    trial = s.trial
    if trial.method == "lora":
        alpha = "2r" if trial.lora_alpha is None else f"{trial.lora_alpha:g}"
        policy = f"LoRA (alpha {alpha}), Adam {trial.resolved_lr(task.kind):g}" + (" (fixed)" if trial.lr is not None else "")
    else:
        policy = f"Adam {SUBSPACE_REF_LR:g} x sqrt({SUBSPACE_REF_D} / d)" if trial.lr is None else f"Adam {trial.lr:g} (fixed)"
    if q.lr_search:
        best = rate_search(s, "lr_search", [replace(trial, d=q.lr_search_d, seed=0, lr=lr) for lr in q.lr_search],
                           task.lower_is_better, f"d={q.lr_search_d}")
        s.trial = replace(trial, lr=best)
        policy = f"Adam {best:g} (best on validation of {', '.join(f'{k:g}' for k in q.lr_search)} at d={q.lr_search_d})"
    return policy


def _measure(s: Sweep, model_factory: ModelFactory | None, task: Task, q: SearchSpec, full: TrialConfig, model_name: str,
             start: float) -> D90Result:
    """The range of d, the baseline and threshold, the optional rate search, the search or curve, and the result."""
    chance = chance_level(task)
    trial = s.trial
    min_d, max_d = d_range(model_factory(0).model, trial) if model_factory is not None and trial.method == "subspace" else (1, math.inf)
    wanted = sorted(set(q.dims or [])) + ([q.lr_search_d] if q.lr_search else [])
    too_big = [d for d in wanted if d > max_d]
    if too_big:
        raise ValueError(f"d = {too_big} exceeds what the model can take: at most {max_d:,} trained numbers "
                         f"(D = {max_d - (min_d - 1):,} projected weights{' plus the SAID scales' if trial.said else ''}); "
                         "pass smaller --dims / --lr-search-d")
    b = _baseline_phase(s, task, q, full, chance)
    if q.baseline_only:
        return _result(s, task, q, b, full, "no subspace trial", chance, model_name, start)
    lr_policy = _rate_phase(s, task, q)
    trial = s.trial
    grid = sorted(d for d in set(q.dims or (DEFAULT_RANKS if trial.method == "lora" else DEFAULT_DIMS)) if min_d <= d <= max_d)
    if not grid:
        raise ValueError(f"no dimension to evaluate: SAID needs d > {min_d - 1} (its number of groups); pass larger --dims")
    s.bar.expect(len(grid) * q.seeds if q.curve else min(len(grid), 3) * q.seeds)
    if q.curve:
        for d in grid:
            s.point(d, q.seeds, b.tau)
    else:
        search_grid(s, grid, q.seeds, b.tau, q.precision, min_d, q.placement)
    return _result(s, task, q, b, full, lr_policy, chance, model_name, start)


def _result(s: Sweep, task: Task, q: SearchSpec, b: _Baseline, full_template: TrialConfig, lr_policy: str, chance: float | None,
            model_name: str, start: float) -> D90Result:
    """d90, bracket, crossing, interval, status and notes from the evaluated points."""
    seeds, tau, lower, trial = q.seeds, b.tau, task.lower_is_better, s.trial
    ds = sorted(s.results)
    pts = [dict(d=d, **s.point(d, seeds, tau)) for d in ds]
    passed = [p["passed"] for p in pts]
    d90 = next((p["d"] for p in pts if p["passed"]), None)
    monotone = all(not (passed[i] and not passed[j]) for i in range(len(pts)) for j in range(i + 1, len(pts)))
    cross = crossing(ds, [p["mean"] for p in pts], passed, tau, lower) if d90 else None
    below = [d for d in ds if d90 and d < d90]
    bracket = (max(below) if below else None, d90) if d90 else ((ds[-1], None) if ds else None)
    interval = None
    noise = s.noise() if q.seed_rule == "sequential" else None  # the rule's own noise estimate, for points of one seed
    if d90 and seeds >= MIN_SEEDS_FOR_INTERVAL:
        lo, hi = bootstrap_interval(s.results, ds, tau, seeds, lower=lower, baseline_values=b.values, fraction=q.fraction,
                                    base_value=b.base_value, noise=noise)
        interval = (min(lo, bracket[0] or lo), None if hi is None else max(hi, float(d90)))
    status = "found" if d90 and d90 != ds[0] else ("at_or_below_smallest" if d90 else "above_largest" if ds else "baseline_only")
    notes = list(task.notes) + s.notes
    margin = margin_se = None
    if d90:
        margin, margin_se = pass_margin([r.metric for r in s.results[d90] if r.ok], tau, b.values, q.fraction, lower, noise)
    knife_edge = margin is not None and margin < margin_se
    if knife_edge:
        notes.append(f"knife-edge: d = {d90:,} passes tau by {margin:.4f}, less than that margin's standard error {margin_se:.4f} "
                     "(point and baseline seeds): quote the interval, not d90 alone")
    size = "r" if trial.method == "lora" else "d"  # the LoRA rank, or the subspace dimension
    if ds and not any(p["n_ok"] for p in pts):
        status = "no_successful_trial"
        notes.append("every subspace trial diverged or failed (see the trials' errors): try a lower --lr")
    if not monotone:
        notes.append("the curve is not monotone in d: a failing point lies above a passing one; more seeds would help")
    if status == "above_largest":
        notes.append(f"no evaluated {size} reached the threshold; {size}90 > {ds[-1]} (extend --dims or train longer)")
    if status == "at_or_below_smallest":
        notes.append(f"the smallest evaluated {size} = {ds[0]} already passes; {size}90 <= {ds[0]}")
    if d90 and seeds < MIN_SEEDS_FOR_INTERVAL:
        notes.append(f"{seeds} seed(s) per point: no interval is given (it needs at least {MIN_SEEDS_FOR_INTERVAL}); "
                     "the bracket shows the grid resolution only")
    machines = Counter(r.machine for _, r in s.all if r.machine)
    if len(machines) > 1:
        notes.append(f"the trials ran on {len(machines)} machines ({'; '.join(f'{n} on {m}' for m, n in machines.most_common())}): "
                     "their float32 digits follow the hardware, so a bit-exact rerun of a trial needs the machine its row names")
    n_train = len(task.train)
    budget = {
        "n_train": n_train, "n_val": len(task.eval), "n_test": len(task.report_split),
        "steps_per_trial": trial.total_steps(n_train), "epochs": trial.epochs, "max_steps": trial.max_steps,
        "batch_size": trial.batch_size, "select": trial.select, "lr_policy": lr_policy,
        **({"select_examples": trial.select_examples} if trial.select_examples is not None else {}),
        **({"gap_examples": trial.gap_examples} if trial.gap_examples is not None else {}),
        "full_lr": b.full.lr, "full_lr_policy": b.full_lr_policy if b.values else None,
        "full_steps": full_template.total_steps(n_train),
    }
    return D90Result(
        task=task.name, model=model_name, metric=task.metric, fraction=q.fraction, baseline=b.value,
        baseline_source=b.source, threshold=tau, d90=d90, crossing=cross, bracket=bracket, interval=interval,
        status=status, points=pts, trials=[trial_entry(role, r) for role, r in s.all], n_train=n_train,
        lr=trial.lr, wall_s=time.perf_counter() - start, compute_s=sum(r.wall_s for r in s.done.values()),
        mode="curve" if q.curve else "search", seeds=seeds, seed_rule=q.seed_rule,
        seed_noise=q.seed_noise if q.seed_rule == "sequential" else None,
        stop_unresolved=q.stop_unresolved if q.seed_rule == "sequential" else None, placement=q.placement, baseline_values=b.values, chance=chance,
        budget=budget, monotone=monotone, said=trial.said, projection=trial.projection, layout=trial.layout,
        normalisation=trial.normalisation, groups=trial.groups, threads=torch.get_num_threads(), notes=notes,
        method=method_of(trial), lower_is_better=lower, base_value=b.base_value,
        trainable_params=next((p["trainable"] for p in pts if p["d"] == d90), None),
        train_sample=next((r.train_sample for _, r in s.all if r.train_sample), ""),
        knife_edge=knife_edge, margin=margin, margin_se=margin_se, cost_full_trials=_cost(s),
    )


def _cost(s: Sweep) -> float | None:
    """Every trial's wall time over the mean full fine-tuning trial's: what the d90 cost in full fine-tunings
    (None without a measured baseline trial)."""
    return cost_in_full_trials([(r.config.get("method"), r.wall_s) for r in s.done.values()])
