"""One trial: full, subspace or LoRA fine-tuning of a fresh model at one (d, seed) (for LoRA d is the
rank), or the base model untrained, selected on the validation split and reported on the held-out test
split, with divergence recorded instead of raised. Causal LMs on generative tasks train on the loss of
their target tokens (:mod:`intrinsic_dim.generative`); a lower-is-better metric selects its lowest value.

Defaults (docs/search.md): subspace training uses Adam at a rate far above full fine-tuning's (0.1 at
d = 1000 for Fastfood with unit-norm columns, scaled by sqrt(1000 / d) since the step in weight space
grows like sqrt(d) * rate), full fine-tuning AdamW at 3e-5 for transformers and Adam at 1e-3 for the
small image nets (Li et al.). Both use linear warm-up over 10% of the steps and linear decay to zero.
Every trial trains for its whole budget. With ``select="best"`` the checkpoint with the best
validation metric is reported on test; with ``select="final"`` the last one is. Either way the reported
number never saw the data it is reported on.
"""

from __future__ import annotations

import contextlib
import math
import time
import warnings
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterator

import torch
from torch import nn
from tqdm.auto import tqdm

from intrinsic_dim import distributed, interrupts, machine
from intrinsic_dim.config import SubspaceConfig
from intrinsic_dim.generative import evaluate_generative, lm_loss
from intrinsic_dim.results import TrialResult, stored_key
from intrinsic_dim.spec import AUTOCAST, SELECT, TrialSpec
from intrinsic_dim.subspace import SubspaceModel
from intrinsic_dim.tasks import Split, Task, compute_metrics
from intrinsic_dim.tasks.base import selection_sample, train_sample

if TYPE_CHECKING:
    from intrinsic_dim.models import LoadedModel

METHODS = ("full", "subspace", "lora", "base")
"""Full fine-tuning, the random subspace (d numbers), LoRA through PEFT (``d`` is the rank r), and the
base model untrained (evaluated only: the start point of a lower-is-better threshold)."""
LORA_LR = 1e-3
SUBSPACE_REF_LR = 0.1
SUBSPACE_REF_D = 1000
EVALS_PER_EPOCH = 3
ABSURD_LOSS_FACTOR = 1e6
"""A finite loss above this multiple of max(first loss, 1) is recorded as a divergence, not a result."""

ModelFactory = Callable[[int], "LoadedModel"]
_SPEC = TrialSpec()
"""The spec's trial defaults, which a TrialConfig's defaults are (defined once, in spec.py)."""


@dataclass
class TrialConfig:
    """Everything that defines one trial (its defaults are the spec's trial defaults); its JSON form keys the results
    store. ``d`` is the subspace
    dimension, or the rank for ``method="lora"``; ``lora_alpha`` (default 2 x rank) and ``lora_targets``
    (comma-separated module names or ``all-linear``; default PEFT's for the model type) apply to LoRA only."""

    method: str = "subspace"
    d: int | None = None
    seed: int = 0
    said: bool = _SPEC.method != "did"
    projection: str = _SPEC.projection
    layout: str = _SPEC.layout
    groups: str = _SPEC.groups
    normalisation: str = _SPEC.normalisation
    dense_max_elements: int = _SPEC.dense_max_elements
    lr: float | None = _SPEC.lr
    epochs: float = _SPEC.epochs
    max_steps: int | None = _SPEC.max_steps
    batch_size: int = _SPEC.batch_size
    eval_batch_size: int = 128
    warmup: float = 0.1
    weight_decay: float = 0.0
    eval_every: int | None = _SPEC.eval_every
    select: str = _SPEC.select
    lora_alpha: float | None = _SPEC.lora_alpha
    lora_targets: str | None = _SPEC.lora_targets
    select_examples: int | None = _SPEC.select_examples
    gap_examples: int | None = _SPEC.gap_examples
    autocast: str | None = _SPEC.autocast
    base_quant: str | None = _SPEC.base_quant

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        if self.select not in SELECT:
            raise ValueError(f"select must be one of {SELECT}, got {self.select!r}")
        if self.autocast is not None and self.autocast not in AUTOCAST:
            raise ValueError(f"autocast must be one of {AUTOCAST} or None, got {self.autocast!r}")
        if self.batch_size < 1 or self.epochs <= 0 or (self.max_steps is not None and self.max_steps < 1):
            raise ValueError("batch_size, epochs and max_steps must be positive")
        # one JSON form per value, whether it came as 30 or 30.0: the store keys a trial by that form
        self.epochs, self.warmup, self.weight_decay = float(self.epochs), float(self.warmup), float(self.weight_decay)
        self.lr = None if self.lr is None else float(self.lr)
        self.lora_alpha = None if self.lora_alpha is None else float(self.lora_alpha)

    def resolved_lr(self, kind: str = "text") -> float:
        """The learning rate this trial uses (the explicit one, or the documented default)."""
        if self.lr is not None:
            return self.lr
        if self.method == "full":
            return 1e-3 if kind == "image" else 3e-5
        if self.method == "lora":
            return LORA_LR
        if self.method == "base":
            return 0.0
        return SUBSPACE_REF_LR * math.sqrt(SUBSPACE_REF_D / self.d)

    def total_steps(self, n_train: int) -> int:
        """Optimizer steps of this trial on ``n_train`` examples (max_steps, else epochs x batches per epoch)."""
        return self.max_steps or max(1, math.ceil(self.epochs * math.ceil(n_train / self.batch_size)))

    def to_dict(self) -> dict[str, Any]:
        """The JSON form, which keys the store (:func:`~intrinsic_dim.results.stored_key`)."""
        return stored_key(asdict(self))


