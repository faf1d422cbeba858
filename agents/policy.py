"""The offline policy's judgement: pure rules from tool outputs to decisions.

This is the deterministic baseline an LLM provider must beat: it sizes a config from the data, the
model and the machine, starts from what worked on similar data when memory has it, turns metrics
into rubric scores, and turns a diagnosis into a decision. Change the data, the model or the
memory and its decisions change; nothing here is a canned answer.
"""

from __future__ import annotations

import math
import re
from typing import Any

from tunecrew.agents.answers import DiagnoseAnswer, RateInfo, Recalled, TuningBrief
from tunecrew.tools.contracts import Decision, TokenStats, TrainConfig, TrainResult
from tunecrew.tools.diagnose import MAX_EPOCHS
from tunecrew.tools.profile import truncation_note
from tunecrew.tools.train import EVAL_COST_SHARE

# A never-trained model learns everything from this data: it needs a high lr and trained
# embeddings. Measured on the task-agent scenario (3.7M params): lr 3e-3 with rank 32.
RANDOM_INIT_LR = 3e-3
PRETRAINED_LORA_LR = 2e-4
# Sub-billion pretrained models take a higher adapter lr. Measured on SmolLM2-135M-Instruct, task
# agent, seed 0, 60 steps of 8: lr 1e-3 reached train loss 0.03 and novel-phrasing action exact
# match 0.58 (n=64); at 2e-4 the loss was still near 2.0 after 6 steps.
SMALL_PRETRAINED_LORA_LR = 1e-3
SMALL_MODEL_PARAMS = 1e9
# ... and a wider adapter generalises better at the same lr, steps and time: SmolLM2-135M, task agent,
# 104 steps of 4 from the base model, novel-phrasing action exact match r64 (alpha 128) 0.703/0.562/0.734
# vs r16 (alpha 32) 0.547/0.469/0.594 on seeds 0/1/2, n=64 each, trained phrasings within 3 prompts,
# training speed within the machine's drift (bench/lever_ab.py, docs/benchmarks.md). Above a billion
# parameters r16 stays: nothing was measured there, and it is what LLaMA-Factory and Axolotl start from.
SMALL_PRETRAINED_LORA_RANK = 64
PRETRAINED_LORA_RANK = 16
FULL_LR = 2e-5
# DPO moves a policy with a much smaller step than SFT (TRL's examples: 5e-7 full, 5e-6 to 5e-5 with
# LoRA); the adapter starts at zero, so the reference model is the base model itself.
DPO_LORA_LR = 5e-5
PREFERENCE_SHARE = 0.5  # of rows carrying the user's own rejected reply: the data is preference data
# Optimizer steps a task of this kind needs, by model state (measured on the task-agent scenario).
TARGET_STEPS_RANDOM_INIT = 360
TARGET_STEPS_PRETRAINED = 200
# Without a recalled success, the first attempt is a probe at this share of the step budget: it is
# cheap, and its loss curve tells the Planner how far there is to go.
PROBE_SHARE = 0.4
RECALL_TRUST = 0.6  # a remembered success counts as a warm start above this similarity
# On small data the step estimate asks for many epochs; a probe stays short enough that the
# Planner can still double it within the diagnosis' 20-epoch cap.
MAX_PROBE_EPOCHS = 8.0
# Under a --budget, the first attempt takes this share of the training time: the rest pays for a
# retry that the first attempt's diagnosis can aim. When that share trains fewer steps than a probe
# (PROBE_SHARE of the target steps), the first attempt takes all of the time instead: a retry that
# small costs its evaluation (~65 s of a 10-minute run on SmolLM2-135M, ~10 of ~60 steps) and the
# lever measured at that size (template rephrasings, bench/lever_ab.py) bought 1 prompt of 64.
FIRST_ATTEMPT_TIME_SHARE = 0.45
# A first attempt sized in steps for a retry to continue holds its learning rate after warm-up, and
# the attempt after it decays: one schedule over both (warmup-stable-decay), as one longer run would.
# SmolLM2-135M, task agent, 52 steps, novel-phrasing action EM, n=64, seeds 0/1/2
# (bench/steps_to_target.py --score last): one attempt 0.453/0.578/0.562; 26 + 26 continued, each
# with its own warm-up and cosine decay, 0.359/0.500/0.328; the first held, the second cosine,
# 0.531/0.500/0.531 (docs/benchmarks.md).
HELD_SCHEDULER = "constant_with_warmup"
DECAY_SCHEDULER = "cosine"
MIN_STEPS = 10  # an attempt shorter than this measures nothing
# A retry after an attempt that decayed its rate to the end needs time for at least this share of that
# attempt's steps from the base model: as long again. Measured on SmolLM2-135M's task agent, a converged
# 107-step adapter continued at the peak lr (3 seeds, n=64 novel phrasings, bench/steps_to_target.py
# --continue-from): +25 steps lost 5/9/11 prompts, +53 (a half) -8/-6/+5 (mean 0.755 -> 0.708), +107
# +6/-4/+11 (mean -> 0.823). Shorter continuations hand back the same attempt a few minutes later.
RETRY_SHARE_AFTER_DECAY = 1.0
DECAYED_LR_SHARE = 0.25  # a last logged lr under this share of the peak: the schedule ran to its end
LENGTH_FIELDS = frozenset({"max_steps", "epochs"})  # a change to either is a new training length
TIME_FIT_MARGIN = 0.95


