"""The LLM judge through the real OpenAI client and HTTP: retries, unparsed counts, agreement,
sample selection, the persona in the prompt, the offline judge, and the judge files of a crew run."""

from __future__ import annotations

import asyncio
import inspect
import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest
from autogen_core.models import ModelFamily, ModelInfo
from autogen_ext.models.openai import OpenAIChatCompletionClient

from tunecrew.agents.judges import OfflineJudgeClient, heuristic_scores, judge_specs, make_judges
from tunecrew.agents.models import ProviderError, ProviderSpec
from tunecrew.tools.judge import (
    OFFLINE_JUDGE,
    JudgePanel,
    JudgeSample,
    judge_samples,
    parse_verdict,
    rubric_of,
    samples_from_rows,
    speaker_name,
)
from tunecrew.tools.report import judge_blocks, render_markdown

from fake_llm import LoopbackServer

PERSONA = "You are a precise task-management assistant: one tool call or one short reply per request."

# (model name, sample question, is this a retry after an error) -> the reply's content text
Script = Callable[[str, str, bool], str]


class JudgeServer(LoopbackServer):
    """An OpenAI-compatible /v1/chat/completions on 127.0.0.1 that answers scripted verdict text."""

    def __init__(self, script: Script):
        self.script = script
        self.bodies: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._listen()

    def client(self, model: str, structured: bool = True) -> OpenAIChatCompletionClient:
        info = ModelInfo(vision=False, function_calling=False, json_output=True, family=ModelFamily.UNKNOWN,
                         structured_output=structured, multiple_system_messages=True)
        return OpenAIChatCompletionClient(model=model, base_url=self.base_url, api_key="not-needed",
                                          model_info=info, max_retries=0, timeout=20)

    def answer(self, body: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            self.bodies.append(body)
            number = len(self.bodies)
        user = body["messages"][1]["content"]
        question = re.search(r"<question>\n(.*?)\n</question>", user, re.S).group(1)
        retry = "could not be used" in (body["messages"][-1].get("content") or "")
        content = self.script(body["model"], question, retry)
        return {"id": f"chatcmpl-{number}", "object": "chat.completion", "created": int(time.time()),
                "model": body["model"], "choices": [{"index": 0, "finish_reason": "stop",
                                                     "message": {"role": "assistant", "content": content}}],
                "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}}

    def _handler(self):
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # http.server's naming
                body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))))
                data = json.dumps(outer.answer(body)).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        return Handler


def verdict(accuracy: int, reasoning: int = 5, completeness: int = 5, clarity: int = 5, why: str = "ok") -> str:
    return json.dumps({"rationale": why, "accuracy": accuracy, "reasoning": reasoning,
                       "completeness": completeness, "clarity": clarity})


def samples(count: int) -> list[JudgeSample]:
    return [JudgeSample(index=i, question=f"q{i}", reference=f"<action>add_task(title=\"t{i}\")</action>",
                        reply=f"<action>add_task(title=\"t{i}\")</action>" if i % 3 else "sure")
            for i in range(count)]


def run(coro):
    return asyncio.run(coro)


# --------------------------------------------------------------------------- retries and unparsed


def test_a_malformed_or_out_of_range_verdict_is_retried_with_the_error_and_then_scored():
    def script(model: str, question: str, retry: bool) -> str:
        if retry:
            return verdict(7)
        return {"q0": '{"rationale": "good", "accuracy": 8,', "q1": verdict(11)}.get(question, verdict(9))

    with JudgeServer(script) as server:
        report = run(judge_samples({"judge-a": server.client("judge-a")}, samples(3), PERSONA, n=3, seed=0))
    by_sample = {v.sample: v for v in report.verdicts}
    assert by_sample[0].tries == 2 and by_sample[0].scores["accuracy"] == 7  # retried, parsed, not 0
    assert by_sample[1].tries == 2 and by_sample[1].scores["accuracy"] == 7
    assert by_sample[2].tries == 1 and by_sample[2].scores["accuracy"] == 9
    assert report.judges[0].judged == 3 and report.judges[0].unparsed == 0
    assert report.judges[0].means["accuracy"] == pytest.approx((7 + 7 + 9) / 3)
    retries = [b for b in server.bodies if len(b["messages"]) > 2]
    assert len(retries) == 2 and len(server.bodies) == 5
    fed_back = " ".join(b["messages"][-1]["content"] for b in retries)
    assert "accuracy" in fed_back and "less than or equal to 10" in fed_back  # the bound that was broken


