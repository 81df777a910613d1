"""MeasureSpec: the one description of a d90 run, its defaults and its checks, defined once.

A spec has five parts: ``data`` (model, task, how much of it), ``search`` (grid, seeds, threshold,
precision), ``trial`` (the subspace or LoRA trial: method, projection settings and the optimiser),
``full`` (the full fine-tuning baseline's own settings) and ``run`` (where and how trials run). Every
field carries its help text and value kind, so the command line's flags and the config / experiment
file keys are generated from it: a field added here appears everywhere. Field names are unique across
the parts, so a flat mapping (``{max_train: 2000, said: false}``, as config files are written) and the
nested :meth:`MeasureSpec.to_dict` form both read back. Values are checked once, on construction.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Iterator

from intrinsic_dim.config import SubspaceConfig
from intrinsic_dim.configfile import ConfigFileError, load_mapping, show
from intrinsic_dim.fingerprint import KEY as FINGERPRINT
from intrinsic_dim.fingerprint import weights_fingerprint
from intrinsic_dim.groups import GROUPINGS
from intrinsic_dim.projection import KINDS, LAYOUTS, NORMALISATIONS
from intrinsic_dim.quant import QUANTS

METHODS = ("said", "did", "lora")
SELECT = ("best", "final")
AUTOCAST = ("bf16",)
SEED_RULES = ("all", "sequential")
SEED_NOISES = ("points", "baseline+points")
PLACEMENTS = ("bisect", "aim")
EXECUTORS = ("local", "ray")
TRACKERS = ("none", "tensorboard", "mlflow")
MAX_SEED = 2**63 - 1


class SpecError(ConfigFileError):
    """A run description that cannot be measured; the message names the field and what to change."""


def _sub_default(name: str) -> Any:
    """SubspaceConfig's default for ``name``: the subspace settings have their defaults there, once."""
    return next(f.default for f in fields(SubspaceConfig) if f.name == name)


def _opt(default: Any, help: str, kind: str = "", choices: tuple[str, ...] | None = None,
         check: tuple[Callable[[Any], bool], str] | None = None) -> Any:
    """A spec field: its default, help text, value kind (int, float, ints, floats, limit, gap, text, texts, names, flag) and range."""
    return field(default=default, metadata={"help": help, "kind": kind, "choices": choices, "check": check})


def _positive(v: Any) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v) and v > 0


_POS_INT = (lambda v: v >= 1, "a positive integer")
_POS_NUM = (_positive, "a positive finite number")


def coerce(name: str, value: Any, f: dataclasses.Field | None = None) -> Any:
    """A file or flag value of field ``name`` checked and converted to the field's kind; SpecError says what is wrong."""
    f = f or next(g for _, g in spec_fields() if g.name == name)
    kind, choices = f.metadata["kind"], f.metadata["choices"]
    try:
        value = _convert(kind, value, f.default)
    except (TypeError, ValueError) as e:
        raise SpecError(f"{name}: {e}") from None
    if choices and value is not None and value not in choices:
        raise SpecError(f"{name}: expected one of {list(choices)}, got {show(value)}")
    return value


def _scalar(kind: type, value: Any) -> Any:
    """``value`` as an int or float, refusing booleans, containers and lossy conversions (10.7 as an int)."""
    if isinstance(value, str):
        try:
            return kind(value.strip())
        except ValueError:
            raise TypeError(f"expected {'an integer' if kind is int else 'a number'}, got {show(value)}") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and not isinstance(value, int)):
        raise TypeError(f"expected {'an integer' if kind is int else 'a number'}, got {show(value)}")
    return kind(value)


_COUNTS = {"limit": (("all", "none"), 1, "a positive integer or 'all'"), "gap": (("test",), 0, "a non-negative integer or 'test'")}
"""Count kinds: the words that mean None (no limit; as many as the test split), the least count, and how to ask for one."""


