"""measure_d90: the smallest subspace dimension reaching a fraction of full fine-tuning.

Method (docs/search.md). A baseline (full fine-tuning averaged over seeds, or a given value) sets the
threshold tau = fraction * baseline. Every trial trains for its whole budget, selects its checkpoint
on the validation split and reports on the test split, so no trial's number is cut short at tau or
chosen on the data it is reported on. Points are means over seeds of those reported numbers.

Search mode: a coarse log-spaced pass evaluates dimensions in increasing order until the first
point whose mean reaches tau, plus the next grid point above it (a check that the curve stays above
tau), stepping down below the grid if its first point already passes; then bisection in log d
between the last failing and the first passing point narrows the bracket to the requested relative
precision. Curve mode evaluates every grid point and takes d90 from them (for figures).

d90 is the smallest evaluated d whose mean passes; the bracket is (largest failing d below it, d90];
the crossing interpolates log-linearly inside it; the interval is the union of the bracket (grid
resolution) and a bootstrap percentile interval of the crossing over seeds (seed noise), given only
with at least three seeds. A diverged trial counts against its point; a failing point above a passing
one is flagged as a non-monotone curve.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import torch

from intrinsic_dim.executors import Executor, InProcess
from intrinsic_dim.groups import num_groups
from intrinsic_dim.results import TrialResult
from intrinsic_dim.store import DB_NAME, RunConfigMismatch, RunLock, Store
from intrinsic_dim.tasks import Task, compute_metrics
from intrinsic_dim.train import NOT_FULL, SUBSPACE_REF_D, SUBSPACE_REF_LR, ModelFactory, TrialConfig, run_trial

if TYPE_CHECKING:
    from intrinsic_dim.tracking import Tracker

DEFAULT_DIMS = (10, 30, 100, 300, 1000, 3000, 10000, 30000)
DEFAULT_RANKS = (1, 2, 4, 8, 16, 32, 64)
"""The coarse grid of LoRA ranks (``--method lora``: the search variable d is the rank r)."""
STEP_DOWN = 3
MIN_SEEDS_FOR_INTERVAL = 3


class BaselineError(ValueError):
    """The baseline cannot define a threshold (not finite, or a threshold no better than chance)."""


@dataclass
class D90Result:
    """The outcome of a d90 measurement; ``to_dict`` is what ``d90.json`` holds."""

    task: str
    model: str
    metric: str
    fraction: float
    baseline: float
    baseline_source: str
    threshold: float
    d90: int | None
    crossing: float | None
    bracket: tuple[int | None, int | None]
    interval: tuple[float, float | None] | None
    status: str
    points: list[dict[str, Any]]
    trials: list[dict[str, Any]]
    n_train: int
    lr: float | None
    wall_s: float
    compute_s: float
    mode: str = "search"
    seeds: int = 1
    baseline_values: list[float] = field(default_factory=list)
    chance: float | None = None
    budget: dict[str, Any] = field(default_factory=dict)
    monotone: bool = True
    said: bool = False
    projection: str = "fastfood"
    layout: str = "stacked"
    normalisation: str = "released"
    groups: str = "tensor"
    threads: int | None = None
    notes: list[str] = field(default_factory=list)
    method: str = "said"
    lower_is_better: bool = False
    base_value: float | None = None
    trainable_params: int | None = None
    train_sample: str = ""

    @property
    def bound(self) -> float | None:
        """The generalisation-bound term sqrt(d90 / n_train) of Aghajanyan et al."""
        return math.sqrt(self.d90 / self.n_train) if self.d90 and self.n_train else None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"bound_sqrt_d90_over_n": self.bound}

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(), indent=2, default=float) + "\n")
        return path


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def _point_stats(results: Sequence[TrialResult]) -> dict[str, Any]:
    ok = [r for r in results if r.ok]
    vals = [r.metric for r in ok]
    std = float(torch.tensor(vals, dtype=torch.float64).std().item()) if len(vals) > 1 else 0.0
    return {
        "values": [r.metric for r in results], "val_values": [r.val_metric for r in results],
        "train_values": [r.train_metric for r in results], "mean": _mean(vals), "std": std,
        "train_mean": _mean([r.train_metric for r in ok]), "n_ok": len(ok), "all_ok": len(ok) == len(results),
        "trainable": max((r.trainable for r in results), default=0),
    }


def threshold(fraction: float, baseline: float, start: float | None = None, lower_is_better: bool = False) -> float:
    """tau = fraction x baseline for a higher-is-better metric; for a lower-is-better one (a loss) the same
    fraction of full fine-tuning's improvement over the base model: start - fraction x (start - baseline)."""
    if not lower_is_better:
        return fraction * baseline
    if start is None:
        raise ValueError("a lower-is-better metric needs the base model's value to define the threshold")
    return start - fraction * (start - baseline)


