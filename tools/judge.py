"""The LLM judge: held-out replies scored 1-10 on accuracy, reasoning, completeness and clarity.

Each judge model reads the Domain Expert's persona, the rubric, the question, the reference answer
and the model's reply, and answers with a JSON verdict whose schema is sent with the request
(structured output where the provider has it; the schema in the prompt and JSON parsed from the
text otherwise). A verdict that does not parse or breaks a bound is asked for again with the error
fed back; one that never parses is counted as `unparsed` and left out of the means. It is never
scored 0: a 0 would be a judgement nobody made. Several judges score the same samples, and their
agreement (mean |diff|, share within 1 point, Spearman) says how far any one of them can be trusted.

Agreement is not correctness: two judges can agree and both be wrong. So when an LLM judge is on
the panel, the panel first has every judge score a small slice of the calibration set for the run's
task type (tools/judge_calibration.py: right, subtly wrong, empty and garbage replies) and the
report carries each judge's AUROC right vs wrong beside its means.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import re
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from autogen_core.models import AssistantMessage, ChatCompletionClient, LLMMessage, SystemMessage, UserMessage
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .contracts import JudgeAgreement, JudgeReport, JudgeSummary, RubricScores, SampleVerdict
from .evaluate import Scorer

# The OpenAI client logs each structured-output reply with model_dump(), and pydantic warns that
# the `parsed` field (our JudgeVerdict) was typed None: noise about the log line, not the verdict.
warnings.filterwarnings("ignore", category=UserWarning,
                        message=r"Pydantic serializer warnings:[\s\S]*field_name='parsed'")

CRITERIA = ("accuracy", "reasoning", "completeness", "clarity")
DEFAULT_SAMPLES = 30
DEFAULT_RETRIES = 2
DEFAULT_CONCURRENCY = 4  # requests in flight across all judges: polite to rate limits, fast enough
CALIBRATION_SAMPLES = 8  # calibration replies per run: each costs an LLM judge a request (and its retries)
OFFLINE_JUDGE = "offline-heuristic"
MAX_FIELD_CHARS = 4000  # of a question/reference/reply shown to the judge: bounds the prompt's size

RUBRIC = """Score the model's reply on four criteria, each an integer from 1 (worst) to 10 (best):
- accuracy: is what the reply says or does correct, judged against the reference answer?
- reasoning: is the reply the right response to the question (sound steps, right action or tool)?
- completeness: does it cover everything the reference covers, with nothing required missing?
- clarity: is it well formed, in the expected format, concise and unambiguous?
The reference answer is one correct reply; a different reply that is equally correct scores as well."""

# The judge prompt's sections: the offline judge reads them back, so they are defined once, here.
TAGS = ("question", "reference", "reply")


class JudgeVerdict(BaseModel):
    """What a judge must answer. Its JSON schema is sent to the model."""

    model_config = ConfigDict(extra="forbid")

    rationale: str = Field(description="One or two sentences: what is right and wrong in the reply.")
    accuracy: int = Field(ge=1, le=10, description="Correctness against the reference answer, 1-10.")
    reasoning: int = Field(ge=1, le=10, description="Soundness of the response to the question, 1-10.")
    completeness: int = Field(ge=1, le=10, description="Coverage of what the reference covers, 1-10.")
    clarity: int = Field(ge=1, le=10, description="Form, format and concision, 1-10.")


@dataclass(frozen=True)
class JudgeSample:
    index: int  # row index in the held-out split
    question: str  # the conversation before the reply
    reference: str
    reply: str


def samples_from_rows(rows: Sequence[dict], replies: Sequence[str]) -> list[JudgeSample]:
    """Chat rows (the last message is the reference) and the model's replies, as judge samples."""
    if len(rows) != len(replies):
        raise ValueError(f"{len(rows)} held-out rows but {len(replies)} replies")
    out = []
    for i, (row, reply) in enumerate(zip(rows, replies, strict=True)):
        turns = [m for m in row["messages"][:-1] if m["role"] != "system"]
        question = "\n".join(f"{m['role']}: {m['content']}" for m in turns) if len(turns) > 1 else turns[-1]["content"]
        out.append(JudgeSample(index=i, question=question, reference=row["messages"][-1]["content"], reply=reply))
    return out


def select(count: int, n: int, seed: int) -> tuple[list[int], str]:
    """`n` indices out of `count`, the same for the same seed (so base and attempts share samples)."""
    if n < 1:
        raise ValueError(f"judge samples n={n} must be at least 1")
    if count < n:
        return list(range(count)), f"all {count} held-out rows (fewer than the {n} asked for)"
    if count == n:
        return list(range(count)), f"all {count} held-out rows"
    return sorted(random.Random(seed).sample(range(count), n)), f"{n} of {count} held-out rows, drawn with seed {seed}"


