"""The segment description every Fastfood kernel takes, its factors, and the plain-torch kernels.

The Fastfood transform is y = scale * H G Pi H B pad(z) per block. A *segment* is a run of
``nblocks`` consecutive blocks of size ``n`` (a power of two, n >= d), starting at global block
index ``block0``, whose outputs are concatenated and cut to ``out_len``. The ``stacked`` layout is
one segment covering all D outputs; the ``per_tensor`` layout of the released code of Aghajanyan et
al. is one single-block segment per tensor; a tensor's slice of the stacked layout is the run of
blocks covering it (same scale).

Normaliser (per segment): with r the kept length of the last block,
``scale**2 = 1 / (n * sum_{full blocks} ||G_b||^2 + r * ||G_last||^2)``. Every column of an uncut
segment then has exactly unit norm, and a cut one has unit norm in expectation over the signs B
(E_B[(H G Pi H B e_j)_i^2] = ||G||^2 for every row i). For per-tensor segments (one block cut to
D_i) this is the released code's ``||G|| * sqrt(D_i)``.

The random factors come from :mod:`intrinsic_dim.rng` as pure functions of (seed, block, position),
so any kernel may regenerate them; the plain-torch kernels here build them, into a cache the caller
owns (a projection keeps one and frees it with itself). Dispatch: :mod:`intrinsic_dim.kernels`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterator

import torch

from intrinsic_dim import rng
from intrinsic_dim.kernels import native
from intrinsic_dim.kernels.torch_fwht import fwht_torch

Fwht = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Segment:
    """One run of Fastfood blocks; see the module docstring."""

    seed: int
    block0: int
    nblocks: int
    n: int
    out_len: int
    scale: float

    @property
    def log2n(self) -> int:
        return self.n.bit_length() - 1


def segment_factors(seg: Segment, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32):
    """The factors (B, perm, G) of every block of a segment, each of shape (nblocks, n)."""
    blocks = torch.arange(seg.block0, seg.block0 + seg.nblocks, device=device)
    pos = torch.arange(seg.n, device=device)[None, :]
    b = rng.signs(rng.block_keys(seg.seed, rng.STREAM_SIGN, blocks)[:, None], pos, dtype)
    perm = rng.permutation(rng.block_keys(seg.seed, rng.STREAM_PERM, blocks)[:, None], seg.log2n, pos)
    g = rng.gaussian(rng.block_keys(seg.seed, rng.STREAM_GAUSS, blocks)[:, None], pos, dtype)
    return b, perm, g


NORM_CHUNK_ELEMS = 1 << 22


def _norm_chunks(nblocks: int, n: int) -> Iterator[tuple[int, int]]:
    """(first, count) of the runs of blocks whose squared Gaussians are summed as one (count, n) tensor:
    the same runs on every path, so torch reduces tensors of the same shape (and order) on each."""
    step = max(1, NORM_CHUNK_ELEMS // n)
    for s in range(0, nblocks, step):
        yield s, min(step, nblocks - s)


def gauss_sq_sums_reference(seed: int, block0: int, nblocks: int, n: int) -> torch.Tensor:
    """||G_b||^2 (float64) of every block, from the torch recipe of :mod:`intrinsic_dim.rng`: the reference."""
    g2 = torch.empty(nblocks, dtype=torch.float64)
    pos = torch.arange(n)[None, :]
    for s, c in _norm_chunks(nblocks, n):
        keys = rng.block_keys(seed, rng.STREAM_GAUSS, torch.arange(block0 + s, block0 + s + c))[:, None]
        g2[s : s + c] = rng.gaussian(keys, pos, torch.float64).pow(2).sum(1)
    return g2


def gauss_sq_sums(seed: int, block0: int, nblocks: int, n: int) -> torch.Tensor:
    """||G_b||^2 (float64) of every block, bit-identical to :func:`gauss_sq_sums_reference`: the squares
    come from the native kernel where it is available (one hash per entry instead of some twenty torch
    int64 passes), and torch sums the same-shaped tensors as the reference does."""
    lib = native.load()
    if lib is None:
        return gauss_sq_sums_reference(seed, block0, nblocks, n)
    g2 = torch.empty(nblocks, dtype=torch.float64)
    buf = torch.empty(min(nblocks, max(1, NORM_CHUNK_ELEMS // n)) * n, dtype=torch.float64)  # reused: no page faults
    for s, c in _norm_chunks(nblocks, n):
        g2[s : s + c] = lib.gauss_sq(seed, block0 + s, c, n, buf[: c * n].view(c, n)).sum(1)
    return g2


def make_segment(seed: int, block0: int, n: int, out_len: int, shrink: float = 1.0) -> Segment:
    """A segment covering ``out_len`` outputs with blocks of size n, its normaliser computed (and
    multiplied by ``shrink``)."""
    nblocks = max(1, -(-out_len // n))
    kept_last = out_len - n * (nblocks - 1)
    g2 = gauss_sq_sums(seed, block0, nblocks, n)
    total = n * g2[:-1].sum().item() + kept_last * g2[-1].item()
    return Segment(seed, block0, nblocks, n, out_len, shrink / math.sqrt(total))


FactorCache = dict


def _factors(seg: Segment, x: torch.Tensor, cache: FactorCache | None):
    """The segment's factors for x's device and dtype, from (or into) ``cache`` when given."""
    if cache is None:
        return segment_factors(seg, x.device, x.dtype)
    k = (seg, str(x.device), x.dtype)
    if k not in cache:
        cache[k] = segment_factors(seg, x.device, x.dtype)
    return cache[k]


def segment_forward_torch(seg: Segment, z: torch.Tensor, cache: FactorCache | None = None, fwht: Fwht = fwht_torch) -> torch.Tensor:
    """Pure-torch forward of one segment: (d,) -> (out_len,). Not differentiable by itself;
    ``cache`` (a dict the caller owns) keeps the factors, 16 bytes per output, between calls."""
    b, perm, g = _factors(seg, z, cache)
    zp = torch.nn.functional.pad(z, (0, seg.n - z.shape[0]))
    u = fwht(b * zp)
    v = fwht(torch.gather(u, 1, perm) * g)
    return v.reshape(-1)[: seg.out_len] * seg.scale


def segment_transpose_torch(
    seg: Segment, y: torch.Tensor, d: int, cache: FactorCache | None = None, fwht: Fwht = fwht_torch
) -> torch.Tensor:
    """Pure-torch transpose of one segment: (out_len,) -> (d,)."""
    b, perm, g = _factors(seg, y, cache)
    yp = torch.nn.functional.pad(y * seg.scale, (0, seg.nblocks * seg.n - seg.out_len))
    v = fwht(yp.view(seg.nblocks, seg.n)) * g
    u = torch.empty_like(v).scatter_(1, perm, v)
    return (fwht(u) * b).sum(0)[:d]
