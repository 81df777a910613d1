"""The ``intrinsic-dim`` command: measure, train, evaluate, merge, report, experiment, pretrain, bench.

Every verb takes ``--config FILE`` (YAML or JSON, keys named like the long flags, e.g.
``max_train: 2000``); flags given on the command line override the file.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import reprlib
import signal
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Sequence

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


def _ints(s: str) -> list[int]:
    try:
        return [int(x) for x in s.replace(",", " ").split()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integers separated by commas, got {s!r}") from None


def _floats(s: str) -> list[float]:
    try:
        return [float(x) for x in s.replace(",", " ").split()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas, got {s!r}") from None


def _limit(s: str) -> int | None:
    if s.strip().lower() in ("all", "none"):
        return None
    try:
        value = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer or 'all', got {s!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer or 'all', got {s!r}")
    return value


def _data_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model and data")
    from intrinsic_dim.models import list_models
    from intrinsic_dim.tasks import list_tasks

    g.add_argument("--model", default="minilm-l6",
                   help=f"one of {', '.join(list_models())}, or a Hugging Face folder or hub id (default: %(default)s)")
    g.add_argument("--task", default="tweet-sentiment",
                   help=f"one of {', '.join(list_tasks())}, or data files: DIR with train.csv and validation.csv, "
                   "or TRAIN,EVAL (default: %(default)s)")
    g.add_argument("--max-train", type=_limit, default=2000,
                   help="subsample the training split to this many examples, fixed seed, or 'all' (default: %(default)s; "
                   "the output says when it subsamples)")
    g.add_argument("--max-eval", type=_limit, default=1000,
                   help="subsample each of the validation and test halves of the held-out split, or 'all' (default: %(default)s)")
    g.add_argument("--max-length", type=int, default=64, help="token truncation length for text models (default: %(default)s)")
    g.add_argument("--metric", default=None,
                   help="measure on another metric the task offers (default: the task's own): a generative task scored "
                   "by label words offers 'loss', the loss of the true completion (lower is better)")
    g.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default: torch's choice); recorded in a run directory, since conv nets give "
                   "different numbers at different thread counts, and a resume must use the same")
    g.add_argument("--quiet", action="store_true", help="no progress bars")


def _subspace_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("subspace")
    g.add_argument("--projection", default="fastfood", choices=["fastfood", "sparse", "dense"], help="(default: %(default)s)")
    g.add_argument("--layout", default="stacked", choices=["stacked", "per_tensor"], help="Fastfood layout (default: %(default)s)")
    g.add_argument("--normalisation", default="released", choices=["released", "unit"],
                   help="per_tensor column length: sqrt(#tensors) as the released code, or unit (default: %(default)s)")
    g.add_argument("--dense-max-elements", type=int, default=1 << 27,
                   help="largest d * D the dense projection may materialise (default: %(default)s)")
    g.add_argument("--said", dest="said", action="store_true", default=True, help="structure-aware SAID (default)")
    g.add_argument("--did", dest="said", action="store_false", help="direct intrinsic dimension (no lambda)")
    g.add_argument("--groups", default="tensor", choices=["tensor", "module", "block"], help="SAID grouping (default: %(default)s)")


def _train_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("training")
    g.add_argument("--lr", type=float, default=None, help="subspace learning rate (default: 0.1 * sqrt(1000 / d), Adam)")
    g.add_argument("--epochs", type=float, default=1.0, help="epochs per trial (default: %(default)s)")
    g.add_argument("--max-steps", type=int, default=None, help="optimizer steps per trial (overrides --epochs)")
    g.add_argument("--batch-size", type=int, default=32, help="(default: %(default)s)")
    g.add_argument("--eval-every", type=int, default=None,
                   help="evaluate on validation every N steps (default: three times per epoch and at the end)")
    g.add_argument("--select", default="best", choices=["best", "final"],
                   help="report the checkpoint with the best validation metric, or the final one; either is reported "
                   "on the test split (default: %(default)s)")


def _tracking_args(p: argparse.ArgumentParser, default: str | None = "none") -> None:
    p.add_argument("--report-to", default=default, choices=["none", "tensorboard", "mlflow"],
                   help="log every trial's training curve and the sweep's summary to TensorBoard (event files in "
                   "RUN_DIR/tensorboard) or MLflow (MLFLOW_TRACKING_URI, else a file store in RUN_DIR/mlruns); "
                   "needs pip install 'intrinsic-dim[tracking]'" + (" (default: %(default)s)" if default else
                                                                    " (default: each run's own, else none)"))


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="intrinsic-dim", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    m = sub.add_parser("measure", help="measure d90 of a model on a task (the main job)",
                       description="Measure d90: the smallest subspace dimension reaching a fraction of full fine-tuning. "
                       "Resumable: rerun the same command on the same --run-dir.")
    _data_args(m)
    _subspace_args(m)
    _train_args(m)
    g = m.add_argument_group("search")
    g.add_argument("--seeds", type=int, default=1, help="seeds per dimension (default: %(default)s, the CPU demo budget; 3 for a real run)")
    g.add_argument("--fraction", type=float, default=0.9, help="threshold fraction of the baseline (default: %(default)s = d90)")
    g.add_argument("--dims", type=_ints, default=None, help="coarse grid of d, e.g. 100,300,1000 (default: 10,30,...,30000)")
    g.add_argument("--precision", type=float, default=0.3, help="stop bisecting when hi/lo <= 1 + precision (default: %(default)s)")
    g.add_argument("--curve", action="store_true",
                   help="train every --dims point to the full budget and take d90 from them (for figures) instead of searching")
    g.add_argument("--baseline", type=float, default=None, help="use this baseline metric instead of full fine-tuning (e.g. 1.0 for Li et al.'s MNIST)")
    g.add_argument("--baseline-seeds", type=int, default=None, help="full fine-tuning seeds (default: --seeds)")
    g.add_argument("--full-lr", type=float, default=None, help="full fine-tuning learning rate (default: 3e-5 text, 1e-3 images)")
    g.add_argument("--full-epochs", type=float, default=None, help="full fine-tuning epochs (default: --epochs)")
    g.add_argument("--lr-search", type=_floats, default=None, help="candidate subspace rates, tried at --lr-search-d before the search")
    g.add_argument("--lr-search-d", type=int, default=1000, help="(default: %(default)s)")
    g.add_argument("--full-lr-search", type=_floats, default=None,
                   help="candidate full fine-tuning rates, e.g. 1e-5,3e-5,1e-4,3e-4: each trained once (seed 0), the best on "
                   "validation used for every baseline seed (instead of --full-lr)")
    g.add_argument("--run-dir", default=None, help="results directory (default: runs/<model>-<task>-<method>)")
    g.add_argument("--reuse", nargs="+", default=None, metavar="RUN_DIR",
                   help="copy finished trials of identical configuration from these run directories (same model, task "
                   "and data) instead of rerunning them, e.g. a run against its own baseline for one against --baseline 1.0; full "
                   "fine-tuning trials are shared across --method, --projection, --layout and --groups, which they do not read")
    g.add_argument("--wait", action="store_true", help="if another process holds the run directory, wait for it instead of refusing")
    g.add_argument("--workers", type=int, default=1,
                   help="run independent trials (the seeds of a point, baseline seeds, rate candidates) on N local "
                   "processes, each with --threads threads (default: %(default)s, in this process)")
    g.add_argument("--executor", default="local", choices=["local", "ray"],
                   help="where trials run: here or on --workers local processes, or as Ray tasks (pip install "
                   "'intrinsic-dim[ray]') (default: %(default)s)")
    g.add_argument("--ray-address", default=None,
                   help="Ray cluster to join, e.g. auto or ray://HOST:10001 (default: start a local Ray on this machine)")
    g.add_argument("--trial-cpus", type=float, default=None, help="CPUs each Ray trial asks for (default: --threads, else 1)")
    g.add_argument("--trial-gpus", type=float, default=0.0,
                   help="GPUs each Ray trial asks for; a fraction such as 0.5 shares one GPU (default: %(default)s)")
    _tracking_args(g)
    g.add_argument("--config", default=None, help="YAML/JSON file of options; flags override it")
    g = m.add_argument_group("method")
    g.add_argument("--method", default=None, choices=["said", "did", "lora"],
                   help="said / did: the random subspace (the same as --said / --did); lora: search the smallest LoRA "
                   "rank r reaching the same threshold with the same budget, seeds and data (PEFT; --dims are then "
                   "ranks, default 1,2,4,...,64) (default: --said/--did)")
    g.add_argument("--lora-alpha", type=float, default=None, help="LoRA alpha (default: 2 x rank, a constant scale of 2)")
    g.add_argument("--lora-targets", default=None,
                   help="comma-separated module names for LoRA, or all-linear (default: PEFT's for the model type, "
                   "e.g. query,value for BERT, q_proj,v_proj for Llama)")

    t = sub.add_parser("train", help="one subspace fine-tune at a given d; saves an adapter",
                       description="Fine-tune in a d-dimensional subspace and save the adapter (adapter_config.json + adapter_model.safetensors).")
    _data_args(t)
    _subspace_args(t)
    _train_args(t)
    t.add_argument("--d", type=int, required=False, default=1000, help="subspace dimension, counting lambda for SAID (default: %(default)s)")
    t.add_argument("--seed", type=int, default=0, help="projection, head and data-order seed (default: %(default)s)")
    t.add_argument("--out", default="adapter", help="adapter directory (default: %(default)s)")
    _tracking_args(t)
    t.add_argument("--config", default=None, help="YAML/JSON file of options; flags override it")

    e = sub.add_parser("evaluate", help="evaluate a model (with an adapter) on a task",
                       description="Evaluate the base model, or base model + adapter, on the task's test split.")
    _data_args(e)
    e.add_argument("--adapter", default=None, help="adapter directory made by `train` (its model, task and seed are used unless given)")
    e.add_argument("--seed", type=int, default=None, help="head initialisation seed (default: the adapter's, else 0)")
    e.add_argument("--batch-size", type=int, default=128, help="evaluation batch size (default: %(default)s)")
    e.set_defaults(model=None, task=None, max_length=None)
    e.add_argument("--config", default=None, help="YAML/JSON file of options; flags override it")

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
    _tracking_args(x, default=None)
    x.add_argument("--summary-only", action="store_true", help="run nothing; rewrite summary and plots from finished runs")
    x.add_argument("--quiet", action="store_true", help="no progress bars")

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


def _load_config(path: str, parser: argparse.ArgumentParser) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        parser.error(f"config file {path} not found")
    text = p.read_text()
    try:
        if p.suffix == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except Exception as e:  # noqa: BLE001 - any parse error becomes a usage error
        parser.error(f"cannot parse config file {path}: {e}")
    if not isinstance(data, dict):
        parser.error(f"config file {path} must hold a mapping of option names to values")
    return data


_SHORT = reprlib.Repr()
_SHORT.maxlevel, _SHORT.maxlist, _SHORT.maxdict, _SHORT.maxstring, _SHORT.maxother = 2, 4, 4, 60, 60


def _show(value: Any) -> str:
    """A short repr for error messages: a config value can be an arbitrarily large (aliased) structure."""
    return _SHORT.repr(value)


def _scalar(kind: type, value: Any) -> Any:
    """``value`` as an int or float, refusing booleans, containers and lossy conversions (10.7 as an int)."""
    if isinstance(value, str):
        return kind(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and not isinstance(value, int)):
        raise TypeError(f"expected {'an integer' if kind is int else 'a number'}, got {_show(value)}")
    return kind(value)


def _coerce(action: argparse.Action, value: Any, parser: argparse.ArgumentParser) -> Any:
    """A config-file value checked and converted as the flag's own type and choices would be."""
    try:
        if value is None and action.default is not None:
            raise TypeError(f"expected a value (default {action.default!r}), got null")
        if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
            if not isinstance(value, bool):
                raise TypeError(f"expected true or false, got {_show(value)}")
        elif action.type in (_ints, _floats):
            if isinstance(value, str):
                value = action.type(value)
            else:
                scalar = int if action.type is _ints else float
                value = [_scalar(scalar, v) for v in (value if isinstance(value, list) else [value])]
        elif action.type is _limit:
            value = None if value is None else _limit(str(_scalar(int, value)) if not isinstance(value, str) else value)
        elif action.type in (int, float):
            value = None if value is None else _scalar(action.type, value)
        elif action.nargs in ("+", "*") and action.type is None:
            value = value if isinstance(value, list) else [value]
            if not value or not all(isinstance(v, str) for v in value):
                raise TypeError(f"expected a list of text, got {_show(value)}")
        elif value is not None and not isinstance(value, str):
            raise TypeError(f"expected text, got {_show(value)}")
        if action.choices and value not in action.choices:
            raise ValueError(f"expected one of {list(action.choices)}, got {_show(value)}")
    except (TypeError, ValueError, argparse.ArgumentTypeError) as e:
        parser.error(f"config option {action.dest}: {e}")
    return value


