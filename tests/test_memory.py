"""Attempt memory and run ledger, against a real Chroma store in tmp_path (no network, no model)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from tunecrew.memory.embedding import HashingEmbeddingFunction, hash_embed, make_embedder
from tunecrew.memory.ledger import Ledger, LedgerError
from tunecrew.memory.store import (
    DEFAULT_MIN_SIMILARITY,
    AttemptMemory,
    MemoryStoreError,
    attempt_document,
    attempt_metadata,
    default_memory_dir,
    recall_query,
)
from tunecrew.tools.contracts import DomainCard

from factories import make_domain_record, make_hardware, make_profile, make_record

# A new task-agent run: similar to, not the same as, the remembered task-agent attempts.
TASK_QUERY = recall_query(
    "task-agent",
    make_profile(["task", "priority", "due", "project", "reminder", "assign", "calendar", "deadline",
                  "create_task", "label", "subtask", "complete"], rows=800),
    DomainCard(domain="task-management agent", confidence=0.7,
               persona="You are an assistant that manages a to-do list with tool calls."),
    base_model="Qwen/Qwen2.5-0.5B-Instruct", model_family="qwen2", model_params=494_000_000,
    hardware=make_hardware("cpu"),
)


@pytest.fixture
def memory(tmp_path: Path) -> AttemptMemory:
    return AttemptMemory(tmp_path / "memory")


# --------------------------------------------------------------------------- embedding


def test_hashing_embedding_is_deterministic_normalised_and_registered() -> None:
    from chromadb.utils.embedding_functions import known_embedding_functions

    ef = HashingEmbeddingFunction()
    a, b = ef(["Fine-tune a task agent"]), ef(["Fine-tune a task agent"])
    assert np.array_equal(a[0], b[0])
    assert a[0].dtype == np.float32 and a[0].shape == (1024,)
    assert abs(float(np.linalg.norm(a[0])) - 1.0) < 1e-5
    assert known_embedding_functions["tunecrew-hashing"] is HashingEmbeddingFunction
    rebuilt = HashingEmbeddingFunction.build_from_config(ef.get_config())
    assert rebuilt.get_config() == ef.get_config() and rebuilt.get_config()["dim"] == 1024
    # Empty text still gives a unit vector (cosine distance is undefined for zeros).
    assert abs(float(np.linalg.norm(hash_embed(""))) - 1.0) < 1e-5
    assert make_embedder("hashing:256").get_config()["dim"] == 256
    with pytest.raises(ValueError, match="unknown embedder"):
        make_embedder("word2vec")


# --------------------------------------------------------------------------- documents


def test_attempt_document_and_metadata_carry_the_attempt() -> None:
    record = make_record(status="oom", score=None, diagnosis="oom")
    doc = attempt_document(record)
    for needle in ("task-agent", "task-management agent", "chat format", "1200 rows", "create_task",
                   "qwen2", "cpu", "lora rank 32", "learning rate 0.003", "status oom", "Diagnosis: oom",
                   "Decision: retry"):
        assert needle in doc, needle
    meta = attempt_metadata(record)
    assert meta["score"] == -1.0 and meta["status"] == "oom" and "record_json" in meta
    assert all(value is not None and isinstance(value, (str, int, float, bool)) for value in meta.values())


# --------------------------------------------------------------------------- recall


def test_remember_and_recall_ranks_the_similar_attempt_first(memory: AttemptMemory) -> None:
    memory.remember_many([
        make_domain_record("legal", run_id="legal1"),
        make_domain_record("medical", run_id="med1"),
    ])
    assert memory.remember(make_domain_record("task-agent", run_id="task1")) == "task1:1"
    assert memory.count() == 3

    hits = memory.recall(TASK_QUERY, k=3, min_similarity=0.0)
    assert hits[0].id == "task1:1" and hits[0].worked
    assert hits[0].record.domain is not None and hits[0].record.domain.domain == "task-management agent"
    assert hits[0].similarity > hits[1].similarity + 0.2
    assert "WORKED" in hits[0].summary and "tool_accuracy=0.90" in hits[0].summary


def test_unrelated_domain_is_below_the_threshold(memory: AttemptMemory) -> None:
    memory.remember_many([make_domain_record("legal", run_id="legal1"), make_domain_record("task-agent")])
    all_hits = {h.id: h.similarity for h in memory.recall(TASK_QUERY, k=5, min_similarity=0.0)}
    assert all_hits["r1:1"] > DEFAULT_MIN_SIMILARITY + 0.15
    assert all_hits["legal1:1"] < DEFAULT_MIN_SIMILARITY - 0.1
    assert [h.id for h in memory.recall(TASK_QUERY)] == ["r1:1"]


def test_worked_attempts_rank_before_failures(memory: AttemptMemory) -> None:
    memory.remember_many([
        make_record(run_id="fail", status="oom", score=None, diagnosis="oom"),
        make_record(run_id="under", score=0.2, diagnosis="underfit", lr=1e-5),
        make_record(run_id="ok", score=0.88, diagnosis="good", rank=16, device="cuda",
                    base_model="meta-llama/Llama-3.2-1B", model_family="llama", model_params=1_230_000_000),
    ])
    hits = memory.recall(TASK_QUERY, k=3)
    assert [h.worked for h in hits] == [True, False, False]
    assert hits[0].id == "ok:1"
    # The failures were more similar, yet come second: they are warnings, not recipes.
    assert max(h.similarity for h in hits[1:]) > hits[0].similarity
    assert all(h.summary.startswith("FAILED") for h in hits[1:])


def test_among_attempts_of_the_same_task_the_best_score_is_recalled(memory: AttemptMemory) -> None:
    """Six attempts of one project, equally similar: k=4 must hold the best, whatever the index's order."""
    scores = [0.516, 0.5, 0.625, 0.516, 0.578, 0.5]
    memory.remember_many([make_record(run_id=f"run{i}", score=s, diagnosis="generalize") for i, s in enumerate(scores)])
    hits = memory.recall(TASK_QUERY, k=4)
    assert [h.record.score for h in hits] == [0.625, 0.578, 0.516, 0.516]