def passes(value: float, tau: float, lower_is_better: bool = False) -> bool:
    """True when ``value`` reaches the threshold in the metric's direction (<= tau for a loss, >= tau otherwise)."""
    return value <= tau if lower_is_better else value >= tau


def _crossing(ds: Sequence[int], means: Sequence[float], passed: Sequence[bool], tau: float, lower: bool = False) -> float:
    """Log-linear interpolation of where the curve first crosses tau (inf if it never does)."""
    for i, (d, m, p) in enumerate(zip(ds, means, passed)):
        if p:
            if i == 0:
                return float(d)
            d0, m0 = ds[i - 1], means[i - 1]
            if not math.isfinite(m0) or (m >= m0 if lower else m <= m0):
                return float(d)
            t = (tau - m0) / (m - m0)
            return math.exp(math.log(d0) + min(1.0, max(0.0, t)) * (math.log(d) - math.log(d0)))
    return math.inf


def chance_level(task: Task) -> float | None:
    """The metric of always predicting the training split's most frequent class, on the report split (None for a
    regression or a loss: no constant prediction sets a floor there)."""
    if task.is_regression or task.lower_is_better:
        return None
    majority = int(torch.bincount(task.train.labels).argmax())
    labels = task.report_split.labels
    return compute_metrics(task, torch.full_like(labels, majority), labels)[task.metric]


Runner = Callable[[TrialConfig], TrialResult]