def _convert(kind: str, value: Any, default: Any) -> Any:
    if value is None:
        if default is not None and kind not in _COUNTS:
            raise TypeError(f"expected a value (default {default!r}), got null")
        return None
    if kind == "flag":
        if not isinstance(value, bool):
            raise TypeError(f"expected true or false, got {show(value)}")
        return value
    if kind in ("int", "float"):
        return _scalar(int if kind == "int" else float, value)
    if kind in _COUNTS:
        words, least, what = _COUNTS[kind]
        if isinstance(value, str) and value.strip().lower() in words:
            return None
        n = _scalar(int, value)
        if n < least:
            raise ValueError(f"expected {what}, got {show(value)}")
        return n
    if kind in ("ints", "floats"):
        items = value.replace(",", " ").split() if isinstance(value, str) else (value if isinstance(value, (list, tuple)) else [value])
        return tuple(_scalar(int if kind == "ints" else float, v) for v in items)
    if kind == "names":  # a,b on a command line, or a list in a file
        items = [v.strip() for v in value.split(",")] if isinstance(value, str) else value
        if not isinstance(items, (list, tuple)) or not all(isinstance(v, str) and v for v in items):
            raise TypeError(f"expected names separated by commas, or a list of names, got {show(value)}")
        return tuple(items)
    if kind == "texts":
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, (list, tuple)) or not all(isinstance(v, str) for v in items):
            raise TypeError(f"expected a list of text, got {show(value)}")
        return tuple(items)
    if not isinstance(value, str):
        raise TypeError(f"expected text, got {show(value)}")
    return value


class _Part:
    """A part of the spec: every field's kind and range checked on construction."""

    def __post_init__(self) -> None:
        for f in fields(self):  # type: ignore[arg-type]
            value, check = getattr(self, f.name), f.metadata["check"]
            coerce(f.name, value, f)
            if value is not None and check is not None and not check[0](value):
                raise SpecError(f"{f.name} must be {check[1]}, got {show(value)}")


@dataclass(frozen=True)
class DataSpec(_Part):
    """The model and task, and how much of the task's data a trial sees."""

    model: str = _opt("minilm-l6", "a registered model name, or a Hugging Face folder or hub id", "text")
    task: str = _opt("tweet-sentiment", "a registered task, or data files: DIR with train.csv and validation.csv, or TRAIN,EVAL",
                     "text")
    max_train: int | None = _opt(2000, "subsample the training split to this many examples, fixed seed, or 'all' (the output "
                                 "says when it subsamples)", "limit")
    max_eval: int | None = _opt(1000, "subsample each of the validation and test halves of the held-out split, or 'all'", "limit")
    max_length: int = _opt(64, "token truncation length for text models", "int", check=_POS_INT)
    metric: str | None = _opt(None, "measure on another metric the task offers (default: the task's own); a generative task "
                              "scored by label words offers 'loss' (lower is better)", "text")
    text_columns: tuple[str, ...] | None = _opt(None, "for a Hugging Face dataset task (hub id owner/name or save_to_disk folder): "
                                                "the one or two text columns, e.g. title,body (default: the first one or two "
                                                "text columns)", "names", check=(lambda v: 1 <= len(v) <= 2, "one or two column names"))
    label_column: str | None = _opt(None, "for a Hugging Face dataset task: the column holding the targets (default: label)", "text")

    def task_options(self) -> dict[str, Any]:
        """The keyword arguments of ``tasks.load_task`` besides the name (the seed of subsampling is always 0)."""
        return {"max_train": self.max_train, "max_eval": self.max_eval, "metric": self.metric, "text_columns": self.text_columns,
                "label_column": self.label_column}


