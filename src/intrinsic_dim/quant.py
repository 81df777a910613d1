"""Weight-only int8 base weights: symmetric per-output-channel quantisation and its just-in-time dequantisation.

A tensor of two or more dimensions W (rows = output channels, dimension 0) is stored as int8 codes
q = clamp(round(W / s), -127, 127) with one scale per row, s = max|W_row| / 127 rounded to W's dtype (1
where a row is zero). Its dequantised value is q * s, computed in W's dtype: that is the base a
subspace fine-tune of a quantised model starts from, and z = 0 gives it back exactly. One byte a
number instead of two (bf16) or four (float32): the subspace analogue of QLoRA's frozen 4-bit base.
"""

from __future__ import annotations

import torch

QUANTS = ("int8",)
"""The base-weight quantisations a SubspaceModel can apply to its projected tensors."""
INT8_MAX = 127
_CHUNK = 1 << 22
"""Numbers quantised at a time: the float32 temporaries stay at a few MiB however large the tensor."""


def quantizable(t: torch.Tensor) -> bool:
    """Whether ``t`` is quantised: floating point with at least two dimensions (weight matrices, embeddings,
    convolution kernels; biases and norms stay in their dtype)."""
    return t.is_floating_point() and t.dim() >= 2 and t.numel() > 0


def quantize_int8(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(q, scale): the int8 codes of ``w`` (its shape) and one scale per row (dimension 0) in ``w``'s dtype."""
    if not quantizable(w):
        raise ValueError(f"int8 quantisation needs a floating-point tensor of two or more dimensions, got {w.dtype} {tuple(w.shape)}")
    rows = w.detach().reshape(w.shape[0], -1)
    step = max(1, _CHUNK // rows.shape[1])
    chunks = range(0, rows.shape[0], step)
    amax = torch.cat([rows[i:i + step].abs().amax(dim=1) for i in chunks]).float()  # |w| and max are exact in w's dtype
    scale = (amax / INT8_MAX).to(w.dtype)
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    q = torch.empty(rows.shape, dtype=torch.int8, device=w.device)
    for i in chunks:
        x = rows[i:i + step].to(torch.float32, copy=True)  # a copy even for float32 weights: divided in place
        q[i:i + step] = x.div_(scale[i:i + step].float().unsqueeze(1)).round_().clamp_(-INT8_MAX, INT8_MAX)
    return q.view(w.shape), scale


def dequantize(q: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """q * scale (per row) as a new tensor in the scale's dtype."""
    return q.to(scale.dtype).mul_(scale.view(-1, *([1] * (q.dim() - 1))))


def dequantize_range(q: torch.Tensor, scale: torch.Tensor, a: int, b: int) -> torch.Tensor:
    """The flat values [a, b) of :func:`dequantize`, computed from the rows they fall in only."""
    cols = q[0].numel()
    first, last = a // cols, -(-b // cols)
    return dequantize(q[first:last], scale[first:last]).view(-1)[a - first * cols : b - first * cols]
