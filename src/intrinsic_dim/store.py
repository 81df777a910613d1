"""The results store of a run directory: SQLite (WAL), one row per finished trial.

A trial is written the moment it finishes, keyed by the JSON of its TrialConfig, so rerunning the
same command on the same run directory skips finished trials and resumes where it stopped. The
run's own configuration is kept too: reopening a run directory with a different configuration is
refused, since mixing trials of two setups would give a meaningless d90.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import io
import json
import os
import shutil
import socket
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator, Sequence

from intrinsic_dim.fingerprint import KEY as FINGERPRINT
from intrinsic_dim.fingerprint import same_run_config
from intrinsic_dim.results import TrialResult

DB_NAME = "trials.sqlite"
LOCK_NAME = "run.lock"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS trials (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    role TEXT NOT NULL,
    config_key TEXT NOT NULL UNIQUE,
    method TEXT NOT NULL,
    d INTEGER,
    seed INTEGER NOT NULL,
    lr REAL NOT NULL,
    status TEXT NOT NULL,
    metric REAL,
    val_metric REAL,
    train_metric REAL,
    train_sample TEXT,
    metrics TEXT NOT NULL,
    steps INTEGER NOT NULL,
    train_loss REAL,
    wall_s REAL NOT NULL,
    trainable INTEGER NOT NULL,
    curve TEXT NOT NULL,
    losses TEXT,
    error TEXT,
    machine TEXT,
    config TEXT NOT NULL,
    finished_at REAL NOT NULL
);
"""

_SQLITE_MAGIC = b"SQLite format 3\x00"
_REQUIRED = {"meta": {"key", "value"}, "trials": {"id", "role", "config_key", "method", "d", "seed", "lr", "status", "metric",
                                                  "metrics", "steps", "wall_s", "trainable", "curve", "config", "finished_at"}}
_MOVE_AWAY = "move it away (or pass another --run-dir) and rerun; the file was left as it is"

CSV_FIELDS = ["id", "role", "method", "d", "seed", "lr", "status", "metric", "val_metric", "train_metric", "train_sample", "steps", "train_loss", "wall_s", "trainable", "error", "machine"]


class RunConfigMismatch(ValueError):
    """The run directory holds trials of a different configuration."""


class RunDirError(ValueError):
    """The run directory cannot be used: not writable, not a directory, or another process holds it."""


class StoreError(RunDirError):
    """The run directory's trials.sqlite cannot be read as an intrinsic-dim store (empty, foreign or corrupt)."""


class OutputError(ValueError):
    """An output path that cannot receive what is to be written there (a file, or a folder holding other things)."""


def _umask() -> int:
    """The process's file-creation mask (read by setting and restoring it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def output_file_problem(path: str | Path) -> str | None:
    """Why a command could not write its output file ``path``, checked before minutes of work, or None."""
    target = Path(path)
    if target.is_dir():
        return "is a folder; give a file name"
    if not target.parent.is_dir():
        return f"its folder {target.parent} does not exist"
    if not os.access(target.parent, os.W_OK) or (target.exists() and not os.access(target, os.W_OK)):
        return "cannot be written here"
    return None


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file in the same folder and a rename, so that a crash
    leaves either the old file or the new one, never a cut-off one; the mode is 0666 less the umask."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


@contextlib.contextmanager
def atomic_folder(path: str | Path, replaceable: bool = False) -> Iterator[Path]:
    """Yield a temporary folder beside ``path`` to fill; on success it is renamed to ``path`` (0755 less the
    umask), on any error removed. An existing ``path`` is refused unless it is an empty folder, or
    ``replaceable`` (the caller has checked it holds an earlier output of the same kind), when it is replaced."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputError(f"{path} is a file, not a folder: pass another output folder")
    if path.is_dir() and any(path.iterdir()) and not replaceable:
        raise OutputError(f"{path} is a folder that is not empty: pass a new output folder, or remove it")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())
        if path.is_dir():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
            os.replace(path, old / path.name)
            os.replace(tmp, path)
            shutil.rmtree(old)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def check_store(run_dir: str | Path) -> None:
    """Refuse a run directory whose trials.sqlite exists but is not a readable intrinsic-dim store, without
    changing it: a StoreError naming the file and what to do (before any work; a missing store passes)."""
    path = Path(run_dir) / DB_NAME
    if not path.exists():
        return
    if not path.is_file():
        raise StoreError(f"{path} is not a file: {_MOVE_AWAY}")
    try:
        with open(path, "rb") as f:
            head = f.read(len(_SQLITE_MAGIC))
    except OSError as e:
        raise StoreError(f"{path} cannot be read ({e.strerror}): {_MOVE_AWAY}") from None
    if not head:
        raise StoreError(f"{path} is empty (0 bytes), so it holds no trials and is not a store this tool wrote: {_MOVE_AWAY}")
    if head != _SQLITE_MAGIC:
        raise StoreError(f"{path} is not an SQLite database (it does not start with the SQLite header): {_MOVE_AWAY}")
    try:
        # read-write when allowed, only so that closing removes the -wal/-shm files a read-only connection leaves;
        # nothing here writes
        mode = "rw" if os.access(path, os.W_OK) and os.access(path.parent, os.W_OK) else "ro"
        db = sqlite3.connect(f"{path.absolute().as_uri()}?mode={mode}", uri=True, timeout=60)
        try:
            check = [r[0] for r in db.execute("PRAGMA quick_check")]
            tables = {t: {r[1] for r in db.execute(f"PRAGMA table_info({t})")} for t in _REQUIRED}
        finally:
            db.close()
    except sqlite3.DatabaseError as e:
        raise StoreError(f"{path} is a damaged SQLite database ({e}): {_MOVE_AWAY}") from None
    if check != ["ok"]:
        raise StoreError(f"{path} is a damaged SQLite database (integrity check: {'; '.join(check[:3])}): {_MOVE_AWAY}")
    missing = {t: sorted(cols - tables[t]) for t, cols in _REQUIRED.items() if cols - tables[t]}
    if missing:
        raise StoreError(f"{path} is an SQLite database of another schema, not an intrinsic-dim store (missing tables or "
                         f"columns: {missing}): {_MOVE_AWAY}")