# --------------------------------------------------------------------------- prompt and parsing


def schema_text() -> str:
    return json.dumps(JudgeVerdict.model_json_schema(), separators=(",", ":"))


def judge_messages(persona: str, sample: JudgeSample) -> list[LLMMessage]:
    """The persona sets the judge's expertise; the rubric and schema say what to answer."""
    system = (f"{persona.strip()}\n\n" if persona.strip() else "") + (
        "You now act as a strict, impartial judge of another model's replies in this domain.\n"
        f"{RUBRIC}\nAnswer with only a JSON object that matches this JSON schema, no other text:\n{schema_text()}")
    parts = [f"<{tag}>\n{_clip(text)}\n</{tag}>"
             for tag, text in zip(TAGS, (sample.question, sample.reference, sample.reply), strict=True)]
    user = "\n".join(parts) + "\n\nJudge the reply against the question and the reference answer."
    return [SystemMessage(content=system), UserMessage(content=user, source="user")]


def read_judge_prompt(text: str) -> dict[str, str]:
    """The question, reference and reply sections of a judge prompt (for the offline judge)."""
    out = {}
    for tag in TAGS:
        start, end = text.rfind(f"<{tag}>\n"), text.rfind(f"\n</{tag}>")
        out[tag] = text[start + len(tag) + 3 : end] if 0 <= start < end else ""
    return out


def _clip(text: str) -> str:
    return text if len(text) <= MAX_FIELD_CHARS else text[:MAX_FIELD_CHARS] + " [...]"


_FENCE = re.compile(r"^```(?:json)?\s*|\s*```$")


def parse_verdict(text: str) -> JudgeVerdict:
    """A verdict from a judge's reply text; ValueError with a message fit to feed back."""
    body = _FENCE.sub("", text.strip())
    start, end = body.find("{"), body.rfind("}")
    if start < 0 or end < start:
        raise ValueError(f"no JSON object in the reply {text[:200]!r}")
    try:
        data = json.loads(body[start : end + 1])
    except json.JSONDecodeError as exc:
        raise ValueError(f"the JSON does not parse ({exc.msg} at char {exc.pos})") from exc
    try:
        return JudgeVerdict.model_validate(data)
    except ValidationError as exc:
        raise ValueError(_validation_message(exc)) from exc


def _validation_message(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'verdict'}: {e['msg']}"
                     + (f" (got {e['input']!r})" if not isinstance(e.get("input"), dict) else "")
                     for e in exc.errors())


def _error_text(exc: Exception) -> str:
    if isinstance(exc, ValidationError):  # raised inside the OpenAI client's structured-output parse
        return _validation_message(exc)
    if isinstance(exc, ValueError):
        return str(exc)
    return f"{type(exc).__name__}: {str(exc)[:300]}"


# --------------------------------------------------------------------------- judging

_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9_-]+")


def speaker_name(label: str) -> str:
    """A judge label (`openai:gpt-4.1-mini`, `llamacpp:/models/x.gguf`) as a message source name: the
    OpenAI client sends it as `name` and refuses anything outside [A-Za-z0-9_-] or over 64 characters."""
    return _UNSAFE_NAME.sub("_", label).strip("_")[-64:] or "judge"


async def judge_one(
    name: str, client: ChatCompletionClient, sample: JudgeSample, persona: str, *,
    retries: int = DEFAULT_RETRIES, limit: asyncio.Semaphore | None = None,
) -> SampleVerdict:
    """One judge on one sample: ask, parse, and on failure ask again with the error, `retries` times."""
    messages = judge_messages(persona, sample)
    structured = bool(client.model_info.get("structured_output", False))
    limit = limit or asyncio.Semaphore(1)
    error = ""
    for attempt in range(1, retries + 2):
        raw = ""
        try:
            async with limit:
                result = await client.create(messages, json_output=JudgeVerdict if structured else None)
            if not isinstance(result.content, str):
                raise ValueError("the reply was a tool call, not a JSON verdict")
            raw = result.content
            verdict = parse_verdict(raw)
            return SampleVerdict(sample=sample.index, judge=name, tries=attempt, rationale=verdict.rationale[:1000],
                                 scores={c: getattr(verdict, c) for c in CRITERIA})
        except Exception as exc:  # any failure of one request is retried, then counted
            error = _error_text(exc)
        messages = [*messages, *([AssistantMessage(content=raw, source=speaker_name(name))] if raw else []),
                    UserMessage(source="user", content=f"Your verdict could not be used: {error}. Answer again with "
                                                       "only the JSON object, every score an integer from 1 to 10.")]
    return SampleVerdict(sample=sample.index, judge=name, tries=retries + 1, error=error[:500])


