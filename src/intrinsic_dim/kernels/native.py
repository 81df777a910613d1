"""ctypes bindings of the native CPU kernels: the FWHT and the fused Fastfood segment.

The library (csrc/fastfood.c) is found or built by :mod:`intrinsic_dim.kernels.toolchain` on first
use (never at import); where that fails (no compiler), a warning is given and the pure-torch kernels
stay in use. Arguments are checked by the registry (:mod:`intrinsic_dim.kernels`), not here.
``INTRINSIC_DIM_NATIVE_ISA`` (avx512, avx2, generic) picks a variant; ``INTRINSIC_DIM_NATIVE=0``
disables the native kernels.
"""

from __future__ import annotations

import ctypes
import os
import warnings
from functools import lru_cache
from pathlib import Path

import torch

from intrinsic_dim.kernels import toolchain

MAX_LOG2N = 30
_SUFFIX = {torch.float32: "f32", torch.float64: "f64"}
_I64, _INT, _U64, _DBL, _PTR = ctypes.c_int64, ctypes.c_int, ctypes.c_uint64, ctypes.c_double, ctypes.c_void_p


def _log2(n: int) -> int:
    if n <= 0 or n & (n - 1) or n > 1 << MAX_LOG2N:
        raise ValueError(f"the native kernels need a power-of-two length <= 2**{MAX_LOG2N}, got {n}")
    return n.bit_length() - 1


def _check(rc: int) -> None:
    if rc != 0:
        raise MemoryError("the native Fastfood kernel could not allocate its scratch memory")


