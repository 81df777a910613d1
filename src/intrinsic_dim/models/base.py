"""What a model loader returns (LoadedModel), its error, and the seeded context every fresh weight is drawn in."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

import torch
from torch import nn

from intrinsic_dim.tasks import Split


class ModelError(ValueError):
    """A model cannot be built as asked; the message says what to change."""


@dataclass
class LoadedModel:
    """A model ready for a task (in eval mode; the trainer switches it), and how to turn examples into its inputs."""

    name: str
    model: nn.Module
    encode: Callable[[Split, Sequence[int]], dict[str, torch.Tensor]]
    tokenizer: Any | None = None
    kind: str = "text"


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Run the body with torch's CPU RNG seeded by ``seed``, restoring the caller's RNG state afterwards."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield
