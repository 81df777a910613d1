"""SubspaceModel on plain torch networks and a tiny Hugging Face BERT."""

import json

import pytest
import torch
from torch import nn

import intrinsic_dim as idim
from intrinsic_dim.adapter import CONFIG_NAME, WEIGHTS_NAME


def _mlp(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(10, 20), nn.ReLU(), nn.Linear(20, 3))


class Tied(nn.Module):
    """One Linear used twice (shared), a frozen layer, a BatchNorm with buffers."""

    def __init__(self):
        super().__init__()
        self.shared = nn.Linear(6, 6)
        self.alias = self.shared
        self.frozen = nn.Linear(6, 6)
        self.frozen.requires_grad_(False)
        self.norm = nn.BatchNorm1d(6)
        self.out = nn.Linear(6, 2)

    def forward(self, x):
        return self.out(self.norm(self.alias(self.frozen(self.shared(x)))))


@pytest.mark.parametrize("projection", ["dense", "sparse", "fastfood"])
@pytest.mark.parametrize("said", [False, True])
def test_zero_z_reproduces_base_exactly(projection, said):
    m = _mlp()
    x = torch.randn(4, 10)
    ref = m(x)
    sm = idim.SubspaceModel(m, d=30, projection=projection, said=said)
    assert torch.equal(sm(x), ref)
    assert sm.num_trainable() == 30


def test_hf_bert_zero_z_exact_and_behaves_like_model(tiny_bert, tiny_batch):
    ref = tiny_bert(**tiny_batch).logits
    sm = idim.SubspaceModel(tiny_bert, d=200, said=True)
    out = sm(**tiny_batch)
    assert torch.equal(out.logits, ref)
    assert sm.config.num_labels == 3  # attribute access falls through to the wrapped model
    assert sm.num_trainable() == 200
    assert sm.z.numel() + sm.lam.numel() == 200
    assert sm.lam.numel() == len([n for n, _ in tiny_bert.named_parameters()])


