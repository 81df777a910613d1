"""int8 base weights (``base_quant="int8"``): the codes and scales, z = 0 giving the dequantised model exactly, the
same outputs and gradients as a float model holding the dequantised weights, half of bf16's weight memory, and
adapters that record the quantisation and refuse a base quantised otherwise."""

import copy
import json

import pytest
import torch
from torch import nn

from intrinsic_dim import projection
from intrinsic_dim.adapter import AdapterError
from intrinsic_dim.quant import dequantize, quantizable, quantize_int8
from intrinsic_dim.results import stored_key
from intrinsic_dim.search.measure import trial_templates
from intrinsic_dim.spec import MeasureSpec, SpecError
from intrinsic_dim.subspace import SubspaceModel
from intrinsic_dim.train import TrialConfig


@pytest.mark.parametrize("shape", [(1, 1), (3, 5), (64, 7), (5, 3, 2, 2), (200, 300), (3, 1 << 20)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16, torch.float64])
def test_codes_and_scales_per_output_channel(shape, dtype):
    torch.manual_seed(shape[0])
    w = (torch.randn(shape) * torch.rand(shape[0], *[1] * (len(shape) - 1)) * 3).to(dtype)
    w[0] = 0  # a zero row: scale 1, codes 0
    before = w.clone()
    q, scale = quantize_int8(w)
    assert torch.equal(w, before)  # the weights are read, never written
    assert q.dtype == torch.int8 and q.shape == w.shape and scale.dtype == dtype and scale.shape == (shape[0],)
    rows = q.reshape(shape[0], -1).int()
    assert rows.abs().max() <= 127 and scale[0] == 1 and not rows[0].any()
    nonzero = w.reshape(shape[0], -1).abs().amax(1) > 0
    assert (rows.abs().amax(1)[nonzero] >= 126).all()  # every row uses the whole range (127, or 126 after the scale's rounding)
    err = (dequantize(q, scale).double() - w.double()).reshape(shape[0], -1).abs().amax(1)
    assert (err <= scale.double() * 0.5 * (1 + 1e-2) + w.reshape(shape[0], -1).double().abs().amax(1) * 2 * torch.finfo(dtype).eps).all()


def test_only_floating_matrices_are_quantised():
    assert quantizable(torch.zeros(2, 3)) and not quantizable(torch.zeros(3)) and not quantizable(torch.zeros(2, 3, dtype=torch.int64))
    with pytest.raises(ValueError, match="two or more dimensions"):
        quantize_int8(torch.zeros(5))


def _net(dtype=torch.float32):
    torch.manual_seed(0)
    return nn.Sequential(nn.Embedding(60, 16), nn.Linear(16, 24), nn.LayerNorm(24), nn.ReLU(), nn.Linear(24, 3)).to(dtype)


def _dequantised(net):
    ref = copy.deepcopy(net)
    with torch.no_grad():
        for p in ref.parameters():
            if quantizable(p):
                p.copy_(dequantize(*quantize_int8(p)))
    return ref


X = torch.randint(0, 60, (6, 5))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("kind", ["dense", "sparse", "fastfood"])
@pytest.mark.parametrize("said", [False, True])
@pytest.mark.parametrize("piece", [None, 64])
def test_a_quantised_base_computes_as_the_float_model_of_its_dequantised_weights(dtype, kind, said, piece, monkeypatch):
    """z = 0 gives the dequantised model exactly; at any z, outputs and the gradients of z (and lambda) are those of a
    float model whose weights are the dequantised values (P depends on the seed and sizes only); also where a bf16
    weight is built a piece (a few rows) at a time."""
    if piece:
        monkeypatch.setattr(projection, "PIECE_ELEMS", piece)
    net = _net(dtype)
    plain = _dequantised(net)
    sm = SubspaceModel(net, d=40, projection=kind, said=said, seed=5, base_quant="int8")
    ref = SubspaceModel(copy.deepcopy(plain), d=40, projection=kind, said=said, seed=5)
    assert torch.equal(sm(X), plain(X)) and torch.equal(sm(X), ref(X))
    with torch.no_grad():
        for a, b in ((sm.z, ref.z),) + (((sm.lam, ref.lam),) if said else ()):
            a.copy_(torch.randn_like(a) * 0.5 + (1 if a is sm.lam else 0))
            b.copy_(a)
    out, expect = sm(X), ref(X)
    assert torch.equal(out, expect)
    out.float().square().sum().backward()
    expect.float().square().sum().backward()
    assert torch.equal(sm.z.grad, ref.z.grad) and (not said or torch.equal(sm.lam.grad, ref.lam.grad))
    with sm.disable_adapter():
        assert torch.equal(sm(X), plain(X))


