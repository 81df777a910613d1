"""GPU check, prepared for a machine with a CUDA GPU (not run where none exists).

    python benchmarks/gpu_check.py [--quick] [--json FILE]

1. Correctness: the compiled Triton kernels (fused blocks and the long-block path) against the
   reference (the plain-torch segment ops with the textbook FWHT, float64, on the CPU) over many
   (d, block size, output length, first block, seed), float32 and float64; plus the whole projection
   on the GPU against the CPU, both layouts.
2. Speed: segment forward and transpose at D = 22.7M (MiniLM-L6) and 134M (SmolLM2-135M), d = 1000
   and 10000, against the memory-bandwidth floor (one write of the D outputs for the forward, one
   read for the transpose, at the bandwidth of a large device copy measured here). Goal: >= 50% of
   the floor's speed.
3. Memory: one bf16 training step (forward + backward) of randomly initialised Llama-shaped models
   built on the meta device and materialised in bf16 on the GPU (no float32 copy, no download):
   ~1.1B (hidden 2048, 22 layers, intermediate 5632) full fine-tuning against DID and SAID, and
   7B-shaped (hidden 4096, 32 layers, intermediate 11008) DID and SAID on bf16 weights and SAID on int8
   codes of them (``base_quant="int8"``), d = 1000: peak GPU memory above the weights, and the weights.
4. Fallback: the Triton launch made to fail on the GPU; the op must give the torch backend's result
   with exactly one warning.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings

import torch

import intrinsic_dim as idim
from intrinsic_dim import kernels


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double().cpu() - b.double().cpu()).norm() / b.double().norm().clamp_min(1e-300)).item()


def check_kernels(quick: bool) -> list[dict]:
    """Compiled Triton segment forward / transpose against the reference, many shapes and seeds."""
    from intrinsic_dim.kernels import triton_fastfood as tf

    cases = [(1, 1, 1), (3, 4, 17), (5, 8, 24), (100, 128, 1000), (200, 256, 256), (1000, 1024, 100_000),
             (3000, 4096, 50_000), (5000, 8192, 8192 * 3 + 5), (10_000, 16_384, 40_000), (20_000, 32_768, 70_000)]
    seeds = (0, 7) if quick else (0, 1, 7, 123, 2**40 + 5)
    tol = {torch.float64: 1e-12, torch.float32: 3e-6}
    out = []
    for d, n, out_len in cases:
        for seed in seeds:
            block0 = seed % 11
            seg = kernels.make_segment(seed, block0, n, out_len)
            g = torch.Generator().manual_seed(seed % 2**31)
            z, y = torch.randn(d, generator=g, dtype=torch.float64), torch.randn(out_len, generator=g, dtype=torch.float64)
            want_f = kernels.segment_forward(seg, z, kernel="reference")
            want_t = kernels.segment_transpose(seg, y, d, kernel="reference")
            for dtype in (torch.float32, torch.float64):
                got_f = tf.segment_forward(z.to("cuda", dtype), seed, block0, seg.nblocks, n, out_len, seg.scale)
                got_t = tf.segment_transpose(y.to("cuda", dtype), d, seed, block0, seg.nblocks, n, out_len, seg.scale)
                rf, rt = _rel(got_f, want_f), _rel(got_t, want_t)
                out.append({"d": d, "n": n, "out_len": out_len, "seed": seed, "dtype": str(dtype), "rel_forward": rf,
                            "rel_transpose": rt, "ok": rf <= tol[dtype] and rt <= tol[dtype]})
    for layout in ("stacked", "per_tensor"):
        sizes = [300_000, 1_000_000, 4_096, 1] if layout == "per_tensor" else None
        P = idim.make_projection("fastfood", 1000, 1_304_097, seed=3, layout=layout, sizes=sizes)
        z, y = torch.randn(1000, dtype=torch.float64), torch.randn(1_304_097, dtype=torch.float64)
        rf, rt = _rel(P(z.cuda()), P(z)), _rel(P.T(y.cuda()), P.T(y))
        out.append({"projection": layout, "rel_forward": rf, "rel_transpose": rt, "ok": rf <= 1e-12 and rt <= 1e-12})
    return out


def _cuda_ms(fn, repeats: int) -> float:
    fn()
    torch.cuda.synchronize()
    best = float("inf")
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        best = min(best, start.elapsed_time(end))
    return best


def bandwidth_gbs(repeats: int) -> float:
    """Bytes read plus written per second by a 1 GiB device copy."""
    x = torch.empty(1 << 28, device="cuda")
    y = torch.empty_like(x)
    ms = _cuda_ms(lambda: y.copy_(x), repeats)
    return 2 * x.numel() * 4 / (ms / 1e3) / 1e9


def bench_kernels(quick: bool) -> list[dict]:
    """Segment forward / transpose time against the memory-bandwidth floor."""
    reps = 5 if quick else 20
    bw = bandwidth_gbs(reps)
    out = []
    for D in (22_713_216, 134_515_008):
        for d in (1000, 10_000):
            P = idim.make_projection("fastfood", d, D, seed=0)
            z, y = torch.randn(d, device="cuda"), torch.randn(D, device="cuda")
            fwd, tr = _cuda_ms(lambda: P(z), reps), _cuda_ms(lambda: P.T(y), reps)
            floor = D * 4 / (bw * 1e9) * 1e3
            out.append({"D": D, "d": d, "forward_ms": fwd, "transpose_ms": tr, "floor_ms": floor, "bandwidth_gbs": bw,
                        "forward_of_floor": floor / fwd, "transpose_of_floor": floor / tr})
    return out


def bench_memory(quick: bool, batch: int = 4, seq: int = 512) -> list[dict]:
    """Peak GPU memory of one bf16 training step above the weights: full fine-tuning, DID, SAID at ~1.1B
    parameters, DID, SAID and SAID on an int8 base at 7B (built on the meta device, materialised in bf16)."""
    from intrinsic_dim.llamabench import build_llama, llama_spec

    out = []
    runs = [("llama-1b", m) for m in ("full", "did", "said")] + [("llama-7b", m) for m in ("did", "said", "said-int8")]
    for shape, method in runs:
        model = build_llama(llama_spec(method, shape, device="cuda", **({"layers": 2} if quick else {})))
        n = sum(p.numel() for p in model.parameters())
        largest = max(p.numel() for p in model.parameters())
        kind, _, quant = method.partition("-")
        wrapped = model if kind == "full" else idim.SubspaceModel(model, d=1000, said=kind == "said", base_quant=quant or None)
        weights = torch.cuda.memory_allocated()
        ids = torch.randint(0, 32_000, (batch, seq), device="cuda")
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        t = time.perf_counter()
        wrapped(input_ids=ids, labels=ids).loss.backward()
        torch.cuda.synchronize()
        extra = torch.cuda.max_memory_allocated() - base
        out.append({"shape": shape, "method": method, "parameters": n, "weights_bytes": weights, "step_s": time.perf_counter() - t, "extra_bytes": extra,
                    "extra_per_D_bf16": extra / (2 * n), "extra_per_largest": extra / (2 * largest)})
        del wrapped, model
        torch.cuda.empty_cache()
    return out


def check_fallback() -> dict:
    """A Triton launch made to fail on the GPU: one warning, and the torch backend's result."""
    from intrinsic_dim.kernels import triton_fastfood as tf

    class Raising:
        def __getitem__(self, grid):
            def launch(*args, **kwargs):
                raise RuntimeError("simulated Triton compile failure")

            return launch

    seg = kernels.make_segment(5, 0, 1024, 100_000)
    z = torch.randn(1000, device="cuda")
    saved, tf._forward_kernel = tf._forward_kernel, Raising()
    kernels._VERIFIED.clear()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            got = kernels.segment_forward(seg, z)
            kernels.segment_forward(seg, z)
    finally:
        tf._forward_kernel = saved
    ours = [str(w.message) for w in caught if "intrinsic_dim" in str(w.message)]
    want = kernels.segment_forward(seg, z, kernel="torch")
    kernels._BROKEN.clear()  # give Triton back to the rest of this run
    kernels._VERIFIED.clear()
    return {"warnings": ours, "equal_to_torch": bool(torch.equal(got, want)), "ok": len(ours) == 1 and torch.equal(got, want)}


