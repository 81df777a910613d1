"""One trial on two CPU processes (gloo): the same projection on every rank, only d numbers all-reduced,
and the trained z of a single process on the same global batch."""

import json
import os
import signal
import subprocess
import sys

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from intrinsic_dim import distributed
from intrinsic_dim.train import TrialConfig, train_model
from test_cli import _common, data_dir  # noqa: F401 - the fixture is used by name

CFG = TrialConfig(d=100, seed=0, lr=0.3, max_steps=4, batch_size=16, eval_every=2, select="final")


def _trained(data):
    """z and lambda after CFG's trial on the tiny BERT with dropout off (masks would differ per rank)."""
    from intrinsic_dim.models import load_model
    from intrinsic_dim.tasks import load_task

    torch.set_num_threads(1)
    task = load_task(str(data), max_train=None, max_eval=None, seed=0)
    loaded = load_model("bert-tiny-random", task, seed=0, max_length=16)
    for module in loaded.model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    sm, result = train_model(loaded, task, CFG, progress=False)
    return {"z": sm.z.detach().clone(), "lam": sm.lam.detach().clone(), "losses": result.losses}


def _refused_full(data):
    """The error a data-parallel full fine-tuning trial stops with."""
    from intrinsic_dim.models import load_model
    from intrinsic_dim.tasks import load_task

    task = load_task(str(data), max_train=None, max_eval=None, seed=0)
    try:
        train_model(load_model("bert-tiny-random", task, seed=0, max_length=16), task, TrialConfig(method="full", max_steps=1), False)
    except ValueError as e:
        return str(e)
    return "not refused"


def _rank(rank, size, init, data, out, mode):
    dist.init_process_group("gloo", init_method=f"file://{init}", rank=rank, world_size=size)
    try:
        if mode == "train":
            sizes = []
            reduce = dist.all_reduce
            dist.all_reduce = lambda t, *a, **k: (sizes.append(t.numel()), reduce(t, *a, **k))[1]
            state = _trained(data)
            dist.all_reduce = reduce
            torch.save(state | {"sizes": sizes}, os.path.join(out, f"rank{rank}.pt"))
        else:
            from intrinsic_dim.subspace import SubspaceModel

            torch.manual_seed(0)
            model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.Linear(8, 2))
            sm = SubspaceModel(model, d=20, seed=rank if mode == "mismatch" else 0)
            try:
                message = "same " + distributed.check_same_projection(sm)
            except distributed.ProjectionMismatch as e:
                message = str(e)
            if mode == "same":
                message += "\n" + _refused_full(data)
            with open(os.path.join(out, f"rank{rank}.txt"), "w") as f:
                f.write(message)
    finally:
        dist.destroy_process_group()


def _spawn(tmp_path, data, mode):
    out = tmp_path / mode
    out.mkdir()
    mp.spawn(_rank, args=(2, str(tmp_path / f"{mode}.init"), str(data), str(out), mode), nprocs=2, join=True)
    return out


def test_two_processes_train_the_single_process_z(tmp_path, data_dir):  # noqa: F811
    before = torch.get_num_threads()
    try:
        single = _trained(data_dir)
    finally:
        torch.set_num_threads(before)
    out = _spawn(tmp_path, data_dir, "train")
    ranks = [torch.load(out / f"rank{r}.pt") for r in range(2)]
    assert torch.equal(ranks[0]["z"], ranks[1]["z"]) and torch.equal(ranks[0]["lam"], ranks[1]["lam"])
    torch.testing.assert_close(ranks[0]["z"], single["z"], rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(ranks[0]["lam"], single["lam"], rtol=1e-4, atol=1e-6)
    assert [s for s, _ in ranks[0]["losses"]] == [s for s, _ in single["losses"]]
    torch.testing.assert_close(torch.tensor([v for _, v in ranks[0]["losses"]]), torch.tensor([v for _, v in single["losses"]]))
    d = single["z"].numel() + single["lam"].numel()
    assert d == CFG.d
    assert ranks[0]["sizes"] == [1, d] * CFG.max_steps  # per step: the loss, then z and lambda's gradient (d numbers, not D)


def test_ranks_with_different_projections_are_refused(tmp_path, data_dir):  # noqa: F811
    same = _spawn(tmp_path, data_dir, "same")
    texts = [(same / f"rank{r}.txt").read_text() for r in range(2)]
    assert texts[0].startswith("same ") and texts[0] == texts[1]
    assert "a data-parallel trial trains a subspace model only" in texts[0]
    bad = _spawn(tmp_path, data_dir, "mismatch")
    for r in range(2):
        assert "the ranks built different projections" in (bad / f"rank{r}.txt").read_text()


def test_shards_cover_the_batch():
    idx = list(range(7))
    parts = [distributed.shard(idx, r, 3) for r in range(3)]
    assert sum(parts, []) == idx and sorted(map(len, parts)) == [2, 2, 3]
    assert distributed.shard([5], 1, 2) == [5] and distributed.shard([5], 0, 2) == []


def test_train_under_torchrun(tmp_path, data_dir):  # noqa: F811
    """'--' ends torchrun's options: its parser would take train's --d for an ambiguous prefix of its own."""
    out = tmp_path / "adapter"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "intrinsic_dim.cli",
           "--", "train", *_common(data_dir), "--d", "100", "--max-steps", "3",
           "--lr", "0.3", "--threads", "1", "--out", str(out)]
    env = os.environ | {"HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # torchrun and both ranks
        raise
    assert proc.returncode == 0, stderr[-3000:]
    assert "in 3 steps on 2 processes" in stdout and stdout.count("adapter saved") == 1
    assert json.loads((out / "adapter_config.json").read_text())["d"] == 100
