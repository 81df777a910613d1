"""The search rules of the d90 search on synthetic objectives calibrated from committed runs: bias, spread and trials.

For each committed run named below, its d90.json gives the curve (seed mean at every evaluated d, made monotone and
interpolated in log d) and its seed noise: with ``--noise split`` (the default since 2026-12-07) the points' noise
(pooled over its points' seeds) and the baseline's (its full fine-tuning seeds) apart, as the runs measured them; with
``--noise pooled`` (the first calibrations) one noise pooled over both. A synthetic objective returns curve(d) +
point noise x N(0, 1) per (d, seed, replicate), and full fine-tuning returns the baseline mean + baseline noise x
N(0, 1), so the true d90 is where the curve crosses 0.9 x the baseline mean. Every replicate runs the same search,
3 seeds, under each rule of CONFIGS (seed rule, placement, seed noise); the grid and precision are the run's
own as its experiment file configures them (``--grid coarse``), or every d the run evaluated with precision 0.15
(``--grid evaluated``, the first calibration's setting, where little is left to bisect). The table gives each rule's
median and spread of log(d90 / true d90), how often the true d90 lies in the bracket and in the 95% interval, the
interval's median width in log d, and the mean number of trials. Run: ``.venv/bin/python benchmarks/search_calibration.py
[--replicates 200] [--grid coarse|evaluated] [--noise split|pooled]`` (minutes: no training).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

import torch

from intrinsic_dim.experiment import load_experiment
from intrinsic_dim.results import TrialResult
from intrinsic_dim.search import measure_d90
from intrinsic_dim.search.stats import pooled_sd
from intrinsic_dim.tasks.base import Split, Task
from intrinsic_dim.train import TrialConfig

ROOT = Path(__file__).resolve().parents[1]
RUNS = ["li2018_mnist/fc-own-n2000", "li2018_mnist/lenet-own", "aghajanyan2021_minilm/tweets-said", "aghajanyan2021_minilm/tweets-did",
        "aghajanyan2021_mpnet/tweets-said-minilm-l6", "d90_vs_n_fixed_steps/mnist-fc-n1000"]
CONFIGS = [("all", "bisect", "points", False), ("sequential", "aim", "baseline+points", True), ("sequential", "aim", "points", True),
           ("sequential", "aim", "points", False)]
"""(seed rule, placement, seed noise, stop at an unresolved bracket): the rules of the runs before 2026-12-06; the
sequential rule with aimed refinement as it was until 2026-12-07 (the baseline's seeds in its noise, a bracket its seeds
cannot split ends the refinement); with the points' own noise only; and as it is now (refining on). The seed noise and
the stop are read only by the sequential rule."""


class Calibrated:
    """A synthetic objective shaped like a committed run: its monotone seed-mean curve plus Gaussian seed noise."""

    def __init__(self, result: dict[str, Any], replicate: int, split: bool = True) -> None:
        pts = sorted((p["d"], p["mean"]) for p in result["points"] if p["n_ok"])
        means, best = [], -math.inf
        for _, m in pts:
            best = max(best, m)
            means.append(best)
        self.logd = [math.log(d) for d, _ in pts]
        self.means = means
        pooled = pooled_noise(result)
        self.noise = (pooled_noise(result, baseline=False) or pooled) if split else pooled
        self.baseline_noise = (pooled_noise(result, points=False) or pooled) if split else pooled
        self.baseline = result["baseline"]
        self.replicate = replicate
        self.calls = 0

    def curve(self, d: float) -> float:
        x = math.log(d)
        if x <= self.logd[0]:
            return self.means[0]
        for (x0, m0), (x1, m1) in zip(zip(self.logd, self.means), zip(self.logd[1:], self.means[1:])):
            if x <= x1:
                return m0 + (m1 - m0) * (x - x0) / (x1 - x0)
        return self.means[-1]

    def true_d90(self, fraction: float) -> float:
        """Where the curve crosses fraction x the baseline mean (log-linear inside the segment)."""
        tau = fraction * self.baseline
        for (x0, m0), (x1, m1) in zip(zip(self.logd, self.means), zip(self.logd[1:], self.means[1:])):
            if m0 < tau <= m1:
                return math.exp(x0 + (tau - m0) / (m1 - m0) * (x1 - x0))
        return math.exp(self.logd[0]) if self.means[0] >= tau else math.inf

    def __call__(self, cfg: TrialConfig) -> TrialResult:
        self.calls += 1
        g = torch.Generator().manual_seed(self.replicate * 1_000_003 + (cfg.d or 0) * 101 + cfg.seed * 7 + (cfg.method == "full"))
        e = torch.randn(1, generator=g, dtype=torch.float64).item()
        value = self.baseline + e * self.baseline_noise if cfg.method == "full" else self.curve(cfg.d) + e * self.noise
        return TrialResult(config=cfg.to_dict(), status="ok", metric=value, val_metric=value, train_metric=value,
                           train_sample="synthetic", lr=0.1)


def _key(rule: str, placement: str, seed_noise: str, stop: bool) -> str:
    """A rule's name in the records: seed rule / placement, and for the sequential rule its noise and stop."""
    return f"{rule}/{placement}" + (f"/{seed_noise}/{'stop' if stop else 'refine'}" if rule == "sequential" else "")