class _Search:
    def __init__(self, executor: Executor, task: Task, trial: TrialConfig, store: Store | None, log: Callable[[str], None],
                 reuse: Sequence[Store] = (), tracker: Tracker | None = None):
        self.executor, self.task, self.trial, self.store, self.log = executor, task, trial, store, log
        self.reuse, self.tracker = reuse, tracker
        self.lower = task.lower_is_better
        self.results: dict[int, list[TrialResult]] = {}
        self.all: list[tuple[str, TrialResult]] = []
        self.done: dict[str, TrialResult] = {}

    def _cached(self, role: str, cfg: TrialConfig) -> tuple[TrialResult, str] | None:
        """A finished trial of this configuration: run earlier in this sweep under another role (a rate candidate
        that is also a baseline seed), from this run's store, or copied in from a reused one."""
        key = cfg.to_dict()
        if _key(key) in self.done:
            return self.done[_key(key)], "run above"
        row = self.store.get(key) if self.store else None
        if row is not None:
            return TrialResult.from_row(row), "resumed"
        for other in self.reuse:
            row = other.get_ignoring(key, NOT_FULL) if cfg.method == "full" else other.get(key)
            if row is not None:
                res = replace(TrialResult.from_row(row), config=key)
                if self.store:
                    self.store.put(role, res)
                return res, f"reused from {other.run_dir.name}"
        return None

    def run_many(self, role: str, cfgs: list[TrialConfig]) -> list[TrialResult]:
        """Results of ``cfgs`` in order: stored ones read back, the others run concurrently by the
        executor and written to the store as each finishes (this process is the only writer)."""
        out: list[TrialResult | None] = [None] * len(cfgs)
        todo = []
        for i, cfg in enumerate(cfgs):
            cached = self._cached(role, cfg)
            if cached is not None:
                out[i] = cached[0]
                self._log(role, cfg, *cached)
                self._track(role, cached[0])
            else:
                todo.append(i)

        def done(k: int, res: TrialResult) -> None:
            i = todo[k]
            if self.store:
                self.store.put(role, res)
            out[i] = res
            self._log(role, cfgs[i], res, f"{res.wall_s:.0f}s")
            self._track(role, res)

        if todo:
            self.executor.run_many([cfgs[i] for i in todo], done)
        self.all += [(role, r) for r in out]
        self.done |= {_key(r.config): r for r in out}
        return out  # type: ignore[return-value]

    def _track(self, role: str, res: TrialResult) -> None:
        if self.tracker is not None:
            self.tracker.log_trial(role, res)

    def _log(self, role: str, cfg: TrialConfig, res: TrialResult, tag: str) -> None:
        self.log(f"  {role:9s} {cfg.method:8s} d={cfg.d!s:>6} seed={cfg.seed} lr={res.lr:.3g}: test {self.task.metric}="
                 f"{res.metric:.4f} (validation {res.val_metric:.4f}) [{res.status}, {tag}]")

    def point(self, d: int, seeds: int, tau: float) -> dict[str, Any]:
        if d not in self.results:
            self.results[d] = self.run_many("search", [replace(self.trial, d=d, seed=s) for s in range(seeds)])
        stats = _point_stats(self.results[d])
        stats["passed"] = stats["all_ok"] and passes(stats["mean"], tau, self.lower)
        return stats


@dataclass(frozen=True)
class _Question:
    """What a sweep measures, checked on construction: the grid, seeds, fraction and baseline, the search's
    precision or a full curve, the trial templates and optional learning-rate searches (subspace, full fine-tuning)."""

    dims: Sequence[int] | None
    seeds: int
    fraction: float
    baseline: float | None
    baseline_seeds: int | None
    precision: float
    curve: bool
    full_trial: TrialConfig | None
    lr_candidates: Sequence[float] | None
    lr_search_d: int
    full_lr_candidates: Sequence[float] | None = None

    def __post_init__(self) -> None:
        f, seeds, precision, dims = self.fraction, self.seeds, self.precision, self.dims
        if self.full_lr_candidates and self.baseline is not None:
            raise ValueError("a full fine-tuning rate search needs a measured baseline: drop the given baseline "
                             "(--baseline) or the search of the full fine-tuning rate (--full-lr-search)")
        if not (isinstance(f, (int, float)) and not isinstance(f, bool) and 0 < f <= 1.5):
            raise ValueError(f"fraction must be a number in (0, 1.5], got {f!r}")
        if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
            raise ValueError(f"seeds must be a positive integer, got {seeds!r}")
        if not (isinstance(precision, (int, float)) and math.isfinite(precision) and precision > 0):
            raise ValueError(f"precision must be a positive number, got {precision!r}")
        if dims is not None and (not dims or any(isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in dims)):
            raise ValueError(f"dims must be positive integers, got {dims}")


def _check_baseline(baseline: float, fraction: float, chance: float | None, source: str, start: float | None = None) -> None:
    """Refuse a baseline whose threshold a constant predictor would already pass, or (for a loss, ``start`` the
    base model's) one that does not improve on the base model: d90 would measure nothing."""
    if not math.isfinite(baseline):
        raise BaselineError(f"the baseline ({source}) is {baseline}: it must be a finite number")
    if start is not None and not (math.isfinite(start) and baseline < start):
        raise BaselineError(
            f"the baseline ({source}) is {baseline:.4f}, no lower than the base model's {start:.4f}: full fine-tuning "
            "did not improve the loss, so no fraction of its improvement can be measured; train the baseline longer "
            "(--full-epochs, --full-lr) or give one with --baseline"
        )
    if chance is not None and fraction * baseline <= chance:
        raise BaselineError(
            f"the threshold {fraction:g} x baseline = {fraction * baseline:.4f} (baseline {baseline:.4f}, {source}) is no better "
            f"than always predicting the majority class ({chance:.4f}), which every model passes, so d90 would measure "
            "nothing: train the baseline longer (--full-epochs, --full-lr) or give one with --baseline"
        )


