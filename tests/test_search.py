"""The d90 search on a synthetic objective whose true d90 is known; the store; resume."""

import csv
import hashlib
import json
import math
import sqlite3
import subprocess
import sys
import textwrap
import time
from dataclasses import replace

import pytest
import torch

from intrinsic_dim.report import format_bracket, format_interval
from intrinsic_dim.search import BaselineError, measure_d90
from intrinsic_dim.experiment import summary_row
from intrinsic_dim.fingerprint import KEY as FINGERPRINT
from intrinsic_dim.fingerprint import weights_fingerprint
from intrinsic_dim.spec import MeasureSpec, SpecError
from intrinsic_dim.store import RunConfigMismatch, Store
from intrinsic_dim.tasks.base import Split, Task
from intrinsic_dim.results import TrialResult
from intrinsic_dim.train import TrialConfig

TRUE_D90 = 3981.07  # metric(d) = log10(d) / 4 crosses 0.9 at d = 10**3.6
NOISE_LOW = TRUE_D90 * 10 ** (-4 * 0.004)  # the smallest d that Synthetic's noise (+-0.004) can lift to 0.9


def _task(n_train=1000):
    split = Split(labels=torch.arange(n_train) % 2, texts=[("x",)] * n_train)
    return Task(name="synthetic", kind="text", label_names=["a", "b"], metric="accuracy", train=split, eval=split, description="synthetic")


class Synthetic:
    """metric(d, seed) = log10(d)/4 + seeded noise (uniform in +-noise); optionally diverges at one point.

    ``replicate`` changes every noise draw (an independent repetition of the whole experiment);
    ``stop_at`` emulates the old early stop: a seed that passes it is reported at about that value."""

    def __init__(self, noise=0.004, diverge_at=None, replicate=0, stop_at=None):
        self.calls = []
        self.noise, self.diverge_at, self.replicate, self.stop_at = noise, diverge_at, replicate, stop_at

    def __call__(self, cfg: TrialConfig) -> TrialResult:
        self.calls.append((cfg.method, cfg.d, cfg.seed))
        if cfg.method == "full":
            return TrialResult(config=cfg.to_dict(), status="ok", metric=1.0, val_metric=1.0, train_metric=1.0, train_sample="synthetic", lr=1e-3)
        if cfg.d == self.diverge_at and cfg.seed == 1:
            return TrialResult(config=cfg.to_dict(), status="diverged", metric=float("nan"), error="loss became nan")
        g = torch.Generator().manual_seed((self.replicate * 1_000_003 + cfg.d) * 100 + cfg.seed)
        noise = self.noise * (2 * torch.rand(1, generator=g).item() - 1)
        value = min(1.0, math.log10(cfg.d) / 4 + noise)
        if self.stop_at is not None and value >= self.stop_at:
            value = self.stop_at + 0.001
        return TrialResult(config=cfg.to_dict(), status="ok", metric=value, val_metric=value, train_metric=value + 0.02,
                           train_sample="synthetic", lr=0.1)


def test_search_finds_known_d90():
    run = Synthetic()
    r = measure_d90(None, _task(), seeds=3, precision=0.05, runner=run, trial=TrialConfig(said=False), log=lambda s: None)
    assert r.baseline == 1.0 and r.threshold == pytest.approx(0.9)
    assert r.status == "found" and r.monotone
    assert NOISE_LOW <= r.d90 <= TRUE_D90 * 1.06
    assert r.crossing == pytest.approx(TRUE_D90, rel=0.05)
    lo, hi = r.interval
    assert lo <= r.bracket[0] < r.crossing <= r.bracket[1] == r.d90 <= hi and hi / lo < 1.5
    assert r.bound == pytest.approx(math.sqrt(r.d90 / 1000))
    # the coarse pass stopped one grid point after the first passing one (10000): nothing above 30000
    assert max(d for _, d, _ in run.calls if d) == 30000
    assert len([c for c in run.calls if c[0] == "full"]) == 3


def test_search_with_given_baseline_and_fraction():
    run = Synthetic()
    r = measure_d90(None, _task(), seeds=2, fraction=0.8, baseline=0.9, runner=run, trial=TrialConfig(said=False), log=lambda s: None)
    assert not any(m == "full" for m, _, _ in run.calls)
    assert r.threshold == pytest.approx(0.72)
    true = 10 ** (0.72 * 4)
    assert true <= r.d90 <= true * 1.16


def test_search_steps_below_grid_and_reports_out_of_range():
    r = measure_d90(None, _task(), dims=[30000], seeds=1, baseline=1.0, runner=Synthetic(), trial=TrialConfig(said=False), log=lambda s: None)
    assert NOISE_LOW <= r.d90 <= TRUE_D90 * 1.16
    r2 = measure_d90(None, _task(), dims=[10, 100], seeds=1, baseline=1.0, runner=Synthetic(), trial=TrialConfig(said=False), log=lambda s: None)
    assert r2.d90 is None and r2.status == "above_largest" and "d90 > 100" in r2.notes[0]


def test_diverged_trial_counts_as_failed_point():
    run = Synthetic(diverge_at=10000)
    r = measure_d90(None, _task(), dims=[1000, 10000, 30000], seeds=2, baseline=1.0, runner=run, trial=TrialConfig(said=False), log=lambda s: None)
    point = {p["d"]: p for p in r.points}
    assert not point[10000]["passed"] and point[30000]["passed"]
    assert any(t["status"] == "diverged" for t in r.trials)
    assert not r.monotone or r.d90 > 10000