async def judge_samples(
    judges: dict[str, ChatCompletionClient],
    samples: Sequence[JudgeSample],
    persona: str,
    n: int = DEFAULT_SAMPLES,
    seed: int = 0,
    *,
    subject: str = "",
    split: str = "",
    retries: int = DEFAULT_RETRIES,
    concurrency: int = DEFAULT_CONCURRENCY,
) -> JudgeReport:
    """Every judge on the same `n` samples chosen by `seed`; means, unparsed counts and agreement."""
    if not judges:
        raise ValueError("judge_samples needs at least one judge")
    started = time.monotonic()
    chosen, selection = select(len(samples), n, seed)
    limit = asyncio.Semaphore(max(1, concurrency))
    jobs = [judge_one(name, client, samples[i], persona, retries=retries, limit=limit)
            for name, client in judges.items() for i in chosen]
    verdicts = list(await asyncio.gather(*jobs))
    names = list(judges)
    agreement = judge_agreement(verdicts, names)
    return JudgeReport(
        subject=subject, split=split, seed=seed, samples=len(chosen), available=len(samples), selection=selection,
        persona=persona, criteria=list(CRITERIA), judges=summarize(verdicts, names), verdicts=verdicts,
        agreement=agreement, agreement_summary=agreement_line(agreement), wall_seconds=time.monotonic() - started,
    )


def summarize(verdicts: Sequence[SampleVerdict], names: Sequence[str]) -> list[JudgeSummary]:
    out = []
    for name in names:
        mine = [v for v in verdicts if v.judge == name]
        parsed = [v.scores for v in mine if v.scores is not None]
        means = {c: sum(s[c] for s in parsed) / len(parsed) for c in CRITERIA} if parsed else {}
        out.append(JudgeSummary(judge=name, means=means, judged=len(parsed), unparsed=len(mine) - len(parsed)))
    return out


def judge_agreement(verdicts: Sequence[SampleVerdict], names: Sequence[str]) -> list[JudgeAgreement]:
    """Per judge pair and criterion, on the samples both scored; 'all' pools the four criteria."""
    import pandas as pd

    by_judge = {name: {v.sample: v.scores for v in verdicts if v.judge == name and v.scores is not None}
                for name in names}
    out = []
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            common = sorted(set(by_judge[a]) & set(by_judge[b]))
            for criterion in (*CRITERIA, "all"):
                keys = CRITERIA if criterion == "all" else (criterion,)
                x = pd.Series([by_judge[a][s][k] for s in common for k in keys], dtype=float)
                y = pd.Series([by_judge[b][s][k] for s in common for k in keys], dtype=float)
                out.append(JudgeAgreement(judges=[a, b], criterion=criterion, samples=len(common),
                                          **_agree(x, y)))
    return out


def _agree(x: Any, y: Any) -> dict[str, float | None]:
    if len(x) == 0:
        return {"mean_abs_diff": None, "within_one": None, "spearman": None}
    diff = (x - y).abs()
    # Spearman = Pearson on average ranks (pandas' own spearman needs scipy, which is not a dependency).
    rho = x.rank().corr(y.rank()) if len(x) > 1 else float("nan")
    return {"mean_abs_diff": float(diff.mean()), "within_one": float((diff <= 1).mean()),
            "spearman": None if rho != rho else float(rho)}


def agreement_line(agreement: Sequence[JudgeAgreement]) -> str:
    pooled = [a for a in agreement if a.criterion == "all"]
    return "; ".join(
        f"{a.judges[0]} vs {a.judges[1]} on {a.samples} samples: mean |diff| {_fmt(a.mean_abs_diff)}, "
        f"{_fmt(a.within_one, '.0%')} within 1 point, Spearman {_fmt(a.spearman)} (criteria pooled)"
        for a in pooled)


def _fmt(value: float | None, spec: str = ".2f") -> str:
    return "n/a" if value is None else format(value, spec)


def rubric_of(report: JudgeReport) -> RubricScores | None:
    """The judges' means (averaged over judges that parsed anything) as the EvalReport's rubric."""
    parsed = [j for j in report.judges if j.judged]
    if not parsed:
        return None
    means = {c: sum(j.means[c] for j in parsed) / len(parsed) for c in CRITERIA}
    counts = ", ".join(f"{j.judge} n={j.judged}" + (f" ({j.unparsed} unparsed)" if j.unparsed else "")
                       for j in report.judges)
    explanation = f"LLM judge on {report.split} ({report.selection}): {counts}." + (
        f" Agreement: {report.agreement_summary}." if report.agreement_summary else "") + (
        f" Calibration: {report.calibration}." if report.calibration else "")
    return RubricScores(**means, judge=" + ".join(j.judge for j in parsed), samples=report.samples,
                        explanation=explanation[:2000])