def test_a_provider_model_judge_retries_with_a_name_the_openai_client_accepts():
    """Issue 17: a `PROVIDER:MODEL` judge's retry sent AssistantMessage(source="openai:some.model"), and
    the OpenAI client refuses names outside [A-Za-z0-9_-]: every retry failed before reaching the server."""
    def script(model: str, question: str, retry: bool) -> str:
        return verdict(6) if retry else "Looks fine to me, maybe a 7."

    with JudgeServer(script) as server:
        default = ProviderSpec(provider="openai", model="some.model", base_url=server.base_url, max_retries=0)
        judges = make_judges(default, [], [])
        assert list(judges) == ["openai:some.model"]
        report = run(judge_samples(judges, samples(1), PERSONA, n=1, seed=0))
        run(JudgePanel(judges).close())
    (only,) = report.verdicts
    assert only.judge == "openai:some.model" and only.tries == 2 and only.scores["accuracy"] == 6, only.error
    assert report.judges[0].judged == 1 and report.judges[0].unparsed == 0
    first, retry = server.bodies
    assert len(first["messages"]) == 2 and len(retry["messages"]) == 4
    answered = retry["messages"][2]
    assert answered["role"] == "assistant" and answered["content"] == "Looks fine to me, maybe a 7."
    names = [m["name"] for m in retry["messages"] if "name" in m]
    assert names and all(re.fullmatch(r"[A-Za-z0-9_-]{1,64}", n) for n in names), names
    for label in ("openai:some.model", "llamacpp:/models/" + "x" * 90 + ".gguf", ":::", OFFLINE_JUDGE):
        assert re.fullmatch(r"[A-Za-z0-9_-]{1,64}", speaker_name(label)), label


def test_a_judge_that_never_parses_is_counted_unparsed_and_left_out_of_the_means():
    def script(model: str, question: str, retry: bool) -> str:
        if model == "never":
            return "I would say the reply is quite good overall."
        return "no verdict for you" if question == "q1" else verdict(8, 8, 8, 8)

    with JudgeServer(script) as server:
        clients = {"never": server.client("never", structured=False), "mostly": server.client("mostly")}
        report = run(judge_samples(clients, samples(3), PERSONA, n=3, seed=0, retries=2))
    never, mostly = report.judges
    assert (never.judged, never.unparsed, never.means) == (0, 3, {})
    assert all(v.scores is None and v.tries == 3 and "no JSON object" in v.error
               for v in report.verdicts if v.judge == "never")
    # One unparsed sample is excluded, not scored 0: the mean stays 8 (a 0 would give 5.33).
    assert (mostly.judged, mostly.unparsed) == (2, 1)
    assert mostly.means == {"accuracy": 8.0, "reasoning": 8.0, "completeness": 8.0, "clarity": 8.0}
    assert sum(1 for b in server.bodies if b["model"] == "never") == 9  # 3 samples x (1 + 2 retries)
    rubric = rubric_of(report)
    assert rubric is not None and rubric.accuracy == 8.0 and rubric.judge == "mostly" and rubric.samples == 3
    assert "1 unparsed" in rubric.explanation and "3 unparsed" in rubric.explanation


def test_a_panel_whose_judges_all_fail_gives_no_rubric_rather_than_zeros():
    with JudgeServer(lambda m, q, r: "nope") as server:
        report = run(judge_samples({"j": server.client("j")}, samples(2), PERSONA, n=2, retries=0))
    assert report.judges[0].unparsed == 2 and rubric_of(report) is None


# --------------------------------------------------------------------------- agreement


def test_agreement_between_two_judges_matches_the_hand_computed_numbers():
    accuracy = {"judge-a": [2, 4, 6, 8], "judge-b": [3, 4, 8, 7]}
    clarity = {"judge-a": [5, 5, 5, 5], "judge-b": [5, 6, 5, 6]}

    def script(model: str, question: str, retry: bool) -> str:
        i = int(question[1:])
        return verdict(accuracy[model][i], reasoning=i + 1, completeness=i + 1, clarity=clarity[model][i])

    with JudgeServer(script) as server:
        clients = {"judge-a": server.client("judge-a"), "judge-b": server.client("judge-b", structured=False)}
        report = run(judge_samples(clients, samples(4), PERSONA, n=4, seed=0))
    rows = {a.criterion: a for a in report.agreement}
    assert set(rows) == {"accuracy", "reasoning", "completeness", "clarity", "all"}
    acc = rows["accuracy"]
    # |diff| = 1, 0, 2, 1; ranks a = 1 2 3 4, b = 1 2 4 3 -> rho = 1 - 6 * 2 / (4 * 15) = 0.8
    assert (acc.judges, acc.samples) == (["judge-a", "judge-b"], 4)
    assert acc.mean_abs_diff == pytest.approx(1.0) and acc.within_one == pytest.approx(0.75)
    assert acc.spearman == pytest.approx(0.8)
    assert (rows["reasoning"].mean_abs_diff, rows["reasoning"].within_one) == (0.0, 1.0)
    assert rows["reasoning"].spearman == pytest.approx(1.0)
    assert rows["clarity"].mean_abs_diff == pytest.approx(0.5) and rows["clarity"].within_one == 1.0
    assert rows["clarity"].spearman is None  # judge-a gave one constant score: no rank correlation
    assert rows["all"].mean_abs_diff == pytest.approx((4 + 0 + 0 + 2) / 16)
    assert "judge-a vs judge-b on 4 samples" in report.agreement_summary
    assert report.judges[1].means["accuracy"] == pytest.approx(22 / 4)