def test_the_gradient_of_z_matches_finite_differences_in_float64():
    net = nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 2)).double()
    sm = SubspaceModel(net, d=7, seed=1, base_quant="int8").double()  # the int8 codes stay int8, the scales and z float64
    x = torch.randn(4, 6, dtype=torch.float64)

    def f(z):
        with torch.no_grad():
            sm.z.copy_(z)
        return sm(x).square().sum()

    z0 = torch.randn(7, dtype=torch.float64) * 0.1
    f(z0).backward()
    grad = sm.z.grad.clone()
    eps = 1e-6
    fd = torch.stack([(f(z0 + eps * e) - f(z0 - eps * e)) / (2 * eps) for e in torch.eye(7, dtype=torch.float64)])
    torch.testing.assert_close(grad, fd, rtol=1e-6, atol=1e-8)


def test_int8_halves_a_bf16_models_weight_memory():
    net = nn.Sequential(nn.Linear(256, 512), nn.Linear(512, 256)).to(torch.bfloat16)
    before = sum(p.untyped_storage().nbytes() for p in net.parameters())
    sm = SubspaceModel(net, d=100, base_quant="int8")
    after = sum(p.untyped_storage().nbytes() for p in net.parameters()) + sum(b.untyped_storage().nbytes() for b in sm.buffers())
    assert after < 0.51 * before
    assert all(p.dtype == torch.int8 for n, p in net.named_parameters() if n.endswith("weight.original"))


def test_unload_gives_the_dequantised_base_and_merge_the_effective_weights():
    ref = _dequantised(_net(torch.bfloat16))
    sm, other = (SubspaceModel(_net(torch.bfloat16), d=30, base_quant="int8") for _ in range(2))
    with torch.no_grad():
        sm.z.normal_()
        other.z.copy_(sm.z)
    expect = sm(X)
    merged = other.merge_and_unload()
    assert all(p.dtype == torch.bfloat16 for p in merged.parameters()) and torch.equal(merged(X), expect)
    plain = sm.unload()
    assert all(p.dtype == torch.bfloat16 for p in plain.parameters()) and torch.equal(plain(X), ref(X))


def test_an_int8_adapter_reloads_exactly_and_a_differently_quantised_base_is_refused(tmp_path):
    sm = SubspaceModel(_net(), d=30, said=True, base_quant="int8")
    with torch.no_grad():
        sm.z.normal_()
    expect = sm(X)
    sm.save_pretrained(tmp_path / "a")
    raw = json.loads((tmp_path / "a" / "adapter_config.json").read_text())
    assert raw["base_quant"] == "int8" and len(raw["base_quant_fingerprint"]) == 64
    again = SubspaceModel.from_pretrained(_net(), tmp_path / "a")  # a float base: quantised as the adapter says
    assert torch.equal(again(X), expect)
    with pytest.raises(AdapterError, match="quantised as int8 but this model's is none"):
        SubspaceModel(_net(), d=30, said=True).check_base(raw, tmp_path / "a")
    plain = SubspaceModel(_net(), d=30, said=True)
    plain.save_pretrained(tmp_path / "b")
    raw_plain = json.loads((tmp_path / "b" / "adapter_config.json").read_text())
    assert "base_quant" not in raw_plain and "base_quant_fingerprint" not in raw_plain  # as adapters were written before
    with pytest.raises(AdapterError, match="quantised as none but this model's is int8"):
        SubspaceModel(_net(), d=30, said=True, base_quant="int8").check_base(raw_plain, tmp_path / "b")


def test_base_quant_keys_subspace_trials_only_and_is_refused_for_lora():
    spec = MeasureSpec.from_dict({"base_quant": "int8", "method": "did"})
    trial, full = trial_templates(spec)
    assert trial.to_dict()["base_quant"] == "int8" and "base_quant" not in full.to_dict()  # the baseline is the float model's
    assert "base_quant" not in TrialConfig(d=5).to_dict() and stored_key({**TrialConfig(d=5).to_dict(), "base_quant": None}) == TrialConfig(d=5).to_dict()
    with pytest.raises(SpecError, match="not lora"):
        MeasureSpec.from_dict({"base_quant": "int8", "method": "lora"})
    with pytest.raises(SpecError, match="base_quant"):
        MeasureSpec.from_dict({"base_quant": "int4"})

