"""The pure statistics of a d90: threshold, pass rule, point summaries, the log-linear crossing and the
bootstrap interval over seeds. No training, no files: each function is a number from numbers."""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch

from intrinsic_dim.results import TrialResult

MIN_SEEDS_FOR_INTERVAL = 3


class BaselineError(ValueError):
    """The baseline cannot define a threshold (not finite, or a threshold no better than chance)."""


def mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def pooled_sd(groups: Sequence[Sequence[float]]) -> float | None:
    """The standard deviation of one value, pooled over the groups of two or more values that do not all agree (None
    below two degrees of freedom). Values that agree exactly (every seed predicting the majority class) are an outcome
    the seed does not move, not a noise of zero."""
    groups = [g for g in groups if len(g) > 1 and max(g) > min(g)]
    dof = sum(len(g) - 1 for g in groups)
    if dof < 2:
        return None
    return math.sqrt(sum(sum((v - mean(g)) ** 2 for v in g) for g in groups) / dof)


def full_trial_s(trials: Sequence[tuple[str, float]]) -> float | None:
    """The mean wall time of the full fine-tuning trials among (method, seconds) pairs (None without one)."""
    full = [w for m, w in trials if m == "full" and w > 0]
    return mean(full) if full else None


def cost_in_full_trials(trials: Sequence[tuple[str, float]]) -> float | None:
    """What a d90 cost, in full fine-tunings: the wall time of every trial (method, seconds) over the mean of its full
    fine-tuning trials' (None without one)."""
    unit = full_trial_s(trials)
    return sum(w for _, w in trials) / unit if unit else None


def point_stats(results: Sequence[TrialResult]) -> dict[str, Any]:
    ok = [r for r in results if r.ok]
    vals = [r.metric for r in ok]
    std = float(torch.tensor(vals, dtype=torch.float64).std().item()) if len(vals) > 1 else 0.0
    return {
        "values": [r.metric for r in results], "val_values": [r.val_metric for r in results],
        "train_values": [r.train_metric for r in results], "mean": mean(vals), "std": std,
        "train_mean": mean([r.train_metric for r in ok]), "n_ok": len(ok), "all_ok": len(ok) == len(results),
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


def crossing(ds: Sequence[int], means: Sequence[float], passed: Sequence[bool], tau: float, lower: bool = False) -> float:
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


def check_baseline(baseline: float, fraction: float, chance: float | None, source: str, start: float | None = None) -> None:
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


def bootstrap_interval(results: dict[int, list[TrialResult]], ds: list[int], tau: float, seeds: int,
                        n_boot: int = 2000, lower: bool = False, baseline_values: Sequence[float] = (),
                        fraction: float = 0.9, base_value: float | None = None,
                        noise: float | None = None) -> tuple[float, float | None]:
    """95% percentile interval of the crossing, resampling the seeds of every point independently and, when the
    threshold comes from measured baseline seeds (``baseline_values``), those seeds too, so that tau's own seed
    noise is in the interval. The upper end is None when over 2.5% of the resamples pass at no evaluated d.

    When the points hold different numbers of seeds (the sequential seed rule), a point of one seed has no spread of
    its own to resample, so every point's mean is drawn instead from its seed mean plus ``noise`` (the pooled seed
    standard deviation the rule decided with) / sqrt(n) times a standard normal; a point with a failed seed stays
    failed."""
    gen = torch.Generator().manual_seed(0)
    worst = math.inf if lower else -math.inf
    rows = [[r.metric if r.ok else worst for r in results[d]] for d in ds]
    if all(len(v) == seeds for v in rows):  # the draw of every run made before points could differ in seeds
        vals = torch.tensor(rows, dtype=torch.float64)
        idx = torch.randint(0, seeds, (n_boot, len(ds), seeds), generator=gen)
        means = torch.gather(vals.expand(n_boot, -1, -1), 2, idx).mean(2)
    else:
        if noise is None or not math.isfinite(noise):
            raise ValueError("points with different numbers of seeds need the pooled seed noise to resample them")
        centre = torch.tensor([mean(v) for v in rows], dtype=torch.float64)
        scale = torch.tensor([noise / math.sqrt(len(v)) for v in rows], dtype=torch.float64)
        means = centre + scale * torch.randn(n_boot, len(ds), generator=gen, dtype=torch.float64)
        means = torch.where(torch.isfinite(centre), means, centre)
    taus = [tau] * n_boot
    if len(baseline_values) > 1:
        b = torch.tensor(list(baseline_values), dtype=torch.float64)
        draws = b[torch.randint(0, len(b), (n_boot, len(b)), generator=torch.Generator().manual_seed(1))].mean(1)
        taus = [threshold(fraction, float(v), base_value, lower) for v in draws]
    out = sorted(crossing(ds, m, [passes(v, t, lower) for v in m], t, lower) for m, t in zip(means.tolist(), taus))
    lo, hi = out[int(0.025 * (n_boot - 1))], out[math.ceil(0.975 * (n_boot - 1))]
    return lo, (hi if math.isfinite(hi) else None)


def pass_margin(values: Sequence[float], tau: float, baseline_values: Sequence[float], fraction: float,
                lower: bool = False, noise: float | None = None) -> tuple[float, float]:
    """How far a point's seed mean passes tau (positive: passes) and the standard error of that margin, from the
    point's seeds (or, given ``noise``, the pooled seed standard deviation / sqrt(n), which a point of one seed
    needs) and, for a measured baseline, tau's own (fraction x the baseline seeds' standard error)."""
    def se(v: Sequence[float]) -> float:
        return float(torch.tensor(list(v), dtype=torch.float64).std().item()) / math.sqrt(len(v)) if len(v) > 1 else 0.0

    margin = (tau - mean(values)) if lower else (mean(values) - tau)
    point_se = noise / math.sqrt(len(values)) if noise is not None and values else se(values)
    return margin, math.sqrt(point_se ** 2 + (fraction * se(baseline_values)) ** 2)
