"""The Fastfood projection (forward + transpose) at MiniLM-L6's D against its two floors: the memory / add floor of
``intrinsic-dim bench`` and the floor of a kernel that regenerates its factors (adds plus unavoidable hashes), with the
forward into a fresh output (as training allocates it) and into a reused one. The rows ``intrinsic-dim bench`` makes,
alone, so that they can be rerun without the rest of the bench.

    .venv/bin/python benchmarks/projection_floors.py --threads 2 [--dims 1,100,1000,10000] [--json FILE]
"""

from __future__ import annotations

import argparse
import json

import torch

from intrinsic_dim.kernelbench import MINILM_D, Floor, bench_fastfood, format_projection_table, stamp_rates
from intrinsic_dim.kernels import native


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--dims", default="1,100,1000,10000", help="comma-separated d")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--json", default=None, help="write the records to this file")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    lib = native.load()
    if lib is None:
        raise SystemExit("the native kernels are unavailable: nothing to measure")
    floor = Floor(15)
    records = stamp_rates([bench_fastfood(MINILM_D, int(d), floor, args.repeats) for d in args.dims.split(",")], floor)
    print(f"native kernel: {lib.isa}; threads: {args.threads}; copy bandwidth {floor.bandwidth_gbs:.1f} GB/s; "
          f"add rate {floor.add_rate / 1e9:.1f} G/s; hash rate {floor.hash_rate / 1e9:.2f} G/s")
    print(format_projection_table(records))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(records, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
