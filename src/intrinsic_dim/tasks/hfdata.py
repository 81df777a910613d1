"""Tasks from Hugging Face ``datasets`` (``pip install 'intrinsic-dim[hf]'``): objects already in memory
(:func:`~intrinsic_dim.tasks.from_datasets`), a folder written by ``save_to_disk``, or a hub id ``owner/name`` that
``datasets.load_dataset`` can load (from its cache when ``HF_HUB_OFFLINE`` is set).

A ``Dataset`` is one table, split 90/10 by the fixed shuffle a single data file gets; a ``DatasetDict`` gives its
``train`` split and its ``validation`` (or ``dev``) split, or only ``train``, then split the same way. The rows go
through the same column, label and split rules and checks as data files (:mod:`intrinsic_dim.tasks.files`): a
``ClassLabel`` column's classes are named by its names (numbered in sorted order, as string labels in files are).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from intrinsic_dim.tasks.base import Task, TaskError
from intrinsic_dim.tasks.files import EVAL_STEMS, EXTENSIONS, Row, checked_rows, rows_task

SAVED_MARKERS = ("dataset_dict.json", "state.json")
"""The files ``save_to_disk`` writes at the top of a DatasetDict's / a Dataset's folder."""


def _datasets() -> Any:
    try:
        import datasets
    except ImportError as e:
        raise TaskError(f"a Hugging Face dataset needs the datasets package ({e}): pip install 'intrinsic-dim[hf]'") from None
    return datasets


def _rows(table: Any, where: str, text_columns: Sequence[str] | None, label_column: str) -> list[Row]:
    """The table's rows with its label column under the name ``label`` (class names for a ClassLabel)."""
    names = list(table.column_names)
    wanted = [label_column, *(text_columns or [])]
    missing = [c for c in wanted if c not in names]
    if missing:
        raise TaskError(f"{where} has no column(s) {', '.join(missing)} (columns: {', '.join(names)}); "
                        "pass label_column= and text_columns= (--label-column, --text-columns) naming its columns")
    feature = table.features[label_column]
    columns = table.to_dict()
    labels = columns.pop(label_column)
    if hasattr(feature, "int2str"):  # a ClassLabel: its ids named
        labels = [feature.int2str(v) if isinstance(v, int) and 0 <= v < feature.num_classes else v for v in labels]
    keep = list(text_columns) if text_columns else [c for c in columns if c != "label"]
    rows = [dict(zip(keep, values)) | {"label": label} for *values, label in zip(*(columns[c] for c in keep), labels)]
    return checked_rows(rows, where)


def dataset_task(data: Any, text_columns: Sequence[str] | None, label_column: str | None, name: str) -> Task:
    """The unfinished task (not yet checked, halved or subsampled) of a ``Dataset`` or ``DatasetDict``."""
    datasets = _datasets()
    label_column = label_column or "label"
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
    return rows_task(name, train, rest, list(text_columns) if text_columns else None)


def is_saved_dataset(name: str) -> bool:
    """Whether ``name`` is a folder written by ``Dataset.save_to_disk`` or ``DatasetDict.save_to_disk``."""
    try:
        return any((Path(name) / marker).is_file() for marker in SAVED_MARKERS)
    except OSError:
        return False


def is_hub_dataset_id(name: str) -> bool:
    """Whether ``name`` has the shape of a hub dataset id, ``owner/name``, and is no path here nor a data file's name."""
    owner, _, rest = name.partition("/")
    try:
        here = Path(name).exists()
    except OSError:
        here = False
    return (bool(owner) and bool(rest) and "/" not in rest and not owner.startswith((".", "~")) and "," not in name
            and not name.lower().endswith((*EXTENSIONS, ".txt")) and not any(c.isspace() for c in name) and not here)


def named_dataset_task(name: str, text_columns: Sequence[str] | None, label_column: str | None) -> Task:
    """The unfinished task of a ``save_to_disk`` folder or a hub dataset id; one TaskError if it cannot be loaded."""
    datasets = _datasets()
    saved = is_saved_dataset(name)
    try:
        data = datasets.load_from_disk(name) if saved else datasets.load_dataset(name)
    except Exception as e:  # datasets raises many types for an unreachable hub, a missing cache or a damaged folder
        where = f"the saved dataset folder {name}" if saved else f"the hub dataset {name!r}"
        hint = ("save it again with save_to_disk" if saved else
                "it is not a registered task nor a folder here; check the id, or run once where the hub is reachable "
                "(HF_HUB_OFFLINE unset) so that datasets caches it")
        raise TaskError(f"could not load {where} ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}): {hint}") from None
    return dataset_task(data, text_columns, label_column, name)
