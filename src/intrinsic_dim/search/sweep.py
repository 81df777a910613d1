"""The sweep: which trials run next and where their results come from (this run's store, a trial run
earlier under another role, a reused run directory, or the executor), and the rules that choose the next d
(coarse pass, step down, refinement) and the best learning rate."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from tqdm.auto import tqdm

from intrinsic_dim import interrupts
from intrinsic_dim.executors import Executor
from intrinsic_dim.fingerprint import same_run_config
from intrinsic_dim.results import NOT_FULL, TrialResult
from intrinsic_dim.search.stats import mean, passes, point_stats, pooled_sd
from intrinsic_dim.store import DB_NAME, RunConfigMismatch, Store
from intrinsic_dim.tasks import Task
from intrinsic_dim.train import TrialConfig

if TYPE_CHECKING:
    from intrinsic_dim.tracking import Tracker

STEP_DOWN = 3
SETTLE_Z = 3.0
"""sequential seed rule: a point whose seed mean lies more than SETTLE_Z standard errors from tau needs no more seeds."""
RESOLVE_Z = 2.0
"""sequential seed rule: bisection stops once the bracket's two ends differ by less than RESOLVE_Z standard errors."""
AIM_MARGIN = 0.1
"""placement aim: an interpolated next d keeps at least this share of the bracket's log width from either end."""
AIM_SNAP = 1.25
"""placement aim: a next d less than (1 + precision) ** AIM_SNAP below hi moves to hi / (1 + precision), where a fail ends
the search (one point just short of it would leave the bracket a hair too wide, and take another)."""


class SweepBar:
    """One progress line for the whole sweep, above the per-trial bar: trials done / expected, the current bracket,
    elapsed and an estimate of what remains (tqdm's); silent when ``enabled`` is false."""

    def __init__(self, enabled: bool) -> None:
        self.bar = tqdm(total=0, desc="d90 sweep", unit="trial", disable=not enabled, position=0, leave=False, dynamic_ncols=True)

    def expect(self, more: int) -> None:
        """At least ``more`` trials remain."""
        self.bar.total = max(self.bar.total or 0, self.bar.n + more)
        self.bar.refresh()

    def step(self, status: str) -> None:
        if self.bar.n + 1 > (self.bar.total or 0):
            self.bar.total = self.bar.n + 1
        self.bar.set_postfix_str(status, refresh=False)
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


