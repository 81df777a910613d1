"""Encoders: turn the examples at some indices of a split into a model's input tensors."""

from __future__ import annotations

import json
from typing import Any, Sequence

import torch

from intrinsic_dim.tasks import tokencache
from intrinsic_dim.tasks.base import Split, TaskError, as_index


class TextEncoder:
    """Tokenise the texts at some indices of a split (pairs as pairs), truncated, padded to the longest.

    A fast tokenizer's split is tokenised once per process (:mod:`intrinsic_dim.tasks.tokencache`) and each batch is
    padded from the stored ids, the same tensors the tokenizer's own call gives; other tokenizers are called per batch.
    """

    def __init__(self, tokenizer: Any, max_length: int) -> None:
        self.tokenizer = tokenizer
        self.max_length = max_length
        self._key = tokencache.tokenizer_key(tokenizer)
        self._memo: tokencache.PerSplit[tuple[tokencache.TokenizedSplit, dict[str, int]] | None] = tokencache.PerSplit()

    def _tokens(self, split: Split) -> tuple[tokencache.TokenizedSplit, dict[str, int]] | None:
        """The split's cached tokens and what each output pads with; None where the tokenizer is called per batch."""
        if split.texts is None:
            raise TaskError("this text model was given a split without texts")
        if split.texts and len(split.texts[0]) > 2:
            raise TaskError(f"a text model takes one or two texts per example, got {len(split.texts[0])}")
        if self._key is None or not len(split):
            return None

        def make() -> tuple[tokencache.TokenizedSplit, dict[str, int]] | None:
            tokens = tokencache.tokenized(self.tokenizer, self._key, split.texts, self.max_length)
            pads = tokencache.pad_values(self.tokenizer, tokens.keys)
            return (tokens, pads) if pads is not None else None

        return self._memo.get(split, make)

    def __call__(self, split: Split, indices: Sequence[int]) -> dict[str, torch.Tensor]:
        """Tokenised inputs (input_ids, attention_mask, ...) for the examples at ``indices``."""
        idx = as_index(indices).tolist()
        cached = self._tokens(split)
        if cached is not None and idx:
            tokens, pads = cached
            return tokens.batch(idx, pads, left=self.tokenizer.padding_side == "left")
        columns = [list(c) for c in zip(*(split.texts[i] for i in idx))]
        batch = self.tokenizer(*columns, truncation=True, max_length=self.max_length, padding=True, return_tensors="pt")
        return dict(batch)

    def lengths(self, split: Split) -> torch.Tensor:
        """Each example's token count after truncation (what padding to the longest pads to), int64 (N,)."""
        cached = self._tokens(split)
        if cached is not None:
            return cached[0].lengths.clone()
        columns = [list(c) for c in zip(*split.texts)]
        ids = self.tokenizer(*columns, truncation=True, max_length=self.max_length)["input_ids"]
        return torch.tensor([len(row) for row in ids], dtype=torch.int64)


class ImageEncoder:
    """The pixel values at some indices of a split."""

    def __call__(self, split: Split, indices: Sequence[int]) -> dict[str, torch.Tensor]:
        """``{"pixel_values": (N, C, H, W) float32}`` for the examples at ``indices``."""
        if split.images is None:
            raise TaskError("this image model was given a split without images")
        return {"pixel_values": split.images[as_index(indices)]}


IGNORE_INDEX = -100
"""Label of a token that is not a target (prompt and padding): ignored by the loss."""