def check_writable(run_dir: str | Path, create: bool = True) -> Path:
    """``run_dir`` created if needed, or a RunDirError saying why it cannot hold a run (before any work). With
    ``create=False`` nothing is made: a missing directory passes when its nearest existing parent is writable."""
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise RunDirError(f"run directory {run_dir} is a file, not a directory: pass another --run-dir")
    if not create and not run_dir.exists():
        parent = next(p for p in run_dir.absolute().parents if p.exists())
        if not (parent.is_dir() and os.access(parent, os.W_OK | os.X_OK)):
            raise RunDirError(f"cannot create run directory {run_dir} ({parent} is not a writable directory): pass a writable --run-dir")
        return run_dir
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise RunDirError(f"cannot create run directory {run_dir} ({e.strerror}): pass a writable --run-dir") from None
    if not os.access(run_dir, os.W_OK | os.X_OK):
        raise RunDirError(
            f"run directory {run_dir} is not writable: pass a writable --run-dir "
            f"(a finished run can still be read with `intrinsic-dim report {run_dir} --out OTHER_DIR`)"
        )
    return run_dir


class RunLock:
    """One writer per run directory: an exclusive ``flock`` on ``run.lock``, held while the process runs.

    The kernel drops the lock when its holder exits, even on SIGKILL, so a lock left by a killed
    process is never stale; the file's text (pid, host, start time) only names the holder in the error.
    """

    def __init__(self, run_dir: str | Path, wait: bool = False) -> None:
        self.path = check_writable(run_dir) / LOCK_NAME
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            holder = self.path.read_text().strip() or "another process"
            os.close(self.fd)
            raise RunDirError(
                f"run directory {Path(run_dir)} is in use by {holder}; wait for it to finish, pass --wait to queue "
                "behind it, or use another --run-dir"
            ) from None
        os.ftruncate(self.fd, 0)
        os.write(self.fd, f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode())

    def release(self) -> None:
        """Give the run directory up (also done by the kernel when the process exits)."""
        if self.fd >= 0:
            os.ftruncate(self.fd, 0)
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def config_key(config: dict[str, Any]) -> str:
    """Canonical JSON of a trial configuration: the identity of a trial in the store."""
    return json.dumps(config, sort_keys=True, separators=(",", ":"))


