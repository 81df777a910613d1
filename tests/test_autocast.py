"""The opt-in bf16 autocast of a trial's training forward: P(z) stays float32, so the gradient the subspace's
backward recomputes is the gradient of the forward that ran; the setting is part of a trial's key only when set."""

import math

import pytest
import torch
from torch import nn

from intrinsic_dim.models import load_model
from intrinsic_dim.results import stored_key
from intrinsic_dim.subspace import SubspaceModel
from intrinsic_dim.tasks.base import Split, Task
from intrinsic_dim.train import TrialConfig, run_trial


@pytest.mark.parametrize("kind", ["dense", "sparse", "fastfood"])
def test_autocast_loss_and_gradient_match_an_explicit_float32_weight(kind):
    """Under autocast the wrapped model computes theta0 + P(z) in float32 and then the layer casts it, exactly as a
    plain model whose weight is that float32 tensor: same loss, same gradient for z (through P's transpose)."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(24, 40), nn.ReLU(), nn.Linear(40, 5))
    sm = SubspaceModel(net, d=30, projection=kind, said=False, seed=3)
    with torch.no_grad():
        sm.z.copy_(torch.randn(30) * 0.3)
    x, y = torch.randn(16, 24), torch.randint(0, 5, (16,))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = nn.functional.cross_entropy(sm(x), y)
    loss.backward()

    theta0 = [t.detach().clone() for t in sm._theta0]
    z = sm.z.detach().clone().requires_grad_(True)
    flat = sm.projection(z)  # the whole P z with autograd, outside autocast: float32
    ws, o = [], 0
    for t in theta0:
        ws.append(t + flat[o : o + t.numel()].view(t.shape))
        o += t.numel()
    named = dict(zip(sm._names, ws))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        h = nn.functional.relu(nn.functional.linear(x, named["0.weight"], named["0.bias"]))
        ref = nn.functional.cross_entropy(nn.functional.linear(h, named["2.weight"], named["2.bias"]), y)
    ref.backward()
    assert loss.item() == ref.item()
    torch.testing.assert_close(sm.z.grad, z.grad, rtol=1e-4, atol=1e-6)


def _task():
    texts = [("good day",), ("bad day",), ("lovely film",), ("awful film",)] * 8
    split = Split(labels=torch.tensor([1, 0, 1, 0] * 8), texts=texts)
    return Task(name="toy", kind="text", label_names=["neg", "pos"], metric="accuracy", train=split, eval=split, description="toy")


def test_a_bf16_trial_trains_keys_its_setting_and_leaves_float32_keys_alone():
    task = _task()
    factory = lambda seed: load_model("bert-tiny-random", task, seed=seed, max_length=8)  # noqa: E731
    plain = TrialConfig(d=50, seed=1, max_steps=6, batch_size=8, lr=0.3)
    bf16 = TrialConfig(d=50, seed=1, max_steps=6, batch_size=8, lr=0.3, autocast="bf16")
    assert "autocast" not in plain.to_dict() and bf16.to_dict()["autocast"] == "bf16"
    assert stored_key({**plain.to_dict(), "autocast": None}) == plain.to_dict()
    a, b = run_trial(factory, task, plain, progress=False), run_trial(factory, task, bf16, progress=False)
    assert a.ok and b.ok and math.isfinite(b.train_loss)
    assert a.losses != b.losses  # the forward really ran in bf16
    assert max(abs(x[1] - y[1]) for x, y in zip(a.losses, b.losses)) < 0.05  # and stayed close to float32
    with pytest.raises(ValueError, match="autocast"):
        TrialConfig(d=50, autocast="fp16")


@pytest.mark.parametrize("flags", [[], ["amx_bf16"]])
def test_a_bf16_run_on_a_cpu_without_native_bf16_says_it_is_emulated(tmp_path, monkeypatch, flags):
    """bf16 is emulated (8x slower on a MiniLM trial here) where the CPU lacks AVX512-BF16 and AMX: the run says so
    before its first trial, and says nothing where the CPU has them."""
    import intrinsic_dim.runs as runs
    from intrinsic_dim.spec import MeasureSpec

    data = tmp_path / "data"
    data.mkdir()
    for split, n in (("train", 32), ("validation", 16)):
        rows = [f"{'good fine' if i % 2 else 'bad poor'} day,{'pos' if i % 2 else 'neg'}" for i in range(n)]
        (data / f"{split}.csv").write_text("sentence,label\n" + "\n".join(rows) + "\n")
    monkeypatch.setattr(runs, "native_bf16", lambda: flags)
    spec = MeasureSpec.from_dict({"model": "bert-tiny-random", "task": str(data), "seeds": 1, "dims": [50], "max_steps": 1,
                                  "batch_size": 8, "max_length": 8, "baseline": 0.9, "autocast": "bf16"})
    said: list[str] = []
    runs.run_measure(spec, tmp_path / "run", progress=False, log=said.append)
    emulated = [s for s in said if "emulated" in s]
    assert (len(emulated) == 1) == (not flags)
