"""The ``intrinsic-dim`` command's arguments: the parser of every verb and the checks that run before any work.

The flags of ``measure`` and ``train`` are generated from :class:`~intrinsic_dim.spec.MeasureSpec`'s fields; every verb
takes ``--config FILE`` (YAML or JSON, keys named like the long flags), and flags given on the command line override it.
"""

from __future__ import annotations

import argparse
import re
from typing import Any, Sequence

from intrinsic_dim.configfile import load_mapping, show
from intrinsic_dim.spec import PARTS, MeasureSpec, check_values, spec_fields
from intrinsic_dim.version import __version__

DESCRIPTION = "The intrinsic-dim command: measure, train, evaluate, merge, report, experiment, pretrain, bench."
CLI_ONLY = {"measure": {"run_dir", "quiet", "stop_after"}, "train": {"d", "seed", "out", "quiet"}, "evaluate": {"adapter", "seed", "batch_size", "quiet"}}
"""Options of a verb that describe this invocation rather than the run: allowed in its --config file too."""
PART_ENDED = 75
"""Exit status of a part that ended at --stop-after (EX_TEMPFAIL: not finished, rerun to continue)."""
TRAIN_PARTS = ("data", "trial")
TRAIN_RUN_FIELDS = ("threads", "report_to")


def _ints(s: str) -> list[int]:
    try:
        return [int(x) for x in s.replace(",", " ").split()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integers separated by commas, got {s!r}") from None


def _spec_flags(p: argparse.ArgumentParser, parts: Sequence[str], run_fields: Sequence[str] | None = None) -> None:
    """One flag per spec field of ``parts`` (and the named run fields), in a group per part; a flag not given is
    absent from the namespace, so the config file and the spec's defaults fill it in that order."""
    groups = {part: p.add_argument_group(part) for part in parts}
    for part, f in spec_fields():
        if part not in parts and not (run_fields and part == "run" and f.name in run_fields):
            continue
        g = groups.get(part) or groups.setdefault(part, p.add_argument_group(part))
        flag, meta = "--" + f.name.replace("_", "-"), f.metadata
        shown = "none" if f.default in (None, ()) else (",".join(map(str, f.default)) if isinstance(f.default, tuple) else f.default)
        text = meta["help"].replace("%", "%%") + f" (default: {shown})"
        if meta["kind"] == "flag":
            g.add_argument(flag, dest=f.name, action="store_true", default=argparse.SUPPRESS, help=text)
        elif meta["kind"] == "texts":
            g.add_argument(flag, dest=f.name, nargs="+", default=argparse.SUPPRESS, metavar=f.name.upper(), help=text)
        else:
            g.add_argument(flag, dest=f.name, default=argparse.SUPPRESS, choices=meta["choices"], metavar=None if meta["choices"]
                           else f.name.upper(), help=text)
        if f.name == "method":
            g.add_argument("--said", dest="method", action="store_const", const="said", default=argparse.SUPPRESS,
                           help="the same as --method said")
            g.add_argument("--did", dest="method", action="store_const", const="did", default=argparse.SUPPRESS,
                           help="the same as --method did (direct intrinsic dimension, no lambda)")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quiet", action="store_true", default=argparse.SUPPRESS, help="no progress bars")
    p.add_argument("--config", default=None, help="YAML/JSON file of options; flags override it")


def _stop_after_flag(p: argparse.ArgumentParser, default: Any) -> None:
    p.add_argument("--stop-after", type=float, default=default, metavar="MINUTES",
                   help="run as a part: start no new trial after this many minutes, keep every finished one and exit with "
                   f"status {PART_ENDED}; rerun the same command to continue")


def plain(text: str) -> str:
    """Docstring text as a terminal shows it: reStructuredText's ``literals`` and :role:`targets` without their markup."""
    text = re.sub(r":[a-z]+:`~?([^`]+)`", lambda m: m.group(1).rsplit(".", 1)[-1] if m.group(0).count("~") else m.group(1), text)
    return re.sub(r"``([^`]+)``", r"\1", text)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="intrinsic-dim", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"intrinsic-dim {__version__}")
    sub = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    m = sub.add_parser("measure", help="measure d90 of a model on a task (the main job)",
                       description="Measure d90: the smallest subspace dimension reaching a fraction of full fine-tuning. "
                       "Resumable: rerun the same command on the same --run-dir.")
    _spec_flags(m, tuple(PARTS))
    m.add_argument("--run-dir", default=argparse.SUPPRESS, help="results directory (default: runs/<model>-<task>-<method>)")
    _stop_after_flag(m, argparse.SUPPRESS)
    _common(m)

    t = sub.add_parser("train", help="one subspace fine-tune at a given d; saves an adapter",
                       description="Fine-tune in a d-dimensional subspace and save the adapter (adapter_config.json + adapter_model.safetensors).")
    _spec_flags(t, TRAIN_PARTS, TRAIN_RUN_FIELDS)
    t.add_argument("--d", type=int, default=argparse.SUPPRESS, help="subspace dimension, counting lambda for SAID (default: 1000)")
    t.add_argument("--seed", type=int, default=argparse.SUPPRESS, help="projection, head and data-order seed (default: 0)")
    t.add_argument("--out", default=argparse.SUPPRESS, help="adapter directory (default: adapter)")
    _common(t)

    e = sub.add_parser("evaluate", help="evaluate a model (with an adapter) on a task",
                       description="Evaluate the base model, or base model + adapter, on the task's test split.")
    _spec_flags(e, ("data",), ("threads",))
    e.add_argument("--adapter", default=argparse.SUPPRESS, help="adapter directory made by `train` (its model, task and seed are used unless given)")
    e.add_argument("--seed", type=int, default=argparse.SUPPRESS, help="head initialisation seed (default: the adapter's, else 0)")
    e.add_argument("--batch-size", type=int, default=argparse.SUPPRESS, help="evaluation batch size (default: 128)")
    _common(e)

    g = sub.add_parser("merge", help="write theta0 + P(z) into the model and save it as a plain model",
                       description="Merge an adapter into its base model and save the result (Hugging Face folder or safetensors).")
    g.add_argument("adapter", help="adapter directory made by `train`")
    g.add_argument("--out", required=True, help="output directory")
    g.add_argument("--model", default=None, help="base model (default: the adapter's)")
    g.add_argument("--task", default=None, help="task, for the classification head's size (default: the adapter's)")
    g.add_argument("--seed", type=int, default=None, help="head initialisation seed (default: the adapter's)")
    g.add_argument("--max-length", type=int, default=None, help="token truncation length (default: the adapter's, else 128)")
    g.add_argument("--config", default=None, help="YAML/JSON file of options; flags override it")

    r = sub.add_parser("report", help="plot and report one or several runs",
                       description="Write curve.png and report.md for the given run directories (several: overlaid curves and one comparison table).")
    r.add_argument("run_dirs", nargs="+", help="run directories made by `measure`")
    r.add_argument("--out", default=None, help="output directory (default: the first run directory)")

    x = sub.add_parser("experiment", help="run an experiment file's measure runs and summarise them",
                       description="Run the `measure` runs named in an experiment YAML file (each resumable: rerun the same "
                       "command to continue), then write summary.json, report.md and plots (PNG + PDF) to experiments/results/<name>/.")
    x.add_argument("file", help="experiment YAML file (see experiments/*.yaml)")
    x.add_argument("--only", nargs="+", default=None, metavar="RUN", help="run only these runs (a part); the summary covers every finished run")
    x.add_argument("--out", default=None, help="results directory (default: experiments/results/<name>)")
    x.add_argument("--threads", type=int, default=None, help="torch CPU threads for every run (pin it so runs compare)")
    x.add_argument("--report-to", default=None, choices=["none", "tensorboard", "mlflow"],
                   help="log every run's trials to TensorBoard or MLflow (default: each run's own, else none)")
    x.add_argument("--summary-only", action="store_true", help="run nothing; rewrite summary and plots from finished runs")
    x.add_argument("--dry-run", action="store_true", help="run nothing, write nothing: check every run's options and print each "
                   "run's model size, trials at most, steps and estimated GPU hours")
    x.add_argument("--quiet", action="store_true", help="no progress bars")
    _stop_after_flag(x, None)

    _pretrain_parser(sub)

    b = sub.add_parser("bench", help="kernel and projection benchmarks", add_help=False,
                       description="Benchmarks of the FWHT and Fastfood kernels; see `intrinsic-dim bench --help`.")
    b.add_argument("rest", nargs=argparse.REMAINDER)
    return parser


