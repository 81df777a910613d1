"""Tasks from datasets objects go through the rules files do; deep JSON and named pipes are one clear TaskError."""

from __future__ import annotations

import json
import os
import re
import signal
from pathlib import Path

import pytest
import torch

from intrinsic_dim.tasks import TaskError, from_datasets, load_task

datasets = pytest.importorskip("datasets")

TEXTS = [f"example {i} {'good' if i % 3 else 'bad'} day" for i in range(60)]
LABELS = [i % 3 for i in range(60)]
NAMES = ["negative", "neutral", "positive"]


def _table(n: int = 60) -> "datasets.Dataset":
    features = datasets.Features({"text": datasets.Value("string"), "idx": datasets.Value("int64"),
                                  "label": datasets.ClassLabel(names=NAMES)})
    return datasets.Dataset.from_dict({"text": TEXTS[:n], "idx": list(range(n)), "label": LABELS[:n]}, features=features)


def _same(a, b) -> None:
    for part in ("train", "eval", "test"):
        sa, sb = getattr(a, part), getattr(b, part)
        assert sa.texts == sb.texts and torch.equal(sa.labels, sb.labels), part
    assert a.label_names == b.label_names and a.metric == b.metric


def test_a_dataset_is_split_and_checked_as_the_same_rows_in_one_file_are(tmp_path):
    data = tmp_path / "data.csv"
    data.write_text("text,idx,label\n" + "".join(f"{t},{i},{NAMES[y]}\n" for i, (t, y) in enumerate(zip(TEXTS, LABELS))))
    task = from_datasets(_table(), max_train=40, max_eval=3, seed=2)
    _same(task, load_task(str(data), max_train=40, max_eval=3, seed=2))
    assert task.label_names == NAMES and task.notes  # ClassLabel ids named; subsampling noted
    assert len(task.train) == 40 and len(task.eval) == 3 and len(task.test) == 3


def test_a_dataset_dict_gives_its_train_and_validation_splits(tmp_path):
    table = _table().rename_column("text", "review").rename_column("label", "stars")
    dd = datasets.DatasetDict({"train": table.select(range(48)), "validation": table.select(range(48, 60))})
    task = from_datasets(dd, text_columns=["review"], label_column="stars", name="reviews")
    assert len(task.train) == 48 and len(task.eval) + len(task.test) == 12 and task.train.texts[0] == (TEXTS[0],)
    (tmp_path / "train.jsonl").write_text("".join(f'{{"review": "{t}", "label": "{NAMES[y]}"}}\n' for t, y in zip(TEXTS[:48], LABELS)))
    (tmp_path / "validation.jsonl").write_text("".join(f'{{"review": "{t}", "label": "{NAMES[y]}"}}\n'
                                                       for t, y in zip(TEXTS[48:], LABELS[48:])))
    _same(task, load_task(str(tmp_path)))


@pytest.mark.parametrize("make, message", [
    (lambda: _table().remove_columns("label"), r"the Dataset dataset has no column\(s\) label \(columns: text, idx\)"),
    (lambda: _table(), r"no column\(s\) body"),
    (lambda: datasets.DatasetDict({"training": _table()}), "has no 'train' split"),
    (lambda: datasets.DatasetDict({"train": _table().filter(lambda r: r["label"] < 2), "validation": _table()}),
     r"label\(s\) \['positive'\] appear in the held-out split but never in the training split"),
    (lambda: {"text": TEXTS}, "needs a datasets.Dataset or DatasetDict, got dict"),
])
def test_a_dataset_that_cannot_make_a_task_is_one_task_error(make, message):
    with pytest.raises(TaskError, match=message):
        from_datasets(make(), text_columns=["body"] if "body" in message else None)


@pytest.mark.parametrize("suffix, text", [(".json", "[" * 100_000 + "]" * 100_000), (".jsonl", '{"a": ' + "[" * 50_000 + "]" * 50_000 + "}\n")])
def test_deeply_nested_json_is_a_task_error(tmp_path, suffix, text):
    path = tmp_path / f"data{suffix}"
    path.write_text(text)
    with pytest.raises(TaskError, match=f"{path} nests JSON lists or objects too deeply"):
        load_task(str(path))