def measure_d90(
    model_factory: ModelFactory,
    task: Task,
    *,
    dims: Sequence[int] | None = None,
    seeds: int = 3,
    fraction: float = 0.9,
    baseline: float | None = None,
    baseline_seeds: int | None = None,
    precision: float = 0.15,
    curve: bool = False,
    trial: TrialConfig | None = None,
    full_trial: TrialConfig | None = None,
    lr_candidates: Sequence[float] | None = None,
    lr_search_d: int = 1000,
    full_lr_candidates: Sequence[float] | None = None,
    run_dir: str | Path | None = None,
    run_config: dict[str, Any] | None = None,
    model_name: str = "model",
    progress: bool = True,
    log: Callable[[str], None] = print,
    runner: Runner | None = None,
    executor: Executor | None = None,
    wait: bool = False,
    reuse: Sequence[str | Path] = (),
    tracker: Tracker | None = None,
) -> D90Result:
    """Measure d90 (or d_fraction) of ``model_factory(seed)`` on ``task``; see the module docstring.

    ``trial``/``full_trial`` are templates for the subspace and baseline trials (method, d and seed
    are filled in). ``curve`` evaluates every point of ``dims`` instead of searching. ``lr_candidates``
    runs a rate search at ``lr_search_d`` first (chosen on validation) and uses the best rate for every
    subspace trial; ``full_lr_candidates`` does the same for full fine-tuning (seed 0, chosen on validation)
    before the baseline's seeds run at the chosen rate. With ``run_dir`` every trial goes to its SQLite store
    as it finishes and a rerun resumes; one process at a time holds a run directory (another is refused, or queues with ``wait``).
    ``reuse`` names other run directories of the same run configuration whose finished trials of an
    identical configuration are copied in instead of rerun (e.g. one run against its own baseline and
    one against an absolute baseline share every subspace trial; a SAID and a DID run of one budget share
    their full fine-tuning trials, which read no subspace setting).
    ``runner`` runs one trial in this process (default :func:`run_trial`; a synthetic objective in
    tests); ``executor`` runs batches of independent trials elsewhere (e.g. local worker processes).
    ``tracker`` receives every trial as it is stored or read back, and the summary at the end.
    """
    q = _Question(dims, seeds, fraction, baseline, baseline_seeds, precision, curve, full_trial, lr_candidates, lr_search_d,
                  full_lr_candidates)
    start = time.perf_counter()
    lock = RunLock(run_dir, wait=wait) if run_dir is not None else None
    store = Store(run_dir) if run_dir is not None else None
    others: list[Store] = []
    try:
        if store is not None:
            store.check_run_config(run_config or {})
        others = _reuse_stores(reuse, run_config or {})
        trial = replace(trial or TrialConfig(), method="lora" if trial is not None and trial.method == "lora" else "subspace")
        executor = executor or InProcess(runner or (lambda cfg: run_trial(model_factory, task, cfg, progress=progress)))
        s = _Search(executor, task, trial, store, log, others, tracker)
        result = _measure(s, model_factory, task, q, model_name, start)
        if tracker is not None:
            tracker.log_summary(result.to_dict())
        return result
    finally:
        for other in others:
            other.close()
        if store is not None:
            store.close()
        if lock is not None:
            lock.release()


