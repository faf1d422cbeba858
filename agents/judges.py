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

from tunecrew.tools.evaluate import Scorer
from tunecrew.tools.judge import OFFLINE_JUDGE, read_judge_prompt
from tunecrew.tools.text_metrics import extract_answer

from .models import PROVIDERS, ProviderError, ProviderSpec, llm_client, role_specs
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
    return {name: OfflineJudgeClient() if spec.provider == "offline" else llm_client(spec)
            for name, spec in judge_specs(default, agents, judges).items()}


def _name(spec: ProviderSpec) -> str:
    return OFFLINE_JUDGE if spec.provider == "offline" else spec.label()


# --------------------------------------------------------------------------- the offline judge

# A scorer metric that is the task's own right/wrong verdict (the task agent's exact action, the
# letter, number or label of a dataset task type); answer_f1 and its kin are overlaps, not verdicts.
VERDICT_METRICS = ("action_exact_match", "answer_accuracy")
PARTIAL_METRICS = ("tool_accuracy",)  # right in part: the right tool with a wrong argument
# Function words carry no answer: "the capital of Australia is Sydney" shares all of them with the
# right reply. A short closed list (no stopword library is a dependency, and these never change).
_STOP = frozenset((
    "a", "an", "the", "and", "or", "but", "if", "of", "to", "in", "on", "at", "by", "for", "with", "from", "as",
    "into", "about", "than", "then", "so", "is", "are", "was", "were", "be", "been", "being", "am", "do", "does",
    "did", "has", "have", "had", "it", "its", "it's", "this", "that", "these", "those", "there", "here", "what",
    "which", "who", "whom", "whose", "when", "where", "why", "how", "i", "you", "he", "she", "we", "they", "me",
    "him", "her", "us", "them", "my", "your", "our", "their", "not", "no", "yes", "can", "could", "will", "would",
    "shall", "should", "may", "might", "must", "very", "just", "also", "too", "only",
))
_QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"')
_WORD = re.compile(r"\d+(?:[.,]\d+)*|[^\W\d_][\w-]*", re.UNICODE)
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_MARKERS = ("<think>", "</think>", "<analysis>", "</analysis>", "<action>", "</action>", "<final>", "</final>",
            "####", "\\boxed{")
# How a reply marks its final answer. A reference that marks its answer asks for a marked one: a
# reply that names numbers without saying which is the answer is ambiguous, whichever the scorer picks.
_ANSWER_MARK = re.compile(r"####|\\boxed\{|</think>|\banswer\b\s*(?:is\b|:)", re.IGNORECASE)
VALUE_WEIGHT = 3  # a number or a quoted value is the answer itself: missing one costs three words


def heuristic_scores(reference: str, reply: str, question: str = "", scorer: Scorer | None = None) -> dict[str, Any]:
    """Scores 1-10 for one reply (see `OfflineJudgeClient`): correctness from the task's own scorer
    when one is bound (its verdict metric), else from how much of the reference's answer the reply
    gives; clarity from form: the scorer's format check (or the reference's markers), repetition and
    whether the reply's words belong to the question and reference at all."""
    if not reply.strip():
        return {"rationale": "offline heuristic, not an LLM: empty reply",
                **{c: 1 for c in ("accuracy", "reasoning", "completeness", "clarity")}}
    values = scorer(reference, reply).values if scorer is not None else {}
    verdict = next((values[m] for m in VERDICT_METRICS if m in values), None)
    support = answer_support(question, reference, reply)
    fresh = _looping(reply)
    form = _form(reference, reply, values.get("format_compliance"), question) * fresh
    correct = verdict if verdict is not None else support * fresh
    partial = next((values[m] for m in PARTIAL_METRICS if m in values), correct)
    coverage = _recall(_beyond(question, reference), _units(reply))
    source = "the task's scorer" if verdict is not None else "answer support"
    return {
        "rationale": (f"offline heuristic, not an LLM: {source} {correct:.2f}, answer support {support:.2f}, "
                      f"reference covered {coverage:.2f}, form {form:.2f}"
                      + (f" (format check {values['format_compliance']:.0f})" if "format_compliance" in values
                         else "")),
        "accuracy": _scale(correct * (0.85 + 0.15 * form)),
        "reasoning": _scale(0.7 * partial + 0.3 * correct * form),
        "completeness": _scale(0.5 * correct + 0.5 * coverage * form),
        "clarity": _scale(form),
    }


