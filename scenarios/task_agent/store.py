"""Where the task agent's tasks live: SQLite, per user, surviving restarts.

The llama-task-agent system this scenario comes from kept tasks in a Python list, so a restart lost
every task. Here every tool of the contract's whitelist is a typed method on :class:`TaskStore`,
backed by one SQLite file.

Layout: **one database file per store directory** (``<dir>/tasks.db``) with a ``user`` column,
rather than one file per user. Reasons:

- the user id never becomes a file name, so no path-traversal or case-folding file-system questions
  (``../x``, ``CON``, ``Alice`` vs ``alice`` on macOS) arise; it is only ever a bound SQL parameter;
- one file is one WAL, one backup, one migration; a server holds one connection, not one per user;
- isolation is still total for callers: every method takes ``user`` and every statement filters on
  it (``WHERE user = ?``), and the tests check that one user never sees another's tasks.

Safety: every value reaches SQL as a bound parameter (never formatted into a statement), titles
are bounded by :data:`contract.MAX_TITLE_CHARS` and free of control characters, dates are real ISO
calendar dates. A refused value raises :class:`TaskError` with a message the caller can show.

Title semantics (complete/delete address a task by its title, as the model does): titles match
case-insensitively after trimming. Adding a title that is already *open* is refused (so "complete
X" has one target); completing looks at open tasks only; deleting prefers the open task and falls
back to a single done one. Several candidates is an :class:`AmbiguousTask` error that lists them.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
import re
import sqlite3
import threading
import unicodedata
from pathlib import Path
from typing import Any

from .contract import MAX_TITLE_CHARS, PRIORITIES, STATUSES

DB_FILE = "tasks.db"
USER_PATTERN = r"^[A-Za-z0-9_.-]{1,64}$"
"""A user id: letters, digits, `_ . -`, 1 to 64 characters (the server rejects others with 422)."""
DEFAULT_PRIORITY = "medium"

_USER_RE = re.compile(USER_PATTERN)
_DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS tasks (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    user         TEXT NOT NULL,
    title        TEXT NOT NULL,
    title_key    TEXT NOT NULL,
    due          TEXT,
    priority     TEXT NOT NULL,
    status       TEXT NOT NULL CHECK (status IN ('open', 'done')),
    created_at   TEXT NOT NULL,
    completed_at TEXT
);
CREATE INDEX IF NOT EXISTS tasks_user_key ON tasks (user, title_key);
"""


class TaskError(ValueError):
    """A request the store refuses (bad value, no such task): the message says why."""


class StoreError(ValueError):
    """The store's file or folder cannot be used (not a database, not writable): the message names
    the path and what to do. Raised when the store opens, never by a tool call."""


class TaskNotFound(TaskError):
    pass


class AmbiguousTask(TaskError):
    def __init__(self, message: str, candidates: list[dict[str, Any]]) -> None:
        super().__init__(message)
        self.candidates = candidates


def title_key(title: str) -> str:
    """What titles are compared by: NFKC, trimmed, inner whitespace collapsed, case-folded."""
    return " ".join(unicodedata.normalize("NFKC", title).split()).casefold()


def check_user(user: str) -> str:
    if not isinstance(user, str) or not _USER_RE.fullmatch(user):
        raise TaskError(f"user id must match {USER_PATTERN}, got {_short(user)}")
    return user


def check_title(title: str) -> str:
    if not isinstance(title, str):
        raise TaskError(f"title must be a string, got {type(title).__name__}")
    title = title.strip()
    if not title:
        raise TaskError("title is empty")
    if len(title) > MAX_TITLE_CHARS:
        raise TaskError(f"title is {len(title)} characters, over {MAX_TITLE_CHARS}")
    if any(unicodedata.category(c) in ("Cc", "Cs") for c in title):
        raise TaskError("title contains control characters or unpaired surrogates")
    return title


def check_due(due: str | None) -> str | None:
    if due is None:
        return None
    if not isinstance(due, str) or not _DATE_RE.fullmatch(due):
        raise TaskError(f"due must be an ISO date YYYY-MM-DD, got {_short(due)}")
    try:
        _dt.date.fromisoformat(due)
    except ValueError:
        raise TaskError(f"due is not a real calendar date: {due!r}") from None
    return due


