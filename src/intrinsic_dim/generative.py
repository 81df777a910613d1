"""Loss and metrics of causal language models on generative tasks: the mean cross-entropy of the
target tokens (labels not equal to IGNORE_INDEX, shifted by one), and accuracy by scoring each class's
completion (the sum of its tokens' log-probabilities given the prompt) for tasks with ``choices``."""

from __future__ import annotations

import copy
import math
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from intrinsic_dim.tasks import Split, Task
from intrinsic_dim.tasks.encoders import IGNORE_INDEX

if TYPE_CHECKING:
    from intrinsic_dim.models import LoadedModel

EVAL_CHUNK = 16
"""Examples per forward pass when evaluating a causal LM (its logits span the whole vocabulary)."""


def _logits(out: Any) -> torch.Tensor:
    return out.logits if hasattr(out, "logits") else out


def _nll(logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row: summed cross-entropy of ``logits`` (B, K, V) against ``targets`` (B, K), IGNORE_INDEX skipped, and the count."""
    keep = targets != IGNORE_INDEX
    rows, cols = keep.nonzero(as_tuple=True)
    nll = nn.functional.cross_entropy(logits[rows, cols].float(), targets[rows, cols], reduction="none")
    return torch.zeros(len(targets), dtype=nll.dtype, device=nll.device).index_add(0, rows, nll), keep.sum(1)


def token_nll(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per example: the summed negative log-likelihood of its target tokens and how many there are
    (token t is predicted from the logits at t - 1; IGNORE_INDEX positions count for nothing)."""
    return _nll(logits[:, :-1], labels[:, 1:])


def batch_nll(model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`token_nll` of the model on a batch from CausalEncoder. The LM head runs only at the positions
    that predict a target (``logits_to_keep``, which Hugging Face causal LMs take), not over the whole sequence."""
    targets = batch["labels"][:, 1:]
    positions = (targets != IGNORE_INDEX).any(0).nonzero().flatten()
    out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], logits_to_keep=positions)
    return _nll(_logits(out), targets[:, positions])


def lm_loss(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The training loss of a causal LM on a batch from CausalEncoder: mean cross-entropy per target token."""
    total, count = batch_nll(model, batch)
    return total.sum() / count.sum().clamp(min=1)


def choice_scores_reference(model: nn.Module, loaded: LoadedModel, prompts: list[str], choices: list[str]) -> torch.Tensor:
    """(len(prompts), len(choices)) total log-probability of each choice's completion (its tokens and the end of
    sequence) given each prompt: one full forward pass of prompt + completion per choice. The plain version of
    :func:`choice_scores`."""
    columns = []
    for choice in choices:
        batch = loaded.encode.pairs(prompts, [choice] * len(prompts))
        columns.append(-batch_nll(model, batch)[0])
    return torch.stack(columns, 1)


@torch.no_grad()
def choice_scores(model: nn.Module, loaded: LoadedModel, prompts: list[str], choices: list[str]) -> torch.Tensor:
    """:func:`choice_scores_reference`, with each prompt run once instead of once per choice. The encoder keeps
    max_length minus the completion's length of a prompt, so choices whose completions have the same number of
    tokens share one truncated prompt: it runs once with its keys and values cached, its last position scores every
    choice's first token, and each choice then runs only its own remaining tokens on a copy of that cache."""
    encode = loaded.encode
    targets = [encode.target_ids(c) for c in choices]
    scores = torch.empty(len(prompts), len(choices), dtype=torch.float32)
    for m in sorted({len(t) for t in targets}):
        group = [j for j, t in enumerate(targets) if len(t) == m]
        contexts = [encode.context_ids(p, m) for p in prompts]
        # run each choice whole where no prompt token is left to predict its first token, or the model returns no cache
        prompt = _prompt_pass(model, encode, contexts) if all(contexts) else None
        if prompt is None or prompt[1] is None:
            scores[:, group] = choice_scores_reference(model, loaded, prompts, [choices[j] for j in group])
            continue
        first, cache, mask, lengths = prompt
        for j in group:
            t = targets[j]
            total = first[:, t[0]].clone()
            if m > 1:
                rest = torch.tensor(t, dtype=torch.int64).expand(len(prompts), -1)
                out = model(
                    input_ids=rest[:, :-1], attention_mask=torch.cat([mask, torch.ones_like(rest[:, :-1])], 1),
                    position_ids=lengths[:, None] + torch.arange(m - 1), cache=copy.deepcopy(cache), use_cache=True,
                )
                logp = torch.log_softmax(_logits(out).float(), -1)
                total += logp.gather(2, rest[:, 1:, None]).squeeze(2).sum(1)
            scores[:, j] = total
    return scores


def _prompt_pass(model: nn.Module, encode: Any, contexts: list[list[int]]) -> tuple[torch.Tensor, Any, torch.Tensor, torch.Tensor]:
    """Run the right-padded prompts once: the log-probabilities of the next token after each prompt's last real
    token (B, V), the key/value cache (None if the model returns none), the attention mask and the prompt lengths."""
    lengths = torch.tensor([len(c) for c in contexts], dtype=torch.int64)
    width = int(lengths.max())
    ids = torch.full((len(contexts), width), encode.pad_id, dtype=torch.int64)
    mask = torch.zeros((len(contexts), width), dtype=torch.int64)
    for i, c in enumerate(contexts):
        ids[i, : len(c)] = torch.tensor(c, dtype=torch.int64)
        mask[i, : len(c)] = 1
    keep = torch.unique(lengths - 1)
    out = model(input_ids=ids, attention_mask=mask, use_cache=True, logits_to_keep=keep)
    last = _logits(out)[torch.arange(len(contexts)), torch.searchsorted(keep, lengths - 1)]
    return torch.log_softmax(last.float(), -1), getattr(out, "cache", None), mask, lengths


def evaluate_generative(model: nn.Module, loaded: LoadedModel, task: Task, split: Split, batch_size: int) -> dict[str, float]:
    """``loss`` (per target token) and ``perplexity``; for a task with ``choices`` also ``accuracy`` by label-word
    scoring, and the loss is that of the true label's completion."""
    chunk = max(1, min(batch_size, EVAL_CHUNK))
    if task.choices:
        scores = torch.cat([
            choice_scores(model, loaded, [split.texts[i][0] for i in range(s, min(s + chunk, len(split)))], task.choices)
            for s in range(0, len(split), chunk)
        ])
        # the true completions' loss per target token comes free: their scores are summed log-probabilities
        lengths = torch.tensor([len(loaded.encode.target_ids(c)) for c in task.choices])[split.labels]
        loss = -scores.double().gather(1, split.labels[:, None]).sum().item() / max(1, int(lengths.sum()))
        return {"accuracy": (scores.argmax(1) == split.labels).double().mean().item(), "loss": loss,
                "perplexity": math.exp(min(loss, 700.0))}
    total, count = 0.0, 0
    for s in range(0, len(split), chunk):
        batch = loaded.encode(split, range(s, min(s + chunk, len(split))))
        nll, n = batch_nll(model, batch)
        total, count = total + nll.sum().item(), count + int(n.sum())
    loss = total / count if count else float("nan")
    return {"loss": loss, "perplexity": math.exp(min(loss, 700.0))}