def test_only_z_and_lambda_train_and_no_weight_copy(tiny_bert, tiny_batch):
    before = {id(p): (p.detach().clone(), p.data_ptr()) for p in tiny_bert.parameters()}
    sm = idim.SubspaceModel(tiny_bert, d=100, said=True)
    assert [p.requires_grad for p in tiny_bert.parameters()] == [False] * len(before)
    opt = torch.optim.Adam(sm.trainable_parameters(), lr=0.05)
    labels = torch.tensor([0, 1, 2])
    for _ in range(3):
        loss = sm(**tiny_batch, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert sm.z.abs().sum() > 0 and not torch.equal(sm.lam, torch.ones_like(sm.lam))
    assert {id(p) for p in tiny_bert.parameters()} == set(before)  # the same tensors, never copied
    for p in tiny_bert.parameters():
        assert torch.equal(p, before[id(p)][0]) and p.data_ptr() == before[id(p)][1]
    own = {k: v for k, v in sm.state_dict().items() if not k.startswith("base.")}
    assert set(own) == {"z", "lam"} and sum(v.numel() for v in own.values()) == 100


@pytest.mark.parametrize("projection,layout", [("fastfood", "stacked"), ("fastfood", "per_tensor"), ("dense", "stacked"), ("sparse", "stacked")])
def test_gradient_wrt_z_matches_finite_differences(projection, layout):
    m = _mlp().double()
    x = torch.randn(5, 10, dtype=torch.float64)
    sm = idim.SubspaceModel(m, d=8, said=True, projection=projection, layout=layout)
    sm.double()

    def f(z, lam):
        with torch.no_grad():
            sm.z.copy_(z)
            sm.lam.copy_(lam)
        return sm(x).pow(2).sum()

    z0 = torch.randn(sm.z.numel(), dtype=torch.float64) * 0.1
    lam0 = torch.rand(sm.lam.numel(), dtype=torch.float64) + 0.5
    loss = f(z0, lam0)
    loss.backward()
    gz, gl = sm.z.grad.clone(), sm.lam.grad.clone()
    eps = 1e-6
    for i in range(z0.numel()):
        e = torch.zeros_like(z0)
        e[i] = eps
        fd = (f(z0 + e, lam0) - f(z0 - e, lam0)).item() / (2 * eps)
        assert abs(fd - gz[i].item()) < 1e-6 * (1 + abs(fd))
    for i in range(lam0.numel()):
        e = torch.zeros_like(lam0)
        e[i] = eps
        fd = (f(z0, lam0 + e) - f(z0, lam0 - e)).item() / (2 * eps)
        assert abs(fd - gl[i].item()) < 1e-6 * (1 + abs(fd))


def test_said_accounting_and_groupings(tiny_bert):
    names = [n for n, _ in tiny_bert.named_parameters()]
    with pytest.raises(ValueError, match="d must exceed"):
        idim.SubspaceModel(tiny_bert, d=len(names), said=True)
    assert all(p.requires_grad for p in tiny_bert.parameters())  # a refused wrap changes nothing
    by_block = idim.SubspaceModel(tiny_bert, d=20, said=True, groups="block")
    by_block.merge_and_unload()  # z = 0: the model back exactly as it was, to wrap again
    assert "bert.encoder.layer.0" in by_block.group_names and "bert.encoder.layer.1" in by_block.group_names
    assert by_block.num_trainable() == 20 and by_block.z.numel() == 20 - len(by_block.group_names)
    by_module = idim.SubspaceModel(tiny_bert, d=200, said=True, groups="module")
    by_module.merge_and_unload()
    assert len(by_block.group_names) < len(by_module.group_names) < len(names)
    custom = idim.SubspaceModel(tiny_bert, d=10, said=True, groups=lambda n: n.split(".")[0])
    custom.merge_and_unload()
    assert custom.group_names == ["bert", "classifier"]
    with pytest.raises(ValueError, match="unknown SAID grouping"):
        idim.SubspaceModel(tiny_bert, d=200, said=True, groups="layerwise")


def test_tied_frozen_and_buffers():
    torch.manual_seed(0)
    m = Tied().train()
    x = torch.randn(8, 6)
    frozen = m.frozen.weight.detach().clone()
    sm = idim.SubspaceModel(m, d=12)
    projected = {n for n, _ in sm.adapter_config()["projected"]}
    assert not any(n.startswith("frozen") or n.startswith("alias") for n in projected)
    assert sm.D == 6 * 6 + 6 + 6 + 6 + 6 * 2 + 2  # shared once, frozen excluded, norm affine included
    with torch.no_grad():
        sm.z.normal_()
    sm(x).sum().backward()
    assert m.frozen.weight.grad is None and torch.equal(m.frozen.weight, frozen)
    assert m.norm.num_batches_tracked.item() == 1  # buffers updated by the model itself, as usual
    merged = sm.merge_and_unload()
    assert merged.alias.weight is merged.shared.weight
    assert not merged.frozen.weight.requires_grad and merged.shared.weight.requires_grad


def test_include_exclude_and_train_directly(tiny_bert, tiny_batch):
    sm = idim.SubspaceModel(tiny_bert, d=50, include=r"encoder\.", exclude=r"LayerNorm")
    names = [n for n, _ in sm.adapter_config()["projected"]]
    sm.merge_and_unload()
    assert names and all("encoder." in n and "LayerNorm" not in n for n in names)
    head = sum(p.numel() for n, p in tiny_bert.named_parameters() if n.startswith("classifier"))
    sm2 = idim.SubspaceModel(tiny_bert, d=50, train_directly=r"^classifier\.")
    assert sm2.num_trainable() == 50 + head
    assert tiny_bert.classifier.weight.requires_grad
    with pytest.raises(ValueError, match="already wrapped"):
        idim.SubspaceModel(tiny_bert, d=5)
    sm2.merge_and_unload()
    with pytest.raises(ValueError, match="no parameter to project"):
        idim.SubspaceModel(tiny_bert, d=5, include="no-such-parameter")


def test_plain_training_loop_with_sgd_reduces_loss():
    m = _mlp()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 10, generator=g)
    y = (x @ torch.randn(10, 3, generator=g)).argmax(1)  # a learnable labelling
    sm = idim.SubspaceModel(m, d=40)
    opt = torch.optim.SGD(sm.parameters(), lr=1.0)  # frozen weights are skipped (no grad)
    first = None
    for _ in range(100):
        loss = nn.functional.cross_entropy(sm(x), y)
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.7 * first


def _trained(model, **kw):
    sm = idim.SubspaceModel(model, **kw)
    with torch.no_grad():
        sm.z.normal_(generator=torch.Generator().manual_seed(3))
        if sm.lam is not None:
            sm.lam.uniform_(0.5, 1.5, generator=torch.Generator().manual_seed(4))
    return sm


@pytest.mark.parametrize(
    "kw",
    [
        dict(d=64),
        dict(d=64, said=True, groups="module", projection="sparse"),
        dict(d=64, projection="dense", seed=5),
        dict(d=64, said=True, layout="per_tensor"),
        dict(d=64, train_directly=r"^2\."),
    ],
)
def test_save_load_reproduces_bit_for_bit(tmp_path, kw):
    x = torch.randn(4, 10)
    sm = _trained(_mlp(), **kw)
    if kw.get("train_directly"):
        with torch.no_grad():
            sm.base[2].bias.add_(1.0)
    out = sm(x)
    sm.save_pretrained(tmp_path)
    assert (tmp_path / WEIGHTS_NAME).stat().st_size < 4096
    sm2 = idim.SubspaceModel.from_pretrained(_mlp(), tmp_path)
    assert torch.equal(sm2(x), out)
    assert json.loads((tmp_path / CONFIG_NAME).read_text())["d"] == 64


def test_merge_and_unload_matches(tiny_bert, tiny_batch):
    sm = _trained(tiny_bert, d=80, said=True)
    out = sm(**tiny_batch).logits
    merged = sm.merge_and_unload()
    assert isinstance(merged, type(tiny_bert))
    assert torch.allclose(merged(**tiny_batch).logits, out, atol=1e-6, rtol=0)
    assert all(p.requires_grad for p in merged.parameters())
    with pytest.raises(RuntimeError, match="merged"):
        sm(**tiny_batch)


