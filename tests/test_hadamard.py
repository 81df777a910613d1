"""Every FWHT kernel against the plain reference over many shapes and dtypes; autograd."""

import pytest
import torch

from intrinsic_dim.hadamard import available_kernels, fwht, fwht_kernel, fwht_reference, hadamard_matrix

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
    with pytest.raises(ValueError, match="unknown FWHT kernel"):
        fwht(torch.randn(4), kernel="nope")


def test_dispatch_prefers_fastest_and_env_forces_torch(monkeypatch):
    x = torch.randn(8)
    assert fwht_kernel(x).name == available_kernels("cpu")[0]
    monkeypatch.setenv("INTRINSIC_DIM_KERNEL", "torch")
    assert fwht_kernel(x).name == "torch"
