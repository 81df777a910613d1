"""Kernel registry and the differentiable ``fwht`` entry point."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable

import torch

from intrinsic_dim.hadamard.reference import fwht_reference
from intrinsic_dim.hadamard.torch_fwht import fwht_torch

KernelFn = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Kernel:
    """One FWHT implementation: ``fn(x)`` returns a new tensor; ``accepts(x)`` says if it can run x."""

    name: str
    device_type: str
    fn: KernelFn
    priority: int
    accepts: Callable[[torch.Tensor], bool]


_REGISTRY: dict[str, Kernel] = {}


def register_kernel(
    name: str,
    device_type: str,
    fn: KernelFn,
    priority: int,
    accepts: Callable[[torch.Tensor], bool] = lambda x: True,
) -> None:
    """Add (or replace) a kernel; higher priority wins among those that accept the tensor."""
    _REGISTRY[name] = Kernel(name, device_type, fn, priority, accepts)


def available_kernels(device_type: str | None = None) -> list[str]:
    """Names of the registered kernels (for one device type if given), best first."""
    ks = [k for k in _REGISTRY.values() if device_type is None or k.device_type in ("any", device_type)]
    return [k.name for k in sorted(ks, key=lambda k: -k.priority)]


def fwht_kernel(x: torch.Tensor, kernel: str | None = None) -> Kernel:
    """The kernel ``fwht`` would use for ``x`` (or the one named, checked to accept x)."""
    forced = kernel or os.environ.get("INTRINSIC_DIM_KERNEL") or None
    if forced:
        if forced not in _REGISTRY:
            raise ValueError(f"unknown FWHT kernel {forced!r}; registered: {sorted(_REGISTRY)}")
        k = _REGISTRY[forced]
        if k.device_type not in ("any", x.device.type) or not k.accepts(x):
            raise ValueError(f"FWHT kernel {forced!r} cannot run a {x.dtype} tensor on {x.device.type}")
        return k
    candidates = [
        k for k in _REGISTRY.values() if k.device_type in ("any", x.device.type) and k.accepts(x)
    ]
    return max(candidates, key=lambda k: k.priority)


class _FWHT(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, kernel: str | None) -> torch.Tensor:  # type: ignore[override]
        ctx.kernel = kernel
        return fwht_kernel(x, kernel).fn(x.contiguous())

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        return _FWHT.apply(grad, ctx.kernel), None


def fwht(x: torch.Tensor, kernel: str | None = None) -> torch.Tensor:
    """Unnormalised Walsh-Hadamard transform over the last dimension (power-of-two length)."""
    n = x.shape[-1] if x.dim() else 0
    if n <= 0 or n & (n - 1):
        raise ValueError(f"fwht needs a power-of-two last dimension, got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"fwht needs a floating-point tensor, got {x.dtype}")
    return _FWHT.apply(x, kernel)


register_kernel("reference", "any", fwht_reference, priority=0)
register_kernel("torch", "any", fwht_torch, priority=10)
