"""The native CPU kernels against the references: FWHT, fused Fastfood segments, factors, builds."""

import functools
import subprocess
import sys
import textwrap

import pytest
import torch

import intrinsic_dim as idim
from intrinsic_dim import kernels, rng
from intrinsic_dim.kernels import fwht_reference, native, select, toolchain

LIB = native.load()
pytestmark = pytest.mark.skipif(LIB is None, reason="native kernels unavailable (no C compiler)")
TOL = {torch.float64: 1e-12, torch.float32: 2e-6}


@pytest.fixture(scope="module", params=toolchain.supported_isas())
def lib(request, tmp_path_factory):
    """Every instruction-set variant this CPU runs, the portable one included."""
    if LIB is not None and request.param == LIB.isa:
        return LIB
    return native.NativeLib(toolchain.build(request.param, tmp_path_factory.mktemp(request.param)))


@pytest.fixture
def threads():
    """Restore torch's thread count after a test changes it."""
    before = torch.get_num_threads()
    yield torch.set_num_threads
    torch.set_num_threads(before)


def _rel(got, want):
    return ((got.double() - want.double()).abs().max() / want.double().abs().max().clamp_min(1e-300)).item()


FWHT_SHAPES = [(1,), (2,), (4,), (3, 8), (5, 16), (2, 32), (7, 64), (3, 128), (1, 1024), (2, 4096), (3, 8192),
               (2, 1 << 14), (1, 1 << 16), (3, 1 << 17), (1 << 18,), (1 << 20,), (300, 256)]


@functools.lru_cache(maxsize=None)
def _fwht_case(shape):
    x = torch.randn(shape, dtype=torch.float64, generator=torch.Generator().manual_seed(shape[-1]))
    return x, fwht_reference(x)


@pytest.mark.parametrize("shape", FWHT_SHAPES, ids=str)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_fwht_matches_reference(lib, shape, dtype):
    x, want = _fwht_case(shape)
    got = lib.fwht(x.to(dtype))
    assert got.dtype == dtype and got.shape == x.shape
    assert _rel(got, want) <= TOL[dtype] * max(1.0, shape[-1] ** 0.5 / 8)
    inplace = x.to(dtype).clone()
    assert lib.fwht_into(inplace, inplace) is inplace
    assert torch.equal(inplace, got)


def test_fwht_float64_is_exact_on_integers():
    x = torch.randint(-50, 50, (3, 1 << 15)).double()
    assert torch.equal(LIB.fwht(x), fwht_reference(x))


def test_fwht_other_dtypes_and_empty():
    x = torch.randn(4, 64)
    assert torch.allclose(LIB.fwht(x.bfloat16()).float(), fwht_reference(x), atol=0.5)
    assert LIB.fwht(torch.empty(0, 16)).shape == (0, 16)


def test_fwht_rejects_bad_input():
    with pytest.raises(ValueError, match="power-of-two"):
        LIB.fwht(torch.randn(12))
    with pytest.raises(ValueError, match="contiguous"):
        LIB.fwht_into(torch.randn(8, 8).T, torch.empty(8, 8))


def test_dispatcher_uses_native_and_env_forces_torch(monkeypatch):
    x = torch.randn(64)
    assert {select(op, x).name for op in kernels.OPS} == {"native"}
    monkeypatch.setenv("INTRINSIC_DIM_KERNEL", "torch")
    assert {select(op, x).name for op in kernels.OPS} == {"torch"}


@pytest.mark.parametrize("log2n", [0, 1, 2, 3, 4, 5, 7, 10, 13, 16, 17])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_factors_bit_equal_to_rng(lib, log2n, dtype):
    n = 1 << log2n
    seg = kernels.Segment(seed=9, block0=5, nblocks=3, n=n, out_len=3 * n, scale=1.0)
    b, perm, g = kernels.segment_factors(seg, "cpu", dtype)
    nb, nperm, ninv, ng = lib.factors(9, 5, 3, n, dtype)
    assert torch.equal(nb, b)
    assert torch.equal(nperm.long(), perm)
    assert torch.equal(ng, g)
    assert torch.equal(torch.gather(nperm.long(), 1, ninv.long()), torch.arange(n).expand(3, n))