def test_a_named_pipe_as_a_data_file_is_refused_without_blocking(tmp_path):
    pipe = tmp_path / "train.csv"
    os.mkfifo(pipe)

    def hang(*args: object) -> None:
        raise AssertionError("reading the named pipe blocked")

    previous = signal.signal(signal.SIGALRM, hang)
    signal.alarm(20)
    try:
        with pytest.raises(TaskError, match=f"{pipe} is not a regular file"):
            load_task(str(pipe))
        (tmp_path / "validation.csv").write_text("text,label\na,x\nb,y\n")
        with pytest.raises(TaskError, match="is not a regular file"):
            load_task(str(tmp_path))
        os.mkfifo(tmp_path / "corpus.txt")
        with pytest.raises(TaskError, match="corpus.txt is not a regular file"):
            load_task(str(tmp_path / "corpus.txt"))
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    assert Path(pipe).exists()


def _saved_reviews(tmp_path: Path) -> Path:
    """A DatasetDict with its own column names (review, stars), saved with save_to_disk as a user would."""
    table = _table().rename_column("text", "review").rename_column("label", "stars")
    folder = tmp_path / "reviews"
    datasets.DatasetDict({"train": table.select(range(48)), "validation": table.select(range(48, 60))}).save_to_disk(str(folder))
    return folder


def test_a_saved_dataset_trains_from_the_command_line_with_its_columns(tmp_path, capsys):
    from intrinsic_dim.cli import main

    folder, adapter = _saved_reviews(tmp_path), tmp_path / "adapter"
    assert main(["train", "--model", "bert-tiny-random", "--task", str(folder), "--text-columns", "review", "--label-column", "stars",
                 "--d", "50", "--max-steps", "2", "--batch-size", "8", "--max-length", "16", "--threads", "1", "--quiet",
                 "--out", str(adapter)]) == 0
    assert "adapter saved" in capsys.readouterr().out
    meta = json.loads((adapter / "adapter_config.json").read_text())["metadata"]
    assert meta["text_columns"] == ["review"] and meta["label_column"] == "stars"
    assert main(["evaluate", "--adapter", str(adapter), "--quiet"]) == 0  # the columns come back from the adapter
    assert json.loads(capsys.readouterr().out)["examples"] == 6
    task = load_task(str(folder), text_columns=("review",), label_column="stars")
    assert task.label_names == NAMES and task.train.texts[0] == (TEXTS[0],) and len(task.train) == 48


@pytest.mark.parametrize("args, message", [
    (["--text-columns", "body", "--label-column", "stars"], r"no column\(s\) body \(columns: review, idx, stars\)"),
    ([], r"no column\(s\) label .*pass label_column= and text_columns= \(--label-column, --text-columns\)"),
    (["--task", "tweet-sentiment", "--label-column", "stars"], "task 'tweet-sentiment' is not one: drop them"),
    (["--task", "owner/never-published"], "could not load the hub dataset 'owner/never-published'"),
])
def test_a_dataset_task_that_cannot_load_is_one_line_before_any_model(tmp_path, capsys, args, message):
    from intrinsic_dim.cli import main

    out, folder = tmp_path / "adapter", _saved_reviews(tmp_path)
    capsys.readouterr()
    assert main(["train", "--model", "bert-tiny-random", "--task", str(folder), "--d", "50", "--max-steps", "1",
                 "--threads", "1", "--quiet", "--out", str(out), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and re.search(message, err), err
    assert not out.exists()


def test_dataset_columns_are_in_a_run_directorys_key_only_when_given():
    from intrinsic_dim.spec import MeasureSpec

    plain = MeasureSpec().run_config(1)
    assert "text_columns" not in plain and "label_column" not in plain  # stores made before these options still resume
    assert MeasureSpec.from_dict({"label_column": "label"}).run_config(1) == plain
    keyed = MeasureSpec.from_dict({"text_columns": "title,body", "label_column": "stars"}).run_config(1)
    assert keyed == plain | {"text_columns": ["title", "body"], "label_column": "stars"}
