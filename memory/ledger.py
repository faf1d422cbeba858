"""The run ledger: one JSON line per attempt, append-only, crash-tolerant.

The ledger is the run's source of truth (memory is a searchable copy). Each line is written with a
single O_APPEND write followed by fsync, so an attempt that was reported done survives a power
loss, and a crash can at worst leave the *last* line half written. Reading therefore forgives a
broken last line (warning) but not a broken line in the middle, which means the file was edited or
corrupted and silently skipping it would lose an attempt.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

from pydantic import ValidationError

from tunecrew.tools.contracts import AttemptRecord


class LedgerError(ValueError):
    """A ledger line in the middle of the file cannot be read."""


class Ledger:
    """Append-only JSONL file of `AttemptRecord`s at `path` (parent dir created on demand)."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)

    def append(self, record: AttemptRecord) -> None:
        """Write one line durably: one write() on an O_APPEND fd, then fsync.

        A crash mid-write leaves an unterminated fragment at the end; it is cut off first (with a
        warning), otherwise the new line would be glued to it and the ledger corrupted for good.
        """
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = (record.model_dump_json() + "\n").encode("utf-8")
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            _drop_unterminated_tail(fd, self.path)
            written, start = 0, os.fstat(fd).st_size
            try:
                while written < len(line):  # a short write is rare but possible on some filesystems
                    written += os.write(fd, line[written:])
                os.fsync(fd)
            except OSError as exc:  # disk full, quota, I/O error: earlier lines are untouched
                try:  # cut off any fragment, so the ledger still ends at the last whole attempt
                    if os.fstat(fd).st_size > start:
                        os.ftruncate(fd, start)
                except OSError:
                    pass  # the reader skips an unterminated last line anyway
                raise LedgerError(
                    f"{self.path}: could not save attempt {record.attempt} ({exc.strerror or exc}); the "
                    "attempts saved before it are intact. Free space, then `tunecrew resume` continues"
                ) from exc
        finally:
            os.close(fd)

    def read(self) -> list[AttemptRecord]:
        """All records in file order; [] if the ledger does not exist yet."""
        if not self.path.exists():
            return []
        lines = self.path.read_bytes().split(b"\n")
        # Index of the last non-blank line: only that one may be a crash leftover.
        numbered = [(i + 1, raw) for i, raw in enumerate(lines) if raw.strip()]
        records: list[AttemptRecord] = []
        for position, (lineno, raw) in enumerate(numbered):
            try:
                records.append(AttemptRecord.model_validate_json(raw))
            except (ValidationError, ValueError) as exc:
                if position == len(numbered) - 1:
                    warnings.warn(
                        f"{self.path}: skipping unreadable last line {lineno} (likely a crash mid-write): "
                        f"{_short(exc)}",
                        RuntimeWarning,
                        stacklevel=2,
                    )
                    break
                raise LedgerError(
                    f"{self.path}: line {lineno} is not a valid attempt record ({_short(exc)}); the ledger "
                    "was edited or corrupted. Fix or remove that line, or start a new run directory."
                ) from exc
        return records

    def attempts_done(self) -> int:
        """Number of readable attempts: a resumed run continues at attempts_done() + 1."""
        return len(self.read())


def _drop_unterminated_tail(fd: int, path: Path) -> None:
    size = os.fstat(fd).st_size
    if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
        return
    data = os.pread(fd, size, 0)
    keep = data.rfind(b"\n") + 1
    os.ftruncate(fd, keep)
    warnings.warn(
        f"{path}: dropped {size - keep} bytes of an unterminated last line (a crash mid-write) before appending",
        RuntimeWarning,
        stacklevel=3,
    )


def _short(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__
