"""Projections: exact adjoint, gradients, column norms, determinism, errors."""

import gc
import subprocess
import sys
import textwrap
import weakref

import pytest
import torch

import intrinsic_dim as idim
from intrinsic_dim import kernels

CASES = [(1, 1), (1, 9), (5, 37), (16, 64), (16, 1000), (100, 1000), (33, 4096), (7, 7), (300, 5000)]
KINDS_LAYOUTS = [("dense", "stacked"), ("sparse", "stacked"), ("fastfood", "stacked"), ("fastfood", "per_tensor")]


def _split_sizes(D):
    """Uneven tensor sizes summing to D (for the per_tensor layout)."""
    sizes, left, s = [], D, 1
    while left:
        take = min(left, s)
        sizes.append(take)
        left -= take
        s = s * 3 + 1
    return sizes


def _make(kind, layout, d, D, seed=0):
    sizes = _split_sizes(D) if layout == "per_tensor" else None
    return idim.make_projection(kind, d, D, seed=seed, layout=layout, sizes=sizes)


def _matrix(P):
    return torch.stack([P(e) for e in torch.eye(P.d, dtype=torch.float64)], 1)


@pytest.mark.parametrize("kind,layout", KINDS_LAYOUTS)
@pytest.mark.parametrize("d,D", CASES)
def test_transpose_is_adjoint(kind, layout, d, D):
    P = _make(kind, layout, d, D, seed=d + D)
    g = torch.Generator().manual_seed(0)
    z, y = torch.randn(d, generator=g, dtype=torch.float64), torch.randn(D, generator=g, dtype=torch.float64)
    Pz, PTy = P(z), P.T(y)
    assert Pz.shape == (D,) and PTy.shape == (d,)
    assert abs((Pz @ y).item() - (z @ PTy).item()) <= 1e-10 * (1 + Pz.norm().item() * y.norm().item())
    if d * D <= 300 * 5000:
        M = _matrix(P)
        assert torch.allclose(torch.stack([P.T(e) for e in torch.eye(D, dtype=torch.float64)[: min(D, 64)]]), M[: min(D, 64)], atol=1e-12)