def test_keys_bit_equal_to_rng():
    for seed, stream, block in [(0, 1, 0), (7, 2, 123456789), (2**63 + 5, 3, 2**40)]:
        assert LIB.key(seed, stream, block) == rng.key(seed, stream, block)


# (d, n, nblocks, out_len, block0, seed): cut and uncut, tiny to 2**20, few and many blocks.
SEGMENTS = [
    (1, 1, 1, 1, 0, 0), (1, 1, 5, 5, 3, 1), (2, 2, 3, 5, 0, 2), (3, 4, 5, 17, 2, 3), (5, 8, 3, 24, 0, 4),
    (5, 8, 3, 20, 1, 5), (9, 16, 4, 60, 0, 6), (17, 32, 7, 200, 9, 7), (100, 128, 50, 6371, 7, 8),
    (128, 128, 33, 128 * 33, 0, 9), (700, 1024, 9, 9000, 0, 10), (1000, 1024, 3, 3072, 11, 11),
    (5000, 8192, 2, 10000, 0, 12), (10000, 16384, 3, 40000, 2, 13), (40000, 65536, 2, 100000, 1, 14),
    (7, 65536, 1, 70, 0, 15), (70000, 131072, 3, 300000, 0, 16), (300, 512, 1, 200, 4, 17),
    (600000, 1 << 20, 1, 1 << 20, 0, 18), (3, 1 << 20, 1, 1000, 6, 19),
]


@functools.lru_cache(maxsize=None)
def _segment_case(case):
    """Inputs and the pure-torch results (with the pure-torch FWHT) of one segment, in float64."""
    d, n, nblocks, out_len, block0, seed = case
    seg = kernels.make_segment(seed, block0, n, out_len)
    assert seg.nblocks == nblocks
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(d, dtype=torch.float64, generator=g)
    y = torch.randn(out_len, dtype=torch.float64, generator=g)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("INTRINSIC_DIM_KERNEL", "torch")
        want = kernels.segment_forward_torch(seg, z), kernels.segment_transpose_torch(seg, y, d)
    return seg, z, y, *want


@pytest.mark.parametrize("case", SEGMENTS, ids=lambda c: "d{}_n{}_b{}_out{}".format(*c))
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_segment_matches_torch(lib, case, dtype):
    d, n, nblocks, out_len, block0, seed = case
    seg, z, y, want_f, want_t = _segment_case(case)
    args = (seed, block0, nblocks, n, out_len, seg.scale)
    got_f = lib.segment_forward(z.to(dtype), *args)
    got_t = lib.segment_transpose(y.to(dtype), d, *args)
    assert got_f.dtype == got_t.dtype == dtype
    assert got_f.shape == (out_len,) and got_t.shape == (d,)
    tol = TOL[dtype] * max(1.0, n**0.5 / 8)
    assert _rel(got_f, want_f) <= tol
    assert _rel(got_t, want_t) <= tol * max(1.0, nblocks**0.5 / 8)


@pytest.mark.parametrize("case", SEGMENTS[::3], ids=lambda c: "d{}_n{}".format(c[0], c[1]))
def test_segment_adjoint(case):
    d, n, nblocks, out_len, block0, seed = case
    seg = kernels.make_segment(seed, block0, n, out_len)
    g = torch.Generator().manual_seed(1)
    z = torch.randn(d, dtype=torch.float64, generator=g)
    y = torch.randn(out_len, dtype=torch.float64, generator=g)
    args = (seed, block0, nblocks, n, out_len, seg.scale)
    lhs = LIB.segment_forward(z, *args) @ y
    rhs = z @ LIB.segment_transpose(y, d, *args)
    assert abs(lhs - rhs).item() <= 1e-12 * (1 + abs(lhs).item()) * n**0.5