def _pretrain_parser(sub: argparse._SubParsersAction) -> None:
    from intrinsic_dim.pretrain import CORPORA, SIZES

    p = sub.add_parser("pretrain", help="MLM pre-training of a BERT-style encoder from scratch, with checkpoints for `measure`",
                       description="Masked-language-model pre-training of a BertForMaskedLM from scratch on offline text. Saves "
                       "checkpoint-<step>/ Hugging Face folders (each usable as `measure --model`), log.csv, checkpoints.json and "
                       "loss.png/pdf. Resumable: rerun the same command on the same --out.")
    g = p.add_argument_group("model")
    g.add_argument("--size", default="bert-mini", help=f"one of {', '.join(SIZES)}, or custom (then give all four flags below, which otherwise override the "
                   "size's shape) (default: %(default)s)")
    g.add_argument("--layers", type=int, default=None, help="transformer layers")
    g.add_argument("--hidden", type=int, default=None, help="hidden size")
    g.add_argument("--heads", type=int, default=None, help="attention heads (must divide --hidden)")
    g.add_argument("--intermediate", type=int, default=None, help="feed-forward size")
    g.add_argument("--tokenizer", default="minilm-l6",
                   help="minilm-l6 (the packaged MiniLM-L6 WordPiece), wordpiece-N (train N tokens on the corpus), or a tokenizer folder (default: %(default)s)")
    g = p.add_argument_group("data")
    g.add_argument("--corpus", nargs="+", default=["newsgroups", "reuters"],
                   help=f"packaged corpora ({', '.join(CORPORA)}: their training splits) and/or text files or folders (default: %(default)s)")
    g.add_argument("--max-length", type=int, default=128, help="tokens per training block (default: %(default)s)")
    g.add_argument("--eval-blocks", type=int, default=128, help="blocks held out for the checkpoints' MLM loss (default: %(default)s)")
    g = p.add_argument_group("training")
    g.add_argument("--max-steps", type=int, default=1000, help="updates; the schedule decays to 0 here (default: %(default)s)")
    g.add_argument("--batch-size", type=int, default=32, help="blocks per update (default: %(default)s)")
    g.add_argument("--lr", type=float, default=5e-4, help="AdamW peak learning rate (default: %(default)s)")
    g.add_argument("--warmup", type=int, default=None, help="linear warm-up steps (default: 6%% of --max-steps)")
    g.add_argument("--weight-decay", type=float, default=0.01, help="(default: %(default)s)")
    g.add_argument("--clip", type=float, default=1.0, help="gradient-norm clip (default: %(default)s)")
    g.add_argument("--mask-prob", type=float, default=0.15, help="fraction of tokens that are MLM targets (default: %(default)s)")
    g.add_argument("--seed", type=int, default=0, help="initialisation, data order, masking and dropout seed (default: %(default)s)")
    g.add_argument("--threads", type=int, default=None, help="torch CPU threads; bit-identical results need the same count (default: torch's choice)")
    g = p.add_argument_group("output")
    g.add_argument("--out", default=None, help="run directory (default: runs/pretrain-<size>)")
    g.add_argument("--save-every", type=int, default=200, help="checkpoint every N steps, besides step 0 and the last (default: %(default)s)")
    g.add_argument("--save-at", type=_ints, default=[], help="more checkpoint steps, e.g. 50,100 (early ones for a trajectory)")
    g.add_argument("--stop-at", type=int, default=None, help="stop after this step (checkpointed) without changing the schedule; rerun later to go on")
    g.add_argument("--quiet", action="store_true", help="no progress bar")
    g.add_argument("--config", default=None, help="YAML/JSON file of options; flags override it")


