"""Fast Walsh-Hadamard transform over the last dimension, differentiable, with kernel dispatch.

Convention: ``fwht`` is the *unnormalised* transform H (entries +-1, Sylvester order), so
``fwht(fwht(x)) == n * x``. H is symmetric, hence its own transpose: the backward pass of
``y = fwht(x)`` is ``grad_x = fwht(grad_y)``.

Kernels register per device type; ``fwht`` uses the highest-priority registered kernel that
accepts the tensor (``INTRINSIC_DIM_KERNEL=torch`` forces the pure-torch path everywhere).
Importing this package loads (building if needed) the native CPU kernel and registers it as "native",
and registers the Triton kernel as "triton" where CUDA and Triton exist.
"""

from __future__ import annotations

from intrinsic_dim.gpu import register_fwht
from intrinsic_dim.hadamard import native
from intrinsic_dim.hadamard.dispatch import available_kernels, fwht, fwht_kernel, register_kernel
from intrinsic_dim.hadamard.native import fwht_native, fwht_native_
from intrinsic_dim.hadamard.reference import fwht_reference
from intrinsic_dim.hadamard.torch_fwht import fwht_torch, hadamard_matrix

register_fwht()

__all__ = [
    "available_kernels",
    "fwht",
    "fwht_kernel",
    "fwht_native",
    "fwht_native_",
    "fwht_reference",
    "fwht_torch",
    "hadamard_matrix",
    "native",
    "register_kernel",
]