def test_bad_arguments():
    for kw in (dict(fraction=0), dict(seeds=0), dict(dims=[0, 10]), dict(precision=0)):
        with pytest.raises(ValueError):
            measure_d90(None, _task(), baseline=1.0, runner=Synthetic(), trial=TrialConfig(said=False), log=lambda s: None, **kw)


class Interrupt(Exception):
    pass


def test_resume_after_interruption_equals_uninterrupted(tmp_path):
    kw = dict(seeds=2, precision=0.05, trial=TrialConfig(said=False), log=lambda s: None, run_config={"model": "m"})
    full = measure_d90(None, _task(), runner=Synthetic(), run_dir=tmp_path / "a", **kw)

    calls = 0

    def flaky(cfg):
        nonlocal calls
        calls += 1
        if calls == 9:
            raise Interrupt()
        return Synthetic()(cfg)

    with pytest.raises(Interrupt):
        measure_d90(None, _task(), runner=flaky, run_dir=tmp_path / "b", **kw)
    assert len(Store(tmp_path / "b").rows()) == 8
    second = Synthetic()
    resumed = measure_d90(None, _task(), runner=second, run_dir=tmp_path / "b", **kw)
    assert len(second.calls) == len(full.trials) - 8
    assert (resumed.d90, resumed.crossing, resumed.interval, resumed.points) == (full.d90, full.crossing, full.interval, full.points)
    rerun = Synthetic()
    measure_d90(None, _task(), runner=rerun, run_dir=tmp_path / "b", **kw)
    assert rerun.calls == []


def test_run_dir_of_other_configuration_is_refused(tmp_path):
    kw = dict(seeds=1, baseline=1.0, trial=TrialConfig(said=False), log=lambda s: None, runner=Synthetic(), dims=[10000])
    measure_d90(None, _task(), run_dir=tmp_path, run_config={"model": "a", "task": "t"}, **kw)
    with pytest.raises(RunConfigMismatch, match="model"):
        measure_d90(None, _task(), run_dir=tmp_path, run_config={"model": "b", "task": "t"}, **kw)


def test_a_checkpoint_made_again_at_the_same_path_is_not_resumed_but_a_store_from_before_fingerprints_is(tmp_path):
    folder = tmp_path / "checkpoint-1000"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"first weights")
    (folder / "config.json").write_text("{}")
    spec = MeasureSpec.from_dict({"model": str(folder), "task": "reuters-r8"})
    made = spec.run_config(1)
    assert made[FINGERPRINT] == weights_fingerprint(str(folder)) and len(made[FINGERPRINT]) == 16
    store = Store(tmp_path / "run")
    store.check_run_config(made)
    store.put("search", TrialResult(config=TrialConfig(d=10).to_dict(), status="ok", metric=0.5))
    (folder / "config.json").write_text('{"edited": true}')  # not a weight file: the same weights
    store.check_run_config(spec.run_config(1))
    (folder / "model.safetensors").write_bytes(b"other weights")
    with pytest.raises(RunConfigMismatch, match="made again or changed"):
        store.check_run_config(spec.run_config(1))
    old = Store(tmp_path / "old")  # recorded before fingerprints: the rest must match, the fingerprint is not asked
    old.check_run_config({k: v for k, v in made.items() if k != FINGERPRINT})
    old.put("search", TrialResult(config=TrialConfig(d=10).to_dict(), status="ok", metric=0.5))
    old.check_run_config(spec.run_config(1))
    with pytest.raises(RunConfigMismatch, match="threads"):
        old.check_run_config(spec.run_config(2))
    assert MeasureSpec.from_dict({"model": "minilm"}).run_config(1).get(FINGERPRINT) is None
    kw = dict(seeds=1, baseline=1.0, trial=TrialConfig(said=False), log=lambda s: None, runner=Synthetic(), dims=[10000])
    result = measure_d90(None, _task(), run_dir=tmp_path / "measured", run_config=spec.run_config(1), **kw)
    assert result.model_weights == weights_fingerprint(str(folder)) != made[FINGERPRINT]  # which bits ran, in d90.json
    assert summary_row("r", result.to_dict())["model_weights"] == result.model_weights


def test_a_key_stored_with_another_number_type_is_found_and_its_run_resumes(tmp_path):
    store = Store(tmp_path)  # stores written when epochs were ints hold "epochs":30 where today's key says 30.0
    store.check_run_config({"model": "m", "max_train": 2000})
    old = TrialConfig(d=10, epochs=30).to_dict() | {"epochs": 30}
    store.put("search", TrialResult(config=old, status="ok", metric=0.5))
    assert store.get(TrialConfig(d=10, epochs=30.0).to_dict())["metric"] == 0.5
    assert store.get(TrialConfig(d=10, epochs=31.0).to_dict()) is None
    store.check_run_config({"model": "m", "max_train": 2000.0})
    with pytest.raises(RunConfigMismatch, match="max_train"):
        store.check_run_config({"model": "m", "max_train": 2001})


def test_the_cost_of_a_d90_is_counted_in_its_own_full_fine_tunings():
    from intrinsic_dim.search.stats import cost_in_full_trials

    assert cost_in_full_trials([("full", 2.0), ("subspace", 4.0), ("full", 4.0), ("subspace", 5.0)]) == 15.0 / 3.0
    assert cost_in_full_trials([("subspace", 4.0)]) is None


