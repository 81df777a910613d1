"""Stores written by earlier versions resume: the trial keys that today's spec and TrialConfig produce find the
committed trials (the key rules live in ``results.stored_key``)."""

from dataclasses import replace
from pathlib import Path

import pytest

from intrinsic_dim.experiment import load_experiment
from intrinsic_dim.search import trial_templates
from intrinsic_dim.store import Store
from intrinsic_dim.train import TrialConfig

ROOT = Path(__file__).resolve().parents[1]
RUNS = [("aghajanyan2021_minilm", "tweets-said"), ("aghajanyan2021_minilm", "tweets-did"), ("li2018_mnist", "lenet-own"),
        ("minilm_tweets_lora", "lora")]


@pytest.mark.parametrize("experiment, run", RUNS)
def test_every_committed_trial_is_found_by_the_key_todays_code_builds(experiment, run):
    run_dir = ROOT / "experiments" / "results" / experiment / run
    if not (run_dir / "trials.sqlite").is_file():
        pytest.skip(f"{run_dir} has no committed store")
    exp = load_experiment(ROOT / "experiments" / f"{experiment}.yaml")
    spec = next(r.spec for r in exp.runs if r.name == run)
    trial, full = trial_templates(spec)
    store = Store(run_dir, read_only=True)
    try:
        rows = store.rows()
        assert rows
        for row in rows:
            assert store.get(TrialConfig(**row["config"]).to_dict()) is not None, row["config"]
            template = full if row["config"]["method"] == "full" else trial
            if row["role"] in ("baseline", "search"):
                rebuilt = replace(template, d=row["config"]["d"], seed=row["config"]["seed"])
                assert store.get(rebuilt.to_dict()) is not None, f"the spec of {run} no longer finds {row['config']}"
    finally:
        store.close()
