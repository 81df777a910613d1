"""The intrinsic-dim command end to end on a tiny model and tiny real-format data."""

import csv
import json
import random
import subprocess
import sys

import pytest
import torch

from intrinsic_dim.cli import main

POS = ["great", "lovely", "happy", "good", "fine", "excellent"]
NEG = ["awful", "sad", "bad", "terrible", "poor", "horrible"]


def _write(path, n, seed):
    rng = random.Random(seed)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["sentence", "label"])
        for _ in range(n):
            lab = rng.randrange(2)
            words = [rng.choice(POS if lab else NEG) for _ in range(3)] + ["the", "day"]
            rng.shuffle(words)
            w.writerow([" ".join(words), "pos" if lab else "neg"])


@pytest.fixture
def data_dir(tmp_path):
    d = tmp_path / "data"
    d.mkdir()
    _write(d / "train.csv", 96, 0)
    _write(d / "validation.csv", 48, 1)
    return d


def _common(data_dir):
    return ["--model", "bert-tiny-random", "--task", str(data_dir), "--quiet", "--batch-size", "16", "--max-length", "16"]


def test_measure_writes_results_and_resumes(tmp_path, data_dir, capsys):
    run = tmp_path / "run"
    args = ["measure", *_common(data_dir), "--seeds", "2", "--dims", "100,1000", "--epochs", "5", "--full-lr", "3e-3",
            "--lr", "0.3", "--run-dir", str(run)]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "d90" in out and "plot:" in out
    for name in ("d90.json", "trials.csv", "curve.png", "report.md", "trials.sqlite"):
        assert (run / name).is_file(), name
    res = json.loads((run / "d90.json").read_text())
    assert res["task"].endswith("data") and res["metric"] == "accuracy" and res["points"]
    n_trials = len(res["trials"])
    rows = list(csv.DictReader(open(run / "trials.csv")))
    assert len(rows) == n_trials and {r["role"] for r in rows} == {"baseline", "search"}
    assert main(args) == 0
    again = capsys.readouterr().out
    assert again.count("resumed") == n_trials
    assert json.loads((run / "d90.json").read_text())["d90"] == res["d90"]
    assert "| d |" in (run / "report.md").read_text()


def test_measure_refuses_run_dir_of_other_configuration(tmp_path, data_dir, capsys):
    run = tmp_path / "run"
    base = ["measure", *_common(data_dir), "--seeds", "1", "--dims", "100", "--baseline", "0.9", "--max-steps", "2", "--run-dir", str(run)]
    assert main(base) == 0
    assert main(base + ["--max-train", "50"]) == 2
    assert "different configuration" in capsys.readouterr().err


def test_resume_with_another_thread_count_is_refused(tmp_path, data_dir, capsys):
    """Conv nets give different numbers at different thread counts: a run directory records its count."""
    run = tmp_path / "run"
    base = ["measure", *_common(data_dir), "--seeds", "1", "--dims", "100", "--baseline", "0.9", "--max-steps", "2", "--run-dir", str(run)]
    before = torch.get_num_threads()
    try:
        assert main(base + ["--threads", "1"]) == 0
        assert json.loads((run / "d90.json").read_text())["threads"] == 1
        assert main(base + ["--threads", "2"]) == 2
        assert "'threads': (1, 2)" in capsys.readouterr().err
        assert main(base + ["--threads", "1"]) == 0
    finally:
        torch.set_num_threads(before)


def test_local_workers_give_the_in_process_answer_and_resume_across_executors(tmp_path, data_dir, capsys):
    before = torch.get_num_threads()
    base = ["measure", *_common(data_dir), "--seeds", "2", "--dims", "100,1000", "--max-steps", "6", "--lr", "0.3",
            "--baseline", "0.9", "--threads", "1"]
    try:
        assert main(base + ["--run-dir", str(tmp_path / "one")]) == 0
        assert main(base + ["--run-dir", str(tmp_path / "two"), "--workers", "2"]) == 0
        one, two = (json.loads((tmp_path / d / "d90.json").read_text()) for d in ("one", "two"))
        assert one["points"] == two["points"] and one["d90"] == two["d90"]
        capsys.readouterr()
        assert main(base + ["--run-dir", str(tmp_path / "two")]) == 0  # in-process resume of a worker-made run
        assert capsys.readouterr().out.count("resumed") == len(two["trials"])
    finally:
        torch.set_num_threads(before)