class CausalEncoder:
    """Tokenise a generative split's examples for a causal LM: ``input_ids``, ``attention_mask`` and
    ``labels`` equal to the ids on the target tokens (the completion, or every token of a plain text)
    and IGNORE_INDEX on the prompt and the padding, so the loss is on the completion only.

    Prompt and completion are tokenised apart and joined (the completion ends with the end-of-sequence
    token), then padded on the right. Past ``max_length`` the prompt loses its oldest tokens first. With a fast tokenizer
    each split is tokenised once per process (:mod:`intrinsic_dim.tasks.tokencache`).
    """

    def __init__(self, tokenizer: Any, max_length: int, text_format: str) -> None:
        if text_format not in ("completion", "messages", "text"):
            raise TaskError(f"a causal LM needs a generative task (text format completion, messages or text), got {text_format!r}")
        if text_format == "messages" and not getattr(tokenizer, "chat_template", None):
            raise TaskError("this task holds chat messages but the model's tokenizer has no chat template; use prompt/completion JSONL")
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.text_format = text_format
        self._key = tokencache.tokenizer_key(tokenizer)
        self._memo: tokencache.PerSplit[list[tuple[list[int], list[int]]]] = tokencache.PerSplit()

    def _render(self, text: tuple[str, ...]) -> tuple[str, str]:
        """(prompt, completion) of one example; a plain text is all completion."""
        if self.text_format == "text":
            return "", text[0]
        if self.text_format == "completion":
            return text[0], text[1]
        messages = json.loads(text[0])
        full = self.tokenizer.apply_chat_template(messages, tokenize=False)
        prompt = self.tokenizer.apply_chat_template(messages[:-1], tokenize=False, add_generation_prompt=True)
        if not full.startswith(prompt):
            raise TaskError("the tokenizer's chat template does not render the conversation as prompt + last reply; use prompt/completion JSONL")
        return prompt, full[len(prompt):]

    @property
    def pad_id(self) -> int:
        """The id padding is filled with (the tokenizer's pad token, else 0; always masked out)."""
        return self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0

    def target_ids(self, completion: str) -> list[int]:
        """The completion's target tokens: its text (plus the end-of-sequence token for prompt/completion data), at most max_length."""
        tok = self.tokenizer
        if self.text_format == "text":
            return tok(completion, add_special_tokens=True)["input_ids"][: self.max_length]
        eos = [tok.eos_token_id] if tok.eos_token_id is not None and self.text_format == "completion" else []
        return (tok(completion, add_special_tokens=False)["input_ids"] + eos)[: self.max_length]

    def context_ids(self, prompt: str, target_length: int) -> list[int]:
        """The prompt's tokens that fit beside a completion of ``target_length`` tokens (the newest ones)."""
        room = self.max_length - target_length
        context = self.tokenizer(prompt, add_special_tokens=True)["input_ids"] if prompt and self.text_format != "text" else []
        return context[len(context) - room:] if room > 0 else []

    def _ids(self, prompt: str, completion: str) -> tuple[list[int], list[int]]:
        target = self.target_ids(completion)
        return self.context_ids(prompt, len(target)), target

    def pairs(self, prompts: Sequence[str], completions: Sequence[str]) -> dict[str, torch.Tensor]:
        """The batch of (prompt, completion) pairs, targets on the completion tokens only."""
        return self._batch([self._ids(p, c) for p, c in zip(prompts, completions)])

    def _batch(self, rows: Sequence[tuple[list[int], list[int]]]) -> dict[str, torch.Tensor]:
        """(context ids, target ids) rows joined, padded on the right, labelled on the targets."""
        width = max(len(p) + len(c) for p, c in rows)
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.int64)
        mask = torch.zeros((len(rows), width), dtype=torch.int64)
        labels = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.int64)
        for i, (p, c) in enumerate(rows):
            n = len(p) + len(c)
            ids[i, :n] = torch.tensor(p + c, dtype=torch.int64)
            mask[i, :n] = 1
            labels[i, len(p):n] = torch.tensor(c, dtype=torch.int64)
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}

    def _rows(self, split: Split) -> list[tuple[list[int], list[int]]] | None:
        """Every example's (context, target) ids, made once per process for a fast tokenizer; None uncached."""
        if self._key is None:
            return None
        return self._memo.get(split, lambda: tokencache.cached(
            ("causal", self._key, self.max_length, self.text_format), split.texts,
            lambda: [self._ids(*self._render(t)) for t in split.texts]))

    def __call__(self, split: Split, indices: Sequence[int]) -> dict[str, torch.Tensor]:
        """The batch of the examples at ``indices`` with their targets."""
        if split.texts is None:
            raise TaskError("this causal LM was given a split without texts")
        idx = as_index(indices).tolist()
        rows = self._rows(split)
        return self._batch([rows[i] for i in idx] if rows is not None else [self._ids(*self._render(split.texts[i])) for i in idx])
