"""The run's judges: clients from `--judge PROVIDER[:MODEL]`, and the offline judge.

Without `--judge`, the judge is the Judge agent's own provider; offline, that is the
offline-heuristic judge below. It is not an LLM: it reads the same judge prompt an LLM gets and
answers the same JSON verdict, scored from the reply's overlap with the reference answer, so the
whole path (prompt -> JSON -> parse -> retry -> means -> report) runs, and is tested, without a
network. Its name in every report says what it is.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import AsyncGenerator, Mapping, Sequence
from dataclasses import replace
from typing import Any, Literal

from autogen_core import CancellationToken
from autogen_core.models import (
    ChatCompletionClient,
    CreateResult,
    LLMMessage,
    ModelCapabilities,
    ModelFamily,
    ModelInfo,
    UserMessage,
)
from autogen_core.tools import Tool, ToolSchema
from pydantic import BaseModel

from tunecrew.tools.judge import OFFLINE_JUDGE, read_judge_prompt

from .models import PROVIDERS, ProviderError, ProviderSpec, _llm_client, role_specs
from .offline import LocalChatClient
from .roles import JUDGE

_TOKEN = re.compile(r"\w+|[^\w\s]")
_PAIRS = (("(", ")"), ("[", "]"), ("{", "}"), ("<", ">"))


def judge_specs(default: ProviderSpec, agents: list[str], judges: list[str]) -> dict[str, ProviderSpec]:
    """Name -> spec. `judges` items are PROVIDER[:MODEL]; none: the Judge agent's provider."""
    if not judges:
        spec = role_specs(default, [a for a in agents if a.startswith(f"{JUDGE}=")], (JUDGE,))[JUDGE]
        return {_name(spec): spec}
    out: dict[str, ProviderSpec] = {}
    for item in judges:
        provider, _, model = item.partition(":")
        if provider not in PROVIDERS:
            raise ProviderError(f"--judge {item!r}: unknown provider {provider!r}; "
                                f"choose one of {', '.join(PROVIDERS)}")
        same = provider == default.provider  # the key and endpoint given for --provider apply to it too
        spec = replace(default, provider=provider, model=model or (default.model if same else None),
                       base_url=default.base_url if same else None, api_key=default.api_key if same else None)
        if _name(spec) in out:
            raise ProviderError(f"--judge {item!r} is given twice: each judge must be a different model")
        out[_name(spec)] = spec
    return out


def make_judges(default: ProviderSpec, agents: list[str], judges: list[str]) -> dict[str, ChatCompletionClient]:
    """One client per judge. LLM judges get no offline fallback: a verdict the model did not give
    must count as unparsed, not be made up by a policy."""
    return {name: OfflineJudgeClient() if spec.provider == "offline" else _llm_client(spec)
            for name, spec in judge_specs(default, agents, judges).items()}


def _name(spec: ProviderSpec) -> str:
    return OFFLINE_JUDGE if spec.provider == "offline" else spec.label()


# --------------------------------------------------------------------------- the offline judge


def heuristic_scores(reference: str, reply: str) -> dict[str, Any]:
    """Scores 1-10 from token overlap: accuracy from exact match / F1, reasoning from precision
    (what the reply says that the reference supports), completeness from recall, clarity from form."""
    ref, got = _tokens(reference), _tokens(reply)
    if not got:
        return {"rationale": "offline heuristic: empty reply", **{c: 1 for c in
                                                                  ("accuracy", "reasoning", "completeness", "clarity")}}
    common = sum((Counter(ref) & Counter(got)).values())
    precision, recall = common / len(got), (common / len(ref) if ref else 0.0)
    f1 = 2 * precision * recall / (precision + recall) if common else 0.0
    exact = ref == got
    form = (0.5 * (ref[:1] == got[:1]) + 0.25 * _balanced(reply)
            + 0.25 * (0.5 <= len(got) / max(1, len(ref)) <= 2.0))
    return {
        "rationale": (f"offline heuristic, not an LLM: token F1 {f1:.2f} (precision {precision:.2f}, recall "
                      f"{recall:.2f}) with the reference{', exact match' if exact else ''}; form {form:.2f}"),
        # Overlap cannot tell a near miss from a wrong value (buy milk / buy eggs): short of an
        # exact match, accuracy is capped at 6.
        "accuracy": _scale(1.0 if exact else 0.55 * f1), "reasoning": _scale(precision),
        "completeness": _scale(recall), "clarity": _scale(form),
    }


def _tokens(text: str) -> list[str]:
    return _TOKEN.findall(text.lower())


def _balanced(text: str) -> bool:
    return all(text.count(a) == text.count(b) for a, b in _PAIRS)


def _scale(x: float) -> int:
    return max(1, min(10, round(1 + 9 * x)))


class OfflineJudgeClient(LocalChatClient):
    """A deterministic judge behind the ChatCompletionClient interface (see the module docstring)."""

    def __init__(self) -> None:
        self.calls = 0

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
        self.calls += 1
        prompt = next((m.content for m in messages if isinstance(m, UserMessage) and isinstance(m.content, str)
                       and "<reference>" in m.content), None)
        if prompt is None:
            content = "The offline judge only answers tunecrew judge prompts (question, reference, reply)."
        else:
            parts = read_judge_prompt(prompt)
            content = json.dumps(heuristic_scores(parts["reference"], parts["reply"]))
        return CreateResult(finish_reason="stop", content=content, usage=self._usage, cached=False)

    async def create_stream(self, messages: Sequence[LLMMessage],
                            **kwargs: Any) -> AsyncGenerator[str | CreateResult, None]:
        yield await self.create(messages, **kwargs)

    @property
    def capabilities(self) -> ModelCapabilities:
        return ModelCapabilities(vision=False, function_calling=False, json_output=True)

    @property
    def model_info(self) -> ModelInfo:
        return ModelInfo(vision=False, function_calling=False, json_output=True, family=ModelFamily.UNKNOWN,
                         structured_output=True, multiple_system_messages=True)