def _logits(out: Any) -> torch.Tensor:
    return out.logits if hasattr(out, "logits") else out


def improves(value: float, best: float, lower_is_better: bool) -> bool:
    """True when ``value`` is strictly better than ``best`` for the metric's direction."""
    return value < best if lower_is_better else value > best


def _loss(logits: torch.Tensor, labels: torch.Tensor, regression: bool) -> torch.Tensor:
    if regression:
        return nn.functional.mse_loss(logits.reshape(-1), labels.float())
    return nn.functional.cross_entropy(logits, labels)


@torch.no_grad()
def evaluate(model: nn.Module, loaded: LoadedModel, task: Task, split: Split | None = None, batch_size: int = 128) -> dict[str, float]:
    """Metrics of ``model`` (the wrapped or plain one) on a split (default: the task's eval split)."""
    split = split if split is not None else task.eval
    was_training = model.training
    model.eval()
    if task.kind == "generative":
        with model.merged() if isinstance(model, SubspaceModel) else contextlib.nullcontext():
            metrics = evaluate_generative(model, loaded, task, split, batch_size)
        model.train(was_training)
        return metrics
    order = eval_order(loaded, split)
    preds = []
    with model.merged() if isinstance(model, SubspaceModel) else contextlib.nullcontext():  # weights built once
        for s in range(0, len(split), batch_size):
            logits = _logits(model(**loaded.encode(split, order[s : s + batch_size].tolist())))
            preds.append(logits.reshape(-1).float() if task.is_regression else logits.argmax(-1))
    model.train(was_training)
    return compute_metrics(task, torch.cat(preds)[torch.argsort(order)], split.labels)


def eval_order(loaded: LoadedModel, split: Split) -> torch.Tensor:
    """The order evaluation batches a split in: by token length for padded text (each batch pads to its own longest,
    so sorting roughly halves the padded tokens of short texts), as stored otherwise. Predictions are per example."""
    lengths = getattr(loaded.encode, "lengths", None)
    if lengths is None:
        return torch.arange(len(split))
    return torch.argsort(lengths(split), stable=True)


def _schedule(total: int, warmup: float) -> Callable[[int], float]:
    w = max(1, int(round(warmup * total))) if warmup > 0 else 0

    def f(step: int) -> float:
        if step < w:
            return (step + 1) / w
        return max(0.0, (total - step) / max(1, total - w))

    return f


def build(loaded: LoadedModel, cfg: TrialConfig) -> tuple[nn.Module, list[nn.Parameter]]:
    """The model to train for ``cfg`` and the parameters to optimise."""
    if cfg.method in ("full", "base"):
        params = [p for p in loaded.model.parameters() if p.requires_grad] if cfg.method == "full" else []
        return loaded.model, params
    if cfg.method == "lora":
        return _lora(loaded, cfg)
    sm = SubspaceModel(
        loaded.model,
        SubspaceConfig(
            d=cfg.d, projection=cfg.projection, said=cfg.said, seed=cfg.seed, groups=cfg.groups, layout=cfg.layout,
            normalisation=cfg.normalisation, dense_max_elements=cfg.dense_max_elements, base_quant=cfg.base_quant,
        ),
    )
    return sm, sm.trainable_parameters()


def check_lora_targets(model: nn.Module, targets: str | None) -> None:
    """Refuse, before any training, LoRA targets PEFT would reject: none given for a model type PEFT has no default
    modules for, ``all-linear`` on a model that is not a transformers model, or names that match no module."""
    leaves = sorted({name.rsplit(".", 1)[-1] for name, m in model.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d, nn.Embedding))})
    hint = f"pass --lora-targets with some of its module names ({', '.join(leaves[:12])})"
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    if not targets:
        from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as DEFAULTS

        if model_type not in DEFAULTS:
            raise ValueError(f"--method lora: PEFT has no default target modules for {model_type or type(model).__name__}; {hint}"
                             + (" or all-linear" if model_type else ""))
    elif targets == "all-linear":
        if model_type is None:
            raise ValueError(f"--lora-targets all-linear works on transformers models only, not {type(model).__name__}; {hint}")
    else:
        names = [name for name, _ in model.named_modules()]
        wanted = [t.strip() for t in targets.split(",") if t.strip()]
        missing = [t for t in wanted if not any(n == t or n.endswith("." + t) for n in names)]
        if missing or not wanted:
            raise ValueError(f"--lora-targets {targets}: {', '.join(missing) or 'no name'} matches no module of the model; {hint}")