@dataclass(frozen=True)
class SearchSpec(_Part):
    """Which d are tried with how many seeds, and the threshold they are judged against."""

    dims: tuple[int, ...] | None = _opt(None, "coarse grid of d, e.g. 100,300,1000 (default: 10,30,...,30000; LoRA ranks 1,2,...,64)",
                                        "ints", check=(lambda v: bool(v) and all(x >= 1 for x in v), "positive integers"))
    seeds: int = _opt(1, "seeds per dimension (1 is the CPU demo budget; 3 for a real run, and for an interval)", "int",
                      check=(lambda v: 1 <= v <= 1000, "an integer from 1 to 1000"))
    fraction: float = _opt(0.9, "threshold fraction of the baseline (0.9: d90)", "float",
                           check=(lambda v: _positive(v) and v <= 1.5, "a number in (0, 1.5]"))
    precision: float = _opt(0.3, "stop bisecting when hi / lo <= 1 + precision", "float", check=(_positive, "a positive number"))
    seed_rule: str = _opt("sequential", "sequential: seeds only while a point's verdict is open (its mean within 3 standard errors "
                          "of tau, seed noise pooled over the points' seeds: --seed-noise); all: every point gets --seeds seeds (the rule of the experiments committed before 2026-12-06) "
                          "(docs/search.md)", "text", SEED_RULES)
    seed_noise: str = _opt("points", "the seed noise the sequential rule settles a point with: points (pooled over the subspace "
                           "points' seeds; nothing is settled before two points' degrees of freedom exist) or baseline+points "
                           "(the full fine-tuning seeds too: the rule until 2026-12-07, which let a baseline far less noisy than "
                           "the subspace trials settle points on one seed) (docs/search.md)", "text", SEED_NOISES)
    stop_unresolved: bool = _opt(False, "sequential rule: stop refining once the bracket's two ends are within 2 standard errors "
                                 "of the seed noise of each other and report its upper end (the rule until 2026-12-07: about "
                                 "10% fewer trials, but d90 biased upward where the curve is flat near tau) (docs/search.md)",
                                 "flag")
    placement: str = _opt("aim", "where the refinement puts its next d: aim (at the crossing interpolated in log d from the "
                          "bracket's ends, moved to where a pass or a fail there can end the search when the crossing lies "
                          "within 1 + precision of an end) or bisect (the bracket's geometric midpoint, the rule of the "
                          "experiments committed before 2026-12-07) (docs/search.md)", "text", PLACEMENTS)
    curve: bool = _opt(False, "train every --dims point to the full budget and take d90 from them (for figures) instead of searching",
                       "flag")
    baseline_only: bool = _opt(False, "train the full fine-tuning baseline (and its --full-lr-search) and stop: no subspace trial, "
                               "no d90 (a study of the baseline against its budget)", "flag")
    baseline: float | None = _opt(None, "use this baseline metric instead of full fine-tuning (e.g. 1.0 for Li et al.'s MNIST)",
                                  "float", check=(_positive, "a positive finite number (the full fine-tuning metric to compare against)"))
    baseline_seeds: int | None = _opt(None, "full fine-tuning seeds (default: --seeds)", "int",
                                      check=(lambda v: 1 <= v <= 1000, "an integer from 1 to 1000"))
    lr_search: tuple[float, ...] | None = _opt(None, "candidate subspace rates, tried at --lr-search-d before the search", "floats",
                                               check=(lambda v: bool(v) and all(_positive(x) for x in v), "positive finite numbers"))
    lr_search_d: int = _opt(1000, "the d at which --lr-search tries its rates", "int", check=_POS_INT)
    full_lr_search: tuple[float, ...] | None = _opt(
        None, "candidate full fine-tuning rates, e.g. 1e-5,3e-5,1e-4,3e-4: each trained once (seed 0), the best on validation "
        "used for every baseline seed (instead of --full-lr)", "floats",
        check=(lambda v: bool(v) and all(_positive(x) for x in v), "positive finite numbers"))


