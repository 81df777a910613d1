"""The counter-based generator: pinned values, exactness, bijective permutations."""

import pytest
import torch

from intrinsic_dim import rng


def test_recipe_is_pinned():
    # The recipe is a contract with saved adapters and native kernels: these values must never change.
    k = rng.key(0, rng.STREAM_SIGN, 5)
    assert k == 4097931633868489958
    assert rng.bits(k, torch.arange(3)).tolist() == [2935453450805092362, -4106666596262084462, 8879319337193248587]


def test_block_keys_match_scalar_keys():
    blocks = torch.tensor([0, 1, 7, 123456789])
    got = rng.block_keys(42, rng.STREAM_GAUSS, blocks).tolist()
    assert got == [rng.as_int64(rng.key(42, rng.STREAM_GAUSS, int(b))) for b in blocks]


def test_gaussian_moments_and_exact_lattice():
    g = rng.gaussian(rng.key(3, rng.STREAM_GAUSS, 0), torch.arange(400_000), torch.float64)
    assert abs(g.mean().item()) < 0.01
    assert abs(g.var().item() - 1.0) < 0.01
    # every value is an integer times the scale: exact on any device
    ints = (g / rng.GAUSS_SCALE).round()
    assert torch.equal(ints * torch.tensor(rng.GAUSS_SCALE, dtype=torch.float64), g)
    assert ints.abs().max() <= 2 * 65535
    g32 = rng.gaussian(rng.key(3, rng.STREAM_GAUSS, 0), torch.arange(1000))
    assert g32.dtype == torch.float32


def test_signs_balanced():
    s = rng.signs(rng.key(1, rng.STREAM_SIGN, 2), torch.arange(100_000))
    assert set(s.unique().tolist()) == {-1.0, 1.0}
    assert abs(s.mean().item()) < 0.02


@pytest.mark.parametrize("log2n", [0, 1, 2, 3, 5, 8, 11, 16])
def test_permutation_is_bijection(log2n):
    for block in range(3):
        p = rng.permutation(rng.key(9, rng.STREAM_PERM, block), log2n, torch.arange(1 << log2n))
        assert torch.equal(p.sort().values, torch.arange(1 << log2n))


def test_permutations_differ_by_block_and_are_not_identity():
    keys = rng.block_keys(0, rng.STREAM_PERM, torch.arange(4))[:, None]
    p = rng.permutation(keys, 10, torch.arange(1024)[None, :])
    assert all(not torch.equal(p[i], torch.arange(1024)) for i in range(4))
    assert not torch.equal(p[0], p[1])
    # roughly uniform: where index 0 goes, over many blocks
    many = rng.permutation(rng.block_keys(0, rng.STREAM_PERM, torch.arange(4000))[:, None], 4, torch.zeros(1, 1))
    counts = torch.bincount(many.reshape(-1), minlength=16).float()
    assert counts.min() > 150 and counts.max() < 350


def test_uniform_int_range():
    u = rng.uniform_int(rng.key(0, 5, 0), torch.arange(50_000), 37)
    assert u.min() == 0 and u.max() == 36
    with pytest.raises(ValueError):
        rng.uniform_int(0, torch.arange(3), 0)


def test_negative_seed_rejected():
    with pytest.raises(ValueError, match="non-negative"):
        rng.key(-1, 0, 0)