def test_store_rows_and_csv(tmp_path):
    store = Store(tmp_path)
    cfg = TrialConfig(d=10)
    store.put("search", TrialResult(config=cfg.to_dict(), status="diverged", metric=float("nan"), error="nan loss"))
    row = store.get(cfg.to_dict())
    assert row["status"] == "diverged" and row["metric"] is None and row["d"] == 10
    assert math.isnan(TrialResult.from_row(row).metric)
    text = store.export_csv(tmp_path / "trials.csv").read_text().splitlines()
    assert text[0].startswith("id,role,method,d,seed") and "diverged" in text[1]
    assert sqlite3.connect(tmp_path / "trials.sqlite").execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_trial_s_machine_is_stored_and_a_store_from_before_reads_back_without_one(tmp_path):
    cfg = TrialConfig(d=10)
    store = Store(tmp_path)
    store.put("search", TrialResult(config=cfg.to_dict(), status="ok", metric=0.5, machine="cpu X (avx2); 1 thread; torch 2"))
    assert TrialResult.from_row(store.get(cfg.to_dict())).machine == "cpu X (avx2); 1 thread; torch 2"
    assert next(csv.DictReader(open(store.export_csv(tmp_path / "trials.csv"))))["machine"] == "cpu X (avx2); 1 thread; torch 2"
    store.close()
    with sqlite3.connect(tmp_path / "trials.sqlite") as db:  # a store written before the machine was recorded
        db.execute("ALTER TABLE trials DROP COLUMN machine")
    old = Store(tmp_path, read_only=True)
    assert TrialResult.from_row(old.get(cfg.to_dict())).machine == ""
    old.close()
    resumed = Store(tmp_path)
    assert TrialResult.from_row(resumed.get(cfg.to_dict())).machine == ""
    resumed.put("search", TrialResult(config=TrialConfig(d=20).to_dict(), status="ok", metric=0.6, machine="cpu Y"))
    assert [r["machine"] for r in resumed.rows()] == [None, "cpu Y"]


class TwoMachines(Synthetic):
    """Seed 1 of every point ran on another machine (a run resumed elsewhere)."""

    def __call__(self, cfg):
        r = super().__call__(cfg)
        r.machine = "cpu B (avx2)" if cfg.seed == 1 else "cpu A (avx512)"
        return r


def test_a_d90_whose_trials_ran_on_two_machines_says_so():
    kw = dict(seeds=2, precision=0.05, trial=TrialConfig(said=False), log=lambda s: None)
    mixed = measure_d90(None, _task(), runner=TwoMachines(), **kw)
    note = next(n for n in mixed.notes if "machines" in n)
    assert note.startswith("the trials ran on 2 machines (") and "on cpu A (avx512)" in note and "on cpu B (avx2)" in note
    assert {t["machine"] for t in mixed.trials} == {"cpu A (avx512)", "cpu B (avx2)"}
    assert not any("machines" in n for n in measure_d90(None, _task(), runner=Synthetic(), **kw).notes)


def test_a_training_metric_of_unknown_sample_is_not_reported(tmp_path):
    """Trials stored before the training sample was drawn at random measured the file's first examples
    (one or two classes of a label-sorted file): read back, and in an old d90.json, their train metric is dropped."""
    from intrinsic_dim.report import load_result

    kw = dict(seeds=2, precision=0.05, trial=TrialConfig(said=False), log=lambda s: None, run_dir=tmp_path)
    fresh = measure_d90(None, _task(), runner=Synthetic(), **kw)
    assert fresh.train_sample == "synthetic" and all(math.isfinite(p["train_mean"]) for p in fresh.points)
    with sqlite3.connect(tmp_path / "trials.sqlite") as db:
        db.execute("UPDATE trials SET train_sample = NULL WHERE d = ?", (fresh.d90,))
    resumed = measure_d90(None, _task(), runner=Synthetic(), **kw)
    assert resumed.d90 == fresh.d90 and len(resumed.trials) == len(fresh.trials)
    gaps = {p["d"]: p["train_mean"] for p in resumed.points}
    assert math.isnan(gaps.pop(fresh.d90)) and all(math.isfinite(v) for v in gaps.values())
    resumed.save(tmp_path / "d90.json")
    assert any(p["train_mean"] is not None for p in load_result(tmp_path)["points"])
    old = json.loads((tmp_path / "d90.json").read_text())
    del old["train_sample"]
    (tmp_path / "d90.json").write_text(json.dumps(old))
    assert all(p["train_mean"] is None for p in load_result(tmp_path)["points"])


_KILL_SCRIPT = textwrap.dedent(
    """
    import json, math, sys, time, torch
    sys.path.insert(0, sys.argv[2])
    from test_search import Synthetic, _task
    from intrinsic_dim.search import measure_d90
    from intrinsic_dim.train import TrialConfig
    slow = float(sys.argv[3])
    base = Synthetic()
    def runner(cfg):
        time.sleep(slow)
        return base(cfg)
    r = measure_d90(None, _task(), seeds=2, precision=0.05, trial=TrialConfig(said=False), log=lambda s: None,
                    runner=runner, run_dir=sys.argv[1], run_config={"model": "m"})
    print(json.dumps({"d90": r.d90, "crossing": r.crossing, "points": r.points, "new": len(base.calls)}))
    """
)


