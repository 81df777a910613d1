"""A GPU path that cannot strand its user: Triton missing, or failing its first launch, gives one warning
and the torch backend's result. Simulated on the CPU: the interpreted Triton kernels are registered for
CPU tensors, and their launch (or import) is made to raise."""

import os
import sys
import warnings

import pytest
import torch

if not torch.cuda.is_available():
    os.environ["TRITON_INTERPRET"] = "1"  # must precede the kernels' definition
pytest.importorskip("triton")

from intrinsic_dim import kernels  # noqa: E402
from intrinsic_dim.kernels import Backend, _LibraryOps, make_segment  # noqa: E402
from intrinsic_dim.kernels import triton_fastfood as tf  # noqa: E402


class _Raising:
    """Stands for a jitted kernel whose launch fails (as a compile error would)."""

    def __getitem__(self, grid):
        def launch(*args, **kwargs):
            raise RuntimeError("simulated Triton compile failure")

        return launch


@pytest.fixture
def cpu_triton(monkeypatch):
    """The Triton backend registered for CPU tensors (interpreted), with torch next as on CUDA (native
    hidden); restored after."""
    monkeypatch.delenv(kernels.ENV, raising=False)
    monkeypatch.setitem(kernels._LOADED, "native", None)
    monkeypatch.setattr(kernels, "_VERIFIED", set())
    monkeypatch.setattr(kernels, "_BROKEN", {})
    original = kernels._BACKENDS["triton"]
    kernels.register(Backend("triton", ("cpu",), 30, lambda: _LibraryOps(tf, tf.MAX_FUSED_LOG2N), guard_first_launch=True))
    yield
    kernels.register(original)


def _case():
    seg = make_segment(3, 0, 64, 200)
    g = torch.Generator().manual_seed(0)
    return seg, torch.randn(50, generator=g), torch.randn(200, generator=g)


def test_a_failing_first_launch_warns_once_and_gives_the_torch_result(cpu_triton, monkeypatch):
    monkeypatch.setattr(tf, "_forward_kernel", _Raising())
    seg, z, y = _case()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = kernels.segment_forward(seg, z)
        again = kernels.segment_forward(seg, z)
        tr = kernels.segment_transpose(seg, y, 50)  # later ops on the device skip Triton too
        x = kernels.fwht(torch.randn(3, 16))
    ours = [w for w in caught if "intrinsic_dim" in str(w.message)]
    assert len(ours) == 1 and "simulated Triton compile failure" in str(ours[0].message)
    assert "segment_forward" in str(ours[0].message) and "cpu" in str(ours[0].message)
    want = kernels.segment_forward(seg, z, kernel="torch")
    assert torch.equal(first, want) and torch.equal(again, want)
    assert torch.equal(tr, kernels.segment_transpose(seg, y, 50, kernel="torch"))
    assert x.shape == (3, 16)
    assert kernels.select("fwht", z).name == "torch"


def test_a_forced_backend_raises_instead(cpu_triton, monkeypatch):
    monkeypatch.setattr(tf, "_forward_kernel", _Raising())
    seg, z, _ = _case()
    with pytest.raises(RuntimeError, match="simulated"):
        kernels.segment_forward(seg, z, kernel="triton")


def test_a_working_first_launch_runs_triton_without_warning(cpu_triton):
    seg, z, _ = _case()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = kernels.segment_forward(seg, z)
    assert kernels.select("segment_forward", z).name == "triton"
    assert torch.allclose(got, kernels.segment_forward(seg, z, kernel="reference"), rtol=1e-5, atol=1e-6)


def test_missing_triton_warns_once_where_cuda_exists(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setitem(sys.modules, "triton", None)  # import triton raises ImportError
    monkeypatch.delitem(sys.modules, "intrinsic_dim.kernels.triton_fastfood")
    monkeypatch.setattr(kernels, "_LOADED", {})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert kernels.implementation("triton") is None
        assert kernels.implementation("triton") is None
    ours = [w for w in caught if "intrinsic_dim" in str(w.message)]
    assert len(ours) == 1 and "Triton is unavailable" in str(ours[0].message) and "triton" in str(ours[0].message)


def test_no_cuda_means_no_triton_and_no_warning(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert kernels._load_triton() is None