def _coerce(action: argparse.Action, value: Any, parser: argparse.ArgumentParser) -> Any:
    """A config-file value of a hand-written verb's flag, checked as the flag's own type and choices would be."""
    try:
        if value is None and action.default is not None:
            raise TypeError(f"expected a value (default {action.default!r}), got null")
        if isinstance(action, argparse._StoreTrueAction):
            if not isinstance(value, bool):
                raise TypeError(f"expected true or false, got {show(value)}")
        elif action.type is _ints:
            value = _ints(value) if isinstance(value, str) else [int(v) for v in (value if isinstance(value, list) else [value])
                                                                  if isinstance(v, int) and not isinstance(v, bool)] or _bad(value)
        elif action.type in (int, float):
            if value is not None:
                if isinstance(value, bool) or not isinstance(value, (int, float, str)) or (action.type is int and isinstance(value, float)):
                    raise TypeError(f"expected {'an integer' if action.type is int else 'a number'}, got {show(value)}")
                value = action.type(value)
        elif action.nargs in ("+", "*"):
            value = value if isinstance(value, list) else [value]
            if not value or not all(isinstance(v, str) for v in value):
                raise TypeError(f"expected a list of text, got {show(value)}")
        elif value is not None and not isinstance(value, str):
            raise TypeError(f"expected text, got {show(value)}")
        if action.choices and value not in action.choices:
            raise ValueError(f"expected one of {list(action.choices)}, got {show(value)}")
    except (TypeError, ValueError, argparse.ArgumentTypeError) as e:
        parser.error(f"config option {action.dest}: {e}")
    return value


def _bad(value: Any) -> Any:
    raise TypeError(f"expected integers, got {show(value)}")


