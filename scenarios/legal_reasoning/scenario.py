"""Legal reasoning: from a fact pattern, argue issue, rule, application and conclusion, then name
the argument technique. Default data: chemouda/legal_reason (columns ID, Case_Description,
Argument, Technique), or the shipped sample when the hub is out of reach.

Those column names are not ones a layout detector can read as prompt/answer, so the scenario
maps them itself: the case is the prompt, the argument the reasoning, the technique the answer.
"""

from __future__ import annotations

from pathlib import Path

from tunecrew.scenarios.dataset import DatasetBuilder, dataset_scenario

HUB_ID = "chemouda/legal_reason"
SAMPLE = Path(__file__).parent / "data" / "sample.jsonl"
COLUMNS = {"prompt": "Case_Description", "reasoning": "Argument", "response": "Technique"}
INSTRUCTION = ("Reason as issue, rule, application, conclusion inside <think>…</think>, "
               "then name the argument technique.")

SCENARIO = dataset_scenario(
    name="legal-reasoning",
    description="A lawyer's reasoning: from a fact pattern to an IRAC argument and the technique it rests on.",
    instruction=INSTRUCTION,
    builder=DatasetBuilder(name="legal-reasoning", source=HUB_ID, columns=COLUMNS, fallback=SAMPLE),
    target=0.6,  # a real model's bar; the offline tiny model stops on its attempt budget
    max_new_tokens=512,  # an IRAC argument of a paragraph or two, then a short technique name
    domain_hint="legal reasoning",
)
