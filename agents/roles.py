"""The crew's roles, defined once: name, what the selector reads about it, its tools, its colour.

Its system prompt is `prompts/<name>.md`; its offline stand-in is `offline.POLICIES[name]` (the
offline provider's own table, since the rules import the tool answers this module must not).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

__all__ = ["CREW", "DOMAIN_EXPERT", "HUMAN", "JUDGE", "PLANNER", "ROLES", "TUNER", "Role", "colour_of"]


@dataclass(frozen=True)
class Role:
    name: str  # the agent's name in the chat, in --agent ROLE=... and in the transcript
    description: str  # what the selector and the other agents read about it
    tools: tuple[str, ...]  # Toolkit methods it may call, in the order it usually calls them
    colour: str  # its panel in the terminal

    @property
    def system_prompt(self) -> str:
        return resources.files("tunecrew.agents").joinpath(f"prompts/{self.name}.md").read_text(encoding="utf-8")


DOMAIN_EXPERT, TUNER, JUDGE, PLANNER, HUMAN = "DomainExpert", "Tuner", "Judge", "Planner", "Human"

CREW: tuple[Role, ...] = (
    Role(DOMAIN_EXPERT, "Profiles the dataset, detects its domain and writes the expert persona.",
         ("profile_dataset", "detect_domain", "write_domain_card"), "cyan"),
    Role(TUNER, "Proposes a validated training config from the profile, hardware and memory, and trains it.",
         ("recall_attempts", "search_config", "propose_config", "train"), "magenta"),
    Role(JUDGE, "Evaluates the trained model on the held-out split and scores it on the rubric.",
         ("evaluate", "score_rubric"), "yellow"),
    Role(PLANNER, "Diagnoses each attempt and decides: retry with changes, or stop.", ("diagnose", "decide"), "green"),
)
ROLES: tuple[str, ...] = tuple(role.name for role in CREW)  # the agents that a provider drives
BY_NAME = {role.name: role for role in CREW}


def colour_of(source: str) -> str:
    """A message's colour by who sent it; a person and anything else are white."""
    role = BY_NAME.get(source)
    return role.colour if role else "white"