def _lora(loaded: LoadedModel, cfg: TrialConfig) -> tuple[nn.Module, list[nn.Parameter]]:
    """The model with LoRA adapters of rank ``cfg.d`` (PEFT; A drawn from ``cfg.seed``, B zero, alpha 2r by
    default); a classifier's head is trained whole, as PEFT's sequence-classification task does."""
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError:
        raise ValueError("--method lora needs PEFT: pip install -e '.[lora]' (peft==0.21.2)") from None
    check_lora_targets(loaded.model, cfg.lora_targets)
    targets = cfg.lora_targets
    if targets and targets != "all-linear":
        targets = [t.strip() for t in targets.split(",") if t.strip()]
    config = LoraConfig(
        r=cfg.d, lora_alpha=cfg.lora_alpha if cfg.lora_alpha is not None else 2.0 * cfg.d, lora_dropout=0.0,
        target_modules=targets, task_type="CAUSAL_LM" if loaded.kind == "generative" else "SEQ_CLS",
    )
    with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
        # PEFT 0.21 reads transformers' deprecated is_gradient_checkpointing: a warning per trial the user can't act on
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        torch.manual_seed(cfg.seed)
        model = get_peft_model(loaded.model, config)
    return model, [p for p in model.parameters() if p.requires_grad]


def train_model(loaded: LoadedModel, task: Task, cfg: TrialConfig, progress: bool = True) -> tuple[nn.Module, TrialResult]:
    """Build the model for ``cfg`` from ``loaded``, train it, and return it with its result."""
    if cfg.method in ("subspace", "lora") and (isinstance(cfg.d, bool) or not isinstance(cfg.d, int) or cfg.d < 1):
        raise ValueError(f"d must be a positive integer, got {cfg.d!r}")
    start = time.perf_counter()
    lr = cfg.resolved_lr(task.kind)
    result = TrialResult(config=cfg.to_dict(), status="ok", metric=float("nan"), lr=lr)
    model, params = build(loaded, cfg)
    result.trainable = sum(p.numel() for p in params)
    result.machine = machine.describe(next(model.parameters()).device)
    with torch.random.fork_rng():  # dropout draws from the trial's seed, not the caller's RNG state
        torch.manual_seed(cfg.seed)
        if cfg.method == "base":
            result.val_metric = evaluate(model, loaded, task, batch_size=cfg.eval_batch_size)[task.metric]
            _report(model, loaded, task, cfg, result)
        else:
            _train(model, params, loaded, task, cfg, lr, result, progress)
    result.wall_s = time.perf_counter() - start
    return model, result


def run_trial(factory: ModelFactory, task: Task, cfg: TrialConfig, progress: bool = True) -> TrialResult:
    """One trial on a fresh model; a crash inside training is recorded as a failed result.

    Configuration errors (ValueError: d larger than D, SAID with d <= groups, empty data) are
    raised, since every other trial of the sweep would hit them too.
    """
    start = time.perf_counter()
    try:
        return train_model(factory(cfg.seed), task, cfg, progress)[1]
    except ValueError:
        raise
    except Exception as e:  # noqa: BLE001 - any crash inside a trial is recorded, the sweep goes on
        return TrialResult(
            config=cfg.to_dict(), status="failed", metric=float("nan"), lr=cfg.resolved_lr(task.kind),
            wall_s=time.perf_counter() - start, error=f"{type(e).__name__}: {e}", machine=machine.describe(),
        )


