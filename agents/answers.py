"""What each agent tool answers, as pydantic models.

An LLM reads them as JSON (`AnswerTool` serialises them); the offline policy and the toolkit's own
fallbacks read the same models, typed, so a field renamed here is renamed for every reader and a
reader can never depend on a key that is not there.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from tunecrew.tools.contracts import (
    BaseModelInfo,
    DatasetProfile,
    Diagnosis,
    Hardware,
    LeakCheck,
    TrainConfig,
)

__all__ = [
    "Answer", "BestSoFar", "DecideAnswer", "DiagnoseAnswer", "DomainAnswer", "DomainCandidate", "DomainCandidates",
    "EvalAnswer", "ProfileAnswer", "ProposalAnswer", "RateInfo", "Recalled", "RubricAnswer", "SearchAnswer",
    "ToolError", "TrainAnswer", "TuningBrief",
]


class Answer(BaseModel):
    """Every answer: extra keys are refused, so a reader's typo fails in tests, not in a run."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class ToolError(Answer):
    """A tool that cannot act yet (wrong order, nothing to act on): what to do instead."""

    error: str


class ProfileAnswer(Answer):
    profile: DatasetProfile
    heldout_rows: int
    leak_check: LeakCheck
    leak_check_passed: bool
    base_model: BaseModelInfo


class DomainCandidate(Answer):
    domain: str
    score: float
    persona: str
    evidence: list[str]


class DomainCandidates(Answer):
    candidates: list[DomainCandidate]
    scenario_hint: str | None = None


class DomainAnswer(Answer):
    accepted: bool
    system_prompt: str | None = None
    errors: list[str] = []


class Recalled(Answer):
    """A similar past attempt from memory."""

    similarity: float
    worked: bool
    summary: str
    steps_from_base: int | None = None  # optimizer steps from the base model to its adapter
    config: TrainConfig
    score: float | None = None
    diagnosis: str | None = None


class RateInfo(Answer):
    """The measured training rate (tools/throughput.MeasuredRate), for the brief."""

    tokens_per_second: float
    startup_seconds: float
    source: str


class TuningBrief(Answer):
    """What the Tuner decides from: the data, the model, the machine, this run so far, and memory."""

    attempt: int
    max_attempts: int
    target: float
    primary_metric: str
    seed: int = 0  # --seed: every proposed config trains with it
    profile: DatasetProfile = Field(description="The training data's profile (sample rows left out).")
    system_prompt_tokens: int = 0  # the persona is prepended to every row: it counts toward seq length
    base_model: BaseModelInfo
    hardware: Hardware
    previous_config: TrainConfig | None = None
    previous_outcome: str | None = None
    previous_steps: int | None = None  # optimizer steps from the base model to the previous attempt's adapter
    previous_ok: bool = False  # the previous attempt saved an adapter that a retry can continue
    planner_changes: dict[str, Any] = {}
    guidance: list[str] = []
    recalled: list[Recalled] = []
    # Time: what is left of --budget, what one evaluation costs, and the measured training rate.
    time_left_s: float | None = None
    eval_reserve_s: float | None = None  # this attempt's evaluation (the base model's too, before it is scored)
    next_eval_s: float | None = None  # one more attempt's evaluation: what a first attempt leaves for a retry
    tokens_per_row: float | None = None  # a training row's mean tokens, system prompt and chat markup included
    rate: RateInfo | None = None
    # --attempt-seconds: the train tool stops a run there, so the policy's first attempt ends its schedule inside it
    attempt_cap_s: float | None = None


class SearchAnswer(Answer):
    suggested: TrainConfig
    sampler: str
    trials_seen: int
    best_so_far: dict[str, Any] | None = None
    space: dict[str, Any]
    why: str
    next: str


class ProposalAnswer(Answer):
    accepted: bool
    attempt: int | None = None
    estimate: dict[str, Any] | None = None  # tools/feasibility.Feasibility: memory, seconds, why
    errors: list[str] = []
    tries_left: int | None = None
    fallback: str | None = None  # set when the offline policy's config replaced refused proposals
    config: TrainConfig | None = None  # the config accepted in that case


class TrainAnswer(Answer):
    attempt: int
    status: str
    steps: int = 0
    first_loss: float | None = None
    train_loss: float | None = None
    eval_loss: float | None = None
    tokens_per_second: float | None = None
    model_flops_utilization: float | None = None
    wall_seconds: float = 0.0
    estimated_seconds: float | None = None
    estimate_error: str | None = None
    error: str | None = None
    # --parallel: the round's other trials (trial, learning_rate, lora_rank, status, steps, train_loss)
    trials: list[dict[str, Any]] | None = None


class EvalAnswer(Answer):
    split: str
    samples: int
    seed: int
    metrics: dict[str, float]
    base_model_metrics: dict[str, float]
    primary_metric: str
    target: float
    groups: dict[str, Any] = {}
    failures: list[dict[str, Any]] = []
    rubric_metrics: dict[str, str] = {}
    llm_judge: dict[str, Any] | None = None
    llm_judge_base_model: dict[str, Any] | None = None
    # --parallel: every trial's score on this split; the metrics above are the chosen (best) trial's
    trials: list[dict[str, Any]] | None = None


class RubricAnswer(Answer):
    accepted: bool
    errors: list[str] = []
    rubric_mean: float | None = None
    llm_judge_mean: float | None = None
    llm_judge: str | None = None


class BestSoFar(Answer):
    attempt: int
    score: float | None


class DiagnoseAnswer(Answer):
    attempt: int
    max_attempts: int
    target: float
    score: float | None = None
    best_so_far: BestSoFar | None = None
    diagnosis: Diagnosis
    guidance: list[str] = []
    time_left_s: float | None = None
    min_attempt_s: float | None = None
    trials: list[dict[str, Any]] | None = None  # --parallel: the round's trials, to decide from all of them


class DecideAnswer(Answer):
    accepted: bool
    errors: list[str] = []
    tries_left: int | None = None
    awaiting_review: bool = False
    recorded: int | None = None
    next_attempt: int | None = None
    next: str | None = None