def _reuse_stores(paths: Sequence[str | Path], run_config: dict[str, Any]) -> list[Store]:
    """The stores of run directories to reuse trials from, each checked to hold the same run configuration."""
    stores = []
    for path in paths:
        if not (Path(path) / DB_NAME).is_file():
            raise ValueError(f"--reuse {path}: no finished trials there (no {DB_NAME})")
        other = Store(path, read_only=True)
        stores.append(other)
        theirs = other.run_config()
        if theirs != run_config:
            for st in stores:
                st.close()
            raise RunConfigMismatch(
                f"--reuse {path}: that run holds another configuration ({theirs}, this one {run_config}); "
                "only trials of the same model, task and data can be shared"
            )
    return stores


def _measure(s: _Search, model_factory: ModelFactory | None, task: Task, q: _Question, model_name: str, start: float) -> D90Result:
    """The baseline and threshold, the optional rate search, the search or curve, and the result built from the points."""
    dims, seeds, fraction, baseline, full_trial = q.dims, q.seeds, q.fraction, q.baseline, q.full_trial
    lr_candidates, lr_search_d = q.lr_candidates, q.lr_search_d
    chance = chance_level(task)
    trial = s.trial
    lower = task.lower_is_better
    min_d, max_d = _d_range(model_factory(0).model, trial) if model_factory is not None and trial.method == "subspace" else (1, math.inf)
    wanted = sorted(set(dims or [])) + ([lr_search_d] if lr_candidates else [])
    too_big = [d for d in wanted if d > max_d]
    if too_big:
        raise ValueError(f"d = {too_big} exceeds what the model can take: at most {max_d:,} trained numbers "
                         f"(D = {max_d - (min_d - 1):,} projected weights{' plus the SAID scales' if trial.said else ''}); "
                         "pass smaller --dims / --lr-search-d")
    baseline_values: list[float] = []
    full = replace(full_trial or TrialConfig(method="full"), method="full", d=None)
    full_lr_policy = f"AdamW {full.resolved_lr(task.kind):g}" + (" (fixed)" if full.lr is not None else "")
    if q.full_lr_candidates:
        best = _rate_search(s, "full_lr_search", [replace(full, seed=0, lr=lr) for lr in q.full_lr_candidates], lower,
                            "full fine-tuning")
        full = replace(full, lr=best)
        full_lr_policy = f"AdamW {best:g} (best on validation of {', '.join(f'{k:g}' for k in q.full_lr_candidates)}, seed 0)"
    if baseline is None:
        base = s.run_many("baseline", [replace(full, seed=k) for k in range(q.baseline_seeds or seeds)])
        baseline_values = [r.metric for r in base if r.ok]
        if not baseline_values:
            raise BaselineError(f"every full fine-tuning baseline trial failed: {[r.error for r in base]}")
        baseline, source = _mean(baseline_values), f"full fine-tuning, mean of {len(baseline_values)} seed(s)"
    else:
        source = "given"
    base_value = None
    if lower:
        base_cfg = TrialConfig(method="base", seed=0, eval_batch_size=trial.eval_batch_size)
        start_run = s.run_many("base", [base_cfg])[0]
        base_value = start_run.metric if start_run.ok else float("nan")
    _check_baseline(baseline, fraction, chance, source, base_value)
    tau = threshold(fraction, baseline, base_value, lower)
    rule = (f"threshold base {base_value:.4f} - {fraction:g} x (base - baseline) = {tau:.4f} (lower is better)" if lower
            else f"threshold {fraction:g} x baseline = {tau:.4f}")
    s.log(f"baseline {task.metric} = {baseline:.4f} ({source}); {rule}" + (f"; chance {chance:.4f}" if chance is not None else ""))

    if trial.method == "lora":
        alpha = "2r" if trial.lora_alpha is None else f"{trial.lora_alpha:g}"
        lr_policy = f"LoRA (alpha {alpha}), Adam {trial.resolved_lr(task.kind):g}" + (" (fixed)" if trial.lr is not None else "")
    else:
        lr_policy = f"Adam {SUBSPACE_REF_LR:g} x sqrt({SUBSPACE_REF_D} / d)" if trial.lr is None else f"Adam {trial.lr:g} (fixed)"
    if lr_candidates:
        best_lr = _rate_search(s, "lr_search", [replace(trial, d=lr_search_d, seed=0, lr=lr) for lr in lr_candidates], lower,
                               f"d={lr_search_d}")
        trial = s.trial = replace(trial, lr=best_lr)
        lr_policy = f"Adam {best_lr:g} (best on validation of {', '.join(f'{k:g}' for k in lr_candidates)} at d={lr_search_d})"

    grid = sorted(d for d in set(dims or (DEFAULT_RANKS if trial.method == "lora" else DEFAULT_DIMS)) if min_d <= d <= max_d)
    if not grid:
        raise ValueError(f"no dimension to evaluate: SAID needs d > {min_d - 1} (its number of groups); pass larger --dims")
    if q.curve:
        for d in grid:
            s.point(d, seeds, tau)
    else:
        _search(s, grid, seeds, tau, q.precision, min_d)

    ds = sorted(s.results)
    pts = [dict(d=d, **s.point(d, seeds, tau)) for d in ds]
    passed = [p["passed"] for p in pts]
    d90 = next((p["d"] for p in pts if p["passed"]), None)
    monotone = all(not (passed[i] and not passed[j]) for i in range(len(pts)) for j in range(i + 1, len(pts)))
    crossing = _crossing(ds, [p["mean"] for p in pts], passed, tau, lower) if d90 else None
    below = [d for d in ds if d90 and d < d90]
    bracket = (max(below) if below else None, d90) if d90 else (ds[-1], None)
    interval = None
    if d90 and seeds >= MIN_SEEDS_FOR_INTERVAL:
        lo, hi = _bootstrap_interval(s.results, ds, tau, seeds, lower=lower)
        interval = (min(lo, bracket[0] or lo), None if hi is None else max(hi, float(d90)))
    status = "found" if d90 and d90 != ds[0] else ("at_or_below_smallest" if d90 else "above_largest")
    notes = list(task.notes)
    size = "r" if trial.method == "lora" else "d"  # the LoRA rank, or the subspace dimension
    if not any(p["n_ok"] for p in pts):
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
    n_train = len(task.train)
    budget = {
        "n_train": n_train, "n_val": len(task.eval), "n_test": len(task.report_split),
        "steps_per_trial": trial.total_steps(n_train), "epochs": trial.epochs, "max_steps": trial.max_steps,
        "batch_size": trial.batch_size, "select": trial.select, "lr_policy": lr_policy,
        "full_lr": full.lr, "full_lr_policy": full_lr_policy if baseline_values else None,
        "full_steps": full_trial.total_steps(n_train) if full_trial else None,
    }
    return D90Result(
        task=task.name, model=model_name, metric=task.metric, fraction=fraction, baseline=baseline,
        baseline_source=source, threshold=tau, d90=d90, crossing=crossing, bracket=bracket, interval=interval,
        status=status, points=pts, trials=[_trial_entry(role, r) for role, r in s.all], n_train=n_train,
        lr=trial.lr, wall_s=time.perf_counter() - start, compute_s=sum(r.wall_s for r in s.done.values()),
        mode="curve" if q.curve else "search", seeds=seeds, baseline_values=baseline_values, chance=chance,
        budget=budget, monotone=monotone, said=trial.said, projection=trial.projection, layout=trial.layout,
        normalisation=trial.normalisation, groups=trial.groups, threads=torch.get_num_threads(), notes=notes,
        method=method_of(trial), lower_is_better=lower, base_value=base_value,
        trainable_params=next((p["trainable"] for p in pts if p["d"] == d90), None),
        train_sample=next((r.train_sample for _, r in s.all if r.train_sample), ""),
    )