SEQ_HEADROOM = 1.1
MIN_SEQ_LENGTH = 64


def seq_length_for(high_tokens: float, max_tokens: int, max_positions: int | None) -> int:
    """Next power of two over a high percentile of the row lengths (with headroom), never more than
    the longest row needs, within the model's context. Not from the longest row itself: one 5 MB
    row among 11-token ones would make every sequence 1,024 long; rows over it are truncated."""
    need = max(high_tokens * SEQ_HEADROOM, 32)
    length = min(2 ** math.ceil(math.log2(need)), 2 ** math.ceil(math.log2(max(max_tokens, 32))))
    cap = min(max_positions or 4096, 4096)
    return int(max(MIN_SEQ_LENGTH, min(length, cap)))


def seq_length_from(stats: TokenStats, extra: int, max_positions: int | None) -> tuple[int, str]:
    """max_seq_length from the p99 of the row lengths (plus `extra` tokens a row: persona, markup),
    and the rows it truncates, counted. A profile without a p99 (an older one) sizes from the max."""
    high = stats.p99 or stats.max
    seq = seq_length_for(high + extra, stats.max + extra, max_positions)
    basis = f"p99 {stats.p99:g}" if stats.p99 else f"max {stats.max}"
    return seq, f"seq {seq} from the {basis} tokens (+{extra} a row); {truncation_note(stats, seq, extra)}"