def test_report_overlays_runs(tmp_path, data_dir, capsys):
    runs = []
    for method in ("--said", "--did"):
        run = tmp_path / method.strip("-")
        main(["measure", *_common(data_dir), method, "--seeds", "1", "--dims", "100,300", "--baseline", "0.6",
              "--max-steps", "3", "--run-dir", str(run)])
        runs.append(str(run))
    out = tmp_path / "cmp"
    assert main(["report", *runs, "--out", str(out)]) == 0
    text = (out / "report.md").read_text()
    assert "SAID" in text and "DID" in text and (out / "curve.png").stat().st_size > 10_000


def test_train_evaluate_merge_roundtrip(tmp_path, data_dir, capsys):
    adapter = tmp_path / "adapter"
    assert main(["train", *_common(data_dir), "--d", "200", "--max-steps", "12", "--lr", "0.3", "--seed", "3", "--out", str(adapter)]) == 0
    trained = capsys.readouterr().out
    assert "adapter saved" in trained
    final = float(trained.split(", test ")[1].split(";")[0])
    assert (adapter / "adapter_model.safetensors").stat().st_size < 4096
    assert "accuracy: validation" in (adapter / "README.md").read_text()  # the model card records the metric
    assert main(["evaluate", "--adapter", str(adapter), "--quiet"]) == 0  # model, task and length come from the adapter
    report = json.loads(capsys.readouterr().out)
    assert report["accuracy"] == pytest.approx(final, abs=1e-9) and report["model"] == "bert-tiny-random"
    merged = tmp_path / "merged"
    assert main(["merge", str(adapter), "--out", str(merged)]) == 0
    from transformers import AutoModelForSequenceClassification

    assert AutoModelForSequenceClassification.from_pretrained(merged).num_labels == 2
    again = tmp_path / "merged-again"  # the same model, task and seed given as flags: the same weights
    assert main(["merge", str(adapter), "--out", str(again), "--model", "bert-tiny-random", "--task", str(data_dir), "--seed", "3"]) == 0
    assert (again / "model.safetensors").read_bytes() == (merged / "model.safetensors").read_bytes()
    capsys.readouterr()
    assert main(["merge", str(adapter), "--out", str(tmp_path / "other"), "--seed", "4"]) == 2  # the flag is used: another head
    assert "fingerprint" in capsys.readouterr().err and not (tmp_path / "other").exists()
    _resign_with_huge_z(adapter, tmp_path / "huge")  # finite z whose P(z) overflows: no infinite weights are written
    assert main(["merge", str(tmp_path / "huge"), "--out", str(tmp_path / "inf")]) == 2
    assert "NaN or infinite" in capsys.readouterr().err and not (tmp_path / "inf").exists()


def test_train_and_evaluate_an_int8_adapter_on_the_command_line(tmp_path, data_dir, capsys):
    adapter = tmp_path / "adapter"
    assert main(["train", "--model", "bert-tiny-random", "--task", str(data_dir), "--max-length", "16", "--quiet", "--d", "100",
                 "--max-steps", "6", "--lr", "0.3", "--base-quant", "int8", "--out", str(adapter)]) == 0
    final = float(capsys.readouterr().out.split(", test ")[1].split(";")[0])
    assert json.loads((adapter / "adapter_config.json").read_text())["base_quant"] == "int8"
    assert main(["evaluate", "--adapter", str(adapter), "--quiet"]) == 0
    assert json.loads(capsys.readouterr().out)["accuracy"] == pytest.approx(final, abs=1e-9)


def _resign_with_huge_z(adapter, out):
    import hashlib

    from safetensors.torch import load, save

    from intrinsic_dim.adapter import config_checksum

    out.mkdir()
    tensors = load((adapter / "adapter_model.safetensors").read_bytes())
    weights = save(tensors | {"z": torch.full_like(tensors["z"], 3e38)})
    (out / "adapter_model.safetensors").write_bytes(weights)
    config = json.loads((adapter / "adapter_config.json").read_text()) | {"weights_sha256": hashlib.sha256(weights).hexdigest()}
    (out / "adapter_config.json").write_text(json.dumps(config | {"config_sha256": config_checksum(config)}))


