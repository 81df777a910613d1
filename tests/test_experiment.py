"""The experiment verb: a YAML of measure runs, run in parts, resumed, summarised and plotted."""

import json
from pathlib import Path

import pytest

from intrinsic_dim.cli import main
from intrinsic_dim.experiment import ExperimentError, load_experiment
from intrinsic_dim.plan import plan

SPEC = """
name: tiny
defaults: {task: mnist-5k, said: false, max_train: 300, max_eval: 60, max_steps: 40, batch_size: 64, seeds: 3,
           dims: [20, 2000], baseline: 1.0, quiet: true, gap_examples: test}
runs:
  - {name: a, model: fc-784-200-200-10, label: {n: 300}}
  - {name: b, model: fc-784-200-200-10, curve: true, max_train: 150, label: {n: 150}}
plots:
  - {name: both, runs: [a, b]}
  - {name: d90_vs_n, x: n_train}
"""

ROW_KEYS = {"model", "task", "method", "projection", "layout", "groups", "n_train", "steps_per_trial", "lr_policy", "seeds",
            "baseline", "threshold", "d90", "crossing", "interval", "status"}


def test_experiment_runs_in_parts_resumes_and_summarises(tmp_path, capsys):
    spec = tmp_path / "tiny.yaml"
    spec.write_text(SPEC)
    out = tmp_path / "out"
    assert main(["experiment", str(spec), "--out", str(out), "--threads", "1", "--only", "a"]) == 0
    rows = json.loads((out / "summary.json").read_text())
    assert [r["run"] for r in rows] == ["a", "b"] and rows[1]["status"] == "not run"
    assert (rows[1]["method"], rows[1]["model"], rows[1]["n"]) == ("did", "fc-784-200-200-10", 150)
    assert ROW_KEYS <= set(rows[0]) and rows[0]["n"] == 300 and rows[0]["method"] == "did" and rows[0]["threads"] == 1
    assert (rows[0]["seed_rule"], rows[0]["select_examples"], rows[0]["gap_examples"]) == ("sequential", 250, None)
    assert rows[0]["cost_full_trials"] is None and rows[0]["wall_s"] > 0  # a given baseline: no full fine-tuning to count in
    assert json.loads((out / "a" / "provenance.json").read_text())["command"].startswith("intrinsic-dim experiment")
    assert main(["experiment", str(spec), "--out", str(out), "--threads", "1"]) == 0
    text = capsys.readouterr().out
    assert text.count("resumed") == len(json.loads((out / "a" / "d90.json").read_text())["trials"])
    rows = json.loads((out / "summary.json").read_text())
    assert rows[1]["mode"] == "curve" and rows[1]["n_train"] == 150 and rows[1]["status"] != "not run"
    for name in ("both", "d90_vs_n", "generalisation"):
        assert (out / f"{name}.png").stat().st_size > 0 and (out / f"{name}.pdf").stat().st_size > 0
    from intrinsic_dim.report import gap_rows

    assert (out / "generalisation_vs_d90.png").is_file() == bool(gap_rows(rows))  # drawn only where a gap was measured at a d90
    assert "| run |" in (out / "report.md").read_text()