def _train(model, params, loaded, task, cfg, lr, result: TrialResult, progress: bool) -> None:
    n = len(task.train)
    if n == 0:
        raise ValueError(f"task {task.name!r} has no training examples")
    per_epoch = math.ceil(n / cfg.batch_size)
    total = cfg.total_steps(n)
    eval_every = cfg.eval_every or max(1, min(total, per_epoch) // EVALS_PER_EPOCH)
    selection = selection_sample(task.eval, cfg.select_examples)
    rank, size = distributed.world()
    if size > 1:
        if not isinstance(model, SubspaceModel):
            raise ValueError("a data-parallel trial trains a subspace model only: full fine-tuning would all-reduce "
                             "every weight's gradient (D numbers); run the baseline in one process")
        distributed.check_same_projection(model)
    with interrupts.deferred():  # the first optimizer imports Triton, which aborts if interrupted
        if cfg.method == "full":
            opt = torch.optim.AdamW(params, lr=lr, weight_decay=cfg.weight_decay)
        else:
            opt = torch.optim.Adam(params, lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _schedule(total, cfg.warmup))
    gen = torch.Generator().manual_seed(cfg.seed)
    model.train()
    letter = "r" if cfg.method == "lora" else "d"  # a LoRA trial's d is its rank
    bar = tqdm(total=total, desc=f"{cfg.method} {letter}={cfg.d} seed={cfg.seed}", disable=not progress, leave=False)
    lower = task.lower_is_better
    best, best_state = (math.inf if lower else -math.inf), None
    ema = first = None
    batches = _batches(n, cfg.batch_size, gen)
    for step in range(total):
        idx = next(batches)
        local = distributed.shard(idx, rank, size) if size > 1 else idx
        with _autocast(cfg, params):
            loss = _batch_loss(model, params, loaded, task, local)
        if size > 1:
            loss = distributed.global_loss(loss, len(local), len(idx))
        first = loss.item() if first is None else first
        if not torch.isfinite(loss) or loss.item() > ABSURD_LOSS_FACTOR * max(first, 1.0):
            result.status, result.error, result.steps = "diverged", f"loss became {loss.item():.4g} at step {step}", step
            bar.close()
            return
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if size > 1:
            distributed.allreduce_gradients(params)
        opt.step()
        sched.step()
        ema = loss.item() if ema is None else 0.9 * ema + 0.1 * loss.item()
        result.losses.append((step + 1, loss.item()))
        result.steps, result.train_loss = step + 1, ema
        bar.update(1)
        if (step + 1) % eval_every == 0 or step + 1 == total:
            value = evaluate(model, loaded, task, selection, batch_size=cfg.eval_batch_size)[task.metric]
            result.curve.append((step + 1, value))
            if cfg.select == "best" and improves(value, best, lower):
                best, best_state = value, [p.detach().clone() for p in params]
            bar.set_postfix({"loss": f"{ema:.3f}", f"validation {task.metric}": f"{value:.4f}"})
    bar.close()
    if best_state is not None:
        with torch.no_grad():
            for p, saved in zip(params, best_state):
                p.copy_(saved)
    result.val_metric = best if cfg.select == "best" else result.curve[-1][1]
    if selection is not task.eval:  # chosen on a subset: its validation value on the whole split, once
        result.val_metric = evaluate(model, loaded, task, batch_size=cfg.eval_batch_size)[task.metric]
    _report(model, loaded, task, cfg, result)


def _autocast(cfg: TrialConfig, params: list[nn.Parameter]) -> contextlib.AbstractContextManager:
    """The training forward's precision: torch.autocast in bfloat16 on the trained parameters' device when the trial
    asks for it (the backward follows the forward's casts), else nothing."""
    if cfg.autocast != "bf16":
        return contextlib.nullcontext()
    device = params[0].device.type if params else "cpu"
    return torch.autocast(device, dtype=torch.bfloat16)


def _batch_loss(model, params, loaded, task, idx: list[int]) -> torch.Tensor:
    """The mean loss on the examples ``idx``; a zero joined to the graph when a rank's slice is empty."""
    if not idx:
        return sum(p.sum() for p in params) * 0.0
    batch = loaded.encode(task.train, idx)
    if task.kind == "generative":
        return lm_loss(model, batch)
    return _loss(_logits(model(**batch)), task.train.labels[idx], task.is_regression)


def _batches(n: int, batch_size: int, gen: torch.Generator) -> Iterator[list[int]]:
    """Batches of a fresh permutation each epoch; a short last batch carries the epoch's remainder."""
    while True:
        order = torch.randperm(n, generator=gen).tolist()
        for s in range(0, n, batch_size):
            yield order[s : s + batch_size]


def _report(model, loaded, task, cfg, result: TrialResult) -> None:
    """The selected checkpoint's metrics on the test split (the reported number) and on a training sample."""
    result.metrics = evaluate(model, loaded, task, task.report_split, batch_size=cfg.eval_batch_size)
    result.metric = result.metrics[task.metric]
    size = min(len(task.train), len(task.report_split) if cfg.gap_examples is None else cfg.gap_examples)
    if size > 0:
        sample = train_sample(task.train, size)
        result.train_metric = evaluate(model, loaded, task, sample, batch_size=cfg.eval_batch_size)[task.metric]
        result.train_sample = f"random {len(sample)} of {len(task.train)}"
    if not all(math.isfinite(v) for v in (result.metric, result.val_metric)):
        result.status, result.error = "diverged", "evaluation metric is not finite"