def test_filters_exclude_run_and_k(memory: AttemptMemory) -> None:
    memory.remember_many([make_record(run_id="a", attempt=i) for i in (1, 2, 3)] + [make_record(run_id="b")])
    assert {h.record.run_id for h in memory.recall(TASK_QUERY, k=10, exclude_run="a")} == {"b"}
    assert len(memory.recall(TASK_QUERY, k=2)) == 2
    assert {h.id for h in memory.recall(TASK_QUERY, where={"run_id": "a", "attempt": 2})} == {"a:2"}
    assert [r.run_id for r in memory.list(where={"run_id": "b"})] == ["b"]
    assert memory.get("a:3") is not None and memory.get("missing:1") is None


def test_forget_by_run_and_by_id(memory: AttemptMemory) -> None:
    memory.remember_many([make_record(run_id="a", attempt=1), make_record(run_id="a", attempt=2),
                          make_record(run_id="b")])
    assert memory.forget(run_id="a") == 2
    assert memory.count() == 1
    assert memory.forget(id="b:1") == 1 and memory.forget(id="b:1") == 0
    with pytest.raises(ValueError, match="refusing"):
        memory.forget()


def test_upsert_overwrites_the_same_attempt(memory: AttemptMemory) -> None:
    memory.remember(make_record(score=0.1, diagnosis="underfit"))
    memory.remember(make_record(score=0.95, diagnosis="good"))
    assert memory.count() == 1
    got = memory.get("r1:1")
    assert got is not None and got.score == 0.95


# --------------------------------------------------------------------------- persistence


