"""Random linear maps P: R^d -> R^D with an exact transpose: dense, sparse and Fastfood.

``P(z)`` returns a (D,) tensor and ``P.T(y)`` a (d,) tensor; both are differentiable, and the
backward pass of each is the other, so gradients are exact adjoints. A projection built with the
tensor ``sizes`` also maps to one part (tensor) at a time: ``forward_part(z, i)`` is
``P(z)[o_i : o_i + D_i]`` bit for bit and ``transpose_part(y_i, i)`` its transpose, at O(D_i) memory
(docs/memory.md: how SubspaceModel uses them). All randomness comes from
:mod:`intrinsic_dim.rng` (counter-based), so a (kind, d, D, seed, layout) tuple is the same map on
every machine, device and thread count.
"""

from __future__ import annotations

import dataclasses
import math
from abc import ABC, abstractmethod
from typing import Any, Sequence

import torch

from intrinsic_dim import kernels, rng

KINDS = ("dense", "sparse", "fastfood")
LAYOUTS = ("stacked", "per_tensor")
NORMALISATIONS = ("released", "unit")
DEFAULT_MAX_DENSE_ELEMENTS = 1 << 27
PIECE_ELEMS = 1 << 22
"""Outputs of one piece of a part (Fastfood's stacked layout: a run of whole blocks), see :meth:`Projection.pieces`."""


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

    def __init__(self, d: int, D: int, seed: int, sizes: Sequence[int] | None = None) -> None:
        if not isinstance(d, int) or d < 1:
            raise ValueError(f"d must be a positive integer, got {d!r}")
        if not isinstance(D, int) or D < 1:
            raise ValueError(f"D must be a positive integer, got {D!r}")
        if d > D:
            raise ValueError(
                f"d = {d} exceeds D = {D}, the number of projected parameters: choose d <= D "
                "(a subspace as large as the model is plain fine-tuning)"
            )
        if not isinstance(seed, int) or not 0 <= seed <= rng.MASK64:
            raise ValueError(f"seed must be an integer from 0 to 2**64 - 1 (larger ones would alias smaller ones), got {seed!r}")
        if sizes is not None and (sum(sizes) != D or any(s < 1 for s in sizes)):
            raise ValueError(f"sizes must be positive tensor sizes that sum to D = {D}")
        self.d, self.D, self.seed = d, D, seed
        self.sizes = [int(s) for s in sizes] if sizes is not None else [D]
        self.offsets = [0]
        for size in self.sizes[:-1]:
            self.offsets.append(self.offsets[-1] + size)

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

    def forward_part(self, z: torch.Tensor, i: int) -> torch.Tensor:
        """P(z)[o_i : o_i + D_i], bit-identical to the slice of :meth:`__call__` (no autograd)."""
        return self._forward(z)[self.offsets[i] : self.offsets[i] + self.sizes[i]]

    @abstractmethod
    def transpose_part(self, y: torch.Tensor, i: int) -> torch.Tensor:
        """P^T applied to y placed in part i (zeros elsewhere): (D_i,) -> (d,), at O(D_i) memory (no autograd)."""

    def pieces(self, i: int) -> list[tuple[int, int]]:
        """Ranges [a, b) covering part i that :meth:`forward_piece` and :meth:`transpose_piece` compute on their own,
        so that a caller needs no part-sized temporary: the whole part, unless the map has cheaper pieces."""
        return [(0, self.sizes[i])]

    def forward_piece(self, z: torch.Tensor, i: int, a: int, b: int) -> torch.Tensor:
        """P(z)[o_i + a : o_i + b], bit-identical to that slice of :meth:`forward_part` (no autograd)."""
        return self.forward_part(z, i)[a:b]

    def transpose_piece(self, y: torch.Tensor, i: int, a: int, b: int) -> torch.Tensor:
        """P^T applied to y placed at [a, b) of part i (zeros elsewhere): (b - a,) -> (d,) (no autograd)."""
        if (a, b) == (0, self.sizes[i]):
            return self.transpose_part(y, i)
        return self.transpose_part(torch.nn.functional.pad(y, (a, self.sizes[i] - b)), i)

    def config(self) -> dict[str, Any]:
        """What identifies this map: enough to rebuild it with :func:`make_projection`."""
        return {"kind": self.kind, "d": self.d, "D": self.D, "seed": self.seed}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items() if k != "sizes")
        return f"{type(self).__name__}({args})"


