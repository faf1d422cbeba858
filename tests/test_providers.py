"""LLM providers through the real OpenAI client against a local OpenAI-compatible server: rate
limits, server errors, timeouts, malformed tool calls and out-of-range proposals, all survived."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace

import pytest
from autogen_core import FunctionCall
from autogen_core.models import (
    AssistantMessage,
    FunctionExecutionResult,
    FunctionExecutionResultMessage,
    SystemMessage,
    UserMessage,
)

from tunecrew.agents.models import ProviderError, ProviderSpec, make_client, role_specs
from tunecrew.agents.roles import ROLES
from tunecrew.app.runner import RunOptions, make_rephraser, run
from tunecrew.memory.ledger import Ledger
from tunecrew.scenarios.task_agent.scenario import SCENARIO

from factories import small_task_agent_data
from fake_llm import Fault, ScriptedLLM, Seen

SECRET = "sk-test-SECRET-4242"


class Faults:
    """Each fault once, on the first request it fits; the Planner's first step fails for good."""

    def __init__(self) -> None:
        self.done: set[str] = set()

    def once(self, key: str) -> bool:
        if key in self.done:
            return False
        self.done.add(key)
        return True

    def __call__(self, n: int, role: str, tool: str | None) -> Fault | None:
        if n == 2 and self.once("429"):
            return Fault(status=429)
        if role == "Tuner" and tool == "propose_config" and self.once("lr10"):
            return Fault(override_args={"learning_rate": 10})
        if role == "Tuner" and tool == "train" and self.once("malformed"):
            return Fault(malformed_args=True)
        if role == "Judge" and self.once("timeout"):
            return Fault(delay=4.0)
        if role == "Judge" and tool == "score_rubric" and self.once("500"):
            return Fault(status=500)
        if role == "Planner" and tool == "diagnose":
            return Fault(status=503)  # every try: the client gives up and the offline policy answers
        return None


@pytest.mark.slow
def test_crew_runs_through_the_openai_client_and_survives_faults(tmp_path, tiny_model, tunecrew_home):
    faults = Faults()
    with ScriptedLLM(faults) as llm:
        spec = ProviderSpec(provider="openai", model="scripted", base_url=llm.base_url, api_key=SECRET,
                            timeout=2.0, max_retries=2)
        options = RunOptions(scenario=replace(SCENARIO, build_data=small_task_agent_data, max_attempts=1),
                             base_model=str(tiny_model), provider=spec, runs_dir=tmp_path / "runs",
                             memory=str(tmp_path / "memory"), quiet=True, attempt_seconds=6, run_id="llm")
        outcome = run(options)
        seen = list(llm.seen)

    record = Ledger(outcome.run_dir / "ledger.jsonl").read()[0]
    assert record.result.status == "ok" and record.eval is not None and record.decision.action == "stop"
    assert {s.role for s in seen} >= set(ROLES)
    assert all({k.lower(): v for k, v in s.headers.items()}["authorization"] == f"Bearer {SECRET}" for s in seen)

    events = [json.loads(line) for line in (outcome.run_dir / "transcript.jsonl").read_text().splitlines()]
    results = [r for e in events if e["type"] == "ToolCallExecutionEvent" for r in e["content"]]

    # 429, 500 and a timeout: the client retried the same request and the run went on.
    for kind in (lambda s: s.fault and s.fault.status == 429, lambda s: s.fault and s.fault.status == 500,
                 lambda s: s.fault and s.fault.delay):
        hit = next(s for s in seen if kind(s))
        assert any(s.number > hit.number and s.role == hit.role and s.tool == hit.tool for s in seen)

    # learning_rate=10 was refused with the reason, then a valid config was proposed and trained.
    proposals = [r for r in results if r["name"] == "propose_config"]
    first, last = json.loads(proposals[0]["content"]), json.loads(proposals[-1]["content"])
    assert first["accepted"] is False and any(e.startswith("learning_rate=10") for e in first["errors"])
    assert last["accepted"] is True and record.config.learning_rate <= 5e-2

    # Malformed tool-call JSON became an error result the agent saw, and the call was made again.
    train_results = [r for r in results if r["name"] == "train"]
    assert train_results[0]["is_error"] and not train_results[-1]["is_error"]

    # The Planner's LLM never answered: the offline policy stood in, and the attempt says so.
    assert any("Planner: LLM call failed" in note for note in record.notes)
    assert json.loads((outcome.run_dir / "run.json").read_text())["provider"] == "openai:scripted"
    # ... and the steps are counted: the report's provider line says how many the policy answered.
    fell_back = sum("offline policy answered" in note for note in record.notes)
    assert record.provider == "openai:scripted" and record.fallback_steps == fell_back >= 1
    assert record.llm_steps >= 5  # the other roles' LLM answered their steps
    report = (outcome.run_dir / "report.md").read_text()
    steps = record.llm_steps + record.fallback_steps
    assert f"openai:scripted: {fell_back} of {steps} LLM steps answered by the offline policy" in report

    # The key is nowhere on disk: run files, report, memory.
    for root in (outcome.run_dir, tmp_path / "memory"):
        for path in root.rglob("*"):
            if path.is_file() and path.stat().st_size < 50_000_000:
                assert SECRET.encode() not in path.read_bytes(), path