class Sweep:
    """The trials of one measurement: where each result comes from, the points by d, and the seed rule."""

    def __init__(self, executor: Executor, task: Task, trial: TrialConfig, store: Store | None, log: Callable[[str], None],
                 reuse: Sequence[Store] = (), tracker: Tracker | None = None, sequential: bool = False, progress: bool = False,
                 shared: Sequence[Store] = (), baseline_noise: bool = False, stop_unresolved: bool = False):
        self.executor, self.task, self.trial, self.store, self.log = executor, task, trial, store, log
        self.reuse, self.tracker, self.sequential, self.baseline_noise = reuse, tracker, sequential, baseline_noise
        self.stop_unresolved = stop_unresolved
        self.shared = {other: None for other in shared}  # store -> its full fine-tuning rows, read on first need
        self.lower = task.lower_is_better
        self.results: dict[int, list[TrialResult]] = {}
        self.all: list[tuple[str, TrialResult]] = []
        self.done: dict[str, TrialResult] = {}
        self.baseline_values: list[float] = []
        self.tau: float | None = None
        self.bar = SweepBar(progress)
        self.notes: list[str] = []

    def _cached(self, role: str, cfg: TrialConfig) -> tuple[TrialResult, str] | None:
        """A finished trial of this configuration: run earlier in this sweep under another role (a rate candidate
        that is also a baseline seed), from this run's store, or copied in from a reused one."""
        key = cfg.to_dict()
        if trial_identity(key) in self.done:
            return self.done[trial_identity(key)], "run above"
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
        if cfg.method in ("full", "base"):
            for other in self.shared:
                row = self._shared_row(other, key)
                if row is not None:
                    res = replace(TrialResult.from_row(row), config=key)
                    if self.store:
                        self.store.put(role, res)
                    return res, f"shared from {other.run_dir.name}"
        return None

    def _shared_row(self, other: Store, key: dict[str, Any]) -> dict[str, Any] | None:
        """A full fine-tuning (or base) row of a sibling run equal to ``key`` but for the settings it does not read."""
        if self.shared[other] is None:
            self.shared[other] = [r for r in other.rows() if r["config"].get("method") in ("full", "base") and r["status"] == "ok"]
        want = {k: v for k, v in key.items() if k not in NOT_FULL}
        return next((r for r in self.shared[other] if {k: v for k, v in r["config"].items() if k not in NOT_FULL} == want), None)

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
                self.bar.step(self._status())
            else:
                todo.append(i)

        def done(k: int, res: TrialResult) -> None:
            i = todo[k]
            if self.store:
                self.store.put(role, res)
            out[i] = res
            self._log(role, cfgs[i], res, f"{res.wall_s:.0f}s")
            self._track(role, res)
            self.bar.step(self._status())

        if todo:
            interrupts.at_boundary()
            self.executor.run_many([cfgs[i] for i in todo], done)
        self.all += [(role, r) for r in out]
        self.done |= {trial_identity(r.config): r for r in out}
        return out  # type: ignore[return-value]

    def _track(self, role: str, res: TrialResult) -> None:
        if self.tracker is not None:
            self.tracker.log_trial(role, res)

    def _log(self, role: str, cfg: TrialConfig, res: TrialResult, tag: str) -> None:
        self.log(f"  {role:9s} {cfg.method:8s} d={cfg.d!s:>6} seed={cfg.seed} lr={res.lr:.3g}: test {self.task.metric}="
                 f"{res.metric:.4f} (validation {res.val_metric:.4f}) [{res.status}, {tag}]")

    def _status(self) -> str:
        """The current bracket, for the progress line."""
        if self.tau is None:
            return "baseline"
        passing = [d for d in self.results if point_stats(self.results[d])["all_ok"]
                   and passes(point_stats(self.results[d])["mean"], self.tau, self.lower)]
        if not passing:
            return f"no pass yet (d <= {max(self.results, default=0):,})"
        hi = min(passing)
        lo = max((d for d in self.results if d < hi), default=None)
        return f"bracket ({lo if lo is not None else '-'}, {hi:,}]"

    def noise(self) -> float | None:
        """The seed noise (standard deviation of one trial's metric), pooled over every point with two or more successful
        seeds that do not all agree (and, with ``baseline_noise``, the baseline's seeds); None until two degrees of
        freedom exist. Seeds that agree exactly (every one predicting the majority class) are an outcome the seed does not
        touch, not a noise of zero: pooled, they let one seed settle every later point. The baseline's seeds are left out
        by default because full fine-tuning is often far less noisy than subspace training (MPNet-base on tweets: 0.0006
        against 0.006 or more), and its noise let one seed settle every point."""
        groups = ([self.baseline_values] if self.baseline_noise else []) + [[r.metric for r in rs if r.ok] for rs in self.results.values()]
        return pooled_sd(groups)

    def settled(self, results: Sequence[TrialResult], tau: float) -> bool:
        """Whether a point's seeds so far decide its verdict: all succeeded and their mean lies more than SETTLE_Z
        standard errors (pooled seed noise / sqrt(n)) from tau. A failed seed never settles a point."""
        sigma = self.noise()
        ok = [r.metric for r in results if r.ok]
        if sigma is None or not ok or len(ok) < len(results):
            return False
        return abs(mean(ok) - tau) > SETTLE_Z * sigma / math.sqrt(len(ok))

    def point(self, d: int, seeds: int, tau: float) -> dict[str, Any]:
        """The point at ``d``: ``seeds`` seeds, or with the sequential rule only as many as it takes to settle its verdict."""
        if d not in self.results:
            self.bar.expect(seeds)
            if self.sequential:
                self.results[d] = []
                while len(self.results[d]) < seeds and not self.settled(self.results[d], tau):
                    self.results[d] += self.run_many("search", [replace(self.trial, d=d, seed=len(self.results[d]))])
            else:
                self.results[d] = self.run_many("search", [replace(self.trial, d=d, seed=s) for s in range(seeds)])
        stats = point_stats(self.results[d])
        stats["passed"] = stats["all_ok"] and passes(stats["mean"], tau, self.lower)
        return stats

    def resolved(self, lo: int, hi: int) -> bool:
        """Sequential rule with ``stop_unresolved``: whether the bracket's ends are already within the seed noise of each
        other, so a point between them could not be told apart from either. Off by default: stopping there reports the
        bracket's upper end, which on calibrated objectives biased d90 upward where the curve is flat near tau."""
        sigma = self.noise()
        if not self.sequential or not self.stop_unresolved or sigma is None:
            return False
        a, b = ([r.metric for r in self.results[d] if r.ok] for d in (lo, hi))
        if not a or not b:
            return False
        return abs(mean(b) - mean(a)) < RESOLVE_Z * sigma * math.sqrt(1 / len(a) + 1 / len(b))


