"""int8 base weights against the bf16 base on SmolLM2-135M: the loss a fixed subspace budget reaches on each.

The packaged SmolLM2-135M-Instruct is cast to bfloat16; the same SAID trial (one d, one budget, one seed: the
experiment's tweet-sentiment-gen settings, metric the completion's loss) runs on that bf16 base and on its int8
codes (``base_quant: int8``, quantised from the bf16 weights). Reported per base: the untrained model's test loss,
the trained one's test / validation / training-sample loss, the stored weight bytes and the wall time. Run:
``.venv/bin/python benchmarks/int8_base.py --threads 2 [--d 1000] [--steps 63] [--json benchmarks/int8_base.json]``.
"""

from __future__ import annotations

import argparse
import json
import platform
from dataclasses import replace
from typing import Any

import torch

from intrinsic_dim.llamabench import stored_bytes
from intrinsic_dim.search.measure import spec_factory, trial_templates
from intrinsic_dim.spec import MeasureSpec
from intrinsic_dim.subspace import SubspaceModel
from intrinsic_dim.train import TrialConfig, run_trial

SETTINGS = {"model": "smollm2-135m", "task": "tweet-sentiment-gen", "metric": "loss", "max_train": 1000, "max_eval": 150,
            "max_length": 64, "batch_size": 16, "eval_every": 32, "method": "said"}


def _weight_bytes(factory: Any, quant: str | None, d: int) -> int:
    """Bytes the wrapped bf16 model's parameters and buffers hold (each storage once)."""
    return stored_bytes(SubspaceModel(factory(0).model, d=d, said=True, base_quant=quant))


def measure(d: int, steps: int, seed: int) -> list[dict[str, Any]]:
    spec = MeasureSpec.from_dict(SETTINGS | {"max_steps": steps})
    task, factory = spec_factory(spec)

    def bf16(s: int) -> Any:
        loaded = factory(s)
        loaded.model.to(torch.bfloat16)
        return loaded

    sub, _ = trial_templates(spec)
    base = run_trial(bf16, task, TrialConfig(method="base", seed=seed), progress=False)
    rows = []
    for quant in (None, "int8"):
        r = run_trial(bf16, task, replace(sub, d=d, seed=seed, base_quant=quant), progress=False)
        rows.append({"base": quant or "bf16", "d": d, "steps": r.steps, "seed": seed, "status": r.status,
                     "untrained_test_loss": base.metric, "test_loss": r.metric, "val_loss": r.val_metric,
                     "train_loss": r.train_metric, "wall_s": r.wall_s, "weight_bytes": _weight_bytes(bf16, quant, d)})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--d", type=int, default=1000)
    ap.add_argument("--steps", type=int, default=63)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rows = measure(args.d, args.steps, args.seed)
    a, b = rows
    print(f"SmolLM2-135M SAID d={args.d}, {a['steps']} steps, seed {args.seed}: test loss bf16 base {a['test_loss']:.4f}, "
          f"int8 base {b['test_loss']:.4f} (difference {b['test_loss'] - a['test_loss']:+.4f}; untrained {a['untrained_test_loss']:.4f}); "
          f"weights {a['weight_bytes'] / 2**20:.0f} / {b['weight_bytes'] / 2**20:.0f} MiB")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"machine": platform.processor() or platform.machine(), "threads": args.threads, "torch": torch.__version__,
                       "records": rows}, f, indent=2)


if __name__ == "__main__":
    main()
