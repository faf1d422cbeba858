"""Long-term memory of fine-tuning attempts: a Chroma collection of one document per attempt.

The crew asks "what did we try before on data like this, and did it work?" before planning. Each
attempt becomes a readable text summary (`attempt_document`), stored with its full record as
metadata; its vector is made of the summary's task part (`task_text`: scenario, domain, data,
model, hardware), the words a recall query for a new task has too. `recall` returns the nearest
attempts whose cosine similarity clears a threshold, with attempts that worked ranked before
failures, so the planner copies successes and treats failures as warnings.

Vectors of two embedders are not comparable, so a collection remembers which embedder built it
and refuses to be opened with another one.

A local directory may be written by several processes at once (runs sharing ~/.tunecrew/memory):
every read and write goes through `memory/guard.py`, which locks the directory and reloads
Chroma's index when another process wrote. Vectors are computed here, client-side, and sent with
the documents, so a Chroma server needs no tunecrew code.

A damaged local store is one `MemoryStoreDamaged` line naming the file and the command that
rebuilds the store from the runs' ledgers (`tunecrew memory rebuild`), never a traceback and never
an empty memory. Measured with Chroma 1.5.9, before these checks: a truncated or overwritten
chroma.sqlite3 raised InternalError tracebacks; a zero-byte or deleted chroma.sqlite3 and another
application's SQLite file opened as an empty memory (Chroma migrated its tables into the other
file); a deleted vector index folder left `count()` at 1500 while recall found only the log tail,
and a truncated one crashed the process (SIGSEGV) at the next write.
"""

from __future__ import annotations

import builtins
import json
import os
import shlex
import sqlite3
import struct
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import chromadb
from chromadb.config import Settings
from chromadb.errors import InternalError, NotFoundError
from pydantic import BaseModel, ConfigDict, ValidationError

from tunecrew.memory.embedding import make_embedder  # registers tunecrew-hashing before any reopen
from tunecrew.memory.guard import LocalStoreGuard, NullGuard
from tunecrew.memory.search import nearest
from tunecrew.tools.contracts import AttemptRecord, DatasetProfile, DomainCard, Hardware, TokenStats

DEFAULT_MIN_SIMILARITY = 0.35
WORKED_SCORE = 0.5  # an ok attempt whose primary metric reaches this counts as "worked"
_CANDIDATE_FACTOR = 4
SCHEMA = 2  # 1: vectors of whole attempt documents; 2: vectors of the task text (`task_text`)
# Config keys that name how to reach an embedder, not which vectors it makes.
_NON_IDENTITY_KEYS = frozenset({"device", "api_key_env_var", "api_base", "organization_id", "default_headers"})


class MemoryStoreError(RuntimeError):
    """The memory store cannot be opened or used as asked; the message says what to do."""


class MemoryStoreDamaged(MemoryStoreError):
    """A local store's files are damaged: one line naming the file and the command that rebuilds it."""

    def __init__(self, store: Path, file: Path, problem: str, embedder: str = "hashing") -> None:
        self.store, self.file, self.problem, self.embedder = store, file, problem, embedder
        super().__init__(damage_message(store, file, problem, embedder))


def rebuild_command(store: Path, embedder: str = "hashing", runs_dir: str = "runs") -> str:
    """The `tunecrew memory rebuild` line for this store, as a shell would take it."""
    flags = f" --embedder {shlex.quote(embedder)}" if embedder != "hashing" else ""
    return f"tunecrew memory rebuild --memory {shlex.quote(str(store))}{flags} --runs-dir {shlex.quote(runs_dir)}"


def damage_message(store: Path, file: Path, problem: str, embedder: str = "hashing") -> str:
    problem = " ".join(problem.split())[:240]  # one line, whatever Chroma's message looked like
    return (
        f"memory store {store} is damaged: {file}: {problem}. Every attempt is also in its run's ledger.jsonl: "
        f"`{rebuild_command(store, embedder)}` moves the store aside and rebuilds it from every run under --runs-dir "
        f"(./runs unless your runs live elsewhere); or move it aside and `tunecrew memory import FILE --memory "
        f"{shlex.quote(str(store))}` an export"
    )


