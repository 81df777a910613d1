"""Triton kernels: FWHT rows and the Fastfood segment y = scale * H G Pi H B pad(z), transposed too.

Blocks of up to 2**MAX_FUSED_LOG2N elements run fused, one program per block (per chunk of blocks for
the transpose): sign, FWHT, permutation (``tl.gather`` in registers), Gaussian, FWHT and scale in one
pass, with B, Pi and G regenerated in uint64 arithmetic from the recipe of :mod:`intrinsic_dim.rng`,
bit-exactly. Longer blocks run as elementwise kernels (factors still regenerated) around the
pure-torch FWHT. The transpose sums blocks in fixed chunks, then the chunks in order: deterministic.
Runs on CPU tensors under ``TRITON_INTERPRET=1`` (how it is tested where no GPU exists).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from intrinsic_dim import rng
from intrinsic_dim.kernels.torch_fwht import fwht_torch

MAX_FUSED_LOG2N = 13
MAX_CHUNKS = 512
ELEMENTWISE_BLOCK = 1024

# The random recipe's constants, taken from rng.py (the one place they are written) as compile-time values
_GOLDEN: tl.constexpr = tl.constexpr(rng.GOLDEN)
_MIX1: tl.constexpr = tl.constexpr(rng.MIX1)
_MIX2: tl.constexpr = tl.constexpr(rng.MIX2)
_GAUSS_CENTER: tl.constexpr = tl.constexpr(rng.GAUSS_CENTER)
_PERM_ROUNDS: tl.constexpr = tl.constexpr(rng.PERM_ROUNDS)


@triton.jit
def _mix64(z):
    z = (z ^ (z >> 30)) * _MIX1
    z = (z ^ (z >> 27)) * _MIX2
    return z ^ (z >> 31)


@triton.jit
def _u64(v):
    return v.to(tl.int64).to(tl.uint64, bitcast=True)


@triton.jit
def _bits(key, pos):
    return _mix64(key + (pos + 1) * _GOLDEN)


@triton.jit
def _block_key(stream_hash, block):
    return _mix64(_u64(stream_hash) ^ (_u64(block) * _MIX1))


@triton.jit
def _gauss(h, gscale):
    s = (h & 0xFFFF) + ((h >> 16) & 0xFFFF) + ((h >> 32) & 0xFFFF) + (h >> 48)
    return (s.to(tl.int64) - _GAUSS_CENTER).to(gscale.dtype) * gscale


@triton.jit
def _signed(h, v):
    return tl.where((h >> 63) != 0, -v, v)


@triton.jit
def _round_constants(kp, r, mask):
    mult = (_bits(kp, tl.full([], 2 * r, tl.uint64)) | 1) & mask
    return mult, _bits(kp, tl.full([], 2 * r + 1, tl.uint64)) & mask


@triton.jit
def _perm(kp, x, LOG2N: tl.constexpr, SHIFT: tl.constexpr, INVERSE: tl.constexpr):
    mask = tl.full([], (1 << LOG2N) - 1, tl.uint64)
    if INVERSE:
        for k in tl.static_range(_PERM_ROUNDS):
            mult, add = _round_constants(kp, _PERM_ROUNDS - 1 - k, mask)
            inv = mult
            for _ in tl.static_range(6):
                inv = inv * (2 - mult * inv)
            x = ((x - add) * inv) & mask
            x = x ^ (x >> SHIFT)
    else:
        for r in tl.static_range(_PERM_ROUNDS):
            mult, add = _round_constants(kp, r, mask)
            x = x ^ (x >> SHIFT)
            x = (x * mult + add) & mask
    return x


@triton.jit
def _fwht(x, LOG2N: tl.constexpr):
    N: tl.constexpr = 1 << LOG2N
    for s in tl.static_range(LOG2N):
        H: tl.constexpr = 1 << s
        y = tl.permute(tl.reshape(x, (N // (2 * H), 2, H)), (0, 2, 1))
        a, b = tl.split(y)
        x = tl.reshape(tl.permute(tl.join(a + b, a - b), (0, 2, 1)), (N,))
    return x


@triton.jit
def _fwht_rows_kernel(x_ptr, out_ptr, LOG2N: tl.constexpr):
    N: tl.constexpr = 1 << LOG2N
    i = tl.program_id(0).to(tl.int64) * N + tl.arange(0, N)
    x = tl.load(x_ptr + i)
    y = _fwht(x.to(tl.float64) if x.dtype == tl.float64 else x.to(tl.float32), LOG2N)
    tl.store(out_ptr + i, y.to(x.dtype))


@triton.jit
def _forward_kernel(z_ptr, out_ptr, consts_ptr, d, out_len, block0, hs, hg, hp,
                    LOG2N: tl.constexpr, SHIFT: tl.constexpr):
    N: tl.constexpr = 1 << LOG2N
    b = tl.program_id(0).to(tl.int64)
    gscale, scale = tl.load(consts_ptr), tl.load(consts_ptr + 1)
    i = tl.arange(0, N)
    pos = _u64(i)
    u = _signed(_bits(_block_key(hs, block0 + b), pos), tl.load(z_ptr + i, mask=i < d, other=0.0))
    u = _fwht(u, LOG2N)
    idx = _perm(_block_key(hp, block0 + b), pos, LOG2N, SHIFT, False)
    v = tl.gather(u, idx.to(tl.int32), 0) * _gauss(_bits(_block_key(hg, block0 + b), pos), gscale)
    v = _fwht(v, LOG2N)
    o = b * N + i
    tl.store(out_ptr + o, v * scale, mask=o < out_len)


@triton.jit
def _transpose_kernel(y_ptr, part_ptr, consts_ptr, out_len, nblocks, nchunks, block0, hs, hg, hp,
                      LOG2N: tl.constexpr, SHIFT: tl.constexpr):
    N: tl.constexpr = 1 << LOG2N
    c = tl.program_id(0).to(tl.int64)
    gscale, scale = tl.load(consts_ptr), tl.load(consts_ptr + 1)
    i = tl.arange(0, N)
    pos = _u64(i)
    acc = tl.zeros([N], dtype=gscale.dtype)
    for b in range(nblocks * c // nchunks, nblocks * (c + 1) // nchunks):
        o = b * N + i
        w = _fwht(tl.load(y_ptr + o, mask=o < out_len, other=0.0) * scale, LOG2N)
        w = w * _gauss(_bits(_block_key(hg, block0 + b), pos), gscale)
        q = _perm(_block_key(hp, block0 + b), pos, LOG2N, SHIFT, True)
        v = _fwht(tl.gather(w, q.to(tl.int32), 0), LOG2N)
        acc += _signed(_bits(_block_key(hs, block0 + b), pos), v)
    tl.store(part_ptr + c * N + i, acc)


@triton.jit
def _sign_pad_kernel(z_ptr, u_ptr, d, block0, hs, LOG2N: tl.constexpr, BLOCK: tl.constexpr):
    b = tl.program_id(0).to(tl.int64)
    j = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    zv = tl.load(z_ptr + j, mask=j < d, other=0.0)
    tl.store(u_ptr + b * (1 << LOG2N) + j, _signed(_bits(_block_key(hs, block0 + b), _u64(j)), zv))


@triton.jit
def _gather_gauss_kernel(u_ptr, v_ptr, consts_ptr, block0, hg, hp,
                         LOG2N: tl.constexpr, SHIFT: tl.constexpr, INVERSE: tl.constexpr, BLOCK: tl.constexpr):
    b = tl.program_id(0).to(tl.int64)
    i = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    src = _perm(_block_key(hp, block0 + b), _u64(i), LOG2N, SHIFT, INVERSE)
    g_pos = src if INVERSE else _u64(i)
    g = _gauss(_bits(_block_key(hg, block0 + b), g_pos), tl.load(consts_ptr))
    row = b * (1 << LOG2N)
    tl.store(v_ptr + row + i, tl.load(u_ptr + row + src.to(tl.int64)) * g)


@triton.jit
def _sign_rows_kernel(v_ptr, block0, hs, LOG2N: tl.constexpr, BLOCK: tl.constexpr):
    b = tl.program_id(0).to(tl.int64)
    j = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    p = v_ptr + b * (1 << LOG2N) + j
    tl.store(p, _signed(_bits(_block_key(hs, block0 + b), _u64(j)), tl.load(p)))


def _launch_args(seed: int, n: int, scale: float, dtype: torch.dtype, device: torch.device):
    log2n = n.bit_length() - 1
    consts = torch.tensor([rng.GAUSS_SCALE, scale], dtype=torch.float64).to(device=device, dtype=dtype)
    hashes = [rng.as_int64(rng.stream_hash(seed, s)) for s in (rng.STREAM_SIGN, rng.STREAM_GAUSS, rng.STREAM_PERM)]
    return log2n, rng.perm_shift(log2n), consts, hashes


def _warps(n: int) -> int:
    return max(1, min(8, n // 256))


def fwht(x: torch.Tensor) -> torch.Tensor:
    """Unnormalised FWHT over the last dim (rows up to 2**MAX_FUSED_LOG2N), one program per row."""
    n = x.shape[-1]
    if n <= 0 or n & (n - 1) or n > 1 << MAX_FUSED_LOG2N:
        raise ValueError(f"the Triton FWHT takes power-of-two rows up to 2**{MAX_FUSED_LOG2N}, got {n}")
    x = x.contiguous()
    out = torch.empty_like(x)
    if x.numel():
        _fwht_rows_kernel[(x.numel() // n,)](x, out, LOG2N=n.bit_length() - 1, num_warps=_warps(n))
    return out


def segment_forward(
    z: torch.Tensor, seed: int, block0: int, nblocks: int, n: int, out_len: int, scale: float,
    max_fused_log2n: int = MAX_FUSED_LOG2N,
) -> torch.Tensor:
    """scale * [H G_b Pi_b H B_b pad(z)] over nblocks blocks of size n from block0, cut to out_len."""
    log2n, shift, consts, (hs, hg, hp) = _launch_args(seed, n, scale, z.dtype, z.device)
    d = z.shape[0]
    if log2n <= max_fused_log2n:
        out = torch.empty(out_len, dtype=z.dtype, device=z.device)
        _forward_kernel[(nblocks,)](z, out, consts, d, out_len, block0, hs, hg, hp, LOG2N=log2n, SHIFT=shift,
                                    num_warps=_warps(n))
        return out
    blk = min(n, ELEMENTWISE_BLOCK)
    u = torch.empty(nblocks, n, dtype=z.dtype, device=z.device)
    _sign_pad_kernel[(nblocks, n // blk)](z, u, d, block0, hs, LOG2N=log2n, BLOCK=blk)
    u = fwht_torch(u)
    v = torch.empty_like(u)
    _gather_gauss_kernel[(nblocks, n // blk)](u, v, consts, block0, hg, hp, LOG2N=log2n, SHIFT=shift,
                                              INVERSE=False, BLOCK=blk)
    return fwht_torch(v).reshape(-1)[:out_len] * scale


def segment_transpose(
    y: torch.Tensor, d: int, seed: int, block0: int, nblocks: int, n: int, out_len: int, scale: float,
    max_fused_log2n: int = MAX_FUSED_LOG2N,
) -> torch.Tensor:
    """The transpose of :func:`segment_forward`: (out_len,) -> (d,)."""
    log2n, shift, consts, (hs, hg, hp) = _launch_args(seed, n, scale, y.dtype, y.device)
    if log2n <= max_fused_log2n:
        nchunks = min(nblocks, MAX_CHUNKS)
        part = torch.empty(nchunks, n, dtype=y.dtype, device=y.device)
        _transpose_kernel[(nchunks,)](y, part, consts, out_len, nblocks, nchunks, block0, hs, hg, hp,
                                      LOG2N=log2n, SHIFT=shift, num_warps=_warps(n))
        return part[:, :d].sum(0)
    blk = min(n, ELEMENTWISE_BLOCK)
    u = fwht_torch(torch.nn.functional.pad(y * scale, (0, nblocks * n - out_len)).view(nblocks, n))
    v = torch.empty_like(u)
    _gather_gauss_kernel[(nblocks, n // blk)](u, v, consts, block0, hg, hp, LOG2N=log2n, SHIFT=shift,
                                              INVERSE=True, BLOCK=blk)
    v = fwht_torch(v)
    _sign_rows_kernel[(nblocks, n // blk)](v, block0, hs, LOG2N=log2n, BLOCK=blk)
    return v[:, :d].sum(0)
