"""Trials for tests of local worker processes: a synthetic result at once, or the worker killed under the trial."""

from __future__ import annotations

import os
import time
import signal
from pathlib import Path

from intrinsic_dim.executors import LoadOptions
from intrinsic_dim.results import TrialResult
from intrinsic_dim.train import TrialConfig


def die_once(spec: LoadOptions, cfg: TrialConfig) -> TrialResult:
    """Seed 1 kills its worker the first time (a marker file in $DYING_WORKER_DIR remembers it); every trial else succeeds."""
    marker = Path(os.environ["DYING_WORKER_DIR"]) / f"died-{cfg.seed}"
    if cfg.seed == 1 and not marker.exists():
        marker.touch()
        os.kill(os.getpid(), signal.SIGKILL)
    return TrialResult(config=cfg.to_dict(), status="ok", metric=0.5 + cfg.seed / 100, lr=0.1)


def die_always(spec: LoadOptions, cfg: TrialConfig) -> TrialResult:
    """Seed 1 kills its worker every time; every trial else succeeds."""
    if cfg.seed == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    return TrialResult(config=cfg.to_dict(), status="ok", metric=0.5 + cfg.seed / 100, lr=0.1)


def die_beside_a_slow_trial(spec: LoadOptions, cfg: TrialConfig) -> TrialResult:
    """Seed 1 kills its worker every time, and never before seed 0 has started (a marker file in $DYING_WORKER_DIR),
    so seed 0 (3 s) is in flight whenever the two run side by side; every trial else succeeds."""
    started = Path(os.environ["DYING_WORKER_DIR"]) / "seed-0-started"
    if cfg.seed == 0:
        started.touch()
        time.sleep(3)
    deadline = time.monotonic() + 60
    while cfg.seed == 1 and not started.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return die_always(spec, cfg)
