"""A run's state as data: fixed wiring, the run so far, and the one attempt that is open.

    Wiring    how this run uses the machine and the terminal; never changes during the run
    Attempt   the open attempt, filled in as the Tuner, the Judge and the Planner act, then closed
              into an AttemptRecord (one ledger line, one memory document) by `Attempt.close`
    RunContext the run: what was asked (RunSpec), its data, base model and machine, the finished
              attempts, the base model's scores, and the open Attempt

A new attempt is a new `Attempt` object: nothing is reset by hand, so no field of one attempt can
leak into the next.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tunecrew.memory.ledger import Ledger
from tunecrew.memory.store import AttemptMemory
from tunecrew.tools.contracts import (
    AttemptRecord,
    BaseModelInfo,
    DatasetProfile,
    Decision,
    Diagnosis,
    DomainCard,
    EvalReport,
    Hardware,
    JudgeReport,
    LeakCheck,
    RunSpec,
    TrainConfig,
    TrainResult,
    TrialSummary,
)
from tunecrew.tools.diagnose import best_attempt
from tunecrew.tools.judge import JudgePanel
from tunecrew.tools.run_dir import AttemptDir, RunDir
from tunecrew.tools.scenario import Scenario, ScenarioData
from tunecrew.tools.throughput import MeasuredRate

__all__ = ["Attempt", "RunContext", "Trial", "Wiring"]


@dataclass(frozen=True)
class Wiring:
    """How the run uses this machine and the terminal: chosen at start (or resume), fixed after."""

    threads: int = 2  # torch threads for training and generation
    train_python: str | None = None  # interpreter for the training worker (an Unsloth venv); None: this one
    on_train_event: Callable[[dict[str, Any]], None] | None = None  # progress lines for the terminal
    interactive: bool = False  # a person reviews each Planner decision before it takes effect
    provider: str = "offline"  # who drives the agents in this process (label): each record says so
    parallel: int = 1  # --parallel: configs trained at once per attempt (a round of trials); 1: one at a time
    ray_address: str | None = None  # --ray-address: the Ray cluster the trials go to; None: this machine
    processes: int = 1  # --processes: data-parallel (DDP) processes per training run, sharing the threads


@dataclass
class Trial:
    """One config of a parallel round, trained beside the attempt's own (`--parallel`)."""

    number: int  # 0 is the Tuner's config (the attempt's own folder); siblings train in trials/<n>/
    config: TrainConfig
    result: TrainResult
    report: EvalReport | None = None  # evaluate scores every trial on the same split and seed

    def summary(self, chosen: bool) -> TrialSummary:
        r = self.result
        return TrialSummary(trial=self.number, config=self.config, status=r.status, steps=r.steps,
                            train_loss=r.train_loss, tokens_per_second=r.tokens_per_second,
                            wall_seconds=round(r.wall_seconds, 1), score=self.report.score if self.report else None,
                            adapter_path=r.adapter_path, chosen=chosen, error=(r.error or None) and r.error[:300])


