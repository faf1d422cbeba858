"""A damaged memory store is one line naming the file and the command that rebuilds it.

Each fault is made on a real Chroma store in tmp_path, built by one process and damaged before a
fresh open, as a later run would find it. The store is built with a vector index sync threshold
of 2 (Chroma's default is 1000) so that a handful of attempts already has its HNSW index written
to disk: what a store of a few thousand attempts has, in a fraction of the time. What Chroma 1.5.9
did before these checks is in `tunecrew.memory.store`'s docstring.
"""

from __future__ import annotations

import re
import shlex
import shutil
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tunecrew.app.cli import main
from tunecrew.memory.ledger import Ledger
from tunecrew.memory.store import AttemptMemory, MemoryStoreError
from tunecrew.tools.contracts import AttemptRecord, RunSpec

from factories import make_domain_record

QUERY = "task-management agent task due priority reminder"
RUNS = {
    "task-run": [make_domain_record("task-agent", run_id="task-run", attempt=1, diagnosis="underfit", score=0.3),
                 make_domain_record("task-agent", run_id="task-run", attempt=2)],
    "legal-run": [make_domain_record("legal", run_id="legal-run", attempt=1, status="oom", score=None,
                                     diagnosis="oom"),
                  make_domain_record("legal", run_id="legal-run", attempt=2, diagnosis="overfit", score=0.4),
                  make_domain_record("legal", run_id="legal-run", attempt=3)],
    "med-run": [make_domain_record("medical", run_id="med-run", attempt=1)],
}
RECORDS = [r for records in RUNS.values() for r in records]
IDS = {f"{r.run_id}:{r.attempt}" for r in RECORDS}


@dataclass
class Store:
    path: Path  # the store the tests damage: tmp_path/memory
    built: Path  # the same store, undamaged


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Store:
    """tmp_path/runs/<id>/{run.json,ledger.jsonl} and a store holding their attempts, in tmp_path as cwd."""
    monkeypatch.chdir(tmp_path)
    built, path = tmp_path / "built", tmp_path / "memory"
    for run_id, records in RUNS.items():
        folder = tmp_path / "runs" / run_id
        folder.mkdir(parents=True)
        spec = RunSpec(run_id=run_id, scenario=records[0].scenario, base_model="m", provider="offline",
                       max_attempts=5, target=0.9, seed=0, dataset_fingerprint="f", memory=str(path))
        (folder / "run.json").write_text(spec.model_dump_json())
        for record in records:
            Ledger(folder / "ledger.jsonl").append(record)
    memory = AttemptMemory(built)
    # Chroma writes the HNSW index files every `sync_threshold` additions (default 1000).
    memory._col.modify(configuration={"hnsw": {"sync_threshold": 2, "batch_size": 2}})
    for record in RECORDS:
        memory.remember(record)  # one by one, as a run remembers each attempt
    assert {h.id for h in memory.recall(QUERY, k=len(RECORDS), min_similarity=0.0)} == IDS
    shutil.copytree(built, path)
    return Store(path=path, built=built)


def _segment(store: Path) -> Path:
    (folder,) = [p for p in store.iterdir() if p.is_dir()]
    assert (folder / "index_metadata.pickle").exists()  # the index is on disk, not only in Chroma's log
    return folder


def _truncate(file: Path, keep: float = 0.5) -> Path:
    with open(file, "r+b") as fh:
        fh.truncate(int(file.stat().st_size * keep))
    return file


def sqlite_truncated(s: Store) -> Path:
    return _truncate(s.path / "chroma.sqlite3")


def sqlite_garbage(s: Store) -> Path:
    db = s.path / "chroma.sqlite3"
    db.write_bytes(bytes((i * 7919 + 13) % 251 for i in range(db.stat().st_size)))
    return db


def sqlite_of_another_app(s: Store) -> Path:
    db = s.path / "chroma.sqlite3"
    db.unlink()
    with sqlite3.connect(db) as con:
        con.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT)")
        con.execute("INSERT INTO notes (text) VALUES ('not a memory')")
    con.close()
    return db


def sqlite_zero_bytes(s: Store) -> Path:
    db = s.path / "chroma.sqlite3"
    db.write_bytes(b"")
    return db


def sqlite_deleted(s: Store) -> Path:
    db = s.path / "chroma.sqlite3"
    db.unlink()
    return db


def index_folder_deleted(s: Store) -> Path:
    folder = _segment(s.path)
    shutil.rmtree(folder)
    return folder


def index_data_truncated(s: Store) -> Path:
    # Chroma preallocates room for 100 vectors: cut into the 6 stored ones (a 1500-vector index has no slack).
    return _truncate(_segment(s.path) / "data_level0.bin", keep=0.01)


def index_file_deleted(s: Store) -> Path:
    data = _segment(s.path) / "data_level0.bin"
    data.unlink()
    return data


def index_ids_truncated(s: Store) -> Path:
    return _truncate(_segment(s.path) / "index_metadata.pickle")


def store_is_a_file(s: Store) -> Path:
    shutil.rmtree(s.path)
    s.path.write_text("not a directory\n")
    return s.path


