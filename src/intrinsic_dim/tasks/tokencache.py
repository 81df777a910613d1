"""Tokenised splits kept once per process. Every trial of a sweep loads a fresh tokenizer, but the same tokenizer on the
same texts gives the same ids: each split is tokenised once per (tokenizer, max_length, texts), and every batch after
that — training batches, checkpoint selection, the final evaluations, every later trial — is padded from the stored ids,
exactly as the tokenizer itself would pad them."""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from typing import Any, Callable, Generic, Sequence, TypeVar

import torch

MAX_ENTRIES = 16
"""Tokenised splits kept at most (least recently used dropped first): a sweep uses three or four."""

T = TypeVar("T")
_PAD_VALUES = {"attention_mask": 0, "special_tokens_mask": 1}
_CACHE: OrderedDict[tuple[Any, ...], Any] = OrderedDict()
_BACKEND_KEYS: dict[str, str] = {}


class TokenizedSplit:
    """Every example's unpadded ids of one split (and token type ids where the tokenizer gives them), flat with offsets
    (int32: about 4 bytes a token per output kept; batches come out int64, as the tokenizer gives them)."""

    def __init__(self, encoded: dict[str, list[list[int]]]) -> None:
        self.lengths = torch.tensor([len(row) for row in encoded["input_ids"]], dtype=torch.int64)
        self.offsets = torch.zeros(len(self.lengths) + 1, dtype=torch.int64)
        self.offsets[1:] = self.lengths.cumsum(0)
        self.keys = list(encoded)
        self.flat = {k: torch.tensor([t for row in rows for t in row], dtype=torch.int32)  # ids < 2^31; half of int64's memory
                     for k, rows in encoded.items() if k != "attention_mask"}

    def batch(self, indices: Sequence[int], pad_values: dict[str, int], left: bool) -> dict[str, torch.Tensor]:
        """The examples at ``indices`` padded to the longest of them, on the tokenizer's padding side."""
        lengths = self.lengths[list(indices)]
        width = int(lengths.max()) if len(lengths) else 0
        out = {k: torch.full((len(lengths), width), pad_values[k], dtype=torch.int64) for k in self.keys}
        for row, (i, n) in enumerate(zip(indices, lengths.tolist())):
            start, cols = int(self.offsets[i]), slice(width - n, width) if left else slice(0, n)
            for k, flat in self.flat.items():
                out[k][row, cols] = flat[start : start + n]
            if "attention_mask" in out:
                out["attention_mask"][row, cols] = 1
        return out


class PerSplit(Generic[T]):
    """An encoder's values made once per split object; each split is kept beside its value, so its id is not reused."""

    def __init__(self) -> None:
        self._items: dict[int, tuple[Any, T]] = {}

    def get(self, split: Any, make: Callable[[], T]) -> T:
        """The split's value, made on first use."""
        if id(split) not in self._items:
            self._items[id(split)] = (split, make())
        return self._items[id(split)][1]


def tokenizer_key(tokenizer: Any) -> str | None:
    """A digest of everything that decides a fast tokenizer's ids and padding (its vocabulary, normaliser, pre- and
    post-processing, padding side, pad and end ids, chat template); None for a tokenizer whose output this cache cannot vouch for."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None or tokenizer.pad_token_id is None:
        return None
    raw = backend.to_str()
    raw_digest = hashlib.sha256(raw.encode()).hexdigest()
    if raw_digest not in _BACKEND_KEYS:  # parsed once per process and backend state: every trial loads the same files
        state = json.loads(raw)
        state.pop("truncation", None)  # set by each call (truncation=True, max_length): the call's arguments are keyed apart
        state.pop("padding", None)
        _BACKEND_KEYS[raw_digest] = hashlib.sha256(json.dumps(state, sort_keys=True).encode()).hexdigest()
    python_side = [type(tokenizer).__name__, tokenizer.padding_side, tokenizer.truncation_side, tokenizer.pad_token_id,
                   getattr(tokenizer, "pad_token_type_id", 0), list(tokenizer.model_input_names), tokenizer.eos_token_id,
                   getattr(tokenizer, "chat_template", None)]
    blob = json.dumps([_BACKEND_KEYS[raw_digest], python_side]).encode()
    return hashlib.sha256(blob).hexdigest()


def texts_key(texts: Sequence[tuple[str, ...]]) -> str:
    """A digest of a split's texts, column and example boundaries included."""
    h = hashlib.sha256()
    for example in texts:
        h.update("\x1f".join(example).encode() + b"\x1e")
    return h.hexdigest()


def pad_values(tokenizer: Any, keys: Sequence[str]) -> dict[str, int] | None:
    """What each of the tokenizer's outputs is padded with; None when it returns a key this cache does not know."""
    values = {"input_ids": tokenizer.pad_token_id, "token_type_ids": getattr(tokenizer, "pad_token_type_id", 0), **_PAD_VALUES}
    return {k: values[k] for k in keys} if set(keys) <= set(values) else None


def cached(key: tuple[Any, ...], texts: Sequence[tuple[str, ...]], compute: Callable[[], T]) -> T:
    """What ``compute`` makes of a split's texts, from the process-wide cache under ``key`` and the texts' digest; made
    on first use. ``key`` names everything besides the texts that decides the result (tokenizer digest, max_length, ...)."""
    entry = (*key, texts_key(texts))
    if entry in _CACHE:
        _CACHE.move_to_end(entry)
        return _CACHE[entry]
    value = _CACHE[entry] = compute()
    while len(_CACHE) > MAX_ENTRIES:
        _CACHE.popitem(last=False)
    return value


def tokenized(tokenizer: Any, key: str, texts: Sequence[tuple[str, ...]], max_length: int) -> TokenizedSplit:
    """The split's tokens (truncated to ``max_length``, unpadded), tokenised on first use."""
    return cached(("text", key, max_length), texts, lambda: TokenizedSplit(dict(
        tokenizer(*[list(c) for c in zip(*texts)], truncation=True, max_length=max_length))))


def clear() -> None:
    """Forget every tokenised split (tests; a process that changes a tokenizer file in place)."""
    _CACHE.clear()
    _BACKEND_KEYS.clear()
