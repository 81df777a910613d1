"""The task registry: names to lazy loaders, plus subsampling and the finishing touches."""

from __future__ import annotations

from typing import Callable

from intrinsic_dim.tasks.base import Task, TaskError, check_limit, subsample
from intrinsic_dim.tasks.files import file_task, looks_like_files
from intrinsic_dim.tasks.glue import GLUE, glue_task
from intrinsic_dim.tasks.images import fashion_mnist, mnist_5k, to_unit_float
from intrinsic_dim.tasks.text import newsgroups_20, reuters_r8, tweet_sentiment

PACKAGED: dict[str, Callable[[], Task]] = {
    "tweet-sentiment": tweet_sentiment,
    "reuters-r8": reuters_r8,
    "newsgroups-20": newsgroups_20,
    "mnist-5k": mnist_5k,
    "fashion-mnist": fashion_mnist,
}
"""Tasks whose data ship in installed packages (offline)."""

FILE_SYNTAX = (
    "DIR (holding train.EXT and validation.EXT), TRAIN,EVAL (two files), or FILE (split 90/10), "
    "EXT one of csv, tsv, json, jsonl, with a 'label' column"
)


def list_tasks() -> list[str]:
    """Every registered task name: the packaged (offline) ones, then GLUE's (which need `datasets` and a hub)."""
    return list(PACKAGED) + list(GLUE)


def _load_full(name: str) -> Task:
    key = name.strip().lower()
    if key in PACKAGED:
        return PACKAGED[key]()
    if key in GLUE:
        return glue_task(key)
    if looks_like_files(name):
        return file_task(name)
    raise TaskError(f"unknown task {name!r}. Known tasks: {', '.join(list_tasks())}; or your own data files: {FILE_SYNTAX}")


def load_task(name: str, *, max_train: int | None = None, max_eval: int | None = None, seed: int = 0) -> Task:
    """Load a task by name, optionally subsampled.

    ``name`` is a registered task (:func:`list_tasks`), or your own data files in the convention of
    Hugging Face's run_glue: a directory holding ``train.EXT`` and ``validation.EXT`` (or ``dev.EXT``),
    two files ``TRAIN,EVAL``, or one file split 90/10 by a fixed seeded shuffle; EXT is csv, tsv,
    json (a list of objects, ``{"data": [...]}``, an object of columns, or JSON lines) or jsonl. Files
    need a ``label`` column; the texts are ``sentence1``[/``sentence2``] or else the first one or two
    non-numeric columns (see :mod:`intrinsic_dim.tasks.files`). ``max_train``/``max_eval`` keep that
    many examples, drawn after the task's fixed split by a counter-based shuffle of ``seed``, so the
    same arguments always give the same examples.
    """
    check_limit("max_train", max_train)
    check_limit("max_eval", max_eval)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise TaskError(f"seed must be a non-negative integer, got {seed!r}")
    task = _load_full(name)
    for part, split in (("train", task.train), ("eval", task.eval)):
        if len(split) == 0:
            raise TaskError(f"task {name!r} has an empty {part} split; check its data")
    full = (len(task.train), len(task.eval))
    task.train = to_unit_float(subsample(task.train, max_train, seed, stream=0))
    task.eval = to_unit_float(subsample(task.eval, max_eval, seed, stream=1))
    task.description += f" {full[0]} train / {full[1]} eval examples."
    if (len(task.train), len(task.eval)) != full:
        task.description += f" Subsampled to {len(task.train)} / {len(task.eval)} (seed {seed})."
    return task