class Recalled(BaseModel):
    """One remembered attempt returned by `AttemptMemory.recall`."""

    model_config = ConfigDict(frozen=True)

    id: str
    similarity: float
    worked: bool
    record: AttemptRecord
    summary: str


def default_memory_dir() -> Path:
    """$TUNECREW_HOME/memory, else ~/.tunecrew/memory: shared by every run of this user."""
    home = os.environ.get("TUNECREW_HOME")
    base = Path(home).expanduser() if home else Path.home() / ".tunecrew"
    return base / "memory"


# --------------------------------------------------------------------------- documents (pure)


def _size(params: int | None) -> str:
    if not params:
        return "unknown size"
    return f"{params / 1e9:.1f}B" if params >= 1e9 else f"{params / 1e6:.0f}M"


def _tokens(name: str, stats: TokenStats) -> str:
    return f"{name} mean {stats.mean:.0f} p95 {stats.p95:.0f} max {stats.max}"


def _task_lines(
    scenario: str,
    profile: DatasetProfile,
    domain: DomainCard | None,
    base_model: str | None,
    model_family: str | None,
    model_params: int | None,
    hardware: Hardware | None,
) -> list[str]:
    """What the task was: shared by documents and queries so both use the same words."""
    lines = [f"Scenario: {scenario}."]
    if domain is not None:
        lines.append(f"Domain: {domain.domain}. {domain.persona}")
    lines.append(
        f"Data: {profile.format} format, {profile.rows} rows, language {profile.language}; token lengths "
        f"({profile.token_unit}): {_tokens('prompt', profile.prompt_tokens)}, "
        f"{_tokens('response', profile.response_tokens)}."
    )
    if profile.vocabulary:
        lines.append("Vocabulary: " + ", ".join(profile.vocabulary[:25]) + ".")
    if base_model or model_family:
        lines.append(f"Base model: {base_model or '?'} ({model_family or '?'} family, {_size(model_params)}).")
    if hardware is not None:
        lines.append(f"Hardware: {hardware.device} {hardware.device_name}.")
    return lines


def attempt_document(record: AttemptRecord) -> str:
    """Readable summary of one attempt; this text is what gets embedded and searched."""
    c, r = record.config, record.result
    lines = _task_lines(
        record.scenario, record.profile, record.domain, record.base_model,
        record.model_family, record.model_params, record.hardware,
    )
    lines.append(
        f"Training: method {c.method}, lora rank {c.lora_rank} alpha {c.lora_alpha}, learning rate "
        f"{c.learning_rate:g} {c.lr_scheduler}, epochs {c.epochs:g}, batch {c.batch_size} x{c.grad_accum}, "
        f"max seq len {c.max_seq_length}{', packing' if c.packing else ''}"
        f"{', train embeddings' if c.train_embeddings else ''}."
    )
    outcome = f"Outcome: status {r.status}"
    if r.train_loss is not None:
        outcome += f", train loss {r.train_loss:.3f}"
    if r.eval_loss is not None:
        outcome += f", eval loss {r.eval_loss:.3f}"
    lines.append(outcome + f", {r.steps} steps.")
    if r.error:
        lines.append(f"Error: {r.error.strip().splitlines()[-1][:300]}")
    if record.eval is not None:
        e = record.eval
        score = record.score
        lines.append(
            f"Evaluation: {e.primary_metric} {score:.3f} on {e.samples} samples."
            if score is not None else f"Evaluation: {e.primary_metric} missing."
        )
        if e.rubric is not None and e.rubric.explanation:
            lines.append(f"Rubric: {e.rubric.explanation[:400]}")
    if record.diagnosis is not None:
        d = record.diagnosis
        lines.append(f"Diagnosis: {d.label}. " + " ".join(d.evidence[:5]))
    if record.decision is not None:
        lines.append(f"Decision: {record.decision.action}. {record.decision.reason[:400]}")
    return "\n".join(line.strip() for line in lines)


def recall_query(
    scenario: str,
    profile: DatasetProfile,
    domain: DomainCard | None = None,
    base_model: str | None = None,
    model_family: str | None = None,
    model_params: int | None = None,
    hardware: Hardware | None = None,
) -> str:
    """A recall query for a new task, worded like the task part of `attempt_document`."""
    return "\n".join(_task_lines(scenario, profile, domain, base_model, model_family, model_params, hardware))


