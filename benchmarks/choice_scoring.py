"""Label-word scoring of a causal LM: the cached pass (each prompt once) against the plain one (prompt + choice
in full, once per choice), timed in one run on the same prompts, with the largest difference between their scores.

Run on an otherwise idle machine (nothing else timed or running):
    .venv/bin/python benchmarks/choice_scoring.py [--model smollm2-135m] [--examples 64] [--threads 1]
"""

from __future__ import annotations

import argparse
import time

import torch

from intrinsic_dim.generative import EVAL_CHUNK, choice_scores, choice_scores_reference
from intrinsic_dim.models import load_model
from intrinsic_dim.tasks import load_task


def timed(fn, model, loaded, prompts, choices) -> tuple[float, torch.Tensor]:
    """Wall seconds and scores of ``fn`` over ``prompts`` in evaluation-sized chunks."""
    start = time.perf_counter()
    with torch.no_grad():
        scores = torch.cat([fn(model, loaded, prompts[s:s + EVAL_CHUNK], choices) for s in range(0, len(prompts), EVAL_CHUNK)])
    return time.perf_counter() - start, scores


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--examples", type=int, default=64)
    p.add_argument("--max-length", type=int, default=64)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    task = load_task("tweet-sentiment-gen", max_train=8, max_eval=a.examples)
    loaded = load_model(a.model, task, seed=0, max_length=a.max_length)
    model = loaded.model.eval()
    prompts = [t[0] for t in task.eval.texts]
    timed(choice_scores, model, loaded, prompts[:EVAL_CHUNK], task.choices)  # warm-up
    plain_s, plain = timed(choice_scores_reference, model, loaded, prompts, task.choices)
    cached_s, cached = timed(choice_scores, model, loaded, prompts, task.choices)
    same = bool((plain.argmax(1) == cached.argmax(1)).all())
    print(f"{a.model}, {len(prompts)} prompts x {len(task.choices)} label words, --threads {a.threads}: plain {plain_s:.1f} s, "
          f"cached {cached_s:.1f} s, ratio cached/plain {cached_s / plain_s:.2f}; largest score difference "
          f"{(plain.float() - cached).abs().max().item():.2e}, same predictions: {same}")


if __name__ == "__main__":
    main()