def pooled_noise(result: dict[str, Any], points: bool = True, baseline: bool = True) -> float | None:
    """Standard deviation of one seed's metric, pooled over the run's points' seeds and / or its baseline seeds as the
    sweep pools them (:func:`intrinsic_dim.search.stats.pooled_sd`: groups whose seeds all agree left out; None without
    two degrees of freedom)."""
    groups = ([[v for v in p["values"] if v == v] for p in result["points"]] if points else []) + (
        [result.get("baseline_values") or []] if baseline else [])
    return pooled_sd(groups)


def _task() -> Task:
    split = Split(labels=torch.arange(100) % 2, texts=[("x",)] * 100)
    return Task(name="synthetic", kind="text", label_names=["a", "b"], metric="accuracy", train=split, eval=split, description="synthetic")


def configured(run: str) -> tuple[list[int], float]:
    """The coarse grid and precision the run's experiment file gives it."""
    experiment, name = run.split("/")
    spec = next(r.spec for r in load_experiment(ROOT / "experiments" / f"{experiment}.yaml").runs if r.name == name)
    return sorted(spec.search.dims), spec.search.precision


def calibrate(run: str, replicates: int, grid_mode: str = "coarse", seeds: int = 3, split: bool = True) -> dict[str, Any]:
    """Every rule of CONFIGS on ``replicates`` noise draws of the run's calibrated objective."""
    result = json.loads((ROOT / "experiments" / "results" / run / "d90.json").read_text())
    if grid_mode == "coarse":
        grid, precision = configured(run)
    else:
        grid, precision = sorted({p["d"] for p in result["points"]}), 0.15  # every d the run evaluated
    made = Calibrated(result, 0, split)
    out: dict[str, Any] = {"run": run, "noise": made.noise, "baseline_noise": made.baseline_noise, "grid": grid,
                           "precision": precision, "grid_mode": grid_mode, "noise_mode": "split" if split else "pooled"}
    truth = made.true_d90(result["fraction"])
    out["true_d90"] = truth
    for rule, placement, seed_noise, stop in CONFIGS:
        errors, covered, trials, in_interval, widths = [], 0, [], 0, []
        for rep in range(replicates):
            objective = Calibrated(result, rep, split)
            r = measure_d90(None, _task(), dims=grid, seeds=seeds, precision=precision, seed_rule=rule, placement=placement,
                            seed_noise=seed_noise, stop_unresolved=stop, runner=objective, trial=TrialConfig(said=False), full_trial=TrialConfig(method="full"), progress=False,
                            log=lambda s: None)
            trials.append(objective.calls)
            if r.d90 is None:
                errors.append(math.inf)
                continue
            errors.append(math.log(r.d90 / truth))
            lo, hi = r.bracket
            covered += (lo or 0) < truth <= hi
            if r.interval is not None:
                ilo, ihi = r.interval
                in_interval += ilo <= truth <= (ihi if ihi is not None else math.inf)
                widths.append(math.log(ihi / ilo) if ihi is not None else math.inf)
        finite = sorted(e for e in errors if math.isfinite(e))
        out[_key(rule, placement, seed_noise, stop)] = {
            "median_log_error": finite[len(finite) // 2] if finite else None,
            "mean_abs_log_error": sum(abs(e) for e in finite) / len(finite) if finite else None,
            "spread_log": (sum((e - sum(finite) / len(finite)) ** 2 for e in finite) / max(1, len(finite) - 1)) ** 0.5 if finite else None,
            "not_found": sum(not math.isfinite(e) for e in errors) / replicates,
            "bracket_covers_truth": covered / replicates,
            "interval_covers_truth": in_interval / replicates,
            "median_interval_log_width": sorted(widths)[len(widths) // 2] if widths else None,
            "mean_trials": sum(trials) / replicates,
        }
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--replicates", type=int, default=200)
    p.add_argument("--grid", choices=("coarse", "evaluated"), default="coarse",
                   help="the run's configured grid and precision, or every d it evaluated with precision 0.15")
    p.add_argument("--noise", choices=("split", "pooled"), default="split",
                   help="the points' and the baseline's seed noise apart, as each run measured them, or one pooled noise")
    p.add_argument("--json", default=None, help="write the records to this file")
    args = p.parse_args(argv)
    rows = [calibrate(run, args.replicates, args.grid, split=args.noise == "split") for run in RUNS]
    print(f"{'run':42s} {'noise':>6s} {'base':>6s} {'true d90':>9s} | {'rule':44s} {'median err':>10s} {'|err|':>6s} {'spread':>6s} "
          f"{'covers':>6s} {'interval covers':>15s} {'width':>6s} {'trials':>6s}")
    for r in rows:
        for config in CONFIGS:
            s = r[_key(*config)]
            name = _key(*config).replace("/", " / ")
            print(f"{r['run']:42s} {r['noise']:6.4f} {r['baseline_noise']:6.4f} {r['true_d90']:9.0f} | {name:44s} {s['median_log_error']:10.3f} "
                  f"{s['mean_abs_log_error']:6.3f} {s['spread_log']:6.3f} {s['bracket_covers_truth']:6.2f} "
                  f"{s['interval_covers_truth']:15.2f} {s['median_interval_log_width']:6.2f} {s['mean_trials']:6.1f}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