def test_killed_process_resumes(tmp_path):
    here = str(__import__("pathlib").Path(__file__).parent)
    ref = json.loads(subprocess.run([sys.executable, "-c", _KILL_SCRIPT, str(tmp_path / "ref"), here, "0"],
                                    capture_output=True, text=True, check=True).stdout)
    run_dir = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-c", _KILL_SCRIPT, str(run_dir), here, "0.15"], stdout=subprocess.PIPE)
    deadline = time.time() + 60
    while time.time() < deadline:
        time.sleep(0.1)
        if (run_dir / "trials.sqlite").exists() and len(Store(run_dir).rows()) >= 6:
            break
    proc.kill()
    proc.wait()
    done = len(Store(run_dir).rows())
    assert 6 <= done < ref["new"]
    out = json.loads(subprocess.run([sys.executable, "-c", _KILL_SCRIPT, str(run_dir), here, "0"],
                                    capture_output=True, text=True, check=True).stdout)
    assert out["new"] == ref["new"] - done
    assert (out["d90"], out["crossing"], out["points"]) == (ref["d90"], ref["crossing"], ref["points"])


def test_interval_open_above_when_the_passing_point_is_marginal():
    """Seeds straddling tau at the only passing d: the interval's upper end lies beyond the grid."""

    def runner(cfg):
        value = {1000: (0.80, 0.82, 0.81), 3000: (0.89, 0.92, 0.905)}[cfg.d][cfg.seed]
        return TrialResult(config=cfg.to_dict(), status="ok", metric=value, val_metric=value)

    r = measure_d90(None, _task(), dims=[1000, 3000], seeds=3, baseline=1.0, runner=runner, trial=TrialConfig(said=False),
                    log=lambda s: None, precision=10)
    assert r.d90 == 3000 and r.interval[1] is None and r.interval[0] == 1000 and r.bracket == (1000, 3000)
    assert format_interval(r.interval, 3000) == "1,000 - above 3,000" and format_bracket(r.bracket) == "(1,000, 3,000]"
    json.loads(json.dumps(r.to_dict()))


def test_fewer_than_three_seeds_give_no_interval_and_say_so():
    r = measure_d90(None, _task(), seeds=2, baseline=1.0, runner=Synthetic(), trial=TrialConfig(said=False), log=lambda s: None)
    assert r.d90 and r.interval is None and r.bracket[1] == r.d90
    assert any("no interval" in n for n in r.notes)


def _crossings(runner_kw, reps=30):
    out = []
    for rep in range(reps):
        r = measure_d90(None, _task(), seeds=3, precision=0.05, baseline=1.0, runner=Synthetic(replicate=rep, **runner_kw),
                        trial=TrialConfig(said=False), log=lambda s: None)
        out.append(math.log10(r.crossing))
    return torch.tensor(out, dtype=torch.float64)


def test_search_is_unbiased_under_seed_noise():
    """Over independent repetitions with seed noise (sd 0.012 per trial, tau = 0.9), the crossing's
    log10 centres on the true 3.6: no bias from the search. Emulating the old early stop (a passing
    seed frozen at tau) on the same draws shifts it up by several times the tolerance."""
    unbiased = _crossings(dict(noise=0.02))
    assert abs(unbiased.mean().item() - math.log10(TRUE_D90)) < 0.015
    stopped = _crossings(dict(noise=0.02, stop_at=0.9))
    assert stopped.mean().item() - math.log10(TRUE_D90) > 0.025


def test_curve_mode_evaluates_every_grid_point():
    run = Synthetic()
    dims = [100, 1000, 3000, 10000, 30000]
    r = measure_d90(None, _task(), dims=dims, seeds=3, baseline=1.0, runner=run, curve=True, trial=TrialConfig(said=False),
                    log=lambda s: None)
    assert r.mode == "curve" and [p["d"] for p in r.points] == dims
    assert r.d90 == 10000 and r.bracket == (3000, 10000) and 3000 < r.crossing < 10000
    assert r.interval[0] <= 3000 and r.interval[1] >= 10000


def test_learning_rate_is_chosen_on_validation_not_test():
    def runner(cfg):
        if cfg.method == "full":
            return TrialResult(config=cfg.to_dict(), status="ok", metric=1.0, val_metric=1.0)
        val, test = {0.1: (0.5, 0.9), 0.3: (0.8, 0.6)}.get(cfg.lr, (0.95, 0.95))
        return TrialResult(config=cfg.to_dict(), status="ok", metric=test, val_metric=val, lr=cfg.lr or 0.0)

    r = measure_d90(None, _task(), dims=[10], seeds=1, baseline=1.0, runner=runner, lr_candidates=[0.1, 0.3],
                    trial=TrialConfig(said=False), log=lambda s: None)
    assert r.lr == 0.3 and "0.3" in r.budget["lr_policy"]


class RatedFullTuning(Synthetic):
    """Synthetic subspace trials; full fine-tuning whose (validation, test) metric depends on its rate, where
    the rate best on test is not the one best on validation."""

    SCORES = {1e-5: (0.80, 0.99), 1e-4: (0.96, 0.95), 1e-3: (0.40, 0.40)}

    def __call__(self, cfg: TrialConfig) -> TrialResult:
        if cfg.method != "full":
            return replace(super().__call__(cfg), wall_s=1.0)
        self.calls.append((cfg.method, cfg.lr, cfg.seed))
        val, test = self.SCORES[cfg.lr]
        return TrialResult(config=cfg.to_dict(), status="ok", metric=test - 0.01 * cfg.seed, val_metric=val, lr=cfg.lr, wall_s=1.0)