def task_text(record: AttemptRecord) -> str:
    """What an attempt's vector is made of: the task part of its document, worded like `recall_query`.

    The outcome (config, losses, scores, diagnosis) stays out of the vector: recall ranks by it
    through metadata (worked first), and mixed into the text it made every document unlike every
    query. Measured with the hashing embedder: a task-agent attempt recalled by a related dataset
    (tool calls only, other phrasings) scored 0.53 against its whole document and 0.83 against its
    task text, the same dataset 0.64 and 1.0, an unrelated legal attempt 0.17 and 0.19; the Tuner
    trusts a recalled success for a warm start from 0.6.
    """
    return recall_query(record.scenario, record.profile, record.domain, record.base_model, record.model_family,
                        record.model_params, record.hardware)


def is_worked(record: AttemptRecord, worked_score: float = WORKED_SCORE) -> bool:
    """Did this attempt work: it trained, and was diagnosed good or scored at least `worked_score`."""
    if record.result.status != "ok":
        return False
    if record.diagnosis is not None and record.diagnosis.accepted is False:  # did not beat the base model or best
        return False
    if record.diagnosis is not None and record.diagnosis.label == "good":
        return True
    score = record.score
    return score is not None and score >= worked_score


def summary_line(record: AttemptRecord, worked: bool) -> str:
    """One line for an agent's prompt: what was tried, and how it went."""
    c = record.config
    head = "WORKED" if worked else f"FAILED ({record.diagnosis.label if record.diagnosis else record.result.status})"
    domain = record.domain.domain if record.domain else "?"
    score = record.score
    metric = (f"{record.eval.primary_metric}={score:.2f}" if record.eval is not None and score is not None
              else "no score")
    line = (
        f"{head}: {record.scenario}/{domain}, {record.model_family} {_size(record.model_params)}, "
        f"{c.method} r{c.lora_rank} lr {c.learning_rate:g} ep {c.epochs:g} bs {c.effective_batch} "
        f"seq {c.max_seq_length} -> {record.result.status}, {metric}"
    )
    if record.decision is not None:
        line += f"; {record.decision.action}: {record.decision.reason.splitlines()[0][:120]}"
    return line


def attempt_metadata(record: AttemptRecord) -> dict[str, str | int | float | bool]:
    """Scalar metadata for filtering (Chroma rejects None, so missing values are dropped)."""
    score = record.score
    meta: dict[str, Any] = {
        "scenario": record.scenario,
        "domain": record.domain.domain if record.domain else None,
        "model_family": record.model_family,
        "status": record.result.status,
        "score": float(score) if score is not None else -1.0,
        "method": record.config.method,
        "lora_rank": record.config.lora_rank,
        "learning_rate": float(record.config.learning_rate),
        "epochs": float(record.config.epochs),
        "rows": record.profile.rows,
        "data_format": record.profile.format,
        "diagnosis": record.diagnosis.label if record.diagnosis else None,
        "decision": record.decision.action if record.decision else None,
        "run_id": record.run_id,
        "attempt": record.attempt,
        "created_at": record.created_at,
        "record_json": record.model_dump_json(),
    }
    return {key: value for key, value in meta.items() if value is not None}


def attempt_id(record: AttemptRecord) -> str:
    return f"{record.run_id}:{record.attempt}"


def _where(*clauses: dict[str, Any] | None) -> dict[str, Any] | None:
    """AND of filters; a plain multi-key dict {"a": 1, "b": 2} is split, as Chroma wants one key each."""
    flat: list[dict[str, Any]] = []
    for clause in clauses:
        if not clause:
            continue
        if len(clause) > 1 and not any(key.startswith("$") for key in clause):
            flat.extend({key: value} for key, value in clause.items())
        else:
            flat.append(clause)
    if not flat:
        return None
    return flat[0] if len(flat) == 1 else {"$and": flat}


# --------------------------------------------------------------------------- store (I/O)


