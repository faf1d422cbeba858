"""The scenarios `tunecrew run` knows, by name. A scenario module exposes `SCENARIO`."""

from __future__ import annotations

from importlib import import_module

from tunecrew.tools.scenario import Scenario

SCENARIOS = {
    "task-agent": "tunecrew.scenarios.task_agent.scenario",
    "medical-reasoning": "tunecrew.scenarios.medical_reasoning.scenario",
    "legal-reasoning": "tunecrew.scenarios.legal_reasoning.scenario",
    "custom": "tunecrew.scenarios.custom.scenario",  # `tunecrew run --data FILE` without a scenario name
}


class UnknownScenario(ValueError):
    pass


def load_scenario(name: str) -> Scenario:
    if name not in SCENARIOS:
        raise UnknownScenario(f"unknown scenario {name!r}; available: {', '.join(sorted(SCENARIOS))}")
    return import_module(SCENARIOS[name]).SCENARIO
