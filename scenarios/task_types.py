"""What kind of task a dataset is, from its rows, and the scorer that task must be measured with.

    multiple-choice  options in the prompt, a letter in the answer   letter accuracy
    numeric          a number as the final answer (GSM8K `#### 72`)  the number, not its tokens
    classification   a few short labels (yes/no/maybe, sentiment)    accuracy + the majority-class baseline
    free-text        anything else                                   answer F1 / ROUGE-L (+ the LLM judge)

Token F1 was the one metric for every dataset: a wrong number "#### 27" against "#### 72" scored
0.889, "D. Parvovirus B19" was not reduced to "D", and a yes/no set showed no baseline. Detection
states its evidence; `--task-type` overrides it; run.json records it so `resume` scores the same.
Empty references are not scored: each scorer returns no values for them, and the evaluation
counts them as excluded.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal, get_args

from tunecrew.tools.evaluate import SampleScore, Scorer
from tunecrew.tools.scenario import Scenario, ScenarioData
from tunecrew.tools.text_metrics import extract_answer, normalize_answer

from .dataset import score_reply

__all__ = ["TASK_TYPES", "Detection", "TaskType", "detect_task_type", "specialise"]

TaskType = Literal["multiple-choice", "numeric", "classification", "free-text"]
TASK_TYPES: tuple[str, ...] = get_args(TaskType)
PRIMARY = {"multiple-choice": "answer_accuracy", "numeric": "answer_accuracy", "classification": "answer_accuracy",
           "free-text": "answer_f1"}
SHARE = 0.8  # of references (and prompts) that must look the part: real data has a few odd rows
MAX_LABELS = 20
MAX_LABEL_WORDS = 4

_OPTION_LINE = re.compile(r"^\s*\(?([A-J])[.):]\s+\S", re.MULTILINE)
_LETTER = re.compile(r"^\(?([A-J])\)?(?:[.):]|\s*$|\s+\S)")
_LETTER_IN_REPLY = re.compile(r"(?:answer|option|choice)\s*(?:is|:)?\s*\(?([A-J])\b\)?|^\(?([A-J])[.):]?(?:\s|$)",
                              re.IGNORECASE | re.MULTILINE)
_NUMBER = r"[-+]?\$?\d[\d,]*(?:\.\d+)?"
_HASHES = re.compile(r"####\s*(" + _NUMBER + ")")
_BOXED = re.compile(r"\\boxed\{\s*(" + _NUMBER + r")\s*\}")
_ANY_NUMBER = re.compile(_NUMBER)


@dataclass(frozen=True)
class Detection:
    """The task type and why: the evidence goes into the run's notes and its report."""

    task_type: TaskType
    evidence: str
    labels: tuple[str, ...] = ()  # classification: the normalised labels seen in training
    majority: str | None = None  # classification: the most frequent training label (the trivial baseline)

    @property
    def primary_metric(self) -> str:
        return PRIMARY[self.task_type]


# --------------------------------------------------------------------------- reading answers


def choice_letter(reference: str) -> str | None:
    """The option letter a reference gives: "D", "(D)", "D. Parvovirus B19", or after </think>."""
    match = _LETTER.match(extract_answer(reference).strip())
    return match.group(1).upper() if match else None


def reply_letter(reply: str) -> str | None:
    """The option letter a generated reply chose: its final answer, "the answer is (C)", or a
    line that starts with a letter; None when it names none."""
    final = extract_answer(reply).strip()
    if match := _LETTER.match(final):
        return match.group(1).upper()
    found = [m.group(1) or m.group(2) for m in _LETTER_IN_REPLY.finditer(final)]
    return found[-1].upper() if found else None


def final_number(text: str, *, strict: bool = False) -> float | None:
    """The final numeric answer: after `####`, inside `\\boxed{}`, the final answer when it is a
    number, else (not strict: a reply) the last number in the text."""
    for pattern in (_HASHES, _BOXED):
        if found := pattern.findall(text):
            return _as_number(found[-1])
    answer = extract_answer(text).strip().rstrip(".")
    if re.fullmatch(_NUMBER, answer):
        return _as_number(answer)
    if strict:
        return None
    numbers = _ANY_NUMBER.findall(extract_answer(text))
    return _as_number(numbers[-1]) if numbers else None


def _as_number(text: str) -> float | None:
    try:
        return float(text.replace(",", "").replace("$", ""))
    except ValueError:
        return None


def _label(text: str) -> str:
    return normalize_answer(extract_answer(text))


# --------------------------------------------------------------------------- detection


def _reference(row: dict) -> str:
    return str(row["messages"][-1].get("content") or "")


def _prompt(row: dict) -> str:
    users = [m for m in row["messages"][:-1] if m.get("role") == "user"]
    return str(users[-1].get("content") or "") if users else ""


