"""Several processes sharing one local Chroma directory without losing an attempt.

Chroma's embedded store (`PersistentClient`) keeps a collection's HNSW vector index in the memory
of each process that opened it, and writes it to disk every `sync_threshold` (1000) additions
together with a watermark in SQLite ("vectors up to log offset N are in the index files"). Two
processes writing to one directory each hold their own copy of the index; whichever persists last
overwrites the other's vectors, and the shared watermark then says they were applied. Measured
here (two processes x 1500 records, Chroma 1.5.9): `count()` said 3000, recall found 223. Two
processes opening a *new* directory at once also race on the schema migration ("table collections
already exists").

`LocalStoreGuard` makes that safe with two small files in the store directory:

- `.tunecrew.lock`: `fcntl.flock`, exclusive around the first open and every write, shared around
  reads;
- `.tunecrew.stamp`: a token that every write replaces. A process whose last-seen token differs
  knows another process wrote since it loaded the index: it reopens its Chroma client (which loads
  the index from disk and replays the log past the watermark) before it reads or writes.

Before every (re)open the guard runs its `check` (set by the store): a damaged directory is
reported before Chroma touches it, since Chroma would migrate its schema into another
application's SQLite file, or crash in native code on a truncated index file.

Writes from one process are therefore always applied to an index that holds everyone's vectors,
and a reader sees other processes' writes at its next call. A reopen costs a few tens of ms plus
the replay of the log tail (< `sync_threshold` records); a process that writes alone never
reopens. Everything in one process shares one guard (and one client) per directory.
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, ClassVar

import chromadb
from chromadb.config import Settings

try:  # POSIX; elsewhere only threads of one process are serialised
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

LOCK_FILE = ".tunecrew.lock"
STAMP_FILE = ".tunecrew.stamp"


class NullGuard:
    """For a Chroma server: the server is the one process that owns the index, nothing to guard."""

    generation = 0

    def __init__(self, client: Any) -> None:
        self.client = client

    @contextmanager
    def read(self) -> Iterator[None]:
        yield

    write = read


class LocalStoreGuard:
    """The Chroma client of one local directory in this process, kept current with other processes.

    Use `with guard.write():` around anything that changes the store and `with guard.read():`
    around anything that queries it; then use `guard.client` (a collection object fetched before the
    last reopen is stale: `generation` tells when to fetch it again).
    """

    _open: ClassVar[dict[tuple[int, str], LocalStoreGuard]] = {}
    _open_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, path: Path) -> None:
        self.path = path
        self.generation = 0  # bumped on every (re)open of the client
        self._client: Any = None
        self._seen: str | None = None  # the stamp our client's index reflects
        self._thread_lock = threading.RLock()
        self._depth = 0
        self._mode: int | None = None
        self._fd: int | None = None
        self.check: Callable[[Path], None] | None = None  # raises if the directory is damaged

    @classmethod
    def for_path(cls, path: Path, check: Callable[[Path], None] | None = None) -> LocalStoreGuard:
        key = (os.getpid(), str(path))  # a forked child must not share its parent's lock fd
        with cls._open_lock:
            guard = cls._open.get(key)
            if guard is None:
                guard = cls._open[key] = cls(path)
            if check is not None:
                guard.check = check
        with guard.write(stamp=False):  # first open: creates or migrates the SQLite schema
            pass
        return guard

    @classmethod
    def discard(cls, path: Path) -> None:
        """Forget this process's client of `path` (before the directory is moved or replaced)."""
        with cls._open_lock:
            guard = cls._open.pop((os.getpid(), str(path)), None)
        if guard is not None:
            with guard._thread_lock:
                guard._close_client()
                if guard._fd is not None:
                    os.close(guard._fd)
                    guard._fd = None
        _drop_chroma_system(path)

    @property
    def client(self) -> Any:
        return self._client

    # ---- locking

    @contextmanager
    def read(self) -> Iterator[None]:
        with self._locked(exclusive=False):
            yield

    @contextmanager
    def write(self, stamp: bool = True) -> Iterator[None]:
        with self._locked(exclusive=True):
            try:
                yield
            finally:
                if stamp and self._depth == 1:
                    self._seen = uuid.uuid4().hex
                    self._stamp_path.write_text(self._seen)

    @contextmanager
    def _locked(self, exclusive: bool) -> Iterator[None]:
        with self._thread_lock:
            if self._depth:  # nested in this thread: the outer block already holds the lock
                if exclusive and self._mode != _EX:
                    raise RuntimeError("memory guard: a write nested inside a read")
                self._depth += 1
                try:
                    yield
                finally:
                    self._depth -= 1
                return
            self._flock(_EX if exclusive else _SH)
            self._depth = 1
            try:
                if self._client is None or self._read_stamp() != self._seen:
                    if not exclusive:  # reopening reads the index files: no writer may be saving them
                        self._flock(_EX)
                    if self._client is None or self._read_stamp() != self._seen:
                        self._reopen()
                yield
            finally:
                self._depth = 0
                self._unlock()

    def _flock(self, mode: int) -> None:
        if fcntl is None:
            return
        if self._fd is None:
            self.path.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(self._fd, mode)
        self._mode = mode

    def _unlock(self) -> None:
        if fcntl is not None and self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        self._mode = None

    @property
    def _stamp_path(self) -> Path:
        return self.path / STAMP_FILE

    def _read_stamp(self) -> str:
        try:
            return self._stamp_path.read_text()
        except FileNotFoundError:
            return ""

    def _reopen(self) -> None:
        """A fresh client: Chroma caches one per path per process, so drop that cache entry first."""
        self._close_client()
        if self.check is not None:
            self.check(self.path)
        try:
            self._client = chromadb.PersistentClient(path=str(self.path),
                                                     settings=Settings(anonymized_telemetry=False))
        except BaseException:
            _drop_chroma_system(self.path)  # Chroma caches a system that failed to start: the next try must not get it
            raise
        self._seen = self._read_stamp()
        self.generation += 1

    def _close_client(self) -> None:
        if self._client is not None:
            with suppress(Exception):  # a broken old client must not block the fresh one
                self._client.close()  # stops the old client's index when nothing else holds it
            self._client = None
            _drop_chroma_system(self.path)


def _drop_chroma_system(path: Path) -> None:
    from chromadb.api.shared_system_client import SharedSystemClient

    SharedSystemClient._identifier_to_system.pop(str(path), None)
    SharedSystemClient._identifier_to_refcount.pop(str(path), None)


_EX = fcntl.LOCK_EX if fcntl is not None else 2
_SH = fcntl.LOCK_SH if fcntl is not None else 1
