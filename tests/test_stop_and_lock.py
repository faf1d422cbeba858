"""A run stops when told, is run by one process at a time, and its exit code tells the truth.

Ctrl-C and SIGTERM are sent to a real crew process mid-training; the lock is held by a real second
process; the exit codes come from the real CLI.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tunecrew.app.cli import main, unfinished_work
from tunecrew.app.runner import RunOptions, recorded_provider, resume, run
from tunecrew.memory.examples import make_record
from tunecrew.memory.ledger import Ledger
from tunecrew.tools.contracts import RunSpec
from tunecrew.tools.rows import write_jsonl
from tunecrew.tools.run_dir import RunDir, RunInUse

from factories import trainer_pids, wait_until

START = """
import sys
from dataclasses import replace
from pathlib import Path
from tunecrew.app.runner import RunOptions, run
from tunecrew.scenarios.task_agent.scenario import SCENARIO
from factories import small_task_agent_data
run(RunOptions(scenario=replace(SCENARIO, build_data=small_task_agent_data, max_attempts=2, target=1.0),
               base_model=sys.argv[1], runs_dir=Path(sys.argv[2]), use_memory=False, quiet=True,
               attempt_seconds=120, run_id="victim", threads=1))
"""




def _start_training(tmp_path: Path, tiny_model: str) -> tuple[subprocess.Popen, RunDir]:
    """A crew process, returned once attempt 1 has logged training steps."""
    script = tmp_path / "start.py"
    script.write_text(START)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent)}
    crew = subprocess.Popen([sys.executable, str(script), tiny_model, str(tmp_path / "runs")], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    run_dir = RunDir(tmp_path / "runs" / "victim")
    log = run_dir.attempt(1).path / "train_log.jsonl"
    wait_until(lambda: (log.exists() and log.read_text().count('"log"') >= 2) or crew.poll() is not None,
          timeout=240, what="attempt 1 to log training steps")
    assert crew.poll() is None, crew.stderr.read()[-2000:] if crew.stderr else ""
    return crew, run_dir


@pytest.mark.slow
@pytest.mark.parametrize("signals", [(signal.SIGINT,), (signal.SIGTERM, signal.SIGINT)],
                         ids=["ctrl-c", "term-then-int"])
def test_a_signal_stops_training_records_the_attempt_and_exits_128_plus_signal(tmp_path, tiny_model, signals):
    crew, run_dir = _start_training(tmp_path, tiny_model)
    try:
        for sig in signals:  # the second arrives while the first is handled, or after: either way, out at once
            crew.send_signal(sig)
        _, stderr = crew.communicate(timeout=30)  # training ran for 120 s otherwise
    finally:
        if crew.poll() is None:
            crew.kill()
    # Sent back to back, both may be pending at once, and Python runs SIGINT's handler first.
    assert crew.returncode in {128 + sig for sig in signals}
    first = signal.Signals(crew.returncode - 128)
    assert "Traceback" not in stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    wait_until(lambda: not trainer_pids(run_dir.attempt(1).path), timeout=10, what="the trainer to exit")
    records = Ledger(run_dir.ledger).read()
    if len(signals) > 1 and lines == ["tunecrew: stopped"]:
        # The second signal ended the process while the first was being handled: whatever had
        # been written is whole (the ledger reads) and an interrupted attempt was or was not added.
        assert len(records) <= 1 and all(r.result.status == "interrupted" for r in records)
        return
    name = first.name
    assert len(lines) == 1 and lines[0].startswith(f"tunecrew: interrupted ({name}); attempt 1 recorded as "
                                                  "interrupted after "), stderr
    assert lines[0].endswith(f"`tunecrew resume {run_dir.path}` continues")
    [record] = records
    assert record.result.status == "interrupted" and record.result.steps >= 1 and record.result.loss_curve
    assert record.decision is not None and record.decision.action == "retry" and record.decision.by == "user"
    assert run_dir.read_spec().max_attempts == 3  # the interrupted attempt is not charged to the budget


@pytest.mark.slow
def test_resume_after_ctrl_c_trains_the_attempts_the_user_asked_for(tmp_path, tiny_model):
    crew, run_dir = _start_training(tmp_path, tiny_model)
    crew.send_signal(signal.SIGINT)
    crew.communicate(timeout=30)
    assert crew.returncode == 130
    spec = run_dir.read_spec()
    run_dir.write_spec(spec.model_copy(update={"attempt_budget_s": 5.0}))  # keep the test short

    outcome = resume(run_dir.path, RunOptions(scenario=None, quiet=True, threads=1))  # type: ignore[arg-type]
    records = Ledger(run_dir.ledger).read()
    assert [r.attempt for r in records] == [1, 2, 3]
    assert records[0].result.status == "interrupted"
    assert [r.result.status for r in records[1:]] == ["ok", "ok"]  # both attempts of max_attempts=2 trained
    assert outcome.records[-1].decision is not None and outcome.records[-1].decision.action == "stop"


def _write_run(folder: Path, base_model: str = "tiny-missing", provider: str = "offline", **spec) -> RunDir:
    run_dir = RunDir(folder)
    run_dir.write_spec(RunSpec(run_id=folder.name, scenario="task-agent", base_model=base_model, provider=provider,
                               max_attempts=1, target=0.9, seed=0, dataset_fingerprint="f", memory="off", **spec))
    return run_dir


HOLD = """
import sys, time
from pathlib import Path
from tunecrew.tools.run_dir import RunDir
with RunDir(Path(sys.argv[1])).hold():
    print("held", flush=True)
    time.sleep(120)
