"""Peak extra memory of one training step (forward + backward): full fine-tuning, DID and SAID.

Each measurement runs in a fresh child process (``python -m intrinsic_dim.membench SPEC``): build a
stack of ``layers`` x Linear(width, width), wrap it (or not), warm the kernels and autograd on a tiny
model, then take the peak resident memory (VmHWM, reset through /proc/self/clear_refs) of one step
above the resident memory just before it. Extra memory is reported in bytes, in units of D numbers
of the weights' dtype (``per_D``) and of the largest projected tensor (``per_largest``). Linux only.
``malloc="mmap64k"`` runs the child with MALLOC_MMAP_THRESHOLD_=65536, so that glibc returns large
freed blocks at once and the peak is that of live tensors, not of the allocator's free lists.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import asdict, dataclass
import torch
from torch import nn

METHODS = ("full", "did", "said")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
MALLOC = {"default": {}, "mmap64k": {"MALLOC_MMAP_THRESHOLD_": "65536"}}


@dataclass(frozen=True)
class MemorySpec:
    """One measurement: the model, the method and the allocator setting."""

    method: str
    layers: int = 16
    width: int = 1024
    d: int = 1000
    batch: int = 8
    dtype: str = "float32"
    malloc: str = "default"


def status_kb(field: str) -> int:
    """A field of /proc/self/status in kB (VmRSS, VmHWM)."""
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def _stack(layers: int, width: int, dtype: torch.dtype) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(*[nn.Linear(width, width, bias=False) for _ in range(layers)]).to(dtype)


def _wrap(model: nn.Module, spec: MemorySpec) -> nn.Module:
    from intrinsic_dim.subspace import SubspaceModel

    return model if spec.method == "full" else SubspaceModel(model, d=spec.d, said=spec.method == "said")


def _step(model: nn.Module, x: torch.Tensor) -> None:
    model(x).float().square().mean().backward()


def measure_here(spec: MemorySpec) -> dict:
    """Measure ``spec`` in this process (meant for a fresh child: see :func:`measure`)."""
    torch.set_num_threads(1)
    dtype = DTYPES[spec.dtype]
    _step(_wrap(_stack(2, 64, dtype), spec), torch.randn(2, 64, dtype=dtype))  # load kernels, start autograd
    model = _wrap(_stack(spec.layers, spec.width, dtype), spec)
    x = torch.randn(spec.batch, spec.width, dtype=dtype)
    before = status_kb("VmRSS")
    with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
        f.write("5")  # reset VmHWM to the current resident size
    _step(model, x)
    extra = (status_kb("VmHWM") - before) * 1024
    D, largest = spec.layers * spec.width * spec.width, spec.width * spec.width
    size = torch.tensor([], dtype=dtype).element_size()
    return asdict(spec) | {"D": D, "extra_bytes": extra, "per_D": extra / (D * size), "per_largest": extra / (largest * size)}


def measure(spec: MemorySpec) -> dict:
    """Measure ``spec`` in a fresh child process and return its record."""
    env = os.environ | MALLOC[spec.malloc]
    out = subprocess.run(
        [sys.executable, "-m", "intrinsic_dim.membench", json.dumps(asdict(spec))],
        env=env, capture_output=True, text=True, check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_memory_bench(layers: tuple[int, ...] = (4, 8, 16), width: int = 1024, d: int = 1000) -> list[dict]:
    """Every method at growing D (``layers`` x Linear(width, width)), under both allocator settings."""
    return [
        measure(MemorySpec(method, n, width, d, malloc=malloc))
        for malloc in MALLOC for n in layers for method in METHODS
    ]


def format_memory(records: list[dict]) -> str:
    """The records as an aligned text table."""
    rows = [["malloc", "layers", "D", "method", "extra MB", "/ D", "/ largest"]] + [
        [r["malloc"], str(r["layers"]), f"{r['D']:,}", r["method"], f"{r['extra_bytes'] / 2**20:.1f}",
         f"{r['per_D']:.3f}", f"{r['per_largest']:.2f}"]
        for r in records
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.rjust(w) for c, w in zip(row, widths)) for row in rows)


if __name__ == "__main__":
    print(json.dumps(measure_here(MemorySpec(**json.loads(sys.argv[1])))))
