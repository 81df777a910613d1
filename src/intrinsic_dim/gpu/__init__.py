"""GPU kernels (Triton): the FWHT and the fused Fastfood segment, factors regenerated in-kernel.

Triton is imported only when a kernel first runs, so ``import intrinsic_dim`` stays light; the
kernels register for device type "cuda" only where CUDA and Triton are both present.
"""

from __future__ import annotations

import importlib.util

import torch


def available() -> bool:
    """True where CUDA and Triton are both present."""
    return torch.cuda.is_available() and importlib.util.find_spec("triton") is not None


def _fwht(x: torch.Tensor) -> torch.Tensor:
    from intrinsic_dim.gpu import triton_fastfood

    return triton_fastfood.fwht(x)


def _accepts(x: torch.Tensor) -> bool:
    from intrinsic_dim.gpu.triton_fastfood import MAX_FUSED_LOG2N

    return x.device.type == "cuda" and x.shape[-1] <= 1 << MAX_FUSED_LOG2N


def register_fwht() -> None:
    """Register the Triton FWHT (rows up to 2**MAX_FUSED_LOG2N) with the dispatcher, where it can run."""
    if available():
        from intrinsic_dim.hadamard.dispatch import register_kernel

        register_kernel("triton", "cuda", _fwht, priority=20, accepts=_accepts)
