"""The ``intrinsic-dim`` command: measure, train, evaluate, merge, report, experiment, pretrain, bench.

It parses (:mod:`intrinsic_dim.cliargs`: the flags, ``--config FILE``, the checks before any work), calls the
application layer (:mod:`intrinsic_dim.runs`) and prints.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Sequence

from intrinsic_dim.cliargs import PART_ENDED, parse
from intrinsic_dim.interrupts import PartEnded, sigterm_as_interrupt, stop_after
from intrinsic_dim.spec import MeasureSpec

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


def _check_results(run_dirs: Sequence[str]) -> None:
    """Refuse a run directory whose d90.json is missing, unreadable or not a JSON object, naming the file (before any plot)."""
    for run_dir in run_dirs:
        path = Path(run_dir) / "d90.json"
        if not path.is_file():
            continue  # the report's own message says to run measure first
        try:
            res = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError, RecursionError) as e:
            raise ValueError(f"{path} cannot be read as JSON ({type(e).__name__}: {e}): rerun `intrinsic-dim measure --run-dir "
                             f"{run_dir}` to rewrite it (finished trials are kept)") from None
        if not isinstance(res, dict):
            raise ValueError(f"{path} holds a JSON {type(res).__name__}, not the object `measure` writes: rerun `intrinsic-dim "
                             f"measure --run-dir {run_dir}` to rewrite it (finished trials are kept)")


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def cmd_measure(args: argparse.Namespace) -> int:
    from intrinsic_dim.report import format_bracket, format_interval, threshold_rule
    from intrinsic_dim.runs import run_measure

    spec: MeasureSpec = args.spec
    outcome = run_measure(spec, args.run_dir, progress=not args.quiet)
    result, run_dir = outcome.result, outcome.run_dir
    res, fraction = result.to_dict(), spec.search.fraction
    name = f"{'r' if spec.trial.method == 'lora' else 'd'}{round(100 * fraction)}"
    rule = (f"{threshold_rule(res)}, baseline {result.baseline:.4f}" if result.lower_is_better
            else f"{result.threshold:.4f} = {fraction:g} x baseline {result.baseline:.4f}")
    if result.d90 is not None:
        largest = max(p["d"] for p in result.points)
        interval = f", interval {format_interval(result.interval, largest)}" if result.interval else ""
        print(f"\n{name} = {result.d90:,}, {result.trainable_params:,} trained parameters (bracket {format_bracket(result.bracket)}, "
              f"interpolated crossing {result.crossing:,.0f}{interval}); threshold {rule}")
    elif result.status == "baseline_only":
        print(f"\nfull fine-tuning baseline: test {result.metric} {result.baseline:.4f} ({result.baseline_source}), "
              f"{result.budget['full_steps']:,} steps, {result.budget['full_lr_policy']}")
    else:
        print(f"\n{name} not found.")
    for n in result.notes:
        if n not in outcome.task_notes:
            print(f"note: {n}")
    print(("" if not outcome.plots else f"plot: {', '.join(map(str, outcome.plots))}\n") +
          f"report: {outcome.report}\nwall time {_duration(result.wall_s)}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from intrinsic_dim.runs import run_train

    _check_out(args.out)
    t = run_train(args.spec, args.d, args.seed, args.out, progress=not args.quiet)
    if t.rank > 0:
        return 0
    result = t.result
    if not result.ok:
        print(f"training {result.status}: {result.error}", file=sys.stderr)
        return 1
    ranks = f" on {t.processes} processes" if t.processes > 1 else ""
    print(f"trained {result.trainable:,} numbers in {result.steps} steps{ranks} ({result.wall_s:.0f}s); {args.spec.trial.select} "
          f"checkpoint: validation {t.metric} {result.val_metric:.4f}, test {result.metric:.4f}; adapter saved to {t.out}/")
    return 0


def _check_out(path: str) -> None:
    """Refuse an --out that cannot receive files, before any training."""
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file: pass a directory")
    parent = next((p for p in (out, *out.parents) if p.exists()), Path("."))
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"--out {out} is not writable (no write permission on {parent}): pass a writable --out")


def cmd_evaluate(args: argparse.Namespace) -> int:
    from intrinsic_dim.runs import run_evaluate

    print(json.dumps(run_evaluate(args.spec, args.adapter, given=args.given, seed=args.seed, batch_size=args.batch_size), indent=2))
    return 0


def cmd_merge(args: argparse.Namespace) -> int:
    from intrinsic_dim.runs import run_merge

    out = run_merge(args.adapter, args.out, model=args.model, task=args.task, seed=args.seed, max_length=args.max_length)
    print(f"merged model written to {out}/")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from intrinsic_dim.report import load_result, report_runs
    from intrinsic_dim.store import RunDirError, check_writable

    _check_results(args.run_dirs)
    for run_dir in args.run_dirs:
        load_result(run_dir)
    try:
        check_writable(args.out or args.run_dirs[0])
    except RunDirError as e:
        raise RunDirError(f"{e}; pass --out to write the plots and report elsewhere") from None
    plots, rep = report_runs(args.run_dirs, args.out)
    print(f"plot: {', '.join(map(str, plots))}\nreport: {rep}")
    return 0


def cmd_experiment(args: argparse.Namespace) -> int:
    from intrinsic_dim.runs import plan_experiment, run_experiment

    if args.dry_run:
        from intrinsic_dim.plan import format_plan

        print(format_plan(plan_experiment(args.file)))
        return 0

    command = " ".join(["intrinsic-dim", *sys.argv[1:]]) if sys.argv[1:2] == ["experiment"] else f"intrinsic-dim experiment {args.file}"
    summary = run_experiment(args.file, out=args.out, only=args.only, threads=args.threads, report_to=args.report_to,
                             progress=not args.quiet, summary_only=args.summary_only, command=command)
    print(f"summary: {summary}")
    return 0


def cmd_pretrain(args: argparse.Namespace) -> int:
    from intrinsic_dim.pretrain import PretrainConfig
    from intrinsic_dim.runs import run_pretrain

    def config(ns: argparse.Namespace) -> PretrainConfig:
        options = {k: v for k, v in vars(ns).items() if k not in ("verb", "config", "quiet", "file_only")}
        options["out"] = options["out"] or f"runs/pretrain-{ns.size}"
        options["size"] = None if ns.size == "custom" else ns.size
        return PretrainConfig(**options)

    if getattr(args, "file_only", None) is not None:  # the file alone must hold valid values, whatever flags replace
        try:
            config(args.file_only)
        except ValueError as e:
            raise ValueError(f"{args.config}: {e}") from None
    cfg = config(args)
    try:
        summary = run_pretrain(cfg, progress=not args.quiet)
    except KeyboardInterrupt:
        print(f"\nintrinsic-dim pretrain: interrupted; its checkpoints are kept: rerun the same command to resume from the "
              f"latest one in {cfg.out}/", file=sys.stderr)
        return 130
    last = summary["checkpoints"][-1]
    loss = f"; held-out MLM loss {last['eval_loss']:.4f}" if last["eval_loss"] is not None else ""
    print(f"step {summary['step']:,} of {summary['max_steps']:,}{loss}; {len(summary['checkpoints'])} checkpoints in {cfg.out}/ "
          f"(each a model for `intrinsic-dim measure --model {last['path']}`); loss curve {cfg.out}/loss.png")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``intrinsic-dim`` command."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["bench"]:
        from intrinsic_dim.bench import main as bench_main

        return bench_main(argv[1:])
    try:
        args = parse(argv)
    except ValueError as e:  # a spec that cannot run: one line, exit 2, nothing touched
        print(f"intrinsic-dim {argv[0] if argv else ''}: error: {e}", file=sys.stderr)
        return 2
    verbs = {"measure": cmd_measure, "train": cmd_train, "evaluate": cmd_evaluate, "merge": cmd_merge, "report": cmd_report,
             "experiment": cmd_experiment, "pretrain": cmd_pretrain}
    with sigterm_as_interrupt():
        try:
            _quiet_hub()
            stop_after(None if getattr(args, "stop_after", None) is None else 60 * args.stop_after)
            return verbs[args.verb](args)
        except (ValueError, FileNotFoundError, KeyError) as e:
            print(f"intrinsic-dim {args.verb}: error: {e}", file=sys.stderr)
            return 2
        except PartEnded:
            print(f"\nintrinsic-dim {args.verb}: part ended after {args.stop_after:g} min at a trial boundary; finished trials are "
                  "kept: rerun the same command to continue.", file=sys.stderr)
            return PART_ENDED
        except KeyboardInterrupt:
            resume = " finished trials are kept; rerun the same command to resume." if args.verb in ("measure", "experiment") else ""
            print(f"\nintrinsic-dim {args.verb}: interrupted.{resume}", file=sys.stderr)
            return 130


def _quiet_hub() -> None:
    """No download progress bars from transformers (where installed)."""
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    except ImportError:
        pass


if __name__ == "__main__":
    sys.exit(main())