def _embedder_identity(name: str, config: dict[str, Any]) -> tuple[str, str]:
    kept = {k: v for k, v in config.items() if k not in _NON_IDENTITY_KEYS}
    return name, json.dumps(kept, sort_keys=True, default=str)


def _local_path(location: str | Path | None) -> Path | None:
    """The absolute directory of a local store; None for a Chroma server."""
    if isinstance(location, str) and location.startswith(("http://", "https://")):
        return None
    return (Path(location).expanduser() if location is not None else default_memory_dir()).resolve()


def _open_client(location: str | Path | None) -> tuple[LocalStoreGuard | NullGuard, str]:
    settings = Settings(anonymized_telemetry=False)
    if isinstance(location, str) and location.startswith(("http://", "https://")):
        url = urlparse(location)
        if not url.hostname:
            raise MemoryStoreError(f"--memory {location!r} has no host; use e.g. http://localhost:8000")
        port = url.port or (443 if url.scheme == "https" else 8000)
        try:
            client = chromadb.HttpClient(host=url.hostname, port=port, ssl=url.scheme == "https", settings=settings)
        except ValueError as exc:  # Chroma raises ValueError when the server does not answer
            raise MemoryStoreError(
                f"cannot reach the Chroma server at {location} ({exc}); start it (`chroma run --path DIR`) or "
                "pass a local directory with --memory PATH"
            ) from exc
        return NullGuard(client), location
    path = Path(location).expanduser() if location is not None else default_memory_dir()
    if path.exists() and not path.is_dir():
        raise MemoryStoreDamaged(path.resolve(), path.resolve(), "a file where the store directory should be")
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write-probe-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise MemoryStoreError(
            f"memory directory {path} is not writable ({exc.strerror or exc}); pass a writable directory "
            "with --memory PATH (or set TUNECREW_HOME)"
        ) from exc
    # One guard per directory: other processes may write to it at the same time (see memory/guard.py).
    return LocalStoreGuard.for_path(path.resolve(), check=check_local_store), str(path)


# --------------------------------------------------------------------------- damage (local stores)

SQLITE_FILE = "chroma.sqlite3"
_SQLITE_MAGIC = b"SQLite format 3\x00"
_CHROMA_TABLES = frozenset({"collections", "segments", "embeddings", "max_seq_id"})
_HNSW_HEADER = 100  # chroma-hnswlib's header.bin: version, offsets, element counts, graph parameters
_HNSW_FILES = ("header.bin", "data_level0.bin", "length.bin", "link_lists.bin", "index_metadata.pickle")


