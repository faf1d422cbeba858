"""The whole crew, offline, on a tiny budget: real agents, real tools, a real tiny model trained in a
subprocess, a real Chroma store. Then a second project recalls the first one's success."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from tunecrew.agents.roles import ROLES
from tunecrew.app.runner import RunOptions, run
from tunecrew.memory.ledger import Ledger
from tunecrew.memory.store import AttemptMemory
from tunecrew.scenarios.task_agent.scenario import SCENARIO

from factories import as_remembered_success, retry_config, small_task_agent_data


@pytest.mark.slow
def test_crew_retries_with_a_changed_config_then_a_new_project_recalls_it(tmp_path, tiny_model, tunecrew_home):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    scenario = replace(SCENARIO, build_data=small_task_agent_data, max_attempts=2, target=1.0)
    memory_dir = str(tmp_path / "memory")
    options = RunOptions(scenario=scenario, base_model=str(tiny_model), runs_dir=tmp_path / "runs",
                         memory=memory_dir, quiet=True, attempt_seconds=8, run_id="first")
    outcome = run(options)

    # The ledger holds both attempts, and the Planner's diagnosis changed the second config.
    records = Ledger(outcome.run_dir / "ledger.jsonl").read()
    assert [r.attempt for r in records] == [1, 2]
    first, second = records
    assert first.decision.action == "retry" and first.decision.changes
    # Both attempts sized in steps (--attempt-seconds with a measured rate): the retry keeps training
    # the first adapter, so only the steps it still lacks are new, and decays the rate the first held.
    expected = retry_config(first)
    assert second.config == expected
    if second.config.continue_training:  # it starts after the rows the first adapter drew from: no replay
        job = json.loads((outcome.run_dir / "attempts" / "2" / "job.json").read_text())
        assert first.result.data_end and job["data_offset"] == first.result.data_end
        assert second.result.data_end > first.result.data_end
    assert second.decision.action == "stop"
    assert first.domain is not None and first.domain.domain == "task-management agent"
    for record in records:
        assert record.result.status == "ok"
        assert record.eval.samples == 16 and record.eval.seed == 0 and record.eval.split == "small-heldout(seed=0)"
        assert record.eval.rubric is not None and record.diagnosis is not None
        assert record.eval.leak_check.passed

    # Every role spoke, through tools, and the transcript is on disk.
    lines = [json.loads(line) for line in (outcome.run_dir / "transcript.jsonl").read_text().splitlines()]
    assert {m["source"] for m in lines if m["type"] == "TextMessage"} >= set(ROLES)
    called = {c["name"] for m in lines if m["type"] == "ToolCallRequestEvent" for c in m["content"]}
    assert {"profile_dataset", "write_domain_card", "recall_attempts", "propose_config", "train", "evaluate",
            "score_rubric", "diagnose", "decide"} <= called

    # Report with plots, adapter loadable by PEFT, memory holds both attempts.
    for name in ("report.md", "report.html", "loss_curves.png", "scores.png", "baseline_eval.json"):
        assert (outcome.run_dir / name).stat().st_size > 500
    assert "## Base model vs attempts" in (outcome.run_dir / "report.md").read_text()
    base = AutoModelForCausalLM.from_pretrained(str(tiny_model))
    PeftModel.from_pretrained(base, second.result.adapter_path)
    memory = AttemptMemory(memory_dir)
    assert memory.count() == 2

    # A later project on similar data: a remembered success is the Tuner's starting point.
    memory.remember(as_remembered_success(second, "earlier-project", scenario.primary_metric, epochs=7.5,
                                          learning_rate=2.5e-3))
    again = run(replace(options, run_id="second", max_attempts=1))
    recalled = Ledger(again.run_dir / "ledger.jsonl").read()[0]
    assert recalled.config.epochs == 7.5 and recalled.config.learning_rate == 2.5e-3
    tuner_says = [json.loads(x)["content"] for x in (again.run_dir / "transcript.jsonl").read_text().splitlines()
                  if json.loads(x)["source"] == "Tuner" and json.loads(x)["type"] == "TextMessage"]
    assert "warm start" in tuner_says[0]