def _rate_search(s: _Search, role: str, cfgs: list[TrialConfig], lower: bool, where: str) -> float:
    """The rate of the candidate trials ``cfgs`` (one per rate) with the best validation metric; a failed or
    diverged candidate scores worst."""
    runs = s.run_many(role, cfgs)
    worst = math.inf if lower else -math.inf
    scores = {cfg.lr: r.val_metric if r.ok else worst for cfg, r in zip(cfgs, runs)}
    best = (min if lower else max)(scores, key=lambda k: scores[k])
    s.log(f"learning-rate search, {where} (validation): " + ", ".join(f"{k:g}: {v:.4f}" for k, v in scores.items()) + f" -> {best:g}")
    return best


def _key(config: dict[str, Any]) -> str:
    """A trial's identity: one trial listed under two roles (a rate candidate that is also a baseline seed) counts once."""
    return json.dumps(config, sort_keys=True)


def _trial_entry(role: str, r: TrialResult) -> dict[str, Any]:
    """A trial as d90.json lists it: everything but the per-step losses (in the store and the tracker)."""
    return {"role": role, **{k: v for k, v in asdict(r).items() if k != "losses"}}


def method_of(trial: TrialConfig) -> str:
    """The row name of a sweep's method: 'said', 'did' or 'lora'."""
    return "lora" if trial.method == "lora" else ("said" if trial.said else "did")


