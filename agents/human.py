"""A person in the group chat: at each Planner decision they see the diagnosis and the proposed
change, and approve, edit, add attempts, stop, or give the Planner guidance. Joining a run to
steer it (`tunecrew chat`), they are asked the same before the next attempt trains."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from autogen_agentchat.agents import BaseChatAgent
from autogen_agentchat.base import Response
from autogen_agentchat.messages import BaseChatMessage, TextMessage
from autogen_core import CancellationToken

from .review import parse_review
from .roles import HUMAN
from .state import RunContext
from .toolkit import Toolkit

HELP = "Enter: approve · stop · +N (more attempts) · edits like 'lr 1e-4, rank 8' · or guidance for the Planner"


class HumanReviewer(BaseChatAgent):
    def __init__(self, toolkit: Toolkit, input_func: Callable[[str], str] = input, llm_planner: bool = False):
        super().__init__(HUMAN, "The person steering the run: reviews each Planner decision.")
        self.toolkit = toolkit
        self.input_func = input_func
        # Free text is guidance an LLM Planner can act on; the offline Planner only understands edits.
        self.llm_planner = llm_planner

    @property
    def produced_message_types(self) -> Sequence[type[BaseChatMessage]]:
        return (TextMessage,)

    def prompt(self) -> str:
        ctx = self.toolkit.ctx
        d, p = ctx.current.diagnosis, ctx.proposed
        assert p is not None
        lines = [f"— attempt {ctx.current.number} of {ctx.spec.max_attempts} —"]
        if d is not None:
            lines.append(f"diagnosis: {d.label}: " + "; ".join(d.evidence[:4]))
        lines.append(f"Planner proposes: {p.action}" + (f" with {p.changes}" if p.changes else "")
                     + f" ({p.reason[:300]})")
        lines.append(HELP)
        return "\n".join(lines) + "\n> "

    async def on_messages(self, messages: Sequence[BaseChatMessage], cancellation_token: CancellationToken) -> Response:
        ctx = self.toolkit.ctx
        loop = asyncio.get_running_loop()
        prompt = self.prompt()
        while True:
            try:
                text = await loop.run_in_executor(None, self.input_func, prompt)
            except EOFError:
                text = ""  # no terminal (input closed): approve, so an unattended run still finishes
            review = parse_review(text, ctx.current.config)
            if review.kind == "guidance" and not self.llm_planner:
                prompt = f"I could not read that as a decision or a config edit. {HELP}\n> "
                continue
            if review.kind == "invalid":
                prompt = f"That edit is out of bounds ({review.error}). {HELP}\n> "
                continue
            outcome = self.toolkit.apply_review(review)
            if outcome.get("retry_prompt"):
                prompt = f"{outcome['retry_prompt']} {HELP}\n> "
                continue
            content = outcome["message"] + (" TERMINATE" if outcome.get("stopped") else "")
            return Response(chat_message=TextMessage(content=content, source=self.name))

    async def on_reset(self, cancellation_token: CancellationToken) -> None:
        return None


BEFORE_HELP = ("Enter: train it · stop · +N (more attempts) · edits like 'lr 1e-4, rank 8' (added to the change) "
               "· or guidance for the Planner")


def review_before_attempt(ctx: RunContext, input_func: Callable[[str], str] = input,
                          llm_planner: bool = False) -> bool:
    """Before a resumed run trains its next attempt: show the last diagnosis and the change the
    attempt will make, and let the person approve, edit, extend, guide or stop. False: stop, and
    nothing trains. Before, `chat --add-attempts 1` trained at once and asked only afterwards."""
    last = ctx.records[-1] if ctx.records else None
    attempt = ctx.current
    lines = [f"— before attempt {attempt.number} of {ctx.spec.max_attempts} trains —"]
    if last is not None:
        score = f"score {last.score:.3f}" if last.score is not None else last.result.status
        label = f"{last.diagnosis.label}: " + "; ".join(last.diagnosis.evidence[:4]) if last.diagnosis else "-"
        lines.append(f"attempt {last.attempt} ({score}) diagnosis: {label}")
    lines.append(f"next attempt changes: {attempt.changes or 'none: the Tuner proposes from the data and memory'}")
    prompt = "\n".join([*lines, BEFORE_HELP]) + "\n> "
    while True:
        try:
            text = input_func(prompt)
        except EOFError:
            text = ""  # no terminal: go on as planned
        review = parse_review(text, last.config if last is not None else None)
        if review.kind == "invalid":
            prompt = f"That edit is out of bounds ({review.error}). {BEFORE_HELP}\n> "
            continue
        if review.kind == "guidance" and not llm_planner:  # the offline Planner would train it unchanged
            prompt = f"I could not read that as a decision or a config edit. {BEFORE_HELP}\n> "
            continue
        if review.kind == "extend":
            ctx.spec = ctx.spec.model_copy(update={"max_attempts": ctx.spec.max_attempts + review.attempts})
            ctx.run.write_spec(ctx.spec)
            prompt = f"Budget is now {ctx.spec.max_attempts} attempts. {BEFORE_HELP}\n> "
            continue
        if review.kind == "stop":
            return False
        if review.kind == "edit":
            attempt.changes = {**attempt.changes, **review.changes}
        elif review.kind == "guidance":
            ctx.guidance.append(review.text)
        if review.kind != "approve":
            attempt.notes.append(f"person, before training: {review.kind} {review.text!r} -> {attempt.changes}")
        return True