def check_choice(name: str, value: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise TaskError(f"{name} must be one of {'|'.join(allowed)}, got {_short(value)}")
    return value


def _short(value: object, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "…"


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


class TaskStore:
    """Tasks of every user in one SQLite file (WAL). Thread-safe: one connection behind a lock.

    `path` is the database file (an existing file, or a name with a suffix, e.g. ``x.db``), or a
    directory (an existing one, or a path without a suffix) that gets ``tasks.db``; a missing
    directory is created 0700 and the database file 0600 (owner only). A path that cannot hold a
    store (not a database, read-only folder) raises :class:`StoreError` naming it.
    """

    def __init__(self, path: Path | str) -> None:
        path = _db_path(Path(path))
        self.path = path
        self._lock = threading.Lock()
        self._conn = _open(path)

    # ------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> TaskStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ tools

    def add(self, user: str, title: str, due: str | None = None, priority: str | None = None) -> dict[str, Any]:
        """A new open task. Refuses a title that is already open for this user."""
        check_user(user)
        title = check_title(title)
        due = check_due(due)
        priority = check_choice("priority", priority or DEFAULT_PRIORITY, PRIORITIES)
        key = title_key(title)
        with self._write() as conn:
            dup = conn.execute("SELECT * FROM tasks WHERE user = ? AND title_key = ? AND status = 'open'",
                               (user, key)).fetchone()
            if dup is not None:
                raise TaskError(f"an open task titled {dup['title']!r} already exists (id {dup['id']})")
            cur = conn.execute(
                "INSERT INTO tasks (user, title, title_key, due, priority, status, created_at) "
                "VALUES (?, ?, ?, ?, ?, 'open', ?)",
                (user, title, key, due, priority, _now()),
            )
            row = conn.execute("SELECT * FROM tasks WHERE id = ?", (cur.lastrowid,)).fetchone()
        return _task(row)

    def list(self, user: str, status: str = "open") -> list[dict[str, Any]]:
        """Tasks with `status` (open|done|all): earliest due first, undated last, then oldest first."""
        check_user(user)
        check_choice("status", status, STATUSES)
        sql = "SELECT * FROM tasks WHERE user = ?"
        params: tuple[Any, ...] = (user,)
        if status != "all":
            sql += " AND status = ?"
            params += (status,)
        sql += " ORDER BY due IS NULL, due, id"
        with self._lock:
            rows = self._conn.execute(sql, params).fetchall()
        return [_task(r) for r in rows]

    def summarize(self, user: str, today: _dt.date | None = None) -> dict[str, Any]:
        """Counts (open, done, overdue, due today, open by priority) and the next few open tasks."""
        check_user(user)
        today_s = (today or _dt.date.today()).isoformat()
        tasks = self.list(user, "all")
        open_ = [t for t in tasks if t["status"] == "open"]
        return {
            "open": len(open_),
            "done": len(tasks) - len(open_),
            "overdue": sum(1 for t in open_ if t["due"] and t["due"] < today_s),
            "due_today": sum(1 for t in open_ if t["due"] == today_s),
            "by_priority": {p: sum(1 for t in open_ if t["priority"] == p) for p in PRIORITIES},
            "next": [{"title": t["title"], "due": t["due"]} for t in open_ if t["due"]][:3],
        }

    def complete(self, user: str, title: str) -> dict[str, Any]:
        """Mark the open task titled `title` (case-insensitive) done."""
        check_user(user)
        key = title_key(check_title(title))
        with self._write() as conn:
            rows = conn.execute("SELECT * FROM tasks WHERE user = ? AND title_key = ? AND status = 'open' "
                                "ORDER BY id", (user, key)).fetchall()
            if not rows:
                done = conn.execute("SELECT 1 FROM tasks WHERE user = ? AND title_key = ? AND status = 'done'",
                                    (user, key)).fetchone()
                raise TaskNotFound(f"no open task titled {title.strip()!r}" + (" (it is already done)" if done else ""))
            if len(rows) > 1:
                raise _ambiguous("complete", title, rows)
            conn.execute("UPDATE tasks SET status = 'done', completed_at = ? WHERE id = ?", (_now(), rows[0]["id"]))
            row = conn.execute("SELECT * FROM tasks WHERE id = ?", (rows[0]["id"],)).fetchone()
        return _task(row)

    def delete(self, user: str, title: str) -> dict[str, Any]:
        """Delete the task titled `title`: the open one if there is one, else the only done one."""
        check_user(user)
        key = title_key(check_title(title))
        with self._write() as conn:
            rows = conn.execute("SELECT * FROM tasks WHERE user = ? AND title_key = ? ORDER BY id",
                                (user, key)).fetchall()
            if not rows:
                raise TaskNotFound(f"no task titled {title.strip()!r}")
            open_ = [r for r in rows if r["status"] == "open"]
            candidates = open_ or rows
            if len(candidates) > 1:
                raise _ambiguous("delete", title, candidates)
            target = candidates[0]
            conn.execute("DELETE FROM tasks WHERE id = ? AND user = ?", (target["id"], user))
        return _task(target)

    # ------------------------------------------------------------------ internals

    def _write(self) -> _Transaction:
        return _Transaction(self)


def _db_path(path: Path) -> Path:
    """The database file for `path`: an existing file is the database whatever its name; a directory,
    or a name without a suffix, holds ``tasks.db``."""
    if path.is_file():
        return path
    if path.is_dir() or not path.suffix:
        return path / DB_FILE
    return path


def _open(path: Path) -> sqlite3.Connection:
    """Create (owner-only) or open the database and its schema; StoreError naming `path` otherwise."""
    try:
        _owner_only_file(path)
        # isolation_level=None: autocommit; writes open their own BEGIN IMMEDIATE below.
        conn = sqlite3.connect(str(path), timeout=10.0, check_same_thread=False, isolation_level=None)
    except (OSError, sqlite3.Error) as exc:
        raise _store_error(path, exc) from None
    try:
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode=WAL")
        # WAL + NORMAL: a process crash loses no commit and nothing can corrupt the file; only a
        # power cut may drop the last commits. Fast enough to commit every tool call.
        conn.execute("PRAGMA synchronous=NORMAL")
        columns = {row["name"] for row in conn.execute("PRAGMA table_info(tasks)")}
        missing = {"user", "title", "title_key", "due", "priority", "status"} - columns
        if columns and missing:  # someone else's database with a 'tasks' table: do not touch it
            raise StoreError(f"{path}: its 'tasks' table is not a tunecrew task store (no "
                             f"{', '.join(sorted(missing))} column); give another file or folder")
        conn.executescript(_SCHEMA)
    except StoreError:
        conn.close()
        raise
    except sqlite3.Error as exc:
        conn.close()
        raise _store_error(path, exc) from None
    return conn


def _owner_only_file(path: Path) -> None:
    """Create `path` 0600 (and a missing folder 0700) before SQLite opens it: tasks are personal,
    and SQLite gives its -wal/-shm files the database file's mode. An existing store that others
    can read is tightened to 0600 too."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)  # a file in the way: FileExistsError
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    os.close(fd)
    for file in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        with contextlib.suppress(FileNotFoundError):
            if file.stat().st_mode & 0o077:
                file.chmod(0o600)


def _store_error(path: Path, exc: BaseException) -> StoreError:
    if isinstance(exc, sqlite3.DatabaseError) and "not a database" in str(exc):
        return StoreError(f"{path}: not a SQLite database; give a folder for the task store, or a .db file "
                          "that tunecrew created")
    if isinstance(exc, OSError):
        where = exc.filename or path
        return StoreError(f"{where}: cannot create the task store there ({exc.strerror or exc}); give a writable "
                          "folder")
    return StoreError(f"{path}: cannot open the task store ({exc}); give a writable folder or a tunecrew .db file")


class _Transaction:
    """Lock + BEGIN IMMEDIATE … COMMIT (ROLLBACK on any exception)."""

    def __init__(self, store: TaskStore) -> None:
        self.store = store

    def __enter__(self) -> sqlite3.Connection:
        self.store._lock.acquire()
        try:
            self.store._conn.execute("BEGIN IMMEDIATE")
        except BaseException:
            self.store._lock.release()
            raise
        return self.store._conn

    def __exit__(self, exc_type: object, *_: object) -> None:
        try:
            self.store._conn.execute("ROLLBACK" if exc_type else "COMMIT")
        finally:
            self.store._lock.release()


def _task(row: sqlite3.Row) -> dict[str, Any]:
    return {k: row[k] for k in ("id", "title", "due", "priority", "status", "created_at", "completed_at")}


def _ambiguous(verb: str, title: str, rows: list[sqlite3.Row]) -> AmbiguousTask:
    candidates = [_task(r) for r in rows]
    listed = ", ".join(f"id {c['id']} ({c['status']}, due {c['due'] or 'none'})" for c in candidates)
    return AmbiguousTask(f"{len(rows)} tasks are titled {title.strip()!r}: {listed}; cannot tell which to {verb}",
                         candidates)
