"""Medical reasoning: from a clinical vignette, reason step by step to a diagnosis, investigation or
next step. Default data: FreedomIntelligence/medical-o1-reasoning-SFT (config "en"; columns
Question, Complex_CoT, Response), or the shipped sample when the hub is out of reach.

The reference answer is the Response; the model's final answer is what follows its `</think>`.
"""

from __future__ import annotations

from pathlib import Path

from tunecrew.scenarios.dataset import DatasetBuilder, dataset_scenario

HUB_ID, HUB_CONFIG = "FreedomIntelligence/medical-o1-reasoning-SFT", "en"
SAMPLE = Path(__file__).parent / "data" / "sample.jsonl"
INSTRUCTION = "Reason step by step inside <think>…</think>, then give the final answer in one sentence."

SCENARIO = dataset_scenario(
    name="medical-reasoning",
    description="A clinician's reasoning: from a vignette to the diagnosis, the confirming test or the next step.",
    instruction=INSTRUCTION,
    # Columns are detected (Question -> prompt, Complex_CoT -> reasoning, Response -> response).
    builder=DatasetBuilder(name="medical-reasoning", source=HUB_ID, config=HUB_CONFIG, fallback=SAMPLE),
    # An honest bar for a real model: answer-token F1 of 0.6 is a mostly right final answer. The
    # offline tiny model will not reach it; the crew stops on its attempt budget.
    target=0.6,
    # The hub's Complex_CoT runs to several hundred words before the answer: a shorter budget
    # would cut most replies before `</think>` and score the reasoning, not the answer.
    max_new_tokens=1024,
    domain_hint="medical reasoning",
)
