"""Bring-your-own tasks from CSV/TSV/JSON/JSONL files, in the convention of Hugging Face's run_glue.

Columns: ``label`` holds the target; the texts are ``sentence1`` (and ``sentence2`` if present),
or else the first one or two non-label columns that hold text (columns whose every value is a
number, such as ``id``/``idx``, are skipped). Labels that are strings are classes numbered in
sorted order; labels that are all integers are classes numbered in numeric order (so 1..5 becomes
0..4); any fractional number makes the task a regression (float labels, one output).
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import torch

from intrinsic_dim.tasks.base import SPLIT_SEED, Split, Task, TaskError, seeded_order, stratified_split

EXTENSIONS = (".csv", ".tsv", ".json", ".jsonl")
EVAL_STEMS = ("validation", "dev")
SINGLE_FILE_EVAL_FRACTION = 0.1
_PLAIN_SPLIT_STREAM = 0x5B12

Row = dict[str, Any]


def _exists(path: str | Path) -> bool:
    """Whether ``path`` exists (a name too long for the file system does not)."""
    try:
        return Path(path).exists()
    except OSError:
        return False


def looks_like_files(name: str) -> bool:
    """True when ``name`` names data files rather than a registered task."""
    return "," in name or name.lower().endswith(EXTENSIONS) or _exists(name)


def _read_json(path: Path, text: str) -> list[Any]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        if not e.msg.startswith("Extra data"):
            raise
        return _read_jsonl(text)
    if isinstance(data, dict) and isinstance(data.get("data"), list):
        return data["data"]
    if isinstance(data, dict) and data and all(isinstance(v, list) for v in data.values()):
        lengths = {len(v) for v in data.values()}
        if len(lengths) != 1:
            raise TaskError(f"{path}: a JSON object of columns needs columns of equal length, got lengths {sorted(lengths)}")
        return [dict(zip(data, values)) for values in zip(*data.values())]
    if isinstance(data, list):
        return data
    raise TaskError(f"{path}: expected a JSON list of objects, an object with a 'data' list, an object of columns, or JSON lines")


def _read_jsonl(text: str) -> list[Any]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def read_rows(path: Path) -> list[Row]:
    """The rows of one data file as dicts; a TaskError for anything unreadable, for a path that is not a regular file
    (a named pipe would block the read for ever) and for JSON nested beyond what the parser's recursion allows."""
    suffix = path.suffix.lower()
    if suffix not in EXTENSIONS:
        raise TaskError(f"{path}: unsupported file type {suffix!r}; use one of {', '.join(EXTENSIONS)}")
    if _exists(path) and not path.is_file():
        raise TaskError(f"{path} is not a regular file (a folder, named pipe or device cannot be read as data): pass a data file")
    try:
        text = path.read_text(encoding="utf-8-sig")
        if suffix in (".csv", ".tsv"):
            rows: list[Any] = list(csv.DictReader(text.splitlines(), delimiter="\t" if suffix == ".tsv" else ","))
        else:
            rows = _read_jsonl(text) if suffix == ".jsonl" else _read_json(path, text)
    except FileNotFoundError:
        raise TaskError(f"data file not found: {path}") from None
    except UnicodeDecodeError:
        raise TaskError(f"{path} is not UTF-8 text; re-save it as UTF-8") from None
    except OSError as e:
        raise TaskError(f"data file {path} cannot be read ({e.strerror}): pass a readable data file") from None
    except (OSError, csv.Error, json.JSONDecodeError) as e:
        raise TaskError(f"cannot read {path}: {e}") from None
    except RecursionError:
        raise TaskError(f"{path} nests JSON lists or objects too deeply to read; each example should be a flat object "
                        "of columns") from None
    return checked_rows(rows, path)


def checked_rows(rows: list[Any], where: str | Path) -> list[Row]:
    """``rows`` if there are some and each is a dict of columns, else a TaskError naming ``where``."""
    if not rows:
        raise TaskError(f"{where} holds no examples")
    bad = next((i for i, r in enumerate(rows) if not isinstance(r, dict)), None)
    if bad is not None:
        raise TaskError(f"{where}: example {bad + 1} is not an object with named columns: {rows[bad]!r}")
    return rows


def _columns(rows: list[Row]) -> list[str]:
    return list(dict.fromkeys(k for r in rows for k in r if k is not None))


def _number(v: Any) -> float | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, str):
        try:
            return float(v.strip())
        except ValueError:
            return None
    return None


def text_columns(rows: list[Row], path: str | Path) -> list[str]:
    """``sentence1``[/``sentence2``], or else the first one or two non-numeric, non-label columns."""
    columns = [c for c in _columns(rows) if c != "label"]
    if "sentence1" in columns:
        return ["sentence1"] + (["sentence2"] if "sentence2" in columns else [])
    texts = [c for c in columns if any(r.get(c) not in (None, "") and _number(r.get(c)) is None for r in rows)]
    if not texts:
        raise TaskError(f"{path} has no text column (columns: {', '.join(columns) or 'none'}); add a 'sentence1' column")
    return texts[:2]


def _raw_labels(rows: list[Row], path: str | Path) -> list[Any]:
    if "label" not in _columns(rows):
        raise TaskError(
            f"{path} has no 'label' column (columns: {', '.join(_columns(rows))}); "
            "rename the column holding the targets to 'label'"
        )
    out = []
    for i, r in enumerate(rows):
        v = r.get("label")
        if v is None or (isinstance(v, str) and not v.strip()) or isinstance(v, (dict, list)):
            raise TaskError(
                f"{path}: example {i + 1} has a bad label {v!r}; every label must be a class name, an integer or a number"
            )
        out.append(v.strip() if isinstance(v, str) else v)
    return out


