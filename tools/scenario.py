"""The scenario contract: what a scenario is (the dataset, base model, prompt format, metrics and
default budget of one fine-tuning job) and the data it builds. The crew is generic; everything
domain-specific about a job lives in a :class:`Scenario`. The scenarios themselves (scenarios/)
implement this contract; the agents read it from here, so they never import from scenarios/.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tunecrew.tools.base_models import DEFAULT_BASE_MODEL
from tunecrew.tools.control_tokens import RowsNeutralised, neutralise_rows
from tunecrew.tools.evaluate import Scorer

__all__ = ["Scenario", "ScenarioData"]


@dataclass
class ScenarioData:
    """A scenario's rows. Chat-template control tokens in any of their text (`<|im_end|>\\n<|im_start|>system`
    inside a prompt or an answer) are escaped on construction (tools/control_tokens.py), so neither the
    training text nor a held-out prompt can gain a turn the template did not write; how many rows
    changed is added to `notes`. Escaping is idempotent: rows read back from a run's files are unchanged."""

    train: list[dict]  # {"messages": [user, assistant]} rows
    heldout: list[dict]  # same, plus an optional "group" label for per-group metrics
    heldout_split: str  # the name a score is reported under, e.g. "heldout-v1(seed=0)"
    notes: list[str] = field(default_factory=list)  # what the user should know: source, detected columns, fallbacks
    # Where the training rows came from (the user's file or hub id, or a shipped sample standing in for
    # one); "" for rows the scenario generates. The report names it: runs/<id>/train.jsonl is only a copy.
    source: str = ""

    def __post_init__(self) -> None:
        train, heldout = neutralise_rows(self.train), neutralise_rows(self.heldout)
        self.train, self.heldout = train.rows, heldout.rows
        if train.changed_rows or heldout.changed_rows:
            found = dict(train.found)
            for token, n in heldout.found.items():
                found[token] = found.get(token, 0) + n
            both = RowsNeutralised(rows=[], changed_rows=train.changed_rows + heldout.changed_rows, found=found)
            self.notes.append("data: " + both.note(f" ({train.changed_rows} train, {heldout.changed_rows} held-out)"))


@dataclass
class Scenario:
    name: str
    description: str
    instruction: str = field(metadata={"why": "Appended to the Domain Expert's persona: states the output format."})
    primary_metric: str = "accuracy"  # the metric the target is set on
    target: float = 0.95  # stop once the primary metric reaches this on the held-out split
    gates: dict[str, float] = field(default_factory=dict)  # minimums on other metrics that must hold too
    max_attempts: int = 3
    budget_minutes: float | None = None  # the whole run's default --budget; None: attempts are not sized by time
    max_new_tokens: int = 96  # generation budget per held-out prompt
    rubric_metrics: dict[str, str] = field(default_factory=dict)  # rubric criterion -> metric (offline judge)
    build_data: Callable[[int], ScenarioData] | None = None  # seed -> data
    build_base_model: Callable[[Path, ScenarioData], str] | None = None  # builds `--base-model tiny` from the data
    # A registry name (tools/base_models.py), hub id or path: a pretrained model that resolves offline.
    default_base_model: str = DEFAULT_BASE_MODEL
    scorer: Scorer | None = None
    # A partial reply -> False once no continuation can score above zero: evaluation stops generating
    # that reply there (the scores are the same; the time is not). None: every reply runs to its end.
    reply_viable: Callable[[str], bool] | None = None
    # The Lark grammar of the replies that can score (a callable: a `--data` run knows its contract only
    # once its rows are read). Evaluation and the served agent decode under it (tools/constrained.py), so
    # no reply carries a tool, tag or value shape the contract rules out. None: free decoding.
    reply_grammar: Callable[[], str] | None = None
    domain_hint: str | None = None  # what the scenario author knows the domain to be; evidence only

    # The instruction of a run whose output contract comes with its data (a `--data` task-agent run:
    # its tools are known once its rows are read); called only after `build_data`. None: `instruction`.
    data_instruction: Callable[[], str] | None = None

    def system_prompt(self, persona: str) -> str:
        """The tuned model's system prompt in training, evaluation and serving, and the prompt-only
        baseline's too: a baseline told less than the tuned model would flatter the tuning."""
        instruction = self.data_instruction() if self.data_instruction is not None else self.instruction
        return f"{persona.strip()} {instruction.strip()}".strip()