def test_config_file_with_flag_override(tmp_path, data_dir, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"model: bert-tiny-random\ntask: {data_dir}\nseeds: 1\ndims: 100\nbaseline: 0.9\nmax_steps: 2\nquiet: true\n")
    run = tmp_path / "r"
    # 0.6 x 0.9 = 0.54 stays above the majority class (0.5), which a threshold must now beat
    assert main(["measure", "--config", str(cfg), "--run-dir", str(run), "--fraction", "0.6"]) == 0
    assert json.loads((run / "d90.json").read_text())["fraction"] == 0.6
    bad = tmp_path / "bad.yaml"
    bad.write_text("modle: x\n")
    assert main(["measure", "--config", str(bad)]) == 2
    assert "unknown option" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv,message",
    [
        (["measure", "--task", "no-such-task", "--model", "bert-tiny-random"], "unknown task"),
        (["train", "--model", "no-such-model", "--task", "mnist-5k"], "no-such-model"),
        (["train", "--d", "100000000"], "exceeds D"),
    ],
)
def test_user_errors_are_clear(argv, message, data_dir, capsys):
    argv = [*argv, "--quiet", "--max-steps", "1"]
    if "--task" not in argv:
        argv += ["--task", str(data_dir), "--model", "bert-tiny-random"]
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_subsample_limits_are_checked_by_the_parser(capsys):
    assert main(["train", "--max-train", "0"]) == 2
    assert "positive integer or 'all'" in capsys.readouterr().err


def test_bad_data_files(tmp_path, capsys):
    empty = tmp_path / "empty.csv"
    empty.write_text("sentence,label\n")
    nolabel = tmp_path / "nolabel.csv"
    nolabel.write_text("sentence,target\nhello,1\nworld,0\n")
    for path, msg in ((empty, "empty"), (nolabel, "label")):
        assert main(["train", "--task", str(path), "--model", "bert-tiny-random", "--quiet", "--max-steps", "1"]) == 2
        assert msg in capsys.readouterr().err.lower()


@pytest.mark.parametrize("verb", ["measure", "train", "evaluate", "merge", "report"])
def test_help_of_every_verb(verb):
    out = subprocess.run([sys.executable, "-m", "intrinsic_dim.cli", verb, "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "usage: intrinsic-dim " + verb in out.stdout


def test_measure_on_images_with_absolute_baseline(tmp_path, capsys):
    """Li et al.'s setting: an FC net on MNIST digits, DID, absolute baseline 1.0 (threshold 0.9)."""
    run = tmp_path / "mnist"
    argv = ["measure", "--model", "fc-784-200-200-10", "--task", "mnist-5k", "--did", "--baseline", "1.0", "--max-train", "400",
            "--max-eval", "200", "--dims", "20,2000", "--max-steps", "15", "--batch-size", "64", "--quiet", "--run-dir", str(run)]
    assert main(argv) == 0
    res = json.loads((run / "d90.json").read_text())
    assert res["threshold"] == pytest.approx(0.9) and res["baseline_source"] == "given" and not res["said"]
    small = next(p for p in res["points"] if p["d"] == 20)
    large = next(p for p in res["points"] if p["d"] == 2000)
    assert 0.1 < small["mean"] < large["mean"]


def test_stop_after_ends_a_part_at_a_trial_boundary_and_the_rerun_continues(tmp_path, data_dir, capsys, monkeypatch):
    from intrinsic_dim import interrupts

    run = tmp_path / "run"
    args = ["measure", *_common(data_dir), "--seeds", "2", "--dims", "100,1000", "--epochs", "2", "--baseline", "1.0", "--lr", "0.3",
            "--run-dir", str(run)]
    clock = iter(range(0, 10**6, 60))  # every reading of the clock is a minute later than the last
    monkeypatch.setattr(interrupts.time, "monotonic", lambda: next(clock))
    assert main([*args, "--stop-after", "2"]) == 75
    err = capsys.readouterr().err
    assert "part ended after 2 min at a trial boundary" in err and "rerun the same command" in err
    assert not (run / "d90.json").exists()
    kept = list(csv.DictReader(open(run / "trials.csv")))
    assert 1 <= len(kept) < 4 and all(r["status"] == "ok" for r in kept)
    monkeypatch.undo()
    assert main(args) == 0
    assert capsys.readouterr().out.count("resumed") == len(kept)  # the trials of the part are kept, not rerun
    assert json.loads((run / "d90.json").read_text())["points"]
    assert main([*args, "--stop-after", "0"]) == 2
    assert "--stop-after must be a positive number of minutes" in capsys.readouterr().err