def test_adapter_refuses_other_base_and_corrupt_files(tmp_path):
    sm = _trained(_mlp(), d=32, said=True)
    sm.save_pretrained(tmp_path)
    with pytest.raises(idim.AdapterError, match="fingerprint"):
        idim.SubspaceModel.from_pretrained(_mlp(seed=1), tmp_path)
    with pytest.raises(idim.AdapterError, match="other parameters"):
        torch.manual_seed(0)
        idim.SubspaceModel.from_pretrained(nn.Sequential(nn.Linear(10, 21), nn.ReLU(), nn.Linear(21, 3)), tmp_path)
    weights = tmp_path / WEIGHTS_NAME
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(idim.AdapterError, match="corrupt or truncated"):
        idim.SubspaceModel.from_pretrained(_mlp(), tmp_path)
    weights.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    with pytest.raises(idim.AdapterError, match="corrupt"):
        idim.SubspaceModel.from_pretrained(_mlp(), tmp_path)
    weights.write_bytes(data)
    (tmp_path / CONFIG_NAME).write_text("{not json")
    with pytest.raises(idim.AdapterError, match="not valid JSON"):
        idim.SubspaceModel.from_pretrained(_mlp(), tmp_path)
    with pytest.raises(idim.AdapterError, match="missing"):
        idim.SubspaceModel.from_pretrained(_mlp(), tmp_path / "nowhere")


def test_bad_d():
    for d in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match="positive integer"):
            idim.SubspaceModel(_mlp(), d=d)
    with pytest.raises(ValueError, match="exceeds D"):
        idim.SubspaceModel(_mlp(), d=10_000)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_weights_exact_at_zero_and_gradients_match_float64(dtype):
    m64 = _mlp().double()
    half = _mlp().to(dtype)
    x = torch.randn(16, 10, dtype=torch.float64)
    ref = half(x.to(dtype))
    sm = idim.SubspaceModel(half, d=30, said=True, seed=1)
    assert sm.z.dtype == torch.float32 and sm.lam.dtype == torch.float32
    out = sm(x.to(dtype))
    assert out.dtype == dtype and torch.equal(out, ref)
    out.float().square().sum().backward()
    sm64 = idim.SubspaceModel(m64, d=30, said=True, seed=1)
    sm64(x).square().sum().backward()
    for a, b in ((sm.z.grad, sm64.z.grad), (sm.lam.grad, sm64.lam.grad)):
        assert torch.isfinite(a).all()
        assert (a.double() - b).norm() <= 0.03 * b.norm()


def test_merged_context_builds_each_weight_once_and_restores_exactly(monkeypatch):
    m = _mlp()
    x = torch.randn(8, 10)
    sm = idim.SubspaceModel(m, d=20, said=True)
    with torch.no_grad():
        sm.z.normal_()
    want = sm(x)
    theta0 = [t.clone() for t in sm._theta0]
    calls = []
    original = sm.projection.forward_part
    monkeypatch.setattr(sm.projection, "forward_part", lambda z, i: calls.append(i) or original(z, i))
    with sm.merged():
        outs = [sm(x) for _ in range(3)]
    assert sorted(calls) == list(range(len(sm._theta0)))  # once per tensor, not once per batch
    assert all(torch.equal(o, want) for o in outs)
    assert all(torch.equal(a, b) for a, b in zip(sm._theta0, theta0))
    sm(x).sum().backward()  # training goes on after the block
    assert sm.z.grad is not None and sm.z.grad.abs().sum() > 0


def test_just_in_time_gradients_equal_the_whole_projection_on_a_tied_causal_lm():
    """Per-tensor weights recomputed in backward give the gradients of theta0 + P(z) built whole
    (0.1.0's way), also where one tensor is read twice (tied embeddings and output layer)."""
    from torch.func import functional_call
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, vocab_size=100, tie_word_embeddings=True)
    torch.manual_seed(0)
    m = LlamaForCausalLM(cfg)
    ids = torch.randint(0, 100, (2, 7))
    sm = idim.SubspaceModel(m, d=50, said=True, seed=1)
    with torch.no_grad():
        sm.z.normal_()
        sm.lam.uniform_(0.5, 1.5)
    loss = sm(input_ids=ids, labels=ids).loss
    loss.backward()
    z, lam = sm.z.detach().clone().requires_grad_(True), sm.lam.detach().clone().requires_grad_(True)
    parts = sm.projection(z).split(sm._sizes)
    whole = {n: t.detach() + (p * lam[sm._group_index[i]]).view(t.shape)
             for i, (n, t, p) in enumerate(zip(sm._names, sm._theta0, parts))}
    sm.merge_and_unload()  # a plain model again; functional_call replaces every projected tensor
    ref = functional_call(m, whole, (), {"input_ids": ids, "labels": ids}, tie_weights=True, strict=False).loss
    ref.backward()
    assert torch.allclose(loss, ref, rtol=1e-6)
    assert torch.allclose(sm.z.grad, z.grad, rtol=1e-5, atol=1e-7) and torch.allclose(sm.lam.grad, lam.grad, rtol=1e-5, atol=1e-7)
