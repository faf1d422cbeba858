"""Turn one model reply into at most one tool call on the task store.

The reply is untrusted text. It goes through :func:`contract.parse_reply` (a hand tokenizer that
never evaluates anything), and a valid action is dispatched through :data:`DISPATCH`, a fixed
table from whitelisted tool name to a typed :class:`TaskStore` method: no ``eval``, no ``getattr``
on model text, no argument that the contract did not validate. What comes back is always an
:class:`ExecutionResult`, never an exception:

- ``kind="action"``: the tool ran; ``result`` is its JSON output with ``ok: true``, or ``ok: false``
  and ``error`` when the store refused (no such task, duplicate, ambiguous title).
- ``kind="final"``: an answer to the user, nothing executed; ``final`` holds it.
- ``kind="error"``: the reply breaks the contract; nothing executed; ``error`` says what is wrong
  (the parser's reason).
- ``kind="confirm"``: a write (add, complete, delete) whose values the user's message does not
  contain, when the caller passes that message: nothing executed; ``final`` asks the user to
  confirm by naming the values. A small model invents plausible titles ("buy coffee beans" for
  "water the plants"); a write must be grounded in what the user said, a read need not be.
"""

from __future__ import annotations

import datetime as _dt
import re
import unicodedata
from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from .contract import DEFAULT_CONTRACT, TOOLS, ReplyContract, parse_reply
from .store import AmbiguousTask, TaskError, TaskStore