def answer_support(question: str, reference: str, reply: str) -> float:
    """0-1: how much of the reference's answer (what it says beyond the question) the reply's answer
    gives, less for numbers it adds that neither names (a wrong value) and for unsupported words."""
    key, got = _beyond(question, extract_answer(reference)), _units(extract_answer(reply))
    if not key or not got:
        return 0.0
    known = {**_units(question), **_units(reference)}
    new = [u for u in got if not _has(known, u)]
    wrong_values = sum(1 for u in new if _NUMBER.fullmatch(u) or u.startswith('"'))
    unsupported = len(new) / len(got)
    return _recall(key, got) * 0.5 ** wrong_values * (1 - 0.5 * unsupported)


def _units(text: str) -> dict[str, int]:
    """Content units and their weights: quoted values and numbers (weight 3) whole, other content
    words (weight 1) lower-cased; function words and single letters dropped, unless they are all
    the text has (an option letter "B" is the whole answer)."""
    units: dict[str, int] = {}
    for value in _QUOTED.findall(text):
        units['"' + value.strip().lower() + '"'] = VALUE_WEIGHT
    for word in _WORD.findall(_QUOTED.sub(" ", text).lower()):
        if (word not in _STOP and len(word) > 1) or word.isdigit():
            units[word] = VALUE_WEIGHT if _NUMBER.fullmatch(word) else 1
    return units or {word: 1 for word in _WORD.findall(text.lower())}


def _beyond(question: str, text: str) -> dict[str, int]:
    """The units of `text` the question does not already name (all of them when it names every one)."""
    units, asked = _units(text), _units(question)
    return {u: w for u, w in units.items() if not _has(asked, u)} or units


def _same(a: str, b: str) -> bool:
    """Words are the same up to an ending (boils/boil, mitochondria/mitochondrion); values exactly."""
    if a == b:
        return True
    if a.startswith('"') or b.startswith('"') or _NUMBER.fullmatch(a) or _NUMBER.fullmatch(b):
        return False
    common = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))
    return common >= 4 and common >= 0.75 * min(len(a), len(b))


def _has(units: Mapping[str, int], unit: str) -> bool:
    return unit in units or any(_same(unit, u) for u in units)


def _recall(key: Mapping[str, int], got: Mapping[str, int]) -> float:
    total = sum(key.values())
    return sum(w for u, w in key.items() if _has(got, u)) / total if total else 0.0


def _looping(reply: str) -> float:
    """1 for a reply that does not repeat itself; down to 0 for one that loops a fragment."""
    tokens = _tokens(reply)
    if len(tokens) < 8:
        return 1.0
    return min(1.0, 2 * len(set(tokens)) / len(tokens))


def _form(reference: str, reply: str, format_ok: float | None, question: str) -> float:
    """0-1: the expected format (the scorer's check, else the reference's markers and balanced
    brackets; a marked final answer where the reference marks one), in words that belong to the
    question and reference, at a sensible length."""
    shape = format_ok if format_ok is not None else float(
        all(m in reply for m in _MARKERS if m in reference) and _balanced(reply))
    if _ANSWER_MARK.search(reference) and not _ANSWER_MARK.search(reply):
        shape *= 0.5
    if _has_value(_beyond(question, extract_answer(reference))) and not _has_value(_units(extract_answer(reply))):
        shape *= 0.5  # the answer asked for is a value (a year, a dose, a count) and the reply gives none
    got = _units(reply)
    known = {**_units(question), **_units(reference)}
    on_topic = sum(1 for u in got if _has(known, u)) / len(got) if got else 0.0
    ratio = len(_tokens(reply)) / max(1, len(_tokens(reference)))
    length = 1.0 if 0.25 <= ratio <= 4 else 0.6
    return shape * (0.2 + 0.8 * on_topic) * length


def _has_value(units: Mapping[str, int]) -> bool:
    return any(_NUMBER.fullmatch(u) for u in units)


def _tokens(text: str) -> list[str]:
    return _TOKEN.findall(text.lower())


def _balanced(text: str) -> bool:
    return all(text.count(a) == text.count(b) for a, b in _PAIRS)


def _scale(x: float) -> int:
    return max(1, min(10, round(1 + 9 * x)))


class OfflineJudgeClient(LocalChatClient):
    """A deterministic judge behind the ChatCompletionClient interface (see the module docstring).

    Bound to the run's scorer (`grounded`), it judges correctness the way the task type is scored:
    the task agent's exact action, the option letter, the final number, the label. Unbound, or for
    free text, it judges by answer support (`answer_support`)."""

    def __init__(self, scorer: Scorer | None = None) -> None:
        self.calls = 0
        self.scorer = scorer

    def grounded(self, scorer: Scorer | None) -> OfflineJudgeClient:
        """This judge scoring with `scorer` (the run's scenario scorer)."""
        return OfflineJudgeClient(scorer)

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
            content = json.dumps(heuristic_scores(parts["reference"], parts["reply"], parts["question"], self.scorer))
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