@pytest.mark.parametrize("kind,layout", KINDS_LAYOUTS)
def test_gradients_match_finite_differences(kind, layout):
    P = _make(kind, layout, 6, 50, seed=1)
    z = torch.randn(6, dtype=torch.float64, requires_grad=True)
    y = torch.randn(50, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(P, (z,))
    assert torch.autograd.gradcheck(P.T, (y,))
    assert torch.autograd.gradgradcheck(lambda v: (P(v) ** 2).sum(), (z,))


@pytest.mark.parametrize("kind", ["dense", "sparse"])
def test_stored_projections_have_exactly_unit_columns(kind):
    M = _matrix(idim.make_projection(kind, 40, 900, seed=2))
    assert torch.allclose(M.norm(dim=0), torch.ones(40, dtype=torch.float64), atol=1e-12)


def test_sparse_density_is_about_one_over_sqrt_D():
    D = 10_000
    M = _matrix(idim.make_projection("sparse", 20, D, seed=0))
    per_col = (M != 0).sum(0).double()
    assert 95 <= per_col.mean().item() <= 100  # round(sqrt(D)) draws, a few coincide


@pytest.mark.parametrize("d,D", [(16, 64), (64, 64 * 37), (100, 128 * 5)])
def test_fastfood_uncut_columns_exactly_unit(d, D):
    M = _matrix(idim.make_projection("fastfood", d, D, seed=4))
    assert torch.allclose(M.norm(dim=0), torch.ones(d, dtype=torch.float64), atol=1e-10)


def test_fastfood_cut_columns_unit_in_expectation():
    sq = torch.stack([_matrix(idim.make_projection("fastfood", 20, 1000, seed=s)).pow(2).sum(0) for s in range(40)])
    assert abs(sq.mean().item() - 1.0) < 0.02
    assert sq.std().item() < 0.3


def test_fastfood_per_tensor_segments_unit_in_expectation():
    sizes = [300, 50, 7]
    vals = []
    for s in range(40):
        M = _matrix(idim.make_projection("fastfood", 20, sum(sizes), seed=s, layout="per_tensor", sizes=sizes))
        vals.append(torch.stack([blk.pow(2).sum(0).mean() for blk in M.split(sizes)]))
    means = torch.stack(vals).mean(0)
    assert torch.allclose(means, torch.ones(3, dtype=torch.float64), atol=0.1)


def test_fastfood_is_gaussian_like_projection():
    """Fastfood should act like a Gaussian map: nearly orthogonal columns, spread-out rows."""
    M = _matrix(idim.make_projection("fastfood", 64, 64 * 64, seed=5))
    gram = M.T @ M
    off = gram - torch.diag(torch.diag(gram))
    assert off.abs().max().item() < 0.2
    assert (M.abs().max() / M.abs().mean()).item() < 8


def test_same_seed_same_map_other_seed_other_map():
    z = torch.randn(50)
    for kind in ("dense", "sparse", "fastfood"):
        a, b, c = (idim.make_projection(kind, 50, 3000, seed=s)(z) for s in (7, 7, 8))
        assert torch.equal(a, b)
        assert not torch.allclose(a, c)


_HASH_SCRIPT = textwrap.dedent(
    """
    import hashlib, sys, torch
    import intrinsic_dim as idim
    torch.set_num_threads(int(sys.argv[1]))
    z = torch.linspace(-1, 1, 300, dtype=torch.float64)
    h = hashlib.sha256()
    for kind in ("dense", "sparse", "fastfood"):
        y = idim.make_projection(kind, 300, 20000, seed=11)(z)
        h.update(y.numpy().tobytes())
    from intrinsic_dim import kernels
    seg = idim.make_projection("fastfood", 300, 20000, seed=11).segments[0]
    for t in kernels.segment_factors(seg, "cpu", torch.float64):
        h.update(t.numpy().tobytes())
    print(h.hexdigest())
    """
)


def test_determinism_across_processes_and_thread_counts():
    outs = {
        subprocess.run([sys.executable, "-c", _HASH_SCRIPT, str(t)], capture_output=True, text=True, check=True).stdout
        for t in (1, 2)
    }
    assert len(outs) == 1


def test_torch_path_factor_cache_is_bounded_and_freed_with_the_projection(monkeypatch):
    """The pure-torch path caches its factors (16 bytes per output) on the projection, never in a
    global: a D * d = 2**30 dense matrix is never built, and dropping the projection frees them."""
    monkeypatch.setenv("INTRINSIC_DIM_KERNEL", "torch")
    P = idim.make_projection("fastfood", 1 << 10, 1 << 20, seed=0)
    assert P(torch.randn(1 << 10)).shape == (1 << 20,)
    cached = [t for v in P.factors.values() for t in v]
    stored = sum(t.numel() for t in cached)
    assert 0 < stored <= 3 * (1 << 20)
    alive = [weakref.ref(t) for t in cached]
    del P, cached
    gc.collect()
    assert all(r() is None for r in alive)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(kind="fastfood", d=0, D=10), "positive"),
        (dict(kind="fastfood", d=20, D=10), "exceeds D"),
        (dict(kind="nope", d=2, D=10), "unknown projection"),
        (dict(kind="dense", d=1000, D=10**6, max_dense_elements=10**8), "GiB"),
        (dict(kind="fastfood", d=2, D=10, layout="per_tensor"), "sizes"),
        (dict(kind="fastfood", d=2, D=10, layout="diagonal"), "layout"),
        (dict(kind="sparse", d=2, D=10, layout="per_tensor", sizes=[10]), "fastfood projection only"),
        (dict(kind="fastfood", d=2, D=10, seed=-3), "seed"),
    ],
)
def test_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        idim.make_projection(**kwargs)


def test_wrong_input_shape():
    P = idim.make_projection("fastfood", 4, 20)
    with pytest.raises(ValueError, match=r"shape \(4,\)"):
        P(torch.zeros(5))
    with pytest.raises(ValueError, match=r"shape \(20,\)"):
        P.T(torch.zeros(4))


@pytest.mark.parametrize("kind,layout", KINDS_LAYOUTS)
@pytest.mark.parametrize("d,D", [(5, 37), (16, 1000), (100, 1000), (33, 4096), (300, 5000)])
def test_parts_are_the_slices_of_the_whole_map(kind, layout, d, D):
    """forward_part is bit for bit the slice of P(z); transpose_part is P^T of y placed in the part."""
    sizes = _split_sizes(D)
    P = idim.make_projection(kind, d, D, seed=d, layout=layout, sizes=sizes)
    g = torch.Generator().manual_seed(1)
    z = torch.randn(d, generator=g)
    whole = P(z)
    for i, (o, s) in enumerate(zip(P.offsets, sizes)):
        assert torch.equal(P.forward_part(z, i), whole[o : o + s])
        y = torch.randn(s, generator=g, dtype=torch.float64)
        placed = torch.zeros(D, dtype=torch.float64)
        placed[o : o + s] = y
        assert torch.allclose(P.transpose_part(y, i), P.T(placed), atol=1e-12)
