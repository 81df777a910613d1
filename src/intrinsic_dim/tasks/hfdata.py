"""Tasks from Hugging Face ``datasets`` objects already in memory (the Python API; ``pip install 'intrinsic-dim[hf]'``).

A ``Dataset`` is one table, split 90/10 by the fixed shuffle a single data file gets; a ``DatasetDict`` gives its
``train`` split and its ``validation`` (or ``dev``) split, or only ``train``, then split the same way. The rows go
through the same column, label and split rules and checks as data files (:mod:`intrinsic_dim.tasks.files`): a
``ClassLabel`` column's classes are named by its names (numbered in sorted order, as string labels in files are).
"""

from __future__ import annotations

from typing import Any, Sequence

from intrinsic_dim.tasks.base import Task, TaskError
from intrinsic_dim.tasks.files import EVAL_STEMS, Row, checked_rows, rows_task
from intrinsic_dim.tasks.registry import check_options, finish_task


def _rows(table: Any, where: str, text_columns: Sequence[str] | None, label_column: str) -> list[Row]:
    """The table's rows with its label column under the name ``label`` (class names for a ClassLabel)."""
    names = list(table.column_names)
    wanted = [label_column, *(text_columns or [])]
    missing = [c for c in wanted if c not in names]
    if missing:
        raise TaskError(f"{where} has no column(s) {', '.join(missing)} (columns: {', '.join(names)}); "
                        "pass label_column= and text_columns= naming its columns")
    feature = table.features[label_column]
    columns = table.to_dict()
    labels = columns.pop(label_column)
    if hasattr(feature, "int2str"):  # a ClassLabel: its ids named
        labels = [feature.int2str(v) if isinstance(v, int) and 0 <= v < feature.num_classes else v for v in labels]
    keep = list(text_columns) if text_columns else [c for c in columns if c != "label"]
    rows = [dict(zip(keep, values)) | {"label": label} for *values, label in zip(*(columns[c] for c in keep), labels)]
    return checked_rows(rows, where)


def from_datasets(data: Any, text_columns: Sequence[str] | None = None, label_column: str = "label", name: str = "dataset", *,
                  max_train: int | None = None, max_eval: int | None = None, seed: int = 0, metric: str | None = None) -> Task:
    """A text task from a ``datasets.Dataset`` or ``DatasetDict``: ``text_columns`` (default: as for files, the first
    one or two text columns), ``label_column`` the targets; split, checked and subsampled as :func:`load_task` does."""
    check_options(max_train, max_eval, seed)
    try:
        import datasets
    except ImportError as e:
        raise TaskError(f"from_datasets needs the datasets package ({e}): pip install 'intrinsic-dim[hf]'") from None
    if text_columns is not None and (isinstance(text_columns, str) or not 1 <= len(text_columns) <= 2):
        raise TaskError(f"text_columns must be a list of one or two column names, got {text_columns!r}")
    if isinstance(data, datasets.DatasetDict):
        if "train" not in data:
            raise TaskError(f"the DatasetDict has no 'train' split (splits: {', '.join(data)}); name its training split 'train'")
        held = next((k for k in EVAL_STEMS if k in data), None)
        train = (f"{name}['train']", _rows(data["train"], f"{name}['train']", text_columns, label_column))
        rest = (f"{name}[{held!r}]", _rows(data[held], f"{name}[{held!r}]", text_columns, label_column)) if held else None
    elif isinstance(data, datasets.Dataset):
        train, rest = (f"the Dataset {name}", _rows(data, f"the Dataset {name}", text_columns, label_column)), None
    else:
        raise TaskError(f"from_datasets needs a datasets.Dataset or DatasetDict, got {type(data).__name__}")
    task = rows_task(name, train, rest, list(text_columns) if text_columns else None)
    return finish_task(task, name, max_train=max_train, max_eval=max_eval, seed=seed, metric=metric)
