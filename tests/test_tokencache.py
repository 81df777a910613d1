"""The tokenisation cache: batches padded from stored ids equal the tokenizer's own padded call, and a split is tokenised
once per process however many trials (encoders) use it."""

from __future__ import annotations

import json

import pytest
import torch

from intrinsic_dim.models.packaged import minilm_path, smollm2_tokenizer_path
from intrinsic_dim.models.registry import _tokenizer
from intrinsic_dim.tasks import Split, TextEncoder, load_task, tokencache


@pytest.fixture(autouse=True)
def _fresh_cache():
    tokencache.clear()
    yield
    tokencache.clear()


def _direct(tokenizer, split: Split, idx: list[int], max_length: int) -> dict[str, torch.Tensor]:
    columns = [list(c) for c in zip(*(split.texts[i] for i in idx))]
    return dict(tokenizer(*columns, truncation=True, max_length=max_length, padding=True, return_tensors="pt"))


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert sorted(a) == sorted(b)
    for k in a:
        assert a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]), k


def _pairs() -> Split:
    texts = [("a short premise", "and its hypothesis"), ("", "an empty first text"), ("word " * 300, "a long first text"),
             ("one", "word " * 300), ("Ünïcödé — 東京 🙂", "tabs\tand\nnewlines")]
    return Split(labels=torch.zeros(len(texts), dtype=torch.int64), texts=texts)


def _index_sets(n: int) -> list[list[int]]:
    g = torch.Generator().manual_seed(0)
    sets = [[0], list(range(n)), list(reversed(range(n))), [n - 1, 0, n - 1]]
    sets += [torch.randint(0, n, (int(k),), generator=g).tolist() for k in torch.randint(1, 40, (12,), generator=g)]
    return sets


@pytest.mark.parametrize("source, padding_side", [("minilm", "right"), ("smollm2", "right"), ("smollm2", "left")])
@pytest.mark.parametrize("max_length", [8, 64])
def test_cached_batches_equal_the_tokenizers_own_padded_call(source, padding_side, max_length):
    path = minilm_path() if source == "minilm" else smollm2_tokenizer_path()
    tokenizer = _tokenizer(path)
    tokenizer.padding_side = padding_side
    ours = _tokenizer(path)
    ours.padding_side = padding_side
    encoder = TextEncoder(ours, max_length)
    tweets = load_task("tweet-sentiment", max_train=64, max_eval=8, seed=0).train
    for split in (tweets, _pairs()):
        for idx in _index_sets(len(split)):
            _same(encoder(split, idx), _direct(tokenizer, split, idx, max_length))
        direct = tokenizer(*[list(c) for c in zip(*split.texts)], truncation=True, max_length=max_length)["input_ids"]
        assert encoder.lengths(split).tolist() == [len(r) for r in direct]


def test_a_split_is_tokenised_once_across_trials(monkeypatch):
    split = load_task("tweet-sentiment", max_train=64, max_eval=8, seed=0).train
    calls = []
    first, second = TextEncoder(_tokenizer(minilm_path()), 32), TextEncoder(_tokenizer(minilm_path()), 32)
    real = type(first.tokenizer).__call__

    def spy(self, *args, **kwargs):
        calls.append(len(args[0]))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(type(first.tokenizer), "__call__", spy)
    for encoder in (first, second):  # two trials, each with its own freshly loaded tokenizer
        for s in range(0, 64, 16):
            encoder(split, list(range(s, s + 16)))
        encoder.lengths(split)
    assert calls == [64]
    TextEncoder(first.tokenizer, 16)(split, [0, 1])  # another max_length is another tokenisation
    assert calls == [64, 64]


def test_a_tokenizer_that_differs_in_its_vocabulary_or_padding_gets_its_own_entry():
    minilm, smollm = _tokenizer(minilm_path()), _tokenizer(smollm2_tokenizer_path())
    assert tokencache.tokenizer_key(minilm) == tokencache.tokenizer_key(_tokenizer(minilm_path()))
    assert tokencache.tokenizer_key(minilm) != tokencache.tokenizer_key(smollm)
    before = tokencache.tokenizer_key(minilm)
    minilm(["a text"], truncation=True, max_length=5)  # a call sets the backend's truncation: not part of the key
    assert tokencache.tokenizer_key(minilm) == before
    minilm.padding_side = "left"
    assert tokencache.tokenizer_key(minilm) != before


def test_three_texts_per_example_are_refused_before_tokenising():
    split = Split(labels=torch.zeros(1, dtype=torch.int64), texts=[("a", "b", "c")])
    with pytest.raises(ValueError, match="one or two texts per example, got 3"):
        TextEncoder(_tokenizer(minilm_path()), 16)(split, [0])


@pytest.mark.parametrize("text_format", ["completion", "messages", "text"])
def test_causal_batches_from_the_cache_equal_the_per_batch_encoding(text_format, monkeypatch):
    from intrinsic_dim.tasks.encoders import CausalEncoder

    tokenizer = _tokenizer(smollm2_tokenizer_path())
    if text_format == "messages":
        texts = [(json.dumps([{"role": "user", "content": f"say {i} " * (i % 7)}, {"role": "assistant", "content": f"number {i}"}]),)
                 for i in range(24)]
    elif text_format == "completion":
        texts = [(f"tweet {i}: " + "word " * (i % 11), [" positive", " negative"][i % 2]) for i in range(24)]
    else:
        texts = [("line " * (i % 13) + f"{i}",) for i in range(24)]
    split = Split(labels=torch.zeros(len(texts), dtype=torch.int64), texts=texts)
    cached, plain = CausalEncoder(tokenizer, 12, text_format), CausalEncoder(tokenizer, 12, text_format)
    plain._key = None
    for idx in _index_sets(len(split)):
        _same(cached(split, idx), plain(split, idx))
    calls = []
    real = CausalEncoder._render
    monkeypatch.setattr(CausalEncoder, "_render", lambda self, text: calls.append(1) or real(self, text))
    again = CausalEncoder(_tokenizer(smollm2_tokenizer_path()), 12, text_format)  # a later trial's encoder
    again(split, [0, 1])
    assert calls == []
