"""The Fastfood normaliser's fast path (native squared Gaussians) against the torch reference: bit for bit."""

import pytest
import torch

from intrinsic_dim import rng
from intrinsic_dim.kernels import make_segment, native, segment

LIB = native.load()
pytestmark = pytest.mark.skipif(LIB is None, reason="native kernels unavailable (no C compiler)")

# (seed, block0, nblocks, n): tiny blocks, odd counts, chunk boundaries (n = 2**20: 4 blocks a chunk)
CASES = [(0, 0, 1, 1), (1, 3, 5, 2), (2, 0, 7, 4), (3, 11, 9, 8), (5, 0, 33, 32), (7, 2, 300, 128), (123, 0, 64, 1024),
         (2**40 + 5, 9, 17, 4096), (2**63 + 1, 1, 3, 1 << 16), (42, 5, 9, 1 << 20), (9, 0, 2, 1 << 21)]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_squared_gaussians_match_the_rng_recipe(case):
    seed, block0, nblocks, n = case
    nblocks = min(nblocks, 3)
    keys = rng.block_keys(seed, rng.STREAM_GAUSS, torch.arange(block0, block0 + nblocks))[:, None]
    want = rng.gaussian(keys, torch.arange(n)[None, :], torch.float64).pow(2)
    assert torch.equal(LIB.gauss_sq(seed, block0, nblocks, n), want)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_block_sums_are_bit_identical_to_the_reference(case):
    seed, block0, nblocks, n = case
    fast = segment.gauss_sq_sums(seed, block0, nblocks, n)
    assert fast.dtype == torch.float64 and fast.shape == (nblocks,)
    assert torch.equal(fast, segment.gauss_sq_sums_reference(seed, block0, nblocks, n))


@pytest.mark.parametrize("seed", [0, 1, 17, 2**33 + 3])
@pytest.mark.parametrize("shape", [(1, 1), (16, 7), (32, 1000), (1024, 100_000), (1 << 14, 12_000), (64, 64 * 5)])
def test_segment_scale_is_bit_identical_to_the_reference(seed, shape, monkeypatch):
    n, out_len = shape
    fast = make_segment(seed, seed % 5, n, out_len, 0.5)
    monkeypatch.setattr(segment.native, "load", lambda: None)
    assert make_segment(seed, seed % 5, n, out_len, 0.5) == fast


def test_squares_do_not_depend_on_the_thread_count():
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = LIB.gauss_sq(3, 0, 256, 1024)
        torch.set_num_threads(max(2, before))
        assert torch.equal(LIB.gauss_sq(3, 0, 256, 1024), one)
    finally:
        torch.set_num_threads(before)
