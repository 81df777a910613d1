"""Experiment trackers: every trial's training curve and a sweep's summary in TensorBoard or MLflow.

``--report-to tensorboard`` writes event files under ``RUN_DIR/tensorboard/`` (one folder per trial,
``summary/`` for the sweep); ``--report-to mlflow`` logs one MLflow run per trial and one ``summary``
run to ``MLFLOW_TRACKING_URI``, or to a file store at ``RUN_DIR/mlruns`` when that is unset (MLflow 3
keeps its file store in maintenance mode behind ``MLFLOW_ALLOW_FILE_STORE``, which is then set). The
sweep's process logs each result as it reaches the store, so trackers work under every executor. A
trial already logged (a resumed sweep) is not logged twice; the summary is replaced on each run.
Both trackers are optional extras, imported only when asked for (``pip install 'intrinsic-dim[tracking]'``).
MLflow's usage telemetry (on by default in MLflow 3) is turned off before MLflow is imported
(``MLFLOW_DISABLE_TELEMETRY=true``) unless the user set ``MLFLOW_DISABLE_TELEMETRY`` or ``DO_NOT_TRACK`` themselves.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Protocol

from intrinsic_dim.results import TrialResult
from intrinsic_dim.store import config_key

REPORT_TO = ("none", "tensorboard", "mlflow")
_MODULES = {"tensorboard": ("tensorboard", "tensorboard"), "mlflow": ("mlflow", "mlflow-skinny")}


class TrackerUnavailable(ValueError):
    """The tracker asked for is not installed."""


class Tracker(Protocol):
    """Receives each finished trial and, at the end, the sweep's summary (``D90Result.to_dict()``)."""

    def log_trial(self, role: str, result: TrialResult) -> None: ...

    def log_summary(self, summary: dict[str, Any]) -> None: ...

    def close(self) -> None: ...


TELEMETRY_SWITCHES = ("MLFLOW_DISABLE_TELEMETRY", "DO_NOT_TRACK")


def disable_mlflow_telemetry() -> None:
    """Turn MLflow's usage telemetry off unless the user chose with one of TELEMETRY_SWITCHES: a tracker that logs to
    the user's own store should send nothing elsewhere. Before MLflow's import (which starts the telemetry client),
    or, when it was imported already, by re-making its client, which is then none."""
    if any(k in os.environ for k in TELEMETRY_SWITCHES):
        return
    os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
    if "mlflow" in sys.modules:
        from mlflow.telemetry.client import set_telemetry_client

        set_telemetry_client()


def check_available(kind: str) -> None:
    """Refuse an unknown tracker, or one whose package is missing, before any work is done."""
    if kind not in REPORT_TO:
        raise ValueError(f"--report-to must be one of {', '.join(REPORT_TO)}, got {kind!r}")
    if kind == "none":
        return
    module, package = _MODULES[kind]
    if kind == "mlflow":
        disable_mlflow_telemetry()
    try:
        __import__(module)
    except ImportError as e:
        raise TrackerUnavailable(
            f"--report-to {kind} needs the {package} package ({e}): pip install 'intrinsic-dim[tracking]'"
        ) from None


def make_tracker(kind: str, run_dir: str | Path, metric: str) -> Tracker | None:
    """The tracker ``kind`` names, storing under ``run_dir`` and naming curves after the task's ``metric`` (None for 'none')."""
    check_available(kind)
    if kind == "tensorboard":
        return TensorBoardTracker(run_dir, metric)
    if kind == "mlflow":
        return MLflowTracker(run_dir, metric)
    return None


def trial_name(role: str, result: TrialResult) -> str:
    """A readable, unique name for a trial: role, method, d, seed and a hash of its whole configuration."""
    cfg = result.config
    digest = hashlib.sha256(config_key(cfg).encode()).hexdigest()[:8]
    d = f"-d{cfg['d']}" if cfg.get("d") is not None else ""
    return f"{role}-{cfg['method']}{d}-seed{cfg['seed']}-{digest}"


def _trial_scalars(result: TrialResult, metric: str) -> list[tuple[str, float, int]]:
    """(tag, value, step) of a trial's training curve and its reported numbers."""
    out = [("train/loss", v, step) for step, v in result.losses]
    out += [(f"validation/{metric}", v, step) for step, v in result.curve]
    if result.ok:
        out += [(f"test/{metric}", result.metric, result.steps), (f"selected/validation_{metric}", result.val_metric, result.steps)]
    return out


