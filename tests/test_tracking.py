"""--report-to: trial curves and the sweep's summary in TensorBoard event files and a local MLflow store, read back."""

import json
import sqlite3
import sys

import pytest
import torch

from intrinsic_dim.cli import main
from intrinsic_dim.results import TrialResult
from intrinsic_dim.tracking import TrackerUnavailable, check_available, make_tracker, trial_name
from test_cli import _common, data_dir  # noqa: F401 - the fixture is used by name

BASE = ["--seeds", "2", "--dims", "100,1000", "--max-steps", "6", "--lr", "0.3", "--baseline", "0.6", "--threads", "1"]


def _stored(run):
    db = sqlite3.connect(run / "trials.sqlite")
    db.row_factory = sqlite3.Row
    rows = [dict(r) for r in db.execute("SELECT * FROM trials ORDER BY id")]
    db.close()
    return rows


def _name(row):
    return trial_name(row["role"], TrialResult(config=json.loads(row["config"]), status=row["status"], metric=0.0))


def _events(folder):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


@pytest.fixture
def threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_tensorboard_holds_every_trial_curve_and_the_summary(tmp_path, data_dir, threads, capsys):  # noqa: F811
    pytest.importorskip("tensorboard", reason="the tracking extra (tensorboard) is not installed")
    run = tmp_path / "run"
    args = ["measure", *_common(data_dir), *BASE, "--run-dir", str(run), "--report-to", "tensorboard"]
    assert main(args) == 0
    res = json.loads((run / "d90.json").read_text())
    rows = _stored(run)
    assert len(rows) == len(res["trials"]) == 4
    for row in rows:
        ev = _events(run / "tensorboard" / _name(row))
        losses = json.loads(row["losses"])
        assert len(losses) == row["steps"] == 6
        assert ev["train/loss"] == [(s, pytest.approx(v, rel=1e-6)) for s, v in losses]
        assert ev["validation/accuracy"] == [(s, pytest.approx(v, rel=1e-6)) for s, v in json.loads(row["curve"])]
        assert ev["test/accuracy"] == [(6, pytest.approx(row["metric"], rel=1e-6))]
    summary = _events(run / "tensorboard" / "summary")
    assert summary["threshold"][0][1] == pytest.approx(res["threshold"], rel=1e-6)
    assert [(d, round(v, 5)) for d, v in summary["curve/mean_accuracy"]] == [(p["d"], round(p["mean"], 5)) for p in res["points"]]
    if res["d90"] is not None:
        assert summary["d90"] == [(0, res["d90"])]
    before = sorted(p.name for p in (run / "tensorboard").rglob("events.out.tfevents.*"))
    assert main(args) == 0  # a resume logs no trial twice and replaces the summary
    after = sorted(p.name for p in (run / "tensorboard").rglob("events.out.tfevents.*"))
    assert len(after) == len(before) == len(rows) + 1


def test_mlflow_file_store_holds_trials_and_summary(tmp_path, data_dir, threads, monkeypatch, capsys):  # noqa: F811
    pytest.importorskip("mlflow", reason="the tracking extra (mlflow-skinny) is not installed")
    from mlflow.tracking import MlflowClient

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    run = tmp_path / "run"
    args = ["measure", *_common(data_dir), *BASE, "--run-dir", str(run), "--report-to", "mlflow"]
    assert main(args) == 0
    res = json.loads((run / "d90.json").read_text())
    client = MlflowClient(tracking_uri=(run / "mlruns").resolve().as_uri())
    exp = client.get_experiment_by_name(str(run.resolve()))
    runs = {r.info.run_name: r for r in client.search_runs([exp.experiment_id])}
    rows = _stored(run)
    assert set(runs) == {_name(r) for r in rows} | {"summary"}
    for row in rows:
        r = runs[_name(row)]
        history = client.get_metric_history(r.info.run_id, "train_loss")
        assert [(m.step, m.value) for m in sorted(history, key=lambda m: m.step)] == [tuple(x) for x in json.loads(row["losses"])]
        assert r.data.metrics["test_accuracy"] == pytest.approx(row["metric"])
        assert r.data.params["d"] == str(json.loads(row["config"])["d"]) and r.data.params["role"] == row["role"]
    summary = runs["summary"]
    curve = client.get_metric_history(summary.info.run_id, "curve_mean_accuracy")
    assert sorted((m.step, round(m.value, 9)) for m in curve) == [(p["d"], round(p["mean"], 9)) for p in res["points"]]
    assert summary.data.metrics["threshold"] == pytest.approx(res["threshold"])
    assert main(args) == 0  # resumed: the same trial runs, one summary
    again = client.search_runs([exp.experiment_id])
    assert sorted(r.info.run_name for r in again) == sorted(runs)


