"""Unwrapping a SubspaceModel, computing without its adapter, and model names that never reach the hub."""

from __future__ import annotations

import time

import pytest
import torch

import intrinsic_dim as idim
from intrinsic_dim.models import ModelError, load_model
from intrinsic_dim.tasks import load_task


def test_unload_gives_back_the_model_as_it_was(tiny_bert, make_tiny_bert, tiny_batch):
    tiny_bert.bert.embeddings.word_embeddings.weight.requires_grad_(False)
    names = {n: p.requires_grad for n, p in tiny_bert.named_parameters()}
    sm = idim.SubspaceModel(tiny_bert, d=50, said=False)
    assert any("parametrizations" in n for n, _ in tiny_bert.named_parameters())
    with torch.no_grad():
        sm.z.normal_()
        changed = sm(**tiny_batch).logits
        with sm.disable_adapter():
            base = sm(**tiny_batch).logits
    plain = sm.unload()
    assert plain is tiny_bert and {n: p.requires_grad for n, p in plain.named_parameters()} == names
    with torch.no_grad():
        expected = make_tiny_bert()(**tiny_batch).logits
        assert torch.equal(plain(**tiny_batch).logits, expected) and torch.equal(base, expected)
    assert not torch.allclose(changed, expected)
    with pytest.raises(RuntimeError, match="merged"):
        sm(**tiny_batch)


@pytest.mark.parametrize("name", ["nosuch", "no-such-model-1"])
def test_an_unregistered_name_without_a_slash_is_refused_at_once(name):
    task = load_task("tweet-sentiment", max_train=4, max_eval=4)
    start = time.perf_counter()
    with pytest.raises(ModelError, match="not a registered name.*minilm-l6"):
        load_model(name, task)
    assert time.perf_counter() - start < 1


def test_a_hub_id_while_offline_is_refused_without_asking_the_hub(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    task = load_task("tweet-sentiment", max_train=4, max_eval=4)
    start = time.perf_counter()
    with pytest.raises(ModelError, match="HF_HUB_OFFLINE is set"):
        load_model("owner/never-published", task)
    assert time.perf_counter() - start < 1


def test_a_cut_off_weights_file_is_one_line_naming_it(tmp_path, minilm_path):
    import shutil

    folder = tmp_path / "model"
    shutil.copytree(minilm_path, folder)
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100_000])
    with pytest.raises(ModelError, match=f"{weights}: the weights file cannot be read"):
        load_model(str(folder), load_task("tweet-sentiment", max_train=4, max_eval=4))


def test_lora_targets_are_checked_before_training(tiny_bert):
    from intrinsic_dim.models.nets import FCNet
    from intrinsic_dim.train import check_lora_targets

    with pytest.raises(ValueError, match="no default target modules for FCNet; pass --lora-targets"):
        check_lora_targets(FCNet(784, 10), None)
    with pytest.raises(ValueError, match="all-linear works on transformers models only"):
        check_lora_targets(FCNet(784, 10), "all-linear")
    with pytest.raises(ValueError, match="--lora-targets query,nosuch: nosuch matches no module.*query"):
        check_lora_targets(tiny_bert, "query,nosuch")
    check_lora_targets(tiny_bert, None)
    check_lora_targets(tiny_bert, "query,value")
