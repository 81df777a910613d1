"""One registry of kernel backends for every op: the FWHT and the fused Fastfood segment forward /
transpose (taking a :class:`Segment`).

Backends, best first where each runs: ``native`` (plain C with OpenMP, CPU, float32/float64; built or
loaded on first use, never at import), ``triton`` (CUDA with Triton), ``torch`` (any device, the
Kronecker-factor FWHT and factors cached by the caller) and ``reference`` (the textbook butterfly;
slow, obviously correct). An op runs on the highest-priority backend that is available on the
tensor's device and accepts it. ``INTRINSIC_DIM_KERNEL=<name>`` forces that backend for every op,
and is an error where it cannot run the tensor.

A GPU path never strands its user: where CUDA is present but Triton cannot be imported, or a Triton
kernel fails its first launch on a device (each op and block size is one compilation), one
RuntimeWarning names the cause and that op, and every later one on that device, runs on the next
backend (torch). Only where the backend was forced does the error propagate instead. Arguments are checked here, once, for every
backend; half-precision tensors are computed in float32 and returned in their own dtype.

``fwht`` is the *unnormalised* transform H (entries +-1, Sylvester order), so
``fwht(fwht(x)) == n * x``; H is symmetric, hence its own transpose, and the backward pass of
``y = fwht(x)`` is ``fwht(grad_y)``.
"""

from __future__ import annotations

import importlib
import os
import warnings
from dataclasses import dataclass
from functools import partial
from typing import Any, Callable

import torch

from intrinsic_dim.kernels import native
from intrinsic_dim.kernels.reference import fwht_reference
from intrinsic_dim.kernels.segment import (
    FactorCache,
    Segment,
    make_segment,
    segment_factors,
    segment_forward_torch,
    segment_transpose_torch,
)
from intrinsic_dim.kernels.torch_fwht import fwht_torch, hadamard_matrix

ENV = "INTRINSIC_DIM_KERNEL"
OPS = ("fwht", "segment_forward", "segment_transpose")
FLOATS = (torch.float32, torch.float64)
HALF = (torch.bfloat16, torch.float16)
MAX_LOG2N = 30


@dataclass(frozen=True)
class Backend:
    """One backend: where it runs, its priority, and a loader returning an object with the ops as
    methods (``fwht(x)``, ``segment_forward(seg, z, cache)``, ``segment_transpose(seg, y, d, cache)``)
    and ``accepts(op, x) -> bool``, or None where it is unavailable. Loaded on first use."""

    name: str
    device_types: tuple[str, ...]
    priority: int
    load: Callable[[], Any]
    guard_first_launch: bool = False  # a first launch that raises falls back (JIT-compiled backends)


class _TorchOps:
    """The plain-torch ops, with the FWHT given (Kronecker factors, or the reference butterfly)."""

    def __init__(self, fwht: Callable[[torch.Tensor], torch.Tensor], cached: bool) -> None:
        self.fwht, self._cached = fwht, cached

    def segment_forward(self, seg: Segment, z: torch.Tensor, cache: FactorCache | None) -> torch.Tensor:
        return segment_forward_torch(seg, z, cache if self._cached else None, self.fwht)

    def segment_transpose(self, seg: Segment, y: torch.Tensor, d: int, cache: FactorCache | None) -> torch.Tensor:
        return segment_transpose_torch(seg, y, d, cache if self._cached else None, self.fwht)

    def accepts(self, op: str, x: torch.Tensor) -> bool:
        return x.dtype in FLOATS


class _LibraryOps:
    """A compiled library (the native C one, or the Triton module) whose ops take a segment's fields."""

    def __init__(self, lib: Any, max_fwht_log2n: int) -> None:
        self.lib, self.max_fwht_log2n = lib, max_fwht_log2n

    def fwht(self, x: torch.Tensor) -> torch.Tensor:
        return self.lib.fwht(x)

    def segment_forward(self, seg: Segment, z: torch.Tensor, cache: FactorCache | None) -> torch.Tensor:
        return self.lib.segment_forward(z, seg.seed, seg.block0, seg.nblocks, seg.n, seg.out_len, seg.scale)

    def segment_transpose(self, seg: Segment, y: torch.Tensor, d: int, cache: FactorCache | None) -> torch.Tensor:
        return self.lib.segment_transpose(y, d, seg.seed, seg.block0, seg.nblocks, seg.n, seg.out_len, seg.scale)

    def accepts(self, op: str, x: torch.Tensor) -> bool:
        return x.dtype in FLOATS and (op != "fwht" or x.shape[-1] <= 1 << self.max_fwht_log2n)