class NativeLib:
    """One built variant of the native kernels, called on tensors' data pointers."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        lib = ctypes.CDLL(str(self.path))
        for sfx in _SUFFIX.values():
            getattr(lib, f"ff_fwht_{sfx}").argtypes = [_PTR, _PTR, _I64, _INT, _INT]
            for op in ("forward", "transpose"):
                getattr(lib, f"ff_{op}_{sfx}").argtypes = [_PTR, _PTR, _I64, _U64, _I64, _I64, _INT, _I64, _DBL, _INT]
            getattr(lib, f"ff_factors_{sfx}").argtypes = [_PTR, _PTR, _PTR, _PTR, _U64, _I64, _I64, _INT]
            getattr(lib, f"ff_factors_{sfx}").restype = None
        lib.ff_gauss_sq_f64.argtypes = [_PTR, _U64, _I64, _I64, _INT, _INT]
        lib.ff_gauss_sq_f64.restype = None
        lib.ff_add_probe.argtypes = [_I64, _INT]
        lib.ff_add_probe.restype = _DBL
        lib.ff_hash_probe.argtypes = [_I64, _INT]
        lib.ff_hash_probe.restype = _U64
        lib.ff_constants.argtypes = [_PTR, _PTR]
        lib.ff_constants.restype = None
        lib.ff_key.argtypes = [_U64, _U64, _U64]
        lib.ff_key.restype = _U64
        self._lib = lib
        self.isa = {512: "avx512", 256: "avx2", 0: "generic"}[lib.ff_isa()]

    def _fn(self, name: str, dtype: torch.dtype):
        return getattr(self._lib, f"ff_{name}_{_SUFFIX[dtype]}")

    def fwht_into(self, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """out = H x over the last dim (float32/float64, contiguous, CPU; out may be x)."""
        if x.dtype not in _SUFFIX or out.dtype != x.dtype or out.shape != x.shape:
            raise TypeError(f"fwht_into needs float32/float64 tensors of one dtype and shape, got {x.dtype}, {out.dtype}")
        if not (x.is_contiguous() and out.is_contiguous()) or x.device.type != "cpu" or out.device.type != "cpu":
            raise ValueError("fwht_into needs contiguous CPU tensors")
        n = x.shape[-1]
        if x.numel():
            self._fn("fwht", x.dtype)(out.data_ptr(), x.data_ptr(), x.numel() // n, _log2(n), torch.get_num_threads())
        return out

    def fwht(self, x: torch.Tensor) -> torch.Tensor:
        """H x over the last dim, as a new tensor (other float dtypes computed in float32)."""
        if x.dtype not in _SUFFIX:
            return self.fwht(x.float()).to(x.dtype)
        x = x.contiguous()
        return self.fwht_into(x, torch.empty_like(x))

    def segment_forward(
        self, z: torch.Tensor, seed: int, block0: int, nblocks: int, n: int, out_len: int, scale: float,
        out: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """scale * [H G_b Pi_b H B_b pad(z)] over nblocks blocks of size n from block0, cut to out_len (into ``out``,
        a contiguous CPU tensor of z's dtype and that length, if given)."""
        d = z.shape[0]
        if out is None:
            out = torch.empty(out_len, dtype=z.dtype)
        elif out.shape != (out_len,) or out.dtype != z.dtype or not out.is_contiguous() or out.device.type != "cpu":
            raise ValueError(f"segment_forward needs a contiguous {z.dtype} CPU out of shape ({out_len},)")
        _check(self._fn("forward", z.dtype)(
            out.data_ptr(), z.data_ptr(), d, seed, block0, nblocks, _log2(n), out_len, scale, torch.get_num_threads()
        ))
        return out

    def segment_transpose(
        self, y: torch.Tensor, d: int, seed: int, block0: int, nblocks: int, n: int, out_len: int, scale: float
    ) -> torch.Tensor:
        """The transpose of :meth:`segment_forward`: (out_len,) -> (d,)."""
        out = torch.empty(d, dtype=y.dtype)
        _check(self._fn("transpose", y.dtype)(
            out.data_ptr(), y.data_ptr(), d, seed, block0, nblocks, _log2(n), out_len, scale, torch.get_num_threads()
        ))
        return out

    def factors(
        self, seed: int, block0: int, nblocks: int, n: int, dtype: torch.dtype = torch.float32
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The factors (B, Pi, Pi^-1, G) the kernels regenerate, each (nblocks, n), for tests."""
        b, g = torch.empty(nblocks, n, dtype=dtype), torch.empty(nblocks, n, dtype=dtype)
        p, q = torch.empty(nblocks, n, dtype=torch.int32), torch.empty(nblocks, n, dtype=torch.int32)
        self._fn("factors", dtype)(b.data_ptr(), p.data_ptr(), q.data_ptr(), g.data_ptr(), seed, block0, nblocks, _log2(n))
        return b, p, q, g

    def gauss_sq(self, seed: int, block0: int, nblocks: int, n: int, out: torch.Tensor | None = None) -> torch.Tensor:
        """G**2 (float64, (nblocks, n), into ``out`` if given) of nblocks blocks of size n from block0: the
        terms of the Fastfood normaliser, bit-identical to ``rng.gaussian(..., torch.float64).pow(2)``."""
        if out is None:
            out = torch.empty(nblocks, n, dtype=torch.float64)
        if out.shape != (nblocks, n) or out.dtype != torch.float64 or not out.is_contiguous() or out.device.type != "cpu":
            raise ValueError(f"gauss_sq needs a contiguous float64 CPU out of shape ({nblocks}, {n})")
        self._lib.ff_gauss_sq_f64(out.data_ptr(), seed, block0, nblocks, _log2(n), torch.get_num_threads())
        return out

    def add_probe(self, iters: int, threads: int) -> int:
        """Run 96 * iters register-resident float32 adds on each of ``threads`` threads; return the count."""
        self._lib.ff_add_probe(iters, threads)
        return 96 * iters * threads

    def hash_probe(self, iters: int, threads: int) -> int:
        """Run 32 * iters of the kernels' 64-bit hashes (register-resident) on each of ``threads`` threads; return the count."""
        self._lib.ff_hash_probe(iters, threads)
        return 32 * iters * threads

    def constants(self) -> dict[str, int | float]:
        """The generator constants compiled into this library (names as in :mod:`intrinsic_dim.rng`)."""
        u, scale = (ctypes.c_uint64 * 8)(), ctypes.c_double()
        self._lib.ff_constants(u, ctypes.byref(scale))
        names = ("GOLDEN", "MIX1", "MIX2", "STREAM_SIGN", "STREAM_GAUSS", "STREAM_PERM", "PERM_ROUNDS", "GAUSS_CENTER")
        return dict(zip(names, list(u))) | {"GAUSS_SCALE": scale.value}

    def key(self, seed: int, stream: int, block: int) -> int:
        """The generator key of (seed, stream, block), as computed natively."""
        return int(self._lib.ff_key(seed, stream, block))


def load_variant(isa: str) -> NativeLib:
    """The library for one instruction-set variant, built if needed (raises BuildError)."""
    return NativeLib(toolchain.ensure_library(isa))


@lru_cache(maxsize=1)
def load() -> NativeLib | None:
    """The best native library for this CPU, or None (with a warning) where none can be built."""
    if os.environ.get("INTRINSIC_DIM_NATIVE") == "0":
        return None
    forced = os.environ.get("INTRINSIC_DIM_NATIVE_ISA")
    errors = []
    for isa in [forced] if forced else toolchain.supported_isas():
        try:
            return load_variant(isa)
        except (toolchain.BuildError, OSError, KeyError) as e:
            errors.append(f"{isa}: {e}")
    warnings.warn(
        "intrinsic_dim: the native CPU kernels are unavailable, using the slower pure-torch FWHT and "
        "Fastfood (" + "; ".join(errors) + ")",
        RuntimeWarning,
        stacklevel=2,
    )
    return None


def fwht_native(x: torch.Tensor) -> torch.Tensor:
    """Unnormalised FWHT over the last dim with the native kernel, as a new tensor."""
    lib = load()
    if lib is None:
        raise RuntimeError("the native FWHT kernel is unavailable")
    return lib.fwht(x)


def fwht_native_(x: torch.Tensor) -> torch.Tensor:
    """Unnormalised FWHT over the last dim in place (float32/float64, contiguous CPU tensor)."""
    lib = load()
    if lib is None:
        raise RuntimeError("the native FWHT kernel is unavailable")
    return lib.fwht_into(x, x)