class _StoredMatrix(Projection):
    """A projection whose matrix is materialised once (on CPU) and copied to each device used."""

    def __init__(self, d: int, D: int, seed: int, sizes: Sequence[int] | None = None) -> None:
        super().__init__(d, D, seed, sizes)
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

    def __init__(
        self, d: int, D: int, seed: int, sizes: Sequence[int] | None = None, max_elements: int = DEFAULT_MAX_DENSE_ELEMENTS
    ) -> None:
        super().__init__(d, D, seed, sizes)
        if d * D > max_elements:
            raise ValueError(
                f"a dense projection with d = {d} and D = {D} has d * D = {d * D:,} entries "
                f"({d * D * 4 / 2**30:.1f} GiB in float32), above dense_max_elements = {max_elements:,}; "
                "use projection='fastfood' (or 'sparse'), or raise dense_max_elements "
                "(SubspaceConfig.dense_max_elements, --dense-max-elements)"
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

    # forward_part stays the slice of the whole product: a matrix-vector product over fewer rows may
    # round differently, and the stored D x d matrix dwarfs the transient (D,) vector anyway.

    def transpose_part(self, y: torch.Tensor, i: int) -> torch.Tensor:
        o = self.offsets[i]
        return self._on(y.device, y.dtype)[o : o + self.sizes[i]].T @ y


class SparseProjection(_StoredMatrix):
    """Li et al.'s very sparse projection: round(sqrt(D)) random +-1 entries per column (density
    about 1/sqrt(D); repeated positions are summed), columns normalised to exactly unit length."""

    kind = "sparse"

    def __init__(self, d: int, D: int, seed: int, sizes: Sequence[int] | None = None) -> None:
        super().__init__(d, D, seed, sizes)
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
        r, c, v = r[keep], c[keep], v[keep]  # sorted by row: part i's entries are one run
        bounds = torch.searchsorted(r, torch.tensor(self.offsets + [self.D])).tolist()
        return r.to(device), c.to(device), v.to(device=device, dtype=dtype), bounds

    def _forward(self, z: torch.Tensor) -> torch.Tensor:
        r, c, v, _ = self._on(z.device, z.dtype)
        return torch.zeros(self.D, dtype=z.dtype, device=z.device).index_add_(0, r, v * z[c])

    def _transpose(self, y: torch.Tensor) -> torch.Tensor:
        r, c, v, _ = self._on(y.device, y.dtype)
        return torch.zeros(self.d, dtype=y.dtype, device=y.device).index_add_(0, c, v * y[r])

    def _part_entries(self, x: torch.Tensor, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        r, c, v, bounds = self._on(x.device, x.dtype)
        a, b = bounds[i], bounds[i + 1]
        return r[a:b] - self.offsets[i], c[a:b], v[a:b]

    def forward_part(self, z: torch.Tensor, i: int) -> torch.Tensor:
        r, c, v = self._part_entries(z, i)
        return torch.zeros(self.sizes[i], dtype=z.dtype, device=z.device).index_add_(0, r, v * z[c])

    def transpose_part(self, y: torch.Tensor, i: int) -> torch.Tensor:
        r, c, v = self._part_entries(y, i)
        return torch.zeros(self.d, dtype=y.dtype, device=y.device).index_add_(0, c, v * y[r])


def _pow2_at_least(x: int) -> int:
    return 1 << max(0, (x - 1).bit_length())


class FastfoodProjection(Projection):
    """Fastfood: blocks y_b = scale * H G_b Pi_b H B_b pad(z), O(D log d) time, O(1) stored factors.

    ``layout="stacked"``: blocks of size 2**ceil(log2 d) stacked over all D outputs, one normaliser
    making every column unit length (exactly when D is a multiple of the block size, in expectation
    otherwise). ``layout="per_tensor"``: as the released code of Aghajanyan et al., one block of size
    2**ceil(log2 max(D_i, d)) per tensor, cut to D_i and normalised per tensor, so each tensor's part
    of a column has unit length in expectation: a whole column about sqrt(#tensors) with
    ``normalisation="released"``, 1 with ``"unit"`` (every segment's scale divided by
    sqrt(#tensors)). The stacked layout's columns are unit length under either normalisation.
    The pure-torch path's factors are cached on the projection and freed with it.
    """

    kind = "fastfood"

    def __init__(
        self,
        d: int,
        D: int,
        seed: int,
        layout: str = "stacked",
        sizes: Sequence[int] | None = None,
        normalisation: str = "released",
    ) -> None:
        if layout not in LAYOUTS:
            raise ValueError(f"unknown Fastfood layout {layout!r}; choose one of {LAYOUTS}")
        if normalisation not in NORMALISATIONS:
            raise ValueError(f"unknown normalisation {normalisation!r}; choose one of {NORMALISATIONS}")
        if layout == "per_tensor" and sizes is None:
            raise ValueError("the per_tensor layout needs sizes: positive tensor sizes that sum to D")
        super().__init__(d, D, seed, sizes)
        self.layout, self.normalisation = layout, normalisation
        self.factors: dict = {}  # the pure-torch path's factor cache, owned by (and freed with) this projection
        if layout == "stacked":
            self.segments = [kernels.make_segment(seed, 0, _pow2_at_least(d), D)]
        else:
            shrink = 1.0 if normalisation == "released" else 1.0 / math.sqrt(len(self.sizes))
            self.segments = [
                kernels.make_segment(seed, i, _pow2_at_least(max(s, d)), s, shrink) for i, s in enumerate(self.sizes)
            ]

    def _stacked_part(self, offset: int, size: int) -> tuple[kernels.Segment, int]:
        """The run of the stacked segment's blocks that covers [offset, offset + size), and where
        the part starts in it."""
        whole = self.segments[0]
        first, last = offset // whole.n, (offset + size - 1) // whole.n
        sub = dataclasses.replace(whole, block0=first, nblocks=last - first + 1, out_len=offset + size - first * whole.n)
        return sub, offset - first * whole.n

    def _forward(self, z: torch.Tensor) -> torch.Tensor:
        parts = [kernels.segment_forward(s, z, self.factors) for s in self.segments]
        return parts[0] if len(parts) == 1 else torch.cat(parts)

    def _transpose(self, y: torch.Tensor) -> torch.Tensor:
        out = None
        for seg, part in zip(self.segments, y.split([s.out_len for s in self.segments])):
            t = kernels.segment_transpose(seg, part.contiguous(), self.d, self.factors)
            out = t if out is None else out + t
        return out

    def _piece(self, i: int, a: int, b: int) -> tuple[kernels.Segment, int] | None:
        """The segment computing [a, b) of part i and where the piece starts in it (None: no segment does, alone)."""
        if self.layout == "stacked":
            return self._stacked_part(self.offsets[i] + a, b - a)
        return (self.segments[i], 0) if (a, b) == (0, self.sizes[i]) else None

    def pieces(self, i: int) -> list[tuple[int, int]]:
        """Stacked layout: runs of whole blocks of about PIECE_ELEMS outputs (the first one up to a piece boundary)."""
        if self.layout != "stacked":
            return super().pieces(i)
        o, size = self.offsets[i], self.sizes[i]
        step = max(1, PIECE_ELEMS // self.segments[0].n) * self.segments[0].n
        bounds = [o, *range((o // step + 1) * step, o + size, step), o + size]
        return [(lo - o, hi - o) for lo, hi in zip(bounds, bounds[1:])]

    def forward_part(self, z: torch.Tensor, i: int) -> torch.Tensor:
        return self.forward_piece(z, i, 0, self.sizes[i])

    def transpose_part(self, y: torch.Tensor, i: int) -> torch.Tensor:
        return self.transpose_piece(y, i, 0, self.sizes[i])

    def forward_piece(self, z: torch.Tensor, i: int, a: int, b: int) -> torch.Tensor:
        piece = self._piece(i, a, b)
        if piece is None:
            return super().forward_piece(z, i, a, b)
        out = kernels.segment_forward(piece[0], z, self.factors)
        return out[piece[1]:] if piece[1] else out

    def transpose_piece(self, y: torch.Tensor, i: int, a: int, b: int) -> torch.Tensor:
        piece = self._piece(i, a, b)
        if piece is None:
            return super().transpose_piece(y, i, a, b)
        y = torch.nn.functional.pad(y, (piece[1], 0)) if piece[1] else y.contiguous()
        return kernels.segment_transpose(piece[0], y, self.d, self.factors)

    def config(self) -> dict[str, Any]:
        cfg = super().config() | {"layout": self.layout}
        if self.layout == "per_tensor":
            cfg["sizes"] = self.sizes
            if self.normalisation != "released":
                cfg["normalisation"] = self.normalisation
        return cfg


def make_projection(
    kind: str,
    d: int,
    D: int,
    seed: int = 0,
    *,
    layout: str = "stacked",
    sizes: Sequence[int] | None = None,
    normalisation: str = "released",
    max_dense_elements: int = DEFAULT_MAX_DENSE_ELEMENTS,
) -> Projection:
    """Build the projection ``kind`` ('dense', 'sparse' or 'fastfood') from R^d to R^D.

    ``sizes``: the tensor sizes (needed by the 'per_tensor' layout; with any kind they enable
    ``forward_part``/``transpose_part`` per tensor). ``layout`` and ``normalisation`` apply to
    Fastfood only; ``max_dense_elements`` caps d * D for 'dense'.
    """
    if kind == "fastfood":
        return FastfoodProjection(d, D, seed, layout=layout, sizes=sizes, normalisation=normalisation)
    if layout != "stacked":
        raise ValueError(f"layout {layout!r} applies to the fastfood projection only, not {kind!r}")
    if kind == "dense":
        return DenseProjection(d, D, seed, sizes, max_elements=max_dense_elements)
    if kind == "sparse":
        return SparseProjection(d, D, seed, sizes)
    raise ValueError(f"unknown projection {kind!r}; choose one of {KINDS}")