def detect_task_type(rows: Sequence[dict]) -> Detection:
    """The task type of training rows (chat messages, the reference last), with its evidence."""
    sample = [r for r in rows[:2000] if _reference(r).strip()]
    n = len(sample)
    if n == 0:
        return Detection("free-text", "no non-empty reference to look at")
    options = sum(len(set(_OPTION_LINE.findall(_prompt(r)))) >= 2 for r in sample)
    letters = sum(choice_letter(_reference(r)) is not None for r in sample)
    if options >= SHARE * n and letters >= SHARE * n:
        return Detection("multiple-choice", f"{options} of {n} prompts list lettered options and {letters} of {n} "
                                            "answers give a letter")
    labels = Counter(_label(_reference(r)) for r in sample)
    short = sum(c for label, c in labels.items() if 0 < len(label.split()) <= MAX_LABEL_WORDS)
    few_labels = n >= 10 and len(labels) <= min(MAX_LABELS, max(2, n // 5)) and short >= SHARE * n
    numbers = sum(final_number(_reference(r), strict=True) is not None for r in sample)
    # SST-2's 0/1: bare numbers from a handful of values are class codes, not quantities to compute.
    codes = few_labels and all(label.lstrip("-").isdigit() for label in labels)
    if numbers >= SHARE * n and not codes:
        return Detection("numeric", f"{numbers} of {n} answers end in a number (#### N, \\boxed{{N}} or the "
                                    "number alone)")
    if few_labels:
        majority, count = labels.most_common(1)[0]
        return Detection("classification",
                         f"{len(labels)} distinct short answers over {n} rows ({', '.join(sorted(labels)[:6])}"
                         f"{', …' if len(labels) > 6 else ''}); the majority class {majority!r} is {count / n:.0%}",
                         labels=tuple(sorted(labels)), majority=majority)
    return Detection("free-text", f"{len(labels)} distinct answers over {n} rows: no options, numbers or few labels")


def forced(task_type: str, rows: Sequence[dict]) -> Detection:
    """`--task-type` (or run.json's record): the type as given; labels still come from the rows."""
    if task_type not in TASK_TYPES:
        raise ValueError(f"task type {task_type!r}: choose one of {', '.join(TASK_TYPES)}")
    found = detect_task_type(rows)
    if task_type == "classification":
        labels = Counter(_label(_reference(r)) for r in rows[:2000] if _reference(r).strip())
        majority = labels.most_common(1)[0][0] if labels else None
        return Detection("classification", "given", labels=tuple(sorted(labels)), majority=majority)
    why = "as detected" if found.task_type == task_type else f"given (detection said {found.task_type})"
    return Detection(task_type, why)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- scorers


def _empty() -> SampleScore:
    return SampleScore(values={}, reason="empty reference: not scored")


def score_choice(expected: str, got: str) -> SampleScore:
    if not expected.strip():
        return _empty()
    want, chose = choice_letter(expected), reply_letter(got)
    if want is None:
        return SampleScore(values={}, reason="reference gives no option letter: not scored")
    right = chose == want
    reason = "" if right else (f"chose {chose}, expected {want}" if chose else f"no option letter; expected {want}")
    return SampleScore(values={"answer_accuracy": float(right), "format_compliance": float(chose is not None)},
                       reason=reason)


def score_number(expected: str, got: str) -> SampleScore:
    if not expected.strip():
        return _empty()
    want, said = final_number(expected), final_number(got)
    if want is None:
        return SampleScore(values={}, reason="reference has no number: not scored")
    right = said is not None and abs(said - want) <= 1e-6 * max(1.0, abs(want))
    reason = "" if right else (f"answered {said:g}, expected {want:g}" if said is not None
                               else f"no number in the reply; expected {want:g}")
    return SampleScore(values={"answer_accuracy": float(right), "format_compliance": float(said is not None)},
                       reason=reason)


def label_scorer(labels: tuple[str, ...], majority: str | None) -> Scorer:
    """Accuracy over labels, and beside it the majority-class baseline on the same rows: what a
    model that always answers the most frequent training label would score."""
    known = set(labels)

    def score(expected: str, got: str) -> SampleScore:
        if not expected.strip():
            return _empty()
        want, said = _label(expected), _label(got)
        if said not in known:  # "The answer is yes, because ..." -> the one known label it names
            named = [label for label in known if re.search(rf"\b{re.escape(label)}\b", said)]
            said = named[0] if len(named) == 1 else said
        right = said == want
        values = {"answer_accuracy": float(right), "format_compliance": float(said in known),
                  "majority_baseline": float(want == majority)}
        return SampleScore(values=values, reason="" if right else f"answered {said[:60]!r}, expected {want!r}")

    return score


def scorer_for(detection: Detection) -> Scorer:
    if detection.task_type == "multiple-choice":
        return score_choice
    if detection.task_type == "numeric":
        return score_number
    if detection.task_type == "classification":
        return label_scorer(detection.labels, detection.majority)
    return score_reply  # answer F1 (excludes empty references itself)


def specialise(scenario: Scenario, data: ScenarioData,
               task_type: str | None = None) -> tuple[Scenario, Detection | None]:
    """A dataset scenario scored the way its task must be; other scenarios (the task agent, with
    its own contract scorer) unchanged, with None."""
    if scenario.scorer is not score_reply:
        return scenario, None
    detection = forced(task_type, data.train) if task_type else detect_task_type(data.train)
    if detection.task_type == "free-text":
        return scenario, detection
    # The offline judge's criteria read these metrics; answer_f1 and rouge_l are not computed here.
    rubric = {"accuracy": "answer_accuracy", "reasoning": "answer_accuracy", "completeness": "format_compliance",
              "clarity": "format_compliance"}
    return replace(scenario, scorer=scorer_for(detection), primary_metric=detection.primary_metric,
                   rubric_metrics=rubric), detection