FAULTS: dict[str, Callable[[Store], Path]] = {
    "sqlite-truncated": sqlite_truncated,
    "sqlite-garbage": sqlite_garbage,
    "sqlite-of-another-app": sqlite_of_another_app,
    "sqlite-zero-bytes": sqlite_zero_bytes,
    "sqlite-deleted": sqlite_deleted,
    "index-folder-deleted": index_folder_deleted,
    "index-data-truncated": index_data_truncated,
    "index-file-deleted": index_file_deleted,
    "index-ids-truncated": index_ids_truncated,
    "store-is-a-file": store_is_a_file,
}


def _use(path: Path) -> None:
    """What a run does with its memory: open, count, recall, remember."""
    memory = AttemptMemory(path)
    memory.count()
    memory.recall(QUERY, k=5, min_similarity=0.0)
    memory.remember(make_domain_record("task-agent", run_id="new-run", attempt=1))


def _assert_one_line_naming(message: str, file: Path, store: Path) -> str:
    """The message is one line naming `file`, and the rebuild command of `store`; returns that command."""
    assert "\n" not in message and "Traceback" not in message
    assert str(file) in message
    assert "tunecrew memory import FILE" in message  # the other way back, from an export
    command = re.search(r"`(tunecrew memory rebuild [^`]*)`", message)
    assert command is not None, message
    assert shlex.split(command.group(1))[:5] == ["tunecrew", "memory", "rebuild", "--memory", str(store)]
    return command.group(1)


def _assert_rebuilt(store: Store, capsys: pytest.CaptureFixture[str], command: str) -> None:
    """The printed command, run as printed (from the folder that holds runs/), brings every attempt back."""
    assert main(shlex.split(command)[1:]) == 0
    out = capsys.readouterr().out
    assert f"rebuilt {store.path} with {len(RECORDS)} attempts from the ledgers of {len(RUNS)} runs" in out
    (aside,) = store.path.parent.glob("memory.damaged-*")
    assert f"moved the old store to {aside}" in out
    rebuilt = AttemptMemory(store.path)
    before = AttemptMemory(store.built).recall(QUERY, k=len(RECORDS), min_similarity=0.0)
    after = rebuilt.recall(QUERY, k=len(RECORDS), min_similarity=0.0)
    assert [h.id for h in after] == [h.id for h in before] and {h.id for h in after} == IDS
    assert [rebuilt.get(i) for i in sorted(IDS)] == [AttemptMemory(store.built).get(i) for i in sorted(IDS)]
    assert all(isinstance(r, AttemptRecord) for r in rebuilt.list(limit=100))