def initial_config(brief: TuningBrief) -> tuple[TrainConfig, str]:
    """A config for the first attempt (or the next, when the Planner asked for changes), with why."""
    base, hardware, profile = brief.base_model, brief.hardware, brief.profile
    before = brief.previous_config
    if before is not None:
        changes = brief.planner_changes
        config = before.with_changes(changes)
        why = f"previous config with the Planner's changes {changes}"
        if continuable(config, before, brief):
            # Keep the previous adapter training: the Planner's step count is a total from the base
            # model, so only the difference is new; under a budget, the time left decides anyway.
            done = brief.previous_steps or 0
            if LENGTH_FIELDS.isdisjoint(changes):
                # The Planner changed the data or the rate, not the length: as long again, on top (a
                # total of `done` would leave the floor's MIN_STEPS to train what it changed).
                new = before.max_steps
            else:
                new = max(MIN_STEPS, config.max_steps - done)
            config = config.with_changes({"continue_training": True, "max_steps": new})
            why += (f"; continuing the previous adapter ({done} steps so far) for {new} more rather than "
                    "starting over")
        elif config.continue_training:
            config = config.with_changes({"continue_training": False})
        if before.lr_scheduler == HELD_SCHEDULER and "lr_scheduler" not in changes:
            # A held rate (the policy's split) decays here: this attempt takes the time left, so it is the last.
            config = config.with_changes({"lr_scheduler": DECAY_SCHEDULER})
            why += f"; lr_scheduler {DECAY_SCHEDULER}: the previous attempt held its rate for this one to decay"
        config, timed = fit_to_time(config, brief, share=1.0)
        return config, why + timed

    extra = brief.system_prompt_tokens + 8  # persona + chat-template markup
    seq, seq_why = seq_length_from(profile.total_tokens, extra, base.max_positions)
    warm = _best_recalled(brief.recalled)
    if warm is not None:
        remembered = warm.config
        config = remembered.with_changes(
            {"max_seq_length": seq, "data.max_rows": None, "seed": brief.seed, "continue_training": False,
             # one attempt from the base model with the time left: it decays its rate itself
             **({"lr_scheduler": DECAY_SCHEDULER} if remembered.lr_scheduler == HELD_SCHEDULER else {}),
             # a remembered attempt that continued another one took all of its steps from the base model
             **({"max_steps": warm.steps_from_base} if remembered.continue_training and warm.steps_from_base
                else {})}
        )
        # Its steps were sized to that run's time and machine (a budget's max_steps), not learned: this
        # run's time decides them. A fresh clone copied 74 steps sized at 84 tokens/s onto a machine
        # training 143, leaving half its budget unused.
        config, timed = fit_to_time(config, brief, share=1.0, fill=remembered.max_steps > 0 and not base.random_init)
        return config, (f"warm start from a remembered success (similarity {warm.similarity:.2f}, "
                        f"score {warm.score}): {warm.summary}{timed}; {seq_why}")

    rows = max(1, profile.rows)
    on_gpu = hardware.device == "cuda"
    params = base.params
    if base.random_init:
        method, rank, lr, embeddings, steps = "lora", 32, RANDOM_INIT_LR, True, TARGET_STEPS_RANDOM_INIT
        why = "never-trained base model: LoRA r=32 plus trained embeddings at a high lr"
    elif on_gpu and params > 3e9:
        method, rank, lr, embeddings = "qlora", PRETRAINED_LORA_RANK, PRETRAINED_LORA_LR, False
        steps = TARGET_STEPS_PRETRAINED
        why = f"{params / 1e9:.1f}B params on CUDA: 4-bit QLoRA keeps it in memory"
    else:
        small = params < SMALL_MODEL_PARAMS
        lr = SMALL_PRETRAINED_LORA_LR if small else PRETRAINED_LORA_LR
        rank = SMALL_PRETRAINED_LORA_RANK if small else PRETRAINED_LORA_RANK
        method, embeddings, steps = "lora", False, TARGET_STEPS_PRETRAINED
        why = f"pretrained base model of {params / 1e6:.0f}M params: LoRA r={rank} at lr {lr:g}"
    pairs = int(profile.extra.get("preference_pairs") or 0)
    if pairs >= PREFERENCE_SHARE * rows and not base.random_init:
        # The user brought chosen/rejected pairs: SFT on `chosen` alone would throw the rejected half away.
        method, lr = "dpo", DPO_LORA_LR
        why = (f"{pairs} of {rows} rows are the user's preference pairs (chosen and rejected): DPO on them with "
               f"LoRA r={rank} at lr {lr:g}")
    batch = _batch_size(params, seq, on_gpu)
    steps_per_epoch = math.ceil(rows * 0.9 / batch)
    # Tiny data asks a random-init model for hundreds of epochs: the diagnosis' cap bounds them.
    full_epochs = min(MAX_EPOCHS, max(1.0, round(steps / steps_per_epoch, 1)))
    # A pretrained model needs a share of an epoch, not several: its probe may stop mid-epoch.
    low = 0.1 if not base.random_init else 1.0
    epochs = min(MAX_PROBE_EPOCHS, max(low, round(full_epochs * PROBE_SHARE, 2)))
    config = TrainConfig(method=method, lora_rank=rank, lora_alpha=2 * rank, learning_rate=lr,
                         train_embeddings=embeddings, epochs=epochs, batch_size=batch, max_seq_length=seq,
                         warmup_ratio=0.05, lr_scheduler="cosine", seed=brief.seed)
    split, timed = fit_to_time(config, brief, share=FIRST_ATTEMPT_TIME_SHARE)
    probe_steps = math.ceil(steps * PROBE_SHARE)
    if 0 < split.max_steps < probe_steps:
        # Too little time for a probe and a retry: the retry's evaluation would cost more than it can win.
        # This attempt is the run's training, not a probe: the time left, up to the whole step target.
        config, timed = fit_to_time(config.with_changes({"epochs": full_epochs}), brief, share=1.0)
        why += (f"; {FIRST_ATTEMPT_TIME_SHARE:.0%} of the time would train a probe of {split.max_steps} steps, "
                f"under {probe_steps}: one attempt of up to {full_epochs:g} epochs takes all of it")
    else:
        why += f"; no remembered success for similar data, so a probe of {epochs} epochs first"
        config = split
        if config.max_steps > 0:  # sized in steps by the budget: a retry can continue it, and decays
            config = config.with_changes({"lr_scheduler": HELD_SCHEDULER})
            timed += f"; lr held after warm-up ({HELD_SCHEDULER}) for a continuing retry to decay"
    config, capped = fit_to_cap(config, brief)
    return config, (why + timed + capped + f"; batch {batch} from {rows} rows; {seq_why}")


