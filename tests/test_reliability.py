"""One writer per run directory, unwritable paths refused before work, clean interrupts."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from intrinsic_dim.cli import main
from intrinsic_dim.search import measure_d90
from intrinsic_dim.store import RunDirError, RunLock
from intrinsic_dim.train import TrialConfig

HERE = str(Path(__file__).parent)

_HOLDER = textwrap.dedent(
    """
    import sys, time
    sys.path.insert(0, sys.argv[2])
    from test_search import Synthetic, _task
    from intrinsic_dim.search import measure_d90
    from intrinsic_dim.train import TrialConfig
    base = Synthetic()
    def runner(cfg):
        time.sleep(0.5)
        return base(cfg)
    measure_d90(None, _task(), seeds=1, baseline=1.0, trial=TrialConfig(said=False), log=lambda s: None,
                runner=runner, run_dir=sys.argv[1], run_config={"model": "m"})
    """
)


def _wait_for(predicate, seconds=60):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_second_process_on_a_run_dir_is_refused_and_a_killed_holder_leaves_no_stale_lock(tmp_path):
    from test_search import Synthetic, _task

    run_dir = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(run_dir), HERE])
    try:
        assert _wait_for(lambda: (run_dir / "run.lock").is_file() and "pid" in (run_dir / "run.lock").read_text())
        kw = dict(seeds=1, baseline=1.0, trial=TrialConfig(said=False), log=lambda s: None, run_config={"model": "m"})
        with pytest.raises(RunDirError, match=f"in use by pid {holder.pid}"):
            measure_d90(None, _task(), runner=Synthetic(), run_dir=run_dir, **kw)
    finally:
        holder.kill()
        holder.wait()
    r = measure_d90(None, _task(), runner=Synthetic(), run_dir=run_dir, **kw)  # the kernel dropped the dead holder's lock
    assert r.d90 is not None


def test_wait_queues_behind_the_holder(tmp_path):
    lock = RunLock(tmp_path)
    with pytest.raises(RunDirError, match="--wait"):
        RunLock(tmp_path)
    lock.release()
    with RunLock(tmp_path, wait=True):
        pass


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_read_only_run_dir_is_refused(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    with pytest.raises(RunDirError, match="not writable"):
        RunLock(ro)


def test_unusable_paths_are_refused_before_any_work(tmp_path, capsys):
    a_file = tmp_path / "file"
    a_file.write_text("x")
    argv = ["--model", "bert-tiny-random", "--task", "no-such-task-loaded-later", "--quiet"]
    assert main(["measure", *argv, "--run-dir", str(a_file)]) == 2
    assert "is a file, not a directory" in capsys.readouterr().err
    assert main(["measure", *argv, "--run-dir", str(a_file / "run")]) == 2  # nothing made, the task never loaded
    assert "not a writable directory" in capsys.readouterr().err and a_file.read_text() == "x"
    assert main(["train", *argv, "--out", str(a_file)]) == 2
    assert "--out" in capsys.readouterr().err and a_file.read_text() == "x"


@pytest.mark.parametrize("clash", [["--full-lr", "1e-4"], ["--baseline", "0.9"]])
def test_a_full_rate_search_beside_a_fixed_rate_or_given_baseline_is_refused_before_any_work(tmp_path, capsys, clash):
    argv = ["measure", "--model", "bert-tiny-random", "--task", "no-such-task-loaded-later", "--quiet",
            "--full-lr-search", "1e-5,1e-4", *clash, "--run-dir", str(tmp_path / "run")]
    assert main(argv) == 2
    dropped = clash[0].removeprefix("--").replace("-", "_")
    assert f"full_lr_search chooses the full fine-tuning rate of a measured baseline: drop {dropped}" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_sigterm_and_ctrl_c_end_with_one_line_saying_how_to_resume(tmp_path):
    for sig in (signal.SIGTERM, signal.SIGINT):
        run_dir = tmp_path / f"run{int(sig)}"
        cmd = [sys.executable, "-m", "intrinsic_dim.cli", "measure", "--model", "fc-784-200-200-10", "--task", "mnist-5k",
               "--did", "--baseline", "1.0", "--max-train", "400", "--max-eval", "100", "--dims", "10,100,1000,10000",
               "--max-steps", "3000", "--seeds", "3", "--quiet", "--threads", "1", "--run-dir", str(run_dir)]
        # a job started in the background inherits SIGINT ignored, and Python then leaves it ignored: restore it
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        assert _wait_for(lambda: (run_dir / "trials.sqlite").is_file(), 120)
        time.sleep(0.5)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 130, err
        assert "Traceback" not in err and "interrupted" in err and "rerun the same command to resume" in err


def test_an_interrupt_inside_exec_of_a_string_still_exits_130(tmp_path):
    # torch's lazy imports run dataclasses' exec of generated code; an interrupt landing there made CPython
    # kill a `python -m intrinsic_dim.cli` process with SIGINT at exit although the CLI caught it and printed its line
    (tmp_path / "interrupted_cli.py").write_text(
        "import sys\n"
        "from intrinsic_dim import cli\n"
        "def interrupted(args):\n"
        "    exec('raise KeyboardInterrupt')\n"
        "cli.cmd_measure = interrupted\n"
        f"sys.exit(cli.main(['measure', '--model', 'bert-tiny-random', '--task', 'x', '--run-dir', {str(tmp_path / 'r')!r}]))\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-m", "interrupted_cli"], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 130, proc.stderr
    assert "rerun the same command to resume" in proc.stderr


def test_an_interrupt_during_the_first_optimizer_arrives_after_it_not_inside_tritons_import():
    # CI once caught SIGTERM landing inside `torch.optim.Adam(...)`'s first, lazy import of Triton: its
    # nanobind binding cannot unwind a KeyboardInterrupt and the process aborted (status -6) instead of 130
    from intrinsic_dim import interrupts

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    reached = []
    try:
        with pytest.raises(KeyboardInterrupt):
            with interrupts.deferred():
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(0.05)
                reached.append("after the signal, inside the block")
    finally:
        signal.signal(signal.SIGINT, previous)
    assert reached == ["after the signal, inside the block"]


def test_a_sweep_whose_every_trial_diverges_still_reports(tmp_path):
    from test_search import _task

    from intrinsic_dim.report import plot_curves, write_report
    from intrinsic_dim.results import TrialResult

    def runner(cfg):
        return TrialResult(config=cfg.to_dict(), status="diverged", metric=float("nan"), error="loss became nan at step 3")

    r = measure_d90(None, _task(), dims=[10, 100], seeds=3, baseline=1.0, runner=runner, trial=TrialConfig(said=False),
                    log=lambda s: None)
    assert r.status == "no_successful_trial" and r.d90 is None and any("--lr" in n for n in r.notes)
    assert all(p.stat().st_size for p in plot_curves([r.to_dict()], tmp_path / "curve.png"))
    assert "loss became nan at step 3" in write_report([r.to_dict()], tmp_path / "report.md").read_text()


def test_a_failed_baseline_leaves_a_readable_record(tmp_path, capsys):
    run = tmp_path / "run"
    data = tmp_path / "data.csv"
    data.write_text("sentence,label\n" + "".join(f"w{i} x,{'ab'[i % 2]}\n" for i in range(40)))
    argv = ["measure", "--model", "bert-tiny-random", "--task", str(data), "--quiet", "--max-steps", "1", "--seeds", "1",
            "--baseline-seeds", "1", "--full-lr", "1e-9", "--run-dir", str(run)]
    assert main(argv) == 2
    assert "no better than always predicting the majority class" in capsys.readouterr().err
    assert (run / "trials.csv").is_file() and "no_baseline" in (run / "d90.json").read_text()
    assert main(["report", str(run)]) == 2
    assert "ended without a curve (no_baseline)" in capsys.readouterr().err


def test_killed_at_random_moments_several_times_resumes_to_the_uninterrupted_answer(tmp_path):
    """Four SIGKILLs at seeded random moments (0.1 - 1.5 s into each attempt), then a clean finish:
    same d90, crossing, interval and points as a run never interrupted, and one stored row per trial."""
    import json
    import random

    from test_search import _KILL_SCRIPT

    from intrinsic_dim.store import Store

    def run(run_dir, delay):
        return subprocess.Popen([sys.executable, "-c", _KILL_SCRIPT, str(run_dir), HERE, str(delay)], stdout=subprocess.PIPE, text=True)

    ref = json.loads(run(tmp_path / "ref", 0).communicate(timeout=120)[0])
    rng = random.Random(7)
    killed = tmp_path / "killed"
    for _ in range(4):
        proc = run(killed, 0.05)
        time.sleep(rng.uniform(0.1, 1.5))
        proc.kill()
        proc.wait()
    out = json.loads(run(killed, 0).communicate(timeout=120)[0])
    assert (out["d90"], out["crossing"], out["points"]) == (ref["d90"], ref["crossing"], ref["points"])
    rows = Store(killed).rows()
    assert len(rows) == len({r["config_key"] for r in rows}) == ref["new"]


def test_a_finished_run_in_a_directory_that_cannot_be_written_is_reported_elsewhere(tmp_path, capsys, monkeypatch):
    from test_search import Synthetic, _task

    run_dir = tmp_path / "run"
    r = measure_d90(None, _task(), seeds=1, baseline=1.0, runner=Synthetic(), trial=TrialConfig(said=False),
                    log=lambda s: None, run_dir=run_dir, run_config={"model": "m"})
    r.save(run_dir / "d90.json")
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if Path(p) == run_dir else real_access(p, mode))
    assert main(["report", str(run_dir)]) == 2
    assert "pass --out" in capsys.readouterr().err
    assert main(["report", str(run_dir), "--out", str(tmp_path / "elsewhere")]) == 0
    assert (tmp_path / "elsewhere" / "report.md").is_file()
