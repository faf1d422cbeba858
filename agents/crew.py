"""The team factory: four agents in a SelectorGroupChat, each with its own tools and prompt.

Speaker order follows the run's state, not the last message's wording: who speaks next depends on
what exists (a domain card, a trained attempt, a report, a decision), so a chatty LLM cannot skip
the Judge or train twice. The Planner ends the run by saying TERMINATE after `decide(stop)`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from autogen_agentchat.agents import AssistantAgent
from autogen_agentchat.base import TerminationCondition
from autogen_agentchat.conditions import MaxMessageTermination, TextMentionTermination
from autogen_agentchat.messages import BaseAgentEvent, BaseChatMessage
from autogen_agentchat.teams import SelectorGroupChat
from autogen_core.models import ChatCompletionClient

from .human import HumanReviewer
from .roles import CREW, DOMAIN_EXPERT, HUMAN, JUDGE, PLANNER, ROLES, TUNER
from .state import RunContext
from .toolkit import Toolkit

__all__ = ["build_team", "next_speaker"]

TOOL_STEPS = 8  # tool calls an agent may chain in one turn (AutoGen's default of 1 is too few)
MESSAGES_PER_ATTEMPT = 4


def next_speaker(ctx: RunContext) -> Callable[[Sequence[BaseAgentEvent | BaseChatMessage]], str | None]:
    """Selector: the next role from the run's state after the last agent's turn."""

    def select(messages: Sequence[BaseAgentEvent | BaseChatMessage]) -> str | None:
        last = _last_speaker(messages)
        if ctx.proposed is not None:
            return HUMAN
        # A role that ended its turn without its artifact could not do its job: the Planner closes.
        if ctx.domain is None:
            return PLANNER if last == DOMAIN_EXPERT else DOMAIN_EXPERT
        attempt = ctx.current
        if attempt.result is None:
            return PLANNER if last == TUNER else TUNER
        if attempt.result.status == "ok" and attempt.report is None and last != JUDGE:
            return JUDGE
        return PLANNER

    return select


def _last_speaker(messages: Sequence[BaseAgentEvent | BaseChatMessage]) -> str | None:
    for message in reversed(messages):
        if isinstance(message, BaseChatMessage) and message.source in (*ROLES, HUMAN):
            return message.source
    return None


def build_team(
    ctx: RunContext,
    clients: dict[str, ChatCompletionClient],
    selector_client: ChatCompletionClient,
    extra_termination: TerminationCondition | None = None,
    input_func: Callable[[str], str] | None = None,
) -> SelectorGroupChat:
    """`clients` maps each role to its model client, so a strong Planner can sit beside a cheap Judge.
    With `ctx.wiring.interactive`, a person (`input_func`, default: the terminal) reviews each decision."""
    toolkit = Toolkit(ctx)
    agents: list[Any] = [
        AssistantAgent(
            name=role.name,
            model_client=clients[role.name],
            tools=list(toolkit.tools_for(role.name)),
            system_message=role.system_prompt,
            description=role.description,
            max_tool_iterations=TOOL_STEPS,
            reflect_on_tool_use=True,
        )
        for role in CREW
    ]
    if ctx.wiring.interactive:
        from .offline import OfflinePolicyClient

        llm_planner = not isinstance(clients[PLANNER], OfflinePolicyClient)
        agents.append(HumanReviewer(toolkit, input_func or input, llm_planner=llm_planner))
    termination: TerminationCondition = (TextMentionTermination("TERMINATE", sources=[PLANNER, HUMAN])
                                         | MaxMessageTermination(2 + ctx.spec.max_attempts * MESSAGES_PER_ATTEMPT * 3))
    if extra_termination is not None:
        termination = termination | extra_termination
    return SelectorGroupChat(
        agents,
        model_client=selector_client,
        selector_func=next_speaker(ctx),
        termination_condition=termination,
        allow_repeated_speaker=True,
    )