def min_retry_steps(config: TrainConfig, result: TrainResult, random_init: bool) -> tuple[int, str]:
    """The fewest optimizer steps another attempt must have time for to be worth training, and why.

    MIN_STEPS, except after an attempt of a pretrained model whose learning rate decayed to the end
    of its schedule: a short run on top of (or instead of) that converged adapter has not beaten it
    (RETRY_SHARE_AFTER_DECAY). A rate held for a retry to decay, or cut off mid-schedule by
    --attempt-seconds, is the split the continuing retry completes, and keeps the floor."""
    lrs = [p.lr for p in result.loss_curve if p.lr is not None]
    decayed = bool(lrs) and lrs[-1] <= DECAYED_LR_SHARE * config.learning_rate
    if random_init or result.status != "ok" or not decayed:
        return MIN_STEPS, ""
    steps = result.steps_from_base or result.steps
    floor = max(MIN_STEPS, math.ceil(steps * RETRY_SHARE_AFTER_DECAY))
    return floor, (f"its learning rate decayed to {lrs[-1]:.2g} over {steps} steps from the base model, and a "
                   f"retry shorter than {RETRY_SHARE_AFTER_DECAY:.0%} of that ({floor} steps) has not beaten a "
                   "converged adapter (on 107-step ones, +25 steps lost 5-11 of 64 novel phrasings on 3 seeds of 3, "
                   "+53 lost 6-8 on 2 of 3, +107 gained on 2 of 3; docs/benchmarks.md)")


def continuable(config: TrainConfig, previous: TrainConfig, brief: TuningBrief) -> bool:
    """A retry keeps training the previous adapter when it saved one, the adapter keeps its shape
    and the method allows it: a fresh start would pay again for the steps the last attempt trained."""
    # Only attempts sized in steps (a time budget's): an epoch count is a total from the base model,
    # and continuing it would train the earlier epochs twice.
    return (brief.previous_ok and not config.adapter_shape_changes(previous)
            and config.method != "full" and config.backend == "hf" and config.max_steps > 0 and previous.max_steps > 0)


