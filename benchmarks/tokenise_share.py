"""What tokenisation costs a MiniLM-L6 trial, and what the process-wide tokenisation cache saves.

The same SAID trial (the `measure` defaults: 2,000 training examples, 1 epoch, selection on 250 validation examples, the
chosen checkpoint on the whole validation and test splits) runs three times in this process at a pinned thread count:
uncached (the tokenizer called on every batch, as before the cache), cached from cold (a sweep's first trial: each split
tokenised once, then padded from the stored ids) and cached warm (every later trial of the sweep). All three must give
the same metric bit for bit. Also timed: tokenising the task's three splits once, and loading the tokenizer (each trial
loads its own). Run: ``.venv/bin/python benchmarks/tokenise_share.py --threads 1 [--tasks ...] [--json FILE]``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from dataclasses import replace
from pathlib import Path
from typing import Any
from unittest import mock

import torch

from intrinsic_dim.models.packaged import minilm_path
from intrinsic_dim.models.registry import _tokenizer
from intrinsic_dim.search.measure import spec_factory, trial_templates
from intrinsic_dim.spec import MeasureSpec
from intrinsic_dim.tasks import tokencache
from intrinsic_dim.train import run_trial


def _seconds(f: Any, repeat: int = 1) -> float:
    start = time.perf_counter()
    for _ in range(repeat):
        f()
    return (time.perf_counter() - start) / repeat


def measure(task_name: str, d: int, sizes: dict[str, Any]) -> dict[str, Any]:
    """One record: the three trials' wall times and metrics, the one-time tokenisation and a tokenizer load."""
    spec = MeasureSpec.from_dict({"model": "minilm-l6", "task": task_name, "method": "said", **sizes})
    task, factory = spec_factory(spec)
    cfg = replace(trial_templates(spec)[0], d=d, seed=0)
    trials = {}
    tokencache.clear()
    with mock.patch.object(tokencache, "tokenizer_key", lambda tokenizer: None):
        trials["uncached"] = run_trial(factory, task, cfg, progress=False)
    tokencache.clear()
    trials["cached_cold"] = run_trial(factory, task, cfg, progress=False)
    trials["cached_warm"] = run_trial(factory, task, cfg, progress=False)
    metrics = {k: r.metric for k, r in trials.items()}
    if len(set(metrics.values())) != 1 or any(r.status != "ok" for r in trials.values()):
        raise SystemExit(f"{task_name}: the three trials disagree: {metrics}")
    tokenizer = _tokenizer(minilm_path())
    splits = [s for s in (task.train, task.eval, task.test) if s is not None]

    def tokenise_all() -> None:
        tokencache.clear()
        key = tokencache.tokenizer_key(tokenizer)
        for s in splits:
            tokencache.tokenized(tokenizer, key, s.texts, spec.data.max_length)

    once = _seconds(tokenise_all, repeat=3)
    load = _seconds(lambda: tokencache.tokenizer_key(_tokenizer(minilm_path())), repeat=5)
    walls = {k: r.wall_s for k, r in trials.items()}
    return {"task": task_name, "d": d, "sizes": sizes, "metric": metrics["uncached"], "wall_s": walls,
            "warm_over_uncached": walls["cached_warm"] / walls["uncached"],
            "saved_share": 1 - walls["cached_warm"] / walls["uncached"],
            "tokenise_splits_once_s": once, "tokenizer_load_and_key_s": load,
            "examples": {"train": len(task.train), "eval": len(task.eval), "test": len(task.test) if task.test else 0}}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--d", type=int, default=500)
    p.add_argument("--tasks", nargs="+", default=["tweet-sentiment", "reuters-r8"])
    p.add_argument("--max-train", type=int, default=None, help="default: measure's (a smaller one for a smoke run)")
    p.add_argument("--max-eval", type=int, default=None, help="default: measure's")
    p.add_argument("--json", default=None, help="write the records and the machine to this file")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    records = []
    print(f"{'task':16s} {'uncached s':>10s} {'cold s':>8s} {'warm s':>8s} {'warm/unc':>8s} {'once s':>7s} {'load s':>7s}", flush=True)
    for name in args.tasks:
        sizes = {k: v for k, v in (("max_train", args.max_train), ("max_eval", args.max_eval)) if v is not None}
        r = measure(name, args.d, sizes)
        records.append(r)
        w = r["wall_s"]
        print(f"{name:16s} {w['uncached']:10.1f} {w['cached_cold']:8.1f} {w['cached_warm']:8.1f} {r['warm_over_uncached']:8.3f} "
              f"{r['tokenise_splits_once_s']:7.2f} {r['tokenizer_load_and_key_s']:7.2f}", flush=True)
    if args.json:
        machine = {"processor": platform.processor() or platform.machine(), "threads": args.threads, "torch": torch.__version__}
        Path(args.json).write_text(json.dumps({"machine": machine, "records": records}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
