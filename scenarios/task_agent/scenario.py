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
from .contract import DEFAULT_CONTRACT, ONE_LINE_INSTRUCTION, TAGS, could_still_parse
from .data import generate
from .grammar import reply_grammar
from .user_data import with_user_data

# What the base model's baseline is prompted with and the tuned model trained, evaluated and served
# with: the contract with its tools spelled out, so a request in words training never used can still
# be matched to a tool by its name ("boil my task list down" -> summarize_tasks). Measured on
# SmolLM2-135M at LoRA r64, 120 steps of 4 from the base model, seeds 0/1/2 (n = 64 novel prompts
# each; bench/lever_ab.py --instruction, docs/benchmarks.md "Tools in the system prompt"): novel-
# phrasing action EM 0.781 / 0.875 / 0.641 vs 0.703 / 0.734 / 0.609 with the one-line instruction.
# A row costs ~1.6x the tokens (108 vs 45 for the system prompt); training and evaluation took 1.15-
# 1.43x the time. At r16 and 60 steps of 8 the same switch had bought 3 prompts, less than the steps
# it cost then (04f248f), before the LM head stopped scoring the prompt (tools/lm_head.py).
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
    texts += [d.persona for d in DOMAINS] + [CONTRACT, ONE_LINE_INSTRUCTION]
    return str(create_tiny_model(out_dir, texts, TINY_SPEC))


def score(expected: str, got: str) -> SampleScore:
    s = metrics.score_sample(expected, got)
    return SampleScore(values=metrics.values(s), reason=s.reason)


SCENARIO = Scenario(
    name="task-agent",
    description="A task-management agent that answers in a strict <analysis>/<action>/<final> tool-call contract.",
    instruction=CONTRACT,
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