def fit_to_time(config: TrainConfig, brief: TuningBrief, share: float,
                fill: bool = False) -> tuple[TrainConfig, str]:
    """Under a --budget, set max_steps to what the measured rate trains in `share` of the training
    time left (after this attempt's evaluation and, for a first attempt, one more attempt's). A
    config already inside that time is kept as it is, unless `fill`: then it grows to the time, up to
    one epoch. Returns the config and why, for the log."""
    left, rate, per_row = brief.time_left_s, brief.rate, brief.tokens_per_row
    if left is None or rate is None or not per_row:
        return config, ""
    reserve = brief.eval_reserve_s or 0.0
    if share < 1:  # a first attempt leaves room for another one's evaluation (which never scores the base)
        reserve += brief.next_eval_s if brief.next_eval_s is not None else reserve
    train_time = max(0.0, left - reserve) * share - rate.startup_seconds
    fit = _steps_in(train_time, config, rate, per_row)
    planned = _planned_steps(config, brief)
    if fill:
        one_epoch = math.ceil(brief.profile.rows * (1 - config.eval_fraction) / config.effective_batch)
        fit = min(fit, max(planned, one_epoch))
    if planned == fit or (planned < fit and not fill):
        return config, f"; {planned} steps fit the time left ({left:.0f} s)"
    config = _with_steps(config, brief, fit)
    return config, (f"; {fit} steps ({config.epochs:g} epochs) fill {share:.0%} of the {left:.0f} s left at "
                    f"{rate.tokens_per_second:.0f} tokens/s ({rate.source}) and {per_row:.0f} tokens a row")


def fit_to_cap(config: TrainConfig, brief: TuningBrief) -> tuple[TrainConfig, str]:
    """Under --attempt-seconds, the policy's own first attempt takes at most the steps the measured
    rate trains inside the cap: the train tool stops a run there, and a run planned longer stops
    mid-schedule with its learning rate still high (a 180 s cap stopped 80 planned cosine steps at
    37-49 in bench/tuning_quality.py). With a retry to come the rate is held after warm-up, so the
    retry continues the adapter and decays it once. Retries, warm starts and a person's edits are
    left as asked: the cap still stops them."""
    cap, rate, per_row = brief.attempt_cap_s, brief.rate, brief.tokens_per_row
    if cap is None or rate is None or not per_row:
        return config, ""
    fit = _steps_in(cap - rate.startup_seconds, config, rate, per_row)
    if _planned_steps(config, brief) <= fit:
        return config, ""
    config = _with_steps(config, brief, fit)
    why = (f"; {fit} steps ({config.epochs:g} epochs) end inside --attempt-seconds {cap:g} at "
           f"{rate.tokens_per_second:.0f} tokens/s ({rate.source})")
    if brief.attempt < brief.max_attempts and config.lr_scheduler == DECAY_SCHEDULER:
        config = config.with_changes({"lr_scheduler": HELD_SCHEDULER})
        why += f"; lr held after warm-up ({HELD_SCHEDULER}) for a continuing retry to decay"
    return config, why


def _steps_in(seconds: float, config: TrainConfig, rate: RateInfo, per_row: float) -> int:
    """Optimizer steps the measured rate trains in `seconds` (at least MIN_STEPS)."""
    # The eval-loss passes cost up to EVAL_COST_SHARE more, and the proposal is checked a moment
    # after this brief was written: leave both as margin, so the check accepts what this sizes.
    tokens_per_step = per_row * config.effective_batch * (1 + EVAL_COST_SHARE) / TIME_FIT_MARGIN
    return max(MIN_STEPS, int(max(0.0, seconds) * rate.tokens_per_second / tokens_per_step))


def _planned_steps(config: TrainConfig, brief: TuningBrief) -> int:
    rows = brief.profile.rows * (1 - config.eval_fraction)
    return config.max_steps if config.max_steps > 0 else math.ceil(rows * config.epochs / config.effective_batch)


def _with_steps(config: TrainConfig, brief: TuningBrief, steps: int) -> TrainConfig:
    steps_per_epoch = max(1.0, brief.profile.rows * (1 - config.eval_fraction) / config.effective_batch)
    return config.with_changes({"max_steps": steps, "epochs": round(max(0.01, steps / steps_per_epoch), 2)})