class ExecutionResult(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["action", "final", "error", "confirm"]
    analysis: str | None = None
    tool: str | None = None
    args: dict[str, str] = {}
    result: dict[str, Any] | None = None
    final: str | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def action(self) -> dict[str, Any] | None:
        """``{"tool", "args"}`` of an action reply, else None."""
        return {"tool": self.tool, "args": dict(self.args)} if self.kind == "action" else None

    @property
    def proposed(self) -> dict[str, Any] | None:
        """``{"tool", "args"}`` of a write held back for confirmation, else None."""
        return {"tool": self.tool, "args": dict(self.args)} if self.kind == "confirm" else None


Handler = Callable[[TaskStore, str, dict[str, str], "_dt.date | None"], dict[str, Any]]

DISPATCH: dict[str, Handler] = {
    "add_task": lambda s, u, a, _t: {"task": s.add(u, a["title"], due=a.get("due"), priority=a.get("priority"))},
    "list_tasks": lambda s, u, a, _t: {"tasks": s.list(u, a.get("status", "open"))},
    "summarize_tasks": lambda s, u, a, t: {"summary": s.summarize(u, today=t)},
    "complete_task": lambda s, u, a, _t: {"task": s.complete(u, a["title"])},
    "delete_task": lambda s, u, a, _t: {"deleted": s.delete(u, a["title"])},
}
"""Whitelisted tool -> handler. Kept equal to contract.TOOLS (checked at import)."""

if set(DISPATCH) != set(TOOLS):  # pragma: no cover - a programming error, caught by any import
    raise RuntimeError(f"executor.DISPATCH {sorted(DISPATCH)} differs from contract.TOOLS {sorted(TOOLS)}")


WRITE_TOOLS: tuple[str, ...] = ("add_task", "complete_task", "delete_task")
"""Tools that change the store: their values must come from the user's message (see module doc)."""


def execute(reply_text: str, store: TaskStore, user: str, *, today: _dt.date | None = None,
            message: str | None = None, contract: ReplyContract = DEFAULT_CONTRACT) -> ExecutionResult:
    """Parse `reply_text` and, if it is a valid action, run it for `user`. Never raises for any
    reply text; a bad `user` id is an error result too. With the user's `message`, a write whose
    values it does not contain is not run: a ``confirm`` result asks for them instead. `contract`: the
    run's (aliases such as due_date come back as the canonical argument the tools take)."""
    parsed = parse_reply(reply_text, contract)
    if parsed.kind == "invalid":
        return ExecutionResult(kind="error", error=f"invalid reply: {parsed.error}")
    if parsed.kind == "final":
        return ExecutionResult(kind="final", analysis=parsed.analysis, final=parsed.final)
    assert parsed.tool is not None
    handler = DISPATCH.get(parsed.tool)
    if handler is None:  # unreachable while DISPATCH == TOOLS; refuse rather than guess
        return ExecutionResult(kind="error", analysis=parsed.analysis, error=f"tool {parsed.tool!r} has no handler")
    base = dict(kind="action", analysis=parsed.analysis, tool=parsed.tool, args=dict(parsed.args))
    if message is not None and parsed.tool in WRITE_TOOLS:
        invented = ungrounded(parsed.args, message)
        if invented:
            return ExecutionResult(**{**base, "kind": "confirm"}, final=confirmation(parsed.tool, invented))
    try:
        output = handler(store, user, parsed.args, today)
    except AmbiguousTask as exc:
        return ExecutionResult(**base, result={"ok": False, "error": str(exc), "candidates": exc.candidates},
                               error=str(exc))
    except TaskError as exc:
        return ExecutionResult(**base, result={"ok": False, "error": str(exc)}, error=str(exc))
    return ExecutionResult(**base, result={"ok": True, **output})


# --------------------------------------------------------------------------- grounding

_MONTHS = {m: i for i, m in enumerate(("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct",
                                       "nov", "dec"), start=1)}
_MONTH = r"(jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\.?"
_DAY = r"(\d{1,2})(?:st|nd|rd|th)?"
_YMD = re.compile(r"\b(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})\b")
_NUMERIC_DMY = re.compile(r"\b(\d{1,2})[-/.](\d{1,2})[-/.](\d{4})\b")  # 12/01/2026: either order counts
_MONTH_DAY_YEAR = re.compile(rf"\b{_MONTH}\s+{_DAY},?\s+(\d{{4}})\b")
_DAY_MONTH_YEAR = re.compile(rf"\b{_DAY}\s+(?:of\s+)?{_MONTH},?\s+(\d{{4}})\b")


def _words(text: str) -> str:
    """Text compared word by word: NFKC, case-folded, every run of non-alphanumerics one space."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    return " " + " ".join(re.sub(r"[\W_]+", " ", folded).split()) + " "


def _mentions(value: str, message: str) -> bool:
    """`value` occurs in `message` as whole words, ignoring case, spacing and punctuation."""
    words = _words(value)
    if not words.strip():  # a value of punctuation only: compare it as it is
        return value.strip().casefold() in message.casefold()
    return words in _words(message)


def dates_in(message: str) -> set[str]:
    """ISO dates written in `message`: 2026-12-01, 2026/12/01, 12/01/2026 (both readings),
    December 1, 2026, Dec 1st 2026, 1 December 2026."""
    text = unicodedata.normalize("NFKC", message).casefold()
    found: list[tuple[str, str, str]] = [(m[1], m[2], m[3]) for m in _YMD.finditer(text)]
    for a, b, year in _NUMERIC_DMY.findall(text):
        found += [(year, a, b), (year, b, a)]
    found += [(y, str(_MONTHS[mon]), d) for mon, d, y in _MONTH_DAY_YEAR.findall(text)]
    found += [(y, str(_MONTHS[mon]), d) for d, mon, y in _DAY_MONTH_YEAR.findall(text)]
    dates = set()
    for year, month, day in found:
        try:
            dates.add(_dt.date(int(year), int(month), int(day)).isoformat())
        except ValueError:
            continue
    return dates


def ungrounded(args: dict[str, str], message: str) -> dict[str, str]:
    """The values of a write call that `message` does not contain (a due date in any form
    :func:`dates_in` reads; a text value as whole words, case, spacing and punctuation aside)."""
    missing = {}
    for name, value in args.items():
        grounded = value in dates_in(message) if name == "due" else _mentions(value, message)
        if not grounded:
            missing[name] = value
    return missing


_VERBS = {"add_task": "add", "complete_task": "complete", "delete_task": "delete"}


def confirmation(tool: str, invented: dict[str, str]) -> str:
    """The question a held-back write gets: what was not in the message, and how to confirm."""
    values = " and ".join(f"{name} {value!r}" for name, value in invented.items())
    return (f"I did not {_VERBS.get(tool, tool)} anything: your message does not mention {values}. "
            "If that is what you mean, say it again with the exact wording.")


def chat_payload(reply: str, execution: ExecutionResult) -> dict[str, Any]:
    """What a client sees: the raw `reply`, its `kind`, the `action` ({tool, args} or null; only what
    ran) and the `result` (the tool's output, ``{"ok": true, "final": …}``, ``{"ok": false, "error":
    …}``, or ``{"ok": false, "confirm": question, "proposed": {tool, args}}`` for a held-back write)."""
    if execution.kind == "action":
        result = execution.result or {}
    elif execution.kind == "final":
        result = {"ok": True, "final": execution.final}
    elif execution.kind == "confirm":
        result = {"ok": False, "confirm": execution.final, "proposed": execution.proposed}
    else:
        result = {"ok": False, "error": execution.error}
    return {"reply": reply, "kind": execution.kind, "action": execution.action, "result": result}