def test_the_domain_experts_llm_rewrites_requests_and_an_offline_run_has_none():
    from tunecrew.scenarios.task_agent.data import generate
    from tunecrew.tools.recipes import llm_paraphrase_rows, reply_of, user_text

    rows = generate(seed=0, n_train=8, n_heldout=2).train
    assert make_rephraser(RunOptions(scenario=SCENARIO)) is None
    # Only the Domain Expert's provider counts: an LLM for the other roles writes no data.
    offline_expert = RunOptions(scenario=SCENARIO, agents=["DomainExpert=offline"],
                                provider=ProviderSpec(provider="openai", model="m", api_key=SECRET))
    assert make_rephraser(offline_expert) is None
    with ScriptedLLM() as llm:
        spec = ProviderSpec(provider="openai", model="scripted", base_url=llm.base_url, api_key=SECRET, timeout=5.0)
        client = make_rephraser(RunOptions(scenario=SCENARIO, provider=spec))
        assert client is not None
        out = asyncio.run(llm_paraphrase_rows(client, rows, n=6, per_call=2))
        asyncio.run(client.close())
    assert len(out) == 6 and [s.role for s in llm.seen] == ["rephraser"] * 3
    rewrites = {(reply_of(r), text) for r in rows
                for text in (f"could you {user_text(r)}", f"{user_text(r)}, when you can")}
    assert {(reply_of(r), user_text(r)) for r in out} <= rewrites  # each rewrite keeps its own row's reply


class Steps:
    """What the runner's ProviderLog sees: each step, answered or fallen back, and a strict failure."""

    def __init__(self) -> None:
        self.answers, self.notes, self.errors = 0, [], []

    def answered(self) -> None:
        self.answers += 1

    def fell_back(self, note: str) -> None:
        self.notes.append(note)

    def failed(self, error: ProviderError) -> None:
        self.errors.append(error)


def _one_step(spec: ProviderSpec, steps: Steps):
    from autogen_core.tools import FunctionTool

    client = make_client(spec, "Planner", watch=steps)
    tools = [FunctionTool(lambda: "", name=n, description=n) for n in ("diagnose", "decide")]
    return asyncio.run(client.create([UserMessage(content="go", source="user")], tools=tools))


def test_a_failing_llm_step_is_answered_by_the_offline_policy():
    steps = Steps()
    with ScriptedLLM(lambda n, role, tool: Fault(status=500)) as llm:
        result = _one_step(ProviderSpec(provider="openai", model="m", base_url=llm.base_url, max_retries=0), steps)
    assert result.content[0].name == "diagnose"
    assert len(steps.notes) == 1 and "InternalServerError" in steps.notes[0] and steps.answers == 0


