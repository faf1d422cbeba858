"""A person steering the Planner: approve, edit, add attempts, stop, or give guidance."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from tunecrew.agents.review import parse_review
from tunecrew.app.runner import RunOptions, resume, run
from tunecrew.memory.ledger import Ledger
from tunecrew.scenarios.task_agent.scenario import SCENARIO
from tunecrew.tools.contracts import TrainConfig

from factories import small_task_agent_data

CONFIG = TrainConfig(lora_rank=32, lora_alpha=64, learning_rate=3e-3, epochs=3.0)


@pytest.mark.parametrize(("text", "kind"), [
    ("", "approve"), ("OK", "approve"), ("lgtm.", "approve"), ("stop", "stop"), ("+2", "extend"),
    ("add 3 more attempts", "extend"), ("make it generalise better", "guidance"),
    ("the lr looks too high to me", "guidance"),
])
def test_review_kinds(text, kind):
    assert parse_review(text, CONFIG).kind == kind


def test_edits_use_short_names_and_are_validated():
    review = parse_review("lr 1e-4, rank 8 alpha=16; epochs: 2.5 embeddings off", CONFIG)
    assert review.kind == "edit"
    assert review.changes == {"learning_rate": 1e-4, "lora_rank": 8, "lora_alpha": 16, "epochs": 2.5,
                              "train_embeddings": False}
    bad = parse_review("lr 10", CONFIG)
    assert bad.kind == "invalid" and "learning_rate" in bad.error
    assert parse_review("+4", CONFIG).attempts == 4


def test_and_separates_edits_and_a_rule_across_fields_reads_as_a_sentence():
    review = parse_review("lr 1e-4 and rank 8 and neftune 5", CONFIG)
    assert review.kind == "edit"
    assert review.changes == {"learning_rate": 1e-4, "lora_rank": 8, "neftune_noise_alpha": 5}
    assert parse_review("the standard lr please", CONFIG).kind == "guidance"
    refused = parse_review("neftune 5", TrainConfig(method="dpo"))
    assert refused.kind == "invalid"
    assert refused.error.startswith("neftune_noise_alpha adds noise") and "Value error" not in refused.error


class Person:
    """Scripted answers; records every prompt it was shown."""

    def __init__(self, *answers: str):
        self.answers = list(answers)
        self.prompts: list[str] = []

    def __call__(self, prompt: str) -> str:
        self.prompts.append(prompt)
        return self.answers.pop(0)


@pytest.mark.slow
def test_a_person_edits_extends_and_stops_the_run(tmp_path, tiny_model, tunecrew_home):
    person = Person("make it better please", "lr 2e-3, epochs 4", "+1", "stop")
    options = RunOptions(scenario=replace(SCENARIO, build_data=small_task_agent_data, max_attempts=2, target=1.0),
                         base_model=str(tiny_model), runs_dir=tmp_path / "runs", use_memory=False, quiet=True,
                         attempt_seconds=4, run_id="steered", threads=1, interactive=True, input_func=person)
    outcome = run(options)
    first, second, third = Ledger(outcome.run_dir / "ledger.jsonl").read()

    assert "Planner proposes: retry" in person.prompts[0] and "diagnosis:" in person.prompts[0]
    assert "could not read that" in person.prompts[1]  # free text means nothing to the offline Planner
    assert first.decision.by == "Human" and first.decision.changes["learning_rate"] == 2e-3
    assert second.config.learning_rate == 2e-3 and second.config.epochs == 4
    # The Planner stopped for budget; the person added an attempt, so the diagnosis' change was tried.
    assert "Planner proposes: stop" in person.prompts[2]
    assert second.decision.action == "retry" and second.decision.changes == second.diagnosis.suggested_changes
    assert third.decision.action == "stop" and third.decision.by == "Human"
    assert outcome.spec.max_attempts == 3
    assert any(n.startswith("person: edit") for n in first.notes)

    # `tunecrew chat` on the finished run: the person may add attempts, or leave.
    leaving = Person("")
    resume(outcome.run_dir, replace(options, input_func=leaving))
    assert "finished" in leaving.prompts[0] and len(Ledger(outcome.run_dir / "ledger.jsonl").read()) == 3


@pytest.mark.slow
def test_chat_on_a_finished_run_asks_before_the_next_attempt_trains(tmp_path, tiny_model, tunecrew_home):
    """`tunecrew chat RUN --add-attempts 1` trained at once and asked only afterwards (issue 17)."""
    options = RunOptions(scenario=replace(SCENARIO, build_data=small_task_agent_data, max_attempts=1, target=1.0),
                         base_model=str(tiny_model), runs_dir=tmp_path / "runs", use_memory=False, quiet=True,
                         attempt_seconds=4, run_id="joined", threads=1)
    outcome = run(options)
    second = outcome.run_dir / "attempts" / "2"

    class Watching(Person):
        def __call__(self, prompt: str) -> str:
            self.trained_before = getattr(self, "trained_before", second.exists())
            return super().__call__(prompt)

    leaving = Watching("stop")
    resume(outcome.run_dir, replace(options, interactive=True, input_func=leaving), add_attempts=1)
    assert "before attempt 2 of 2 trains" in leaving.prompts[0] and "diagnosis:" in leaving.prompts[0]
    assert len(Ledger(outcome.run_dir / "ledger.jsonl").read()) == 1 and not second.exists()
    assert json.loads((outcome.run_dir / "run.json").read_text())["max_attempts"] == 1  # taken back

    # Guidance the offline Planner cannot act on is asked again, not trained unchanged; then an edit
    # written with "and"; then approve the Planner's stop.
    person = Watching("make it better", "lr 2e-3 and wd 0.01", "")
    resume(outcome.run_dir, replace(options, interactive=True, input_func=person), add_attempts=1)
    assert person.trained_before is False and "before attempt 2" in person.prompts[0]
    assert person.prompts[1].startswith("I could not read that as a decision or a config edit.")
    records = Ledger(outcome.run_dir / "ledger.jsonl").read()
    assert [r.attempt for r in records] == [1, 2] and records[1].config.learning_rate == 2e-3
    assert records[1].config.weight_decay == 0.01
    assert any(n.startswith("person, before training: edit") for n in records[1].notes)
