"""The cost of a d90: reference sweeps run with the settings every committed run used ("today") and with the cheaper
ones (sequential seeds, a validation subset for checkpoint selection, no training-sample evaluation), side by side in
one process, on the same machine and threads. Each sweep's cost is also given in units of one full fine-tuning trial
*at today's settings*, so cheaper trials count, not only fewer. ``intrinsic-dim bench --sweep-cost`` (or ``python -m
intrinsic_dim.sweepcost``) prints the table and can write the records as JSON."""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

import torch

from intrinsic_dim.machine import describe
from intrinsic_dim.runs import run_measure
from intrinsic_dim.spec import MeasureSpec
from intrinsic_dim.store import output_file_problem

REFERENCES: dict[str, dict[str, Any]] = {
    "fc-mnist-2000": {"model": "fc-784-200-200-10", "task": "mnist-5k", "max_train": 2000, "max_eval": "all", "epochs": 30,
                      "batch_size": 32, "seeds": 3, "precision": 0.15, "dims": [100, 300, 1000, 3000, 10000], "method": "did"},
    "minilm-tweets-small": {"model": "minilm-l6", "task": "tweet-sentiment", "max_train": 512, "max_eval": 256, "max_steps": 16,
                            "batch_size": 32, "seeds": 3, "precision": 0.3, "dims": [150, 500, 1500, 5000], "method": "said"},
}
"""Reference sweeps: Li et al.'s FC net on 2,000 MNIST digits (the committed li2018_mnist/fc-own-n2000: d90 471, interval
292 - 471) and a small MiniLM-L6 SAID sweep."""
SETTINGS: dict[str, dict[str, Any]] = {
    "today": {"seed_rule": "all", "placement": "bisect", "select_examples": "all", "gap_examples": "test", "private_baseline": True},
    "cheaper": {"seed_rule": "sequential", "placement": "aim", "select_examples": 250, "gap_examples": 0, "private_baseline": True},
}
"""``today``: the settings of every committed run (the defaults until 2026-12-06, the placement until 2026-12-07);
``cheaper``: today's defaults, spelled out."""


def measure_cost(name: str, threads: int, log_dir: Path) -> list[dict[str, Any]]:
    """Both settings of one reference sweep, each in a fresh run directory; one record per setting."""
    records = []
    for setting, options in SETTINGS.items():
        spec = MeasureSpec.from_dict(REFERENCES[name] | options | {"threads": threads})
        run_dir = log_dir / f"{name}-{setting}"
        start = time.perf_counter()
        outcome = run_measure(spec, run_dir, progress=False, log=lambda s: None)
        wall = time.perf_counter() - start
        r = outcome.result
        full = [t["wall_s"] for t in r.trials if t["config"].get("method") == "full"]
        records.append({"reference": name, "setting": setting, "options": options, "wall_s": wall, "trials": len(r.trials),
                        "compute_s": r.compute_s, "full_trial_s": sum(full) / len(full) if full else None,
                        "d90": r.d90, "bracket": list(r.bracket), "interval": list(r.interval) if r.interval else None,
                        "knife_edge": r.knife_edge, "threads": threads, "machine": describe()})
    unit = records[0]["full_trial_s"]
    for rec in records:
        rec["cost_full_trials_today"] = rec["compute_s"] / unit if unit else None
        rec["wall_ratio_to_today"] = rec["wall_s"] / records[0]["wall_s"]
    return records


def format_table(records: Sequence[dict[str, Any]]) -> str:
    """The machine, then one line per sweep: wall time, its ratio to today's, trials, cost in today's full fine-tunings,
    d90 and bracket."""
    lines = [f"machine: {m}" for m in dict.fromkeys(r["machine"] for r in records)]
    lines.append(f"{'reference':22s} {'setting':8s} {'wall s':>8s} {'ratio':>6s} {'trials':>6s} {'cost (full FT)':>14s} {'d90':>6s}  bracket / interval")
    for r in records:
        interval = f" / {r['interval'][0]:.0f} - {r['interval'][1]:.0f}" if r["interval"] and r["interval"][1] else ""
        lines.append(f"{r['reference']:22s} {r['setting']:8s} {r['wall_s']:8.0f} {r['wall_ratio_to_today']:6.2f} {r['trials']:6d} "
                     f"{r['cost_full_trials_today']:14.1f} {r['d90'] or '-':>6}  ({r['bracket'][0]}, {r['bracket'][1]}]{interval}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="intrinsic-dim bench --sweep-cost", description=__doc__.splitlines()[0])
    p.add_argument("references", nargs="*", default=["fc-mnist-2000"], help=f"reference sweeps: {', '.join(REFERENCES)}")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads for every sweep (default: %(default)s)")
    p.add_argument("--json", default=None, help="append the records to this JSON file (a list)")
    args = p.parse_args(argv)
    unknown = sorted(set(args.references) - set(REFERENCES))
    if unknown or args.threads < 1:
        p.error(f"unknown reference(s) {unknown}; choose from {sorted(REFERENCES)}" if unknown else "--threads must be >= 1")
    if args.json and (problem := output_file_problem(args.json)):
        p.error(f"--json {args.json}: {problem}")
    torch.set_num_threads(args.threads)
    records: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="intrinsic-dim-sweep-cost-") as tmp:
        for name in args.references:
            records += measure_cost(name, args.threads, Path(tmp))
            print(format_table(records), flush=True)
    if args.json:
        path = Path(args.json)
        old = json.loads(path.read_text()) if path.is_file() else []
        path.write_text(json.dumps(old + records, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