@dataclass(frozen=True)
class TrialSpec(_Part):
    """One subspace (or LoRA) trial: the method, the projection's settings and the optimiser."""

    method: str = _opt("said", "said / did: the random subspace with or without SAID's scales; lora: search the smallest "
                       "LoRA rank r reaching the same threshold with the same budget (PEFT; --dims are then ranks)", "text", METHODS)
    projection: str = _opt(_sub_default("projection"), "the random projection P", "text", KINDS)
    layout: str = _opt(_sub_default("layout"), "Fastfood layout", "text", LAYOUTS)
    normalisation: str = _opt(_sub_default("normalisation"), "per_tensor column length: sqrt(#tensors) as the released code, or unit",
                              "text", NORMALISATIONS)
    groups: str = _opt(_sub_default("groups"), "SAID grouping: one scale per tensor, module or numbered block", "text", GROUPINGS)
    dense_max_elements: int = _opt(_sub_default("dense_max_elements"), "largest d * D the dense projection may materialise", "int",
                                   check=_POS_INT)
    lora_alpha: float | None = _opt(None, "LoRA alpha (default: 2 x rank, a constant scale of 2)", "float", check=_POS_NUM)
    lora_targets: str | None = _opt(None, "comma-separated module names for LoRA, or all-linear (default: PEFT's for the model "
                                    "type, e.g. query,value for BERT)", "text")
    lr: float | None = _opt(None, "subspace learning rate (default: Adam 0.1 * sqrt(1000 / d))", "float", check=_POS_NUM)
    epochs: float = _opt(1.0, "epochs per trial", "float", check=(lambda v: _positive(v) and v <= 10**6, "a positive finite number"))
    max_steps: int | None = _opt(None, "optimizer steps per trial (overrides --epochs)", "int", check=_POS_INT)
    batch_size: int = _opt(32, "examples per optimizer step", "int", check=_POS_INT)
    eval_every: int | None = _opt(None, "evaluate on validation every N steps (default: three times per epoch and at the end)",
                                  "int", check=_POS_INT)
    select: str = _opt("best", "report the checkpoint with the best validation metric, or the final one; either is reported on "
                       "the test split", "text", SELECT)
    select_examples: int | None = _opt(250, "validation examples (a fixed random subset) the checkpoint is chosen on while a trial "
                                       "trains; the chosen one is then measured on the whole validation split once; 'all': the "
                                       "whole split at every evaluation (the experiments committed before 2026-12-06)", "limit", check=_POS_INT)
    gap_examples: int | None = _opt(0, "training examples the chosen checkpoint is evaluated on for the generalisation gap; 0 "
                                    "skips it; 'test': as many as the test split (the experiments committed before 2026-12-06)", "gap",
                                    check=(lambda v: v >= 0, "a non-negative integer or 'test'"))
    autocast: str | None = _opt(None, "bf16: the training steps' forward pass under torch.autocast in bfloat16 (fast on GPUs and on "
                                "CPUs with AVX512-BF16 or AMX, emulated and slower elsewhere); P(z) and evaluation stay float32. "
                                "Without it, float32 throughout", "text", AUTOCAST)
    base_quant: str | None = _opt(None, "int8: the subspace trials keep the projected weight matrices of the base as int8 codes with "
                                  "a scale per output channel (half of bf16's memory), dequantised when read; the full "
                                  "fine-tuning baseline stays unquantised (default: the base's own dtype)", "text", QUANTS)


@dataclass(frozen=True)
class FullSpec(_Part):
    """The full fine-tuning baseline's own settings (the rest it shares with the trial)."""

    full_lr: float | None = _opt(None, "full fine-tuning learning rate (default: 3e-5 text, 1e-3 images)", "float", check=_POS_NUM)
    full_epochs: float | None = _opt(None, "full fine-tuning epochs (default: --epochs)", "float",
                                     check=(lambda v: _positive(v) and v <= 10**6, "a positive finite number"))


