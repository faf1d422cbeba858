"""An OpenAI-compatible chat-completions server on 127.0.0.1 for tests, with faults on demand.

Its "model" is tunecrew's offline policy: each request's messages are turned back into AutoGen
messages and answered with the policy's next tool call, so the crew runs end to end through the
real `OpenAIChatCompletionClient` and HTTP. Faults are injected per request: status codes, delays,
malformed tool-call JSON, or changed arguments (e.g. learning_rate=10).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from autogen_core import FunctionCall
from autogen_core.models import (
    AssistantMessage,
    FunctionExecutionResult,
    FunctionExecutionResultMessage,
    SystemMessage,
    UserMessage,
)

from tunecrew.agents.offline import OfflinePolicyClient

ROLE_BY_PROMPT = {"Domain Expert": "DomainExpert", "Tuner": "Tuner", "Judge": "Judge", "Planner": "Planner"}


@dataclass
class Fault:
    status: int | None = None  # answer with this HTTP status instead
    delay: float = 0.0  # sleep before answering (a client timeout)
    malformed_args: bool = False  # tool-call arguments that are not JSON
    override_args: dict[str, Any] = field(default_factory=dict)  # merged into the tool call's arguments


# (request number from 1, role, tool the policy is about to call or None) -> a fault, or None
FaultPlan = Callable[[int, str, str | None], Fault | None]


@dataclass
class Seen:
    number: int
    role: str
    tool: str | None
    fault: Fault | None
    headers: dict[str, str]
    body: dict[str, Any]


def _to_autogen(messages: list[dict[str, Any]]) -> list:
    out = []
    for m in messages:
        content = m.get("content")
        if isinstance(content, list):  # content parts
            content = "".join(part.get("text", "") for part in content)
        if m["role"] == "system":
            out.append(SystemMessage(content=content or ""))
        elif m["role"] == "user":
            out.append(UserMessage(content=content or "", source=m.get("name") or "user"))
        elif m["role"] == "assistant" and m.get("tool_calls"):
            calls = [FunctionCall(id=c["id"], name=c["function"]["name"], arguments=c["function"]["arguments"])
                     for c in m["tool_calls"]]
            out.append(AssistantMessage(content=calls, source="assistant"))
        elif m["role"] == "assistant":
            out.append(AssistantMessage(content=content or "", source="assistant"))
        elif m["role"] == "tool":
            is_error = (content or "").startswith("Error:")
            out.append(FunctionExecutionResultMessage(content=[FunctionExecutionResult(
                content=content or "", name="", call_id=m["tool_call_id"], is_error=is_error)]))
    return out


def _role(messages: list[dict[str, Any]]) -> str:
    system = next((m.get("content") or "" for m in messages if m["role"] == "system"), "")
    for phrase, role in ROLE_BY_PROMPT.items():
        if f"You are the {phrase}" in str(system):
            return role
    return "selector"


class LoopbackServer:
    """An HTTP server on 127.0.0.1 (a free port) served from a thread while the `with` block runs.
    Subclasses provide `_handler()`."""

    def _listen(self) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        raise NotImplementedError

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._server.shutdown()
        self._server.server_close()


class ScriptedLLM(LoopbackServer):
    def __init__(self, faults: FaultPlan | None = None):
        self.faults = faults or (lambda n, role, tool: None)
        self.seen: list[Seen] = []
        self._lock = threading.Lock()
        self._listen()

    def answer(self, body: dict[str, Any], headers: dict[str, str]) -> tuple[int, dict[str, Any], float]:
        messages = body["messages"]
        if str(messages[0].get("content", "")).startswith("You rewrite requests"):  # data.synthetic_source=llm
            return self._rewrites(body, headers)
        role = _role(messages)
        tools = [{"name": t["function"]["name"], "parameters": t["function"].get("parameters", {})}
                 for t in body.get("tools", [])]
        result = asyncio.run(OfflinePolicyClient(role).create(_to_autogen(messages), tools=tools))
        tool = result.content[0].name if isinstance(result.content, list) else None
        with self._lock:
            number = len(self.seen) + 1
            fault = self.faults(number, role, tool)
            self.seen.append(Seen(number, role, tool, fault, headers, body))
        delay = fault.delay if fault else 0.0
        if fault and fault.status:
            return fault.status, {"error": {"message": f"injected {fault.status}", "type": "server_error"}}, delay
        if tool is None:
            message: dict[str, Any] = {"role": "assistant", "content": result.content}
            finish = "stop"
        else:
            call = result.content[0]
            arguments = call.arguments
            if fault and fault.override_args:
                arguments = json.dumps({**json.loads(arguments), **fault.override_args})
            if fault and fault.malformed_args:
                arguments = arguments[: len(arguments) // 2] + "}}{"
            message = {"role": "assistant", "content": None, "tool_calls": [
                {"id": f"call_{number}", "type": "function", "function": {"name": call.name, "arguments": arguments}}]}
            finish = "tool_calls"
        return 200, {
            "id": f"chatcmpl-{number}", "object": "chat.completion", "created": int(time.time()),
            "model": body.get("model", "scripted"),
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
        }, delay

    def _rewrites(self, body: dict[str, Any], headers: dict[str, str]) -> tuple[int, dict[str, Any], float]:
        """Two rewrites that keep the request's words (so its values), numbered as LLMs often do."""
        request = str(body["messages"][-1]["content"])
        with self._lock:
            number = len(self.seen) + 1
            self.seen.append(Seen(number, "rephraser", None, None, headers, body))
        message = {"role": "assistant", "content": f"1. could you {request}\n2. {request}, when you can"}
        return 200, {"id": f"chatcmpl-{number}", "object": "chat.completion", "created": int(time.time()),
                     "model": body.get("model", "scripted"),
                     "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
                     "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}}, 0.0

    def _handler(self):
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # http.server's naming
                length = int(self.headers.get("content-length", 0))
                body = json.loads(self.rfile.read(length))
                status, payload, delay = outer.answer(body, dict(self.headers))
                if delay:
                    time.sleep(delay)
                data = json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout): that is the point of a delay fault

            def log_message(self, *args: Any) -> None:
                pass

        return Handler