def compact(report: JudgeReport) -> dict[str, Any]:
    """What the Judge agent reads: means, counts and agreement, not every verdict."""
    return {"subject": report.subject, "samples": report.samples, "of": report.available, "seed": report.seed,
            "judges": {j.judge: {"means": {c: round(v, 2) for c, v in j.means.items()}, "judged": j.judged,
                                 "unparsed": j.unparsed} for j in report.judges},
            **({"agreement": report.agreement_summary} if report.agreement_summary else {}),
            **({"calibration": report.calibration} if report.calibration else {})}


# --------------------------------------------------------------------------- the run's panel


@runtime_checkable
class Groundable(Protocol):
    """A judge that can score with the run's own scorer (the offline judge): `grounded` returns it so."""

    def grounded(self, scorer: Scorer | None) -> ChatCompletionClient: ...


class JudgePanel:
    """The run's judges and how many samples each scores. The crew's evaluate tool awaits it on the
    crew's own event loop, where the judges' HTTP clients live; the runner closes it there too."""

    def __init__(self, judges: dict[str, ChatCompletionClient], n: int = DEFAULT_SAMPLES,
                 retries: int = DEFAULT_RETRIES, concurrency: int = DEFAULT_CONCURRENCY):
        if not judges:
            raise ValueError("a judge panel needs at least one judge")
        self.judges, self.n, self.retries, self.concurrency = judges, n, retries, concurrency
        self.calibration = ""  # each judge's calibration AUROC, once measured (see calibrate)

    @property
    def names(self) -> list[str]:
        return list(self.judges)

    @property
    def has_llm(self) -> bool:
        return any(not isinstance(c, Groundable) for c in self.judges.values())

    def grounded(self, scorer: Scorer | None) -> dict[str, ChatCompletionClient]:
        """The judges, the offline one scoring with `scorer`; LLM judges as they are."""
        return {name: c.grounded(scorer) if isinstance(c, Groundable) else c for name, c in self.judges.items()}

    async def judge(self, samples: Sequence[JudgeSample], persona: str, *, seed: int, subject: str, split: str,
                    scorer: Scorer | None = None, task_type: str | None = None,
                    cache: Path | None = None) -> JudgeReport:
        """The panel on `samples`. With `task_type` and an LLM judge on the panel, the judges are
        calibrated first (once per run, cached at `cache`) and the report carries the result."""
        judges = self.grounded(scorer)
        if task_type and self.has_llm and not self.calibration:
            self.calibration = await self.calibrate(judges, task_type, persona, cache)
        report = await judge_samples(judges, samples, persona, self.n, seed, subject=subject, split=split,
                                     retries=self.retries, concurrency=self.concurrency)
        return report.model_copy(update={"calibration": self.calibration}) if self.calibration else report

    async def calibrate(self, judges: dict[str, ChatCompletionClient], task_type: str, persona: str,
                        cache: Path | None = None, limit: int = CALIBRATION_SAMPLES) -> str:
        """Each judge's accuracy AUROC on `limit` calibration replies of `task_type`, as one line; read
        from `cache` when a resumed run measured it already, written there otherwise."""
        from .judge_calibration import CalibrationReport, calibrate, calibration_items, calibration_line, spread

        report: CalibrationReport | None = None
        if cache is not None and cache.exists():
            with contextlib.suppress(OSError, ValueError):
                report = CalibrationReport.model_validate_json(cache.read_text(encoding="utf-8"))
        if report is None or set(report.unparsed) != set(judges):
            try:
                items = spread(calibration_items(task_type), limit)
                report = await calibrate(judges, items, persona, retries=self.retries, concurrency=self.concurrency)
            except Exception as exc:  # the judge's means still stand; the report says they are uncalibrated
                return f"calibration failed ({type(exc).__name__}: {str(exc)[:200]}): these scores are uncalibrated"
            if cache is not None:
                with contextlib.suppress(OSError):
                    cache.write_text(report.model_dump_json(indent=2), encoding="utf-8")
        return "; ".join(calibration_line(report, name) for name in judges)

    async def close(self) -> None:
        for client in self.judges.values():
            with contextlib.suppress(Exception):  # closing is best effort at the end of a run
                await client.close()