@dataclass(frozen=True)
class RunSpec(_Part):
    """Where and how the trials run; ``threads`` is part of a run directory's identity (results depend on it)."""

    threads: int | None = _opt(None, "torch CPU threads (default: torch's choice); recorded in a run directory, since conv nets "
                               "give different numbers at different thread counts, and a resume must use the same", "int",
                               check=(lambda v: 1 <= v <= 1024, "an integer from 1 to 1024"))
    reuse: tuple[str, ...] = _opt((), "copy finished trials of identical configuration from these run directories (same model, "
                                  "task and data) instead of rerunning them; full fine-tuning trials are shared across --method, "
                                  "--projection, --layout and --groups, which they do not read", "texts")
    workers: int = _opt(1, "run independent trials on N local processes, each with --threads threads", "int",
                        check=(lambda v: 1 <= v <= 256, "an integer from 1 to 256"))
    executor: str = _opt("local", "where trials run: here or on --workers local processes, or as Ray tasks "
                         "(pip install 'intrinsic-dim[ray]')", "text", EXECUTORS)
    ray_address: str | None = _opt(None, "Ray cluster to join, e.g. auto or ray://HOST:10001 (default: start a local Ray)", "text")
    trial_cpus: float | None = _opt(None, "CPUs each Ray trial asks for (default: --threads, else 1)", "float",
                                    check=(_positive, "a positive number"))
    trial_gpus: float = _opt(0.0, "GPUs each Ray trial asks for; a fraction such as 0.5 shares one GPU", "float",
                             check=(lambda v: math.isfinite(v) and v >= 0, "a number >= 0"))
    report_to: str = _opt("none", "log every trial's curve and the summary to TensorBoard (RUN_DIR/tensorboard) or MLflow "
                          "(MLFLOW_TRACKING_URI, else RUN_DIR/mlruns); needs pip install 'intrinsic-dim[tracking]'", "text", TRACKERS)
    wait: bool = _opt(False, "if another process holds the run directory, wait for it instead of refusing", "flag")
    private_baseline: bool = _opt(False, "train this run's own full fine-tuning baseline even where a sibling run directory of the "
                                  "same model, task and data holds one (by default its trials are shared: they read no subspace "
                                  "setting)", "flag")


PARTS: dict[str, type] = {"data": DataSpec, "search": SearchSpec, "trial": TrialSpec, "full": FullSpec, "run": RunSpec}
"""The parts of a MeasureSpec, by attribute name, in the order the command line's help shows them."""


def spec_fields() -> Iterator[tuple[str, dataclasses.Field]]:
    """Every field of every part, with its part's name: what the CLI and the file keys are generated from."""
    for part, cls in PARTS.items():
        for f in fields(cls):
            yield part, f


FIELD_PART = {f.name: part for part, f in spec_fields()}
ALIASES = {"said": "method"}
"""Keys accepted beside the fields: ``said: true/false`` (written by older config files) means method said / did."""


def check_values(values: dict[str, Any], source: str) -> None:
    """Check each spec field of ``values`` on its own (kind, choices, range): a bad value in a file is refused even
    where a flag overrides it. Unknown keys and combinations of fields are left to :meth:`MeasureSpec.from_dict`."""
    for key, value in values.items():
        name = str(key).replace("-", "_")
        if name in FIELD_PART:
            try:
                PARTS[FIELD_PART[name]](**{name: coerce(name, value)})
            except SpecError as e:
                raise SpecError(f"{source}: {e}") from None


