"""One projected tensor's effective weight theta0_i + s * P_i(z) and the transpose P_i^T of its gradient, computed
without a tensor-sized float32 temporary where the weight is half precision.

P_i(z) is float32 (z's dtype). For a float32 weight it is computed whole and the base added in place: one
tensor-sized buffer, as it always was. For a bfloat16 / float16 weight a whole float32 P_i(z) (and a float32
copy of the weight's gradient in the backward pass) would be two weights' worth of memory each, so both are done
a piece at a time (:meth:`~intrinsic_dim.projection.Projection.pieces`: runs of whole Fastfood blocks), each
piece rounded to the weight's dtype exactly as the whole would be: the weight is bit-identical either way, and
the transpose is the same sum taken in another order.
"""

from __future__ import annotations

from typing import Callable

import torch

from intrinsic_dim.projection import Projection

HALF = (torch.bfloat16, torch.float16)
Base = Callable[[int, int], torch.Tensor]
"""base(a, b): the flat values [a, b) of theta0_i in the weight's dtype (dequantised where the base is quantised)."""


def spans(proj: Projection, i: int, dtype: torch.dtype) -> list[tuple[int, int]]:
    """The ranges of part i computed on their own: pieces for a half-precision weight, else the whole part."""
    return proj.pieces(i) if dtype in HALF else [(0, proj.sizes[i])]


def weight(proj: Projection, i: int, z: torch.Tensor, scale: torch.Tensor | None, base: Base, shape: torch.Size,
           dtype: torch.dtype) -> torch.Tensor:
    """theta0_i + scale * P_i(z) in ``dtype`` and ``shape`` (no autograd): P_i(z) scaled in z's dtype, rounded to
    ``dtype``, then the base added, piece by piece for half precision."""

    def finish(part: torch.Tensor, a: int, b: int) -> torch.Tensor:
        if scale is not None:
            part.mul_(scale)
        return part.to(dtype).add_(base(a, b))  # in place on the fresh P_i(z) where dtype is z's

    parts = spans(proj, i, dtype)
    if len(parts) == 1:
        return finish(proj.forward_part(z, i), 0, proj.sizes[i]).view(shape)
    out = torch.empty(proj.sizes[i], dtype=dtype, device=z.device)
    for a, b in parts:
        out[a:b] = finish(proj.forward_piece(z, i, a, b), a, b)
    return out.view(shape)


def transpose(proj: Projection, i: int, grad: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """P_i^T(grad) in ``dtype`` (z's), converting the gradient a piece at a time where it is half precision."""
    g = grad.reshape(-1)
    total = None
    for a, b in spans(proj, i, grad.dtype):
        t = proj.transpose_piece(g[a:b].to(dtype), i, a, b)
        total = t if total is None else total.add_(t)
    return total
