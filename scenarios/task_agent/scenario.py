"""The offline task-agent scenario: a model learns the strict `<analysis>/<action>/<final>` contract
of a task-management agent (add, list, summarize, complete tasks).

Everything is local: the data is generated (fixed seed), the base model is SmolLM2-135M-Instruct
from the model registry (or, with `--base-model tiny`, a random-init Llama built from the data's
own text), and scoring parses replies with the same parser the agent runtime uses.

`--data FILE` trains and scores another project's rows instead, under their declared (`--contract`)
or inferred reply contract (user_data.py).
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

from tunecrew.tools.domain import DOMAINS
from tunecrew.tools.evaluate import SampleScore
from tunecrew.tools.scenario import Scenario, ScenarioData
from tunecrew.tools.tinymodel import TinyModelSpec, create_tiny_model

from . import metrics
from .contract import DEFAULT_CONTRACT, TAGS, could_still_parse
from .data import generate
from .grammar import reply_grammar
from .user_data import with_user_data

# What the tuned model is trained and served with: one line, because the system prompt is in every
# training row and the model learns the contract from the replies. Measured on SmolLM2-135M (seed 0,
# n=64 per group, 60 steps of 8): novel-phrasing action exact match 0.531 with this line vs 0.578
# with CONTRACT below, but each step costs ~1.7x more with CONTRACT (161 vs ~75 tokens a row), so
# under a time budget this line trains about twice the steps.
INSTRUCTION = "Answer <analysis>…</analysis> then <action>tool(…)</action> or <final>…</final>."
# The contract spelled out, for the prompt-only baseline: the untuned model has to be told the tools.
CONTRACT = ('Reply as <analysis>one sentence</analysis> then <action>TOOL(arg="value", ...)</action> or '
            '<final>short reply</final>. Tools: add_task(title, due="YYYY-MM-DD", priority="low|medium|high"), '
            'list_tasks(status="open|done|all"), summarize_tasks(), complete_task(title), delete_task(title).')
TINY_SPEC = TinyModelSpec(added_tokens=tuple(t for name in TAGS for t in (f"<{name}>", f"</{name}>")))


# 960 rows, not 480: time goes with optimizer steps, not rows, and at the same steps more varied
# rows generalize better (measured: 150 steps, trained-phrasing tool accuracy 92.2% -> 93.8%,
# novel phrasings 51.6% -> 59.4%). 128 held-out prompts halve the noise of a 32-prompt group.
TRAIN_ROWS, HELDOUT_ROWS = 960, 128


def build_data(seed: int) -> ScenarioData:
    data = generate(seed=seed, n_train=TRAIN_ROWS, n_heldout=HELDOUT_ROWS)
    return ScenarioData(train=data.train, heldout=data.heldout, heldout_split=f"task-agent-heldout(seed={seed})")


class GeneratedData:
    """The scenario's `build_data`: the generated rows, or with `--data` a user's file (user_data.py)."""

    def __call__(self, seed: int) -> ScenarioData:
        return build_data(seed)

    def with_user_data(self, scenario: Scenario, *, data: str | None, columns: dict[str, str] | None,
                       heldout: float | None, contract: str | None, heldout_data: str | None) -> Scenario:
        return with_user_data(scenario, data=data, columns=columns, heldout=heldout, contract=contract,
                              heldout_data=heldout_data)


def build_base_model(out_dir: Path, data: ScenarioData) -> str:
    """A tiny Llama whose tokenizer is trained on this data, the personas and the instruction, so
    that the system prompt and the contract cost few tokens."""
    texts = [m["content"] for row in data.train for m in row["messages"]]
    texts += [d.persona for d in DOMAINS] + [INSTRUCTION]
    return str(create_tiny_model(out_dir, texts, TINY_SPEC))


def score(expected: str, got: str) -> SampleScore:
    s = metrics.score_sample(expected, got)
    return SampleScore(values=metrics.values(s), reason=s.reason)


SCENARIO = Scenario(
    name="task-agent",
    description="A task-management agent that answers in a strict <analysis>/<action>/<final> tool-call contract.",
    instruction=INSTRUCTION,
    baseline_instruction=CONTRACT,
    # What a user needs: the right action (tool and every argument, or a final reply where one is
    # due) for requests phrased in ways training never showed, with titles it never saw.
    primary_metric="novel_phrasing/action_exact_match",
    target=0.90,
    gates={"format_compliance": 0.98},  # every held-out reply, both groups, keeps the contract
    max_attempts=3,
    budget_minutes=10,
    # Room for the longest reference reply: 68 SmolLM2 tokens on seeds 0-4 (an add_task with a title, a
    # due date and a priority). At 64, 1-5 held-out rows a seed could not be answered in full.
    max_new_tokens=72,
    rubric_metrics={"accuracy": "action_exact_match", "reasoning": "tool_accuracy",
                    "completeness": "format_compliance", "clarity": "format_compliance"},
    build_data=GeneratedData(),
    build_base_model=build_base_model,
    scorer=score,
    # The untuned model answers in prose: its 128 replies ran to the 64-token limit (62-98 s of each
    # run); stopped at the first word that breaks the contract, they score the same.
    reply_viable=could_still_parse,
    reply_grammar=partial(reply_grammar, DEFAULT_CONTRACT),
    domain_hint="task-management agent",
)
