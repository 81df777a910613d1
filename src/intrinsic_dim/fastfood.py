"""The Fastfood transform y = scale * H G Pi H B pad(z), in segments of stacked blocks.

A *segment* is a run of ``nblocks`` consecutive blocks of size ``n`` (a power of two, n >= d),
starting at global block index ``block0``, whose outputs are concatenated and cut to ``out_len``.
The ``stacked`` layout is one segment covering all D outputs; the ``per_tensor`` layout of the
released code of Aghajanyan et al. is one single-block segment per tensor.

Normaliser (per segment): with r the kept length of the last block,
``scale**2 = 1 / (n * sum_{full blocks} ||G_b||^2 + r * ||G_last||^2)``. Every column of an uncut
segment then has exactly unit norm, and a cut one has unit norm in expectation over the signs B
(E_B[(H G Pi H B e_j)_i^2] = ||G||^2 for every row i). For per-tensor segments (one block cut to
D_i) this is the released code's ``||G|| * sqrt(D_i)``.

The random factors come from :mod:`intrinsic_dim.rng` as pure functions of (seed, block, position),
so any kernel may regenerate them; this module's pure-torch path caches them per device.
Kernels for a whole segment register in ``SEGMENT_KERNELS`` by device type: on import, the native
CPU kernel (float32/float64) where it is built, and the Triton kernel where CUDA and Triton exist.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Callable

import torch

from intrinsic_dim import gpu, rng
from intrinsic_dim.hadamard import fwht, native


HALF = (torch.bfloat16, torch.float16)


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


@dataclass(frozen=True)
class SegmentKernel:
    """A native implementation of one segment: ``forward(seg, z) -> (out_len,)``,
    ``transpose(seg, y, d) -> (d,)``; ``accepts(tensor)`` says whether it can run that input."""

    name: str
    forward: Callable[[Segment, torch.Tensor], torch.Tensor]
    transpose: Callable[[Segment, torch.Tensor, int], torch.Tensor]
    accepts: Callable[[torch.Tensor], bool]


SEGMENT_KERNELS: dict[str, SegmentKernel] = {}


def register_segment_kernel(device_type: str, kernel: SegmentKernel) -> None:
    """Make ``kernel`` the Fastfood segment implementation for tensors on ``device_type``."""
    SEGMENT_KERNELS[device_type] = kernel


def segment_kernel(x: torch.Tensor) -> SegmentKernel | None:
    """The native segment kernel for ``x``, or None for the pure-torch path."""
    if os.environ.get("INTRINSIC_DIM_KERNEL") in ("torch", "reference"):
        return None
    k = SEGMENT_KERNELS.get(x.device.type)
    return k if k is not None and k.accepts(x) else None


def segment_factors(seg: Segment, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32):
    """The factors (B, perm, G) of every block of a segment, each of shape (nblocks, n)."""
    blocks = torch.arange(seg.block0, seg.block0 + seg.nblocks, device=device)
    pos = torch.arange(seg.n, device=device)[None, :]
    b = rng.signs(rng.block_keys(seg.seed, rng.STREAM_SIGN, blocks)[:, None], pos, dtype)
    perm = rng.permutation(rng.block_keys(seg.seed, rng.STREAM_PERM, blocks)[:, None], seg.log2n, pos)
    g = rng.gaussian(rng.block_keys(seg.seed, rng.STREAM_GAUSS, blocks)[:, None], pos, dtype)
    return b, perm, g


def make_segment(seed: int, block0: int, n: int, out_len: int, shrink: float = 1.0) -> Segment:
    """A segment covering ``out_len`` outputs with blocks of size n, its normaliser computed (and
    multiplied by ``shrink``)."""
    nblocks = max(1, -(-out_len // n))
    kept_last = out_len - n * (nblocks - 1)
    blocks = torch.arange(block0, block0 + nblocks)
    g2 = torch.zeros(nblocks, dtype=torch.float64)
    chunk = max(1, (1 << 22) // n)
    pos = torch.arange(n)[None, :]
    for s in range(0, nblocks, chunk):
        keys = rng.block_keys(seed, rng.STREAM_GAUSS, blocks[s : s + chunk])[:, None]
        g2[s : s + chunk] = rng.gaussian(keys, pos, torch.float64).pow(2).sum(1)
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


def segment_forward_torch(seg: Segment, z: torch.Tensor, cache: FactorCache | None = None) -> torch.Tensor:
    """Pure-torch forward of one segment: (d,) -> (out_len,). Not differentiable by itself;
    ``cache`` (a dict the caller owns) keeps the factors, 16 bytes per output, between calls."""
    b, perm, g = _factors(seg, z, cache)
    zp = torch.nn.functional.pad(z, (0, seg.n - z.shape[0]))
    u = fwht(b * zp)
    v = fwht(torch.gather(u, 1, perm) * g)
    return v.reshape(-1)[: seg.out_len] * seg.scale


def segment_transpose_torch(seg: Segment, y: torch.Tensor, d: int, cache: FactorCache | None = None) -> torch.Tensor:
    """Pure-torch transpose of one segment: (out_len,) -> (d,)."""
    b, perm, g = _factors(seg, y, cache)
    yp = torch.nn.functional.pad(y * seg.scale, (0, seg.nblocks * seg.n - seg.out_len))
    v = fwht(yp.view(seg.nblocks, seg.n)) * g
    u = torch.empty_like(v).scatter_(1, perm, v)
    return (fwht(u) * b).sum(0)[:d]


def segment_forward(seg: Segment, z: torch.Tensor, cache: FactorCache | None = None) -> torch.Tensor:
    """Forward of one segment on the best kernel for z's device (half precision computed in float32)."""
    if z.dtype in HALF:
        return segment_forward(seg, z.float(), cache).to(z.dtype)
    k = segment_kernel(z)
    return k.forward(seg, z) if k is not None else segment_forward_torch(seg, z, cache)