def test_full_fine_tuning_rate_is_chosen_on_validation_and_used_for_every_baseline_seed(tmp_path):
    kw = dict(seeds=3, precision=0.05, trial=TrialConfig(said=False), full_lr_candidates=[1e-5, 1e-4, 1e-3], log=lambda s: None)
    run = RatedFullTuning()
    r = measure_d90(None, _task(), runner=run, **kw)
    full = [c for c in run.calls if c[0] == "full"]
    assert full == [("full", 1e-5, 0), ("full", 1e-4, 0), ("full", 1e-3, 0), ("full", 1e-4, 1), ("full", 1e-4, 2)]  # seed 0 not rerun
    assert r.baseline_values == pytest.approx([0.95, 0.94, 0.93]) and r.threshold == pytest.approx(0.9 * 0.94)
    assert r.budget["full_lr"] == 1e-4 and r.budget["full_lr_policy"] == "AdamW 0.0001 (best on validation of 1e-05, 0.0001, 0.001, seed 0)"
    assert r.compute_s == len({json.dumps(t["config"], sort_keys=True) for t in r.trials})  # the shared trial counts once
    stored = dict(run_dir=tmp_path / "run", run_config={"model": "m"})
    assert measure_d90(None, _task(), runner=RatedFullTuning(), **kw, **stored).d90 == r.d90
    again = RatedFullTuning()
    assert measure_d90(None, _task(), runner=again, **kw, **stored).d90 == r.d90 and again.calls == []  # resumed whole


def test_full_rate_search_with_a_given_baseline_is_refused_before_any_trial():
    run = RatedFullTuning()
    with pytest.raises(ValueError, match="--full-lr-search"):
        measure_d90(None, _task(), seeds=1, baseline=1.0, full_lr_candidates=[1e-5], runner=run, trial=TrialConfig(said=False),
                    log=lambda s: None)
    assert run.calls == []


@pytest.mark.parametrize("baseline", [float("nan"), float("inf"), 0.3, 0.66])
def test_baseline_that_cannot_define_a_threshold_stops_the_sweep(baseline):
    # 0.66 beats chance (0.6), but its threshold 0.9 x 0.66 = 0.594 does not: the majority class would pass it
    task = _task()
    task.train = Split(labels=torch.tensor([1] * 7 + [0] * 3), texts=[("x",)] * 10)  # majority class 1
    task.eval = task.test = Split(labels=torch.tensor([0, 0, 1, 1, 1]), texts=[("x",)] * 5)  # chance accuracy 0.6
    run = Synthetic()
    # a value that is no baseline at all (NaN, inf) is refused with the spec, one that chance passes by the sweep
    with pytest.raises(SpecError if not math.isfinite(baseline) else BaselineError):
        measure_d90(None, task, seeds=1, baseline=baseline, runner=run, trial=TrialConfig(said=False), log=lambda s: None)
    assert run.calls == []


def test_reuse_copies_identical_trials_from_another_run_dir(tmp_path):
    kw = dict(seeds=2, precision=0.05, trial=TrialConfig(said=False), log=lambda s: None)
    own = measure_d90(None, _task(), runner=Synthetic(), run_dir=tmp_path / "own", run_config={"model": "m"}, **kw)
    run = Synthetic()
    given = measure_d90(None, _task(), baseline=1.0, runner=run, run_dir=tmp_path / "abs", run_config={"model": "m"},
                        reuse=[tmp_path / "own"], **kw)
    shared = {(t["config"]["d"], t["config"]["seed"]) for t in own.trials if t["role"] == "search"}
    assert given.d90 == own.d90 and not any((d, s) in shared for _, d, s in run.calls)
    assert len(Store(tmp_path / "abs").rows()) == len(given.trials)  # the reused trials were copied in
    with pytest.raises(RunConfigMismatch, match="--reuse"):
        measure_d90(None, _task(), baseline=1.0, runner=Synthetic(), run_dir=tmp_path / "x", run_config={"model": "other"},
                    reuse=[tmp_path / "own"], **kw)
    with pytest.raises(ValueError, match="no finished trials"):
        measure_d90(None, _task(), baseline=1.0, runner=Synthetic(), run_dir=tmp_path / "y", run_config={"model": "m"},
                    reuse=[tmp_path / "nothing"], **kw)


def test_reuse_shares_full_fine_tuning_between_said_and_did_runs_of_one_budget(tmp_path):
    kw = dict(seeds=2, precision=0.05, log=lambda s: None, run_config={"model": "m"})
    def templates(**settings):  # the subspace trial and its full fine-tuning trial, as the command line makes them
        trial = TrialConfig(**settings)
        return dict(trial=trial, full_trial=replace(trial, method="full"))

    said = measure_d90(None, _task(), runner=Synthetic(), run_dir=tmp_path / "said", **templates(said=True), **kw)
    run = Synthetic()
    did = measure_d90(None, _task(), runner=run, run_dir=tmp_path / "did", **templates(said=False, layout="per_tensor"),
                      reuse=[tmp_path / "said"], **kw)
    assert not any(m == "full" for m, _, _ in run.calls) and any(m == "subspace" for m, _, _ in run.calls)
    assert did.baseline == said.baseline
    stored = [r["config"] for r in Store(tmp_path / "did").rows("baseline")]
    assert stored and all(c["said"] is False and c["layout"] == "per_tensor" for c in stored)  # kept under this run's key
    longer = Synthetic()
    measure_d90(None, _task(), runner=longer, run_dir=tmp_path / "x2", **templates(said=False, epochs=2),
                reuse=[tmp_path / "said"], **kw)
    assert sum(m == "full" for m, _, _ in longer.calls) == 2  # another budget is another baseline