@pytest.mark.parametrize("nblocks,out_len,block0", [(1, 1, 0), (7, 7, 3), (1003, 1003, 11), (40, 37, 0)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_unit_blocks_exact(lib, nblocks, out_len, block0, dtype):
    """Blocks of one element (a SAID run one dimension above its scales): each output is
    (B_b z_0 G_b) scale, and the transpose sums B_b G_b scale y_b in order, chunk by chunk, in float64
    -- bit for bit, so that this fast path keeps P what the general kernel made it."""
    seed, scale = 21, 0.37
    z = torch.tensor([1.7], dtype=dtype)
    y = torch.randn(out_len, dtype=dtype, generator=torch.Generator().manual_seed(2))
    sign, _, _, gauss = lib.factors(seed, block0, nblocks, 1, dtype)
    sign, gauss = sign[:out_len, 0], gauss[:out_len, 0]
    want_f = (sign * z[0]) * gauss * scale
    assert torch.equal(lib.segment_forward(z, seed, block0, nblocks, 1, out_len, scale), want_f)
    terms = (sign * ((y * scale) * gauss)).tolist()
    chunks = min(nblocks, 32)
    total = 0.0
    for c in range(chunks):
        part = 0.0
        for t in terms[nblocks * c // chunks: min(out_len, nblocks * (c + 1) // chunks)]:
            part += t
        total = part if c == 0 else total + part
    got_t = lib.segment_transpose(y, 1, seed, block0, nblocks, 1, out_len, scale)
    assert torch.equal(got_t, torch.tensor([total], dtype=torch.float64).to(dtype))


def test_segment_forward_into_a_given_output():
    z = torch.randn(100)
    args = (3, 0, 5, 128, 600, 0.1)
    out = torch.full((600,), 7.0)
    assert LIB.segment_forward(z, *args, out=out) is out and torch.equal(out, LIB.segment_forward(z, *args))
    for bad in (torch.empty(599), torch.empty(600, dtype=torch.float64), torch.empty(1200)[::2]):
        with pytest.raises(ValueError, match="contiguous"):
            LIB.segment_forward(z, *args, out=bad)


@pytest.mark.parametrize("d,n,nblocks", [(100, 128, 3000), (5000, 8192, 5), (3000, 1 << 16, 3), (9, 1 << 18, 1), (1, 1, 300_001)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_same_result_on_one_and_two_threads(threads, d, n, nblocks, dtype):
    out_len = n * nblocks - n // 3
    z, y = torch.randn(d, dtype=dtype), torch.randn(out_len, dtype=dtype)
    x = torch.randn(2, n, dtype=dtype)
    results = []
    for t in (1, 2):
        threads(t)
        results.append((
            LIB.segment_forward(z, 3, 1, nblocks, n, out_len, 0.01),
            LIB.segment_transpose(y, d, 3, 1, nblocks, n, out_len, 0.01),
            LIB.fwht(x),
        ))
    for a, b in zip(*results):
        assert torch.equal(a, b)


def test_projection_uses_native_and_matches_torch_path(monkeypatch):
    P = idim.make_projection("fastfood", 300, 50_000, seed=3)
    sizes = [20_000, 7, 29_993]
    Q = idim.make_projection("fastfood", 300, 50_000, seed=3, layout="per_tensor", sizes=sizes)
    z, y = torch.randn(300, dtype=torch.float64), torch.randn(50_000, dtype=torch.float64)
    native_out = [(M(z), M.T(y)) for M in (P, Q)]
    monkeypatch.setenv("INTRINSIC_DIM_KERNEL", "torch")
    torch_out = [(M(z), M.T(y)) for M in (P, Q)]
    for a, b in zip(native_out, torch_out):
        assert _rel(a[0], b[0]) < 1e-12 and _rel(a[1], b[1]) < 1e-12


_MEMORY_SCRIPT = textwrap.dedent(
    """
    import resource, torch
    import intrinsic_dim as idim
    from intrinsic_dim import kernels
    assert kernels.select("segment_forward", torch.zeros(1)).name == "native"
    D, d = 1 << 23, 1000
    P = idim.make_projection("fastfood", d, D, seed=0)
    z = torch.randn(d, requires_grad=True)
    y = torch.ones(D)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for _ in range(2):
        out = P(z)
        out.backward(y)
        del out
    print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024 / (4 * D))
    """
)


def test_extra_memory_is_the_output_and_its_gradient():
    """Forward + backward at D = 2**23 peaks at the output vector plus scratch, not 16 bytes/param."""
    out = subprocess.run([sys.executable, "-c", _MEMORY_SCRIPT], capture_output=True, text=True, check=True)
    assert float(out.stdout) < 1.5  # in units of one D-vector; the torch path caches 4 D-vectors of factors


def test_build_names_variants_and_removes_stale(tmp_path):
    names = {toolchain.library_name(isa) for isa in toolchain.ISA_FLAGS}
    assert len(names) == len(toolchain.ISA_FLAGS)
    assert toolchain.supported_isas(set())[-1] == "generic"
    assert toolchain.supported_isas({"avx2", "fma"}) == ["avx2", "generic"]
    stale = tmp_path / "_fastfood_avx2_000000000000.so"
    stale.write_bytes(b"")
    keep = tmp_path / toolchain.library_name("generic")
    keep.write_bytes(b"")
    assert toolchain.remove_stale(tmp_path) == [stale]
    assert keep.exists()


def test_no_compiler_warns_and_falls_back(monkeypatch, tmp_path):
    monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
    monkeypatch.setenv("INTRINSIC_DIM_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(toolchain, "PACKAGE_DIR", tmp_path)
    with pytest.raises(toolchain.BuildError):
        native.load_variant("generic")
    with pytest.warns(RuntimeWarning, match="pure-torch"):
        assert native.load.__wrapped__() is None


def test_lazy_build_into_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("INTRINSIC_DIM_CACHE", str(tmp_path))
    monkeypatch.setattr(toolchain, "PACKAGE_DIR", tmp_path / "pkg")
    lib = native.load_variant("generic")
    assert lib.path.parent == tmp_path and lib.isa == "generic"
    x = torch.randn(3, 256, dtype=torch.float64)
    assert torch.equal(lib.fwht(x), fwht_reference(x))


def test_bench_records_and_table(tmp_path):
    from intrinsic_dim import kernelbench as bench

    floor = bench.Floor(1)
    assert floor.bandwidth_gbs > 0 and floor.add_rate > 0 and floor.hash_rate > 0
    recs = [bench.bench_fwht((1 << 12,), floor, 2), bench.bench_fwht((3, 1 << 7), floor, 2), bench.bench_fastfood(5000, 100, floor, 1)]
    assert [r["name"] for r in recs] == ["fwht_2^12", "fwht_3x2^7", "fastfood_fwd_bwd_D0.0M_d100"]
    for r in recs:
        assert {"name", "ours_ms", "baseline_name", "baseline_ms", "floor_ms"} <= set(r)
        assert r["ours_ms"] > 0 and r["floor_ms"] > 0
    table = bench.format_table(recs)
    assert "fwht_3x2^7" in table and "speedup" in table
    ff = recs[2]
    assert ff["ours_reused_ms"] > 0 and ff["regen_floor_ms"] >= floor.ms(5000 * 4, 0)
    # 40 blocks of 128 (d = 100: signs of 104 entries), both directions; 5,000 blocks of one element
    assert bench.regenerated_hashes(100, 128, 40) == 2 * 40 * (3 + 8 + 128 + 104) and bench.regenerated_hashes(1, 1, 5000) == 40000
    assert "fastfood_fwd_bwd_D0.0M_d100" in bench.format_projection_table(recs)
