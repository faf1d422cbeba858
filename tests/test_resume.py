"""kill -9 a real run while it trains, then `resume`: no finished attempt is lost or repeated, the
trainer does not outlive its crew, and the ledger and the memory store agree."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tunecrew.app.cli import main
from tunecrew.app.runner import RunOptions, resume
from tunecrew.memory.ledger import Ledger
from tunecrew.memory.store import AttemptMemory

from factories import retry_config, trainer_pids, wait_until

START = """
from dataclasses import replace
from pathlib import Path
from tunecrew.app.runner import RunOptions, run
from tunecrew.scenarios.task_agent.scenario import SCENARIO
from factories import small_task_agent_data
run(RunOptions(scenario=replace(SCENARIO, build_data=small_task_agent_data, max_attempts=2, target=1.0),
               base_model={base!r}, runs_dir=Path({runs!r}), memory={memory!r}, quiet=True,
               attempt_seconds=15, run_id="victim", threads=1))
"""




@pytest.mark.slow
def test_kill_9_during_training_then_resume(tmp_path, tiny_model, tunecrew_home):
    runs, memory = tmp_path / "runs", tmp_path / "memory"
    script = tmp_path / "start.py"
    script.write_text(START.format(base=str(tiny_model), runs=str(runs), memory=str(memory)))
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent)}
    crew = subprocess.Popen([sys.executable, str(script)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    run_dir = runs / "victim"
    ledger = Ledger(run_dir / "ledger.jsonl")
    frozen: list[int] = []

    def freeze_attempt_2s_trainer() -> bool:
        # Stop attempt 2's trainer the moment it exists, so that the kill below lands while the crew
        # waits on it: its 15 s cap can end a tiny run one step after its first log on a loaded
        # machine, before any poll sees the step. The trainer's PDEATHSIG (SIGKILL) reaches a stopped process.
        frozen.extend(trainer_pids(run_dir / "attempts" / "2"))
        for pid in frozen:
            with contextlib.suppress(ProcessLookupError):  # gone between the listing and the signal
                os.kill(pid, signal.SIGSTOP)
        return bool(frozen) or crew.poll() is not None

    try:
        wait_until(freeze_attempt_2s_trainer, timeout=240, what="attempt 2 to start training", every=0.05)
        assert crew.poll() is None, crew.stderr.read().decode()[-2000:]
        first = ledger.read()
        crew.send_signal(signal.SIGKILL)
        crew.wait(timeout=30)
    finally:
        if crew.poll() is None:
            crew.kill()
    # The trainer died with its crew (no orphan writing into attempt 2).
    wait_until(lambda: not trainer_pids(run_dir / "attempts" / "2"), timeout=10, what="the orphan trainer to exit")
    assert [r.attempt for r in first] == [1] and first[0].decision.action == "retry"

    # Resumed through a wrapper interpreter, as `resume --train-python .venv-unsloth/bin/python` would.
    ran = tmp_path / "ran.txt"
    wrapper = tmp_path / "python-wrapper"
    wrapper.write_text(f'#!/bin/sh\necho "$@" >> {ran}\nexec {sys.executable} "$@"\n')
    wrapper.chmod(0o755)
    outcome = resume(run_dir, RunOptions(scenario=None, quiet=True, threads=1,  # type: ignore[arg-type]
                                          train_python=str(wrapper)))

    records = ledger.read()
    assert [r.attempt for r in records] == [1, 2]
    assert records[0] == first[0]  # the finished attempt is untouched, not repeated
    assert records[1].config == retry_config(first[0])  # the Planner's decision, as the policy trains it
    assert records[1].result.status == "ok" and records[1].eval is not None
    store = AttemptMemory(str(memory))
    assert store.count() == 2 and store.get("victim:1") == records[0] and store.get("victim:2") == records[1]
    assert (outcome.run_dir / "report.md").exists()
    assert "-m tunecrew.tools.train_worker" in ran.read_text()  # attempt 2 trained with the resume's interpreter


@pytest.mark.slow
def test_a_trained_but_undecided_attempt_is_reused_not_retrained(tmp_path, tiny_model, tunecrew_home):
    from dataclasses import replace

    from tunecrew.app.runner import run
    from tunecrew.scenarios.task_agent.scenario import SCENARIO

    from factories import small_task_agent_data

    outcome = run(RunOptions(scenario=replace(SCENARIO, build_data=small_task_agent_data, max_attempts=1),
                             base_model=str(tiny_model), runs_dir=tmp_path / "runs", use_memory=False, quiet=True,
                             attempt_seconds=5, run_id="undecided", threads=1))
    ledger_path = outcome.run_dir / "ledger.jsonl"
    finished = Ledger(ledger_path).read()
    ledger_path.write_text("")  # as if killed after training and evaluation, before the Planner decided
    log = outcome.run_dir / "attempts" / "1" / "train_log.jsonl"
    trained_at = log.stat().st_mtime_ns

    assert main(["resume", "undecided", "--runs-dir", str(tmp_path / "runs"), "--quiet", "--threads", "1"]) == 0

    again = Ledger(ledger_path).read()
    assert log.stat().st_mtime_ns == trained_at  # no second training
    assert [r.attempt for r in again] == [1]
    assert again[0].result == finished[0].result and again[0].eval == finished[0].eval
    # Resuming a finished run changes nothing.
    assert main(["resume", str(outcome.run_dir), "--quiet"]) == 0
    assert Ledger(ledger_path).read() == again


def test_resume_of_something_that_is_not_a_run(tmp_path, capsys):
    assert main(["resume", "nope", "--runs-dir", str(tmp_path)]) == 2
    assert "no run.json here" in capsys.readouterr().err


@pytest.mark.slow
def test_a_ledger_that_cannot_be_written_stops_the_run_and_keeps_the_training(tmp_path, tiny_model, tunecrew_home,
                                                                              monkeypatch):
    from dataclasses import replace

    from tunecrew.app.runner import run
    from tunecrew.memory.ledger import LedgerError
    from tunecrew.scenarios.task_agent.scenario import SCENARIO

    from factories import small_task_agent_data

    def disk_full(self, record):
        raise LedgerError(f"{self.path}: no space left on device while writing attempt {record.attempt}")

    monkeypatch.setattr(Ledger, "append", disk_full)
    options = RunOptions(scenario=replace(SCENARIO, build_data=small_task_agent_data, max_attempts=2),
                         base_model=str(tiny_model), runs_dir=tmp_path / "runs", use_memory=False, quiet=True,
                         attempt_seconds=4, run_id="full-disk", threads=1)
    with pytest.raises(LedgerError, match="no space left"):
        run(options)
    assert (tmp_path / "runs" / "full-disk" / "attempts" / "1" / "result.json").exists()  # resume reuses it
