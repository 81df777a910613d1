"""Encoders: turn the examples at some indices of a split into a model's input tensors."""

from __future__ import annotations

from typing import Any, Sequence

import torch

from intrinsic_dim.tasks.base import Split, TaskError, as_index


class TextEncoder:
    """Tokenise the texts at some indices of a split (pairs as pairs), truncated, padded to the longest."""

    def __init__(self, tokenizer: Any, max_length: int) -> None:
        self.tokenizer = tokenizer
        self.max_length = max_length

    def __call__(self, split: Split, indices: Sequence[int]) -> dict[str, torch.Tensor]:
        """Tokenised inputs (input_ids, attention_mask, ...) for the examples at ``indices``."""
        if split.texts is None:
            raise TaskError("this text model was given a split without texts")
        columns = [list(c) for c in zip(*(split.texts[i] for i in as_index(indices).tolist()))]
        if len(columns) > 2:
            raise TaskError(f"a text model takes one or two texts per example, got {len(columns)}")
        batch = self.tokenizer(*columns, truncation=True, max_length=self.max_length, padding=True, return_tensors="pt")
        return dict(batch)


class ImageEncoder:
    """The pixel values at some indices of a split."""

    def __call__(self, split: Split, indices: Sequence[int]) -> dict[str, torch.Tensor]:
        """``{"pixel_values": (N, C, H, W) float32}`` for the examples at ``indices``."""
        if split.images is None:
            raise TaskError("this image model was given a split without images")
        return {"pixel_values": split.images[as_index(indices)]}
