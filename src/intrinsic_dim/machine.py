"""What a trial ran on, in one line. A float32 trial's last digits follow the processor's vector instructions, the
torch build and the thread count, so the store keeps this line per trial: a bit-exact rerun knows which machine it
needs, and a run whose trials came from two machines says so."""

from __future__ import annotations

import platform
from functools import lru_cache

import torch

from intrinsic_dim.kernels import toolchain


@lru_cache(maxsize=1)
def cpu_model() -> str:
    """The processor's model name (from /proc/cpuinfo; the platform's name for it where that is missing)."""
    name = toolchain.cpuinfo("model name")
    return " ".join(name.split()) if name else platform.processor() or platform.machine() or "unknown cpu"


def describe(device: torch.device | None = None) -> str:
    """One line naming the hardware a trial's arithmetic ran on: the GPU for a CUDA device, else the CPU with its best
    vector instruction set (and native bf16 where it has it) and torch's thread count; then the torch build."""
    build = f"torch {torch.__version__}"
    if device is not None and device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)}; {build} cuda {torch.version.cuda}"
    isa = "+".join([toolchain.supported_isas()[0], *toolchain.native_bf16()])
    threads = torch.get_num_threads()
    return f"{cpu_model()} ({isa}); {threads} thread{'s' if threads != 1 else ''}; {build}"