# --------------------------------------------------------------------------- samples and prompt


def test_thirty_samples_by_default_chosen_deterministically_by_seed():
    assert inspect.signature(judge_samples).parameters["n"].default == 30
    judge = {OFFLINE_JUDGE: OfflineJudgeClient()}
    first = run(judge_samples(judge, samples(50), PERSONA, seed=3))
    again = run(judge_samples(judge, samples(50), PERSONA, seed=3))
    other = run(judge_samples(judge, samples(50), PERSONA, seed=4))
    picked = [v.sample for v in first.verdicts]
    assert first.samples == 30 and first.available == 50 and len(set(picked)) == 30
    assert picked == [v.sample for v in again.verdicts] and picked != [v.sample for v in other.verdicts]
    assert first.selection == "30 of 50 held-out rows, drawn with seed 3"
    few = run(judge_samples(judge, samples(12), PERSONA, seed=3))
    assert few.samples == 12 and "fewer than the 30 asked for" in few.selection


def test_the_persona_rubric_and_schema_reach_the_judge_model():
    with JudgeServer(lambda m, q, r: verdict(6)) as server:
        run(judge_samples({"s": server.client("s"), "t": server.client("t", structured=False)},
                          samples(1), PERSONA, n=1))
    structured, text = sorted(server.bodies, key=lambda b: b["model"])
    for body in (structured, text):
        system, user = body["messages"][0]["content"], body["messages"][1]["content"]
        assert system.startswith(PERSONA) and "completeness:" in system and '"clarity"' in system
        assert "<reference>\n<action>add_task(title=\"t0\")</action>\n</reference>" in user
        assert "<reply>\nsure\n</reply>" in user
    schema = structured["response_format"]["json_schema"]["schema"]
    assert structured["response_format"]["type"] == "json_schema"
    assert schema["properties"]["accuracy"]["maximum"] == 10 and schema["properties"]["clarity"]["minimum"] == 1
    assert "response_format" not in text  # no structured output: the schema is in the prompt only


def test_the_panel_judges_on_the_crews_loop_and_closes_its_clients_there():
    """The evaluate tool awaits the panel on the crew's loop, where the judges' HTTP clients live."""
    with JudgeServer(lambda m, q, r: verdict(4)) as server:
        panel = JudgePanel({"j": server.client("j")}, n=2)

        async def crew() -> list[float]:
            try:  # the base model, then an attempt: one loop, one HTTP client
                reports = [await panel.judge(samples(3), PERSONA, seed=0, subject=s, split="s")
                           for s in ("base model", "attempt 1")]
            finally:
                await panel.close()
            return [r.judges[0].means["accuracy"] for r in reports]

        assert run(crew()) == [4.0, 4.0]
    assert len(server.bodies) == 4


def test_verdict_parsing_accepts_fenced_json_and_names_the_broken_field():
    assert parse_verdict("```json\n" + verdict(3) + "\n```").accuracy == 3
    with pytest.raises(ValueError, match="clarity"):
        parse_verdict(verdict(3, clarity=0))
    with pytest.raises(ValueError, match="does not parse"):
        parse_verdict('{"accuracy": 3,,}')


def test_samples_from_rows_take_the_last_message_as_the_reference():
    rows = [{"messages": [{"role": "system", "content": "sys"}, {"role": "user", "content": "add milk"},
                          {"role": "assistant", "content": "<action>add_task(title=\"milk\")</action>"}]}]
    (sample,) = samples_from_rows(rows, ["got"])
    assert (sample.question, sample.reference, sample.reply) == ("add milk", rows[0]["messages"][2]["content"], "got")
    with pytest.raises(ValueError, match="1 held-out rows but 2 replies"):
        samples_from_rows(rows, ["a", "b"])


# --------------------------------------------------------------------------- offline judge and wiring


