"""What a person can answer to a Planner decision, parsed into one typed action.

    ""/ok/approve/yes     approve the decision as it is
    stop                  stop the run now
    +2 / add 2 attempts   extend the budget (a stop for budget becomes a retry)
    lr 1e-4, rank 8       edit the next attempt's config (validated like any proposal)
    anything else         guidance for the Planner (an LLM Planner re-decides with it)
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import ValidationError

from tunecrew.tools.contracts import TrainConfig

# Every name a person may use for a config field: derived from TrainConfig, never listed here.
ALIASES = TrainConfig.change_keys()
APPROVE = {"", "ok", "okay", "y", "yes", "approve", "approved", "go", "continue", "lgtm"}
STOP = {"stop", "s", "quit", "q", "halt", "enough"}
_EXTEND = re.compile(r"^\+\s*(\d+)$|^add\s+(\d+)(\s+(more\s+)?attempts?)?$")
_PAIR = re.compile(r"([a-z_.]+)\s*[= :]\s*([^\s,;]+)")
_AND = re.compile(r"\s+and\s+")


@dataclass
class Review:
    kind: Literal["approve", "stop", "extend", "edit", "guidance", "invalid"]
    changes: dict[str, Any] = field(default_factory=dict)
    attempts: int = 0
    text: str = ""
    error: str = ""


def validation_problems(exc: ValidationError) -> str:
    """pydantic's errors as a person reads them: `field: why`, or just why when the rule spans fields."""
    out = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error["loc"])
        why = str(error["msg"]).removeprefix("Value error, ")
        out.append(f"{where}: {why}" if where else why)
    return "; ".join(out)


def _value(raw: str) -> Any:
    low = raw.lower()
    if low in ("true", "on", "yes"):
        return True
    if low in ("false", "off", "no"):
        return False
    if low in ("none", "all", "null"):
        return None
    for cast in (int, float):
        try:
            return cast(raw)
        except ValueError:
            continue
    return raw


def parse_review(text: str, config: TrainConfig | None) -> Review:
    said = text.strip()
    low = said.lower().rstrip(".!")
    if low in APPROVE:
        return Review("approve", text=said)
    if low in STOP:
        return Review("stop", text=said)
    if match := _EXTEND.match(low):
        return Review("extend", attempts=int(match.group(1) or match.group(2)), text=said)
    # "lr 1e-4 and rank 8" is two pairs: the word "and" separates as a comma does.
    listed = _AND.sub(",", low)
    pairs = _PAIR.findall(listed)
    known = [(ALIASES[k], v) for k, v in pairs if k in ALIASES]
    # An edit is a line made of `field value` pairs only; prose that mentions "lr" is guidance.
    leftover = _PAIR.sub("", listed).replace(",", " ").replace(";", " ").strip()
    if known and len(known) == len(pairs) and not leftover:
        changes = {name: _value(raw) for name, raw in known}
        if config is not None:
            try:
                config.with_changes(changes)
            except ValidationError as exc:
                return Review("invalid", changes=changes, text=said, error=validation_problems(exc))
        return Review("edit", changes=changes, text=said)
    return Review("guidance", text=said)
