"""The `offline` provider: a ChatCompletionClient whose "model" is the deterministic policy.

Each agent gets its own instance, bound to its role. On every call it reads the tool results of
the agent's current turn from the messages AutoGen sends — exactly what an LLM would see — and
answers with the next tool call, or with a final text once its role's work is done. Decisions
come from `policy.py` applied to those tool outputs, so the run is explainable and reproducible.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, Mapping, Sequence
from typing import Any, Literal

from autogen_core import CancellationToken, FunctionCall
from autogen_core.models import (
    AssistantMessage,
    ChatCompletionClient,
    CreateResult,
    FunctionExecutionResultMessage,
    LLMMessage,
    ModelCapabilities,
    ModelFamily,
    ModelInfo,
    RequestUsage,
)
from autogen_core.tools import Tool, ToolSchema
from pydantic import BaseModel

from tunecrew.tools.contracts import TrainConfig

from . import policy
from .answers import DiagnoseAnswer, DomainCandidates, ProfileAnswer, TuningBrief
from .roles import DOMAIN_EXPERT, JUDGE, PLANNER, TUNER

Reply = str | tuple[str, dict[str, Any]]  # final text, or (tool name, arguments)

MAX_PROPOSALS = 3  # refused configs the Tuner repairs before it reports failure


MAX_TOOL_ERRORS = 2  # a tool call that raised (e.g. unparseable arguments) is retried this often


class TurnView:
    """The tool calls made so far in the agent's current turn, with their parsed answers.

    A call that failed to execute (AutoGen reports it with is_error, e.g. arguments that were not
    valid JSON) counts as not made, up to MAX_TOOL_ERRORS times, so the policy simply calls again.
    """

    def __init__(self, messages: Sequence[LLMMessage]):
        self.calls: list[tuple[str, dict[str, Any], dict[str, Any]]] = []
        self.errors: dict[str, int] = {}
        tail: list[list[FunctionCall] | FunctionExecutionResultMessage] = []
        for message in reversed(messages):
            if isinstance(message, AssistantMessage) and isinstance(message.content, list):
                tail.append(message.content)
            elif isinstance(message, FunctionExecutionResultMessage):
                tail.append(message)
            else:
                break
        pending: dict[str, tuple[str, dict[str, Any]]] = {}
        for item in reversed(tail):
            if isinstance(item, list):
                for call in item:
                    pending[call.id] = (call.name, _parse(call.arguments or "{}"))
            else:
                for res in item.content:
                    name, args = pending.pop(res.call_id, (res.name, {}))
                    if res.is_error:
                        self.errors[name] = self.errors.get(name, 0) + 1
                        if self.errors[name] <= MAX_TOOL_ERRORS:
                            continue
                    self.calls.append((name, args, _parse(res.content)))

    def last(self, name: str) -> dict[str, Any] | None:
        for called, _, answer in reversed(self.calls):
            if called == name:
                return answer
        return None

    def count(self, name: str) -> int:
        return sum(1 for called, _, _ in self.calls if called == name)

    def last_args(self, name: str) -> dict[str, Any] | None:
        for called, args, _ in reversed(self.calls):
            if called == name:
                return args
        return None


def _parse(content: str) -> dict[str, Any]:
    try:
        value = json.loads(content)
        return value if isinstance(value, dict) else {"value": value}
    except json.JSONDecodeError:
        return {"error": content}


# ---------------------------------------------------------------------- per-role policies


def domain_expert(view: TurnView) -> Reply:
    profile = view.last("profile_dataset")
    if profile is None:
        return ("profile_dataset", {})
    if "error" in profile:
        return f"I could not profile the data: {profile['error']}"
    candidates = view.last("detect_domain")
    if candidates is None:
        return ("detect_domain", {})
    top = DomainCandidates.model_validate(candidates).candidates[0]
    card = view.last("write_domain_card")
    if card is None:
        return ("write_domain_card", {"domain": top.domain, "persona": top.persona,
                                      "evidence": top.evidence, "confidence": min(1.0, top.score)})
    profiled = ProfileAnswer.model_validate(profile)
    p, leak = profiled.profile, profiled.leak_check
    return (f"Domain: {top.domain} (confidence {top.score:.2f}; {'; '.join(top.evidence)}). "
            f"Data: {p.rows} rows, format {p.format}, p95 {p.total_tokens.p95:.0f} tokens "
            f"({p.token_unit}), {p.duplicates} duplicates; held-out {profiled.heldout_rows} rows, "
            f"leak check {'passed' if leak.passed else 'FAILED'} ({leak.exact_overlap} exact, "
            f"{leak.near_overlap} near). Persona: {card.get('system_prompt', top.persona)}")


def _proposal(config: TrainConfig) -> dict[str, Any]:
    """propose_config's arguments: every field, so the transcript shows the whole config tried."""
    return config.model_dump()


