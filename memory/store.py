"""Long-term memory of fine-tuning attempts: a Chroma collection of one document per attempt.

The crew asks "what did we try before on data like this, and did it work?" before planning. Each
attempt becomes a readable text summary (`attempt_document`), embedded and stored with its full
record as metadata. `recall` returns the nearest attempts whose cosine similarity clears a
threshold, with attempts that worked ranked before failures, so the planner copies successes and
treats failures as warnings.

Vectors of two embedders are not comparable, so a collection remembers which embedder built it
and refuses to be opened with another one.
"""

from __future__ import annotations

import builtins
import json
import os
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import chromadb
from chromadb.config import Settings
from chromadb.errors import NotFoundError
from pydantic import BaseModel, ConfigDict, ValidationError

from tunecrew.memory.embedding import make_embedder  # registers tunecrew-hashing before any reopen
from tunecrew.tools.contracts import AttemptRecord, DatasetProfile, DomainCard, Hardware, TokenStats

DEFAULT_MIN_SIMILARITY = 0.35
WORKED_SCORE = 0.5  # an ok attempt whose primary metric reaches this counts as "worked"
_CANDIDATE_FACTOR = 4
# Config keys that name how to reach an embedder, not which vectors it makes.
_NON_IDENTITY_KEYS = frozenset({"device", "api_key_env_var", "api_base", "organization_id", "default_headers"})


class MemoryStoreError(RuntimeError):
    """The memory store cannot be opened or used as asked; the message says what to do."""


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


def is_worked(record: AttemptRecord, worked_score: float = WORKED_SCORE) -> bool:
    """Did this attempt work: it trained, and was diagnosed good or scored at least `worked_score`."""
    if record.result.status != "ok":
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
    metric = f"{record.eval.primary_metric}={score:.2f}" if record.eval is not None and score is not None else "no score"
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


def _open_client(location: str | Path | None) -> tuple[Any, str]:
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
        return client, location
    path = Path(location).expanduser() if location is not None else default_memory_dir()
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
    return chromadb.PersistentClient(path=str(path), settings=settings), str(path)


class AttemptMemory:
    """Attempts remembered across runs, in a local Chroma directory or a Chroma server."""

    def __init__(
        self,
        location: str | Path | None = None,
        embedder: str = "hashing",
        collection: str = "attempts",
    ) -> None:
        self._client, self.location = _open_client(location)
        self._ef = make_embedder(embedder)
        self.embedder = embedder
        name, config = self._ef.name(), self._ef.get_config()
        wanted = _embedder_identity(name, config)
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
            self._col = self._client.get_collection(collection, embedding_function=self._ef)
        else:
            self._col = self._client.get_or_create_collection(
                collection,
                configuration={"hnsw": {"space": "cosine"}},
                metadata={
                    "embedder": wanted[0],
                    "embedder_identity": wanted[1],
                    "embedder_config": json.dumps(config, sort_keys=True, default=str),
                    "tunecrew_schema": 1,
                },
                embedding_function=self._ef,
            )

    # ---- writing

    def remember(self, record: AttemptRecord) -> str:
        """Upsert one attempt (same run_id:attempt overwrites) and return its id."""
        return self.remember_many([record])[0]

    def remember_many(self, records: Iterable[AttemptRecord]) -> builtins.list[str]:
        """Upsert several attempts in one call (much faster than one by one)."""
        batch = builtins.list(records)
        if not batch:
            return []
        ids = [attempt_id(r) for r in batch]
        self._col.upsert(
            ids=ids,
            documents=[attempt_document(r) for r in batch],
            metadatas=[attempt_metadata(r) for r in batch],  # type: ignore[misc]
        )
        return ids

    def forget(self, id: str | None = None, run_id: str | None = None) -> int:
        """Delete one attempt by id, or every attempt of a run; returns how many were deleted."""
        if id is None and run_id is None:
            raise ValueError("forget() needs id= or run_id=; refusing to wipe the whole memory")
        where = _where({"run_id": run_id} if run_id is not None else None)
        found = self._col.get(ids=[id] if id is not None else None, where=where, include=[])
        ids = found["ids"]
        if ids:
            self._col.delete(ids=ids)
        return len(ids)

    # ---- reading

    def count(self) -> int:
        return self._col.count()

    def get(self, id: str) -> AttemptRecord | None:
        found = self._col.get(ids=[id], include=["metadatas"])
        if not found["ids"]:
            return None
        return AttemptRecord.model_validate_json(found["metadatas"][0]["record_json"])

    def list(self, limit: int = 50, where: dict[str, Any] | None = None) -> builtins.list[AttemptRecord]:
        """The `limit` most recent attempts (by created_at), optionally filtered by metadata."""
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
        """Up to k similar attempts: those that worked first (by similarity), then failures.

        similarity = 1 - cosine distance; anything under `min_similarity` is unrelated and dropped.
        """
        if k < 1:
            return []
        total = self._col.count()
        if total == 0:
            return []
        flt = _where(where, {"run_id": {"$ne": exclude_run}} if exclude_run is not None else None)
        found = self._col.query(
            query_texts=[query],
            n_results=min(total, k * _CANDIDATE_FACTOR),
            where=flt,
            include=["metadatas", "distances"],
        )
        hits: builtins.list[Recalled] = []
        for id_, meta, dist in zip(found["ids"][0], found["metadatas"][0], found["distances"][0]):
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
        hits.sort(key=lambda h: (not h.worked, -h.similarity))
        return hits[:k]


def _parse(meta: Any) -> AttemptRecord | None:
    """Record from metadata; an entry written by an incompatible version is skipped, not fatal."""
    try:
        return AttemptRecord.model_validate_json(meta["record_json"])
    except (KeyError, TypeError, ValidationError) as exc:
        warnings.warn(f"memory: skipping an unreadable attempt entry ({str(exc).splitlines()[0][:160]})",
                      RuntimeWarning, stacklevel=3)
        return None
