"""The typed tools each agent may call, bound to one run's state.

Agents decide; these functions act. Each one validates its arguments (pydantic bounds, budget,
order of steps) and answers with JSON the agent can read, including the reason when it refuses,
so an LLM that proposes `learning_rate=10` gets a correctable message instead of a broken run.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Annotated, Any, Callable, Literal

from autogen_core.tools import FunctionTool
from pydantic import BaseModel, ConfigDict, ValidationError

from tunecrew.agents import policy
from tunecrew.agents.review import Review
from tunecrew.memory.ledger import Ledger, LedgerError
from tunecrew.memory.store import AttemptMemory, recall_query
from tunecrew.scenarios.base import Scenario, ScenarioData
from tunecrew.tools import data as data_tools
from tunecrew.tools.contracts import (
    AttemptRecord, BaseModelInfo, DatasetProfile, Decision, Diagnosis, DomainCard, EvalReport, Hardware,
    JudgeReport, LeakCheck, RubricScores, RunSpec, TrainConfig, TrainResult,
)
from tunecrew.tools.diagnose import diagnose as diagnose_attempt
from tunecrew.tools.domain import detect_domain as detect_domain_candidates
from tunecrew.tools.evaluate import evaluate_with_replies
from tunecrew.tools.evaluate import load_model
from tunecrew.tools.feasibility import check_feasibility
from tunecrew.tools.judge import JudgePanel, compact, rubric_of, samples_from_rows
from tunecrew.tools.search import suggest as search_suggest
from tunecrew.tools.throughput import MeasuredRate, error_share, model_flops_utilization, rate_of
from tunecrew.tools.train import RESULT_FILE, TrainJob, run_training

log = logging.getLogger("tunecrew")

DOMAIN_EXPERT, TUNER, JUDGE, PLANNER, HUMAN = "DomainExpert", "Tuner", "Judge", "Planner", "Human"
MAX_REJECTIONS = 3  # refused proposals before the offline policy's answer is used (and logged)
# ChatML wraps each of a row's three turns in `<|im_start|>role\n ... <|im_end|>\n`: ~4 tokens each.
CHAT_MARKUP_TOKENS = 12
PROBE_RATE_DISCOUNT = 0.85
RATE_PROBE_STEPS = 4  # timed steps that measure the training rate when nothing else has
# Before anything was evaluated: reserve this share of the budget for one evaluation.
EVAL_RESERVE_SHARE = 0.12


@dataclass
class RunContext:
    """Everything one run knows. Tools read and write it; agents only see tool answers."""

    run_dir: Path
    spec: RunSpec
    scenario: Scenario
    data: ScenarioData
    base: BaseModelInfo
    hardware: Hardware
    ledger: Ledger
    memory: AttemptMemory | None
    threads: int = 2
    on_train_event: Callable[[dict[str, Any]], None] | None = None
    train_python: str | None = None  # interpreter for the training worker (an Unsloth venv); None: this one
    tokenizer: Any = None  # the base model's, loaded once by profile_dataset
    # state of the run, filled in as agents act
    profile: DatasetProfile | None = None
    leak: LeakCheck | None = None
    domain: DomainCard | None = None
    attempt: int = 1
    config: TrainConfig | None = None
    result: TrainResult | None = None
    report: EvalReport | None = None
    diagnosis: Diagnosis | None = None
    pending_changes: dict[str, Any] = field(default_factory=dict)
    guidance: list[str] = field(default_factory=list)
    records: list[AttemptRecord] = field(default_factory=list)
    stopped: bool = False
    baseline: EvalReport | None = None  # the base model on the same split, scored once per run
    judge_panel: JudgePanel | None = None  # the LLM judge(s) of held-out replies; None: metrics only
    judge_baseline: JudgeReport | None = None  # the base model's verdicts, judged once per run
    interactive: bool = False  # a person reviews each Planner decision before it takes effect
    proposed: Decision | None = None  # the Planner's decision awaiting that review
    rejections: int = 0  # refused proposals/decisions in a row, for the offline fallback
    fatal: Exception | None = None  # a failure no agent can fix (e.g. the ledger cannot be written)
    notes: list[str] = field(default_factory=list)  # fallbacks and human edits, saved with the attempt
    deadline: float | None = None  # time.monotonic() by which the whole run must end (--budget); None: no budget
    rate: MeasuredRate | None = None  # how fast this machine trains this model: timed steps, an attempt, or memory
    eval_seconds: float | None = None  # the last evaluation's wall time (model load included): reserved per attempt
    estimate: float | None = None  # seconds the accepted config was estimated to train

    @property
    def time_left(self) -> float | None:
        return None if self.deadline is None else self.deadline - time.monotonic()

    @property
    def train_file(self) -> Path:
        return self.run_dir / "data" / "train.jsonl"

    @property
    def attempt_dir(self) -> Path:
        return self.run_dir / "attempts" / str(self.attempt)

    @property
    def system_prompt(self) -> str:
        persona = self.domain.persona if self.domain else ""
        return self.scenario.system_prompt(persona)

    @property
    def baseline_system_prompt(self) -> str:
        """The prompt-only baseline's: the persona and the contract spelled out for the untuned model."""
        persona = self.domain.persona if self.domain else ""
        return self.scenario.system_prompt(persona, baseline=True)

    @property
    def best(self) -> AttemptRecord | None:
        scored = [r for r in self.records if r.score is not None]
        return max(scored, key=lambda r: r.score) if scored else None