def encode_file_labels(raw: list[Any], where: str) -> tuple[torch.Tensor, list[str]]:
    """Class ids and sorted class names, or float32 targets and no names for a regression."""
    numbers = [_number(v) for v in raw]
    if all(n is not None for n in numbers):
        if not all(math.isfinite(n) for n in numbers):
            raise TaskError(f"{where}: the label column holds a non-finite number (nan or inf)")
        if any(n != int(n) for n in numbers):
            return torch.tensor(numbers, dtype=torch.float32), []
        classes = sorted({int(n) for n in numbers})
        ids = {c: i for i, c in enumerate(classes)}
        labels, names = torch.tensor([ids[int(n)] for n in numbers], dtype=torch.int64), [str(c) for c in classes]
    else:
        names = sorted({str(v) for v in raw})
        ids = {c: i for i, c in enumerate(names)}
        labels = torch.tensor([ids[str(v)] for v in raw], dtype=torch.int64)
    if len(names) < 2:
        raise TaskError(f"{where}: the label column has a single class {names[0]!r}; a classification task needs at least two")
    return labels, names


def _texts(rows: list[Row], columns: list[str], path: str | Path) -> list[tuple[str, ...]]:
    missing = [c for c in columns if all(c not in r for r in rows)]
    if missing:
        raise TaskError(f"{path} lacks the text column(s) {', '.join(missing)} that the training file uses")
    return [tuple("" if r.get(c) is None else str(r.get(c)) for c in columns) for r in rows]


def resolve_files(name: str) -> tuple[Path, Path | None]:
    """The (train, eval) paths named by ``name``: 'TRAIN,EVAL', a directory, or one file (eval None)."""
    if "," in name:
        parts = [p.strip() for p in name.split(",")]
        if len(parts) != 2 or not all(parts):
            raise TaskError(f"{name!r}: give exactly two files as TRAIN,EVAL (e.g. train.csv,validation.csv)")
        return Path(parts[0]), Path(parts[1])
    path = Path(name)
    if not (_exists(path) and path.is_dir()):
        return path, None
    found = {p.stem.lower(): p for p in sorted(path.iterdir()) if p.suffix.lower() in EXTENSIONS}
    evals = [found[s] for s in EVAL_STEMS if s in found]
    if "train" not in found or not evals:
        raise TaskError(
            f"directory {path} needs train.EXT and validation.EXT (or dev.EXT) with EXT one of "
            f"{', '.join(e[1:] for e in EXTENSIONS)}; it holds: {', '.join(sorted(p.name for p in path.iterdir())) or 'nothing'}"
        )
    return found["train"], evals[0]


def _single_file_split(labels: torch.Tensor, regression: bool, path: str | Path) -> tuple[torch.Tensor, torch.Tensor, str]:
    if regression:
        order = seeded_order(len(labels), SPLIT_SEED, _PLAIN_SPLIT_STREAM)
        k = round(SINGLE_FILE_EVAL_FRACTION * len(labels))
        train_idx, eval_idx = torch.sort(order[k:]).values, torch.sort(order[:k]).values
    else:
        train_idx, eval_idx = stratified_split(labels, SINGLE_FILE_EVAL_FRACTION)
    if len(eval_idx) == 0 or len(train_idx) == 0:
        raise TaskError(f"{path} has too few examples ({len(labels)}) to hold out {SINGLE_FILE_EVAL_FRACTION:g} for evaluation")
    kind = "plain" if regression else "stratified"
    fraction = SINGLE_FILE_EVAL_FRACTION
    how = f"{path}, split {1 - fraction:g}/{fraction:g} by a fixed {kind} shuffle (seed {SPLIT_SEED})"
    return train_idx, eval_idx, how


def file_task(name: str) -> Task:
    """A task from the file(s) named by ``name`` (see :func:`resolve_files`)."""
    train_path, eval_path = resolve_files(name)
    held = (str(eval_path), read_rows(eval_path)) if eval_path else None
    return rows_task(name, (f"one file {train_path}" if held is None else str(train_path), read_rows(train_path)), held)


def rows_task(name: str, train: tuple[str, list[Row]], held: tuple[str, list[Row]] | None,
              columns: list[str] | None = None) -> Task:
    """A text task from rows of named columns, each part given with the words that name it in messages: the train rows
    and the held-out rows, or none (then the train rows are split 90/10 by a fixed shuffle); ``columns``: the text
    columns (default: as :func:`text_columns` chooses). The labels are the rows' ``label`` values."""
    sources = [train] + ([held] if held else [])
    columns = columns or text_columns(train[1], train[0])
    raw = [v for where, rows in sources for v in _raw_labels(rows, where)]
    labels, names = encode_file_labels(raw, " and ".join(where for where, _ in sources))
    full = Split(labels=labels, texts=[t for where, rows in sources for t in _texts(rows, columns, where)])
    if held is None:
        train_idx, eval_idx, how = _single_file_split(labels, not names, train[0])
    else:
        n = len(train[1])
        train_idx, eval_idx = torch.arange(n), torch.arange(n, len(labels))
        how = f"train {train[0]}, eval {held[0]}"
    shown = ", ".join(names[:10]) + (", ..." if len(names) > 10 else "")
    target = f"{len(names)} classes from 'label' ({shown})" if names else "regression on 'label' (float)"
    return Task(
        name=name, kind="text", label_names=names, metric="accuracy" if names else "spearmanr",
        train=full.subset(train_idx), eval=full.subset(eval_idx),
        description=f"Your data: {how}; text column(s) {', '.join(columns)}; {target}.",
    )
