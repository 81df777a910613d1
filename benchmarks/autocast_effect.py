"""bf16 autocast against float32 on real trials: the reported test metric and the wall time of the same trials.

The same MiniLM-L6 trials (SAID at one d, and full fine-tuning; several seeds) run once in float32 and once with
``autocast: bf16``, one after the other in this process at a pinned thread count. The table gives each trial's test
metric in both precisions, the mean difference (bf16 - float32) against the seed spread, and the wall-time ratio. On a
CPU without AVX512-BF16 / AMX torch emulates bf16, so the ratio there says nothing about the hardware that has it; the
metric difference does. Each record is printed, and written to ``--json``, as its two trials finish (a MiniLM trial takes minutes on a CPU).
Run: ``.venv/bin/python benchmarks/autocast_effect.py --threads 1 [--seeds N] [--json FILE]``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
from dataclasses import replace
from pathlib import Path
from typing import Any, Iterator

import torch

from intrinsic_dim.kernels.toolchain import native_bf16
from intrinsic_dim.search.measure import spec_factory, trial_templates
from intrinsic_dim.spec import MeasureSpec
from intrinsic_dim.train import run_trial

SETTINGS = {"model": "minilm-l6", "task": "tweet-sentiment", "max_train": 512, "max_eval": 256, "max_steps": 16,
            "batch_size": 32, "method": "said", "gap_examples": 0}


def measure(d: int, seeds: int) -> Iterator[dict[str, Any]]:
    """One record per (trial kind, seed): its test metric and wall time in float32 and in bf16, yielded as its two
    trials finish (a trial takes minutes here, so the table grows as they do)."""
    spec = MeasureSpec.from_dict(SETTINGS)
    task, factory = spec_factory(spec)
    sub, full = trial_templates(spec)
    for kind, template in (("said", replace(sub, d=d)), ("full", full)):
        for seed in range(seeds):
            row: dict[str, Any] = {"trial": kind, "d": d if kind == "said" else None, "seed": seed}
            for precision, autocast in (("float32", None), ("bf16", "bf16")):
                res = run_trial(factory, task, replace(template, seed=seed, autocast=autocast), progress=False)
                row[precision] = {"metric": res.metric, "wall_s": res.wall_s, "status": res.status}
            yield row


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--d", type=int, default=500)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--json", default=None, help="write the records and the machine to this file")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    native = native_bf16()
    machine = {"processor": platform.processor() or platform.machine(), "native_bf16": native, "threads": args.threads,
               "torch": torch.__version__}
    print(f"{'trial':6s} {'seed':>4s} {'float32':>8s} {'bf16':>8s} {'diff':>8s} {'f32 s':>7s} {'bf16 s':>7s}", flush=True)
    rows: list[dict[str, Any]] = []
    for r in measure(args.d, args.seeds):
        a, b = r["float32"], r["bf16"]
        print(f"{r['trial']:6s} {r['seed']:4d} {a['metric']:8.4f} {b['metric']:8.4f} {b['metric'] - a['metric']:+8.4f} "
              f"{a['wall_s']:7.1f} {b['wall_s']:7.1f}", flush=True)
        rows.append(r)
        if args.json:
            record = {"settings": SETTINGS | {"d": args.d}, "machine": machine, "rows": rows}
            Path(args.json).write_text(json.dumps(record, indent=2) + "\n")
    for kind in ("said", "full"):
        sel = [r for r in rows if r["trial"] == kind]
        diffs = [r["bf16"]["metric"] - r["float32"]["metric"] for r in sel]
        spread = statistics.stdev(r["float32"]["metric"] for r in sel) if len(sel) > 1 else float("nan")
        ratio = sum(r["bf16"]["wall_s"] for r in sel) / sum(r["float32"]["wall_s"] for r in sel)
        print(f"{kind}: mean difference bf16 - float32 {statistics.mean(diffs):+.4f} (largest {max(diffs, key=abs):+.4f}); "
              f"float32 seed spread {spread:.4f}; wall ratio bf16 / float32 {ratio:.2f}")
    print(f"CPU bf16 arithmetic: {', '.join(native) if native else 'none (emulated)'}; threads {args.threads}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