def reuse_stores(paths: Sequence[str | Path], run_config: dict[str, Any]) -> list[Store]:
    """The stores of run directories to reuse trials from, each checked to hold the same run configuration."""
    stores = []
    for path in paths:
        if not (Path(path) / DB_NAME).is_file():
            raise ValueError(f"--reuse {path}: no finished trials there (no {DB_NAME})")
        other = Store(path, read_only=True)
        stores.append(other)
        theirs = other.run_config()
        if not same_run_config(theirs, run_config):
            for st in stores:
                st.close()
            raise RunConfigMismatch(
                f"--reuse {path}: that run holds another configuration ({theirs}, this one {run_config}); "
                "only trials of the same model, task and data can be shared"
            )
    return stores


def shared_stores(paths: Sequence[str | Path], run_config: dict[str, Any]) -> list[Store]:
    """The stores of sibling run directories that hold the same run configuration (others, or unreadable ones, are
    passed over): their full fine-tuning trials serve this run too."""
    stores = []
    for path in paths:
        try:
            other = Store(path, read_only=True)
        except ValueError:
            continue
        if same_run_config(other.run_config(), run_config):
            stores.append(other)
        else:
            other.close()
    return stores


def rate_search(s: Sweep, role: str, cfgs: list[TrialConfig], lower: bool, where: str) -> float:
    """The rate of the candidate trials ``cfgs`` (one per rate) with the best validation metric; a failed or
    diverged candidate scores worst."""
    runs = s.run_many(role, cfgs)
    worst = math.inf if lower else -math.inf
    scores = {cfg.lr: r.val_metric if r.ok else worst for cfg, r in zip(cfgs, runs)}
    best = (min if lower else max)(scores, key=lambda k: scores[k])
    s.log(f"learning-rate search, {where} (validation): " + ", ".join(f"{k:g}: {v:.4f}" for k, v in scores.items()) + f" -> {best:g}")
    return best


def trial_identity(config: dict[str, Any]) -> str:
    """A trial's identity: one trial listed under two roles (a rate candidate that is also a baseline seed) counts once."""
    return json.dumps(config, sort_keys=True)


def next_d(lo: int, hi: int, mean_lo: float | None, mean_hi: float | None, tau: float, precision: float, placement: str) -> int:
    """The next d inside the bracket (lo, hi]. bisect: the geometric midpoint. aim: the crossing c of tau on the line
    through the ends' means in log d, kept AIM_MARGIN of the bracket's log width from either end; where c lies less
    than (1 + precision) ** AIM_SNAP below hi, hi / (1 + precision) instead: failing there (as c above it predicts)
    ends the search with d90 = hi, passing moves d90 toward c. Means that do not straddle tau: the midpoint."""
    mid = round(math.sqrt(lo * hi))
    if placement == "bisect" or mean_lo is None or mean_hi is None or mean_hi == mean_lo:
        return mid
    f = (tau - mean_lo) / (mean_hi - mean_lo)
    if not 0.0 <= f <= 1.0:
        return mid
    width = math.log(hi / lo)
    d = round(math.exp(math.log(lo) + min(max(f, AIM_MARGIN), 1.0 - AIM_MARGIN) * width))
    if math.log(hi / d) <= AIM_SNAP * math.log(1 + precision):
        d = math.ceil(hi / (1 + precision))
    return d if lo < d < hi else mid


def search_grid(s: Sweep, grid: list[int], seeds: int, tau: float, precision: float, min_d: int, placement: str) -> None:
    """The coarse pass (plus one point above the first pass, or steps below the grid), then refinement of the
    bracket by ``placement`` (:func:`next_d`) until hi / lo <= 1 + precision."""
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
        if hi / lo <= 1 + precision or round(math.sqrt(lo * hi)) in (lo, hi):
            return
        if s.resolved(lo, hi):
            rule = "bisection" if placement == "bisect" else "refinement"
            s.notes.append(f"{rule} stopped at the bracket ({lo:,}, {hi:,}]: its ends differ by less than {RESOLVE_Z:g} standard "
                           "errors of the seed noise, so a point between them could not be told apart (sequential seed rule)")
            return
        s.point(next_d(lo, hi, s.point(lo, seeds, tau)["mean"], s.point(hi, seeds, tau)["mean"], tau, precision, placement),
                seeds, tau)