def test_d_beyond_the_model_is_refused_before_any_trial():
    from torch import nn

    class Loaded:
        model = nn.Linear(10, 2)  # D = 22

    run = Synthetic()
    with pytest.raises(ValueError, match=r"d = \[100\] exceeds what the model can take: at most 22 trained numbers"):
        measure_d90(lambda seed: Loaded(), _task(), dims=[10, 100], seeds=1, runner=run, trial=TrialConfig(said=False),
                    log=lambda s: None)
    assert run.calls == []  # not even the baseline ran
class Noisy(Synthetic):
    """Synthetic with Gaussian seed noise on the baseline too (its seeds differ), for the sequential rule and the interval."""

    def __call__(self, cfg: TrialConfig) -> TrialResult:
        """A subspace trial 'takes' 1 s, a full one 2 s (its wall time), for the cost in full fine-tunings."""
        if cfg.method != "full":
            return replace(super().__call__(cfg), wall_s=1.0)
        self.calls.append((cfg.method, cfg.d, cfg.seed))
        g = torch.Generator().manual_seed(self.replicate * 7919 + cfg.seed)
        value = 1.0 + self.noise * torch.randn(1, generator=g).item()
        return TrialResult(config=cfg.to_dict(), status="ok", metric=value, val_metric=value, train_metric=value,
                           train_sample="synthetic", lr=1e-3, wall_s=2.0)


def _replicated(option, values, reps):
    """measure_d90 on ``reps`` noise draws of Noisy(0.01) under each value of one search option, on the same draws:
    per value, |log(d90 / true d90)| and trials per replicate, and the results."""
    errors, trials, results = ({v: [] for v in values} for _ in range(3))
    for rep in range(reps):
        for value in values:
            run = Noisy(noise=0.01, replicate=rep)
            r = measure_d90(None, _task(), seeds=3, precision=0.05, runner=run, trial=TrialConfig(said=False),
                            full_trial=TrialConfig(method="full"), log=lambda s: None, progress=False, **{option: value})
            errors[value].append(abs(math.log(r.d90 / TRUE_D90)))
            trials[value].append(len(run.calls))
            results[value].append(r)
    return errors, trials, results


def test_the_sequential_rule_spends_fewer_trials_for_the_same_d90():
    """Points far from tau take one seed; over repetitions the sequential d90 stays as close to the truth as all-seeds'."""
    errors, trials, results = _replicated("seed_rule", ("all", "sequential"), 6)
    for r in results["sequential"]:
        counts = {p["d"]: len(p["values"]) for p in r.points}
        assert min(counts.values()) == 1 and r.seed_rule == "sequential"  # a point far from tau took one seed
    assert sum(trials["sequential"]) < 0.85 * sum(trials["all"])
    assert sum(errors["sequential"]) / 6 <= sum(errors["all"]) / 6 + 0.03


def test_next_d_bisects_or_aims_at_the_interpolated_crossing():
    from intrinsic_dim.search.sweep import next_d

    assert next_d(100, 400, 0.5, 0.9, 0.8, 0.3, "bisect") == 200
    assert next_d(100, 1000, 0.5, 0.9, 0.7, 0.3, "aim") == 316  # halfway up the means: halfway in log d
    assert next_d(100, 1000, 0.5, 0.9, 0.51, 0.3, "aim") == 126  # kept 10% of the log width from the end
    # the demo's bracket: crossing at 260, within 1.3 of 300, so 300 / 1.3 = 231 can end the search
    assert next_d(106, 300, 0.473, 0.615, 0.5787, 0.3, "aim") == 231
    assert next_d(100, 400, None, 0.9, 0.8, 0.3, "aim") == 200  # a point without a mean: the midpoint
    assert next_d(100, 400, 0.95, 0.9, 0.8, 0.3, "aim") == 200  # means that do not straddle tau: the midpoint


def test_aiming_spends_fewer_trials_for_as_close_a_d90():
    """The aimed refinement lands near the crossing, so fewer points reach the precision, and d90 is as close."""
    errors, trials, results = _replicated("placement", ("bisect", "aim"), 8)
    assert all(r.placement == p for p in results for r in results[p])
    assert sum(trials["aim"]) < 0.95 * sum(trials["bisect"])  # 9% fewer here since refinement no longer stops at an unsplit bracket
    assert sum(errors["aim"]) <= sum(errors["bisect"]) + 8 * 0.01