class TuningBrief(BaseModel):
    """What the Tuner decides from: the data, the model, the machine, this run so far, and memory."""

    model_config = ConfigDict(protected_namespaces=())

    attempt: int
    max_attempts: int
    target: float
    primary_metric: str
    seed: int = 0  # --seed: every proposed config trains with it
    profile: dict[str, Any]
    system_prompt_tokens: int = 0  # the persona is prepended to every row: it counts toward seq length
    base_model: BaseModelInfo
    hardware: Hardware
    previous_config: TrainConfig | None = None
    previous_outcome: str | None = None
    previous_steps: int | None = None  # optimizer steps from the base model to the previous attempt's adapter
    previous_ok: bool = False  # the previous attempt saved an adapter that a retry can continue
    planner_changes: dict[str, Any] = {}
    guidance: list[str] = []
    recalled: list[dict[str, Any]] = []
    # Time: what is left of --budget, what one evaluation costs, and the measured training rate.
    time_left_s: float | None = None
    eval_reserve_s: float | None = None
    tokens_per_row: float | None = None  # a training row's mean tokens, system prompt and chat markup included
    rate: dict[str, Any] | None = None  # MeasuredRate: tokens_per_second, startup_seconds, source


def _errors(exc: ValidationError) -> list[str]:
    out = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "config"
        value = err.get("input")
        shown = f"={value!r}" if where != "config" and not isinstance(value, dict) else ""
        out.append(f"{where}{shown}: {err['msg']}")
    return out


def _dump(obj: Any) -> str:
    if isinstance(obj, BaseModel):
        return obj.model_dump_json(exclude_none=True)
    return json.dumps(obj, default=str)


def _write(path: Path, model: BaseModel) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(model.model_dump_json(indent=2))


def _write_atomic(path: Path, model: BaseModel) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(model.model_dump_json(indent=2))
    os.replace(tmp, path)  # a kill mid-write leaves the old file, never half a new one


