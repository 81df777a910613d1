"""Peak extra memory of a training step (memory, never time): O(largest tensor + d), not O(D)."""

import sys

import pytest

from intrinsic_dim.membench import MemorySpec, measure

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")


@pytest.mark.parametrize("method", ["did", "said"])
def test_subspace_step_extra_memory_is_a_few_largest_tensors(method):
    # 8 x Linear(1024, 1024): D = 8.4M (32 MiB), largest tensor 4 MiB; freed large blocks go back at once
    full = measure(MemorySpec("full", layers=8, malloc="mmap64k"))
    sub = measure(MemorySpec(method, layers=8, malloc="mmap64k"))
    assert full["per_D"] > 0.9  # the measurement sees full fine-tuning's D gradients
    assert sub["per_D"] < 0.5 and sub["per_largest"] < 3.5
