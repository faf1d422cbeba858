"""Your own data: `tunecrew run --data FILE_OR_HUB_ID [--columns ...]` without a scenario name.

Nothing about the domain is assumed: the Domain Expert reads it from the data. Replies are scored
on their final answer (the text after `</think>`, an "Answer:" line, or the whole reply).
"""

from __future__ import annotations

from tunecrew.scenarios.dataset import DatasetBuilder, dataset_scenario

INSTRUCTION = "Answer as in the examples, ending with the final answer."

SCENARIO = dataset_scenario(
    name="custom",
    description="Your own dataset, scored on the final answer of each held-out reply.",
    instruction=INSTRUCTION,
    builder=DatasetBuilder(name="custom", source=None),  # --data fills it in
    target=0.6,
    max_new_tokens=512,
    domain_hint=None,
)
