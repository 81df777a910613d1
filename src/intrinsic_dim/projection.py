"""Random linear maps P: R^d -> R^D with an exact transpose: dense, sparse and Fastfood.

``P(z)`` returns a (D,) tensor and ``P.T(y)`` a (d,) tensor; both are differentiable, and the
backward pass of each is the other, so gradients are exact adjoints. All randomness comes from
:mod:`intrinsic_dim.rng` (counter-based), so a (kind, d, D, seed, layout) tuple is the same map on
every machine, device and thread count.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Any, Sequence

import torch

from intrinsic_dim import fastfood, rng

KINDS = ("dense", "sparse", "fastfood")
LAYOUTS = ("stacked", "per_tensor")
DEFAULT_MAX_DENSE_ELEMENTS = 1 << 27


class _Linear(torch.autograd.Function):
    """y = P x (or P^T x); the gradient is the adjoint map applied to the incoming gradient."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, proj: "Projection", transpose: bool) -> torch.Tensor:  # type: ignore[override]
        ctx.proj, ctx.transpose = proj, transpose
        return proj._transpose(x) if transpose else proj._forward(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        return _Linear.apply(grad.contiguous(), ctx.proj, not ctx.transpose), None, None


class Projection(ABC):
    """A fixed random linear map from the d-dimensional subspace to the D model parameters."""

    kind: str = ""

    def __init__(self, d: int, D: int, seed: int) -> None:
        if not isinstance(d, int) or d < 1:
            raise ValueError(f"d must be a positive integer, got {d!r}")
        if not isinstance(D, int) or D < 1:
            raise ValueError(f"D must be a positive integer, got {D!r}")
        if d > D:
            raise ValueError(
                f"d = {d} exceeds D = {D}, the number of projected parameters: choose d <= D "
                "(a subspace as large as the model is plain fine-tuning)"
            )
        if not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        self.d, self.D, self.seed = d, D, seed

    def __call__(self, z: torch.Tensor) -> torch.Tensor:
        """P(z): (d,) -> (D,), differentiable."""
        if z.shape != (self.d,):
            raise ValueError(f"{self.kind} projection expects z of shape ({self.d},), got {tuple(z.shape)}")
        return _Linear.apply(z, self, False)

    def T(self, y: torch.Tensor) -> torch.Tensor:
        """P^T(y): (D,) -> (d,), differentiable."""
        if y.shape != (self.D,):
            raise ValueError(f"{self.kind} projection transpose expects y of shape ({self.D},), got {tuple(y.shape)}")
        return _Linear.apply(y, self, True)

    @abstractmethod
    def _forward(self, z: torch.Tensor) -> torch.Tensor: ...

    @abstractmethod
    def _transpose(self, y: torch.Tensor) -> torch.Tensor: ...

    def config(self) -> dict[str, Any]:
        """What identifies this map: enough to rebuild it with :func:`make_projection`."""
        return {"kind": self.kind, "d": self.d, "D": self.D, "seed": self.seed}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items() if k != "sizes")
        return f"{type(self).__name__}({args})"


class _StoredMatrix(Projection):
    """A projection whose matrix is materialised once (on CPU) and copied to each device used."""

    def __init__(self, d: int, D: int, seed: int) -> None:
        super().__init__(d, D, seed)
        self._per_device: dict[tuple[str, torch.dtype], Any] = {}

    def _on(self, device: torch.device, dtype: torch.dtype):
        k = (str(device), dtype)
        if k not in self._per_device:
            self._per_device[k] = self._materialise(device, dtype)
        return self._per_device[k]

    @abstractmethod
    def _materialise(self, device: torch.device, dtype: torch.dtype) -> Any: ...