def tuner(view: TurnView) -> Reply:
    answer = view.last("recall_attempts")
    if answer is None:
        return ("recall_attempts", {})
    if "error" in answer:
        return f"I cannot propose a config yet: {answer['error']}"
    brief = TuningBrief.model_validate(answer)
    proposal = view.last("propose_config")
    own, why = policy.initial_config(brief)
    if proposal is None:
        return ("propose_config", _proposal(own))
    if not proposal.get("accepted"):
        tried = [args for name, args, _ in view.calls if name == "propose_config"]
        # Someone else's refused proposal (an LLM before a fallback, or a person) is replaced by
        # this policy's own; this policy's own is repaired when the refusal says how.
        repaired: TrainConfig | None = own
        if _proposal(own) in tried:
            repaired = policy.shrink_for_errors(TrainConfig.model_validate(tried[-1]), proposal.get("errors", []))
        if repaired is not None and view.count("propose_config") < MAX_PROPOSALS:
            return ("propose_config", _proposal(repaired))
        return f"No feasible config: {'; '.join(proposal.get('errors', []))}"
    trained = view.last("train")
    if trained is None:
        return ("train", {})
    used = TrainConfig.model_validate(proposal["config"]) if proposal.get("config") else \
        TrainConfig.model_validate(view.last_args("propose_config") or {})
    recalled = brief.recalled
    memory_note = (f" Memory: {len(recalled)} similar attempts recalled"
                   + (f", best: {recalled[0].summary}" if recalled else "") + ".")
    return (f"Attempt {brief.attempt}: {used.method} r={used.lora_rank} lr={used.learning_rate} "
            f"epochs={used.epochs} batch={used.batch_size} seq={used.max_seq_length} "
            f"embeddings={'trained' if used.train_embeddings else 'frozen'} — because {why}.{memory_note} "
            f"Training: {trained.get('status')} after {trained.get('steps')} steps, "
            f"loss {_num(trained.get('first_loss'))} -> {_num(trained.get('train_loss'))}, "
            f"eval loss {_num(trained.get('eval_loss'))}, "
            f"{trained.get('wall_seconds')} s" + (f"; error: {trained['error']}" if trained.get("error") else "") + ".")


def judge(view: TurnView) -> Reply:
    report = view.last("evaluate")
    if report is None:
        return ("evaluate", {})
    if "error" in report:
        return f"Nothing to judge: {report['error']}"
    rubric = view.last("score_rubric")
    if rubric is None:
        return ("score_rubric", policy.rubric_from_metrics(report["metrics"], report.get("rubric_metrics", {}),
                                                          report.get("failures", [])))
    scores = view.last_args("score_rubric") or {}
    metrics = ", ".join(f"{k} {v:.1%}" for k, v in report["metrics"].items())
    groups = "; ".join(f"{g} ({m['samples']}): " + ", ".join(f"{k} {v:.1%}" for k, v in m["metrics"].items())
                       for g, m in report.get("groups", {}).items())
    failures = " | ".join(f"{f['prompt'][:60]!r} -> {f['reason']}" for f in report.get("failures", [])[:3])
    return (f"Held-out split {report['split']}, {report['samples']} samples, seed {report['seed']}: {metrics}."
            + (f" By group: {groups}." if groups else "")
            + f" Rubric: accuracy {scores.get('accuracy')}, reasoning {scores.get('reasoning')}, "
              f"completeness {scores.get('completeness')}, clarity {scores.get('clarity')}. "
              f"{scores.get('explanation', '')}"
            + _llm_judge_line(report)
            + (f" Failures: {failures}" if failures else ""))


def _mean_of(means: dict[str, float]) -> str:
    return f"{sum(means.values()) / len(means):.2f}" if means else "n/a"


def _llm_judge_line(report: dict[str, Any]) -> str:
    """The LLM judge's means for the attempt and the base model, with their sample counts."""
    judged, base = report.get("llm_judge"), report.get("llm_judge_base_model") or {}
    if not judged:
        return ""
    parts = []
    for name, j in judged["judges"].items():
        base_means = base.get("judges", {}).get(name, {}).get("means", {})
        parts.append(f"{name} mean {_mean_of(j['means'])} vs base model {_mean_of(base_means)} "
                     f"(n={j['judged']}, {j['unparsed']} unparsed)")
    agreement = f"; agreement: {judged['agreement']}" if judged.get("agreement") else ""
    return (f" LLM judge on {judged['samples']} of {judged['of']} samples (seed {judged['seed']}): "
            f"{'; '.join(parts)}{agreement}.")