class Store:
    """One run directory's SQLite store; ``read_only`` opens another run's store without changing it (no schema
    made, no migration), as ``--reuse`` and exports do."""

    def __init__(self, run_dir: str | Path, read_only: bool = False) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / DB_NAME
        if read_only and not self.path.is_file():
            raise FileNotFoundError(f"no {DB_NAME} in {self.run_dir}")
        check_store(self.run_dir)
        if read_only:
            self.db = sqlite3.connect(f"{self.path.absolute().as_uri()}?mode=ro", uri=True, timeout=60)
        else:
            if not self.path.exists():
                self._create()
            self.db = sqlite3.connect(self.path, timeout=60)
        columns = {r[1] for r in self.db.execute("PRAGMA table_info(trials)")}
        if "val_metric" not in columns:
            self.db.close()
            raise RunConfigMismatch(
                f"run directory {self.run_dir} was made by an earlier version of intrinsic-dim (before trials were "
                "selected on validation and reported on test); its trials cannot be mixed with new ones: use another --run-dir"
            )
        for missing in ("losses", "train_sample", "machine"):  # columns added since: older stores' trials read back without them
            if missing not in columns and not read_only:
                with self.db:
                    self.db.execute(f"ALTER TABLE trials ADD COLUMN {missing} TEXT")

    def _create(self) -> None:
        """Make an empty store under a temporary name and rename it into place, so that a crash never
        leaves a cut-off trials.sqlite (which would then be refused)."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{DB_NAME}.", suffix=".tmp", dir=self.run_dir)
        os.close(fd)
        try:
            db = sqlite3.connect(tmp)
            db.executescript(_SCHEMA)
            db.execute("PRAGMA journal_mode=WAL")
            db.close()
            os.chmod(tmp, 0o666 & ~_umask())
            os.replace(tmp, self.path)
        finally:
            for leftover in (tmp, f"{tmp}-wal", f"{tmp}-shm"):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(leftover)

    def close(self) -> None:
        """Close the database connection."""
        self.db.close()

    def _json(self, text: str, what: str) -> Any:
        """Parse a JSON value stored in the database, or a StoreError naming the file and the value."""
        try:
            return json.loads(text)
        except (ValueError, RecursionError) as e:
            raise StoreError(f"{self.path}: the stored {what} is not valid JSON ({e}): the store is corrupt; {_MOVE_AWAY}") from None

    def run_config(self) -> dict[str, Any] | None:
        """The run configuration recorded by the first run in this directory, if any."""
        row = self.db.execute("SELECT value FROM meta WHERE key = 'run_config'").fetchone()
        return self._json(row[0], "run configuration") if row else None

    def check_run_config(self, run_config: dict[str, Any]) -> None:
        """Record the run's configuration, or refuse if the directory holds trials of a different one. A configuration
        recorded by a command that failed before its first trial (an unknown model, a d above D) binds nothing: it is
        replaced, so the corrected command runs in the same directory."""
        want = config_key(run_config)
        row = self.db.execute("SELECT value FROM meta WHERE key = 'run_config'").fetchone()
        same = row is not None and (row[0] == want or same_run_config(self._json(row[0], "run configuration"), json.loads(want)))
        if row is None or (not same and self.db.execute("SELECT COUNT(*) FROM trials").fetchone()[0] == 0):
            with self.db:
                self.db.execute("INSERT OR REPLACE INTO meta VALUES ('run_config', ?)", (want,))
            return
        if not same:
            old = self._json(row[0], "run configuration")
            diff = {k: (old.get(k), run_config.get(k)) for k in sorted(set(old) | set(run_config)) if old.get(k) != run_config.get(k)}
            if set(diff) == {FINGERPRINT} and all(diff[FINGERPRINT]):
                raise RunConfigMismatch(
                    f"run directory {self.run_dir} holds trials of model {run_config.get('model')!r} whose weight files were "
                    f"fingerprinted {old[FINGERPRINT]}; that folder's weights now fingerprint {run_config[FINGERPRINT]}: the "
                    "checkpoint was made again or changed since. Use another --run-dir, or restore the weights to resume"
                )
            raise RunConfigMismatch(
                f"run directory {self.run_dir} holds a run with a different configuration "
                f"(setting: (stored, requested)) {diff}; use another --run-dir, or the same settings to resume"
            )

    def get(self, config: dict[str, Any]) -> dict[str, Any] | None:
        """The stored row of the trial with this configuration, if it finished before."""
        cur = self.db.execute("SELECT * FROM trials WHERE config_key = ?", (config_key(config),))
        row = cur.fetchone()
        if row:
            return self._row(cur, row)
        # a key written while a setting was spelled as another number type (epochs 30 before epochs were floats: 30.0)
        return next((r for r in self.rows() if r["config"] == config), None)

    def get_ignoring(self, config: dict[str, Any], ignore: Sequence[str]) -> dict[str, Any] | None:
        """The first stored row whose configuration equals ``config`` once the ``ignore`` settings are left out of both."""
        want = {k: v for k, v in config.items() if k not in ignore}
        for row in self.rows():
            if {k: v for k, v in row["config"].items() if k not in ignore} == want:
                return row
        return None

    def put(self, role: str, result: TrialResult) -> None:
        """Write a finished trial at once (one transaction)."""
        row = {"role": role, "config_key": config_key(result.config), **result.to_row(), "finished_at": time.time()}
        with self.db:
            self.db.execute(
                f"INSERT OR REPLACE INTO trials ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})", tuple(row.values())
            )

    def rows(self, role: str | None = None) -> list[dict[str, Any]]:
        """All stored trials (of one role if given), in the order they finished."""
        q = "SELECT * FROM trials" + (" WHERE role = ?" if role else "") + " ORDER BY id"
        cur = self.db.execute(q, (role,) if role else ())
        return [self._row(cur, r) for r in cur.fetchall()]

    def _row(self, cur: sqlite3.Cursor, row: tuple) -> dict[str, Any]:
        """A stored trial as a dict, its JSON columns parsed."""
        out = dict(zip([c[0] for c in cur.description], row))
        for k in ("metrics", "curve", "config", "losses"):
            out[k] = self._json(out.get(k) or "[]", f"{k} of trial {out.get('id')}")
        return out

    def export_csv(self, path: str | Path) -> Path:
        """Write every trial as one CSV row (the config's JSON in the last column), atomically."""
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(CSV_FIELDS + ["config"])
        for r in self.rows():
            w.writerow([r.get(k) for k in CSV_FIELDS] + [json.dumps(r["config"], sort_keys=True)])
        return atomic_write_text(path, buf.getvalue())

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.rows())