"""


@pytest.mark.parametrize("command", ["resume", "chat"])
def test_a_second_process_on_a_run_is_refused_and_the_lock_dies_with_its_holder(tmp_path, capsys, command):
    run_dir = _write_run(tmp_path / "runs" / "busy")
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(run_dir.path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        assert main([command, str(run_dir.path)]) == 2
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and err == (f"tunecrew: {run_dir.path} is in use by another tunecrew process "
                                           f"(pid {holder.pid}); wait for it to end or stop it (Ctrl-C), then "
                                           "`tunecrew resume` this run")
        with pytest.raises(RunInUse), run_dir.hold():  # in one process too: flock is per open file
            pass
    finally:
        holder.kill()
        holder.wait()
    with run_dir.hold():  # killed -9: the kernel dropped its lock, nothing stale is left to clean up
        assert (run_dir.path / ".lock").read_text() == str(os.getpid())


def test_run_refuses_an_existing_run_id_and_a_failed_start_leaves_no_folder(tmp_path):
    from dataclasses import replace

    from tunecrew.app.runner import ResumeError
    from tunecrew.scenarios.task_agent.scenario import SCENARIO
    from tunecrew.tools.model_info import ModelNotFound

    from factories import small_task_agent_data

    scenario = replace(SCENARIO, build_data=small_task_agent_data)
    _write_run(tmp_path / "runs" / "taken")
    with pytest.raises(ResumeError, match="is an existing run"):
        run(RunOptions(scenario=scenario, run_id="taken", runs_dir=tmp_path / "runs", quiet=True, use_memory=False))
    with pytest.raises(ModelNotFound):  # the data is written before the base model is looked for
        run(RunOptions(scenario=scenario, base_model=str(tmp_path / "no-such-model"), run_id="fresh",
                       runs_dir=tmp_path / "runs", quiet=True, use_memory=False))
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["taken"]


def test_unfinished_work_names_what_is_missing():
    assert unfinished_work([]) == "no attempt was recorded"
    assert unfinished_work([make_record(status="error"), make_record(attempt=2, status="oom")]) == (
        "no attempt trained (#1 error, #2 oom)")
    assert unfinished_work([make_record(status="ok", score=None)]) == (
        "no trained attempt was scored on the held-out split")
    assert unfinished_work([make_record(status="error"), make_record(attempt=2)]) is None


def test_a_run_that_trained_nothing_exits_1_naming_the_statuses(tmp_path, capsys, tiny_model, task_data):
    run_dir = _write_run(tmp_path / "runs" / "nothing", base_model=tiny_model)
    write_jsonl(task_data.train, run_dir.train_data)
    write_jsonl(task_data.heldout, run_dir.heldout_data)
    Ledger(run_dir.ledger).append(make_record(run_id="nothing", status="error", decision="stop"))
    assert main(["resume", str(run_dir.path), "--quiet"]) == 1
    err = capsys.readouterr().err.strip()
    assert err == f"tunecrew: no attempt trained (#1 error); see {run_dir.report}"


def test_resume_uses_the_recorded_provider_and_says_when_it_cannot(tmp_path, capsys, monkeypatch):
    spec, overrides = recorded_provider(_write_run(
        tmp_path / "r", provider="openai:gpt-x; Planner=gemini:g", base_url="http://127.0.0.1:9/v1").read_spec())
    assert (spec.provider, spec.model, spec.base_url, spec.fallback) == ("openai", "gpt-x", "http://127.0.0.1:9/v1",
                                                                         True)
    assert overrides == ["Planner=gemini:g"]
    assert recorded_provider(_write_run(tmp_path / "o").read_spec(), strict=True)[0].provider == "offline"

    # Before: `resume` without --provider went on offline under the recorded label. Now the
    # recorded provider is used, so its missing key is one line naming what to set.
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    run_dir = _write_run(tmp_path / "runs" / "llm", provider="openai:gpt-x")
    assert main(["resume", str(run_dir.path), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "OPENAI_API_KEY" in err


def test_an_interrupted_attempt_is_kept_in_the_ledger_but_never_remembered(tmp_path):
    from tunecrew.memory.store import AttemptMemory

    memory = AttemptMemory(str(tmp_path / "memory"))
    stopped = make_record(run_id="r", attempt=1, status="ok")
    stopped = stopped.model_copy(update={"result": stopped.result.model_copy(update={"status": "interrupted"})})
    ids = memory.remember_many([stopped, make_record(run_id="r", attempt=2)])
    assert ids == ["r:2"] and memory.count() == 1


SLOW_START = """
import sys, time
from dataclasses import replace
from pathlib import Path
from tunecrew.app.runner import RunOptions, run
from tunecrew.scenarios.task_agent.scenario import SCENARIO

def slow_data(seed):
    print("building", flush=True)
    time.sleep(120)

run(RunOptions(scenario=replace(SCENARIO, build_data=slow_data), runs_dir=Path(sys.argv[1]), use_memory=False,
               quiet=True, run_id="early"))
"""


def test_ctrl_c_before_the_crew_starts_removes_the_half_made_run(tmp_path):
    """While the data is built (minutes for a hub dataset): before, Python's KeyboardInterrupt could
    land inside any library and the process hung on its threads; a kill loop caught one."""
    crew = subprocess.Popen([sys.executable, "-c", SLOW_START, str(tmp_path / "runs")], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert crew.stdout is not None and crew.stdout.readline().strip() == "building"
        assert (tmp_path / "runs" / "early").is_dir()
        crew.send_signal(signal.SIGINT)
        _, stderr = crew.communicate(timeout=30)
    finally:
        if crew.poll() is None:
            crew.kill()
    assert crew.returncode == 130
    assert stderr.strip() == "tunecrew: interrupted (SIGINT); the run had not started; nothing was kept"
    assert not (tmp_path / "runs" / "early").exists()
