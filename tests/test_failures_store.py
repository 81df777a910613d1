"""A run directory's store that cannot be read is refused, named and left as it is; outputs are written atomically."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import stat
from pathlib import Path

import pytest

from intrinsic_dim.search import measure_d90
from intrinsic_dim.store import DB_NAME, OutputError, Store, StoreError, atomic_folder, atomic_write_text, check_store
from intrinsic_dim.train import TrialConfig

ROOT = Path(__file__).resolve().parents[1]
COMMITTED = sorted((ROOT / "experiments" / "results").glob("**/" + DB_NAME))
KW = dict(seeds=1, baseline=1.0, trial=TrialConfig(said=False), log=lambda s: None, run_config={"model": "m"})


def _finished_run(run_dir: Path) -> None:
    from test_search import Synthetic, _task

    measure_d90(None, _task(), runner=Synthetic(), run_dir=run_dir, **KW)


def _foreign(path: Path) -> None:
    db = sqlite3.connect(path)
    db.executescript("CREATE TABLE users (name TEXT); INSERT INTO users VALUES ('ada');")
    db.close()


def _other_trials_table(path: Path) -> None:
    db = sqlite3.connect(path)
    db.executescript("CREATE TABLE meta (key TEXT, value TEXT); CREATE TABLE trials (id INTEGER, score REAL);")
    db.close()


def _truncated(path: Path, tmp_path: Path) -> None:
    _finished_run(tmp_path / "good")
    data = (tmp_path / "good" / DB_NAME).read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _bad_json(path: Path, tmp_path: Path) -> None:
    _finished_run(tmp_path / "good")
    db = sqlite3.connect(tmp_path / "good" / DB_NAME)
    with db:
        db.execute("UPDATE trials SET curve = '[[1, 0.5' WHERE id = 1")
    db.close()
    path.write_bytes((tmp_path / "good" / DB_NAME).read_bytes())


CASES = {
    "empty": (lambda p, t: p.write_bytes(b""), "is empty \\(0 bytes\\)"),
    "garbage": (lambda p, t: p.write_bytes(os.urandom(5000)), "is not an SQLite database"),
    "foreign schema": (lambda p, t: _foreign(p), "of another schema"),
    "other trials table": (lambda p, t: _other_trials_table(p), "of another schema"),
    "truncated": (_truncated, "damaged SQLite database"),
}


@pytest.mark.parametrize("case", CASES)
def test_an_unreadable_store_is_refused_naming_the_file_and_left_unchanged(tmp_path, case):
    from test_search import Synthetic, _task

    make, message = CASES[case]
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    path = run_dir / DB_NAME
    make(path, tmp_path)
    (run_dir / "d90.json").write_text('{"d90": 300}\n')
    before = hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns
    runner = Synthetic()
    with pytest.raises(StoreError, match=message) as err:
        measure_d90(None, _task(), runner=runner, run_dir=run_dir, **KW)
    assert str(path) in str(err.value) and "move it away" in str(err.value) and "\n" not in str(err.value)
    assert runner.calls == []
    assert (hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns) == before
    assert (run_dir / "d90.json").read_text() == '{"d90": 300}\n'
    with pytest.raises(StoreError, match=message):
        Store(run_dir, read_only=True)


def test_a_stored_value_that_is_not_json_is_an_error_naming_the_file_and_trial(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    _bad_json(run_dir / DB_NAME, tmp_path)
    store = Store(run_dir, read_only=True)
    with pytest.raises(StoreError, match=rf"{run_dir / DB_NAME}: the stored curve of trial 1 is not valid JSON"):
        store.rows()
    store.close()


def test_a_missing_store_passes_and_a_new_one_is_complete_from_its_first_byte(tmp_path):
    check_store(tmp_path / "nothing-here")
    store = Store(tmp_path / "run")
    store.close()
    check_store(tmp_path / "run")
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [DB_NAME]


@pytest.mark.parametrize("path", COMMITTED, ids=lambda p: str(p.parent.relative_to(ROOT / "experiments" / "results")))
def test_every_committed_store_reads_read_only(path):
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    store = Store(path.parent, read_only=True)
    assert store.rows() and store.run_config() is not None
    store.close()
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before


def test_atomic_write_text_replaces_whole_or_not_at_all(tmp_path, monkeypatch):
    target = tmp_path / "trials.csv"
    atomic_write_text(target, "old\n")
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~_umask()

    def fail(*args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", fail)
    with pytest.raises(OSError, match="No space"):
        atomic_write_text(target, "new\n" * 1000)
    assert target.read_text() == "old\n" and sorted(p.name for p in tmp_path.iterdir()) == ["trials.csv"]


def test_export_csv_leaves_only_the_csv(tmp_path):
    _finished_run(tmp_path / "run")
    store = Store(tmp_path / "run", read_only=True)
    store.export_csv(tmp_path / "run" / "trials.csv")
    store.close()
    assert not [p for p in (tmp_path / "run").iterdir() if p.name.endswith(".tmp")]
    assert (tmp_path / "run" / "trials.csv").read_text().startswith("id,role,method")


def test_atomic_folder_renames_into_place_or_leaves_nothing(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(RuntimeError):
        with atomic_folder(out) as tmp:
            (tmp / "a").write_text("x")
            raise RuntimeError("failed half-way")
    assert list(tmp_path.iterdir()) == []
    with atomic_folder(out) as tmp:
        (tmp / "a").write_text("x")
    assert (out / "a").read_text() == "x" and stat.S_IMODE(out.stat().st_mode) == 0o777 & ~_umask()
    with pytest.raises(OutputError, match="not empty"):
        with atomic_folder(out):
            pass
    with atomic_folder(out, replaceable=True) as tmp:
        (tmp / "b").write_text("y")
    assert sorted(p.name for p in out.iterdir()) == ["b"] and sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    (tmp_path / "file").write_text("keep")
    with pytest.raises(OutputError, match="is a file"):
        with atomic_folder(tmp_path / "file"):
            pass
    assert (tmp_path / "file").read_text() == "keep"


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def test_a_store_from_before_selection_on_validation_is_refused(tmp_path):
    """Trials of the format before validation selection (no val_metric column) cannot be mixed with today's."""
    from intrinsic_dim.store import RunConfigMismatch

    _finished_run(tmp_path / "old")
    db = sqlite3.connect(tmp_path / "old" / DB_NAME)
    with db:
        db.execute("ALTER TABLE trials DROP COLUMN val_metric")
    db.close()
    with pytest.raises(RunConfigMismatch, match="earlier version of intrinsic-dim .* use another --run-dir"):
        Store(tmp_path / "old")