def _d_range(model: torch.nn.Module, trial: TrialConfig) -> tuple[int, float]:
    """The smallest and largest d a trial can take on ``model``: SAID needs d > its number of groups m,
    and z (d - m numbers) cannot exceed D, the number of projected weights (tied weights counted once)."""
    D = sum(p.numel() for p in dict(model.named_parameters()).values() if p.requires_grad and p.is_floating_point())
    m = num_groups(model, trial.groups) if trial.said else 0
    return m + 1, D + m


def _search(s: _Search, grid: list[int], seeds: int, tau: float, precision: float, min_d: int) -> None:
    """The coarse pass (plus one point above the first pass, or steps below the grid), then bisection."""
    first_pass = None
    for i, d in enumerate(grid):
        if s.point(d, seeds, tau)["passed"]:
            first_pass = d
            if i + 1 < len(grid):
                s.point(grid[i + 1], seeds, tau)
            break
    if first_pass == grid[0]:
        d = grid[0]
        while d > min_d:
            d = max(min_d, d // STEP_DOWN)
            if not s.point(d, seeds, tau)["passed"]:
                break
    if first_pass is None:
        return
    while True:
        hi = min(d for d in s.results if s.point(d, seeds, tau)["passed"])
        failing = [d for d in s.results if d < hi]
        if not failing:
            return
        lo = max(failing)
        mid = round(math.sqrt(lo * hi))
        if hi / lo <= 1 + precision or mid in (lo, hi):
            return
        s.point(mid, seeds, tau)


def _bootstrap_interval(results: dict[int, list[TrialResult]], ds: list[int], tau: float, seeds: int,
                        n_boot: int = 2000, lower: bool = False) -> tuple[float, float | None]:
    """95% percentile interval of the crossing, resampling seeds independently at every d. The upper
    end is None when over 2.5% of the resamples pass at no evaluated d (it lies beyond them)."""
    gen = torch.Generator().manual_seed(0)
    worst = math.inf if lower else -math.inf
    vals = torch.tensor([[r.metric if r.ok else worst for r in results[d]] for d in ds], dtype=torch.float64)
    idx = torch.randint(0, seeds, (n_boot, len(ds), seeds), generator=gen)
    means = torch.gather(vals.expand(n_boot, -1, -1), 2, idx).mean(2)
    out = sorted(_crossing(ds, m, [passes(v, tau, lower) for v in m], tau, lower) for m in means.tolist())
    lo, hi = out[int(0.025 * (n_boot - 1))], out[math.ceil(0.975 * (n_boot - 1))]
    return lo, (hi if math.isfinite(hi) else None)