def check_local_store(path: Path) -> None:
    """Raise `MemoryStoreDamaged` if Chroma would fail on, crash on, or silently empty this directory.

    Cheap (a few stat calls, a look at SQLite's table list and one header per vector
    index) and run before every (re)open, under the directory's lock. What it looks for is what was
    measured to go wrong (see the module docstring); anything else Chroma reports on the way is
    translated at the store's boundary (`AttemptMemory._boundary`).
    """
    db = path / SQLITE_FILE
    if not db.exists():
        written = (path / ".tunecrew.stamp").exists() or any(_segment_dirs(path))
        if written:  # the store was used (a write left the stamp, or index folders remain): its SQLite is gone
            raise MemoryStoreDamaged(path, db, "missing, though the store was written before")
        return  # a new store
    if not db.is_file():
        raise MemoryStoreDamaged(path, db, "not a file")
    size = db.stat().st_size
    if size == 0:
        raise MemoryStoreDamaged(path, db, "empty (0 bytes): its attempts are lost")
    with open(db, "rb") as fh:
        if fh.read(len(_SQLITE_MAGIC)) != _SQLITE_MAGIC:
            raise MemoryStoreDamaged(path, db, "not a SQLite database (overwritten or corrupted)")
    try:
        # mode=rw, not ro: a writer killed mid-transaction leaves a hot journal that SQLite rolls
        # back on the next writable open; read-only it cannot, and a healthy store would be
        # reported damaged (found by tests/kill_loop.py). rw never creates the file; we hold the lock.
        con = sqlite3.connect(f"{db.resolve().as_uri()}?mode=rw", uri=True)
        try:
            tables = {row[0] for row in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if not _CHROMA_TABLES.issubset(tables):  # Chroma would add its own tables to it and show an empty memory
                raise MemoryStoreDamaged(path, db, "a SQLite database of another application (no Chroma tables)")
            persisted = con.execute(
                "SELECT s.id, m.seq_id FROM segments s JOIN max_seq_id m ON m.segment_id = s.id "
                "WHERE s.scope = 'VECTOR' AND s.type LIKE '%hnsw%'"
            ).fetchall()
        finally:
            con.close()
    except sqlite3.DatabaseError as exc:
        raise MemoryStoreDamaged(path, db, f"SQLite: {exc}") from exc
    for segment, seq_id in persisted:
        if int.from_bytes(seq_id, "big") if isinstance(seq_id, bytes) else int(seq_id or 0):
            _check_hnsw(path, path / str(segment))


def _check_hnsw(store: Path, folder: Path) -> None:
    """A vector index that SQLite says holds vectors: its files are there and as long as its header says.

    Without the folder Chroma rebuilds the index from the log tail only (recall silently misses the
    rest); with a short file it reads past the end (SIGSEGV).
    """
    if not folder.is_dir():
        raise MemoryStoreDamaged(store, folder, f"the vector index folder is missing, though {SQLITE_FILE} "
                                 "says it holds vectors")
    for name in _HNSW_FILES:
        if not (folder / name).is_file():
            raise MemoryStoreDamaged(store, folder / name, "missing from the vector index")
    header = (folder / "header.bin").read_bytes()
    if len(header) != _HNSW_HEADER:
        raise MemoryStoreDamaged(store, folder / "header.bin",
                                 f"{len(header)} bytes, a vector index header has {_HNSW_HEADER}")
    # version i32, offsetLevel0 u64, max_elements u64, cur_element_count u64, size_data_per_element u64, ...
    _version, _offset, _max, count, per_element = struct.unpack_from("<iQQQQ", header)
    for name, need in (("data_level0.bin", count * per_element), ("length.bin", 4 * count)):
        have = (folder / name).stat().st_size
        if have < need:
            raise MemoryStoreDamaged(store, folder / name, f"truncated: {have} bytes, the index header needs {need} "
                                     f"for its {count} vectors")


def _segment_dirs(path: Path) -> Iterator[Path]:
    """Chroma's per-segment folders: named by a UUID."""
    for child in path.iterdir():
        if child.is_dir() and len(child.name) == 36 and child.name.count("-") == 4:
            yield child


class AttemptMemory:
    """Attempts remembered across runs, in a local Chroma directory or a Chroma server."""

    def __init__(
        self,
        location: str | Path | None = None,
        embedder: str = "hashing",
        collection: str = "attempts",
    ) -> None:
        try:  # before the store is opened: a bad --embedder must not create or touch it
            self._ef = make_embedder(embedder)
        except (ValueError, RuntimeError) as exc:
            raise MemoryStoreError(f"--embedder {embedder!r}: {exc}") from exc
        self.embedder = embedder
        self.location = str(location)
        self._local = _local_path(location)
        with self._boundary():
            self._guard, self.location = _open_client(location)
            self._collection_name, self._col_generation = collection, -1
            name, config = self._ef.name(), self._ef.get_config()
            wanted = _embedder_identity(name, config)
            with self._guard.write():
                self._open_collection(collection, name, config, wanted)

    @contextmanager
    def _boundary(self) -> Iterator[None]:
        """Whatever Chroma raises on a damaged store leaves here as one `MemoryStoreError` line."""
        try:
            yield
        except MemoryStoreDamaged as exc:
            if exc.embedder != self.embedder:  # the rebuild command must name this store's embedder
                raise MemoryStoreDamaged(exc.store, exc.file, exc.problem, self.embedder) from exc
            raise
        except (InternalError, sqlite3.DatabaseError) as exc:
            raise self._translate(exc) from exc

    def _translate(self, exc: Exception) -> MemoryStoreError:
        said = " ".join(str(exc).split())[:240] or type(exc).__name__
        if self._local is None:
            return MemoryStoreError(f"the Chroma server at {self.location} failed: {said}; see the server's log")
        db = self._local / SQLITE_FILE
        lowered = said.lower()
        if "disk is full" in lowered or "readonly" in lowered or "read-only" in lowered:
            return MemoryStoreError(f"memory store {self._local}: {db}: {said}; free disk space or make it writable, "
                                    "then run again")
        segments = builtins.list(_segment_dirs(self._local)) if self._local.is_dir() else []
        where = db
        if "hnsw" in lowered and len(segments) == 1:  # the vector index, not SQLite
            where = segments[0] / "index_metadata.pickle" if "pickle" in lowered else segments[0]
        return MemoryStoreDamaged(self._local, where, f"Chroma: {said}", self.embedder)

    def _open_collection(self, collection: str, name: str, config: dict[str, Any], wanted: tuple[str, str]) -> None:
        self._client = self._guard.client
        try:
            existing = self._client.get_collection(collection, embedding_function=None)
        except NotFoundError:
            existing = None
        if existing is not None:
            meta = existing.metadata or {}
            have = (meta.get("embedder"), meta.get("embedder_identity"))
            if have != wanted:
                raise MemoryStoreError(
                    f"memory collection {collection!r} at {self.location} was built with embedder "
                    f"{have[0] or 'unknown'} {have[1] or ''} but {wanted[0]} {wanted[1]} was asked for; vectors of "
                    "two embedders cannot be compared. Use the same --embedder, or another --memory "
                    "location / collection for the new embedder."
                )
            self._collection = self._client.get_collection(collection, embedding_function=self._ef)
            if int(meta.get("tunecrew_schema", 1)) < SCHEMA:
                self._reembed(meta)
        else:
            self._collection = self._client.get_or_create_collection(
                collection,
                configuration={"hnsw": {"space": "cosine"}},
                metadata={
                    "embedder": wanted[0],
                    "embedder_identity": wanted[1],
                    "embedder_config": json.dumps(config, sort_keys=True, default=str),
                    "tunecrew_schema": SCHEMA,
                },
                embedding_function=self._ef,
            )
        self._col_generation = self._guard.generation

    def _reembed(self, meta: dict[str, Any]) -> None:
        """Schema 1 stores embedded whole documents: embed each record's task text instead, once."""
        col, done = self._collection, 0
        while True:
            page = col.get(include=["metadatas"], limit=500, offset=done)
            if not page["ids"]:
                break
            pairs = [(i, r) for i, r in zip(page["ids"], (_parse(m) for m in page["metadatas"]), strict=True)
                     if r is not None]
            if pairs:
                col.update(ids=[i for i, _ in pairs], embeddings=self._ef([task_text(r) for _, r in pairs]))
            done += len(page["ids"])
        col.modify(metadata={**meta, "tunecrew_schema": SCHEMA})
        warnings.warn(f"memory {self.location}: re-embedded {done} attempts for tunecrew memory schema {SCHEMA}",
                      RuntimeWarning, stacklevel=4)

    @property
    def _col(self) -> Any:
        """The collection; fetched again after the guard reopened the client (another process wrote)."""
        if self._col_generation != self._guard.generation:
            self._client = self._guard.client
            self._collection = self._client.get_collection(self._collection_name, embedding_function=self._ef)
            self._col_generation = self._guard.generation
        return self._collection

    # ---- writing

    def remember(self, record: AttemptRecord) -> str:
        """Upsert one attempt (same run_id:attempt overwrites) and return its id."""
        self.remember_many([record])
        return attempt_id(record)

    def remember_many(self, records: Iterable[AttemptRecord]) -> builtins.list[str]:
        """Upsert several attempts in one call (much faster than one by one).

        An attempt stopped by Ctrl-C is skipped: it says nothing about how its config trains, and
        recall would offer it as evidence. The ledger keeps it.
        """
        batch = [r for r in records if r.result.status != "interrupted"]
        if not batch:
            return []
        ids = [attempt_id(r) for r in batch]
        documents = [attempt_document(r) for r in batch]
        embeddings = self._ef([task_text(r) for r in batch])  # outside the lock: other writers wait for the store only
        with self._boundary(), self._guard.write():
            self._col.upsert(
                ids=ids,
                documents=documents,
                embeddings=embeddings,
                metadatas=[attempt_metadata(r) for r in batch],
            )
        return ids

    def forget(self, id: str | None = None, run_id: str | None = None) -> int:
        """Delete one attempt by id, or every attempt of a run; returns how many were deleted."""
        if id is None and run_id is None:
            raise ValueError("forget() needs id= or run_id=; refusing to wipe the whole memory")
        where = _where({"run_id": run_id} if run_id is not None else None)
        with self._boundary(), self._guard.write():
            found = self._col.get(ids=[id] if id is not None else None, where=where, include=[])
            ids = found["ids"]
            if ids:
                self._col.delete(ids=ids)
        return len(ids)

    # ---- reading

    def count(self) -> int:
        with self._boundary(), self._guard.read():
            return self._col.count()

    def get(self, id: str) -> AttemptRecord | None:
        with self._boundary(), self._guard.read():
            found = self._col.get(ids=[id], include=["metadatas"])
        if not found["ids"]:
            return None
        return AttemptRecord.model_validate_json(found["metadatas"][0]["record_json"])

    def list(self, limit: int = 50, where: dict[str, Any] | None = None) -> builtins.list[AttemptRecord]:
        """The `limit` most recent attempts (by created_at), optionally filtered by metadata."""
        with self._boundary(), self._guard.read():
            found = self._col.get(where=_where(where), include=["metadatas"])
        records = [r for r in (_parse(m) for m in found["metadatas"] or []) if r is not None]
        records.sort(key=lambda r: (r.created_at, r.run_id, r.attempt), reverse=True)
        return records[:limit]

    def recall(
        self,
        query: str,
        k: int = 5,
        where: dict[str, Any] | None = None,
        min_similarity: float = DEFAULT_MIN_SIMILARITY,
        exclude_run: str | None = None,
    ) -> builtins.list[Recalled]:
        """Up to k similar attempts: those that worked first (by similarity, then score), then failures.

        similarity = 1 - cosine distance; anything under `min_similarity` is unrelated and dropped.
        Attempts of one project all describe the same task (similarity 1.00 to two decimals): among
        them the better score comes first, or k=4 of six such attempts left the best one out (the
        order of ties was the vector index's).
        """
        if k < 1:
            return []
        flt = _where(where, {"run_id": {"$ne": exclude_run}} if exclude_run is not None else None)
        embedding = self._ef([query])
        want = k * _CANDIDATE_FACTOR
        with self._boundary(), self._guard.read():  # filtered searches avoid Chroma's whole-store pre-filter
            found = nearest(self._col, embedding, want, flt, min_similarity)
            if flt is None and len(found[0]) < want and self._local is not None:
                self._check_index(len(found[0]), want)
        hits: builtins.list[Recalled] = []
        for id_, meta, dist in zip(*found, strict=True):
            similarity = 1.0 - float(dist)
            if similarity < min_similarity:
                continue
            record = _parse(meta)
            if record is None:
                continue
            worked = is_worked(record)
            hits.append(
                Recalled(id=id_, similarity=round(similarity, 4), worked=worked, record=record,
                         summary=summary_line(record, worked))
            )
        hits.sort(key=lambda h: (not h.worked, -round(h.similarity, 2), -(h.record.score or 0.0), -h.similarity))
        return hits[:k]

    def _check_index(self, returned: int, asked: int) -> None:
        """An unfiltered search that returned fewer than asked must have seen every stored attempt."""
        stored = self._col.count()
        if returned < min(asked, stored):
            assert self._local is not None
            segments = builtins.list(_segment_dirs(self._local))
            raise MemoryStoreDamaged(
                self._local, segments[0] if len(segments) == 1 else self._local / SQLITE_FILE,
                f"the vector index returned {returned} of the {stored} attempts {SQLITE_FILE} lists", self.embedder,
            )


def _parse(meta: Any) -> AttemptRecord | None:
    """Record from metadata; an entry written by an incompatible version is skipped, not fatal."""
    try:
        return AttemptRecord.model_validate_json(meta["record_json"])
    except (KeyError, TypeError, ValidationError) as exc:
        warnings.warn(f"memory: skipping an unreadable attempt entry ({str(exc).splitlines()[0][:160]})",
                      RuntimeWarning, stacklevel=3)
        return None