def _positive(v: Any) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v) and v > 0


RANGES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "seeds": (lambda v: 1 <= v <= 1000, "an integer from 1 to 1000"),
    "baseline_seeds": (lambda v: 1 <= v <= 1000, "an integer from 1 to 1000"),
    "seed": (lambda v: 0 <= v < 2**63, "an integer from 0 to 2**63 - 1"),
    "fraction": (lambda v: _positive(v) and v <= 1.5, "a number in (0, 1.5]"),
    "precision": (_positive, "a positive number"),
    "baseline": (_positive, "a positive finite number (the full fine-tuning metric to compare against)"),
    "epochs": (lambda v: _positive(v) and v <= 10**6, "a positive finite number"),
    "full_epochs": (lambda v: _positive(v) and v <= 10**6, "a positive finite number"),
    "lr": (_positive, "a positive finite number"),
    "full_lr": (_positive, "a positive finite number"),
    "lr_search": (lambda v: bool(v) and all(_positive(x) for x in v), "positive finite numbers"),
    "full_lr_search": (lambda v: bool(v) and all(_positive(x) for x in v), "positive finite numbers"),
    "dims": (lambda v: bool(v) and all(x >= 1 for x in v), "positive integers"),
    "threads": (lambda v: 1 <= v <= 1024, "an integer from 1 to 1024"),
    "workers": (lambda v: 1 <= v <= 256, "an integer from 1 to 256"),
    "trial_cpus": (_positive, "a positive number"),
    "trial_gpus": (lambda v: math.isfinite(v) and v >= 0, "a number >= 0"),
    "max_steps": (lambda v: v >= 1, "a positive integer"),
    "batch_size": (lambda v: v >= 1, "a positive integer"),
    "eval_every": (lambda v: v >= 1, "a positive integer"),
    "lr_search_d": (lambda v: v >= 1, "a positive integer"),
    "d": (lambda v: v >= 1, "a positive integer"),
    "max_length": (lambda v: v >= 1, "a positive integer"),
    "dense_max_elements": (lambda v: v >= 1, "a positive integer"),
    "lora_alpha": (_positive, "a positive finite number"),
}
"""The range of every numeric option, checked after flags and config files are merged and before any work."""


