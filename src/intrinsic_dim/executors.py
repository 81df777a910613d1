"""Where a sweep's trials run: in this process (default) or on N local worker processes.

The sweep's process stays the only writer of its store: workers only compute and send each
TrialResult back, which is written the moment it arrives. A worker rebuilds the task and model from
a picklable :class:`TrialSpec`, so any trial can run anywhere and a sweep interrupted under one
executor resumes under another to the same answer.
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from typing import Callable, Protocol, Sequence

from intrinsic_dim.results import TrialResult
from intrinsic_dim.train import TrialConfig

OnDone = Callable[[int, TrialResult], None]


class Executor(Protocol):
    """Runs a batch of independent trials, reporting each result (with its index) as it finishes."""

    workers: int

    def run_many(self, cfgs: Sequence[TrialConfig], on_done: OnDone) -> None: ...

    def close(self) -> None: ...


class InProcess:
    """Trials one after another in this process, through ``runner``."""

    workers = 1

    def __init__(self, runner: Callable[[TrialConfig], TrialResult]) -> None:
        self.runner = runner

    def run_many(self, cfgs: Sequence[TrialConfig], on_done: OnDone) -> None:
        for i, cfg in enumerate(cfgs):
            on_done(i, self.runner(cfg))

    def close(self) -> None:
        """Nothing to release."""


@dataclass(frozen=True)
class TrialSpec:
    """What a worker needs to rebuild a sweep's task and models: the loading options (picklable)."""

    model: str
    task: str
    max_train: int | None
    max_eval: int | None
    max_length: int
    threads: int


_TASKS: dict[TrialSpec, object] = {}


def run_spec_trial(spec: TrialSpec, cfg: TrialConfig) -> TrialResult:
    """One trial in a worker process: the task loaded once per process, a fresh model per trial."""
    import torch

    from intrinsic_dim.models import load_model
    from intrinsic_dim.tasks import load_task
    from intrinsic_dim.train import run_trial

    torch.set_num_threads(spec.threads)
    if spec not in _TASKS:
        _TASKS[spec] = load_task(spec.task, max_train=spec.max_train, max_eval=spec.max_eval, seed=0)
    task = _TASKS[spec]
    return run_trial(lambda seed: load_model(spec.model, task, seed=seed, max_length=spec.max_length), task, cfg, progress=False)


class LocalWorkers:
    """``workers`` spawned processes on this machine, each with ``spec.threads`` torch threads."""

    def __init__(self, spec: TrialSpec, workers: int) -> None:
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        self.spec, self.workers = spec, workers
        self.pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))

    def run_many(self, cfgs: Sequence[TrialConfig], on_done: OnDone) -> None:
        futures = {self.pool.submit(run_spec_trial, self.spec, cfg): i for i, cfg in enumerate(cfgs)}
        for future in as_completed(futures):
            on_done(futures[future], future.result())

    def close(self) -> None:
        """Stop the worker processes (cancelling trials not started)."""
        self.pool.shutdown(wait=False, cancel_futures=True)
