"""Build the native CPU kernels into the package directory: ``python -m intrinsic_dim.kernels.build``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from intrinsic_dim.kernels import toolchain


def main(argv: list[str] | None = None) -> int:
    """Build the best variant this CPU runs (or the one asked for); remove stale builds."""
    ap = argparse.ArgumentParser(prog="python -m intrinsic_dim.kernels.build", description=__doc__)
    ap.add_argument("--isa", choices=sorted(toolchain.ISA_FLAGS), help="build this variant (default: best supported)")
    ap.add_argument("--out", type=Path, default=toolchain.PACKAGE_DIR, help="output directory (default: the package)")
    args = ap.parse_args(argv)
    toolchain.remove_stale(args.out)
    errors = []
    for isa in [args.isa] if args.isa else toolchain.supported_isas():
        try:
            path = toolchain.build(isa, args.out)
        except toolchain.BuildError as e:
            errors.append(str(e))
            continue
        print(f"built {path} ({isa})")
        return 0
    print("\n".join(errors), file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
