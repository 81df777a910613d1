"""A base read tensor by tensor (``base_weights``) into a model built on the meta device: the same wrapped model,
fingerprints and adapters as one built whole, bad sources refused before anything is read, and a process that
never holds the model whole in its dtype when the base is quantised to int8."""

import json
import sys

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from intrinsic_dim import SafetensorsWeights
from intrinsic_dim.llamabench import llama_spec, measure_llama
from intrinsic_dim.subspace import SubspaceModel


def _tiny_llama_config():
    from transformers import LlamaConfig

    return LlamaConfig(hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                       vocab_size=97, max_position_embeddings=64, tie_word_embeddings=True)


def _built_whole():
    from transformers import LlamaForCausalLM

    torch.manual_seed(3)
    return LlamaForCausalLM(_tiny_llama_config()).to(torch.bfloat16)


def _built_empty():
    from accelerate import init_empty_weights
    from transformers import LlamaForCausalLM

    with init_empty_weights():  # parameters on the meta device, buffers real
        model = LlamaForCausalLM(_tiny_llama_config()).to(torch.bfloat16)
    model.tie_weights()  # inside the context a tied weight is registered as a copy
    return model


@pytest.fixture
def checkpoint(tmp_path):
    """A float32 checkpoint of the whole model in two safetensors files (as a sharded Hugging Face save is)."""
    named = [(n, p.detach().float().contiguous()) for n, p in _built_whole().named_parameters()]  # tied: listed once
    half = len(named) // 2
    save_file(dict(named[:half]), str(tmp_path / "model-00001-of-00002.safetensors"))
    save_file(dict(named[half:]), str(tmp_path / "model-00002-of-00002.safetensors"))
    return tmp_path


IDS = torch.randint(0, 97, (2, 9), generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("quant", [None, "int8"])
@pytest.mark.parametrize("said", [False, True])
def test_a_base_read_tensor_by_tensor_is_the_base_built_whole(checkpoint, quant, said, tmp_path):
    whole = SubspaceModel(_built_whole(), d=60, said=said, seed=4, base_quant=quant)
    weights = SafetensorsWeights(checkpoint)
    assert len(weights) == len(list(_built_whole().named_parameters()))
    read = SubspaceModel(_built_empty(), d=60, said=said, seed=4, base_quant=quant, base_weights=weights)
    assert not any(p.is_meta for p in read.base.parameters())
    assert read._fingerprint == whole._fingerprint and read._quant_fingerprint == whole._quant_fingerprint
    assert {p.dtype for n, p in read.base.named_parameters() if n.endswith("original")} == \
        {p.dtype for n, p in whole.base.named_parameters() if n.endswith("original")}
    assert torch.equal(read(input_ids=IDS).logits, whole(input_ids=IDS).logits)  # z = 0
    with torch.no_grad():
        whole.z.normal_(0, 0.3)
    whole.save_pretrained(tmp_path / "adapter")
    again = SubspaceModel.from_pretrained(_built_empty(), tmp_path / "adapter", base_weights=SafetensorsWeights(checkpoint))
    assert torch.equal(again(input_ids=IDS).logits, whole(input_ids=IDS).logits)


def test_tied_weights_stay_tied_when_read(checkpoint):
    sm = SubspaceModel(_built_empty(), d=40, base_quant="int8", base_weights=SafetensorsWeights(checkpoint))
    owners = sm._owners[sm._names.index("model.embed_tokens.weight")]
    assert {id(m) for m, _ in owners} == {id(sm.base.lm_head), id(sm.base.model.embed_tokens)}  # one tensor, projected once


def test_bad_sources_are_refused_before_anything_is_read(checkpoint, tmp_path):
    weights = SafetensorsWeights(checkpoint)
    partial = {k: weights[k] for k in list(weights)[1:]}
    model = _built_empty()
    with pytest.raises(ValueError, match="hold no tensor for parameters"):
        SubspaceModel(model, d=40, base_weights=partial)
    assert all(p.is_meta for p in model.parameters())  # nothing was read, nothing wrapped
    with pytest.raises(ValueError, match="no base_weights were given"):
        SubspaceModel(model, d=40)
    with torch.device("meta"):
        all_meta = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4))
    with pytest.raises(ValueError, match="buffers .* are on the meta device"):
        SubspaceModel(all_meta, d=3, base_weights={})
    wrong = dict(weights) | {"model.norm.weight": torch.ones(31)}
    with pytest.raises(ValueError, match=r"base_weights\['model.norm.weight'\] has shape \(31,\)"):
        SubspaceModel(_built_empty(), d=40, base_weights=wrong)
    with pytest.raises(FileNotFoundError, match="no .safetensors file"):
        SafetensorsWeights(tmp_path / "nowhere")
    save_file({"model.norm.weight": torch.ones(32)}, str(tmp_path / "extra.safetensors"))
    with pytest.raises(ValueError, match="is in both"):
        SafetensorsWeights(checkpoint)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_an_int8_base_read_tensor_by_tensor_never_holds_the_bf16_model():
    """Peak resident memory while building and wrapping, above the process before: the whole bf16 model when it is
    built first; about its int8 codes plus one tensor and the quantiser's chunk when read lazily. 117M parameters:
    224 MiB in bf16, 112 MiB of codes, the largest tensor 16 MiB; measured 264 against 172 MiB, a saving of 0.41 x
    the bf16 weights (quantising a model built whole would save nothing here)."""
    shape = dict(hidden=1024, layers=8, intermediate=2752, vocab=8000, tokens=8, d=200)
    whole, lazy = (measure_llama(llama_spec(m, **shape)) for m in ("said", "said-int8"))
    assert "skipped" not in whole and "skipped" not in lazy, (whole, lazy)
    bf16 = whole["weights_bytes"]
    assert lazy["weights_bytes"] < 0.55 * bf16
    whole_load, lazy_load = (r["load_peak_bytes"] - r["start_bytes"] for r in (whole, lazy))
    assert whole_load > bf16  # the measurement sees the whole bf16 model
    assert lazy_load < whole_load - 0.3 * bf16, json.dumps(lazy)


def test_the_documented_recipe_reads_a_saved_pretrained_checkpoint(tmp_path):
    """docs/memory.md's recipe, on a checkpoint written by save_pretrained (tied head left out of the file)."""
    from accelerate import init_empty_weights
    from transformers import AutoConfig, AutoModelForCausalLM

    _built_whole().save_pretrained(tmp_path)
    with init_empty_weights():
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(tmp_path), torch_dtype=torch.bfloat16)
    model.tie_weights()
    sm = SubspaceModel(model, d=60, said=True, base_quant="int8", base_weights=SafetensorsWeights(tmp_path))
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path, torch_dtype=torch.bfloat16)  # the usual way: all at once
    whole = SubspaceModel(loaded, d=60, said=True, base_quant="int8")
    assert sm._fingerprint == whole._fingerprint
    assert torch.equal(sm(input_ids=IDS).logits, whole(input_ids=IDS).logits)
