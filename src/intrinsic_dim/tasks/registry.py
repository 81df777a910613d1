"""The task registry: names to lazy loaders, plus subsampling and the finishing touches."""

from __future__ import annotations

from typing import Any, Callable, Sequence

from intrinsic_dim.tasks.base import Split, Task, TaskError, check_limit, subsample, validation_test_halves
from intrinsic_dim.tasks.files import file_task, looks_like_files
from intrinsic_dim.tasks.generative import generative_file_task, looks_generative, tweet_sentiment_generative
from intrinsic_dim.tasks.glue import GLUE, glue_task
from intrinsic_dim.tasks.hfdata import dataset_task, is_hub_dataset_id, is_saved_dataset, named_dataset_task
from intrinsic_dim.tasks.images import fashion_mnist, mnist_5k, to_unit_float
from intrinsic_dim.tasks.text import newsgroups_20, reuters_r8, tweet_sentiment

PACKAGED: dict[str, Callable[[], Task]] = {
    "tweet-sentiment": tweet_sentiment,
    "tweet-sentiment-gen": tweet_sentiment_generative,
    "reuters-r8": reuters_r8,
    "newsgroups-20": newsgroups_20,
    "mnist-5k": mnist_5k,
    "fashion-mnist": fashion_mnist,
}
"""Tasks whose data ship in installed packages (offline)."""

FILE_SYNTAX = (
    "DIR (holding train.EXT and validation.EXT), TRAIN,EVAL (two files), or FILE (split 90/10), "
    "EXT one of csv, tsv, json, jsonl, with a 'label' column; for causal LMs a JSONL with prompt/completion or "
    "messages (FILE or TRAIN,EVAL), or a .txt file (plain language modelling); or a Hugging Face dataset: a hub id "
    "owner/name or a save_to_disk folder"
)


def list_tasks() -> list[str]:
    """Every registered task name: the packaged (offline) ones, then GLUE's (which need `datasets` and a hub)."""
    return list(PACKAGED) + list(GLUE)


def _load_full(name: str, text_columns: Sequence[str] | None, label_column: str | None) -> Task:
    if is_saved_dataset(name) or is_hub_dataset_id(name):
        return named_dataset_task(name, text_columns, label_column)
    if text_columns or label_column:
        raise TaskError(f"text_columns / label_column (--text-columns, --label-column) pick the columns of a Hugging Face "
                        f"dataset (a hub id owner/name or a save_to_disk folder); task {name!r} is not one: drop them")
    key = name.strip().lower()
    if key in PACKAGED:
        return PACKAGED[key]()
    if key in GLUE:
        return glue_task(key)
    if looks_generative(name):
        return generative_file_task(name)
    if looks_like_files(name):
        return file_task(name)
    raise TaskError(f"unknown task {name!r}. Known tasks: {', '.join(list_tasks())}; or your own data files: {FILE_SYNTAX}")


def load_task(name: str, *, max_train: int | None = None, max_eval: int | None = None, seed: int = 0,
              metric: str | None = None, text_columns: Sequence[str] | None = None, label_column: str | None = None) -> Task:
    """Load a task by name, optionally subsampled.

    ``name`` is a registered task (:func:`list_tasks`), or your own data files in the convention of
    Hugging Face's run_glue: a directory holding ``train.EXT`` and ``validation.EXT`` (or ``dev.EXT``),
    two files ``TRAIN,EVAL``, or one file split 90/10 by a fixed seeded shuffle; EXT is csv, tsv,
    json (a list of objects, ``{"data": [...]}``, an object of columns, or JSON lines) or jsonl. Files
    need a ``label`` column; the texts are ``sentence1``[/``sentence2``] or else the first one or two
    non-numeric columns (see :mod:`intrinsic_dim.tasks.files`). Or a Hugging Face dataset, a hub id ``owner/name``
    or a ``save_to_disk`` folder, read as :func:`from_datasets` reads it, with its ``text_columns`` and
    ``label_column``. The held-out split is cut into fixed
    validation and test halves. ``max_train`` keeps that many training examples, ``max_eval`` that many
    of each half, drawn after the fixed splits by a counter-based shuffle of ``seed``, so the same
    arguments always give the same examples; ``task.notes`` says when a limit subsampled or exceeded a split.
    ``metric`` measures the task on another of the metrics it offers (:func:`metrics_offered`) than its default.
    """
    check_options(max_train, max_eval, seed)
    task = _load_full(name, text_columns, label_column)
    return finish_task(task, name, max_train=max_train, max_eval=max_eval, seed=seed, metric=metric)


