"""Wall time of wrapping a random bf16 Llama-shaped model in a SubspaceModel, with the normaliser's fast
path (native squared Gaussians) or the torch reference it replaced (what every version before it ran).

    PYTHONPATH=src python benchmarks/wrap_time.py --shape llama-1b [--reference] [--said]
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import time

import torch

from intrinsic_dim import SubspaceModel
from intrinsic_dim.kernels import segment
from intrinsic_dim.llamabench import LLAMA_SHAPES, build_llama, llama_spec


def main(argv: list[str] | None = None) -> int:
    """Build the model, time one wrap, print the time and where it went."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", choices=sorted(LLAMA_SHAPES), default="llama-125m")
    ap.add_argument("--reference", action="store_true", help="the torch reference normaliser (the code before)")
    ap.add_argument("--said", action="store_true")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.reference:
        segment.native.load = lambda: None  # the module's own reference: exactly the path every earlier version ran
    model = build_llama(llama_spec("did", args.shape))
    prof = cProfile.Profile()
    t = time.perf_counter()
    prof.enable()
    SubspaceModel(model, d=1000, said=args.said)
    prof.disable()
    wall = time.perf_counter() - t
    n = sum(p.numel() for p in model.parameters())
    print(f"{args.shape} ({n / 1e9:.2f}B bf16), {'reference' if args.reference else 'fast'} normaliser, "
          f"{'SAID' if args.said else 'DID'} d=1000, {args.threads} thread(s): wrap {wall:.2f} s")
    pstats.Stats(prof).sort_stats("cumtime").print_stats(8)
    return 0


if __name__ == "__main__":
    sys.exit(main())
