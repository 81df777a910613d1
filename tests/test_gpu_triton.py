"""The Triton kernels against the references, run by Triton's interpreter on the CPU (small sizes),
and on the GPU where one exists."""

import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ["TRITON_INTERPRET"] = "1"  # must precede the kernels' definition
pytest.importorskip("triton")

from intrinsic_dim import kernels  # noqa: E402
from intrinsic_dim.kernels import triton_fastfood as tf  # noqa: E402
from intrinsic_dim.kernels import fwht_reference  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
TOL = {torch.float64: 1e-12, torch.float32: 2e-6}


def _rel(got, want):
    got, want = got.cpu().double(), want.cpu().double()
    return ((got - want).abs().max() / want.abs().max().clamp_min(1e-300)).item()


@pytest.mark.parametrize("n", [1, 2, 8, 64, 512])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
def test_fwht_matches_reference(n, dtype):
    x = torch.randn(3, n, dtype=torch.float64)
    got = tf.fwht(x.to(device=DEVICE, dtype=dtype))
    assert got.dtype == dtype and got.shape == x.shape
    tol = 3e-2 if dtype == torch.bfloat16 else TOL[dtype]
    assert _rel(got, fwht_reference(x)) <= tol


# (d, n, out_len, block0, seed): tiny, cut and uncut, several blocks
SEGMENTS = [(1, 1, 1, 0, 0), (3, 4, 17, 2, 3), (5, 8, 24, 0, 4), (100, 128, 1000, 7, 8), (200, 256, 256, 0, 1)]


@pytest.mark.parametrize("case", SEGMENTS, ids=lambda c: f"d{c[0]}_n{c[1]}_out{c[2]}")
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("fused", [True, False])
def test_segment_matches_torch(case, dtype, fused):
    d, n, out_len, block0, seed = case
    seg = kernels.make_segment(seed, block0, n, out_len)
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(d, dtype=torch.float64, generator=g)
    y = torch.randn(out_len, dtype=torch.float64, generator=g)
    want_f, want_t = kernels.segment_forward_torch(seg, z), kernels.segment_transpose_torch(seg, y, d)
    args = (seed, block0, seg.nblocks, n, out_len, seg.scale)
    limit = tf.MAX_FUSED_LOG2N if fused else -1
    got_f = tf.segment_forward(z.to(DEVICE, dtype), *args, max_fused_log2n=limit)
    got_t = tf.segment_transpose(y.to(DEVICE, dtype), d, *args, max_fused_log2n=limit)
    assert got_f.shape == (out_len,) and got_t.shape == (d,) and got_f.dtype == dtype
    assert _rel(got_f, want_f) <= TOL[dtype] and _rel(got_t, want_t) <= TOL[dtype]


def test_fused_forward_is_bit_equal_to_torch_in_float64():
    """Same factors and the same butterfly order as the reference: identical float64 results."""
    seg = kernels.make_segment(2, 0, 64, 300)
    z = torch.randn(50, dtype=torch.float64)
    got = tf.segment_forward(z.to(DEVICE), 2, 0, seg.nblocks, 64, 300, seg.scale)
    assert torch.equal(got.cpu(), kernels.segment_forward(seg, z, kernel="reference"))


def test_errors():
    with pytest.raises(ValueError, match="power-of-two rows"):
        tf.fwht(torch.zeros(2, 1 << (tf.MAX_FUSED_LOG2N + 1), device=DEVICE))


def test_registered_only_with_cuda():
    assert kernels.triton_available() == torch.cuda.is_available()
    assert ("triton" in kernels.available_kernels("cuda")) == torch.cuda.is_available()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_projection_on_gpu_matches_cpu():
    import intrinsic_dim as idim

    for d, D, kw in [(1000, 300_000, {}), (100, 50_000, {"layout": "per_tensor", "sizes": [20_000, 30_000]})]:
        P = idim.make_projection("fastfood", d, D, seed=1, **kw)
        z, y = torch.randn(d, dtype=torch.float64), torch.randn(D, dtype=torch.float64)
        assert _rel(P(z.cuda()), P(z)) < 1e-12
        assert _rel(P.T(y.cuda()), P.T(y)) < 1e-12


def test_the_kernels_take_the_random_recipe_from_rng(monkeypatch):
    """A changed constant in rng.py changes the Triton kernels' P the same way it changes the reference's."""
    import importlib

    from intrinsic_dim import rng

    seg = kernels.make_segment(2, 0, 64, 300)
    z = torch.randn(50, dtype=torch.float64)
    before = tf.segment_forward(z.to(DEVICE), 2, 0, seg.nblocks, 64, 300, seg.scale)
    monkeypatch.setattr(rng, "MIX2", rng.MIX2 ^ (1 << 40))
    monkeypatch.setattr(rng, "GAUSS_CENTER", rng.GAUSS_CENTER + 1)
    try:
        changed = importlib.reload(tf)
        got = changed.segment_forward(z.to(DEVICE), 2, 0, seg.nblocks, 64, 300, seg.scale)
        want = kernels.segment_forward(seg, z, kernel="reference")
    finally:
        monkeypatch.undo()
        importlib.reload(tf)
    assert not torch.equal(got.cpu(), before.cpu())
    assert torch.equal(got.cpu(), want)