@dataclass(frozen=True)
class MeasureSpec:
    """Everything that defines a d90 measurement; see the module docstring. Immutable: ``replace`` to vary it."""

    data: DataSpec = field(default_factory=DataSpec)
    search: SearchSpec = field(default_factory=SearchSpec)
    trial: TrialSpec = field(default_factory=TrialSpec)
    full: FullSpec = field(default_factory=FullSpec)
    run: RunSpec = field(default_factory=RunSpec)

    def __post_init__(self) -> None:
        s, r = self.search, self.run
        if s.full_lr_search:
            clash = [f for f, v in (("full_lr", self.full.full_lr), ("baseline", s.baseline)) if v is not None]
            if clash:
                raise SpecError(f"full_lr_search chooses the full fine-tuning rate of a measured baseline: drop {' and '.join(clash)}")
        if s.baseline_only and s.baseline is not None:
            raise SpecError("baseline_only trains the full fine-tuning baseline: drop the given baseline (or baseline_only)")
        if self.trial.base_quant and self.trial.method == "lora":
            raise SpecError("base_quant applies to the subspace methods (said, did), not lora: drop base_quant or choose method said / did")
        if r.executor == "local":
            given = [f for f, v in (("ray_address", r.ray_address), ("trial_cpus", r.trial_cpus), ("trial_gpus", r.trial_gpus or None))
                     if v is not None]
            if given:
                raise SpecError(f"{', '.join(given)} only apply to executor ray")
        elif r.workers > 1:
            raise SpecError("workers is for executor local; with executor ray the cluster's resources and trial_cpus / "
                            "trial_gpus decide how many trials run at once")

    @property
    def said(self) -> bool:
        """Whether the subspace trials learn SAID's scales (a LoRA run keeps the default, as its stored trials do)."""
        return self.trial.method != "did"

    def replace(self, **changes: Any) -> "MeasureSpec":
        """A copy with the named fields (flat names, any part) changed, checked again."""
        return MeasureSpec.from_dict(self.flat() | changes)

    def flat(self) -> dict[str, Any]:
        """Every field by its (unique) name."""
        return {f.name: getattr(getattr(self, part), f.name) for part, f in spec_fields()}

    def to_dict(self) -> dict[str, Any]:
        """The nested JSON form: one mapping per part, lists for tuples."""
        def plain(v: Any) -> Any:
            return list(v) if isinstance(v, tuple) else v

        return {part: {f.name: plain(getattr(getattr(self, part), f.name)) for f in fields(cls)} for part, cls in PARTS.items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "the spec") -> "MeasureSpec":
        """Build from the nested :meth:`to_dict` form or a flat mapping of field names (``-`` or ``_``);
        an unknown key or a bad value is a SpecError naming it and ``source``."""
        if not isinstance(data, dict):
            raise SpecError(f"{source} must be a mapping of option names to values, got {type(data).__name__}")
        flat: dict[str, Any] = {}
        for key, value in data.items():
            if key in PARTS and isinstance(value, dict):
                flat.update(value)
            else:
                flat[key] = value
        values: dict[str, dict[str, Any]] = {part: {} for part in PARTS}
        for key, value in flat.items():
            name = str(key).replace("-", "_")
            if name in ALIASES:
                if not isinstance(value, bool):
                    raise SpecError(f"{source}: said: expected true or false, got {show(value)}")
                if "method" in flat and flat["method"] != ("said" if value else "did"):
                    raise SpecError(f"{source}: said: {str(value).lower()} contradicts method: {flat['method']}; give one of them")
                name, value = "method", "said" if value else "did"
            if name not in FIELD_PART:
                raise SpecError(f"{source}: unknown option {str(key)!r}; valid: {sorted(FIELD_PART)}")
            try:
                values[FIELD_PART[name]][name] = coerce(name, value)
            except SpecError as e:
                raise SpecError(f"{source}: {e}") from None
        try:
            return cls(**{part: PARTS[part](**v) for part, v in values.items()})
        except SpecError as e:
            raise SpecError(f"{source}: {e}") from None

    @classmethod
    def from_yaml(cls, path: str | Path) -> "MeasureSpec":
        """Read a YAML or JSON file of options through the bounded loader (size and nesting limits)."""
        return cls.from_dict(load_mapping(path), source=str(path))

    def run_config(self, threads: int) -> dict[str, Any]:
        """What a run directory's trials depend on beyond their own settings: a resume must match it (the store's key).
        Options at their defaults are left out, so the key of a run made before they existed is unchanged; a model given
        as a local folder adds its weights' fingerprint, so a checkpoint made again at the same path is not resumed."""
        d = self.data
        config = {"model": d.model, "task": d.task, "max_train": d.max_train, "max_eval": d.max_eval, "max_length": d.max_length,
                  "threads": threads}
        columns = {"text_columns": list(d.text_columns)} if d.text_columns else {}
        label = {"label_column": d.label_column} if d.label_column not in (None, "label") else {}
        weights = weights_fingerprint(d.model)
        return config | ({"metric": d.metric} if d.metric else {}) | columns | label | ({FINGERPRINT: weights} if weights else {})

    def default_run_dir(self) -> Path:
        """runs/<model>-<task>-<method>."""
        return Path("runs") / f"{Path(self.data.model).name}-{Path(self.data.task).name}-{self.trial.method}"