def test_the_offline_judge_runs_the_same_path_and_says_what_it_is():
    judges = make_judges(ProviderSpec(), [], [])
    assert list(judges) == [OFFLINE_JUDGE]
    report = run(judge_samples(judges, samples(6), PERSONA, n=6, seed=0))
    scores = {v.sample: v.scores for v in report.verdicts}
    assert scores[1] == {"accuracy": 10, "reasoning": 10, "completeness": 10, "clarity": 10}  # exact match
    assert scores[0]["accuracy"] < 5 and scores[0]["completeness"] < 5  # "sure" is not the tool call
    assert all("offline heuristic, not an LLM" in v.rationale for v in report.verdicts)
    near = heuristic_scores('<action>add_task(title="buy milk")</action>',
                            '<action>add_task(title="buy eggs")</action>')
    assert near["accuracy"] <= 6 < near["clarity"]  # a near miss is not accurate, but well formed
    assert heuristic_scores("x", "")["accuracy"] == 1
    assert rubric_of(report).judge == OFFLINE_JUDGE


def test_judge_flags_pick_providers_and_refuse_mistakes():
    default = ProviderSpec(provider="openai", model="gpt-4.1-mini", base_url="http://127.0.0.1:1/v1")
    assert list(judge_specs(default, [], [])) == ["openai:gpt-4.1-mini"]  # the Judge agent's own provider
    assert list(judge_specs(default, ["Judge=offline", "Planner=gemini:g"], [])) == [OFFLINE_JUDGE]
    specs = judge_specs(default, [], ["openai:gpt-4.1", "offline"])
    assert list(specs) == ["openai:gpt-4.1", OFFLINE_JUDGE]
    assert specs["openai:gpt-4.1"].base_url == default.base_url  # same provider: same endpoint and key
    with pytest.raises(ProviderError, match="unknown provider 'claude'"):
        judge_specs(default, [], ["claude:x"])
    with pytest.raises(ProviderError, match="given twice"):
        judge_specs(default, [], ["offline", "offline"])


def test_report_shows_judges_base_and_attempt_side_by_side_with_counts_and_agreement():
    judges = {OFFLINE_JUDGE: OfflineJudgeClient(), "copy": OfflineJudgeClient()}
    base = run(judge_samples(judges, samples(5), PERSONA, n=5, subject="base model", split="held"))
    tuned = run(judge_samples(judges, [replace(s, reply=s.reference) for s in samples(5)], PERSONA, n=5,
                              subject="attempt 1", split="held"))
    text = render_markdown(judge_blocks([base, tuned]))
    assert "| judge | criterion | base model | attempt 1 |" in text
    assert "n=5 per judge" in text and "| offline-heuristic | judged / unparsed | 5 / 0 | 5 / 0 |" in text
    assert "| attempt 1 | offline-heuristic vs copy | all | 5 | 0.00 | 100% | " in text
    assert "| offline-heuristic | accuracy | " in text and "| 10.00 |" in text


@pytest.mark.slow
def test_an_offline_crew_run_writes_judge_files_and_the_report_table(tmp_path, tiny_model, tunecrew_home):
    from tunecrew.app.runner import RunOptions
    from tunecrew.app.runner import run as run_crew
    from tunecrew.scenarios.task_agent.scenario import SCENARIO
    from tunecrew.tools.contracts import EvalReport, JudgeReport

    from factories import small_task_agent_data

    scenario = replace(SCENARIO, build_data=small_task_agent_data, max_attempts=1, target=1.0)
    outcome = run_crew(RunOptions(scenario=scenario, base_model=str(tiny_model), runs_dir=tmp_path / "runs",
                                  use_memory=False, quiet=True, attempt_seconds=5, run_id="judged", threads=1))
    attempt = outcome.run_dir / "attempts" / "1"
    judged = JudgeReport.model_validate_json((attempt / "judge.json").read_text())
    base = JudgeReport.model_validate_json((outcome.run_dir / "judge_baseline.json").read_text())
    for report in (judged, base):
        assert report.samples == 16 and "fewer than the 30 asked for" in report.selection
        assert report.judges[0].judge == OFFLINE_JUDGE and report.judges[0].judged == 16
        assert report.persona.startswith("You are a precise task-management assistant")
    assert [v.sample for v in judged.verdicts] == [v.sample for v in base.verdicts]
    evaluated = EvalReport.model_validate_json((attempt / "eval.json").read_text())
    assert evaluated.rubric.judge == OFFLINE_JUDGE and evaluated.rubric.samples == 16
    assert evaluated.agent_rubric is not None  # the Judge agent's own score_rubric, kept beside it
    assert outcome.records[0].eval.rubric == evaluated.rubric
    report = (outcome.run_dir / "report.md").read_text()
    assert "## LLM judge" in report and "| judge | criterion | base model | attempt 1 |" in report
