"""measure_d90: the smallest subspace dimension reaching a fraction of full fine-tuning.

Method (DESIGN.md section 2). A baseline (full fine-tuning averaged over seeds, or a given value)
sets the threshold tau = fraction * baseline. A coarse log-spaced pass evaluates dimensions in
increasing order until the first point whose mean over seeds reaches tau, plus the next grid point
above it (it checks that the curve stays above tau and bounds the interval), stepping down below the
grid if its first point already passes; then bisection in log d between the last failing and the
first passing point narrows the bracket to the requested relative precision.

Why the answer can be trusted: the search assumes the metric grows with d (more directions can only
help the optimum; Li et al. and Aghajanyan et al. observe monotone curves), so one bracket
[fail, pass] contains the crossing. Noise is handled by averaging seeds at every point (each seed
changes the projection, the head initialisation and the data order) and by reporting a bootstrap
95% interval of the interpolated crossing over those seeds. A trial that diverges or crashes
counts against its point. A failing point above a passing one (a non-monotone curve) is flagged.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from intrinsic_dim.groups import num_groups
from intrinsic_dim.store import Store
from intrinsic_dim.tasks import Task
from intrinsic_dim.results import TrialResult
from intrinsic_dim.train import ModelFactory, TrialConfig, run_trial

DEFAULT_DIMS = (10, 30, 100, 300, 1000, 3000, 10000, 30000)
STEP_DOWN = 3


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
    ci: tuple[float, float | None] | None
    status: str
    points: list[dict[str, Any]]
    trials: list[dict[str, Any]]
    n_train: int
    lr: float | None
    wall_s: float
    compute_s: float
    monotone: bool = True
    said: bool = False
    projection: str = "fastfood"
    notes: list[str] = field(default_factory=list)

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


def _point_stats(results: Sequence[TrialResult]) -> dict[str, Any]:
    vals = [r.metric for r in results]
    ok = all(r.ok for r in results)
    okvals = [v for r, v in zip(results, vals) if r.ok]
    mean = sum(okvals) / len(okvals) if okvals else float("nan")
    std = float(torch.tensor(okvals).std().item()) if len(okvals) > 1 else 0.0
    return {"values": vals, "mean": mean, "std": std, "all_ok": ok}


def _crossing(ds: Sequence[int], means: Sequence[float], passed: Sequence[bool], tau: float) -> float:
    """Log-linear interpolation of where the curve crosses tau (inf if it never does)."""
    for i, (d, m, p) in enumerate(zip(ds, means, passed)):
        if p:
            if i == 0:
                return float(d)
            d0, m0 = ds[i - 1], means[i - 1]
            if not math.isfinite(m0) or m <= m0:
                return float(d)
            t = (tau - m0) / (m - m0)
            return math.exp(math.log(d0) + min(1.0, max(0.0, t)) * (math.log(d) - math.log(d0)))
    return math.inf


Runner = Callable[[TrialConfig], TrialResult]


class _Search:
    def __init__(self, runner: Runner, task: Task, trial: TrialConfig, store: Store | None, log: Callable[[str], None]):
        self.runner, self.task, self.trial, self.store, self.log = runner, task, trial, store, log
        self.results: dict[int, list[TrialResult]] = {}
        self.all: list[tuple[str, TrialResult]] = []

    def run(self, role: str, cfg: TrialConfig) -> TrialResult:
        cached = self.store.get(cfg.to_dict()) if self.store else None
        if cached is not None:
            res = TrialResult.from_row(cached)
        else:
            res = self.runner(cfg)
            if self.store:
                self.store.put(role, res)
        tag = "resumed" if cached is not None else f"{res.wall_s:.0f}s"
        self.log(f"  {role:9s} {cfg.method:8s} d={cfg.d!s:>6} seed={cfg.seed} lr={res.lr:.3g}: "
                 f"{self.task.metric}={res.metric:.4f} [{res.status}, {tag}]")
        self.all.append((role, res))
        return res

    def point(self, d: int, seeds: int, tau: float) -> dict[str, Any]:
        if d not in self.results:
            self.results[d] = [self.run("search", replace(self.trial, d=d, seed=s, threshold=tau)) for s in range(seeds)]
        stats = _point_stats(self.results[d])
        stats["passed"] = stats["all_ok"] and stats["mean"] >= tau
        return stats


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
    trial: TrialConfig | None = None,
    full_trial: TrialConfig | None = None,
    lr_candidates: Sequence[float] | None = None,
    lr_search_d: int = 1000,
    run_dir: str | Path | None = None,
    run_config: dict[str, Any] | None = None,
    model_name: str = "model",
    progress: bool = True,
    log: Callable[[str], None] = print,
    runner: Runner | None = None,
) -> D90Result:
    """Measure d90 (or d_fraction) of ``model_factory(seed)`` on ``task``; see the module docstring.

    ``trial``/``full_trial`` are templates for the subspace and baseline trials (method, d and seed
    are filled in). ``lr_candidates`` runs a short rate search at ``lr_search_d`` first and uses
    the best rate for every subspace trial. With ``run_dir`` every trial goes to its SQLite store
    as it finishes and a rerun resumes. ``runner`` runs one trial (default: in this process with
    :func:`run_trial`); another executor, or a synthetic objective in tests, plugs in here.
    """
    if not 0 < fraction <= 1.5:
        raise ValueError(f"fraction must be in (0, 1.5], got {fraction}")
    if seeds < 1:
        raise ValueError(f"seeds must be at least 1, got {seeds}")
    if precision <= 0:
        raise ValueError(f"precision must be positive, got {precision}")
    if dims is not None and (not dims or any(not isinstance(d, int) or d < 1 for d in dims)):
        raise ValueError(f"dims must be positive integers, got {dims}")
    start = time.perf_counter()
    store = Store(run_dir) if run_dir is not None else None
    if store is not None:
        store.check_run_config(run_config or {})
    trial = replace(trial or TrialConfig(), method="subspace")
    s = _Search(runner or (lambda cfg: run_trial(model_factory, task, cfg, progress=progress)), task, trial, store, log)

    if baseline is None:
        nb = baseline_seeds or seeds
        full = replace(full_trial or TrialConfig(method="full"), method="full", d=None)
        base = [s.run("baseline", replace(full, seed=k)) for k in range(nb)]
        okb = [r.metric for r in base if r.ok]
        if not okb:
            raise RuntimeError(f"every full fine-tuning baseline trial failed: {[r.error for r in base]}")
        baseline, source = sum(okb) / len(okb), f"full fine-tuning, mean of {len(okb)} seed(s)"
    else:
        source = "given"
    tau = fraction * baseline
    log(f"baseline {task.metric} = {baseline:.4f} ({source}); threshold {fraction:g} x baseline = {tau:.4f}")

    min_d = num_groups(model_factory(0).model, trial.groups) + 1 if trial.said else 1
    if lr_candidates:
        lr_d = lr_search_d
        scores = {}
        for lr in lr_candidates:
            r = s.run("lr_search", replace(trial, d=lr_d, seed=0, lr=lr, threshold=None))
            scores[lr] = r.metric if r.ok else -math.inf
        best_lr = max(scores, key=lambda k: scores[k])
        log(f"learning-rate search at d={lr_d}: " + ", ".join(f"{k:g}: {v:.4f}" for k, v in scores.items()) + f" -> {best_lr:g}")
        trial = replace(trial, lr=best_lr)
        s.trial = trial

    grid = sorted(d for d in set(dims or DEFAULT_DIMS) if d >= min_d)
    if not grid:
        raise ValueError(f"no dimension to evaluate: SAID needs d > {min_d - 1} (its number of groups); pass larger --dims")
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
    if first_pass is not None:
        while True:
            passing = [d for d in s.results if s.point(d, seeds, tau)["passed"]]
            hi = min(passing)
            failing = [d for d in s.results if d < hi]
            if not failing:
                break
            lo = max(failing)
            mid = round(math.sqrt(lo * hi))
            if hi / lo <= 1 + precision or mid in (lo, hi):
                break
            s.point(mid, seeds, tau)

    ds = sorted(s.results)
    pts = [dict(d=d, **s.point(d, seeds, tau)) for d in ds]
    passed = [p["passed"] for p in pts]
    d90 = next((p["d"] for p in pts if p["passed"]), None)
    monotone = all(not (passed[i] and not passed[j]) for i in range(len(pts)) for j in range(i + 1, len(pts)))
    crossing = _crossing(ds, [p["mean"] for p in pts], passed, tau) if d90 else None
    ci = _bootstrap_ci(s.results, ds, tau, seeds) if d90 and seeds > 1 else None
    status = "found" if d90 and d90 != ds[0] else ("at_or_below_smallest" if d90 else "above_largest")
    notes = []
    if not monotone:
        notes.append("the curve is not monotone in d: a failing point lies above a passing one; more seeds would help")
    if status == "above_largest":
        notes.append(f"no evaluated d reached the threshold; d90 > {ds[-1]} (extend --dims or train longer)")
    if status == "at_or_below_smallest":
        notes.append(f"the smallest evaluated d = {ds[0]} already passes; d90 <= {ds[0]}")
    compute = sum(r.wall_s for _, r in s.all)
    result = D90Result(
        task=task.name, model=model_name, metric=task.metric, fraction=fraction, baseline=baseline,
        baseline_source=source, threshold=tau, d90=d90, crossing=crossing, ci=ci, status=status, points=pts,
        trials=[{"role": role, **asdict(r)} for role, r in s.all], n_train=len(task.train),
        lr=trial.lr, wall_s=time.perf_counter() - start,
        compute_s=compute, monotone=monotone, said=trial.said, projection=trial.projection, notes=notes,
    )
    if store is not None:
        store.close()
    return result


def _bootstrap_ci(results: dict[int, list[TrialResult]], ds: list[int], tau: float, seeds: int, n_boot: int = 2000):
    """95% percentile interval of the crossing, resampling seeds independently at every d. The upper
    end is None when over 2.5% of the resamples pass at no evaluated d (it lies beyond them)."""
    gen = torch.Generator().manual_seed(0)
    vals = torch.tensor([[r.metric if r.ok else -math.inf for r in results[d]] for d in ds], dtype=torch.float64)
    idx = torch.randint(0, seeds, (n_boot, len(ds), seeds), generator=gen)
    means = torch.gather(vals.expand(n_boot, -1, -1), 2, idx).mean(2)
    out = []
    for b in range(n_boot):
        m = means[b].tolist()
        out.append(_crossing(ds, m, [v >= tau for v in m], tau))
    q = sorted(out)
    lo, hi = q[int(0.025 * (n_boot - 1))], q[math.ceil(0.975 * (n_boot - 1))]
    return (lo, hi if math.isfinite(hi) else None)
