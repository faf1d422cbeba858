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
"""

from __future__ import annotations

import datetime as _dt
from typing import Any, Callable, Literal

from pydantic import BaseModel, ConfigDict

from .contract import TOOLS, parse_reply
from .store import AmbiguousTask, TaskError, TaskStore


class ExecutionResult(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["action", "final", "error"]
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


def execute(reply_text: str, store: TaskStore, user: str, *, today: _dt.date | None = None) -> ExecutionResult:
    """Parse `reply_text` and, if it is a valid action, run it for `user`. Never raises for any
    reply text; a bad `user` id is an error result too."""
    parsed = parse_reply(reply_text)
    if parsed.kind == "invalid":
        return ExecutionResult(kind="error", error=f"invalid reply: {parsed.error}")
    if parsed.kind == "final":
        return ExecutionResult(kind="final", analysis=parsed.analysis, final=parsed.final)
    assert parsed.tool is not None
    handler = DISPATCH.get(parsed.tool)
    if handler is None:  # unreachable while DISPATCH == TOOLS; refuse rather than guess
        return ExecutionResult(kind="error", analysis=parsed.analysis, error=f"tool {parsed.tool!r} has no handler")
    base = dict(kind="action", analysis=parsed.analysis, tool=parsed.tool, args=dict(parsed.args))
    try:
        output = handler(store, user, parsed.args, today)
    except AmbiguousTask as exc:
        return ExecutionResult(**base, result={"ok": False, "error": str(exc), "candidates": exc.candidates},
                               error=str(exc))
    except TaskError as exc:
        return ExecutionResult(**base, result={"ok": False, "error": str(exc)}, error=str(exc))
    return ExecutionResult(**base, result={"ok": True, **output})


def chat_payload(reply: str, execution: ExecutionResult) -> dict[str, Any]:
    """What a client sees: the raw `reply`, its `kind`, the `action` ({tool, args} or null) and the
    `result` (the tool's output, ``{"ok": true, "final": …}``, or ``{"ok": false, "error": …}``)."""
    if execution.kind == "action":
        result = execution.result or {}
    elif execution.kind == "final":
        result = {"ok": True, "final": execution.final}
    else:
        result = {"ok": False, "error": execution.error}
    return {"reply": reply, "kind": execution.kind, "action": execution.action, "result": result}
