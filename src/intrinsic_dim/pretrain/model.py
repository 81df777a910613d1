"""The MLM model, its loss and optimiser, the training blocks in seeded epoch order, and the held-out loss."""

from __future__ import annotations

from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from intrinsic_dim import interrupts
from intrinsic_dim.pretrain.config import EVAL_SEED, PretrainConfig
from intrinsic_dim.tasks.base import seeded_order


# --- model and training ---------------------------------------------------------------------------


def build_model(cfg: PretrainConfig, tokenizer: Any) -> nn.Module:
    """A randomly initialised BertForMaskedLM of the configured shape (weights drawn from ``cfg.seed``)."""
    from transformers import BertConfig, BertForMaskedLM

    from intrinsic_dim.models import seeded

    config = BertConfig(
        vocab_size=len(tokenizer), hidden_size=cfg.hidden, num_hidden_layers=cfg.layers, num_attention_heads=cfg.heads,
        intermediate_size=cfg.intermediate, max_position_embeddings=512, pad_token_id=tokenizer.pad_token_id,
    )
    with seeded(cfg.seed):
        return BertForMaskedLM(config)


def mlm_loss(model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """BertForMaskedLM's loss, with the vocabulary projection computed only at the target positions (0 without targets)."""
    hidden = model.bert(input_ids=inputs).last_hidden_state
    target = labels != -100
    if not target.any():
        return hidden.sum() * 0.0
    return F.cross_entropy(model.cls(hidden[target]), labels[target])


def make_optimizer(model: nn.Module, cfg: PretrainConfig) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    decay = [p for p in model.parameters() if p.ndim >= 2]
    plain = [p for p in model.parameters() if p.ndim < 2]
    with interrupts.deferred():  # the first optimizer imports Triton, which aborts if interrupted
        opt = torch.optim.AdamW(
            [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": plain, "weight_decay": 0.0}],
            lr=cfg.lr, betas=(0.9, 0.98), eps=1e-6,
        )
    warm, total = cfg.warmup, cfg.max_steps

    def factor(step: int) -> float:
        return (step + 1) / warm if step < warm else max(0.0, (total - step) / max(1, total - warm))

    return opt, torch.optim.lr_scheduler.LambdaLR(opt, factor)


Masking = Callable[[torch.Tensor, torch.Generator], tuple[torch.Tensor, torch.Tensor]]


class Blocks:
    """Training blocks in a fixed order: epoch e is a counter-based permutation of (seed, e)."""

    def __init__(self, blocks: torch.Tensor, batch_size: int, seed: int) -> None:
        self.blocks, self.batch_size, self.seed = blocks, batch_size, seed
        self.per_epoch = len(blocks) // batch_size
        self._epoch, self._order = -1, torch.empty(0, dtype=torch.int64)

    def batch(self, step: int) -> torch.Tensor:
        """The blocks of update ``step`` (0-based)."""
        epoch, k = divmod(step, self.per_epoch)
        if epoch != self._epoch:
            self._epoch, self._order = epoch, seeded_order(len(self.blocks), self.seed, 1000 + epoch)
        return self.blocks[self._order[k * self.batch_size : (k + 1) * self.batch_size]]


@torch.no_grad()
def eval_loss(model: nn.Module, blocks: torch.Tensor, masking: Masking, batch_size: int) -> float | None:
    """Mean MLM loss over the held-out blocks, masked the same way at every checkpoint (None without blocks)."""
    if len(blocks) == 0:
        return None
    model.eval()
    gen = torch.Generator().manual_seed(EVAL_SEED)
    total, count = 0.0, 0
    for i in range(0, len(blocks), batch_size):
        inputs, labels = masking(blocks[i : i + batch_size], gen)
        n = int((labels != -100).sum())
        total += float(mlm_loss(model, inputs, labels)) * n
        count += n
    return total / count if count else None