def test_the_interval_resamples_the_baseline_seeds_and_a_close_pass_is_a_knife_edge():
    from intrinsic_dim.search.stats import bootstrap_interval, pass_margin

    results = {d: [TrialResult(config={}, status="ok", metric=m + e) for e in (-0.01, 0.0, 0.01)]
               for d, m in ((100, 0.80), (200, 0.88), (400, 0.95))}
    fixed = bootstrap_interval(results, [100, 200, 400], 0.9, 3)
    assert fixed == bootstrap_interval(results, [100, 200, 400], 0.9, 3, baseline_values=[1.0])  # one seed: nothing to resample
    wide = bootstrap_interval(results, [100, 200, 400], 0.9, 3, baseline_values=[0.95, 1.0, 1.05])
    assert wide[0] <= fixed[0] and (wide[1] is None or wide[1] >= fixed[1]) and wide != fixed
    margin, se = pass_margin([0.901, 0.899, 0.903], 0.9, [0.99, 1.0, 1.01], 0.9)
    assert margin == pytest.approx(0.001) and se > margin  # passes by less than its standard error
    r = measure_d90(None, _task(), seeds=3, precision=0.05, runner=Noisy(noise=0.01), trial=TrialConfig(said=False),
                    full_trial=TrialConfig(method="full"), log=lambda s: None, progress=False)
    assert r.margin is not None and r.knife_edge == (r.margin < r.margin_se)
    assert r.cost_full_trials == pytest.approx(sum(t["wall_s"] for t in r.trials) / 2.0)


def test_a_sequential_interval_borrows_the_pooled_noise_for_points_of_one_seed():
    """Under the sequential rule a point of one seed has no spread to resample: its mean is drawn with the pooled
    seed noise, so the interval is wider than the bracket, not equal to it, and the knife-edge margin has an error."""
    from intrinsic_dim.search.stats import bootstrap_interval, pass_margin

    one = lambda m: [TrialResult(config={}, status="ok", metric=m)]  # noqa: E731
    results = {100: one(0.80), 200: [TrialResult(config={}, status="ok", metric=0.89 + e) for e in (-0.01, 0.0, 0.01)],
               400: one(0.905), 800: one(0.97)}
    ds = [100, 200, 400, 800]
    with pytest.raises(ValueError, match="pooled seed noise"):
        bootstrap_interval(results, ds, 0.9, 3)
    lo, hi = bootstrap_interval(results, ds, 0.9, 3, noise=0.01)
    assert lo < 200 and (hi is None or hi > 400)  # the bracket is (200, 400]
    assert bootstrap_interval(results, ds, 0.9, 3, noise=0.001)[0] > lo  # less noise, a tighter interval
    assert pass_margin([0.905], 0.9, [], 0.9, noise=0.01)[1] == pytest.approx(0.01)
    assert pass_margin([0.905], 0.9, [], 0.9)[1] == 0.0  # without the pooled noise one seed has no error

    for rep in range(3):
        r = measure_d90(None, _task(), seeds=3, precision=0.05, seed_rule="sequential", runner=Noisy(noise=0.01, replicate=rep),
                        trial=TrialConfig(said=False), full_trial=TrialConfig(method="full"), log=lambda s: None, progress=False)
        lo_b, hi_b = r.bracket
        assert r.interval is not None and (r.interval[0] < lo_b or r.interval[1] is None or r.interval[1] > hi_b)
        tau_se = 0.9 * float(torch.tensor(r.baseline_values, dtype=torch.float64).std()) / math.sqrt(len(r.baseline_values))
        assert r.margin_se > 1.01 * tau_se  # the point's own error is in the margin's, one seed or not


class Collapsing(Synthetic):
    """Below d = 1,000 every seed predicts the majority class (metric exactly 0.5, as bert-tiny's early trials did);
    above it, Synthetic's curve with wide seed noise."""

    def __call__(self, cfg: TrialConfig) -> TrialResult:
        if cfg.method == "full" or cfg.d >= 1000:
            return super().__call__(cfg)
        self.calls.append((cfg.method, cfg.d, cfg.seed))
        return TrialResult(config=cfg.to_dict(), status="ok", metric=0.5, val_metric=0.5, train_metric=0.5,
                           train_sample="synthetic", lr=0.1)


def test_seeds_that_all_collapse_to_one_value_are_not_counted_as_seed_noise():
    """A given baseline has no seeds, and points where every seed predicts the majority class agree exactly: pooled, they
    made the seed noise 0, so one seed 'settled' every later point however close to tau (trajectory8k_tiny's
    did-last-8000 passed d = 1,500 on one seed at 0.752 against tau 0.746, where three seeds average 0.715)."""
    run = Collapsing(noise=0.05)
    r = measure_d90(None, _task(), dims=[100, 300, 3000, 10000], seeds=3, precision=0.05, baseline=1.0, seed_rule="sequential",
                    runner=run, trial=TrialConfig(said=False), log=lambda s: None, progress=False)
    seeds = {p["d"]: len(p["values"]) for p in r.points}
    assert seeds[100] == 3 and seeds[3000] == 3  # the first point off the majority class still needs all its seeds
    assert r.margin_se > 0  # and the d90 point's error is the pooled noise of real spreads, not zero