def from_datasets(data: Any, text_columns: Sequence[str] | None = None, label_column: str = "label", name: str = "dataset", *,
                  max_train: int | None = None, max_eval: int | None = None, seed: int = 0, metric: str | None = None) -> Task:
    """A text task from a ``datasets.Dataset`` or ``DatasetDict``: ``text_columns`` (default: as for files, the first
    one or two text columns), ``label_column`` the targets; split, checked and subsampled as :func:`load_task` does."""
    check_options(max_train, max_eval, seed)
    task = dataset_task(data, text_columns, label_column, name)
    return finish_task(task, name, max_train=max_train, max_eval=max_eval, seed=seed, metric=metric)


def check_options(max_train: int | None, max_eval: int | None, seed: int) -> None:
    """Refuse a bad max_train, max_eval or seed before any data is read."""
    check_limit("max_train", max_train)
    check_limit("max_eval", max_eval)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise TaskError(f"seed must be a non-negative integer, got {seed!r}")


def finish_task(task: Task, name: str, *, max_train: int | None = None, max_eval: int | None = None, seed: int = 0,
                metric: str | None = None) -> Task:
    """A loaded task checked (metric, empty splits, labels unseen in training), its held-out split cut into validation and
    test halves, and subsampled: what every task goes through, from a name or from :func:`~intrinsic_dim.tasks.from_datasets`."""
    if metric is not None and metric != task.metric:
        offered = metrics_offered(task)
        if metric not in offered:
            raise TaskError(f"--metric {metric}: task {task.name!r} is measured on {' or '.join(offered)}; pick one of those")
        task.metric = metric
        task.notes.append(f"metric: {metric} (the task's default is {offered[0]})")
    for part, split in (("train", task.train), ("held-out", task.eval)):
        if len(split) == 0:
            raise TaskError(f"task {name!r} has an empty {part} split; check its data")
    _check_labels(task)
    if task.test is None:
        task.eval, task.test = validation_test_halves(task.eval, task.is_regression)
    task.description += (
        f" {len(task.train)} train / {len(task.eval)} validation / {len(task.test)} test examples"
        " (trials select on validation and report on test)."
    )
    task.train = to_unit_float(_limited(task, "train", task.train, max_train, seed, 0, "max_train"))
    task.eval = to_unit_float(_limited(task, "validation", task.eval, max_eval, seed, 1, "max_eval"))
    task.test = to_unit_float(_limited(task, "test", task.test, max_eval, seed, 2, "max_eval"))
    return task


def metrics_offered(task: Task) -> tuple[str, ...]:
    """The metrics a task can be measured on, its default first: a generative task scored by label words also
    offers the loss of the true completion's tokens (lower is better); every other task its one metric."""
    if task.kind == "generative" and task.choices and task.metric == "accuracy":
        return ("accuracy", "loss")
    return (task.metric,)


def _check_labels(task: Task) -> None:
    if task.is_regression:
        return
    known = set(task.train.labels.tolist())
    for part, split in (("held-out", task.eval), ("test", task.test)):
        extra = sorted(set(split.labels.tolist()) - known) if split is not None else []
        if extra:
            names = [task.label_names[i] for i in extra]
            raise TaskError(
                f"task {task.name!r}: label(s) {names} appear in the {part} split but never in the training split; "
                "a classifier cannot learn them: remove those examples or add training examples of them"
            )


def _limited(task: Task, part: str, split: Split, limit: int | None, seed: int, stream: int, option: str) -> Split:
    """``split`` subsampled to ``limit`` examples, with a note in ``task.notes`` whenever the limit matters."""
    if limit is not None and limit < len(split):
        task.notes.append(f"{part} split subsampled from {len(split):,} to {limit:,} examples ({option}={limit}, seed {seed})")
    elif limit is not None and limit > len(split):
        task.notes.append(f"{option}={limit:,} is more than the {len(split):,} {part} examples: all of them are used")
    return subsample(split, limit, seed, stream)