def segment_transpose(seg: Segment, y: torch.Tensor, d: int, cache: FactorCache | None = None) -> torch.Tensor:
    """Transpose of one segment on the best kernel for y's device (half precision computed in float32)."""
    if y.dtype in HALF:
        return segment_transpose(seg, y.float(), d, cache).to(y.dtype)
    k = segment_kernel(y)
    return k.transpose(seg, y, d) if k is not None else segment_transpose_torch(seg, y, d, cache)


def _native_forward(seg: Segment, z: torch.Tensor) -> torch.Tensor:
    return native.load().segment_forward(z, seg.seed, seg.block0, seg.nblocks, seg.n, seg.out_len, seg.scale)


def _native_transpose(seg: Segment, y: torch.Tensor, d: int) -> torch.Tensor:
    return native.load().segment_transpose(y, d, seg.seed, seg.block0, seg.nblocks, seg.n, seg.out_len, seg.scale)


def _native_accepts(x: torch.Tensor) -> bool:
    return x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64)


def _triton_forward(seg: Segment, z: torch.Tensor) -> torch.Tensor:
    from intrinsic_dim.gpu import triton_fastfood

    return triton_fastfood.segment_forward(z, seg.seed, seg.block0, seg.nblocks, seg.n, seg.out_len, seg.scale)


def _triton_transpose(seg: Segment, y: torch.Tensor, d: int) -> torch.Tensor:
    from intrinsic_dim.gpu import triton_fastfood

    return triton_fastfood.segment_transpose(y, d, seg.seed, seg.block0, seg.nblocks, seg.n, seg.out_len, seg.scale)


def _triton_accepts(x: torch.Tensor) -> bool:
    return x.device.type == "cuda" and x.dtype in (torch.float32, torch.float64)


def _register_kernels() -> None:
    """Register the native CPU segment kernel, and the Triton one where CUDA and Triton exist."""
    if native.load() is not None:
        register_segment_kernel("cpu", SegmentKernel("native", _native_forward, _native_transpose, _native_accepts))
    if gpu.available():
        register_segment_kernel("cuda", SegmentKernel("triton", _triton_forward, _triton_transpose, _triton_accepts))


_register_kernels()
