"""One trial is a function of its configuration: same seed, same result, caller's RNG untouched."""

import math

import torch

from intrinsic_dim.models import load_model
from intrinsic_dim.tasks.base import Split, Task
from intrinsic_dim.train import TrialConfig, run_trial


def _task():
    texts = [("good day",), ("bad day",), ("lovely film",), ("awful film",)] * 8
    labels = torch.tensor([1, 0, 1, 0] * 8)
    split = Split(labels=labels, texts=texts)
    return Task(name="toy", kind="text", label_names=["neg", "pos"], metric="accuracy", train=split, eval=split, description="toy")


def test_trial_is_reproducible_with_dropout_and_leaves_global_rng_alone():
    task = _task()
    factory = lambda seed: load_model("bert-tiny-random", task, seed=seed, max_length=8)  # noqa: E731
    cfg = TrialConfig(d=50, seed=1, max_steps=6, batch_size=8, lr=0.3)
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    a = run_trial(factory, task, cfg, progress=False)
    assert torch.equal(torch.random.get_rng_state(), before)
    torch.manual_seed(999)
    b = run_trial(factory, task, cfg, progress=False)
    assert a.ok and b.ok and math.isfinite(a.train_loss)
    assert (a.train_loss, a.metric, a.curve) == (b.train_loss, b.metric, b.curve)
