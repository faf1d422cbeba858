"""Scores for the task-management agent: is the reply on-contract, right tool, right arguments.

The three metrics are nested (args_ok implies tool_ok implies format_ok), so a drop from one to
the next tells the Diagnostician where the model fails: the format, the choice of tool, or the
copying of values. `action_exact_match` (args_ok) is what a user needs: the right tool with every
argument right, or a final answer where one is due; the task agent's target is set on it.

Both replies are read under one :class:`ReplyContract`, so a declared alias (`due_date` for `due`)
is compared under its canonical name and an optional `<analysis>` is no format error.
"""

from __future__ import annotations

from dataclasses import dataclass

from tunecrew.scenarios.task_agent.contract import DEFAULT_CONTRACT, ParsedReply, ReplyContract, parse_reply

METRICS = ("format_compliance", "tool_accuracy", "action_exact_match")


class OffContractReference(ValueError):
    """The reference reply breaks the contract: a dataset problem, not a model error."""


@dataclass(frozen=True)
class SampleScore:
    format_ok: bool
    tool_ok: bool
    args_ok: bool
    reason: str = ""


def score_sample(expected: str, got: str, contract: ReplyContract = DEFAULT_CONTRACT) -> SampleScore:
    """Compare a model reply `got` with the reference reply `expected`, both read under `contract`.

    `reason` is empty for a perfect reply, otherwise one line saying what went wrong. Raises
    OffContractReference when `expected` itself is off-contract: that is a dataset bug, not a model error.
    """
    ref = parse_reply(expected, contract)
    if ref.kind == "invalid":
        raise OffContractReference(f"score_sample: the expected reply is off-contract ({ref.error}): "
                                   f"{expected[:200]!r}")
    out = parse_reply(got, contract)
    if out.kind == "invalid":
        return SampleScore(False, False, False, f"invalid reply: {out.error}")
    if out.kind != ref.kind:
        return SampleScore(True, False, False, f"expected {_what(ref)}, got {_what(out)}")
    if ref.kind == "final":
        return SampleScore(True, True, True, "")
    if out.tool != ref.tool:
        return SampleScore(True, False, False, f"expected tool {ref.tool}, got {out.tool}")
    if out.args != ref.args:
        return SampleScore(True, True, False, "args differ: " + _args_diff(ref.args, out.args))
    return SampleScore(True, True, True, "")


def values(score: SampleScore) -> dict[str, float]:
    """The sample's metrics by name, as the evaluation averages them."""
    return {"format_compliance": float(score.format_ok), "tool_accuracy": float(score.tool_ok),
            "action_exact_match": float(score.args_ok)}


def _what(parsed: ParsedReply) -> str:
    return f"action {parsed.tool}" if parsed.kind == "action" else "final answer"


def _args_diff(expected: dict[str, str], got: dict[str, str]) -> str:
    parts = []
    for name in [*expected, *(k for k in got if k not in expected)]:
        if name not in got:
            parts.append(f"missing {name}={expected[name]!r}")
        elif name not in expected:
            parts.append(f"extra {name}={got[name]!r}")
        elif expected[name] != got[name]:
            parts.append(f"{name}: expected {expected[name]!r}, got {got[name]!r}")
    return "; ".join(parts)
