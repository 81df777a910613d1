"""Probe full fine-tuning rates before an experiment: the base model (no training) and one full fine-tuning trial
per rate, seed 0, at the budget the `measure` options give; prints validation / test / training metric and time.

    .venv/bin/python experiments/probes/full_lr.py 1e-4,3e-4 --model smollm2-135m --task tweet-sentiment-gen \\
        --max-train 500 --max-eval 150 --max-length 64 --batch-size 16 --eval-every 16 --threads 1

Used to pick `full_lr` where the default leaves full fine-tuning at the majority class (see the experiment headers).
"""

from __future__ import annotations

import sys
from dataclasses import replace

from intrinsic_dim.cli import _load, _parse, _setup, _trial_template
from intrinsic_dim.train import TrialConfig, run_trial


def main(argv: list[str]) -> None:
    rates = [float(x) for x in argv[0].split(",")]
    args = _parse(["measure", *argv[1:], "--quiet"])
    _setup(args)
    task, factory = _load(args)
    base = run_trial(factory, task, TrialConfig(method="base", seed=0), progress=False)
    print(f"base model: test {base.metric:.4f}, validation {base.val_metric:.4f} ({base.wall_s:.0f} s)", flush=True)
    for lr in rates:
        r = run_trial(factory, task, replace(_trial_template(args), method="full", d=None, lr=lr, seed=0), progress=False)
        print(f"full fine-tuning at {lr:g}: test {r.metric:.4f}, validation {r.val_metric:.4f}, training {r.train_metric:.4f}, "
              f"validation curve {[(s, round(v, 4)) for s, v in r.curve]} [{r.status}{' ' + r.error if r.error else ''}] "
              f"({r.wall_s:.0f} s)", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