def test_reopened_by_another_process_recalls_the_same(tmp_path: Path) -> None:
    location = tmp_path / "memory"
    memory = AttemptMemory(location)
    memory.remember_many([make_domain_record("task-agent", run_id="t"), make_domain_record("legal", run_id="l"),
                          make_record(run_id="f", status="oom", score=None, diagnosis="oom")])
    here = [(h.id, h.similarity) for h in memory.recall(TASK_QUERY, k=5, min_similarity=0.0)]

    script = textwrap.dedent("""
        import json, sys
        from tunecrew.memory.store import AttemptMemory
        hits = AttemptMemory(sys.argv[1]).recall(sys.argv[2], k=5, min_similarity=0.0)
        print(json.dumps([[h.id, h.similarity] for h in hits]))
    """)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONHASHSEED": "12345"}  # another hash() salt
    out = subprocess.run([sys.executable, "-c", script, str(location), TASK_QUERY], env=env,
                         capture_output=True, text=True, timeout=60, check=True)
    there = [tuple(pair) for pair in json.loads(out.stdout.strip().splitlines()[-1])]
    assert [i for i, _ in there] == [i for i, _ in here]
    assert all(abs(a[1] - b[1]) < 1e-3 for a, b in zip(here, there, strict=True))


def test_refuses_a_different_embedder(tmp_path: Path) -> None:
    location = tmp_path / "memory"
    AttemptMemory(location).remember(make_record())
    with pytest.raises(MemoryStoreError, match="built with embedder tunecrew-hashing"):
        AttemptMemory(location, embedder="hashing:512")
    assert AttemptMemory(location).count() == 1  # the same embedder still opens it


def test_refuses_a_collection_of_unknown_origin(tmp_path: Path) -> None:
    import chromadb
    from chromadb.config import Settings

    location = tmp_path / "memory"
    client = chromadb.PersistentClient(path=str(location), settings=Settings(anonymized_telemetry=False))
    client.create_collection("attempts", embedding_function=None)
    with pytest.raises(MemoryStoreError, match="embedder unknown"):
        AttemptMemory(location)


def test_unwritable_memory_dir_is_a_clear_error(tmp_path: Path) -> None:
    if os.geteuid() == 0:  # root ignores permission bits: make creation fail under a regular file
        blocker = tmp_path / "not-a-dir"
        blocker.write_text("x")
        target = blocker / "memory"
    else:
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o500)
        target = locked / "memory"
    try:
        with pytest.raises(MemoryStoreError, match="--memory") as info:
            AttemptMemory(target)
        assert str(target) in str(info.value)
    finally:
        if os.geteuid() != 0:
            (tmp_path / "locked").chmod(0o700)


def test_default_memory_dir_follows_tunecrew_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TUNECREW_HOME", str(tmp_path))
    assert default_memory_dir() == tmp_path / "memory"
    monkeypatch.delenv("TUNECREW_HOME")
    assert default_memory_dir() == Path.home() / ".tunecrew" / "memory"


# --------------------------------------------------------------------------- ledger


def test_ledger_round_trip(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "runs" / "r1" / "ledger.jsonl")
    assert ledger.read() == [] and ledger.attempts_done() == 0
    records = [make_record(attempt=1, score=0.3, diagnosis="underfit"), make_record(attempt=2)]
    for record in records:
        ledger.append(record)
    assert ledger.read() == records
    assert ledger.attempts_done() == 2


def test_ledger_tolerates_a_truncated_last_line(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger.jsonl")
    ledger.append(make_record(attempt=1))
    line = make_record(attempt=2).model_dump_json()
    with open(ledger.path, "a", encoding="utf-8") as handle:
        handle.write(line[: len(line) // 2])  # a crash mid-write
    with pytest.warns(RuntimeWarning, match="last line 2"):
        records = ledger.read()
    assert [r.attempt for r in records] == [1]
    # A resumed run retries attempt 2: the fragment is cut off, not glued to the new line.
    with pytest.warns(RuntimeWarning, match="unterminated"):
        ledger.append(make_record(attempt=2))
    assert [r.attempt for r in ledger.read()] == [1, 2]


def test_ledger_garbled_middle_line_names_file_and_line(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger.jsonl")
    ledger.append(make_record(attempt=1))
    with open(ledger.path, "a", encoding="utf-8") as handle:
        handle.write('{"run_id": "r1", "attempt": "garbled"}\n')
    ledger.append(make_record(attempt=3))
    with pytest.raises(LedgerError) as info:
        ledger.read()
    assert str(ledger.path) in str(info.value) and "line 2" in str(info.value)