def test_bad_experiment_files_are_refused(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    for text, message in (("name: x\nruns: []", "non-empty list of runs"), ("name: x\nruns: [{name: a}, {name: a}]", "must be unique"),
                          ("name: x\nruns: [{name: a}]\nplots: [{name: p, runs: [z]}]", "do not exist")):
        bad.write_text(text)
        with pytest.raises(ExperimentError, match=message):
            load_experiment(bad)
    good = tmp_path / "good.yaml"
    good.write_text(SPEC)
    assert main(["experiment", str(good), "--only", "nope"]) == 2
    assert "--only names runs that are not in the experiment" in capsys.readouterr().err


def test_pretraining_checkpoints_bring_their_step_and_mlm_loss(tmp_path, monkeypatch):
    from intrinsic_dim.experiment import summary_row
    from intrinsic_dim.report import plots
    from intrinsic_dim.report import plot_d90_against

    rows = []
    for step, loss, d90 in ((0, 9.5, 3000), (400, 6.1, 900), (2000, 4.2, 400)):
        ckpt = tmp_path / f"checkpoint-{step}"
        ckpt.mkdir()
        (ckpt / "trainer_state.json").write_text(json.dumps({"step": step, "eval_loss": loss, "params": 11, "non_embedding_params": 3}))
        result = {"model": str(ckpt), "task": "t", "said": True, "n_train": 100, "baseline": 0.7, "baseline_source": "given",
                  "threshold": 0.63, "d90": d90, "crossing": d90 * 0.9, "bracket": [d90 // 2, d90], "interval": None,
                  "status": "found", "points": [], "trials": [], "compute_s": 1.0}
        rows.append(summary_row(f"r{step}", result, {"task_short": "t", "size": f"s{step}"}))
    assert [(r["step"], r["mlm_loss"]) for r in rows] == [(0, 9.5), (400, 6.1), (2000, 4.2)]
    saved = plots.save_figure
    drawn = []
    monkeypatch.setattr(plots, "save_figure", lambda plt, fig, path: drawn.append([t.get_text() for t in fig.axes[0].texts]) or saved(plt, fig, path))
    paths = plot_d90_against(rows, {"name": "p", "x": "step", "series": "task_short", "logx": False, "y2": "mlm_loss", "annotate": "size"},
                             tmp_path / "p")
    assert all(p.stat().st_size > 0 for p in paths)
    assert drawn == [["s0", "s400", "s2000"]]


def test_a_run_without_a_baseline_above_chance_is_recorded_and_the_experiment_goes_on(tmp_path):
    from intrinsic_dim.experiment import load_experiment, run_runs
    from intrinsic_dim.search import BaselineError

    spec = tmp_path / "e.yaml"
    spec.write_text("name: e\nruns: [{name: step0, model: m0, label: {step: 0}}, {name: step50, model: m50, said: false}]\n")
    called = []

    def measure(run, spec, run_dir):
        called.append(spec.data.model)
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "d90.json").write_text(json.dumps({"status": "no_baseline", "reason": "no better than the majority class"}))
        raise BaselineError("no better than the majority class")

    rows = json.loads(run_runs(load_experiment(spec), measure, tmp_path / "out", log=lambda s: None).read_text())
    assert called == ["m0", "m50"]
    assert [(r["run"], r["status"], r.get("step")) for r in rows] == [("step0", "no_baseline", 0), ("step50", "no_baseline", None)]
    assert "majority" in rows[0]["reason"] and rows[0]["model"] == "m0"
    assert [r["method"] for r in rows] == ["said", "did"]
    from intrinsic_dim.report import plot_d90_against

    assert all(p.stat().st_size > 0 for p in plot_d90_against(rows, {"name": "p", "x": "step", "logx": False}, tmp_path / "p"))


def test_a_run_takes_its_baseline_from_an_earlier_run(tmp_path):
    from intrinsic_dim.experiment import resolve

    path = tmp_path / "e.yaml"
    path.write_text("name: e\nruns: [{name: last, model: m}, {name: early, model: m0, baseline: {from: last}, reuse: [last]}]\n")
    exp = load_experiment(path)
    out = tmp_path / "out"
    with pytest.raises(ExperimentError, match="run it first"):
        resolve(exp, exp.runs[1], out)
    (out / "last").mkdir(parents=True)
    (out / "last" / "d90.json").write_text(json.dumps({"baseline": 0.6875, "points": []}))
    spec = resolve(exp, exp.runs[1], out)
    assert spec.search.baseline == 0.6875 and spec.run.reuse == (str(out / "last"),)
    path.write_text("name: e\nruns: [{name: x, baseline: {from: nope}}]\n")
    with pytest.raises(ExperimentError, match="must name another run"):
        load_experiment(path)
    # a run given its baseline trains no full fine-tuning: an option that asks for one is refused when the file loads,
    # not hours later when the run it waits for has finished
    path.write_text("name: e\ndefaults: {full_lr_search: [0.001, 0.003]}\n"
                    "runs: [{name: own, model: m}, {name: common, model: m, baseline: {from: own}}]\n")
    with pytest.raises(ExperimentError, match="run 'common' takes its baseline from run 'own'.*full_lr_search.*set that option to null"):
        load_experiment(path)
    path.write_text("name: e\ndefaults: {full_lr_search: [0.001, 0.003]}\n"
                    "runs: [{name: own, model: m}, {name: common, model: m, full_lr_search: null, baseline: {from: own}}]\n")
    assert load_experiment(path).runs[1].baseline_from == "own"


def test_the_gap_plot_leaves_out_runs_without_training_values(tmp_path, monkeypatch):
    """A run stored before the training sample was drawn at random has no training values: no line, no legend entry."""
    from intrinsic_dim.report import plot_gap, plots

    def run(name, train):
        points = [{"d": d, "n_ok": 3, "mean": 0.8, "train_mean": train} for d in (100, 1000)]
        return {"model": name, "task": "t", "said": False, "metric": "accuracy", "d90": 100, "points": points}

    saved, legends = plots.save_figure, []
    monkeypatch.setattr(plots, "save_figure", lambda plt, fig, path: legends.append(
        [t.get_text() for t in fig.legends[0].get_texts()]) or saved(plt, fig, path))
    plot_gap([run("measured", 0.85), run("before", None)], tmp_path / "gap")
    assert len(legends) == 1 and len(legends[0]) == 1 and "measured" in legends[0][0]


def test_the_glue_table_file_is_validated_and_costed_offline(tmp_path, capsys):
    """--dry-run checks every run of the paper's table, sizes its models from their published shapes (no hub) and
    counts trials, writing nothing."""
    pytest.importorskip("transformers")
    from intrinsic_dim.plan import max_trials, parameter_count
    from intrinsic_dim.spec import MeasureSpec

    path = Path(__file__).resolve().parents[1] / "experiments" / "aghajanyan2021_glue.yaml"
    before = sorted(Path.cwd().iterdir())
    assert main(["experiment", str(path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 18 and "roberta-large-qqp-did" in out and "GPU hours" in out
    assert sorted(Path.cwd().iterdir()) == before
    assert 120e6 < parameter_count("roberta-base") < 130e6 and 330e6 < parameter_count("bert-large-uncased") < 340e6
    assert parameter_count("some/unknown-model") is None
    spec = MeasureSpec.from_dict({"dims": [100, 1000], "seeds": 2, "precision": 0.3})
    assert max_trials(spec) == 2 + 2 * (2 + 1 + 4)  # baseline; grid, a step down and log2(ln 10 / ln 1.3) = 3.1 -> 4 bisections


def test_a_summary_keeps_the_checkpoint_fields_of_a_checkpoint_that_is_not_here(tmp_path):
    """Regenerating a summary in a clone without runs/ keeps each row's pre-training step and loss from the earlier summary."""
    from intrinsic_dim.experiment import summarise

    spec = tmp_path / "e.yaml"
    spec.write_text("name: e\nruns: [{name: a, model: runs/absent/checkpoint-400}]\nplots: [{name: p, x: step}]\n")
    out = tmp_path / "out"
    out.mkdir()
    (out / "summary.json").write_text(json.dumps([{"run": "a", "step": 400, "mlm_loss": 7.27, "status": "not run"}]))
    rows = json.loads(summarise(load_experiment(spec), out).read_text())
    assert (rows[0]["step"], rows[0]["mlm_loss"], rows[0]["status"]) == (400, 7.27, "not run")


BUDGET = """
name: budget
defaults: {task: mnist-5k, model: fc-784-200-200-10, said: false, max_train: 320, max_eval: 60, batch_size: 64, seeds: 1,
           baseline_only: true, full_lr_search: [1.0e-3, 1.0e-2], quiet: true}
runs:
  - {name: x1, full_epochs: 1, label: {budget: x1}}
  - {name: x2, full_epochs: 2, label: {budget: x2}}
plots:
  - {name: baseline_vs_budget, x: full_steps, y: baseline, annotate: full_lr}
"""


def test_a_baseline_only_experiment_trains_full_fine_tuning_alone_and_plots_it_against_its_budget(tmp_path, capsys, monkeypatch):
    """A study of the baseline: each run chooses its full fine-tuning rate on validation, reports that rate's seed on
    test and trains no subspace trial; the summary carries the steps and the rate, the plot draws the baseline."""
    import intrinsic_dim.report.plots as plots

    drawn, save = {}, plots.save_figure
    monkeypatch.setattr(plots, "save_figure", lambda plt, fig, path, **kw: drawn.setdefault(path.name, [
        line.get_xydata().tolist() for line in fig.axes[0].lines]) and save(plt, fig, path, **kw))
    spec = tmp_path / "budget.yaml"
    spec.write_text(BUDGET)
    out = tmp_path / "out"
    assert {(r["method"], r["max_trials"]) for r in plan(load_experiment(spec))} == {("full", 3)}  # the dry run's table
    assert main(["experiment", str(spec), "--out", str(out), "--threads", "1"]) == 0
    rows = {r["run"]: r for r in json.loads((out / "summary.json").read_text())}
    for name, steps in (("x1", 5), ("x2", 10)):
        r, res = rows[name], json.loads((out / name / "d90.json").read_text())
        trials = res["trials"]
        assert (r["status"], r["d90"], r["full_steps"], res["points"]) == ("baseline_only", None, steps, [])
        assert [t["role"] for t in trials] == ["full_lr_search", "full_lr_search", "baseline"]
        assert {t["config"]["method"] for t in trials} == {"full"} and {t["steps"] for t in trials} == {steps}
        chosen = max(trials[:2], key=lambda t: t["val_metric"])
        assert r["full_lr"] == chosen["config"]["lr"] and r["baseline"] == chosen["metric"] == trials[2]["metric"]
        report = (out / name / "report.md").read_text()
        assert "| full fine-tuning trial |" in report and "![curve]" not in report and not (out / name / "curve.png").exists()
        assert "(full fine-tuning)" in report and "SAID" not in report
    assert (out / "baseline_vs_budget.png").stat().st_size > 0 and (out / "baseline_vs_budget.pdf").stat().st_size > 0
    assert drawn["baseline_vs_budget"] == [[[5.0, rows["x1"]["baseline"]], [10.0, rows["x2"]["baseline"]]]]
    capsys.readouterr()
    assert main(["experiment", str(spec), "--out", str(out), "--threads", "1"]) == 0
    assert capsys.readouterr().out.count("resumed") == 4  # two rate trials per run; each baseline is its rate trial


def test_baseline_only_refuses_a_given_baseline():
    from intrinsic_dim.spec import MeasureSpec, SpecError

    with pytest.raises(SpecError, match="baseline_only"):
        MeasureSpec.from_dict({"baseline_only": True, "baseline": 0.9})


def test_a_summary_counts_the_cost_of_a_trial_listed_under_two_roles_once():
    """A rate-search candidate that is also a baseline seed ran once: the summary's cost is d90.json's, not one more."""
    from intrinsic_dim.experiment import summary_row

    full = {"method": "full", "lr": 3e-4, "seed": 0}
    trials = [{"role": "full_lr_search", "config": full, "wall_s": 100.0}, {"role": "baseline", "config": dict(full), "wall_s": 100.0},
              {"role": "baseline", "config": full | {"seed": 1}, "wall_s": 100.0},
              {"role": "search", "config": {"method": "subspace", "d": 500, "seed": 0}, "wall_s": 50.0}]
    r = {"model": "m", "task": "t", "n_train": 10, "baseline": 0.7, "baseline_source": "full fine-tuning", "threshold": 0.63,
         "d90": None, "crossing": None, "status": "above_largest", "points": [], "trials": trials, "compute_s": 350.0}
    row = summary_row("run", r)
    assert row["cost_full_trials"] == pytest.approx(2.5) and row["full_trial_s"] == pytest.approx(100.0)


def test_a_finished_run_keeps_the_checkpoint_fields_it_was_summarised_with():
    """Pre-training made again at the same path (another machine's float kernels: other last bits) does not rewrite the
    MLM loss of a run measured on the first checkpoint; a run not yet measured takes what is there now."""
    from intrinsic_dim.experiment import _keep_checkpoint_fields

    earlier = {"run": "r", "status": "found", "step": 0, "mlm_loss": 10.350756064889884}
    now = {"run": "r", "status": "found", "step": 0, "mlm_loss": 10.350755830525387}
    assert _keep_checkpoint_fields(now, earlier)["mlm_loss"] == 10.350756064889884
    assert _keep_checkpoint_fields({"run": "r", "status": "found"}, earlier)["mlm_loss"] == 10.350756064889884  # no runs/ here
    planned = {"run": "r", "status": "not run", "step": 0, "mlm_loss": 10.350755830525387}
    assert _keep_checkpoint_fields(now, planned | {"mlm_loss": 1.0})["mlm_loss"] == 10.350755830525387
    assert _keep_checkpoint_fields(planned, earlier | {"status": "not run"})["mlm_loss"] == 10.350755830525387


def test_the_commit_is_dirty_for_a_changed_code_file_but_not_for_results_another_run_writes(tmp_path):
    import subprocess

    from intrinsic_dim.experiment import RESULTS, _git_commit

    def git(*args: str) -> None:
        subprocess.run(["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t", *args], check=True,
                       capture_output=True)

    code, result = tmp_path / "src" / "pkg", tmp_path / RESULTS / "exp" / "summary.json"
    code.mkdir(parents=True)
    result.parent.mkdir(parents=True)
    (code / "mod.py").write_text("x = 1\n")
    result.write_text("[]\n")
    git("init", "-q")
    git("add", ".")
    git("commit", "-q", "-m", "start")
    clean = _git_commit(code)
    assert clean is not None and not clean.endswith("+dirty")
    result.write_text("[{}]\n")
    assert _git_commit(code) == clean
    (tmp_path / "README.md").write_text("new\n")  # untracked: not a change of the code that ran
    assert _git_commit(code) == clean
    (code / "mod.py").write_text("x = 2\n")
    assert _git_commit(code) == clean + "+dirty"


def test_a_replay_that_adds_no_trial_keeps_the_provenance_of_the_commit_that_made_them(tmp_path, monkeypatch):
    from intrinsic_dim import experiment

    spec = tmp_path / "tiny.yaml"
    spec.write_text(SPEC)
    trials = [{"role": "baseline", "metric": 0.8, "train_metric": float("nan")}]

    def measure(run, s, d):
        d.mkdir(parents=True, exist_ok=True)
        (d / "d90.json").write_text(json.dumps({"trials": trials}))

    monkeypatch.setattr(experiment, "summarise", lambda *a, **k: None)

    def run_at(commit):
        monkeypatch.setattr(experiment, "_git_commit", lambda: commit)
        experiment.run_runs(load_experiment(spec), measure, tmp_path / "out", only=["a"], command=f"cmd {commit}",
                            log=lambda s: None)
        return json.loads((tmp_path / "out" / "a" / "provenance.json").read_text())

    made = run_at("aaa1111")
    assert made["commit"] == "aaa1111"
    assert run_at("bbb2222") == made  # the same trials: the replay wrote no new provenance
    trials.append({"role": "subspace", "metric": 0.7, "train_metric": float("nan")})
    assert run_at("ddd4444")["commit"] == "ddd4444"


def test_provenance_names_the_commit_a_run_loaded_not_the_one_checked_out_when_it_ended(tmp_path, monkeypatch):
    from intrinsic_dim import experiment

    heads = iter(["aaa1111", "bbb2222", "bbb2222", "bbb2222"])  # a commit lands while run a trains
    monkeypatch.setattr(experiment, "_git_commit", lambda: next(heads))
    spec = tmp_path / "tiny.yaml"
    spec.write_text(SPEC)
    ran = []
    experiment.run_runs(load_experiment(spec), lambda run, s, d: ran.append(d.mkdir(parents=True)), tmp_path / "out",
                        only=["a"], command="cmd", log=lambda s: None)
    made = json.loads((tmp_path / "out" / "a" / "provenance.json").read_text())
    assert (made["commit"], made["head_at_finish"], made["command"]) == ("aaa1111", "bbb2222", "cmd") and len(ran) == 1