def _check_ranges(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    for dest, (ok, what) in RANGES.items():
        value = getattr(args, dest, None)
        if value is not None and not ok(value):
            parser.error(f"--{dest.replace('_', '-')} must be {what}, got {_show(value)}")


def _parse(argv: Sequence[str] | None, extra: dict[str, Any] | None = None, source: str = "the experiment file") -> argparse.Namespace:
    """Parsed arguments: flags over ``--config FILE`` (or ``extra``, options given as a mapping) over defaults."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    cfg, source = (_load_config(args.config, parser), args.config) if getattr(args, "config", None) else (extra, source)
    if cfg:
        cfg = {str(k).replace("-", "_"): v for k, v in cfg.items()}
        sub = parser._subparsers._group_actions[0].choices[args.verb]  # type: ignore[union-attr]
        known = {a.dest for a in sub._actions}
        unknown = sorted(set(cfg) - known)
        if unknown:
            parser.error(f"unknown option(s) in {source}: {unknown}; valid: {sorted(known - {'help', 'config'})}")
        actions = {a.dest: a for a in sub._actions}
        cfg = {k: _coerce(actions[k], v, parser) for k, v in cfg.items()}
        sub.set_defaults(**cfg)
        args = parser.parse_args(argv)
    _check_ranges(args, parser)
    return args


def _check_executor(args: argparse.Namespace) -> None:
    """Refuse executor options that contradict each other, or Ray missing, before any work."""
    if getattr(args, "executor", "local") == "local":
        given = [f for f, v in (("--ray-address", args.ray_address), ("--trial-cpus", args.trial_cpus),
                                ("--trial-gpus", args.trial_gpus or None)) if v is not None]
        if given:
            raise ValueError(f"{', '.join(given)} only apply to --executor ray")
        return
    if args.workers > 1:
        raise ValueError("--workers is for --executor local; with --executor ray the cluster's resources and "
                         "--trial-cpus / --trial-gpus decide how many trials run at once")
    from intrinsic_dim.executors import TrialResources, import_ray

    import_ray()
    args.threads = args.threads or max(1, int(args.trial_cpus or 1))
    args.trial_cpus = args.trial_cpus or float(args.threads)
    TrialResources(args.trial_cpus, args.trial_gpus)


def _setup(args: argparse.Namespace) -> None:
    if getattr(args, "executor", None):
        _check_executor(args)
    if getattr(args, "report_to", None):
        from intrinsic_dim.tracking import check_available

        check_available(args.report_to)
    if getattr(args, "workers", 1) > 1 and not args.threads:
        args.threads = max(1, (os.cpu_count() or 1) // args.workers)
    if getattr(args, "threads", None):
        import torch

        torch.set_num_threads(args.threads)
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    except ImportError:
        pass


def _load(args: argparse.Namespace):
    from intrinsic_dim.models import load_model
    from intrinsic_dim.tasks import load_task

    task = load_task(args.task, max_train=args.max_train, max_eval=args.max_eval, seed=0, metric=args.metric)

    def factory(seed: int):
        return load_model(args.model, task, seed=seed, max_length=args.max_length)

    return task, factory


def _trial_template(args: argparse.Namespace):
    from intrinsic_dim.train import TrialConfig

    lora = getattr(args, "method", None) == "lora"
    return TrialConfig(
        method="lora" if lora else "subspace", lora_alpha=args.lora_alpha if lora else None,
        lora_targets=args.lora_targets if lora else None, said=args.said, projection=args.projection, layout=args.layout, groups=args.groups,
        normalisation=args.normalisation, dense_max_elements=args.dense_max_elements,
        lr=args.lr, epochs=args.epochs, max_steps=args.max_steps, batch_size=args.batch_size, eval_every=args.eval_every,
        select=getattr(args, "select", "best"),
    )


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def _executor(args: argparse.Namespace, threads: int):
    """The executor the options name: None (in this process), local worker processes, or Ray."""
    from intrinsic_dim.executors import LocalWorkers, RayExecutor, TrialResources, TrialSpec

    spec = TrialSpec(args.model, args.task, args.max_train, args.max_eval, args.max_length, threads, args.metric)
    if args.executor == "ray":
        return RayExecutor(spec, TrialResources(args.trial_cpus, args.trial_gpus), args.ray_address)
    return LocalWorkers(spec, args.workers) if args.workers > 1 else None


def cmd_measure(args: argparse.Namespace) -> int:
    import torch

    from intrinsic_dim.report import format_bracket, format_interval, plot_curves, threshold_rule, write_report
    from intrinsic_dim.search import BaselineError, measure_d90
    from intrinsic_dim.store import Store, check_writable
    from intrinsic_dim.tracking import make_tracker

    if args.method in ("said", "did"):
        args.said = args.method == "said"
    method = args.method or ("said" if args.said else "did")
    if args.full_lr_search:
        clash = [f for f, v in (("--full-lr", args.full_lr), ("--baseline", args.baseline)) if v is not None]
        if clash:
            raise ValueError(f"--full-lr-search chooses the full fine-tuning rate of a measured baseline: drop {' and '.join(clash)}")
    run_dir = check_writable(args.run_dir or f"runs/{Path(args.model).name}-{Path(args.task).name}-{method}", create=False)
    task, factory = _load(args)  # a bad task or metric is refused before the run directory is made
    check_writable(run_dir)
    trial = _trial_template(args)
    full = replace(trial, method="full", lr=args.full_lr, epochs=args.full_epochs or args.epochs)
    run_config = {
        "model": args.model, "task": args.task, "max_train": args.max_train, "max_eval": args.max_eval,
        "max_length": args.max_length, "threads": torch.get_num_threads(),
    } | ({"metric": args.metric} if args.metric else {})  # absent by default, so runs made before the option still resume
    executor = _executor(args, torch.get_num_threads())
    print(f"d{round(100 * args.fraction)} of {args.model} on {task.name} ({len(task.train):,} train / {len(task.eval):,} validation / "
          f"{len(task.report_split):,} test, metric {task.metric}), "
          f"{'LoRA (PEFT), searching the rank' if method == 'lora' else f'{method.upper()} with {args.projection}'}, "
          f"{'every --dims point' if args.curve else 'search'}; results in {run_dir}/", flush=True)
    for n in task.notes:
        print(f"note: {n}", flush=True)
    try:
        result = measure_d90(
            factory, task, dims=args.dims, seeds=args.seeds, fraction=args.fraction, baseline=args.baseline,
            baseline_seeds=args.baseline_seeds, precision=args.precision, curve=args.curve, trial=trial, full_trial=full,
            lr_candidates=args.lr_search, lr_search_d=args.lr_search_d, full_lr_candidates=args.full_lr_search, run_dir=run_dir, run_config=run_config,
            model_name=args.model, progress=not args.quiet, log=lambda s: print(s, flush=True), wait=args.wait,
            executor=executor, reuse=args.reuse or (), tracker=make_tracker(args.report_to, run_dir, task.metric),
        )
    except BaselineError as e:
        (run_dir / "d90.json").write_text(json.dumps({"status": "no_baseline", "reason": str(e), "notes": task.notes}, indent=2) + "\n")
        raise
    finally:
        if executor is not None:
            executor.close()
        if (run_dir / "trials.sqlite").is_file():
            store = Store(run_dir, read_only=True)
            store.export_csv(run_dir / "trials.csv")
            store.close()
    result.save(run_dir / "d90.json")
    res = result.to_dict()
    plots = plot_curves([res], run_dir / "curve.png")
    write_report([res], run_dir / "report.md")
    name = f"{'r' if method == 'lora' else 'd'}{round(100 * args.fraction)}"
    rule = (f"{threshold_rule(res)}, baseline {result.baseline:.4f}" if result.lower_is_better
            else f"{result.threshold:.4f} = {args.fraction:g} x baseline {result.baseline:.4f}")
    if result.d90 is not None:
        largest = max(p["d"] for p in result.points)
        interval = f", interval {format_interval(result.interval, largest)}" if result.interval else ""
        print(f"\n{name} = {result.d90:,}, {result.trainable_params:,} trained parameters (bracket {format_bracket(result.bracket)}, "
              f"interpolated crossing {result.crossing:,.0f}{interval}); threshold {rule}")
    else:
        print(f"\n{name} not found.")
    for n in result.notes:
        if n not in task.notes:
            print(f"note: {n}")
    print(f"plot: {', '.join(map(str, plots))}\nreport: {run_dir / 'report.md'}\nwall time {_duration(result.wall_s)}")
    return 0


def _check_out(path: str) -> None:
    """Refuse an --out that cannot receive files, before any training."""
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file: pass a directory")
    parent = next((p for p in (out, *out.parents) if p.exists()), Path("."))
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"--out {out} is not writable (no write permission on {parent}): pass a writable --out")


def cmd_train(args: argparse.Namespace) -> int:
    import tempfile

    from intrinsic_dim.distributed import init_from_env, leave, world
    from intrinsic_dim.tracking import make_tracker
    from intrinsic_dim.train import train_model

    _check_out(args.out)
    task, factory = _load(args)
    cfg = replace(_trial_template(args), d=args.d, seed=args.seed)
    loaded = factory(args.seed)
    joined = init_from_env()  # under torchrun / accelerate launch: one trial, data-parallel over the processes
    rank, size = world()
    try:
        sm, result = train_model(loaded, task, cfg, progress=not args.quiet and rank == 0)
    finally:
        if joined:
            leave()
    if rank > 0:
        return 0
    tracker = make_tracker(args.report_to, args.out, task.metric)
    if tracker is not None:
        tracker.log_trial("train", result)
    if not result.ok:
        print(f"training {result.status}: {result.error}", file=sys.stderr)
        return 1
    meta = {"model": args.model, "task": args.task, "seed": args.seed, "max_length": args.max_length,
            "metric": task.metric, "validation": result.val_metric, "test": result.metric}
    try:
        sm.save_pretrained(args.out, metadata=meta)
    except OSError as e:
        rescue = tempfile.mkdtemp(prefix="intrinsic-dim-adapter-")
        sm.save_pretrained(rescue, metadata=meta)
        print(f"could not write {args.out} ({e}); the trained adapter was saved to {rescue}/ instead", file=sys.stderr)
        args.out = rescue
    ranks = f" on {size} processes" if size > 1 else ""
    print(f"trained {sm.num_trainable():,} numbers in {result.steps} steps{ranks} ({result.wall_s:.0f}s); {cfg.select} checkpoint: "
          f"validation {task.metric} {result.val_metric:.4f}, test {result.metric:.4f}; adapter saved to {args.out}/")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from intrinsic_dim.adapter import read_adapter
    from intrinsic_dim.models import load_model
    from intrinsic_dim.subspace import SubspaceModel
    from intrinsic_dim.tasks import load_task
    from intrinsic_dim.train import evaluate

    meta = (read_adapter(args.adapter)[0].get("metadata") or {}) if args.adapter else {}
    seed = args.seed if args.seed is not None else meta.get("seed", 0)
    model_name = args.model or meta.get("model") or "minilm-l6"
    task = load_task(args.task or meta.get("task") or "tweet-sentiment", max_train=args.max_train, max_eval=args.max_eval, seed=0,
                     metric=args.metric)
    loaded = load_model(model_name, task, seed=seed, max_length=args.max_length or meta.get("max_length") or 64)
    model = SubspaceModel.from_pretrained(loaded.model, args.adapter) if args.adapter else loaded.model
    metrics = evaluate(model, loaded, task, task.report_split, batch_size=args.batch_size)
    print(json.dumps({"task": task.name, "model": model_name, "adapter": args.adapter, "split": "test",
                      "examples": len(task.report_split), **metrics}, indent=2))
    return 0


def cmd_merge(args: argparse.Namespace) -> int:
    import torch
    from safetensors.torch import save_file

    from intrinsic_dim.adapter import AdapterError, read_adapter
    from intrinsic_dim.models import load_model
    from intrinsic_dim.subspace import SubspaceModel
    from intrinsic_dim.tasks import load_task

    meta = read_adapter(args.adapter)[0].get("metadata") or {}
    model_name, task_name = args.model or meta.get("model"), args.task or meta.get("task")
    seed = args.seed if args.seed is not None else meta.get("seed")
    if model_name is None or task_name is None or seed is None:
        print(f"{args.adapter} does not say which model, task and seed it was trained with (made outside `intrinsic-dim "
              "train`): pass --model, --task and --seed", file=sys.stderr)
        return 2
    task = load_task(task_name, max_train=1, max_eval=1, seed=0)
    loaded = load_model(model_name, task, seed=seed, max_length=args.max_length or meta.get("max_length", 128))
    merged = SubspaceModel.from_pretrained(loaded.model, args.adapter).merge_and_unload()
    if not all(bool(torch.isfinite(p).all()) for p in merged.parameters()):
        raise AdapterError(f"merging {args.adapter} gives NaN or infinite weights (its z or lambda is too large); nothing was written")
    out = Path(args.out)
    if hasattr(merged, "save_pretrained"):
        merged.save_pretrained(out)
    else:
        out.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in merged.state_dict().items()}, str(out / "model.safetensors"))
    print(f"merged model written to {out}/")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from intrinsic_dim.report import load_result, report_runs
    from intrinsic_dim.store import RunDirError, check_writable

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
    from intrinsic_dim.experiment import load_experiment, run_experiment, summarise

    def measure(options: dict[str, Any], run_dir: Path) -> None:
        forced = ({"run_dir": str(run_dir)} | ({"threads": args.threads} if args.threads else {}) | ({"quiet": True} if args.quiet else {})
                  | ({"report_to": args.report_to} if args.report_to else {}))
        run_args = _parse(["measure"], extra=options | forced, source=f"{args.file} (run {run_dir.name})")
        _setup(run_args)
        cmd_measure(run_args)

    command = " ".join(["intrinsic-dim", *sys.argv[1:]]) if sys.argv[1:2] == ["experiment"] else f"intrinsic-dim experiment {args.file}"
    if args.summary_only:
        spec = load_experiment(args.file)
        summary = summarise(spec, Path(args.out or Path("experiments/results") / spec["name"]), command=command)
    else:
        summary = run_experiment(args.file, measure, out=args.out, only=args.only, command=command)
    print(f"summary: {summary}")
    return 0


def cmd_pretrain(args: argparse.Namespace) -> int:
    from intrinsic_dim.pretrain import PretrainConfig, pretrain

    options = {k: v for k, v in vars(args).items() if k not in ("verb", "config", "quiet")}
    options["out"] = options["out"] or f"runs/pretrain-{args.size}"
    options["size"] = None if args.size == "custom" else args.size
    cfg = PretrainConfig(**options)
    try:
        summary = pretrain(cfg, progress=not args.quiet, log=lambda s: print(s, flush=True))
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
    args = _parse(argv)
    verbs = {"measure": cmd_measure, "train": cmd_train, "evaluate": cmd_evaluate, "merge": cmd_merge, "report": cmd_report,
             "experiment": cmd_experiment, "pretrain": cmd_pretrain}
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        _setup(args)
        return verbs[args.verb](args)
    except (ValueError, FileNotFoundError, KeyError) as e:
        print(f"intrinsic-dim {args.verb}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        resume = " finished trials are kept; rerun the same command to resume." if args.verb in ("measure", "experiment") else ""
        print(f"\nintrinsic-dim {args.verb}: interrupted.{resume}", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
        _forget_caught_interrupt()


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _forget_caught_interrupt() -> None:
    """Let an interrupt caught by a verb or by ``main`` exit with the status ``main`` returns (130).

    CPython marks an interrupt as unhandled when it escapes code run by ``exec`` of a string (as
    ``dataclasses`` does while torch imports lazily) even if an outer ``except`` catches it, and then
    kills the process with SIGINT at exit. Any later ``exec`` of a string clears that mark."""
    exec("None")


if __name__ == "__main__":
    sys.exit(main())