def triton_available() -> bool:
    """True where CUDA and Triton are both present."""
    import importlib.util

    return torch.cuda.is_available() and importlib.util.find_spec("triton") is not None


def _load_native() -> _LibraryOps | None:
    lib = native.load()
    return _LibraryOps(lib, native.MAX_LOG2N) if lib is not None else None


def _load_triton() -> _LibraryOps | None:
    """The Triton ops where CUDA exists and Triton imports; else None, with one warning if CUDA exists."""
    if not torch.cuda.is_available():
        return None
    try:  # imports Triton: only here, on first use on CUDA
        tf = importlib.import_module("intrinsic_dim.kernels.triton_fastfood")
    except Exception as e:  # missing or broken install: any import error means no Triton
        warnings.warn(f"intrinsic_dim: Triton is unavailable ({type(e).__name__}: {e}); the CUDA ops run on the "
                      "torch backend", RuntimeWarning, stacklevel=3)
        return None
    return _LibraryOps(tf, tf.MAX_FUSED_LOG2N)


_BACKENDS: dict[str, Backend] = {}
_LOADED: dict[str, Any] = {}


def register(backend: Backend) -> None:
    """Add (or replace) a backend."""
    _BACKENDS[backend.name] = backend
    _LOADED.pop(backend.name, None)


register(Backend("reference", ("cpu", "cuda"), 0, partial(_TorchOps, fwht_reference, False)))
register(Backend("torch", ("cpu", "cuda"), 10, partial(_TorchOps, fwht_torch, True)))
register(Backend("native", ("cpu",), 20, _load_native))
register(Backend("triton", ("cuda",), 20, _load_triton, guard_first_launch=True))

_VERIFIED: set[tuple[str, str, str, int]] = set()  # (backend, device, op, size) launched successfully
_BROKEN: dict[tuple[str, str], str] = {}  # (backend, device) -> why its first launch failed


def _device_key(x: torch.Tensor) -> str:
    """The tensor's device with its index (the current CUDA device where none is given)."""
    if x.device.type == "cuda" and x.device.index is None:
        return f"cuda:{torch.cuda.current_device()}"
    return str(x.device)


def implementation(name: str) -> Any:
    """The loaded implementation of backend ``name`` (loading it on first use), or None."""
    if name not in _LOADED:
        _LOADED[name] = _BACKENDS[name].load()
    return _LOADED[name]


def available_kernels(device_type: str | None = None) -> list[str]:
    """Names of the backends available (for one device type if given), best first; loads them."""
    ks = [b for b in _BACKENDS.values() if device_type is None or device_type in b.device_types]
    return [b.name for b in sorted(ks, key=lambda b: -b.priority) if implementation(b.name) is not None]


def native_available() -> bool:
    """Whether the native CPU backend can run here (builds it on first call)."""
    return implementation("native") is not None


def select(op: str, x: torch.Tensor, kernel: str | None = None) -> Backend:
    """The backend that runs ``op`` on ``x``: the one named (argument, else $INTRINSIC_DIM_KERNEL),
    checked to run it, or the best available that accepts it."""
    forced = kernel or os.environ.get(ENV) or None
    if forced:
        if forced not in _BACKENDS:
            raise ValueError(f"unknown kernel {forced!r} (from {'the argument' if kernel else ENV}); registered: {sorted(_BACKENDS)}")
        b = _BACKENDS[forced]
        impl = implementation(forced)
        if x.device.type not in b.device_types or impl is None or not hasattr(impl, op) or not impl.accepts(op, x):
            raise ValueError(f"kernel {forced!r} cannot run {op} on a {x.dtype} tensor on {x.device.type}")
        return b
    for b in sorted(_BACKENDS.values(), key=lambda b: -b.priority):
        if x.device.type in b.device_types and (b.name, _device_key(x)) not in _BROKEN:
            impl = implementation(b.name)
            if impl is not None and hasattr(impl, op) and impl.accepts(op, x):
                return b
    raise ValueError(f"no kernel runs {op} on a {x.dtype} tensor on {x.device.type}")