class QuietBaseline(Synthetic):
    """Full fine-tuning that barely moves with the seed (sd 0.0005, as MPNet-base's 0.735 / 0.734 / 0.734 on tweets) beside
    subspace trials that move a lot (Gaussian, sd ``noise``, drawn from a generator seeded by a hash of (d, seed))."""

    def __call__(self, cfg: TrialConfig) -> TrialResult:
        self.calls.append((cfg.method, cfg.d, cfg.seed))
        key = int.from_bytes(hashlib.sha256(f"{cfg.method} {cfg.d} {cfg.seed} {self.replicate}".encode()).digest()[:8], "little")
        e = torch.randn(1, generator=torch.Generator().manual_seed(key)).item()
        value = 1.0 + 0.0005 * e if cfg.method == "full" else min(1.0, math.log10(cfg.d) / 4) + self.noise * e
        return TrialResult(config=cfg.to_dict(), status="ok", metric=value, val_metric=value, train_metric=value,
                           train_sample="synthetic", lr=1e-3 if cfg.method == "full" else 0.1)


def test_a_quiet_baseline_does_not_settle_noisy_points_on_one_seed():
    """The baseline's seeds are another training regime: pooled into the seed noise (the rule until 2026-12-07), their
    tiny spread settled every point on one seed however close to tau (MPNet-base's d90 rested on single seeds 0.006
    above and 0.005 below tau). By default only the points' own seeds estimate it."""
    kw = dict(dims=[100, 300, 1000, 3000, 10000], seeds=3, precision=0.05, seed_rule="sequential", trial=TrialConfig(said=False),
              full_trial=TrialConfig(method="full"), log=lambda s: None, progress=False)
    old = measure_d90(None, _task(), runner=QuietBaseline(noise=0.03), seed_noise="baseline+points", **kw)
    assert {len(p["values"]) for p in old.points} == {1} and old.seed_noise == "baseline+points"
    new = measure_d90(None, _task(), runner=QuietBaseline(noise=0.03), **kw)
    seeds = {p["d"]: len(p["values"]) for p in new.points}
    assert new.seed_noise == "points" and seeds[100] == 3  # nothing is settled before the points have a noise of their own
    near = [p for p in new.points if abs(p["mean"] - new.threshold) < 2 * 0.03]
    assert near and all(len(p["values"]) == 3 for p in near)  # a point near tau gets every seed
    assert new.margin_se > 10 * old.margin_se  # the d90's error is the points' noise, not the baseline's


class Flat(QuietBaseline):
    """A curve that climbs 0.02 per decade of d through tau = 0.9 at d = 3,000, with seed noise ``noise``: two grid points a
    decade apart differ by less than their seeds can resolve."""

    def __call__(self, cfg: TrialConfig) -> TrialResult:
        r = super().__call__(cfg)
        if cfg.method == "full":
            return r
        v = 0.9 + 0.02 * math.log10(cfg.d / 3000) + (r.metric - min(1.0, math.log10(cfg.d) / 4))
        return replace(r, metric=v, val_metric=v, train_metric=v)


def test_a_bracket_the_seeds_cannot_split_is_refined_unless_asked_to_stop():
    """Stopping there (--stop-unresolved, the rule until 2026-12-07) reports the bracket's upper end, far above the
    crossing on a flat curve; by default the refinement goes on to the precision."""
    kw = dict(dims=[100, 300, 1000, 3000, 10000, 30000], seeds=3, precision=0.05, seed_rule="sequential",
              trial=TrialConfig(said=False), full_trial=TrialConfig(method="full"), log=lambda s: None, progress=False)
    stopped = measure_d90(None, _task(), runner=Flat(noise=0.01), stop_unresolved=True, **kw)
    assert stopped.stop_unresolved and any("could not be told apart" in n for n in stopped.notes)
    assert stopped.bracket[1] / stopped.bracket[0] > 2 and stopped.d90 > 1.1 * stopped.crossing
    refined = measure_d90(None, _task(), runner=Flat(noise=0.01), **kw)
    assert refined.stop_unresolved is False and not any("could not be told apart" in n for n in refined.notes)
    assert refined.bracket[1] / refined.bracket[0] <= 1.05 and len(refined.points) > len(stopped.points)


def test_a_sibling_runs_full_fine_tuning_trials_are_shared_not_rerun(tmp_path):
    """A DID run next to a SAID run of the same model, task and data trains no baseline of its own: the full
    fine-tuning trials read no subspace setting. A sibling of other data is passed over."""
    kw = dict(seeds=2, precision=0.05, log=lambda s: None, progress=False, full_trial=TrialConfig(method="full"))
    said = Noisy(noise=0.01)
    a = measure_d90(None, _task(), runner=said, trial=TrialConfig(said=True), run_dir=tmp_path / "said", run_config={"m": 1}, **kw)
    measure_d90(None, _task(), runner=Noisy(noise=0.01), trial=TrialConfig(said=True), run_dir=tmp_path / "other",
                run_config={"m": 2}, **kw)
    did = Noisy(noise=0.01)
    b = measure_d90(None, _task(), runner=did, trial=TrialConfig(said=False), run_dir=tmp_path / "did", run_config={"m": 1},
                    shared=[tmp_path / "said", tmp_path / "other"], **kw)
    assert [c for c in did.calls if c[0] == "full"] == [] and b.baseline_values == a.baseline_values
    assert Store(tmp_path / "did", read_only=True).rows("baseline")  # copied into the DID run's own store
    alone = Noisy(noise=0.01)
    measure_d90(None, _task(), runner=alone, trial=TrialConfig(said=False), run_dir=tmp_path / "alone", run_config={"m": 1}, **kw)
    assert [c for c in alone.calls if c[0] == "full"]  # without siblings it trains its own
