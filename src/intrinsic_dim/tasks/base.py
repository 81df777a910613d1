"""Task data types and the seeded index helpers shared by every loader."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import torch

from intrinsic_dim import rng

SPLIT_SEED = 0
"""Seed of every fixed train/validation split made here (never the user's subsample seed)."""

_SPLIT_STREAM = 0x5B11
_SUBSAMPLE_STREAM = 0x5AB5


LOWER_IS_BETTER = ("loss", "perplexity")
"""Metrics where a smaller value is better."""


class TaskError(ValueError):
    """A task cannot be loaded as asked; the message says what to change."""


Indices = Sequence[int] | torch.Tensor


def as_index(indices: Indices) -> torch.Tensor:
    """``indices`` as a 1-D int64 tensor."""
    return torch.as_tensor(indices, dtype=torch.int64).reshape(-1)


@dataclass
class Split:
    """One split of a task: labels plus either texts or images, one entry per example."""

    labels: torch.Tensor
    texts: list[tuple[str, ...]] | None = None
    images: torch.Tensor | None = None

    def __post_init__(self) -> None:
        n = len(self.labels)
        if (self.texts is None) == (self.images is None):
            raise TaskError("a Split holds either texts or images, exactly one of them")
        if len(self.texts if self.texts is not None else self.images) != n:
            raise TaskError(f"a Split needs one label per example, got {n} labels for a different number of inputs")

    def __len__(self) -> int:
        """The number of examples."""
        return len(self.labels)

    def subset(self, indices: Indices) -> Split:
        """A new Split holding the examples at ``indices``, in that order."""
        idx = as_index(indices)
        texts = [self.texts[i] for i in idx.tolist()] if self.texts is not None else None
        images = self.images[idx] if self.images is not None else None
        return Split(labels=self.labels[idx], texts=texts, images=images)


@dataclass
class Task:
    """Labelled train / validation (``eval``) / test splits with the metric that d90 is measured on.

    Trials select on ``eval`` and report on ``test``; a task built by hand without a test split
    reports on ``eval`` (see :attr:`report_split`). ``notes`` say what loading changed (subsampling).
    Generative tasks (kind ``generative``, :mod:`intrinsic_dim.tasks.generative`) also give their
    ``text_format`` and, when scored by label words, the ``choices`` (one completion per class).
    """

    name: str
    kind: str
    label_names: list[str]
    metric: str
    train: Split
    eval: Split
    description: str
    test: Split | None = None
    notes: list[str] = field(default_factory=list)
    text_format: str = ""
    choices: list[str] | None = None

    @property
    def lower_is_better(self) -> bool:
        """True for a loss-like metric (d90 is then defined on the improvement over the base model)."""
        return self.metric in LOWER_IS_BETTER

    @property
    def report_split(self) -> Split:
        """The split a trial's reported metric is computed on: test, else validation."""
        return self.test if self.test is not None else self.eval

    @property
    def num_labels(self) -> int:
        """The classifier's output size: the number of classes, or 1 for regression."""
        return 1 if self.is_regression else len(self.label_names)

    @property
    def is_regression(self) -> bool:
        """True when labels are real numbers (no label names)."""
        return not self.label_names


def seeded_order(n: int, seed: int, stream: int) -> torch.Tensor:
    """A random permutation of ``range(n)``, a pure function of (seed, stream, n) on every machine."""
    keys = rng.bits(rng.key(seed, stream, 0), torch.arange(n))
    return torch.argsort(keys, stable=True)


def stratified_split(
    labels: torch.Tensor, eval_fraction: float, groups: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fixed (SPLIT_SEED) stratified split into sorted train and eval indices.

    round(fraction * count) of each class goes to eval. With ``groups`` (one id per example),
    examples sharing an id (e.g. duplicate texts) stay on one side: the split is made over each
    group's first example, with its label, and the rest of the group follows it.
    """
    if groups is None:
        groups = torch.arange(len(labels))
    _, inverse = torch.unique(groups, return_inverse=True)
    first = torch.full((int(inverse.max()) + 1 if len(inverse) else 0,), len(labels), dtype=torch.int64)
    first.scatter_reduce_(0, inverse, torch.arange(len(labels)), reduce="amin")
    held_groups = []
    for c in torch.unique(labels).tolist():
        members = torch.nonzero(labels[first] == c).flatten()
        order = members[seeded_order(len(members), SPLIT_SEED, _SPLIT_STREAM + int(c))]
        held_groups.append(order[: round(eval_fraction * len(members))])
    held = torch.zeros(len(first), dtype=torch.bool)
    held[torch.cat(held_groups)] = True
    in_eval = held[inverse]
    return torch.nonzero(~in_eval).flatten(), torch.nonzero(in_eval).flatten()


def subsample(split: Split, limit: int | None, seed: int, stream: int) -> Split:
    """At most ``limit`` examples drawn without replacement by ``seed``, kept in their original order."""
    if limit is None or limit >= len(split):
        return split
    chosen = seeded_order(len(split), seed, _SUBSAMPLE_STREAM + stream)[:limit]
    return split.subset(torch.sort(chosen).values)


TRAIN_SAMPLE_STREAM = 3  # after the train / validation / test subsample streams 0, 1, 2
SELECTION_STREAM = 4


def selection_sample(split: Split, size: int | None) -> Split:
    """The validation examples a trial chooses its checkpoint on while it trains: ``size`` drawn at random (fixed seed,
    the same for every trial), or the whole split."""
    return split if size is None else subsample(split, size, 0, SELECTION_STREAM)


def train_sample(split: Split, size: int) -> Split:
    """``size`` training examples drawn at random (fixed seed, kept in file order), the same for every trial.

    A prefix would not do: packaged files such as mnist-5k and tweet-sentiment are sorted by label, so their
    first examples are one or two classes and a metric on them says nothing about the training set.
    """
    return subsample(split, size, 0, TRAIN_SAMPLE_STREAM)


def check_limit(name: str, value: int | None) -> None:
    """Reject a max_train/max_eval that is not None or a positive integer."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise TaskError(f"{name} must be a positive integer or None (all examples), got {value!r}")


def encode_labels(raw: Sequence[str]) -> tuple[torch.Tensor, list[str]]:
    """Class ids for string labels, classes numbered in sorted order."""
    names = sorted(set(raw))
    ids = {n: i for i, n in enumerate(names)}
    return torch.tensor([ids[r] for r in raw], dtype=torch.int64), names


def validation_test_halves(held: Split, regression: bool) -> tuple[Split, Split]:
    """The held-out split cut into two fixed halves, validation and test (stratified by class; a
    repeated text stays on one side), so selection and report never see the same examples."""
    if len(held) < 2:
        raise TaskError(f"the held-out split has {len(held)} example(s); it needs at least 2: half selects, half reports")
    labels = torch.zeros(len(held), dtype=torch.int64) if regression else held.labels
    groups = None
    if held.texts is not None:
        ids = {t: i for i, t in enumerate(dict.fromkeys(held.texts))}
        groups = torch.tensor([ids[t] for t in held.texts])
    val_idx, test_idx = stratified_split(labels, 0.5, groups)
    if len(val_idx) == 0 or len(test_idx) == 0:
        val_idx, test_idx = torch.arange(len(held) // 2), torch.arange(len(held) // 2, len(held))
    return held.subset(val_idx), held.subset(test_idx)
