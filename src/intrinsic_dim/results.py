"""TrialResult, the outcome of one trial, and its stored row form (what the store writes and reads)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from intrinsic_dim.projection import DEFAULT_MAX_DENSE_ELEMENTS

LATER_DEFAULTS = {"normalisation": "released", "dense_max_elements": DEFAULT_MAX_DENSE_ELEMENTS, "lora_alpha": None, "lora_targets": None,
                  "select_examples": None, "gap_examples": None, "autocast": None,
                  "base_quant": None}
"""Trial settings added after 0.1.0 and their defaults: a key leaves them out at the default, so stores written before resume."""
NOT_FULL = ("said", "projection", "layout", "groups", "normalisation", "dense_max_elements", "lora_alpha", "lora_targets")
"""Settings of the subspace or of LoRA: a full fine-tuning trial does not read them, so two full trials that differ only
here are the same trial (a SAID and a DID run of one budget share their baseline through reuse)."""


def stored_key(config: dict[str, Any]) -> dict[str, Any]:
    """A trial's settings in the form its stored row is keyed by: every key compatibility rule of the store lives here
    (the settings added after 0.1.0 are left out at their defaults, so stores written before still resume)."""
    return {k: v for k, v in config.items() if not (k in LATER_DEFAULTS and v == LATER_DEFAULTS[k])}



@dataclass
class TrialResult:
    """Outcome of one trial. status: 'ok', 'diverged' (NaN/inf loss) or 'failed' (an exception).

    ``metric`` is the reported value: the selected checkpoint on the test split. ``val_metric`` is
    what selected it (validation), ``train_metric`` the same checkpoint on a training sample (for
    the generalisation gap) that ``train_sample`` describes; ``curve`` holds (step, validation
    metric) pairs and ``losses`` (step, training loss) pairs, one per optimizer step (what a tracker
    logs as the training curve).
    """

    config: dict[str, Any]
    status: str
    metric: float
    val_metric: float = float("nan")
    train_metric: float = float("nan")
    train_sample: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    lr: float = 0.0
    steps: int = 0
    train_loss: float = float("nan")
    wall_s: float = 0.0
    curve: list[tuple[int, float]] = field(default_factory=list)
    losses: list[tuple[int, float]] = field(default_factory=list)
    trainable: int = 0
    error: str | None = None
    machine: str = ""
    """The hardware the trial ran on (``machine.describe``); empty for a trial stored before it was recorded."""

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_row(self) -> dict[str, Any]:
        """The store's columns for this result (JSON text for nested values, None for NaN)."""
        cfg = self.config
        return {
            "method": cfg["method"], "d": cfg.get("d"), "seed": cfg["seed"], "lr": self.lr, "status": self.status,
            "metric": _nan_to_none(self.metric), "val_metric": _nan_to_none(self.val_metric),
            "train_metric": _nan_to_none(self.train_metric), "train_sample": self.train_sample or None, "metrics": json.dumps(self.metrics), "steps": self.steps,
            "train_loss": _nan_to_none(self.train_loss), "wall_s": self.wall_s, "trainable": self.trainable,
            "curve": json.dumps(self.curve), "losses": json.dumps(self.losses), "error": self.error, "machine": self.machine or None, "config": json.dumps(cfg),
        }

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> TrialResult:
        """The result a stored row describes (the inverse of :meth:`to_row`, NULL read back as NaN)."""
        def decode(v: Any) -> Any:
            return json.loads(v) if isinstance(v, str) else v

        sample = row.get("train_sample") or ""  # none: a trial stored before the sample was drawn at random
        return cls(
            config=decode(row["config"]), status=row["status"], metric=_none_to_nan(row["metric"]),
            val_metric=_none_to_nan(row["val_metric"]), train_metric=_none_to_nan(row["train_metric"]) if sample else float("nan"),
            train_sample=sample,
            metrics=decode(row["metrics"]), lr=row["lr"], steps=row["steps"], train_loss=_none_to_nan(row["train_loss"]),
            wall_s=row["wall_s"], curve=[tuple(c) for c in decode(row["curve"])],
            losses=[tuple(c) for c in decode(row.get("losses") or "[]")], trainable=row["trainable"],
            error=row["error"], machine=row.get("machine") or "",
        )


def _nan_to_none(x: float) -> float | None:
    return None if isinstance(x, float) and math.isnan(x) else x


def _none_to_nan(x: float | None) -> float:
    return float("nan") if x is None else x