def _batch_size(params: int, seq: int, on_gpu: bool) -> int:
    if on_gpu:
        return 16 if params < 2e9 else 8 if params < 8e9 else 4
    # CPU: tiny models can afford more rows per step. A pretrained model learns more from a budget's rows
    # in more, smaller steps: SmolLM2-135M, task agent, the same 416 rows as 104 steps of 4 vs 52 of 8
    # (equal tokens; training times within the machine's drift), novel-phrasing action EM 0.672/0.766/0.656 vs
    # 0.453/0.578/0.562 on seeds 0/1/2, n=64 each (bench/steps_to_target.py, docs/benchmarks.md).
    return 16 if params < 5e7 and seq <= 512 else 4 if params < 5e8 else 1


def _best_recalled(recalled: list[Recalled]) -> Recalled | None:
    worked = [r for r in recalled if r.worked and r.similarity >= RECALL_TRUST]
    return max(worked, key=lambda r: (r.score or 0, r.similarity)) if worked else None


def shrink_for_errors(config: TrainConfig, errors: list[str]) -> TrainConfig | None:
    """Repair a refused proposal when the refusal says how (memory/time): halve the batch and keep
    the effective batch with accumulation. None when the policy has no repair for these errors."""
    text = " ".join(errors).lower()
    late = re.search(r"estimated (\d+) s > time budget left (\d+) s", text)
    if late and config.max_steps > 0:  # too long for the time left: fewer steps, not a smaller batch
        steps = max(MIN_STEPS, int(config.max_steps * int(late[2]) / int(late[1]) * TIME_FIT_MARGIN))
        if steps < config.max_steps:
            return config.with_changes({"max_steps": steps})
    if ("memory" in text or " gb " in text or "time" in text) and config.batch_size > 1:
        return config.with_changes({"batch_size": config.batch_size // 2, "grad_accum": config.grad_accum * 2})
    return None


def rubric_from_metrics(metrics: dict[str, float], rubric_metrics: dict[str, str],
                        failures: list[dict[str, Any]]) -> dict[str, Any]:
    """Rubric scores 1-10 from the scenario's metric for each criterion, and the failures' common cause."""
    fallback = sum(metrics.values()) / len(metrics) if metrics else 0.0
    scores = {c: max(1, min(10, round(1 + 9 * metrics.get(rubric_metrics.get(c, ""), fallback))))
              for c in ("accuracy", "reasoning", "completeness", "clarity")}
    reasons: dict[str, int] = {}
    for f in failures:
        key = f["reason"].split(":")[0]
        reasons[key] = reasons.get(key, 0) + 1
    if reasons:
        common = ", ".join(f"{k} ({n})" for k, n in sorted(reasons.items(), key=lambda kv: -kv[1])[:3])
        explanation = f"Most failures among the shown examples: {common}."
    else:
        explanation = "No failing examples in the held-out split."
    return {**scores, "explanation": explanation}


def plan(answer: DiagnoseAnswer, by: str = "Planner") -> Decision:
    """The Planner's decision from the diagnose tool's answer: stop on success, on an exhausted
    budget or on an error no change can fix; otherwise retry with the suggested changes."""
    d = answer.diagnosis
    evidence = "; ".join(d.evidence[:3])
    if d.accepted is False:
        # The verdict comes first: a rejected attempt's changes restart from the best accepted config.
        restart = [e for e in d.evidence if e.startswith("retry from attempt")]
        evidence = "; ".join([d.verdict, *restart, *d.evidence[:2]])[:1500]
    if d.label == "good":
        return Decision(action="stop", reason=f"target reached: {evidence}", by=by)
    if answer.attempt >= answer.max_attempts:
        best = answer.best_so_far.model_dump() if answer.best_so_far else None
        return Decision(action="stop", by=by, reason=f"budget of {answer.max_attempts} attempts spent ({d.label}: "
                                                     f"{evidence}); best so far: {best}")
    if not d.suggested_changes:
        return Decision(action="stop", reason=f"{d.label} with no config change that would fix it: {evidence}", by=by)
    return Decision(action="retry", changes=d.suggested_changes, reason=f"{d.label}: {evidence}", by=by)
