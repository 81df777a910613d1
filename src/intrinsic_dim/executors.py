"""Where a sweep's trials run: in this process (default), on N local worker processes, or on Ray.

The sweep's process stays the only writer of its store: workers only compute and send each
TrialResult back, which is written the moment it arrives. A worker rebuilds the task and model from
a picklable :class:`LoadOptions`, so any trial can run anywhere and a sweep interrupted under one
executor resumes under another to the same answer.
"""

from __future__ import annotations

import math
import multiprocessing
import sys
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Callable, Iterable, Protocol, Sequence

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
class LoadOptions:
    """What a worker needs to rebuild a sweep's task and models: the loading options (picklable)."""

    model: str
    task: str
    max_train: int | None
    max_eval: int | None
    max_length: int
    threads: int
    metric: str | None = None
    text_columns: tuple[str, ...] | None = None
    label_column: str | None = None


_TASKS: dict[LoadOptions, object] = {}


def run_spec_trial(spec: LoadOptions, cfg: TrialConfig) -> TrialResult:
    """One trial in a worker process: the task loaded once per process, a fresh model per trial."""
    import torch

    from intrinsic_dim.models import load_model
    from intrinsic_dim.tasks import load_task
    from intrinsic_dim.train import run_trial

    torch.set_num_threads(spec.threads)
    if spec not in _TASKS:
        _TASKS[spec] = load_task(spec.task, max_train=spec.max_train, max_eval=spec.max_eval, seed=0, metric=spec.metric,
                                 text_columns=spec.text_columns, label_column=spec.label_column)
    task = _TASKS[spec]
    return run_trial(lambda seed: load_model(spec.model, task, seed=seed, max_length=spec.max_length), task, cfg, progress=False)


def lost_trial(spec: LoadOptions, cfg: TrialConfig, why: str) -> TrialResult:
    """The failed result recorded for a trial whose worker process died under it (killed, or out of memory)."""
    from intrinsic_dim.models.registry import IMAGE_MODELS

    return TrialResult(config=cfg.to_dict(), status="failed", metric=float("nan"),
                       lr=cfg.resolved_lr("image" if spec.model in IMAGE_MODELS else "text"), error=why)


class LocalWorkers:
    """``workers`` spawned processes on this machine, each with ``spec.threads`` torch threads. A worker that dies
    (killed, out of memory) loses only the trials in flight: each runs once more, alone, on a fresh pool, and a trial
    that kills its worker alone too is recorded as failed (an innocent trial lost beside it is not charged), so the
    sweep goes on with every finished trial kept. ``trial`` (a module-level function, as a spawned process imports it)
    runs one trial; ``say`` prints what became of lost trials (default: stderr)."""

    def __init__(self, spec: LoadOptions, workers: int, say: Callable[[str], None] | None = None,
                 trial: Callable[[LoadOptions, TrialConfig], TrialResult] = run_spec_trial) -> None:
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        self.spec, self.workers, self.trial = spec, workers, trial
        self.say = say or (lambda s: print(s, file=sys.stderr, flush=True))
        self.pool = self._pool()

    def _pool(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"))

    def run_many(self, cfgs: Sequence[TrialConfig], on_done: OnDone) -> None:
        lost = self._round(cfgs, range(len(cfgs)), on_done)
        if not lost:
            return
        # a dying worker breaks the whole pool, so every trial in flight is lost with it; each runs once more alone,
        # and only one that kills its worker alone as well is recorded as failed
        self.say(f"a worker process died (killed, or out of memory) with {len(lost)} trial(s) in flight; finished trials are "
                 "kept; rerunning the lost ones one at a time")
        for i in lost:
            if self._round(cfgs, [i], on_done):
                self.say(f"trial {i} killed its worker again when run alone: recorded as failed")
                on_done(i, lost_trial(self.spec, cfgs[i], "its worker process died twice while running it (killed, or out of memory)"))

    def _round(self, cfgs: Sequence[TrialConfig], indices: Iterable[int], on_done: OnDone) -> list[int]:
        """Run the trials ``indices`` on the pool; the ones lost to a broken pool (the pool is then replaced)."""
        futures = {self.pool.submit(self.trial, self.spec, cfgs[i]): i for i in indices}
        lost = []
        for future in as_completed(futures):
            try:
                result = future.result()
            except BrokenProcessPool:
                lost.append(futures[future])
                continue
            on_done(futures[future], result)
        if lost:
            self.pool.shutdown(wait=False, cancel_futures=True)
            self.pool = self._pool()
        return sorted(lost)

    def close(self) -> None:
        """Stop the worker processes (cancelling trials not started)."""
        self.pool.shutdown(wait=False, cancel_futures=True)


@dataclass(frozen=True)
class TrialResources:
    """What each trial asks a Ray cluster for: CPUs and GPUs (a fraction shares one GPU between trials)."""

    cpus: float = 1.0
    gpus: float = 0.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.cpus) and self.cpus > 0):
            raise ValueError(f"--trial-cpus must be a positive number, got {self.cpus}")
        if not (math.isfinite(self.gpus) and self.gpus >= 0):
            raise ValueError(f"--trial-gpus must be a number >= 0 (a fraction shares a GPU), got {self.gpus}")
        if self.gpus > 1 and self.gpus != int(self.gpus):
            raise ValueError(f"--trial-gpus above 1 must be a whole number, got {self.gpus}")


def import_ray():
    """The ``ray`` module, or a clear error saying what to install."""
    try:
        import ray
    except ImportError as e:
        raise ValueError(f"--executor ray needs Ray ({e}): pip install 'intrinsic-dim[ray]'") from None
    return ray


class RayExecutor:
    """Trials as Ray tasks declaring ``resources``, on the cluster at ``address`` (None: a local Ray
    started here, or the one this process already joined). Results come back to the sweep's process,
    which stays the only writer of the store."""

    def __init__(self, spec: LoadOptions, resources: TrialResources, address: str | None = None) -> None:
        ray = import_ray()
        self.ray, self.spec, self.resources = ray, spec, resources
        self.started = not ray.is_initialized()
        if self.started:
            ray.init(address=address, include_dashboard=False, log_to_driver=False)
        total = ray.cluster_resources()
        if resources.cpus > total.get("CPU", 0) or resources.gpus > total.get("GPU", 0):
            if self.started:
                ray.shutdown()
            raise ValueError(f"a trial asks for {resources.cpus:g} CPUs and {resources.gpus:g} GPUs, but the Ray cluster has "
                             f"{total.get('CPU', 0):g} CPUs and {total.get('GPU', 0):g} GPUs: lower --trial-cpus / --trial-gpus")
        self.workers = max(1, int(total.get("CPU", 1) // resources.cpus))
        self.remote = ray.remote(num_cpus=resources.cpus, num_gpus=resources.gpus, max_retries=0)(run_spec_trial)
        self.pending: list = []

    def run_many(self, cfgs: Sequence[TrialConfig], on_done: OnDone) -> None:
        refs = {self.remote.remote(self.spec, cfg): i for i, cfg in enumerate(cfgs)}
        self.pending = list(refs)
        while self.pending:
            ready, self.pending = self.ray.wait(self.pending, num_returns=1)
            on_done(refs[ready[0]], self.ray.get(ready[0]))

    def close(self) -> None:
        """Cancel trials not finished, and stop the local Ray this executor started."""
        for ref in self.pending:
            self.ray.cancel(ref, force=True)
        self.pending = []
        if self.started:
            self.ray.shutdown()