@dataclass
class Attempt:
    """The open attempt. Each field is set once, by the tool that owns it, in this order."""

    number: int
    changes: dict[str, Any] = field(default_factory=dict)  # what the Planner (or a person) asked of it
    config: TrainConfig | None = None  # propose_config: the accepted config
    estimate: float | None = None  # propose_config: seconds it was estimated to train
    result: TrainResult | None = None  # train
    report: EvalReport | None = None  # evaluate (+ score_rubric)
    diagnosis: Diagnosis | None = None  # diagnose
    notes: list[str] = field(default_factory=list)  # fallbacks and human edits, saved with the record
    llm_steps: int = 0  # agent steps the provider's LLM answered
    fallback_steps: int = 0  # agent steps the offline policy answered after a failed LLM call
    trials: list[Trial] = field(default_factory=list)  # --parallel: every trial of the round, this one's included
    chosen_trial: int = 0  # which trial config/result/report stand for (the best score)

    @property
    def trained(self) -> bool:
        return self.result is not None

    def close(self, ctx: RunContext, decision: Decision) -> AttemptRecord:
        """The finished attempt as the ledger and memory hold it."""
        assert ctx.profile is not None and self.config is not None and self.result is not None
        return AttemptRecord(
            run_id=ctx.spec.run_id, attempt=self.number, scenario=ctx.spec.scenario, base_model=ctx.base.name,
            model_family=ctx.base.family, model_params=ctx.base.params, hardware=ctx.hardware,
            profile=ctx.profile.model_copy(update={"samples": ctx.profile.samples[:2]}), domain=ctx.domain,
            config=self.config, result=self.result, eval=self.report, diagnosis=self.diagnosis, decision=decision,
            notes=list(self.notes), provider=ctx.wiring.provider, llm_steps=self.llm_steps,
            fallback_steps=self.fallback_steps,
            trials=[t.summary(t.number == self.chosen_trial) for t in self.trials],
        )


@dataclass
class RunContext:
    """Everything one run knows. Tools read and write it; agents only see tool answers."""

    run: RunDir
    spec: RunSpec
    scenario: Scenario
    data: ScenarioData
    base: BaseModelInfo
    hardware: Hardware
    ledger: Ledger
    memory: AttemptMemory | None
    wiring: Wiring = field(default_factory=Wiring)
    # What the Domain Expert found; the tokenizer is the base model's, loaded once by profile_dataset.
    tokenizer: Any = None
    profile: DatasetProfile | None = None
    leak: LeakCheck | None = None
    domain: DomainCard | None = None
    # The run so far.
    records: list[AttemptRecord] = field(default_factory=list)  # finished attempts, as in the ledger
    current: Attempt = field(default_factory=lambda: Attempt(1))
    baseline: EvalReport | None = None  # the base model on the same split, scored once per run
    # Its replies, kept until the judge has read them: under a budget the base model is scored before
    # the first attempt (its time measured, not reserved) and judged with the first evaluation.
    baseline_replies: list[str] | None = None
    judge_panel: JudgePanel | None = None  # the LLM judge(s) of held-out replies; None: metrics only
    # The LLM that rewrites training requests (data.synthetic_source=llm): the Domain Expert's model,
    # without the offline fallback (a made-up rewrite is no rewrite); None on an offline run.
    rephraser: Any = None
    rephrased: list[dict[str, Any]] | None = None  # its rewrites, made once per run and reused by every attempt
    judge_baseline: JudgeReport | None = None  # the base model's verdicts, judged once per run
    guidance: list[str] = field(default_factory=list)  # what a person told the Planner
    proposed: Decision | None = None  # the Planner's decision awaiting a person's review
    rejections: int = 0  # refused proposals/decisions in a row, for the offline fallback
    stopped: bool = False
    fatal: Exception | None = None  # a failure no agent can fix (e.g. the ledger cannot be written)
    # Time.
    deadline: float | None = None  # time.monotonic() by which the whole run must end (--budget); None: no budget
    rate: MeasuredRate | None = None  # how fast this machine trains this model: timed steps, an attempt, or memory
    eval_seconds: float | None = None  # the last evaluation's wall time (model load included): reserved per attempt

    @property
    def time_left(self) -> float | None:
        return None if self.deadline is None else self.deadline - time.monotonic()

    @property
    def attempt_dir(self) -> AttemptDir:
        return self.run.attempt(self.current.number)

    @property
    def system_prompt(self) -> str:
        persona = self.domain.persona if self.domain else ""
        return self.scenario.system_prompt(persona)

    @property
    def best(self) -> AttemptRecord | None:
        """The best scored attempt the diagnosis did not reject: what the run hands back."""
        return best_attempt(self.records)

    def next_attempt(self, changes: dict[str, Any]) -> None:
        self.current = Attempt(self.current.number + 1, changes=dict(changes))
