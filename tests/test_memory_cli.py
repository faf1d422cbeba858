"""`tunecrew memory list|search|show|export|import|forget` through the real CLI entry point."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tunecrew.app.cli import main, parser
from tunecrew.memory.store import AttemptMemory
from tunecrew.tools.contracts import AttemptRecord

from factories import make_domain_record, make_record

RECORDS = [
    make_domain_record("task-agent", run_id="task-run", attempt=1, diagnosis="underfit", score=0.3,
                       created_at="2026-01-01T10:00:00+00:00"),
    make_domain_record("task-agent", run_id="task-run", attempt=2, created_at="2026-01-01T11:00:00+00:00"),
    make_domain_record("legal", run_id="legal-run", attempt=1, status="oom", score=None, diagnosis="oom",
                       created_at="2026-01-02T09:00:00+00:00"),
]


@pytest.fixture
def store(tmp_path: Path) -> str:
    location = tmp_path / "memory"
    AttemptMemory(location).remember_many(RECORDS)
    return str(location)


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["memory", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_list_is_newest_first_and_filters(store: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "list", "--memory", store)
    assert code == 0
    positions = [out.index(i) for i in ("legal-run:1", "task-run:2", "task-run:1")]
    assert positions == sorted(positions)
    assert "3 of 3 attempts" in out and "worked" in out and "failed (underfit)" in out and "failed (oom)" in out

    code, out, _ = run_cli(capsys, "list", "--memory", store, "--scenario", "task-agent", "--limit", "1")
    assert code == 0 and "task-run:2" in out and "task-run:1" not in out and "legal-run" not in out
    code, out, _ = run_cli(capsys, "list", "--memory", store, "--domain", "legal reasoning")
    assert code == 0 and "legal-run:1" in out and "task-run" not in out


def test_search_shows_similarity_outcome_and_summary(store: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "search", "task-management agent task due priority reminder",
                           "--memory", store, "-k", "2")
    assert code == 0
    rows = [line for line in out.splitlines() if ":1 " in line or ":2 " in line]
    assert len(rows) == 2
    assert "task-run:2" in rows[0] and "worked" in rows[0]  # the success first, then the failure as a warning
    assert "task-run:1" in rows[1] and "failed (underfit)" in rows[1]
    assert "lora r32" in out and "legal-run" not in out
    similarity = float(rows[0].split()[1])
    assert 0 < similarity <= 1


def test_show_prints_the_full_record(store: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "show", "legal-run:1", "--memory", store)
    assert code == 0
    assert AttemptRecord.model_validate_json(out) == RECORDS[2]
    code, _, err = run_cli(capsys, "show", "nope:1", "--memory", store)
    assert code == 1 and "no attempt 'nope:1'" in err


def test_export_then_import_into_an_empty_store_keeps_every_attempt(
    store: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_file = tmp_path / "export" / "attempts.jsonl"
    code, _, err = run_cli(capsys, "export", str(out_file), "--memory", store)
    assert code == 0 and "exported 3 attempts" in err
    lines = out_file.read_text().splitlines()
    assert [json.loads(line)["run_id"] for line in lines] == ["task-run", "task-run", "legal-run"]  # oldest first

    empty = tmp_path / "other-machine"
    code, out, _ = run_cli(capsys, "import", str(out_file), "--memory", str(empty), "--embedder", "hashing:256")
    assert code == 0 and "3 new, 0 replaced" in out and "hashing:256" in out
    copy = AttemptMemory(empty, embedder="hashing:256")  # re-embedded with the destination's embedder
    assert {f"{r.run_id}:{r.attempt}" for r in copy.list()} == {"task-run:1", "task-run:2", "legal-run:1"}
    assert copy.get("task-run:2") == RECORDS[1]
    assert copy.recall("task-management agent task due priority", k=1, min_similarity=0.0)[0].id == "task-run:2"

    code, out, _ = run_cli(capsys, "import", str(out_file), "--memory", str(empty), "--embedder", "hashing:256")
    assert code == 0 and "0 new, 3 replaced" in out and copy.count() == 3

    code, out, _ = run_cli(capsys, "export", "-", "--memory", store)
    assert code == 0 and out.splitlines() == lines


def test_import_names_the_bad_line_and_imports_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "attempts.jsonl"
    good = RECORDS[0].model_dump_json()
    broken = json.loads(RECORDS[1].model_dump_json())
    broken["config"]["learning_rate"] = 10  # out of bounds
    bad.write_text("\n".join([good, "", json.dumps(broken), good]) + "\n")
    target = tmp_path / "memory"
    code, _, err = run_cli(capsys, "import", str(bad), "--memory", str(target))
    assert code == 2
    assert f"{bad}:3:" in err and "config.learning_rate" in err and "nothing was imported" in err
    assert not target.exists()  # the file is checked before a store is opened or created

    bad.write_text(good + "\n{not json\n")
    code, _, err = run_cli(capsys, "import", str(bad), "--memory", str(target))
    assert code == 2 and f"{bad}:2:" in err
    code, _, err = run_cli(capsys, "import", str(tmp_path / "missing.jsonl"), "--memory", str(target))
    assert code == 2 and "cannot read" in err


def test_forget_one_attempt_or_a_whole_run(store: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "forget", "legal-run:1", "--memory", store)
    assert code == 0 and "forgot 1 attempt " in out
    code, out, _ = run_cli(capsys, "forget", "--run", "task-run", "--memory", store)
    assert code == 0 and "forgot 2 attempts" in out
    assert AttemptMemory(store).count() == 0
    code, _, err = run_cli(capsys, "forget", "--run", "task-run", "--memory", store)
    assert code == 1 and "nothing to forget" in err
    with pytest.raises(SystemExit):  # an id or --run, not both
        main(["memory", "forget", "x:1", "--run", "task-run", "--memory", store])


def test_embedder_flag_is_checked_against_the_store(store: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, "list", "--memory", store, "--embedder", "hashing:512")
    assert code == 2 and "cannot be compared" in err and "Traceback" not in err
    code, _, err = run_cli(capsys, "search", "x", "--memory", store, "--embedder", "word2vec")
    assert code == 2 and "unknown embedder 'word2vec'" in err
    args = parser().parse_args(["run", "task-agent", "--embedder", "st:/models/minilm", "--memory", store])
    assert args.embedder == "st:/models/minilm"
    assert parser().parse_args(["run", "task-agent"]).embedder == "hashing"


def test_a_run_remembers_with_its_embedder(tmp_path: Path) -> None:
    """RunOptions.embedder reaches the store, and run.json records it so `resume` reopens the same."""
    from tunecrew.app.runner import RunOptions, open_memory
    from tunecrew.tools.contracts import RunSpec

    assert RunOptions(scenario=None, embedder="hashing:128").embedder == "hashing:128"  # type: ignore[arg-type]
    location = tmp_path / "memory"
    AttemptMemory(location, embedder="hashing:128").remember(make_record())
    spec = RunSpec(run_id="r", scenario="task-agent", base_model="m", provider="offline", max_attempts=1, target=0.9,
                   seed=0, dataset_fingerprint="f", memory=str(location), memory_embedder="hashing:128")
    reopened = open_memory(spec)
    assert reopened is not None and reopened.count() == 1 and reopened.embedder == "hashing:128"