def test_train_reports_its_curve(tmp_path, data_dir, threads, capsys):  # noqa: F811
    pytest.importorskip("tensorboard", reason="the tracking extra (tensorboard) is not installed")
    out = tmp_path / "adapter"
    assert main(["train", *_common(data_dir), "--d", "100", "--max-steps", "5", "--threads", "1", "--out", str(out),
                 "--report-to", "tensorboard"]) == 0
    (folder,) = (out / "tensorboard").iterdir()
    assert folder.name.startswith("train-subspace-d100-seed0-")
    assert [s for s, _ in _events(folder)["train/loss"]] == [1, 2, 3, 4, 5]


def test_a_missing_tracker_is_refused_before_any_work(tmp_path, data_dir, monkeypatch, capsys):  # noqa: F811
    monkeypatch.setitem(sys.modules, "mlflow", None)
    with pytest.raises(TrackerUnavailable, match=r"pip install 'intrinsic-dim\[tracking\]'"):
        check_available("mlflow")
    with pytest.raises(ValueError, match="must be one of"):
        make_tracker("wandb", tmp_path, "accuracy")
    assert make_tracker("none", tmp_path, "accuracy") is None
    run = tmp_path / "run"
    assert main(["measure", *_common(data_dir), *BASE, "--run-dir", str(run), "--report-to", "mlflow"]) == 2
    assert "intrinsic-dim[tracking]" in capsys.readouterr().err and not run.exists()


def test_stores_without_losses_still_open(tmp_path):
    from intrinsic_dim.store import Store

    run = tmp_path / "old"
    store = Store(run)
    store.db.execute("ALTER TABLE trials DROP COLUMN losses")
    store.db.execute("INSERT INTO trials (role, config_key, method, d, seed, lr, status, metric, metrics, steps, wall_s, "
                     "trainable, curve, config, finished_at) VALUES ('search', 'k', 'subspace', 10, 0, 0.1, 'ok', 0.5, "
                     "'{}', 3, 1.0, 10, '[]', '{\"method\": \"subspace\", \"d\": 10, \"seed\": 0}', 0)")
    store.db.commit()
    store.close()
    before = (run / "trials.sqlite").read_bytes()
    reader = Store(run, read_only=True)  # as --reuse opens another run: read back, the file left as it was
    (row,) = reader.rows()
    reader.close()
    assert row["losses"] == [] and TrialResult.from_row(row).losses == []
    assert (run / "trials.sqlite").read_bytes() == before
    (row,) = Store(run).rows()  # opened to write, it gains the column
    assert row["losses"] == [] and "losses" not in before.decode("latin-1").split("CREATE TABLE trials")[1]


def test_experiment_passes_report_to_every_run(tmp_path, threads, capsys):
    pytest.importorskip("tensorboard", reason="the tracking extra (tensorboard) is not installed")
    spec = tmp_path / "tiny.yaml"
    spec.write_text("name: tiny\ndefaults: {task: mnist-5k, said: false, max_train: 100, max_eval: 40, max_steps: 4, "
                    "batch_size: 50, seeds: 1, dims: [20], baseline: 1.0, quiet: true}\n"
                    "runs:\n  - {name: a, model: fc-784-200-200-10}\n")
    out = tmp_path / "out"
    assert main(["experiment", str(spec), "--out", str(out), "--threads", "1", "--report-to", "tensorboard"]) == 0
    summary = _events(out / "a" / "tensorboard" / "summary")
    assert [d for d, _ in summary["curve/mean_accuracy"]] == [20]


def test_summary_holds_the_interval(tmp_path):
    pytest.importorskip("tensorboard", reason="the tracking extra (tensorboard) is not installed")
    summary = {"metric": "accuracy", "baseline": 0.8, "threshold": 0.72, "d90": 300, "crossing": 250.0,
               "interval": (180.0, None), "status": "found", "bracket": (100, 300),
               "points": [{"d": 100, "mean": 0.6, "values": [0.6, None]}, {"d": 300, "mean": 0.75, "values": [0.74, 0.76]}]}
    make_tracker("tensorboard", tmp_path, "accuracy").log_summary(summary)
    ev = _events(tmp_path / "tensorboard" / "summary")
    assert ev["interval/lo"] == [(0, 180.0)] and "interval/hi" not in ev and ev["d90"] == [(0, 300.0)]
    assert [d for d, _ in ev["curve/seed1_accuracy"]] == [300]  # a seed without a value is left out