def _check_segment(seg: Segment, d: int, y: torch.Tensor | None = None) -> None:
    if seg.n <= 0 or seg.n & (seg.n - 1) or seg.n > 1 << MAX_LOG2N:
        raise ValueError(f"a segment's block size must be a power-of-two length <= 2**{MAX_LOG2N}, got {seg.n}")
    if not 0 < d <= seg.n or not 0 < seg.out_len <= seg.nblocks * seg.n:
        raise ValueError(f"need 0 < d <= n and 0 < out_len <= nblocks * n, got d={d}, n={seg.n}, out_len={seg.out_len}")
    if y is not None and y.shape != (seg.out_len,):
        raise ValueError(f"the segment transpose needs y of shape ({seg.out_len},), got {tuple(y.shape)}")


def _run(op: str, x: torch.Tensor, kernel: str | None, call: Callable[[Any, torch.Tensor], torch.Tensor], size: int) -> torch.Tensor:
    """``call(implementation, x)`` on the backend chosen for ``op`` on x; half precision via float32.
    The first launch of a guarded backend for (device, op, size) falls back on failure (module doc)."""
    if x.dtype in HALF:
        return _run(op, x.float(), kernel, call, size).to(x.dtype)
    if not x.is_floating_point():
        raise TypeError(f"{op} needs a floating-point tensor, got {x.dtype}")
    b = select(op, x, kernel)
    impl, x = implementation(b.name), x.contiguous()
    key = (b.name, _device_key(x), op, size)
    if not b.guard_first_launch or kernel or os.environ.get(ENV) or key in _VERIFIED:
        return call(impl, x)
    try:
        out = call(impl, x)
        if x.is_cuda:
            torch.cuda.synchronize(x.device)  # an asynchronous launch error surfaces here, once
    except Exception as e:  # a compile or launch failure of any kind: fall back, never strand the user
        _BROKEN[key[:2]] = f"{type(e).__name__}: {e}"
        warnings.warn(f"intrinsic_dim: the {b.name} kernels failed their first launch of {op} on {key[1]} "
                      f"({_BROKEN[key[:2]]}); that device's ops run on the next backend from now on",
                      RuntimeWarning, stacklevel=3)
        return _run(op, x, kernel, call, size)
    _VERIFIED.add(key)
    return out


def segment_forward(seg: Segment, z: torch.Tensor, cache: FactorCache | None = None, kernel: str | None = None) -> torch.Tensor:
    """scale * [H G_b Pi_b H B_b pad(z)] over the segment's blocks, cut to out_len (not differentiable)."""
    if z.dim() != 1:
        raise ValueError(f"the segment forward needs a vector z, got shape {tuple(z.shape)}")
    _check_segment(seg, z.shape[0])
    return _run("segment_forward", z, kernel, lambda impl, v: impl.segment_forward(seg, v, cache), seg.n)


def segment_transpose(seg: Segment, y: torch.Tensor, d: int, cache: FactorCache | None = None, kernel: str | None = None) -> torch.Tensor:
    """The transpose of :func:`segment_forward`: (out_len,) -> (d,) (not differentiable)."""
    _check_segment(seg, d, y)
    return _run("segment_transpose", y, kernel, lambda impl, v: impl.segment_transpose(seg, v, d, cache), seg.n)


class _FWHT(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, kernel: str | None) -> torch.Tensor:  # type: ignore[override]
        ctx.kernel = kernel
        return _run("fwht", x, kernel, lambda impl, v: impl.fwht(v), x.shape[-1])

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        return _FWHT.apply(grad, ctx.kernel), None


def fwht(x: torch.Tensor, kernel: str | None = None) -> torch.Tensor:
    """Unnormalised Walsh-Hadamard transform over the last dimension (power-of-two length), differentiable."""
    n = x.shape[-1] if x.dim() else 0
    if n <= 0 or n & (n - 1) or n > 1 << MAX_LOG2N:
        raise ValueError(f"fwht needs a power-of-two last dimension <= 2**{MAX_LOG2N}, got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"fwht needs a floating-point tensor, got {x.dtype}")
    return _FWHT.apply(x, kernel)


__all__ = [
    "Backend", "ENV", "FactorCache", "Segment", "available_kernels", "fwht", "fwht_reference", "fwht_torch",
    "hadamard_matrix", "implementation", "make_segment", "native", "native_available", "register", "segment_factors",
    "segment_forward", "segment_forward_torch", "segment_transpose", "segment_transpose_torch", "select",
]
