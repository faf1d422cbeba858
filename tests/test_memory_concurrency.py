"""Two processes writing to one local memory directory at once lose nothing (memory/guard.py).

Chroma persists a collection's vector index every `sync_threshold` additions (1000 by default);
the writers set it to 10 so that, in 2 x 50 writes, both persist many times, as two long runs
sharing ~/.tunecrew/memory would. Without the guard this loses vectors: `count()` and `get()` (SQLite)
still say 100 while reading the vectors fails with "Error getting embedding".
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from tunecrew.memory.store import AttemptMemory, task_text

from factories import make_record

TESTS = Path(__file__).resolve().parent
PER_WRITER = 50

WRITER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    sys.path.insert(0, sys.argv[3])
    from factories import make_record
    from tunecrew.memory.store import AttemptMemory

    path, tag = sys.argv[1], sys.argv[2]
    sync = Path(path).parent

    def barrier(name):  # both processes reach this point before either goes on
        (sync / f"{name}-{tag}").touch()
        while not all((sync / f"{name}-{t}").exists() for t in "AB"):
            time.sleep(0.001)

    records = [make_record(run_id=f"run-{tag}", attempt=i + 1, vocab=[f"w{tag}{i}", f"topic{i}{tag}", "task"])
               for i in range(PER_WRITER)]
    barrier("imported")  # both open the new directory at the same moment
    memory = AttemptMemory(path)
    with memory._guard.write():
        memory._col.modify(configuration={"hnsw": {"sync_threshold": 10}})
    barrier("opened")  # ... and write at the same time
    for record in records:
        memory.remember(record)
    print("wrote", len(records))
""").replace("PER_WRITER", str(PER_WRITER))


def _expected() -> list:
    return [make_record(run_id=f"run-{tag}", attempt=i + 1, vocab=[f"w{tag}{i}", f"topic{i}{tag}", "task"])
            for tag in "AB" for i in range(PER_WRITER)]


def test_two_processes_writing_at_once_lose_nothing(tmp_path: Path) -> None:
    location = tmp_path / "memory"  # does not exist yet: the first open races too
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(location), tag, str(TESTS)],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for tag in "AB"]
    # This process opens the store while they write, and keeps reading through that one object.
    deadline = time.monotonic() + 60
    while not all((tmp_path / f"opened-{t}").exists() for t in "AB") and time.monotonic() < deadline:
        time.sleep(0.01)
    reader = AttemptMemory(location)
    outs = [p.communicate(timeout=120) for p in procs]
    for p, (out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err[-2000:]
        assert f"wrote {PER_WRITER}" in out

    expected = _expected()
    ids = [f"{r.run_id}:{r.attempt}" for r in expected]
    assert reader.count() == 2 * PER_WRITER
    assert all(reader.get(i) is not None for i in ids)
    # The vectors too, not only the SQLite rows: every one is readable and finds its own attempt.
    vectors = reader._col.get(ids=ids, include=["embeddings"])
    assert len(vectors["ids"]) == 2 * PER_WRITER
    for record, id_ in zip(expected, ids, strict=True):
        hit = reader._col.query(query_embeddings=reader._ef([task_text(record)]), n_results=1, include=[])
        assert hit["ids"][0] == [id_]
    assert reader.recall(task_text(expected[-1]), k=1)[0].id == ids[-1]

    reader.remember(make_record(run_id="reader"))  # a write on top of theirs loses none of them
    assert reader.count() == 2 * PER_WRITER + 1