class DenseProjection(_StoredMatrix):
    """Gaussian D x d matrix with columns normalised to exactly unit length."""

    kind = "dense"

    def __init__(self, d: int, D: int, seed: int, max_elements: int = DEFAULT_MAX_DENSE_ELEMENTS) -> None:
        super().__init__(d, D, seed)
        if d * D > max_elements:
            raise ValueError(
                f"a dense projection with d = {d} and D = {D} needs {d * D * 4 / 2**30:.1f} GiB; "
                f"use projection='fastfood' (or 'sparse'), or raise max_elements above {max_elements}"
            )

    def _materialise(self, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        keys = rng.block_keys(self.seed, rng.STREAM_DENSE, torch.arange(self.d))[None, :]
        rows = max(1, (1 << 22) // self.d)
        m = torch.cat(
            [rng.gaussian(keys, torch.arange(r, min(r + rows, self.D))[:, None], torch.float64) for r in range(0, self.D, rows)]
        )
        return (m / m.norm(dim=0, keepdim=True)).to(device=device, dtype=dtype)

    def _forward(self, z: torch.Tensor) -> torch.Tensor:
        return self._on(z.device, z.dtype) @ z

    def _transpose(self, y: torch.Tensor) -> torch.Tensor:
        return self._on(y.device, y.dtype).T @ y


class SparseProjection(_StoredMatrix):
    """Li et al.'s very sparse projection: round(sqrt(D)) random +-1 entries per column (density
    about 1/sqrt(D); repeated positions are summed), columns normalised to exactly unit length."""

    kind = "sparse"

    def __init__(self, d: int, D: int, seed: int) -> None:
        super().__init__(d, D, seed)
        if D >= 1 << 31:
            raise ValueError(f"the sparse projection supports D < 2**31, got {D}; use projection='fastfood'")

    def _materialise(self, device: torch.device, dtype: torch.dtype):
        k = max(1, round(math.sqrt(self.D)))
        cols = torch.arange(self.d)
        pos = torch.arange(k)[None, :]
        rows = rng.uniform_int(rng.block_keys(self.seed, rng.STREAM_SPARSE_POS, cols)[:, None], pos, self.D)
        vals = rng.signs(rng.block_keys(self.seed, rng.STREAM_SPARSE_SIGN, cols)[:, None], pos, torch.float64)
        idx = torch.stack((rows.reshape(-1), cols[:, None].expand(-1, k).reshape(-1)))
        m = torch.sparse_coo_tensor(idx, vals.reshape(-1), (self.D, self.d), check_invariants=False).coalesce()
        (r, c), v = m.indices(), m.values()
        norm2 = torch.zeros(self.d, dtype=torch.float64).index_add_(0, c, v * v)
        v = v / norm2.sqrt()[c]
        keep = v != 0
        return r[keep].to(device), c[keep].to(device), v[keep].to(device=device, dtype=dtype)

    def _forward(self, z: torch.Tensor) -> torch.Tensor:
        r, c, v = self._on(z.device, z.dtype)
        return torch.zeros(self.D, dtype=z.dtype, device=z.device).index_add_(0, r, v * z[c])

    def _transpose(self, y: torch.Tensor) -> torch.Tensor:
        r, c, v = self._on(y.device, y.dtype)
        return torch.zeros(self.d, dtype=y.dtype, device=y.device).index_add_(0, c, v * y[r])


def _pow2_at_least(x: int) -> int:
    return 1 << max(0, (x - 1).bit_length())


class FastfoodProjection(Projection):
    """Fastfood: blocks y_b = scale * H G_b Pi_b H B_b pad(z), O(D log d) time, O(1) stored factors.

    ``layout="stacked"``: blocks of size 2**ceil(log2 d) stacked over all D outputs, one normaliser
    making every column unit length (exactly when D is a multiple of the block size, in expectation
    otherwise). ``layout="per_tensor"``: as the released code of Aghajanyan et al., one block of size
    2**ceil(log2 max(D_i, d)) per tensor, cut to D_i and normalised per tensor, so each tensor's part
    of a column has unit length in expectation (a whole column about sqrt(#tensors)).
    """

    kind = "fastfood"

    def __init__(self, d: int, D: int, seed: int, layout: str = "stacked", sizes: Sequence[int] | None = None) -> None:
        super().__init__(d, D, seed)
        if layout not in LAYOUTS:
            raise ValueError(f"unknown Fastfood layout {layout!r}; choose one of {LAYOUTS}")
        self.layout = layout
        if layout == "stacked":
            self.sizes = [D]
            self.segments = [fastfood.make_segment(seed, 0, _pow2_at_least(d), D)]
        else:
            if sizes is None or sum(sizes) != D or any(s < 1 for s in sizes):
                raise ValueError("the per_tensor layout needs sizes: positive tensor sizes that sum to D")
            self.sizes = [int(s) for s in sizes]
            self.segments = [
                fastfood.make_segment(seed, i, _pow2_at_least(max(s, d)), s) for i, s in enumerate(self.sizes)
            ]

    def _forward(self, z: torch.Tensor) -> torch.Tensor:
        parts = [fastfood.segment_forward(s, z) for s in self.segments]
        return parts[0] if len(parts) == 1 else torch.cat(parts)

    def _transpose(self, y: torch.Tensor) -> torch.Tensor:
        out = None
        for seg, part in zip(self.segments, y.split(self.sizes)):
            t = fastfood.segment_transpose(seg, part.contiguous(), self.d)
            out = t if out is None else out + t
        return out

    def config(self) -> dict[str, Any]:
        cfg = super().config() | {"layout": self.layout}
        if self.layout == "per_tensor":
            cfg["sizes"] = self.sizes
        return cfg


def make_projection(
    kind: str,
    d: int,
    D: int,
    seed: int = 0,
    *,
    layout: str = "stacked",
    sizes: Sequence[int] | None = None,
    max_dense_elements: int = DEFAULT_MAX_DENSE_ELEMENTS,
) -> Projection:
    """Build the projection ``kind`` ('dense', 'sparse' or 'fastfood') from R^d to R^D.

    ``layout`` and ``sizes`` apply to Fastfood only (``sizes``: the tensor sizes, for 'per_tensor').
    """
    if kind == "fastfood":
        return FastfoodProjection(d, D, seed, layout=layout, sizes=sizes)
    if layout != "stacked":
        raise ValueError(f"layout {layout!r} applies to the fastfood projection only, not {kind!r}")
    if kind == "dense":
        return DenseProjection(d, D, seed, max_elements=max_dense_elements)
    if kind == "sparse":
        return SparseProjection(d, D, seed)
    raise ValueError(f"unknown projection {kind!r}; choose one of {KINDS}")
