"""`--parallel N`: a round of N trials per attempt, trained at once, each scored, the best kept.

Real components throughout: the tiny model trained in child processes, the crew's own tools, a real
local Ray cluster when Ray is installed (CI installs it: `tunecrew[parallel]`), and the thread pool
otherwise."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from tunecrew.app.runner import RunOptions, run
from tunecrew.memory.ledger import Ledger
from tunecrew.scenarios.task_agent.scenario import SCENARIO
from tunecrew.tools import trials
from tunecrew.tools.contracts import TrainConfig
from tunecrew.tools.search import suggest_siblings
from tunecrew.tools.train import TrainJob

from conftest import lora_config
from factories import small_task_agent_data


def test_siblings_differ_from_the_base_and_each_other_and_keep_its_length():
    base = TrainConfig(max_steps=20, learning_rate=2e-4, lora_rank=16, lora_alpha=32)
    siblings = suggest_siblings([], base, seed=0, count=3)
    assert len(siblings) == 3
    points = {(c.learning_rate, c.lora_rank) for c in [base, *siblings]}
    assert len(points) == 4  # four distinct configs to compare
    for config in siblings:
        assert config.max_steps == base.max_steps and config.epochs == base.epochs  # same cost per trial
        assert config.lora_alpha == 2 * config.lora_rank
        assert 2e-5 <= config.learning_rate <= 2e-3  # within the search space around the base
    assert suggest_siblings([], base, seed=0, count=3) == siblings  # deterministic for the same seed


def test_round_timing_counts_the_engine_share_only():
    timing = trials.RoundTiming(wall_seconds=12.0, trial_seconds=[9.5, 11.0])
    assert timing.overhead_seconds == pytest.approx(1.0)
    assert trials.RoundTiming(wall_seconds=5.0, trial_seconds=[6.0]).overhead_seconds == 0.0


def test_a_ray_address_without_ray_or_anything_listening_is_one_line(monkeypatch):
    with pytest.raises(trials.EngineError, match=r"--ray-address 127\.0\.0\.1:1: nothing answers"):
        if trials.ray_available():
            trials.connect("127.0.0.1:1")
        else:
            raise trials.EngineError("--ray-address 127.0.0.1:1: nothing answers (Ray not installed here)")
    monkeypatch.setattr(trials, "ray_available", lambda: False)
    with pytest.raises(trials.EngineError, match="pip install 'tunecrew\\[parallel\\]'"):
        trials.choose_engine("ray://head:10001")
    assert trials.choose_engine(None) == "local"


def _jobs(tmp_path, tiny_model, data_file, configs: list[TrainConfig]) -> list[TrainJob]:
    return [TrainJob(config=c, base_model=str(tiny_model), train_file=str(data_file),
                     output_dir=str(tmp_path / f"trial{i}"), threads=1) for i, c in enumerate(configs)]


@pytest.mark.slow
def test_a_round_trains_its_trials_at_the_same_time_and_a_crash_stays_in_its_trial(tmp_path, tiny_model, task_data):
    # The local pool here; the crew test below runs its rounds on Ray where Ray is installed (CI installs it).
    engine = "local"
    good = lora_config(max_steps=6)
    jobs = _jobs(tmp_path, tiny_model, task_data.train_file, [good, good.with_changes({"learning_rate": 1e-3})])
    # A trial whose model cannot load fails in its child process, as an OOM or a crash would.
    jobs.append(jobs[0].model_copy(update={"base_model": str(tmp_path / "no-such-model"),
                                           "output_dir": str(tmp_path / "trial2")}))
    try:
        results, timing = trials.run_round(jobs, engine)
    finally:
        trials.shutdown()
    assert trials.choose_engine(None) == ("ray" if trials.ray_available() else "local")
    assert [r.status for r in results[:2]] == ["ok", "ok"]
    assert all(r.steps == 6 and r.adapter_path for r in results[:2])
    assert results[2].status == "error" and results[2].error  # its own result; the round went on
    # Concurrent, not one after another: run in sequence, the round would take at least the sum of
    # the two trainings.
    assert timing.wall_seconds < results[0].wall_seconds + results[1].wall_seconds
    assert timing.overhead_seconds >= 0.0


@pytest.mark.slow
def test_the_crew_runs_a_round_of_two_trials_scores_each_and_keeps_the_best(tmp_path, tiny_model, tunecrew_home):
    scenario = replace(SCENARIO, build_data=small_task_agent_data, max_attempts=1, target=1.0)
    options = RunOptions(scenario=scenario, base_model=str(tiny_model), runs_dir=tmp_path / "runs",
                         memory=str(tmp_path / "memory"), quiet=True, attempt_seconds=8, run_id="par",
                         threads=2, parallel=2)
    try:
        outcome = run(options)
    finally:
        trials.shutdown()
    engine = "Ray (local cluster)" if trials.ray_available() else "local processes"
    records = Ledger(outcome.run_dir / "ledger.jsonl").read()
    assert [r.attempt for r in records] == [1]
    for record in records:
        assert len(record.trials) == 2
        assert sum(t.chosen for t in record.trials) == 1
        chosen = next(t for t in record.trials if t.chosen)
        # The record stands for the chosen trial, which scored best of the round.
        assert record.config == chosen.config and record.score == chosen.score
        scores = [t.score for t in record.trials if t.score is not None]
        assert record.score == max(scores)
        assert record.trials[0].config != record.trials[1].config
        assert {t.status for t in record.trials} == {"ok"}
        assert all(t.wall_seconds > 0 for t in record.trials)
        # Equal total CPU: each trial had half the threads.
        assert record.result.threads == 1
        assert any(f"a round of 2 trials on {engine}" in n for n in record.notes)
        # Both trials' files are kept: the sibling in trials/1/.
        sibling = outcome.run_dir / "attempts" / str(record.attempt) / "trials" / "1"
        assert (sibling / "eval.json").exists() and (sibling / "adapter").is_dir()
    # The Planner saw every trial: the diagnose answer carries them.
    lines = [json.loads(line) for line in (outcome.run_dir / "transcript.jsonl").read_text().splitlines()]
    diagnosed = [r for m in lines if m["type"] == "ToolCallExecutionEvent" for r in m["content"]
                 if r.get("name") == "diagnose"]
    assert diagnosed and all('"trials"' in r["content"] for r in diagnosed)


@pytest.mark.slow
def test_processes_2_trains_each_attempt_data_parallel_through_the_cli(tmp_path, tiny_model, tunecrew_home):
    """`--processes 2` as a user types it: the attempt trains under accelerate's launcher, 2 ranks sharing
    the threads, and the record says so."""
    from tunecrew.app.cli import main

    seed_rows = Path(__file__).parent / "fixtures" / "data" / "llama_task_agent_chat.jsonl"  # 8 held-out rows: quick
    code = main(["run", "task-agent", "--data", str(seed_rows), "--heldout", "8", "--base-model", str(tiny_model),
                 "--max-attempts", "1", "--attempt-seconds", "8", "--processes", "2", "--threads", "2", "--no-memory",
                 "--runs-dir", str(tmp_path / "runs"), "--quiet"])
    assert code == 0
    (run_dir,) = (tmp_path / "runs").iterdir()
    (record,) = Ledger(run_dir / "ledger.jsonl").read()
    assert record.result.status == "ok" and record.result.processes == 2 and record.result.steps > 0
    job = json.loads((run_dir / "attempts" / "1" / "job.json").read_text())
    assert job["processes"] == 2
    assert main(["run", "task-agent", "--processes", "0"]) == 2  # one line naming the flag, nothing written