def main(argv: list[str] | None = None) -> int:
    """Run the three checks and print (and optionally save) their records."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer seeds and repeats, a 4-layer model")
    ap.add_argument("--json", metavar="FILE", help="write the records to FILE")
    args = ap.parse_args(argv)
    if not (torch.cuda.is_available() and kernels.triton_available()):
        print("gpu_check needs a CUDA GPU and Triton; none here", file=sys.stderr)
        return 2
    print(torch.cuda.get_device_name(), "torch", torch.__version__)
    records = {"kernels": check_kernels(args.quick)}
    bad = [r for r in records["kernels"] if not r["ok"]]
    print(f"kernels vs reference: {len(records['kernels']) - len(bad)} / {len(records['kernels'])} within tolerance")
    for r in bad:
        print("  MISMATCH", r)
    records["speed"] = bench_kernels(args.quick)
    for r in records["speed"]:
        print(f"D={r['D']:,} d={r['d']}: forward {r['forward_ms']:.2f} ms ({r['forward_of_floor']:.0%} of floor), "
              f"transpose {r['transpose_ms']:.2f} ms ({r['transpose_of_floor']:.0%}), floor {r['floor_ms']:.2f} ms "
              f"at {r['bandwidth_gbs']:.0f} GB/s")
    records["memory"] = bench_memory(args.quick)
    for r in records["memory"]:
        print(f"{r['shape']} {r['method']:>4}: {r['parameters'] / 1e9:.2f}B parameters, peak extra {r['extra_bytes'] / 2**30:.2f} GiB "
              f"= {r['extra_per_D_bf16']:.2f} D (bf16) = {r['extra_per_largest']:.1f} x largest tensor, step {r['step_s']:.2f} s")
    records["fallback"] = check_fallback()
    print(f"fallback on a failing Triton launch: {records['fallback']}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(records, f, indent=2)
    return 1 if bad or not records["fallback"]["ok"] else 0


if __name__ == "__main__":
    sys.exit(main())
