"""Stores written by earlier versions resume: for every committed run of every experiment file, the trial keys that
today's spec and TrialConfig produce find the committed trials (the key rules live in ``results.stored_key``), so a
changed default or a re-spelled setting that would retrain a committed run fails here."""

import json
from dataclasses import replace
from pathlib import Path

import pytest

from intrinsic_dim.experiment import ExperimentError, load_experiment
from intrinsic_dim.results import LATER_DEFAULTS
from intrinsic_dim.search import trial_templates
from intrinsic_dim.search.result import seed_noise_of, stop_unresolved_of
from intrinsic_dim.store import DB_NAME, Store
from intrinsic_dim.train import TrialConfig

ROOT = Path(__file__).resolve().parents[1]


def _committed_runs() -> list[tuple[Path, str]]:
    """(experiment file, run name) of every run whose store is committed; files that are not experiments are skipped."""
    out = []
    for path in sorted((ROOT / "experiments").glob("*.yaml")):
        try:
            exp = load_experiment(path)
        except ExperimentError:  # pre-training configs and single-measure config files
            continue
        out += [(path, r.name) for r in exp.runs if (ROOT / "experiments" / "results" / exp.name / r.name / DB_NAME).is_file()]
    return out


RUNS = _committed_runs()


def test_the_committed_runs_are_found():
    assert len(RUNS) >= 100 and (ROOT / "experiments" / "li2018_mnist.yaml", "fc-abs") in RUNS


@pytest.mark.parametrize("path, run", RUNS, ids=[f"{p.stem}/{r}" for p, r in RUNS])
def test_every_committed_trial_is_found_by_the_key_todays_code_builds(path, run):
    exp = load_experiment(path)
    spec = next(r.spec for r in exp.runs if r.name == run)
    trial, full = trial_templates(spec)
    searched = {"subspace": set(spec.search.lr_search or ()), "full": set(spec.search.full_lr_search or ())}
    store = Store(ROOT / "experiments" / "results" / exp.name / run, read_only=True)
    try:
        rows = store.rows()
        assert rows
        for row in rows:
            # a key leaves out the later settings at their old defaults (LATER_DEFAULTS), which TrialConfig's may not equal
            assert store.get(TrialConfig(**(LATER_DEFAULTS | row["config"])).to_dict()) is not None, row["config"]
            if row["role"] not in ("baseline", "search"):
                continue
            template = full if row["config"]["method"] == "full" else trial
            if row["config"].get("lr") in searched.get(row["config"]["method"], ()):  # the rate the run's rate search chose
                template = replace(template, lr=row["config"]["lr"])
            rebuilt = replace(template, d=row["config"]["d"], seed=row["config"]["seed"])
            assert store.get(rebuilt.to_dict()) is not None, f"the spec of {run} no longer finds {row['config']}"
    finally:
        store.close()


@pytest.mark.parametrize("path, run", RUNS, ids=[f"{p.stem}/{r}" for p, r in RUNS])
def test_every_finished_run_is_searched_by_the_rules_it_was_made_with(path, run):
    """A rule that picks which d are asked for is not in a trial's key, so a changed default would not show above: a
    resumed run would quietly ask for new points. Its file must spell the rules its d90.json records."""
    exp = load_experiment(path)
    spec = next(r.spec for r in exp.runs if r.name == run)
    result = ROOT / "experiments" / "results" / exp.name / run / "d90.json"
    if not result.is_file() or spec.search.baseline_only:
        pytest.skip("not finished (no d90.json), or no subspace point to choose (baseline only)")
    recorded = json.loads(result.read_text())
    if recorded.get("status") == "no_baseline":
        pytest.skip("no threshold above chance: the search chose no subspace point, so it recorded no rules")
    assert spec.search.seed_rule == recorded.get("seed_rule", "all")
    if spec.search.seed_rule == "sequential":
        assert spec.search.seed_noise == seed_noise_of(recorded), "pin seed_noise: the rule the run's points were settled by"
        assert spec.search.stop_unresolved == stop_unresolved_of(recorded), "pin stop_unresolved: the rule that ended its refinement"
    if not spec.search.curve:  # a curve trains every --dims point: no refinement to place
        assert spec.search.placement == recorded.get("placement", "bisect")