def test_strict_provider_fails_the_step_instead_of_answering_offline():
    steps = Steps()
    with ScriptedLLM(lambda n, role, tool: Fault(status=500)) as llm:
        spec = ProviderSpec(provider="openai", model="m", base_url=llm.base_url, max_retries=0, fallback=False)
        with pytest.raises(ProviderError, match=r"^--strict-provider: Planner: LLM call failed \(InternalServerError"):
            _one_step(spec, steps)
    assert steps.notes == [] and len(steps.errors) == 1 and "\n" not in str(steps.errors[0])


def test_provider_errors_are_clear():
    with pytest.raises(ProviderError, match="needs --model"):
        make_client(ProviderSpec(provider="openai"), "Tuner")
    with pytest.raises(ProviderError, match="GEMINI_API_KEY"):
        make_client(ProviderSpec(provider="gemini", model="gemini-2.5-flash"), "Tuner")
    with pytest.raises(ProviderError, match="ROLE=PROVIDER"):
        role_specs(ProviderSpec(), ["Boss=openai:x"], ROLES)
    specs = role_specs(ProviderSpec(), ["Planner=openai:gpt-4.1"], ROLES)
    assert specs["Planner"].model == "gpt-4.1" and specs["Judge"].provider == "offline"


class LlamaCppDialect(ScriptedLLM):
    """What llama-cpp-python's server (chat format chatml-function-calling) does on the wire: an
    assistant message whose `content` is not a string fails its request schema (HTTP 500, "7 validation
    errors ... messages.N ... Input should be 'system'"), and a tool-call reply carries the deprecated
    `function_call` beside `tool_calls`, which AutoGen's client refuses."""

    def __init__(self) -> None:
        super().__init__()
        self.refused: list[int] = []

    def answer(self, body, headers):
        number = len(self.seen) + 1
        self.seen.append(Seen(number, "any", "decide", None, headers, body))
        for i, m in enumerate(body["messages"]):
            if m["role"] == "assistant" and not isinstance(m.get("content"), str):  # its schema, then its template
                self.refused.append(i)
                return 500, {"error": {"message": f"7 validation errors: messages.{i}.role Input should be "
                                                  "'system'", "type": "internal_server_error"}}, 0.0
        call = {"name": "decide", "arguments": '{"action": "stop"}'}
        message = {"role": "assistant", "content": None, "function_call": call,
                   "tool_calls": [{"id": f"call__0_decide_{number}", "type": "function", "function": call}]}
        return 200, {"id": f"chatcmpl-{number}", "object": "chat.completion", "created": 0, "model": "m",
                     "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls"}],
                     "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}}, 0.0


def test_tool_call_history_and_legacy_function_call_replies_pass_a_llamacpp_style_server():
    """Issue 17: each step after the first tool call fell back (HTTP 500 on `content: null`), and the
    Judge's every step too ("function_call is deprecated"): the protocol, not the model, failed."""
    steps = Steps()
    history = [SystemMessage(content="You decide."), UserMessage(content="go", source="user"),
               AssistantMessage(content=[FunctionCall(id="call_1", name="diagnose", arguments="{}")], source="Planner"),
               FunctionExecutionResultMessage(content=[FunctionExecutionResult(
                   content='{"label": "good"}', name="diagnose", call_id="call_1", is_error=False)])]
    with LlamaCppDialect() as llm:
        from autogen_core.tools import FunctionTool

        client = make_client(ProviderSpec(provider="openai", model="m", base_url=llm.base_url, max_retries=0),
                             "Planner", watch=steps)
        tools = [FunctionTool(lambda: "", name=n, description=n) for n in ("diagnose", "decide")]
        first = asyncio.run(client.create(history[:2], tools=tools))
        second = asyncio.run(client.create(history, tools=tools))
        sent = [s.body["messages"] for s in llm.seen]
    assert llm.refused == [] and steps.notes == [] and steps.answers == 2, steps.notes
    assert first.content[0].name == second.content[0].name == "decide"
    assert sent[1][2]["role"] == "assistant" and sent[1][2]["content"] == "" and sent[1][2]["tool_calls"]
