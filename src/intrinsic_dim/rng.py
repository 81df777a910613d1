"""Counter-based random numbers: pure functions of (seed, stream, block, position).

Every random factor of a projection is derived here, never from torch's global RNG, so the same
seed gives bit-identical factors on every machine, device, thread count and library version, and a
native or GPU kernel can regenerate them from the same integer recipe instead of storing them.

The recipe (mirrored exactly by the native kernels):

* ``key(seed, stream, block)``: SplitMix64 finaliser chained over the three integers.
* ``bits(key, i)``: the i-th output of a SplitMix64 stream started at ``key``:
  ``mix64(key + (i + 1) * GOLDEN)`` mod 2**64.
* signs (B): ``+1`` if the top bit of ``bits`` is 0, else ``-1``.
* Gaussian-like (G): the four 16-bit lanes of ``bits`` summed (Irwin-Hall of order 4), centred and
  scaled to unit variance. Only integer operations and one IEEE multiply, so the value is exact
  everywhere (a Box-Muller Gaussian would depend on each device's ``log``/``cos``). The
  distribution is symmetric with variance 1 and kurtosis 2.7 (a Gaussian has 3); Fastfood needs
  only a random diagonal scaling of unit second moment.
* permutation (Pi) of ``[0, 2**k)``: four rounds of xorshift, odd multiply and add on k bits, each a
  bijection, with round constants drawn from ``bits``.
"""

from __future__ import annotations

import math

import torch

MASK64 = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15
MIX1 = 0xBF58476D1CE4E5B9
MIX2 = 0x94D049BB133111EB

STREAM_SIGN = 1
STREAM_GAUSS = 2
STREAM_PERM = 3
STREAM_DENSE = 4
STREAM_SPARSE_POS = 5
STREAM_SPARSE_SIGN = 6
PERM_ROUNDS = 4

# Irwin-Hall(4) over 16-bit lanes: sum of four uniforms on {0..65535}, mean 2*65535.
_LANE_VAR = (65536.0**2 - 1.0) / 12.0
GAUSS_CENTER = 2 * 65535
GAUSS_SCALE = 1.0 / math.sqrt(4.0 * _LANE_VAR)


def as_int64(v: int) -> int:
    """The int64 with the same 64 bits as the unsigned integer ``v``."""
    v &= MASK64
    return v - (1 << 64) if v >= 1 << 63 else v


def mix64_int(z: int) -> int:
    """SplitMix64 finaliser on a Python int (unsigned 64-bit semantics)."""
    z &= MASK64
    z = ((z ^ (z >> 30)) * MIX1) & MASK64
    z = ((z ^ (z >> 27)) * MIX2) & MASK64
    return z ^ (z >> 31)


def key(seed: int, stream: int, block: int) -> int:
    """The 64-bit key of one (seed, stream, block) triple, as an unsigned Python int."""
    if seed < 0 or stream < 0 or block < 0:
        raise ValueError(f"seed, stream and block must be non-negative integers, got {seed}, {stream}, {block}")
    return mix64_int(stream_hash(seed, stream) ^ (block * MIX1 & MASK64))


def stream_hash(seed: int, stream: int) -> int:
    """The hash of (seed, stream) that every block key of that stream starts from (unsigned int)."""
    return mix64_int(mix64_int(seed + GOLDEN) ^ (stream * GOLDEN & MASK64))


def _srl(x: torch.Tensor, s: int) -> torch.Tensor:
    """Logical right shift of int64 tensors holding unsigned 64-bit values."""
    return (x >> s) & ((1 << (64 - s)) - 1)


def _mix64(z: torch.Tensor) -> torch.Tensor:
    z = (z ^ _srl(z, 30)) * as_int64(MIX1)
    z = (z ^ _srl(z, 27)) * as_int64(MIX2)
    return z ^ _srl(z, 31)


def block_keys(seed: int, stream: int, blocks: torch.Tensor) -> torch.Tensor:
    """``key(seed, stream, b)`` for every block index b of a tensor, as int64 bit patterns."""
    h = stream_hash(seed, stream)
    return _mix64(blocks.to(torch.int64) * as_int64(MIX1) ^ as_int64(h))


def _as_key(k: int | torch.Tensor, device: torch.device) -> int | torch.Tensor:
    return as_int64(k) if isinstance(k, int) else k.to(device)


def bits(k: int | torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """64 random bits (as int64) for each position of the stream(s) with key(s) ``k`` (broadcast)."""
    pos = positions.to(torch.int64)
    # (i + 1) * GOLDEN wraps mod 2**64 in int64 arithmetic exactly like unsigned arithmetic.
    return _mix64((pos + 1) * as_int64(GOLDEN) + _as_key(k, pos.device))


def signs(k: int | torch.Tensor, positions: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Random ``+1``/``-1`` per position (the B diagonal of Fastfood)."""
    top = _srl(bits(k, positions), 63)
    return (1 - 2 * top).to(dtype)


def gaussian(k: int | torch.Tensor, positions: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Standardised Irwin-Hall(4) variates per position: exact on every device (see module doc)."""
    b = bits(k, positions)
    s = (b & 0xFFFF) + (_srl(b, 16) & 0xFFFF) + (_srl(b, 32) & 0xFFFF) + _srl(b, 48)
    return (s - GAUSS_CENTER).to(dtype) * torch.tensor(GAUSS_SCALE, dtype=dtype, device=b.device)


def uniform_int(k: int | torch.Tensor, positions: torch.Tensor, n: int) -> torch.Tensor:
    """Integers in ``[0, n)`` per position (multiply-shift on the top 32 bits; n < 2**31)."""
    if not 0 < n < 1 << 31:
        raise ValueError(f"n must be in [1, 2**31), got {n}")
    return (_srl(bits(k, positions), 32) * n) >> 32


def perm_constants(k: int | torch.Tensor, log2n: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Round constants (odd multiplier, addend) of the Pi bijection on ``log2n`` bits, per key."""
    mask = (1 << log2n) - 1
    kt = torch.as_tensor(_as_key(k, torch.device("cpu")) if isinstance(k, int) else k)
    out = []
    for r in range(PERM_ROUNDS):
        mult = (bits(kt, torch.tensor(2 * r)) | 1) & mask
        add = bits(kt, torch.tensor(2 * r + 1)) & mask
        out.append((mult, add))
    return out


def perm_shift(log2n: int) -> int:
    """The xorshift distance of the Pi rounds: half the bits, at least one."""
    return max(1, (log2n + 1) // 2)


def permutation(k: int | torch.Tensor, log2n: int, positions: torch.Tensor) -> torch.Tensor:
    """pi(i) for each position i in ``[0, 2**log2n)``: a seeded bijection of the block's index space.

    ``k`` may be a tensor of keys broadcast against ``positions`` (e.g. shape (blocks, 1)).
    """
    mask = (1 << log2n) - 1
    s = perm_shift(log2n)
    x = positions.to(torch.int64)
    kt = k.to(x.device) if isinstance(k, torch.Tensor) else k
    for mult, add in perm_constants(kt, log2n):
        x = x ^ (x >> s)
        x = (x * mult) & mask
        x = (x + add) & mask
    return x
