"""The Llama-shaped memory benchmark: models built without a float32 copy, counted without building,
and a skipped full fine-tuning that says what it would need."""

import torch

from intrinsic_dim.llamabench import LLAMA_SHAPES, build_llama, format_llama, llama_parameters, llama_spec, measure_llama


def test_named_shapes_count_as_built_and_the_7b_one_is_7b():
    spec = llama_spec("did", hidden=64, layers=2, intermediate=96, vocab=300, heads=4, kv_heads=2)
    model = build_llama(spec)
    ps = list(model.parameters())
    assert {p.dtype for p in ps} == {torch.bfloat16}
    assert llama_parameters(spec) == (sum(p.numel() for p in ps), max(p.numel() for p in ps))
    assert 0.01 < ps[0].float().std().item() < 0.03
    assert model.lm_head.weight.data_ptr() != model.model.embed_tokens.weight.data_ptr()  # untied
    assert set(LLAMA_SHAPES) == {"llama-125m", "llama-1b", "llama-7b"}
    assert 6.7e9 < llama_parameters(llama_spec("did", "llama-7b"))[0] < 6.8e9


def test_full_finetuning_that_cannot_fit_is_not_run_but_sized(monkeypatch):
    monkeypatch.setattr("intrinsic_dim.llamabench.available_bytes", lambda: 1 << 30)
    rec = measure_llama(llama_spec("full", "llama-7b"))
    assert rec["skipped"] == "does not fit" and rec["mixed_precision_bytes"] == 16 * rec["parameters"]
    assert "needs" in format_llama([rec]) and "16 B/param" in format_llama([rec])