def planner(view: TurnView) -> Reply:
    answer = view.last("diagnose")
    if answer is None:
        return ("diagnose", {})
    if "error" in answer:
        return f"Stopping: {answer['error']}. TERMINATE"
    decided = view.last("decide")
    if decided is None or (not decided.get("accepted") and view.count("decide") < 2):
        choice = policy.plan(DiagnoseAnswer.model_validate(answer)).model_dump(include={"action", "reason", "changes"})
        if decided is not None:  # refused (e.g. budget): fall back to stopping, with the refusal as reason
            choice = {"action": "stop", "reason": f"retry refused ({'; '.join(decided.get('errors', []))})"}
        return ("decide", choice)
    args = view.last_args("decide") or {}
    d = answer["diagnosis"]
    head = f"Diagnosis of attempt {answer['attempt']}: {d['label']} — {'; '.join(d['evidence'][:3])}."
    if decided.get("awaiting_review"):
        return (f"{head} Proposed: {args.get('action')}"
                + (f" with {args.get('changes')}" if args.get("changes") else "")
                + f" ({args.get('reason')}). Awaiting the person's review.")
    if args.get("action") == "retry":
        return f"{head} Decision: retry with {args.get('changes')} ({args.get('reason')})."
    return f"{head} Decision: stop ({args.get('reason')}). TERMINATE"


POLICIES = {DOMAIN_EXPERT: domain_expert, TUNER: tuner, JUDGE: judge, PLANNER: planner}


def _num(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, (int, float)) else "n/a"


# ---------------------------------------------------------------------- the client


class LocalChatClient(ChatCompletionClient):
    """What every in-process stand-in for an LLM shares: no usage to count, nothing to close, a
    rough token count. Subclasses answer `create` and say what they can do."""

    _usage = RequestUsage(prompt_tokens=0, completion_tokens=0)

    async def close(self) -> None:
        return None

    def actual_usage(self) -> RequestUsage:
        return self._usage

    def total_usage(self) -> RequestUsage:
        return self._usage

    def count_tokens(self, messages: Sequence[LLMMessage], *, tools: Sequence[Tool | ToolSchema] = []) -> int:
        return sum(len(str(m.content)) // 4 for m in messages)

    def remaining_tokens(self, messages: Sequence[LLMMessage], *, tools: Sequence[Tool | ToolSchema] = []) -> int:
        return 1_000_000 - self.count_tokens(messages)


class OfflinePolicyClient(LocalChatClient):
    """Deterministic stand-in for an LLM: same interface, same tools, rule-based choices."""

    def __init__(self, role: str):
        if role not in POLICIES and role != "selector":
            raise ValueError(f"unknown offline role {role!r}; expected one of {sorted(POLICIES)}")
        self.role = role
        self._calls = 0

    async def create(
        self,
        messages: Sequence[LLMMessage],
        *,
        tools: Sequence[Tool | ToolSchema] = [],
        tool_choice: Tool | Literal["auto", "required", "none"] = "auto",
        json_output: bool | type[BaseModel] | None = None,
        extra_create_args: Mapping[str, Any] = {},
        cancellation_token: CancellationToken | None = None,
    ) -> CreateResult:
        self._calls += 1
        if self.role == "selector" or not tools:
            # The crew's selector is a function; this answer exists only so a misconfigured team fails loudly.
            return CreateResult(finish_reason="stop", content=PLANNER, usage=self._usage, cached=False)
        reply = POLICIES[self.role](TurnView(messages))
        if isinstance(reply, str):
            return CreateResult(finish_reason="stop", content=reply, usage=self._usage, cached=False)
        name, arguments = reply
        available = {t.name if isinstance(t, Tool) else t["name"] for t in tools}
        if name not in available:
            return CreateResult(finish_reason="stop", usage=self._usage, cached=False,
                                content=f"I need the tool {name!r}, which I was not given.")
        call = FunctionCall(id=f"{self.role}-{self._calls}", name=name, arguments=json.dumps(arguments))
        return CreateResult(finish_reason="function_calls", content=[call], usage=self._usage, cached=False)

    async def create_stream(self, messages: Sequence[LLMMessage],
                            **kwargs: Any) -> AsyncGenerator[str | CreateResult, None]:
        result = await self.create(messages, **kwargs)
        if isinstance(result.content, str):
            yield result.content
        yield result

    @property
    def capabilities(self) -> ModelCapabilities:
        return ModelCapabilities(vision=False, function_calling=True, json_output=True)

    @property
    def model_info(self) -> ModelInfo:
        return ModelInfo(vision=False, function_calling=True, json_output=True, family=ModelFamily.UNKNOWN,
                         structured_output=False, multiple_system_messages=True)
