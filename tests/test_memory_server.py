"""Shared team memory: `--memory http://host:port` against a real `chroma run` on 127.0.0.1.

The chromadb package ships the server (`chroma run`, Rust, no network needed). Vectors are computed
client-side by tunecrew's hashing embedder and sent as embeddings; the server only stores the
embedder's name and config in the collection, so it needs no tunecrew code.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import pytest

from tunecrew.app.cli import main
from tunecrew.app.runner import RunOptions, run
from tunecrew.memory.ledger import Ledger
from tunecrew.memory.store import AttemptMemory, MemoryStoreError
from tunecrew.scenarios.task_agent.scenario import SCENARIO

from factories import as_remembered_success, make_domain_record, make_record, small_task_agent_data

CHROMA = "import sys; from chromadb.cli.cli import app; sys.argv[0] = 'chroma'; sys.exit(app())"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def chroma_server(data: Path) -> Iterator[str]:
    """`chroma run` on a free 127.0.0.1 port with its data under `data`; yields its URL."""
    import chromadb

    port = _free_port()
    with open(data / "server.log", "w") as log:
        proc = subprocess.Popen([sys.executable, "-c", CHROMA, "run", "--path", str(data / "db"),
                                 "--host", "127.0.0.1", "--port", str(port)], stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    chromadb.HttpClient(host="127.0.0.1", port=port).heartbeat()
                    break
                except Exception:  # not listening yet
                    if proc.poll() is not None or time.monotonic() > deadline:
                        log.flush()
                        pytest.fail(f"chroma run did not start: {(data / 'server.log').read_text()[-2000:]}")
                    time.sleep(0.1)
            yield f"http://127.0.0.1:{port}"
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()


@pytest.fixture(scope="module")
def chroma_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with chroma_server(tmp_path_factory.mktemp("chroma_server")) as url:
        yield url


def test_remember_and_recall_through_a_chroma_server(chroma_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    alice = make_domain_record("task-agent", run_id="alice")
    one = AttemptMemory(chroma_url, collection="round_trip")
    one.remember_many([alice, make_domain_record("legal", run_id="bob")])
    other = AttemptMemory(chroma_url, collection="round_trip")  # a teammate's process
    assert other.count() == 2 and other.get("alice:1") == alice
    hits = other.recall("task-agent task-management agent task due priority reminder", k=2, min_similarity=0.0)
    assert hits[0].id == "alice:1" and hits[0].worked
    other.remember(make_record(run_id="carol", status="oom", score=None, diagnosis="oom"))
    assert one.count() == 3
    assert one.forget(run_id="carol") == 1 and other.count() == 2

    code = main(["memory", "list", "--memory", chroma_url])  # the CLI opens the default collection
    assert code == 0 and "0 of 0 attempts" in capsys.readouterr().out


def test_a_server_collection_refuses_another_embedder(chroma_url: str) -> None:
    AttemptMemory(chroma_url, collection="pinned").remember(make_record(run_id="x"))
    with pytest.raises(MemoryStoreError, match="cannot be compared"):
        AttemptMemory(chroma_url, embedder="hashing:256", collection="pinned")


def test_an_unreachable_server_is_a_clear_error() -> None:
    with pytest.raises(MemoryStoreError, match="cannot reach the Chroma server"):
        AttemptMemory(f"http://127.0.0.1:{_free_port()}")


@pytest.mark.slow
def test_two_crews_share_one_memory_through_a_chroma_server(tmp_path: Path, tiny_model: str,
                                                            tunecrew_home: Path) -> None:
    """Alice's run writes its attempt to the team's server; a teammate's remembered success there
    is where Bob's next run starts. Both runs are the real crew; nothing tunecrew is on the server."""
    with chroma_server(tmp_path) as url:
        scenario = replace(SCENARIO, build_data=small_task_agent_data, max_attempts=1)
        alice = run(RunOptions(scenario=scenario, base_model=tiny_model, runs_dir=tmp_path / "runs", memory=url,
                               quiet=True, attempt_seconds=5, run_id="alice"))
        attempt = Ledger(alice.run_dir / "ledger.jsonl").read()[0]
        team = AttemptMemory(url)  # another process's view of the server
        assert team.count() == 1 and team.get("alice:1") == attempt
        assert '"memory": "' + url + '"' in (alice.run_dir / "run.json").read_text()

        team.remember(as_remembered_success(attempt, "carol", scenario.primary_metric, epochs=7.5,
                                            learning_rate=2.5e-3))
        bob = run(RunOptions(scenario=scenario, base_model=tiny_model, runs_dir=tmp_path / "runs", memory=url,
                             quiet=True, attempt_seconds=5, run_id="bob"))
        started = Ledger(bob.run_dir / "ledger.jsonl").read()[0].config
        assert (started.epochs, started.learning_rate) == (7.5, 2.5e-3)
        assert team.count() == 3 and team.get("bob:1") is not None