RANGES = {"threads": (lambda v: 1 <= v <= 1024, "an integer from 1 to 1024"), "seed": (lambda v: 0 <= v < 2**63, "an integer from 0 to 2**63 - 1"),
          "d": (lambda v: v >= 1, "a positive integer"), "max_length": (lambda v: v >= 1, "a positive integer"),
          "batch_size": (lambda v: v >= 1, "a positive integer"), "stop_after": (lambda v: v > 0, "a positive number of minutes")}
"""Ranges of the hand-written verbs' numeric options (the spec checks its own)."""


def parse(argv: Sequence[str]) -> argparse.Namespace:
    """Parsed arguments; for measure and train, ``args.spec`` is the MeasureSpec of flags over --config over defaults."""
    parser = build_parser()
    args = parser.parse_args(argv)
    cfg = load_mapping(args.config) if getattr(args, "config", None) else {}
    cfg = {str(k).replace("-", "_"): v for k, v in cfg.items()}
    if args.verb in CLI_ONLY:
        check_values(cfg, str(args.config))
        for dest in sorted(set(cfg) & {"d", "seed", "batch_size"} & CLI_ONLY[args.verb]):
            if not (isinstance(cfg[dest], int) and not isinstance(cfg[dest], bool) and RANGES[dest][0](cfg[dest])):
                raise ValueError(f"{args.config}: {dest} must be {RANGES[dest][1]}, got {show(cfg[dest])}")
        given = {k: v for k, v in vars(args).items() if k not in ("verb", "config")}
        local = {k: given.pop(k, cfg.pop(k, None)) for k in CLI_ONLY[args.verb]}
        if args.verb != "measure":
            parts = TRAIN_PARTS if args.verb == "train" else ("data",)
            allowed = {f.name for part, f in spec_fields() if part in parts or f.name in TRAIN_RUN_FIELDS} | {"said"}
            extra = sorted(set(cfg) - allowed)
            if extra:
                raise ValueError(f"unknown option(s) in {args.config}: {extra}; valid: {sorted(allowed | CLI_ONLY[args.verb])}")
        args.given = set(cfg) | set(given)
        args.spec = MeasureSpec.from_dict(cfg | given, source=args.config or "the options")
        args.quiet = bool(local["quiet"])
        if args.verb == "measure":
            args.run_dir, args.stop_after = local["run_dir"], local["stop_after"]
            if args.stop_after is not None and not (isinstance(args.stop_after, (int, float)) and not isinstance(args.stop_after, bool)
                                                    and RANGES["stop_after"][0](args.stop_after)):
                raise ValueError(f"--stop-after must be {RANGES['stop_after'][1]}, got {show(args.stop_after)}")
        elif args.verb == "evaluate":
            args.adapter, args.seed = local["adapter"], local["seed"]
            args.batch_size = 128 if local["batch_size"] is None else local["batch_size"]
            for dest in ("seed", "batch_size"):
                value = getattr(args, dest)
                if value is not None and not (isinstance(value, int) and RANGES[dest][0](value)):
                    raise ValueError(f"--{dest.replace('_', '-')} must be {RANGES[dest][1]}, got {show(value)}")
        else:
            args.d = 1000 if local["d"] is None else local["d"]
            args.seed = 0 if local["seed"] is None else local["seed"]
            args.out = local["out"] or "adapter"
            for dest in ("d", "seed"):
                value = getattr(args, dest)
                if not (isinstance(value, int) and RANGES[dest][0](value)):
                    raise ValueError(f"--{dest} must be {RANGES[dest][1]}, got {show(value)}")
        return args
    if cfg:
        sub = parser._subparsers._group_actions[0].choices[args.verb]  # type: ignore[union-attr]
        actions = {a.dest: a for a in sub._actions}
        unknown = sorted(set(cfg) - set(actions) - {"help"})
        if unknown:
            parser.error(f"unknown option(s) in {args.config}: {unknown}; valid: {sorted(set(actions) - {'help', 'config'})}")
        coerced = {k: _coerce(actions[k], v, parser) for k, v in cfg.items()}
        for dest, value in coerced.items():
            if dest in RANGES and value is not None and not RANGES[dest][0](value):
                parser.error(f"config option {dest} in {args.config} must be {RANGES[dest][1]}, got {show(value)}")
        sub.set_defaults(**coerced)
        args = parser.parse_args(argv)
        args.file_only = parser.parse_args([args.verb]) if args.verb == "pretrain" else None
    for dest, (ok, what) in RANGES.items():
        value = getattr(args, dest, None)
        if value is not None and not ok(value):
            parser.error(f"--{dest.replace('_', '-')} must be {what}, got {show(value)}")
    return args
