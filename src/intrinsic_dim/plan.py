"""What an experiment file would cost before anything runs (``intrinsic-dim experiment FILE --dry-run``): every run's
spec checked, its model's parameter count (from the local folder or registry model, or for the public hub models of
the papers from their published shape, built on the meta device, so no hub is needed), the trials the search would
run at most, the optimizer steps, and an estimate of GPU hours at a stated throughput."""

from __future__ import annotations

import math
from typing import Any

from intrinsic_dim.experiment import Experiment
from intrinsic_dim.search import DEFAULT_DIMS, DEFAULT_RANKS
from intrinsic_dim.spec import MeasureSpec

HUB_SHAPES: dict[str, tuple[str, int, int, int, int, int, int]] = {
    "bert-base-uncased": ("bert", 768, 12, 12, 3072, 30522, 512),
    "bert-large-uncased": ("bert", 1024, 24, 16, 4096, 30522, 512),
    "roberta-base": ("roberta", 768, 12, 12, 3072, 50265, 514),
    "roberta-large": ("roberta", 1024, 24, 16, 4096, 50265, 514),
}
"""Hub id -> (model type, hidden, layers, heads, intermediate, vocabulary, positions): the published shapes of the
models in Aghajanyan et al.'s table, so their size is known without downloading them."""
GLUE_TRAIN = {"mrpc": 3668, "qqp": 363846, "sst2": 67349, "mnli": 392702, "qnli": 104743, "rte": 2490, "cola": 8551,
              "stsb": 5749, "wnli": 635}
"""Training examples of the GLUE tasks (the dataset cards' split sizes)."""
GPU_FLOPS = 2.0e14
"""Sustained training throughput assumed for the estimate: 200 TFLOP/s, about a quarter of an H100's bf16 peak."""


def parameter_count(model: str, num_labels: int = 2) -> int | None:
    """Parameters of ``model`` with a fresh classification head, for the published hub shapes of HUB_SHAPES (built on
    the meta device: nothing downloaded, nothing allocated); None for any other model."""
    import torch

    shape = HUB_SHAPES.get(model)
    if shape is None:
        return None
    from transformers import AutoConfig, AutoModelForSequenceClassification

    kind, hidden, layers, heads, inter, vocab, positions = shape
    config = AutoConfig.for_model(kind, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                                  intermediate_size=inter, vocab_size=vocab, max_position_embeddings=positions, num_labels=num_labels)
    with torch.device("meta"):
        net = AutoModelForSequenceClassification.from_config(config)
    return sum(p.numel() for p in net.parameters())


def max_trials(spec: MeasureSpec) -> int:
    """The most trials the search can run: baseline seeds, rate candidates, the coarse grid, one step below it, and the
    bisection of the widest grid interval to the requested precision, each point at every seed (a baseline-only run:
    its baseline seeds and full fine-tuning rates)."""
    s = spec.search
    grid = sorted(s.dims or (DEFAULT_RANKS if spec.trial.method == "lora" else DEFAULT_DIMS))
    widest = max((b / a for a, b in zip(grid, grid[1:])), default=2.0)
    bisection = 0 if s.curve else max(0, math.ceil(math.log2(math.log(widest) / math.log(1 + s.precision))))
    baseline = 0 if s.baseline is not None else (s.baseline_seeds or s.seeds)
    if s.baseline_only:
        return baseline + len(s.full_lr_search or ())
    rates = len(s.lr_search or ()) + len(s.full_lr_search or ())
    return baseline + rates + s.seeds * (len(grid) + (0 if s.curve else 1 + bisection))


def plan(exp: Experiment) -> list[dict[str, Any]]:
    """One row per run: model size, trials at most, steps per trial and the estimated GPU hours."""
    rows = []
    for run in exp.runs:
        spec, d = run.spec, run.spec.data
        n = GLUE_TRAIN.get(d.task)
        n_train = min(n, d.max_train) if n is not None and d.max_train else n
        t = spec.trial
        steps = t.max_steps or (math.ceil(t.epochs * math.ceil(n_train / t.batch_size)) if n_train else None)
        params = parameter_count(d.model)
        trials = max_trials(spec)
        flops = 6 * params * t.batch_size * d.max_length * steps * trials if params and steps else None
        method = "full" if spec.search.baseline_only else t.method
        rows.append({"run": run.name, "model": d.model, "task": d.task, "method": method, "params": params, "n_train": n_train,
                     "steps_per_trial": steps, "max_trials": trials,
                     "gpu_hours": flops / GPU_FLOPS / 3600 if flops else None})
    return rows


def format_plan(rows: list[dict[str, Any]]) -> str:
    """The plan as a table, with the totals and the assumption behind the hours."""
    out = [f"{'run':28s} {'model':20s} {'task':6s} {'method':6s} {'params':>8s} {'steps':>7s} {'trials':>6s} {'GPU h':>7s}"]
    for r in rows:
        params = f"{r['params'] / 1e6:.0f}M" if r["params"] else "?"
        hours = f"{r['gpu_hours']:.1f}" if r["gpu_hours"] is not None else "?"
        out.append(f"{r['run']:28s} {r['model']:20s} {r['task']:6s} {r['method']:6s} {params:>8s} {r['steps_per_trial'] or '?':>7} "
                   f"{r['max_trials']:6d} {hours:>7s}")
    known = [r["gpu_hours"] for r in rows if r["gpu_hours"] is not None]
    hours = (f"about {sum(known):,.0f} GPU hours at {GPU_FLOPS / 1e12:.0f} TFLOP/s sustained (6 x parameters x tokens per step)"
             if known else "GPU hours not estimated (no model of the papers' table)")
    out.append(f"at most {sum(r['max_trials'] for r in rows):,} trials; {hours}; '?' where a size is unknown here")
    return "\n".join(out)
