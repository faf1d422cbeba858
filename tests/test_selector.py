"""Speaker order follows the run's state: no role can be skipped, and a role that fails its job
hands over to the Planner instead of looping."""

from __future__ import annotations

from types import SimpleNamespace

from autogen_agentchat.messages import TextMessage

from tunecrew.agents.crew import next_speaker
from tunecrew.tools.contracts import TrainResult


def said(*sources: str) -> list[TextMessage]:
    return [TextMessage(content="...", source=s) for s in ("user", *sources)]


def state(domain=None, result=None, report=None, proposed=None):
    return SimpleNamespace(domain=domain, current=SimpleNamespace(result=result, report=report), proposed=proposed)


OK = TrainResult(status="ok")


def test_the_loop_in_order():
    assert next_speaker(state())(said()) == "DomainExpert"
    assert next_speaker(state(domain="d"))(said("DomainExpert")) == "Tuner"
    assert next_speaker(state(domain="d", result=OK))(said("DomainExpert", "Tuner")) == "Judge"
    assert next_speaker(state(domain="d", result=OK, report="r"))(said("Tuner", "Judge")) == "Planner"
    # After a retry the attempt's state is cleared: the Tuner goes again.
    assert next_speaker(state(domain="d"))(said("Judge", "Planner")) == "Tuner"


def test_failed_training_skips_the_judge():
    failed = TrainResult(status="oom", error="killed")
    assert next_speaker(state(domain="d", result=failed))(said("DomainExpert", "Tuner")) == "Planner"


def test_a_role_that_could_not_do_its_job_hands_over_to_the_planner():
    assert next_speaker(state())(said("DomainExpert")) == "Planner"
    assert next_speaker(state(domain="d"))(said("DomainExpert", "Tuner")) == "Planner"
    assert next_speaker(state(domain="d", result=OK))(said("Tuner", "Judge")) == "Planner"
