"""D90Result: the outcome of a d90 measurement, what ``d90.json`` holds."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from intrinsic_dim.results import TrialResult
from intrinsic_dim.store import atomic_write_text
from intrinsic_dim.train import TrialConfig


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
    bracket: tuple[int | None, int | None] | None
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
    knife_edge: bool = False
    margin: float | None = None
    margin_se: float | None = None
    cost_full_trials: float | None = None
    seed_rule: str = "all"
    seed_noise: str | None = None
    """The sequential rule's seed noise (spec.SEED_NOISES); None under the all-seeds rule, which uses none."""
    stop_unresolved: bool | None = None
    """Whether the sequential rule stopped refining a bracket its seeds could not split; None under the all-seeds rule."""
    placement: str = "bisect"
    model_weights: str | None = None
    """The fingerprint of a local model folder's weight files (run configuration), so a reader knows which bits ran."""

    @property
    def bound(self) -> float | None:
        """The generalisation-bound term sqrt(d90 / n_train) of Aghajanyan et al."""
        return math.sqrt(self.d90 / self.n_train) if self.d90 and self.n_train else None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"bound_sqrt_d90_over_n": self.bound}

    def save(self, path: str | Path) -> Path:
        return atomic_write_text(path, json.dumps(self.to_dict(), indent=2, default=float) + "\n")


def seed_noise_of(result: dict[str, Any]) -> str | None:
    """The seed noise a d90.json's sequential search settled points with: recorded since 2026-12-07; before, the only
    one there was (baseline and points pooled); None for the all-seeds rule."""
    if result.get("seed_rule", "all") != "sequential":
        return None
    return result.get("seed_noise") or "baseline+points"


def stop_unresolved_of(result: dict[str, Any]) -> bool | None:
    """Whether a d90.json's sequential search stopped at brackets its seeds could not split: recorded since 2026-12-07;
    before, the sequential rule always did; None for the all-seeds rule."""
    if result.get("seed_rule", "all") != "sequential":
        return None
    return result.get("stop_unresolved", True)


def trial_entry(role: str, r: TrialResult) -> dict[str, Any]:
    """A trial as d90.json lists it: everything but the per-step losses (in the store and the tracker)."""
    return {"role": role, **{k: v for k, v in asdict(r).items() if k != "losses"}}


def method_of(trial: TrialConfig) -> str:
    """The row name of a sweep's method: 'said', 'did' or 'lora'."""
    return "lora" if trial.method == "lora" else ("said" if trial.said else "did")