@pytest.mark.parametrize("fault", FAULTS, ids=list(FAULTS))
def test_a_damaged_store_is_one_line_and_its_rebuild_command_restores_it(
    fault: str, store: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    damaged = FAULTS[fault](store)
    with pytest.raises(MemoryStoreError) as raised:
        _use(store.path)
    command = _assert_one_line_naming(str(raised.value), damaged, store.path.resolve())
    _assert_rebuilt(store, capsys, command)


def _empty_the_index(store: Store) -> Path:
    """Index files that look whole but hold no vectors (say, an older copy put back)."""
    folder = _segment(store.path)
    fresh = AttemptMemory(store.path.parent / "fresh")  # an index whose vectors are still only in the log
    fresh.remember(RECORDS[0])
    (empty,) = [p for p in (store.path.parent / "fresh").iterdir() if p.is_dir()]
    for name in ("header.bin", "data_level0.bin", "length.bin", "link_lists.bin"):
        shutil.copy(empty / name, folder / name)
    return folder


def test_an_index_that_lost_vectors_is_caught_at_recall(store: Store, capsys: pytest.CaptureFixture[str]) -> None:
    """SQLite lists 6 attempts, the vector search finds none: `count()` alone would never show it."""
    folder = _empty_the_index(store)
    memory = AttemptMemory(store.path)
    assert memory.count() == len(RECORDS)
    with pytest.raises(MemoryStoreError) as raised:
        memory.recall(QUERY, k=5, min_similarity=0.0)
    assert "the vector index returned 0 of the 6 attempts" in str(raised.value)
    command = _assert_one_line_naming(str(raised.value), folder, store.path.resolve())
    _assert_rebuilt(store, capsys, command)


def test_an_index_not_yet_written_needs_no_rebuild(tmp_path: Path) -> None:
    """Under Chroma's sync threshold the index folder holds no vectors yet (they are replayed from the
    log): deleting it loses nothing, so the checks must not call it damage."""
    built = tmp_path / "built"
    AttemptMemory(built).remember_many(RECORDS)
    shutil.copytree(built, tmp_path / "memory")
    (folder,) = [p for p in (tmp_path / "memory").iterdir() if p.is_dir()]
    shutil.rmtree(folder)
    memory = AttemptMemory(tmp_path / "memory")
    assert {h.id for h in memory.recall(QUERY, k=len(RECORDS), min_similarity=0.0)} == IDS


@pytest.mark.parametrize("command", [["list"], ["search", QUERY], ["export", "-"], ["show", "task-run:1"]])
def test_the_cli_says_one_line_and_exits_2(command: list[str], store: Store,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    sqlite_zero_bytes(store)
    assert main(["memory", *command, "--memory", str(store.path)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and err.startswith(f"tunecrew: memory store {store.path} is damaged: ")
    assert "`tunecrew memory rebuild --memory" in err and "Traceback" not in err


def test_the_cli_says_one_line_for_damage_found_after_the_open(store: Store,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """The store opens (its files look whole), the search finds the damage: still one line, exit 2."""
    _empty_the_index(store)
    assert main(["memory", "search", QUERY, "--memory", str(store.path)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and "the vector index returned 0 of the 6 attempts" in err
    assert "`tunecrew memory rebuild --memory" in err and "Traceback" not in err


def test_rebuild_reads_only_the_runs_of_this_store_and_refuses_without_runs(
    store: Store, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = tmp_path / "runs" / "other-run"  # remembered in another store: not part of this one
    other.mkdir()
    (other / "run.json").write_text(RunSpec(
        run_id="other-run", scenario="task-agent", base_model="m", provider="offline", max_attempts=1, target=0.9,
        seed=0, dataset_fingerprint="f", memory=str(tmp_path / "elsewhere")).model_dump_json())
    Ledger(other / "ledger.jsonl").append(make_domain_record("task-agent", run_id="other-run", attempt=1))
    sqlite_garbage(store)

    assert main(["memory", "rebuild", "--memory", str(store.path), "--runs-dir", str(tmp_path / "nowhere")]) == 2
    _, err = capsys.readouterr()
    assert err.count("\n") == 1 and "is not a directory" in err and "nothing was moved" in err
    (tmp_path / "no-runs").mkdir()
    assert main(["memory", "rebuild", "--memory", str(store.path), "--runs-dir", str(tmp_path / "no-runs")]) == 2
    _, err = capsys.readouterr()
    assert err.count("\n") == 1 and "no run under" in err and "to start an empty memory" in err
    assert (store.path / "chroma.sqlite3").exists() and not list(tmp_path.glob("memory.damaged-*"))

    assert main(["memory", "rebuild", "--memory", str(store.path), "--runs-dir", "runs"]) == 0
    out = capsys.readouterr().out
    assert "skipped 1 runs that remembered elsewhere" in out
    assert {r.run_id for r in AttemptMemory(store.path).list(limit=100)} == set(RUNS)


def test_the_rebuild_command_keeps_the_stores_embedder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    for record in RUNS["task-run"]:
        Ledger(tmp_path / "runs" / "task-run" / "ledger.jsonl").append(record)
    path = tmp_path / "memory"
    AttemptMemory(path, embedder="hashing:256").remember_many(RUNS["task-run"])
    shutil.copytree(path, tmp_path / "copy")  # opened fresh below, as by the next run
    (tmp_path / "copy" / "chroma.sqlite3").write_bytes(b"")
    with pytest.raises(MemoryStoreError) as raised:
        AttemptMemory(tmp_path / "copy", embedder="hashing:256")
    command = _assert_one_line_naming(str(raised.value), tmp_path / "copy" / "chroma.sqlite3", tmp_path / "copy")
    assert "--embedder hashing:256" in command
    assert main(shlex.split(command)[1:]) == 0
    assert "embedded with hashing:256" in capsys.readouterr().out
    rebuilt = AttemptMemory(tmp_path / "copy", embedder="hashing:256")  # the old embedder still fits
    assert {h.id for h in rebuilt.recall(QUERY, k=5, min_similarity=0.0)} == {"task-run:1", "task-run:2"}


HOT_JOURNAL = """
import os, signal, sqlite3, sys
from tunecrew.memory.store import AttemptMemory
from tunecrew.memory.examples import make_record
AttemptMemory(sys.argv[1]).remember_many([make_record(run_id="r", attempt=i) for i in range(1, 4)])
con = sqlite3.connect(os.path.join(sys.argv[1], "chroma.sqlite3"))
con.execute("BEGIN IMMEDIATE")
con.execute("CREATE TABLE unfinished(a)")
con.executemany("INSERT INTO unfinished VALUES (?)", [("x" * 1000,)] * 5000)
os.kill(os.getpid(), signal.SIGKILL)  # a writer killed mid-transaction: a hot journal is left
"""


def test_a_writer_killed_mid_transaction_is_not_damage(tmp_path: Path) -> None:
    """The kill loop found it: the check opened SQLite read-only, which cannot roll back the hot
    journal a killed writer leaves, and called a healthy store damaged."""
    import subprocess
    import sys

    store = tmp_path / "memory"
    subprocess.run([sys.executable, "-c", HOT_JOURNAL, str(store)], check=False)
    assert (store / "chroma.sqlite3-journal").exists()
    memory = AttemptMemory(str(store))
    assert memory.count() == 3 and {r.attempt for r in memory.list()} == {1, 2, 3}