class Toolkit:
    """The tools, as bound methods whose type hints and docstrings become their JSON schema."""

    def __init__(self, ctx: RunContext):
        self.ctx = ctx

    # ------------------------------------------------------------------ Domain Expert

    def profile_dataset(self) -> str:
        """Profile the training data: format, row count, token lengths (in the base model's tokens),
        duplicates, frequent words, sample rows, and a leak check of the held-out split."""
        ctx = self.ctx
        from transformers import AutoTokenizer

        ctx.tokenizer = AutoTokenizer.from_pretrained(ctx.base.name)
        ctx.profile = data_tools.profile_rows(ctx.data.train, source=str(ctx.train_file), tokenizer=ctx.tokenizer)
        ctx.leak = data_tools.leak_check(ctx.data.train, ctx.data.heldout)
        return _dump({"profile": ctx.profile.model_dump(exclude={"columns"}), "heldout_rows": len(ctx.data.heldout),
                      "leak_check": {**ctx.leak.model_dump(), "passed": ctx.leak.passed},
                      "base_model": ctx.base.model_dump()})

    def detect_domain(self) -> str:
        """Score the profiled data against known domains; returns candidates with evidence and a
        suggested expert persona for each. Call profile_dataset first."""
        if self.ctx.profile is None:
            return _dump({"error": "call profile_dataset first"})
        candidates = detect_domain_candidates(self.ctx.profile)
        return _dump({"candidates": [c.__dict__ for c in candidates], "scenario_hint": self.ctx.scenario.domain_hint})

    def write_domain_card(
        self,
        domain: Annotated[str, "Short domain label, e.g. 'medical reasoning'."],
        persona: Annotated[str, "One sentence, second person ('You are ...'), used as the system prompt."],
        evidence: Annotated[list[str], "Why: observations from the profile."],
        confidence: Annotated[float, "0..1"],
    ) -> str:
        """Record the domain and the expert persona used in training, evaluation and judging."""
        try:
            card = DomainCard(domain=domain, persona=persona, evidence=evidence, confidence=confidence)
        except ValidationError as exc:
            return _dump({"accepted": False, "errors": _errors(exc)})
        self.ctx.domain = card
        _write(self.ctx.run_dir / "domain.json", card)
        return _dump({"accepted": True, "system_prompt": self.ctx.system_prompt})

    # ------------------------------------------------------------------ Tuner

    def recall_attempts(self, query: Annotated[str, "Extra words to search memory with (optional)."] = "") -> str:
        """Brief for choosing a config: data profile, base model, hardware, budget, this run's last
        attempt and the Planner's requested changes, and similar past attempts from memory (what
        worked first, failures as warnings)."""
        ctx = self.ctx
        if ctx.profile is None:
            return _dump({"error": "the Domain Expert has not profiled the data yet"})
        recalled: list[dict[str, Any]] = []
        hits: list[Any] = []
        if ctx.memory is not None:
            text = recall_query(ctx.spec.scenario, ctx.profile, ctx.domain, ctx.base.name, ctx.base.family,
                                ctx.base.params, ctx.hardware) + ("\n" + query if query else "")
            try:
                hits = ctx.memory.recall(text, k=4, where={"model_family": ctx.base.family}, exclude_run=ctx.spec.run_id)
            except Exception as exc:  # noqa: BLE001 - memory helps; it must never stop a run
                warnings.warn(f"memory recall failed: {exc}")
                hits = []
            recalled = [{"similarity": h.similarity, "worked": h.worked, "summary": h.summary,
                         "steps_from_base": h.record.result.steps_from_base,
                         "config": h.record.config.model_dump(), "score": h.record.score,
                         "diagnosis": h.record.diagnosis.label if h.record.diagnosis else None} for h in hits]
        last = ctx.records[-1] if ctx.records else None
        brief = TuningBrief(
            attempt=ctx.attempt, max_attempts=ctx.spec.max_attempts, target=ctx.spec.target,
            primary_metric=ctx.scenario.primary_metric, seed=ctx.spec.seed,
            profile=ctx.profile.model_dump(include={"rows", "format", "total_tokens", "response_tokens", "token_unit",
                                                    "duplicates", "language"}),
            system_prompt_tokens=len(ctx.tokenizer(ctx.system_prompt)["input_ids"]) if ctx.tokenizer else 0,
            base_model=ctx.base, hardware=ctx.hardware,
            previous_config=last.config if last else None,
            previous_steps=(last.result.steps_from_base or last.result.steps) if last else None,
            previous_ok=bool(last and last.result.status == "ok" and last.result.adapter_path),
            previous_outcome=(f"status={last.result.status} score={last.score} diagnosis="
                              f"{last.diagnosis.label if last.diagnosis else None}") if last else None,
            planner_changes=ctx.pending_changes, guidance=ctx.guidance, recalled=recalled,
        )
        if ctx.deadline is not None:
            if ctx.rate is None:
                ctx.rate = self._remembered_rate(hits) or self._timed_steps(brief)
            brief.time_left_s = round(ctx.time_left or 0.0, 1)
            brief.eval_reserve_s = round(self._eval_reserve(), 1)
        brief.tokens_per_row = round(self._tokens_per_row(), 1)
        if ctx.rate is not None:
            brief.rate = {"tokens_per_second": round(ctx.rate.tokens_per_second, 1),
                          "startup_seconds": round(ctx.rate.startup_seconds, 1), "source": ctx.rate.source}
        return brief.model_dump_json(exclude_none=True)

    def _tokens_per_row(self) -> float:
        ctx = self.ctx
        assert ctx.profile is not None
        mean = ctx.profile.total_tokens.mean or 0.0
        return mean + self._extra_tokens_per_row()

    def _extra_tokens_per_row(self) -> int:
        ctx = self.ctx
        system = len(ctx.tokenizer(ctx.system_prompt)["input_ids"]) if ctx.tokenizer else 0
        return system + CHAT_MARKUP_TOKENS

    def _eval_reserve(self) -> float:
        """Seconds one evaluation takes: measured once one ran; before that, a share of the budget
        (the first evaluation also scores the base model, so it is reserved twice)."""
        ctx = self.ctx
        if ctx.eval_seconds is not None:
            return ctx.eval_seconds
        budget = ctx.spec.budget_s or 0.0
        return EVAL_RESERVE_SHARE * budget * (1 if ctx.baseline is not None else 2)

    def _remembered_rate(self, hits: list[Any]) -> MeasuredRate | None:
        """A rate an earlier attempt measured for this model on this machine (memory), if any."""
        ctx = self.ctx
        for hit in hits:
            rec = hit.record
            # Same model, same machine and the same torch threads (1 thread trains ~half as fast here).
            if (rec.model_params == ctx.base.params and rec.hardware.device_name == ctx.hardware.device_name
                    and rec.hardware.cpu_count == ctx.hardware.cpu_count and rec.result.threads == ctx.threads):
                rate = rate_of(rec.result, f"memory: run {rec.run_id} attempt {rec.attempt}")
                if rate is not None:
                    return rate
        return None

    def _timed_steps(self, brief: TuningBrief) -> MeasuredRate | None:
        """Measure the training rate with a few timed steps of the policy's own config shape."""
        ctx = self.ctx
        args, _ = policy.initial_config(json.loads(brief.model_dump_json()))
        config = policy.config_of(args).model_copy(update={"max_steps": RATE_PROBE_STEPS, "eval_fraction": 0.0})
        out = ctx.run_dir / "rate_probe"
        job = TrainJob(config=config, base_model=ctx.base.name, train_file=str(ctx.train_file), output_dir=str(out),
                       system_prompt=ctx.system_prompt, threads=ctx.threads, python=ctx.train_python)
        result = run_training(job)
        shutil.rmtree(out, ignore_errors=True)
        rate = rate_of(result, f"timed steps ({result.steps})")
        if rate is not None:
            # A few steps run faster than a whole attempt (measured on SmolLM2-135M, 2 threads: 181 vs
            # 156 and 204 vs 169 tokens/s, probe vs the attempt that followed): count on the slower rate.
            rate = replace(rate, tokens_per_second=rate.tokens_per_second * PROBE_RATE_DISCOUNT)
            log.info("measured %.0f tokens/s, start-up %.0f s (%s)", rate.tokens_per_second, rate.startup_seconds,
                     rate.source)
        return rate

    def propose_config(
        self,
        method: Annotated[Literal["lora", "qlora", "full", "dpo"],
                          "lora adapters, qlora (4-bit adapters), full weights, dpo (LoRA on chosen/rejected pairs)"],
        learning_rate: Annotated[float, "peak learning rate"],
        epochs: Annotated[float, "passes over the training rows"],
        batch_size: Annotated[int, "per-device batch size"],
        max_seq_length: Annotated[int, "longer rows are truncated"],
        lora_rank: Annotated[int, "adapter rank (ignored by full)"] = 16,
        lora_alpha: Annotated[int, "usually 2 * rank"] = 32,
        lora_dropout: float = 0.0,
        train_embeddings: Annotated[bool, "also train embeddings + lm_head (untrained tokens)"] = False,
        grad_accum: int = 1,
        warmup_ratio: float = 0.05,
        lr_scheduler: Literal["linear", "cosine", "constant", "constant_with_warmup"] = "cosine",
        weight_decay: float = 0.0,
        max_steps: Annotated[int, "-1: train `epochs`; else stop at this optimizer step (how a time budget "
                             "sizes an attempt)"] = -1,
        packing: bool = False,
        max_rows: Annotated[int | None, "train on the first N rows only (a quick probe); null for all"] = None,
        seed: int = 0,
        negatives: Annotated[Literal["none", "nat", "dpo"], "nat: add wrong answers marked in the prompt; "
                             "dpo: chosen/rejected pairs (method dpo)"] = "none",
        negative_ratio: Annotated[float, "NAT negatives per positive (0: the paper's 2)"] = 0.0,
        synthetic_ratio: Annotated[float, "templated rephrasings added per row (0-2), filtered so none "
                                   "duplicates or leaks a held-out prompt"] = 0.0,
        backend: Annotated[Literal["hf", "unsloth"], "hf (TRL+PEFT, everywhere) or unsloth (CUDA; its own "
                           "environment via --train-python)"] = "hf",
        continue_training: Annotated[bool, "keep training the previous attempt's adapter (same method, rank, "
                                     "alpha, embeddings) instead of starting from the base model"] = False,
    ) -> str:
        """Validate a training config for the next attempt (bounds, coherence, memory and time
        feasibility on this hardware). Accepted configs are trained by calling train()."""
        ctx = self.ctx
        if ctx.result is not None:
            return _dump({"accepted": False, "errors": [f"attempt {ctx.attempt} is already trained; the Planner decides next"]})
        raw = dict(method=method, learning_rate=learning_rate, epochs=epochs, batch_size=batch_size,
                   max_seq_length=max_seq_length, lora_rank=lora_rank, lora_alpha=lora_alpha,
                   lora_dropout=lora_dropout, train_embeddings=train_embeddings, grad_accum=grad_accum,
                   warmup_ratio=warmup_ratio, lr_scheduler=lr_scheduler, weight_decay=weight_decay,
                   max_steps=max_steps, packing=packing, seed=seed, backend=backend,
                   continue_training=continue_training,
                   data={"max_rows": max_rows, "negatives": negatives, "negative_ratio": negative_ratio,
                         "synthetic_ratio": synthetic_ratio})
        try:
            config = TrainConfig.model_validate(raw)
        except ValidationError as exc:
            return self._refuse_config(_errors(exc))
        if config.backend == "unsloth" and ctx.hardware.device != "cuda":
            return self._refuse_config([f"backend=unsloth needs a CUDA GPU; this machine trains on "
                                        f"{ctx.hardware.device}: use backend=hf"])
        if config.continue_training and (problem := self._continue_problem(config)):
            return self._refuse_config([problem])
        if ctx.base.max_positions and config.max_seq_length > ctx.base.max_positions:
            return self._refuse_config([f"max_seq_length={config.max_seq_length} is over the base model's "
                                        f"{ctx.base.max_positions} positions: set max_seq_length <= "
                                        f"{ctx.base.max_positions} (longer rows are truncated)"])
        feas = self._feasibility(config)
        if not feas.fits:
            return self._refuse_config([feas.reason], estimate=feas.__dict__)
        return self._accept_config(config, feas.__dict__)

    def _continued(self) -> AttemptRecord | None:
        """The attempt a continue_training config starts from: the last one that saved an adapter."""
        return next((r for r in reversed(self.ctx.records) if r.result.status == "ok" and r.result.adapter_path
                     and Path(r.result.adapter_path).exists()), None)

    def _continue_problem(self, config: TrainConfig) -> str | None:
        source = self._continued()
        if source is None:
            return "continue_training: no earlier attempt saved an adapter; set continue_training=false"
        changed = config.adapter_shape_changes(source.config)
        if changed:
            return (f"continue_training from attempt {source.attempt} needs the same adapter shape, but "
                    f"{'; '.join(changed)}: keep those, or set continue_training=false")
        return None

    def _feasibility(self, config: TrainConfig) -> Any:
        """Memory and time on this machine; time from the measured rate, against what is left of the
        budget once this attempt's evaluation is reserved."""
        ctx = self.ctx
        assert ctx.profile is not None
        left = ctx.time_left
        return check_feasibility(config, ctx.hardware, ctx.base.params, ctx.profile, rate=ctx.rate,
                                 time_budget_s=None if left is None else max(0.0, left - self._eval_reserve()),
                                 extra_tokens_per_row=self._extra_tokens_per_row())

    def _accept_config(self, accepted: TrainConfig, estimate: dict[str, Any], /, **extra: Any) -> str:
        ctx = self.ctx
        ctx.config = accepted
        ctx.estimate = estimate.get("est_seconds")
        ctx.rejections = 0
        _write(ctx.attempt_dir / "config.json", accepted)
        return _dump({"accepted": True, "attempt": ctx.attempt, "estimate": estimate, **extra})

    def _refuse_config(self, errors: list[str], **extra: Any) -> str:
        """Return the reasons; after MAX_REJECTIONS in a row, use the offline policy's config instead."""
        ctx = self.ctx
        ctx.rejections += 1
        if ctx.rejections < MAX_REJECTIONS:
            return _dump({"accepted": False, "errors": errors, "tries_left": MAX_REJECTIONS - ctx.rejections, **extra})
        args, why = policy.initial_config(json.loads(self.recall_attempts()))
        config = policy.config_of(args)
        note = (f"attempt {ctx.attempt}: {MAX_REJECTIONS} proposals refused (last: {'; '.join(errors)}); "
                f"the offline policy's config was used ({why})")
        ctx.notes.append(note)
        log.warning(note)
        return self._accept_config(config, self._feasibility(config).__dict__, fallback=note,
                                   config=config.model_dump())

    def train(self) -> str:
        """Train the accepted config in a separate process. Returns status (ok/oom/nan/diverged/error),
        steps, losses, throughput and any error text."""
        ctx = self.ctx
        if ctx.config is None:
            return _dump({"error": "no accepted config: call propose_config first"})
        if ctx.result is not None:
            return _dump({"error": f"attempt {ctx.attempt} is already trained"})
        try:
            train_file = self._recipe_file()
        except ValueError as exc:  # e.g. no pair could be made: the Tuner can change the recipe
            ctx.result = TrainResult(status="error", error=str(exc))
            return _dump({"attempt": ctx.attempt, "status": "error", "error": str(exc)})
        source = self._continued() if ctx.config.continue_training else None
        job = TrainJob(config=ctx.config, base_model=ctx.base.name, train_file=str(train_file),
                       output_dir=str(ctx.attempt_dir), system_prompt=ctx.system_prompt, threads=ctx.threads,
                       max_wall_seconds=self._wall_cap(), python=ctx.train_python,
                       init_adapter=source.result.adapter_path if source else None)
        result = run_training(job, on_event=ctx.on_train_event)
        before = (source.result.steps_from_base or source.result.steps) if source else 0
        ctx.result = r = result.model_copy(update={
            "estimated_seconds": ctx.estimate, "steps_from_base": before + result.steps,
            "continued_from": source.attempt if source else None, "threads": ctx.threads,
            "model_flops_utilization": model_flops_utilization(result.tokens_per_second, ctx.base.params,
                                                               ctx.config.method, ctx.hardware)})
        if r.status == "ok":  # what resume reads back: the result as the ledger will hold it
            _write_atomic(ctx.attempt_dir / RESULT_FILE, r)
        if r.steps >= policy.MIN_STEPS:  # a few steps measure start-up more than the rate
            ctx.rate = rate_of(r, f"attempt {ctx.attempt}") or ctx.rate
        off = error_share(r.estimated_seconds, r.wall_seconds)
        return _dump({"attempt": ctx.attempt, "status": r.status, "steps": r.steps,
                      "first_loss": r.loss_curve[0].loss if r.loss_curve else None, "train_loss": r.train_loss,
                      "eval_loss": r.eval_loss, "tokens_per_second": r.tokens_per_second,
                      "model_flops_utilization": r.model_flops_utilization,
                      "wall_seconds": round(r.wall_seconds, 1), "estimated_seconds": r.estimated_seconds,
                      "estimate_error": None if off is None else f"{off:+.0%}", "error": r.error})

    def _wall_cap(self) -> float | None:
        """Training stops (keeping what it learned) at --attempt-seconds, or when the budget must
        still pay for this attempt's evaluation, whichever comes first."""
        ctx = self.ctx
        caps = [c for c in (ctx.spec.attempt_budget_s,) if c]
        if ctx.time_left is not None:
            caps.append(max(1.0, ctx.time_left - self._eval_reserve()))
        return min(caps) if caps else None

    def search_config(
        self,
        sampler: Annotated[Literal["tpe", "random"], "tpe: learns from the scores so far; random: uniform"] = "tpe",
    ) -> str:
        """Suggest the next config by a bounded search (Optuna) over this run's finished attempts:
        learning rate, LoRA rank (alpha = 2 * rank) and epochs, around the first attempt's config.
        Trains nothing: pass the suggested arguments to propose_config. Needs a finished attempt."""
        ctx = self.ctx
        if not ctx.records:
            return _dump({"error": "no finished attempt to search around yet: propose and train a first config "
                                   "(from recall_attempts); search from attempt 2 on"})
        if ctx.result is not None:
            return _dump({"error": f"attempt {ctx.attempt} is already trained; the Planner decides next"})
        base = ctx.records[0].config  # a fixed centre, so every attempt of the run lies in one space
        try:
            s = search_suggest([(r.config, r.score) for r in ctx.records], base, ctx.spec.seed, sampler,
                               max_epochs=self._epoch_cap(base))
        except ValueError as exc:
            return _dump({"error": str(exc)})
        best = None
        if s.best is not None:
            best_record = next(r for r in ctx.records if r.config is s.best[0])
            best = {"attempt": best_record.attempt, "score": s.best[1], "learning_rate": s.best[0].learning_rate,
                    "lora_rank": s.best[0].lora_rank, "epochs": s.best[0].epochs}
        scored = sum(1 for r in ctx.records if r.score is not None)
        return _dump({"suggested": policy._args(s.config), "sampler": sampler, "trials_seen": s.trials_seen,
                      "best_so_far": best, "space": s.space.describe(),
                      "why": f"{sampler} over {s.trials_seen} finished attempts ({scored} scored) in the space "
                             f"around attempt 1's config; other fields kept from it",
                      "next": "call propose_config with the suggested arguments, then train"})

    def _epoch_cap(self, base: TrainConfig) -> float:
        """Longest training the search may suggest: the diagnosis' cap, or less under a time budget
        (training time grows with epochs, so scale base epochs by budget / base's estimate)."""
        from tunecrew.tools.diagnose import MAX_EPOCHS, MIN_EPOCHS

        ctx = self.ctx
        if not ctx.spec.attempt_budget_s or ctx.profile is None:
            return MAX_EPOCHS
        est = check_feasibility(base, ctx.hardware, ctx.base.params, ctx.profile).est_seconds
        if est <= 0:
            return MAX_EPOCHS
        return max(MIN_EPOCHS, min(MAX_EPOCHS, base.epochs * ctx.spec.attempt_budget_s / est))

    def _recipe_file(self) -> Path:
        """The attempt's training file: the run's rows as they are, or with the config's DataRecipe
        applied (NAT-marked negatives, or DPO pairs) and written into the attempt directory."""
        ctx = self.ctx
        assert ctx.config is not None
        recipe = ctx.config.data
        if recipe.negatives == "none" and not recipe.synthetic_ratio:
            return ctx.train_file
        from tunecrew.tools.recipes import apply_recipe

        kind, rows, synthetic = apply_recipe(ctx.data.train, recipe, seed=ctx.config.seed, heldout=ctx.data.heldout)
        if synthetic is not None:
            ctx.notes.append(f"attempt {ctx.attempt}: synthetic rows {synthetic.as_dict()}")
        name = "train_pairs" if kind == "pairs" else "train_nat" if recipe.negatives == "nat" else "train_synthetic"
        path = ctx.attempt_dir / f"{name}.jsonl"
        data_tools.write_jsonl(rows, path)
        return path

    # ------------------------------------------------------------------ Judge

    def evaluate(self) -> str:
        """Generate replies for the held-out split with the trained model and score them; returns
        metrics overall and per group, sample count, seed, a few failing examples, and the LLM
        judge's 1-10 means (accuracy, reasoning, completeness, clarity) for this attempt and for the
        base model on the same samples."""
        ctx = self.ctx
        if ctx.result is None or ctx.result.status != "ok" or not ctx.result.adapter_path:
            return _dump({"error": "nothing to evaluate: this attempt has no trained model"})
        if ctx.report is not None:
            return _dump({"error": "already evaluated", "metrics": ctx.report.metrics})
        judging = ctx.judge_panel is not None
        if ctx.baseline is None or (judging and ctx.judge_baseline is None):
            # What the attempts are measured against: the untuned model, scored and judged once per run.
            ctx.baseline, base_replies = self._score(load_model(ctx.base.name, None, threads=ctx.threads),
                                                     system_prompt=ctx.baseline_system_prompt)
            if judging:
                ctx.judge_baseline = self._judge(base_replies, "base model", ctx.run_dir / "judge_baseline.json")
                ctx.baseline = self._with_rubric(ctx.baseline, ctx.judge_baseline)
            _write(ctx.run_dir / "baseline_eval.json", ctx.baseline)
        started = time.monotonic()
        ctx.report, replies = self._score(load_model(ctx.base.name, ctx.result.adapter_path, threads=ctx.threads))
        judged = self._judge(replies, f"attempt {ctx.attempt}", ctx.attempt_dir / "judge.json") if judging else None
        ctx.report = self._with_rubric(ctx.report, judged)
        ctx.eval_seconds = time.monotonic() - started
        _write(ctx.attempt_dir / "eval.json", ctx.report)
        r = ctx.report
        return _dump({"split": r.split, "samples": r.samples, "seed": r.seed, "metrics": r.metrics,
                      "base_model_metrics": ctx.baseline.metrics,
                      "primary_metric": r.primary_metric, "target": ctx.spec.target,
                      "groups": {g: m.model_dump() for g, m in r.groups.items()},
                      "failures": [f.model_dump() for f in r.failures[:4]],
                      "rubric_metrics": ctx.scenario.rubric_metrics,
                      **({"llm_judge": compact(judged),
                          "llm_judge_base_model": compact(ctx.judge_baseline) if ctx.judge_baseline else None}
                         if judged else {})})

    def _score(self, loaded: Any, system_prompt: str | None = None) -> tuple[EvalReport, list[str]]:
        ctx = self.ctx
        assert ctx.scenario.scorer is not None
        return evaluate_with_replies(loaded, ctx.data.heldout, ctx.scenario.scorer,
                                     system_prompt=system_prompt or ctx.system_prompt,
                                     split=ctx.data.heldout_split, seed=ctx.spec.seed,
                                     primary_metric=ctx.scenario.primary_metric, leak_check=ctx.leak,
                                     max_new_tokens=ctx.scenario.max_new_tokens)

    def _judge(self, replies: list[str], subject: str, path: Path) -> JudgeReport | None:
        """The LLM judge on the run's samples (same seed, so the same rows for base and attempts)."""
        ctx = self.ctx
        assert ctx.judge_panel is not None
        try:
            report = ctx.judge_panel.judge(samples_from_rows(ctx.data.heldout, replies),
                                           ctx.domain.persona if ctx.domain else "", seed=ctx.spec.seed,
                                           subject=subject, split=ctx.data.heldout_split)
        except Exception as exc:  # noqa: BLE001 - the judge adds evidence; the metrics stand without it
            note = f"{subject}: the LLM judge failed ({type(exc).__name__}: {str(exc)[:200]}); metrics only"
            ctx.notes.append(note)
            log.warning(note)
            return None
        _write(path, report)
        return report

    @staticmethod
    def _with_rubric(report: EvalReport, judged: JudgeReport | None) -> EvalReport:
        rubric = rubric_of(judged) if judged is not None else None
        return report.model_copy(update={"rubric": rubric}) if rubric is not None else report

    def score_rubric(
        self,
        accuracy: Annotated[int, "1-10"],
        reasoning: Annotated[int, "1-10"],
        completeness: Annotated[int, "1-10"],
        clarity: Annotated[int, "1-10"],
        explanation: Annotated[str, "What the failures have in common, in a sentence or two."],
    ) -> str:
        """Record your own overall rubric scores (1-10 each) for this attempt, with the reason. They
        are kept beside the LLM judge's per-sample means, not in place of them."""
        ctx = self.ctx
        if ctx.report is None:
            return _dump({"accepted": False, "errors": ["call evaluate first"]})
        try:
            rubric = RubricScores(accuracy=accuracy, reasoning=reasoning, completeness=completeness,
                                  clarity=clarity, explanation=explanation, judge=f"{JUDGE} agent ({ctx.spec.provider})")
        except ValidationError as exc:
            return _dump({"accepted": False, "errors": _errors(exc)})
        ctx.report = ctx.report.model_copy(update={"agent_rubric": rubric})
        _write(ctx.attempt_dir / "eval.json", ctx.report)
        judged = ctx.report.rubric
        return _dump({"accepted": True, "rubric_mean": rubric.mean,
                      **({"llm_judge_mean": round(judged.mean, 2), "llm_judge": judged.judge} if judged else {})})

    # ------------------------------------------------------------------ Planner

    def diagnose(self) -> str:
        """Diagnose this attempt from its loss curves, status and scores: a label (underfit, overfit,
        format, oom, unstable, error, good), the evidence, and suggested config changes."""
        ctx = self.ctx
        if ctx.result is None or ctx.config is None:
            return _dump({"error": "nothing to diagnose: no attempt has been trained"})
        ctx.diagnosis = diagnose_attempt(ctx.config, ctx.result, ctx.report, ctx.spec.target, ctx.records,
                                         gates=ctx.spec.gates, random_init=ctx.base.random_init)
        best = ctx.best
        return _dump({"attempt": ctx.attempt, "max_attempts": ctx.spec.max_attempts, "target": ctx.spec.target,
                      "score": ctx.report.score if ctx.report else None,
                      "best_so_far": {"attempt": best.attempt, "score": best.score} if best else None,
                      "diagnosis": ctx.diagnosis.model_dump(), "guidance": ctx.guidance,
                      **({"time_left_s": round(ctx.time_left or 0.0, 1), "min_attempt_s": round(self._min_attempt(), 1)}
                         if ctx.deadline is not None else {})})

    def _min_attempt(self) -> float:
        """The least time another attempt needs to be worth training: start-up, the policy's
        fewest steps and its evaluation."""
        ctx = self.ctx
        train = ctx.rate.seconds_for(policy.MIN_STEPS * self._tokens_per_row() * (ctx.config.effective_batch
                                     if ctx.config else 1)) if ctx.rate else 0.0
        return train + self._eval_reserve()

    def decide(
        self,
        action: Annotated[Literal["retry", "stop"], "retry with changes, or stop"],
        reason: Annotated[str, "Why, citing the diagnosis evidence."],
        changes: Annotated[dict[str, Any] | None, "TrainConfig field -> new value, e.g. {'epochs': 6}; dotted keys for data.*"] = None,
    ) -> str:
        """Close this attempt: record it (ledger + memory) and either ask the Tuner for a retry with
        the given changes or stop the run."""
        ctx = self.ctx
        if ctx.result is None or ctx.config is None:
            return _dump({"accepted": False, "errors": ["nothing to decide: no attempt has been trained"]})
        changes = changes or {}
        errors: list[str] = []
        if action == "retry":
            if ctx.attempt >= ctx.spec.max_attempts:
                errors.append(f"budget exhausted: attempt {ctx.attempt} of {ctx.spec.max_attempts}; stop instead")
            elif ctx.deadline is not None and (ctx.time_left or 0.0) < self._min_attempt():
                errors.append(f"time budget spent: {max(0.0, ctx.time_left or 0.0):.0f} s left, another attempt "
                              f"needs ~{self._min_attempt():.0f} s; stop instead")
            if not changes:
                errors.append("a retry needs at least one change: the same config and seed repeat the same result")
            else:
                try:
                    ctx.config.with_changes(changes)
                except ValidationError as exc:
                    errors += _errors(exc)
                except (KeyError, TypeError) as exc:
                    errors.append(f"unknown config field in changes: {exc}")
        try:
            decision = Decision(action=action, changes=changes, reason=reason or action, by=PLANNER)
        except ValidationError as exc:
            errors += _errors(exc)
        if errors:
            ctx.rejections += 1
            if ctx.rejections < MAX_REJECTIONS:
                return _dump({"accepted": False, "errors": errors, "tries_left": MAX_REJECTIONS - ctx.rejections})
            plan = policy.plan(json.loads(self.diagnose()))
            decision = Decision(**plan, by=f"{PLANNER} (offline policy fallback)")
            note = (f"attempt {ctx.attempt}: {MAX_REJECTIONS} decisions refused (last: {'; '.join(errors)}); "
                    f"the offline policy decided {plan['action']}")
            ctx.notes.append(note)
            log.warning(note)
        if ctx.interactive:
            ctx.proposed = decision
            ctx.rejections = 0
            return _dump({"accepted": True, "awaiting_review": True, "next": "a person reviews this decision"})
        return self._close_attempt(decision)

    def apply_review(self, review: Review) -> dict[str, Any]:
        """A person's answer to the proposed decision. Returns the chat message, whether the run
        stopped, or a `retry_prompt` when the answer cannot be applied as given."""
        ctx = self.ctx
        proposed = ctx.proposed
        assert proposed is not None
        if review.kind == "guidance":  # an LLM Planner re-decides with it
            ctx.guidance.append(review.text)
            ctx.proposed = None
            ctx.notes.append(f"person: guidance {review.text!r}")
            return {"message": f"Guidance for the Planner: {review.text}"}
        decision = proposed
        if review.kind == "stop":
            decision = Decision(action="stop", reason=f"stopped by the person ({proposed.reason[:200]})", by=HUMAN)
        elif review.kind == "extend":
            ctx.spec = ctx.spec.model_copy(update={"max_attempts": ctx.spec.max_attempts + review.attempts})
            (ctx.run_dir / "run.json").write_text(ctx.spec.model_dump_json(indent=2))
            if proposed.action == "stop":
                suggested = ctx.diagnosis.suggested_changes if ctx.diagnosis else {}
                if not suggested:
                    return {"retry_prompt": f"Budget is now {ctx.spec.max_attempts} attempts, but the diagnosis "
                                            "suggests no change: give an edit (e.g. 'epochs 8') or stop."}
                decision = Decision(action="retry", changes=suggested, by=HUMAN,
                                    reason=f"person added {review.attempts} attempts; diagnosis suggests {suggested}")
        elif review.kind == "edit":
            if ctx.attempt >= ctx.spec.max_attempts:
                return {"retry_prompt": f"No attempts left ({ctx.attempt} of {ctx.spec.max_attempts}): add some "
                                        "first with +N, then edit."}
            changes = {**(proposed.changes if proposed.action == "retry" else {}), **review.changes}
            decision = Decision(action="retry", changes=changes, by=HUMAN,
                                reason=f"person edited the config: {review.text} (Planner: {proposed.reason[:200]})")
        ctx.notes.append(f"person: {review.kind} {review.text!r} -> {decision.action} {decision.changes or ''}".strip())
        ctx.proposed = None
        answer = json.loads(self._close_attempt(decision))
        stopped = decision.action == "stop"
        message = (f"Decision: {decision.action}" + (f" with {decision.changes}" if decision.changes else "")
                   + f" (by {decision.by}). " + ("Run finished." if stopped else f"Next: attempt {answer['next_attempt']}."))
        return {"message": message, "stopped": stopped}

    def _close_attempt(self, decision: Decision) -> str:
        ctx = self.ctx
        action, changes = decision.action, decision.changes
        ctx.rejections = 0
        record = self._record(decision)
        if action == "retry":
            self._next_attempt(changes)
            return _dump({"accepted": True, "recorded": record.attempt, "next_attempt": ctx.attempt,
                          "next": "Tuner: propose the next config with these changes, then train"})
        ctx.stopped = True
        return _dump({"accepted": True, "recorded": record.attempt, "next": "run finished: say TERMINATE"})

    # ------------------------------------------------------------------ helpers

    def _record(self, decision: Decision) -> AttemptRecord:
        ctx = self.ctx
        assert ctx.profile is not None and ctx.config is not None and ctx.result is not None
        record = AttemptRecord(
            run_id=ctx.spec.run_id, attempt=ctx.attempt, scenario=ctx.spec.scenario, base_model=ctx.base.name,
            model_family=ctx.base.family, model_params=ctx.base.params, hardware=ctx.hardware,
            profile=ctx.profile.model_copy(update={"samples": ctx.profile.samples[:2]}), domain=ctx.domain,
            config=ctx.config, result=ctx.result, eval=ctx.report, diagnosis=ctx.diagnosis, decision=decision,
            notes=list(ctx.notes),
        )
        ctx.notes.clear()
        try:
            ctx.ledger.append(record)  # the ledger is the source of truth: written first, fsync'd
        except LedgerError as exc:
            ctx.fatal = exc  # the runner stops the crew: going on would lose attempts
            raise
        ctx.records.append(record)
        if ctx.memory is not None:
            try:
                ctx.memory.remember(record)
            except Exception as exc:  # noqa: BLE001 - the attempt is safe in the ledger already
                warnings.warn(f"attempt {record.attempt} is in the ledger but not in memory: {exc}")
        return record

    def _next_attempt(self, changes: dict[str, Any]) -> None:
        ctx = self.ctx
        ctx.pending_changes = changes
        ctx.attempt += 1
        ctx.config = ctx.result = ctx.report = ctx.diagnosis = None
        ctx.estimate = None

    def tools_for(self, role: str) -> list[FunctionTool]:
        names = {
            DOMAIN_EXPERT: ["profile_dataset", "detect_domain", "write_domain_card"],
            TUNER: ["recall_attempts", "search_config", "propose_config", "train"],
            JUDGE: ["evaluate", "score_rubric"],
            PLANNER: ["diagnose", "decide"],
        }[role]
        out = []
        for name in names:
            fn = getattr(self, name)
            out.append(FunctionTool(fn, description=(fn.__doc__ or name).strip().replace("\n        ", " "), name=name))
        return out
