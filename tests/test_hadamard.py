"""Every FWHT kernel against the plain reference over many shapes and dtypes; autograd; the registry."""

import pytest
import torch

from intrinsic_dim import kernels
from intrinsic_dim.kernels import available_kernels, fwht, fwht_reference, hadamard_matrix, select

SHAPES = [(1,), (2,), (8,), (5, 16), (3, 4, 64), (2, 128), (7, 256), (1, 512), (3, 2048), (2, 1 << 15), (1 << 17,)]
TOL = {torch.float64: 1e-10, torch.float32: 1e-4, torch.bfloat16: 3e-2}


@pytest.mark.parametrize("kernel", [k for k in available_kernels("cpu") if k != "reference"])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_kernel_matches_reference(kernel, shape, dtype):
    x = torch.randn(shape, generator=torch.Generator().manual_seed(sum(shape)), dtype=torch.float64)
    want = fwht_reference(x)
    got = fwht(x.to(dtype), kernel=kernel).to(torch.float64)
    n = shape[-1]
    assert got.shape == x.shape
    assert (got - want).abs().max().item() <= TOL[dtype] * (n ** 0.5) * max(1.0, want.abs().max().item())


def test_reference_is_the_sylvester_matrix():
    for n in (1, 2, 4, 32):
        h = hadamard_matrix(n, torch.float64)
        assert torch.equal(fwht_reference(torch.eye(n, dtype=torch.float64)), h)
        assert torch.equal(h @ h, n * torch.eye(n, dtype=torch.float64))


def test_involution_up_to_n():
    x = torch.randn(4, 1024, dtype=torch.float64)
    assert torch.allclose(fwht(fwht(x)), 1024 * x)


def test_gradient_is_the_transform():
    x = torch.randn(3, 64, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(fwht, (x,))
    assert torch.autograd.gradgradcheck(fwht, (x,))


def test_bad_inputs():
    with pytest.raises(ValueError, match="power-of-two"):
        fwht(torch.randn(3, 12))
    with pytest.raises(TypeError, match="floating"):
        fwht(torch.ones(4, dtype=torch.int32))
    with pytest.raises(ValueError, match="unknown kernel"):
        fwht(torch.randn(4), kernel="nope")


def test_dispatch_prefers_fastest_and_env_forces_torch(monkeypatch):
    x = torch.randn(8)
    assert select("fwht", x).name == available_kernels("cpu")[0]
    monkeypatch.setenv("INTRINSIC_DIM_KERNEL", "torch")
    assert select("fwht", x).name == "torch"


def test_one_override_for_every_op_and_an_error_where_it_cannot_run(monkeypatch):
    x = torch.randn(8)
    seg = kernels.make_segment(0, 0, 8, 8)
    monkeypatch.setenv("INTRINSIC_DIM_KERNEL", "reference")
    assert {select(op, x).name for op in kernels.OPS} == {"reference"}
    monkeypatch.setenv("INTRINSIC_DIM_KERNEL", "triton")
    with pytest.raises(ValueError, match="cannot run"):
        kernels.segment_forward(seg, x)
    monkeypatch.setenv("INTRINSIC_DIM_KERNEL", "nope")
    with pytest.raises(ValueError, match="unknown kernel 'nope'"):
        fwht(x)


def test_segment_arguments_are_checked_once_for_every_backend():
    for name in available_kernels("cpu"):
        with pytest.raises(ValueError, match="d <= n"):
            kernels.segment_forward(kernels.Segment(0, 0, 1, 8, 8, 1.0), torch.randn(9), kernel=name)
        with pytest.raises(ValueError, match="power-of-two"):
            kernels.segment_forward(kernels.Segment(0, 0, 1, 6, 6, 1.0), torch.randn(3), kernel=name)
        with pytest.raises(ValueError, match="shape"):
            kernels.segment_transpose(kernels.Segment(0, 0, 1, 8, 8, 1.0), torch.randn(7), 3, kernel=name)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_in_and_out_computed_in_float32(dtype):
    seg = kernels.make_segment(3, 0, 64, 200)
    z, y = torch.randn(40).to(dtype), torch.randn(200).to(dtype)
    for name in available_kernels("cpu"):
        out = kernels.segment_forward(seg, z, kernel=name)
        assert out.dtype == dtype and torch.equal(out, kernels.segment_forward(seg, z.float(), kernel=name).to(dtype))
        back = kernels.segment_transpose(seg, y, 40, kernel=name)
        assert back.dtype == dtype and torch.equal(back, kernels.segment_transpose(seg, y.float(), 40, kernel=name).to(dtype))


def test_native_library_is_not_loaded_at_import():
    import subprocess
    import sys

    code = "import intrinsic_dim, intrinsic_dim.kernels as k; assert k.native.load.cache_info().currsize == 0; print('ok')"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "ok"
