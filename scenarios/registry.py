"""The scenarios `tunecrew run` knows, by name. A scenario module exposes `SCENARIO`."""

from __future__ import annotations

from importlib import import_module

from tunecrew.scenarios.base import Scenario

SCENARIOS = {"task-agent": "tunecrew.scenarios.task_agent.scenario"}


class UnknownScenario(ValueError):
    pass


def load_scenario(name: str) -> Scenario:
    if name not in SCENARIOS:
        raise UnknownScenario(f"unknown scenario {name!r}; available: {', '.join(sorted(SCENARIOS))}")
    return import_module(SCENARIOS[name]).SCENARIO