def _summary_scalars(summary: dict[str, Any]) -> list[tuple[str, float, int]]:
    """(tag, value, step) of a sweep: d90 and its interval, the threshold, and the curve of metric against d."""
    metric = summary["metric"]
    out = [(k, float(summary[k]), 0) for k in ("baseline", "threshold") if summary.get(k) is not None]
    if summary.get("d90") is not None:
        out.append(("d90", float(summary["d90"]), 0))
    if summary.get("crossing") is not None:
        out.append(("crossing", float(summary["crossing"]), 0))
    for name, value in zip(("lo", "hi"), summary.get("interval") or ()):
        if value is not None:
            out.append((f"interval/{name}", float(value), 0))
    for p in summary["points"]:
        out.append((f"curve/mean_{metric}", float(p["mean"]), int(p["d"])))
        out += [(f"curve/seed{k}_{metric}", float(v), int(p["d"])) for k, v in enumerate(p["values"]) if v is not None]
    return out


class TensorBoardTracker:
    """Event files under ``run_dir/tensorboard``: ``<trial name>/`` per trial and ``summary/``."""

    def __init__(self, run_dir: str | Path, metric: str) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.root, self.metric = Path(run_dir) / "tensorboard", metric
        self.writer_cls = SummaryWriter

    def log_trial(self, role: str, result: TrialResult) -> None:
        """Write the trial's curve, unless a folder of that trial already holds events."""
        folder = self.root / trial_name(role, result)
        if any(folder.glob("events.out.tfevents.*")):
            return
        writer = self.writer_cls(str(folder))
        for tag, value, step in _trial_scalars(result, self.metric):
            writer.add_scalar(tag, value, step)
        writer.add_text("config", f"`{config_key(result.config)}` status {result.status}", 0)
        writer.close()

    def log_summary(self, summary: dict[str, Any]) -> None:
        """Replace ``summary/`` with this sweep's d90, interval and curve (step = d)."""
        folder = self.root / "summary"
        shutil.rmtree(folder, ignore_errors=True)
        writer = self.writer_cls(str(folder))
        for tag, value, step in _summary_scalars(summary):
            writer.add_scalar(tag, value, step)
        writer.add_text("status", f"{summary['status']}; bracket {summary['bracket']}", 0)
        writer.close()

    def close(self) -> None:
        """Every writer is closed after each call: nothing to release."""


class MLflowTracker:
    """One MLflow run per trial (tagged with its configuration's hash) and one ``summary`` run, in an
    experiment named after the run directory's absolute path."""

    TRIAL_TAG = "intrinsic_dim.trial"
    SUMMARY_TAG = "intrinsic_dim.summary"

    def __init__(self, run_dir: str | Path, metric: str) -> None:
        disable_mlflow_telemetry()
        from mlflow.tracking import MlflowClient

        self.metric = metric
        run_dir = Path(run_dir).resolve()
        self.uri = os.environ.get("MLFLOW_TRACKING_URI") or (run_dir / "mlruns").as_uri()
        if self.uri.startswith("file:"):  # MLflow 3 refuses its file store (maintenance mode) unless opted in
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        self.client = MlflowClient(tracking_uri=self.uri)
        name = str(run_dir)
        experiment = self.client.get_experiment_by_name(name)
        self.experiment_id = experiment.experiment_id if experiment else self.client.create_experiment(name)

    def _runs(self, tag: str, value: str) -> list[Any]:
        return self.client.search_runs([self.experiment_id], filter_string=f"tags.`{tag}` = '{value}'")

    def _log(self, run_name: str, tags: dict[str, str], scalars: list[tuple[str, float, int]], params: dict[str, Any]) -> None:
        from mlflow.entities import Metric, Param

        run = self.client.create_run(self.experiment_id, run_name=run_name, tags=tags)
        now = int(time.time() * 1000)
        metrics = [Metric(tag.replace("/", "_"), value, now, step) for tag, value, step in scalars]
        params_list = [Param(k, str(v)[:500]) for k, v in params.items()]
        for i in range(0, max(len(metrics), 1), 1000):
            self.client.log_batch(run.info.run_id, metrics=metrics[i : i + 1000], params=params_list if i == 0 else [])
        self.client.set_terminated(run.info.run_id)

    def log_trial(self, role: str, result: TrialResult) -> None:
        """Log the trial as a run of its own, unless a run with its name is already there."""
        name = trial_name(role, result)
        if self._runs(self.TRIAL_TAG, name):
            return
        params = {"role": role, "status": result.status, "lr": result.lr} | {k: v for k, v in result.config.items() if k != "lr"}
        self._log(name, {self.TRIAL_TAG: name}, _trial_scalars(result, self.metric), params)

    def log_summary(self, summary: dict[str, Any]) -> None:
        """Replace the ``summary`` run with this sweep's d90, interval and curve (step = d)."""
        for run in self._runs(self.SUMMARY_TAG, "1"):
            self.client.delete_run(run.info.run_id)
        params = {k: summary.get(k) for k in ("task", "model", "metric", "fraction", "status", "mode", "seeds", "bracket",
                                              "projection", "said")}
        self._log("summary", {self.SUMMARY_TAG: "1"}, _summary_scalars(summary), params)

    def close(self) -> None:
        """Runs are ended after each call: nothing to release."""
