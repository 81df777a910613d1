"""One recipe: the native kernels are built with the generator constants of rng.py, and follow them."""

import pytest
import torch

from intrinsic_dim import rng
from intrinsic_dim.kernels import native, toolchain

LIB = native.load()
pytestmark = pytest.mark.skipif(LIB is None, reason="native kernels unavailable (no C compiler)")
NAMES = ("GOLDEN", "MIX1", "MIX2", "STREAM_SIGN", "STREAM_GAUSS", "STREAM_PERM", "PERM_ROUNDS", "GAUSS_CENTER", "GAUSS_SCALE")


def test_the_library_holds_rng_constants():
    assert LIB.constants() == {k: getattr(rng, k) for k in NAMES}


def test_a_changed_constant_is_a_different_library(monkeypatch):
    before = toolchain.library_name("generic")
    monkeypatch.setattr(rng, "MIX2", rng.MIX2 ^ 1)
    assert "-DFF_MIX2=0x94d049bb133111eaULL" in toolchain.flags("generic")
    assert toolchain.library_name("generic") != before


def test_a_library_built_with_other_constants_follows_them(monkeypatch, tmp_path):
    monkeypatch.setattr(rng, "GAUSS_CENTER", rng.GAUSS_CENTER + 1)
    lib = native.NativeLib(toolchain.build("generic", tmp_path))
    assert lib.constants()["GAUSS_CENTER"] == rng.GAUSS_CENTER
    keys = rng.block_keys(4, rng.STREAM_GAUSS, torch.arange(2))[:, None]
    b = rng.bits(keys, torch.arange(16)[None, :])
    s = (b & 0xFFFF) + (rng._srl(b, 16) & 0xFFFF) + (rng._srl(b, 32) & 0xFFFF) + rng._srl(b, 48)
    g = (s - rng.GAUSS_CENTER).double() * rng.GAUSS_SCALE
    assert torch.equal(lib.gauss_sq(4, 0, 2, 16), g * g)
