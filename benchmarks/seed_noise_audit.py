"""Which committed d90s the sequential rule's old seed noise decided on too few seeds.

Until 2026-12-07 the sequential seed rule pooled the baseline's seeds (full fine-tuning) with the points' seeds into the
noise that settles a point, so a quiet baseline let one seed settle a noisy subspace point. For every committed run
whose d90.json records the sequential rule with that noise, this reads its trials and prints: the baseline's seed
standard deviation, the points' own pooled one, the points the rule settled on fewer seeds than ``--seeds``, and which of
those the points' noise would have left open (|mean - tau| <= 3 sigma / sqrt(n), sigma the points' noise over the whole
finished run; every such point when the points have no noise of their own). A run whose baseline is given (no seeds)
is not affected: its old noise was the points' already. A d90 is "at risk" when the run is affected and its own point or
the largest failing point below it is open.
Run: ``.venv/bin/python benchmarks/seed_noise_audit.py [--json benchmarks/seed_noise_audit.json]`` (seconds).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

from intrinsic_dim.search.result import seed_noise_of
from intrinsic_dim.search.stats import pooled_sd
from intrinsic_dim.search.sweep import SETTLE_Z

ROOT = Path(__file__).resolve().parents[1]


def audit(result: dict[str, Any]) -> dict[str, Any]:
    """The noise estimates of one sequential run and the points its old noise settled that its own would not."""
    points = {p["d"]: [v for v in p["values"] if v == v] for p in result["points"]}
    tau, seeds = result["threshold"], result["seeds"]
    sign = -1.0 if result.get("lower_is_better") else 1.0
    sigma = pooled_sd(list(points.values()))
    short = {d: v for d, v in points.items() if v and len(v) < seeds}
    opened = sorted(d for d, v in short.items()
                    if sigma is None or abs(sum(v) / len(v) - tau) <= SETTLE_Z * sigma / math.sqrt(len(v)))
    d90, lo = result.get("d90"), (result.get("bracket") or [None])[0]
    affected = len(result.get("baseline_values") or []) > 1  # a given baseline has no seeds: the old noise was the points'
    return {"baseline_sd": pooled_sd([result.get("baseline_values") or []]), "points_sd": sigma, "affected": affected,
            "short_points": len(short), "points": len(points), "open_points": opened,
            "open_margins": {d: round(sign * (sum(points[d]) / len(points[d]) - tau), 4) for d in opened},
            "d90": d90, "bracket": result.get("bracket"), "at_risk": affected and bool(d90) and (d90 in opened or lo in opened)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", default=None, help="write the records to this file")
    args = p.parse_args(argv)
    rows = []
    for path in sorted((ROOT / "experiments" / "results").glob("*/*/d90.json")):
        result = json.loads(path.read_text())
        if seed_noise_of(result) != "baseline+points" or "points" not in result:
            continue
        rows.append({"run": f"{path.parent.parent.name}/{path.parent.name}"} | audit(result))
    fmt = lambda v: "-" if v is None else f"{v:.4f}"  # noqa: E731
    print("| run | baseline sd | points sd | points on fewer seeds | left open by the points' noise (d: margin) | d90 | at risk |")
    print("|---|---:|---:|---:|---|---:|---|")
    for r in (r for r in rows if r["affected"]):
        opened = ", ".join(f"{d:,}: {m:+.3f}" for d, m in r["open_margins"].items()) or "none"
        print(f"| {r['run']} | {fmt(r['baseline_sd'])} | {fmt(r['points_sd'])} | {r['short_points']} of {r['points']} | {opened} | "
              f"{r['d90'] if r['d90'] is None else format(r['d90'], ',')} | {'**yes**' if r['at_risk'] else 'no'} |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
