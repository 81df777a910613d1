"""The native Fastfood kernel on blocks of one element (a SAID search's lowest point, d = scales + 1) against an
earlier build of it, at MiniLM-L6's D: one forward (into a reused output) plus one transpose, best of six, and whether
the two builds' outputs are bit-identical.

    git worktree add /tmp/before 2ab70a1
    (cd /tmp/before && PYTHONPATH=src /work/main/.venv/bin/python -m intrinsic_dim.kernels.build --out /tmp/before-lib)
    .venv/bin/python benchmarks/unit_blocks.py --before /tmp/before-lib/_fastfood_avx512_*.so --threads 2
"""

from __future__ import annotations

import argparse
import ctypes
import time

import torch

from intrinsic_dim.kernels import native

D = 22_713_219
_I64, _INT, _U64, _DBL, _PTR = ctypes.c_int64, ctypes.c_int, ctypes.c_uint64, ctypes.c_double, ctypes.c_void_p


def _load(path: str) -> ctypes.CDLL:
    lib = ctypes.CDLL(path)
    for op in ("forward", "transpose"):
        f = getattr(lib, f"ff_{op}_f32")
        f.argtypes, f.restype = [_PTR, _PTR, _I64, _U64, _I64, _I64, _INT, _I64, _DBL, _INT], _INT
    return lib


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--before", required=True, help="the earlier build's shared library")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    current = native.load()
    if current is None:
        raise SystemExit("the native kernels are unavailable")
    libs = {"before": _load(args.before), "this": _load(str(current.path))}
    z, out, back = torch.randn(1, generator=torch.Generator().manual_seed(0)), torch.empty(D), torch.empty(1)

    def step(lib: ctypes.CDLL) -> None:
        lib.ff_forward_f32(out.data_ptr(), z.data_ptr(), 1, 0, 0, D, 0, D, 0.5, args.threads)
        lib.ff_transpose_f32(back.data_ptr(), out.data_ptr(), 1, 0, 0, D, 0, D, 0.5, args.threads)

    ms, results = {}, {}
    for name, lib in libs.items():
        step(lib)
        results[name] = out.clone(), back.clone()
        times = []
        for _ in range(6):
            t = time.perf_counter()
            step(lib)
            times.append(time.perf_counter() - t)
        ms[name] = min(times) * 1e3
    same = all(torch.equal(a, b) for a, b in zip(results["before"], results["this"]))
    print(f"D = {D:,}, d = 1 (blocks of one element), {args.threads} thread(s): before {ms['before']:.0f} ms, this kernel "
          f"{ms['this']:.0f} ms ({ms['before'] / ms['this']:.1f}x); forward and transpose bit-identical: {same}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
