"""Wall time of one d90 sweep on two local worker processes against the same sweep in one process.

Run on an otherwise idle machine (nothing else timed or running):
    .venv/bin/python benchmarks/workers.py
It prints both wall times, the ratio, and checks that both sweeps give the same points.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SWEEP = ["measure", "--model", "fc-784-200-200-10", "--task", "mnist-5k", "--did", "--baseline", "1.0", "--max-train", "2000",
         "--max-eval", "500", "--dims", "100,300,1000,3000", "--epochs", "10", "--seeds", "4", "--threads", "1", "--quiet"]


def sweep(run_dir: Path, workers: int) -> tuple[float, dict]:
    """Wall seconds of the sweep (a fresh process, a fresh run directory) and its d90.json."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "intrinsic_dim.cli", *SWEEP, "--workers", str(workers), "--run-dir", str(run_dir)],
                   check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start, json.loads((run_dir / "d90.json").read_text())


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        one, r1 = sweep(Path(tmp) / "one", 1)
        two, r2 = sweep(Path(tmp) / "two", 2)
    same = r1["points"] == r2["points"]
    print(f"sweep of {len(r1['trials'])} trials: 1 process {one:.1f} s, 2 workers {two:.1f} s, "
          f"ratio two/one {two / one:.2f}; same points: {same}")


if __name__ == "__main__":
    main()
