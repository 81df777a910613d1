"""One trial on several processes: data-parallel subspace training over ``torch.distributed``.

Every rank builds the same model and projection from the trial's seed; :func:`check_same_projection`
compares a SHA-256 of the projection state across ranks and refuses a mismatch, since ranks that
disagree on P would train different models while all-reducing one z. Each rank computes the loss
on its slice of the global batch, weighted by its share, and only the gradients of the trained
numbers (z and SAID's lambda: d numbers, not the D weights) are summed, so every rank takes the
optimizer step one process would take on the whole batch. Launch with ``torchrun`` or
``accelerate launch``; on the CPU the backend is gloo.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Sequence

import torch
import torch.distributed as dist

from intrinsic_dim.subspace import SubspaceModel


class ProjectionMismatch(ValueError):
    """The ranks of a data-parallel trial built different projections or base weights (a configuration error)."""


def world() -> tuple[int, int]:
    """(rank, number of processes) of the current process group, or (0, 1) outside one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def init_from_env() -> bool:
    """Join the process group that ``torchrun`` / ``accelerate launch`` describe in the environment
    (gloo on the CPU, nccl where CUDA is available); whether this call joined one."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        return True
    return False


def leave() -> None:
    """Leave the process group :func:`init_from_env` joined."""
    if dist.is_initialized():
        dist.destroy_process_group()


def projection_digest(sm: SubspaceModel) -> str:
    """SHA-256 of what a rank trains against: the adapter configuration (with theta0's fingerprint)
    and P applied to a fixed probe vector, part by part."""
    state = {"adapter": sm.adapter_config(), "projection": sm.projection.config()}
    h = hashlib.sha256(json.dumps(state, sort_keys=True, default=str).encode())
    probe = torch.linspace(-1.0, 1.0, sm.z.numel(), dtype=sm.z.dtype, device=sm.z.device)
    with torch.no_grad():
        for i in range(len(sm.projection.sizes)):
            h.update(sm.projection.forward_part(probe, i).cpu().numpy().tobytes())
    return h.hexdigest()


def check_same_projection(sm: SubspaceModel) -> str:
    """The projection digest, identical on every rank; a ProjectionMismatch on every rank otherwise."""
    digest = projection_digest(sm)
    rank, size = world()
    if size == 1:
        return digest
    digests: list[str | None] = [None] * size
    dist.all_gather_object(digests, digest)
    if len(set(digests)) > 1:
        groups = {d: [r for r, x in enumerate(digests) if x == d] for d in digests if d}
        raise ProjectionMismatch(
            "the ranks built different projections or base weights (ranks by SHA-256 of the projection state: "
            + "; ".join(f"{d[:12]}: {r}" for d, r in groups.items())
            + "); every rank must load the same model with the same SubspaceConfig and seed"
        )
    return digest


def shard(idx: Sequence[int], rank: int, size: int) -> list[int]:
    """This rank's contiguous slice of a global batch (sizes differ by at most one)."""
    n = len(idx)
    return list(idx[rank * n // size : (rank + 1) * n // size])


def global_loss(local_loss: torch.Tensor, n_local: int, n_global: int) -> torch.Tensor:
    """A tensor whose value is the global batch's mean loss (the same on every rank, one number sent)
    and whose gradient is this rank's share n_local / n_global of its local mean loss's."""
    scaled = local_loss * (n_local / n_global)
    total = scaled.detach().clone()
    dist.all_reduce(total)
    return scaled + (total - scaled.detach())


def allreduce_gradients(params: Sequence[torch.nn.Parameter]) -> None:
    """Sum the trained numbers' gradients over the ranks, as one flat buffer (d numbers for z and lambda)."""
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    offset = 0
    for p in params:
        n = p.numel()
        p.grad = flat[offset : offset + n].view_as(p).clone()
        offset += n
