"""Why did an attempt fall short, and what single set of changes should the next one try?

Pure rules over (config, result, report, history): no model, no I/O. The Planner reads the
returned `Diagnosis` as evidence, not as an order, so every evidence line carries the numbers the
rule used, and every suggested change is a `TrainConfig` field (dotted for nested ones, e.g.
``data.max_rows``) that validates through `TrainConfig.with_changes`.

Verdict first (FT-Agent's keep-or-discard): an attempt is accepted only when it beats the base
model on the primary metric and is not worse than the best accepted attempt so far by more than
the noise of the held-out sample (`noise_band`). A rejected attempt is never the run's best
(`best_attempt`), and its suggested changes start the retry from the best accepted config: they
undo what the rejected attempts changed and add the best attempt's escalated, untried changes.

Rules run in a fixed order; the first that matches wins:
  1. status oom            -> oom       (smaller per-device batch, same effective batch)
  2. status nan/diverged   -> unstable  (lr / 4, warmup >= 0.1)
  3. status error          -> error     (no changes: a bug is not a hyperparameter)
  4. primary >= target, accepted -> good
  5. eval loss turned up   -> overfit
  6. loss flat from the start and high
                           -> underfit (flat): lr x3, and the data checked (truncated, dropped or very
                              short rows), not more epochs of a step size that moved nothing
  7. format low, loss flat -> format    (it learned the words, not the contract: more steps, higher lr;
                              a longer max_seq_length when rows are truncated, since a cut reply
                              never shows its end, e.g. a closing </think>)
  8. primary group far below another group, train loss low
                           -> generalize (it learned the seen phrasings, not the task: every row, more
                              varied rows, a gentler lr)
  9. otherwise             -> underfit
Whatever the label, rows the profile says are truncated or dropped at this config are evidence.
`history` turns a repeated label whose score did not move into an escalation, so the crew does
not pay for the same failing change twice.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from tunecrew.tools.contracts import (
    AttemptRecord,
    DatasetProfile,
    Diagnosis,
    DiagnosisLabel,
    EvalReport,
    LossPoint,
    TrainConfig,
    TrainResult,
)
from tunecrew.tools.profile import rows_over, truncation_note

# --------------------------------------------------------------------------- thresholds
# Loss-curve shape.
TAIL_FRACTION = 0.2  # "the end of training" = the last 20% of logged points
FLAT_IMPROVEMENT = 0.05  # tail improving less than 5% counts as flattened
HIGH_TRAIN_LOSS = 1.0  # nats/token; above this a format task has clearly not been learned

# Overfitting: eval loss rose well above its best while train loss went well below it.
MIN_EVAL_POINTS = 3
OVERFIT_EVAL_RISE = 1.3  # final eval loss > 1.3 x min eval loss
OVERFIT_TRAIN_GAP = 0.7  # train loss < 0.7 x eval loss

# Format compliance: below this the reply contract is not learned.
FORMAT_METRIC = "format_compliance"
FORMAT_THRESHOLD = 0.8

# Levers and their sane ranges.
MAX_EPOCHS = 20.0
MIN_EPOCHS = 0.5
ADAPTER_METHODS = ("lora", "qlora", "dpo")  # dpo trains a LoRA adapter
ADAPTER_LR_CAP = 5e-3  # LoRA tolerates high lr, but past ~5e-3 it tends to diverge
FULL_LR_CAP = 2e-3  # full fine-tuning diverges sooner
LOW_ADAPTER_LR = 1e-3  # an adapter below this on an underfit run is worth doubling
LOW_FULL_LR = 1e-4  # likewise for full fine-tuning
MIN_UNDERFIT_RANK = 16
MAX_RANK = 128
MAX_DROPOUT = 0.3
MIN_SEQ_LENGTH = 64
UNSTABLE_LR_DIVISOR = 4.0
MIN_WARMUP = 0.1
ESCALATED_WARMUP = 0.2

# Generalisation gap: the primary metric is a group's (e.g. novel_phrasing/...) and another group
# scores this much higher on the same metric while the training loss is already low.
GENERALIZATION_GAP = 0.15
LOW_TRAIN_LOSS = 0.3
SYNTHETIC_RATIO_STEP = 0.5  # rephrased rows added per row (tools/recipes.py filters them)
MAX_SYNTHETIC_RATIO = 1.0

# History: a change "worked" if the primary metric rose by at least this much.
MIN_IMPROVEMENT = 0.02

# Verdict. Every metric is a mean over n held-out samples of values in [0, 1]; a value's variance is
# at most p(1 - p) (Bhatia-Davis; exactly that for exact-match metrics), so sqrt(p(1 - p) / n) bounds
# the standard error. Two attempts differ by noise up to NOISE_Z standard errors of the difference.
# One SE (not 1.96): both attempts are scored on the same rows, so the paired difference varies less
# than the independent-sample SE used here, and a false rejection costs little (the retry restarts
# from a config at least as good) while building on a worse config costs every later attempt.
# Measured: the task agent at n=64 gives 0.06 a side, 0.08-0.09 for a difference at p 0.2-0.4.
NOISE_Z = 1.0

# Flat, high loss. Measured on the task-agent ledgers (seed 0, 15 attempts of SmolLM2-135M-Instruct,
# 8 of the random-init demo model): the pretrained model's first logged loss was 1.78-2.52 and the
# attempts that learned ended at 0.07-0.88; the random-init model started at 6.3-7.3 and ended at
# 0.46-1.15 when it learned. A final loss above 2.0 is where a pretrained model starts, and the
# medical-o1 curve on the tiny model (6.1 -> 6.0) is near its untrained level.
FLAT_HIGH_LOSS = 2.0  # nats/token
FLAT_RATIO = 0.9  # last / first logged loss above this: the whole run moved it by less than 10%
MIN_FLAT_POINTS = 3  # fewer logged points say nothing about the shape
FLAT_LR_FACTOR = 3.0
SHORT_REPLY_TOKENS = 4  # a median reply this short puts few tokens a row into the loss


# --------------------------------------------------------------------------- helpers


def loss_trend(curve: list[LossPoint]) -> float:
    """Relative improvement of the loss across the last 20% of logged points.

    Compares the point just before the tail with the last point, so the window spans the last
    20% of training: 0.12 means the loss fell 12% over it. Fewer than 2 points gives 0.0 (no
    evidence of improvement); a rising loss gives a negative number.
    """
    if len(curve) < 2:
        return 0.0
    tail = max(1, math.ceil(TAIL_FRACTION * len(curve)))
    start = curve[-tail - 1].loss if tail < len(curve) else curve[0].loss
    end = curve[-1].loss
    if not (math.isfinite(start) and math.isfinite(end)) or start == 0:
        return 0.0
    return (start - end) / abs(start)


def _sig(x: float, digits: int = 3) -> float:
    """Round to a few significant digits so suggestions read like a person chose them."""
    return float(f"{x:.{digits}g}")


def _lr_cap(config: TrainConfig) -> float:
    bound = _field_upper_bound("learning_rate")
    sane = ADAPTER_LR_CAP if config.method in ADAPTER_METHODS else FULL_LR_CAP
    return min(bound, sane)


def _field_upper_bound(name: str) -> float:
    """The `le` bound TrainConfig declares for a field, so a suggestion never exceeds it."""
    for meta in TrainConfig.model_fields[name].metadata:
        le = getattr(meta, "le", None)
        if le is not None:
            return float(le)
    return math.inf


def _raise_lr(config: TrainConfig, factor: float) -> float | None:
    """lr x factor, capped; None when already at or above the cap (never lowers it)."""
    cap = _lr_cap(config)
    new = _sig(min(config.learning_rate * factor, cap))
    return new if new > config.learning_rate else None


def _scale_length(config: TrainConfig, factor: float) -> dict[str, Any]:
    """Scale training length: epochs within [MIN_EPOCHS, MAX_EPOCHS], and max_steps too when set,
    because a positive max_steps overrides epochs and would make the epoch change a no-op."""
    changes: dict[str, Any] = {}
    epochs = round(min(max(config.epochs * factor, MIN_EPOCHS), MAX_EPOCHS), 2)
    if (factor > 1 and epochs > config.epochs) or (factor < 1 and epochs < config.epochs):
        changes["epochs"] = epochs
    if config.max_steps > 0:
        steps = int(min(max(round(config.max_steps * factor), 1), _field_upper_bound("max_steps")))
        if steps != config.max_steps:
            changes["max_steps"] = steps
    return changes


def _doubled_epochs_evidence(config: TrainConfig, length: dict[str, Any]) -> str:
    """What `_scale_length(config, 2.0)` did to epochs, in the words the evidence uses."""
    if "epochs" in length:
        return f"epochs {config.epochs} -> {length['epochs']} (x2, cap {MAX_EPOCHS:g})"
    return f"epochs {config.epochs} already at cap {MAX_EPOCHS:g}"


def _raise_rank(config: TrainConfig) -> dict[str, Any]:
    rank = min(config.lora_rank * 2, MAX_RANK)
    if rank <= config.lora_rank:
        return {}
    return {"lora_rank": rank, "lora_alpha": 2 * rank}


def _double_rank(config: TrainConfig, changes: dict[str, Any], evidence: list[str]) -> None:
    """Add a doubled LoRA rank (alpha = 2 x rank, up to MAX_RANK) to `changes`, saying so in `evidence`."""
    rank = _raise_rank(config)
    changes.update(rank)
    if rank:
        evidence.append(f"lora_rank {config.lora_rank} -> {rank['lora_rank']} (alpha {rank['lora_alpha']}, "
                        f"cap {MAX_RANK})")


def _final(value: float | None, curve: list[LossPoint]) -> float | None:
    if value is not None:
        return value
    return curve[-1].loss if curve else None


def _score(report: EvalReport | None) -> float | None:
    if report is None:
        return None
    return report.metrics.get(report.primary_metric)


def _repeats(label: DiagnosisLabel, score: float | None, result: TrainResult,
             history: Sequence[AttemptRecord]) -> int:
    """How many immediately preceding attempts already got `label`, were retried, and did not
    raise the primary metric by MIN_IMPROVEMENT (missing scores count as no improvement).

    `history` is the earlier attempts; if the caller also appended the current attempt (no
    diagnosis yet, same result), it is ignored.
    """
    prior = _earlier(history, result)
    count = 0
    later = score
    for rec in reversed(prior):
        if rec.diagnosis is None or rec.diagnosis.label != label:
            break
        if rec.decision is not None and rec.decision.action != "retry":
            break
        if later is not None and rec.score is not None and later - rec.score >= MIN_IMPROVEMENT:
            break
        count += 1
        later = rec.score
    return count


def _repeat_line(label: str, repeats: int, score: float | None, history: Sequence[AttemptRecord]) -> str:
    prev = next((r.score for r in reversed(history) if r.diagnosis is not None), None)
    if score is None or prev is None:  # oom / unstable / error attempts have no score
        return (f"escalating: '{label}' also diagnosed on the {repeats} previous attempt(s) after "
                "applying its change, so this goes beyond the previous change")
    return (
        f"escalating: '{label}' repeated {repeats} time(s) without the primary metric rising by "
        f">= {MIN_IMPROVEMENT} (previous {prev:.3f}, now {score:.3f}), so this goes beyond the "
        "previous change"
    )


# --------------------------------------------------------------------------- rules


def _oom(config: TrainConfig, repeats: int) -> tuple[list[str], dict[str, Any]]:
    ev = [f"status=oom at batch_size={config.batch_size}, grad_accum={config.grad_accum}, "
          f"max_seq_length={config.max_seq_length}"]
    ch: dict[str, Any] = {}
    if config.batch_size > 1:
        batch = max(1, config.batch_size // 2)
        accum = min(config.grad_accum * 2, int(_field_upper_bound("grad_accum")))
        ch.update(batch_size=batch, grad_accum=accum)
        ev.append(f"batch_size {config.batch_size} -> {batch}, grad_accum {config.grad_accum} -> {accum}: "
                  f"effective batch {config.effective_batch} -> {batch * accum}")
    if (config.batch_size == 1 or repeats) and config.max_seq_length > MIN_SEQ_LENGTH:
        seq = max(MIN_SEQ_LENGTH, config.max_seq_length // 2)
        ch["max_seq_length"] = seq
        ev.append(f"max_seq_length {config.max_seq_length} -> {seq} (min {MIN_SEQ_LENGTH}): activations scale "
                  "with sequence length")
    if not ch:
        ev.append(f"batch_size=1 and max_seq_length={config.max_seq_length} already at the floor: "
                  "a smaller base model or method=qlora is needed")
    return ev, ch


def _unstable(config: TrainConfig, status: str, repeats: int) -> tuple[list[str], dict[str, Any]]:
    divisor = UNSTABLE_LR_DIVISOR * (2.5 if repeats else 1)  # repeated: /10 instead of /4
    lr = _sig(config.learning_rate / divisor)
    warmup = max(config.warmup_ratio, ESCALATED_WARMUP if repeats else MIN_WARMUP)
    ev = [f"status={status} at learning_rate={config.learning_rate:.3g}, warmup_ratio={config.warmup_ratio}",
          f"learning_rate {config.learning_rate:.3g} -> {lr:.3g} (/ {divisor:g}), warmup_ratio -> {warmup}"]
    ch: dict[str, Any] = {"learning_rate": lr}
    if warmup != config.warmup_ratio:
        ch["warmup_ratio"] = warmup
    return ev, ch


def _is_overfit(result: TrainResult) -> tuple[bool, list[str]]:
    curve = result.eval_curve
    if len(curve) < MIN_EVAL_POINTS:
        return False, []
    final_eval = curve[-1].loss
    best_eval = min(p.loss for p in curve)
    train = _final(result.train_loss, result.loss_curve)
    eval_loss = _final(result.eval_loss, curve)
    if train is None or eval_loss is None or not math.isfinite(best_eval):
        return False, []
    rose = final_eval > OVERFIT_EVAL_RISE * best_eval
    gap = train < OVERFIT_TRAIN_GAP * eval_loss
    return rose and gap, [
        f"final eval loss {final_eval:.3f} vs best {best_eval:.3f} over {len(curve)} evals "
        f"(ratio {final_eval / best_eval:.2f} > {OVERFIT_EVAL_RISE})",
        f"train loss {train:.3f} vs eval loss {eval_loss:.3f} (ratio {train / eval_loss:.2f} < {OVERFIT_TRAIN_GAP})",
    ]


def _overfit(config: TrainConfig, repeats: int) -> tuple[list[str], dict[str, Any]]:
    ch = _scale_length(config, 0.5)
    ev = [f"epochs {config.epochs} -> {ch.get('epochs', config.epochs)} (x0.5, min {MIN_EPOCHS})"]
    if config.method in ADAPTER_METHODS:
        dropout = round(max(config.lora_dropout, min(config.lora_dropout + 0.05, MAX_DROPOUT)), 3)
        if dropout != config.lora_dropout:
            ch["lora_dropout"] = dropout
            ev.append(f"lora_dropout {config.lora_dropout} -> {dropout} (+0.05, max {MAX_DROPOUT})")
    if config.weight_decay == 0:
        ch["weight_decay"] = 0.01
        ev.append("weight_decay 0 -> 0.01")
    if repeats:
        lr = _sig(config.learning_rate / 2)
        ch["learning_rate"] = lr
        ev.append(f"learning_rate {config.learning_rate:.3g} -> {lr:.3g} (/2)")
        if config.data.max_rows is not None:
            ch["data.max_rows"] = None
            ev.append(f"data.max_rows {config.data.max_rows} -> all rows: more data is the surest fix for overfit")
    return ev, ch


def _format(config: TrainConfig, compliance: float, floor: float, trend: float,
            repeats: int, random_init: bool, data: _Data,
            report: EvalReport | None) -> tuple[list[str], dict[str, Any]]:
    ev = [f"{FORMAT_METRIC}={compliance:.3f} < {floor} while the loss flattened "
          f"(last {TAIL_FRACTION:.0%} improved {trend:.1%} < {FLAT_IMPROVEMENT:.0%}): it learned the words, "
          "not the reply contract"]
    ch: dict[str, Any] = {}
    # The contract is learned late (after the words), so it needs as many more steps as underfitting.
    length = _scale_length(config, 2.0)
    # With epochs at the cap there are no more steps to give: escalate as for a repeat, or a run
    # warm-started from a remembered config at the cap has no lever and stops.
    stuck = bool(repeats) or not length
    low = LOW_ADAPTER_LR if config.method in ADAPTER_METHODS else LOW_FULL_LR
    if config.learning_rate < low or stuck:
        lr = _raise_lr(config, 1.5)
        if lr is not None:
            ch["learning_rate"] = lr
            ev.append(f"learning_rate {config.learning_rate:.3g} -> {lr:.3g} (x1.5, cap {_lr_cap(config):.3g})")
        else:
            ev.append(f"learning_rate {config.learning_rate:.3g} already at cap {_lr_cap(config):.3g}")
    else:
        # Measured on the task-agent scenario: lr 4.5e-3 scored below 3e-3 at the same epochs.
        ev.append(f"learning_rate {config.learning_rate:.3g} kept: already >= {low:g}; more steps first")
    ch.update(length)
    ev.append(_doubled_epochs_evidence(config, length))
    if config.method == "lora" and not config.train_embeddings and random_init:
        ch["train_embeddings"] = True
        ev.append("train_embeddings False -> True: format tokens may need their embeddings trained")
    if stuck:
        if not config.completion_only_loss:
            ch["completion_only_loss"] = True
            ev.append("completion_only_loss False -> True: loss on prompts dilutes the reply format")
        if config.method in ADAPTER_METHODS:
            rank = _raise_rank(config)
            ch.update(rank)
            if rank:
                ev.append(f"lora_rank {config.lora_rank} -> {rank['lora_rank']} (alpha {rank['lora_alpha']})")
    if data.p95_truncated(config):
        # A reply cut by max_seq_length never shows its end in training: the model learns not to end.
        closes = data.expects_think(report)
        what = "its closing </think> and answer" if closes else "its ending"
        ev.append(f"more than 5% of rows are truncated at max_seq_length {config.max_seq_length} (p95 "
                  f"{data.p95():,.0f} tokens a row): a truncated reply loses {what} in training, so the model "
                  "learns replies that do not end")
        more, seq = data.raise_seq(config)
        ev += more
        ch.update(seq)
    return ev, ch


def _underfit(config: TrainConfig, result: TrainResult, report: EvalReport | None, target: float,
              trend: float, repeats: int, random_init: bool) -> tuple[list[str], dict[str, Any]]:
    score = _score(report)
    train = _final(result.train_loss, result.loss_curve)
    ev: list[str] = []
    if report is None:
        ev.append("no eval report: judged from the loss curve alone")
    else:
        shown = "missing" if score is None else f"{score:.3f}"
        relation = "<" if score is None or score < target else ">="
        ev.append(f"{report.primary_metric}={shown} {relation} target {target} "
                  f"(split={report.split}, n={report.samples_of(report.primary_metric)}, seed={report.seed})")
    ev.append(f"loss over the last {TAIL_FRACTION:.0%} of {len(result.loss_curve)} logged points improved "
              f"{trend:.1%} ({'still falling' if trend >= FLAT_IMPROVEMENT else 'flattened'}, "
              f"threshold {FLAT_IMPROVEMENT:.0%})")
    if train is not None:
        ev.append(f"train loss {train:.3f} ({'high' if train > HIGH_TRAIN_LOSS else 'not high'}, "
                  f"threshold {HIGH_TRAIN_LOSS})")
    ch: dict[str, Any] = {}
    length = _scale_length(config, 2.0)
    ch.update(length)
    ev.append(_doubled_epochs_evidence(config, length))
    if config.data.max_rows is not None:
        ch["data.max_rows"] = None
        ev.append(f"data.max_rows {config.data.max_rows} -> all rows")
    adapter = config.method in ADAPTER_METHODS
    if adapter and config.learning_rate < LOW_ADAPTER_LR:
        lr = _raise_lr(config, 2.0)
        if lr is not None:
            ch["learning_rate"] = lr
            ev.append(f"learning_rate {config.learning_rate:.3g} -> {lr:.3g} "
                      f"(x2: below {LOW_ADAPTER_LR:g} for an adapter)")
    if adapter and config.lora_rank < MIN_UNDERFIT_RANK:
        ch.update(_raise_rank(config))
        ev.append(f"lora_rank {config.lora_rank} -> {ch['lora_rank']} (below {MIN_UNDERFIT_RANK}), "
                  f"alpha {ch['lora_alpha']}")
    if repeats or not length:
        # More of the same training is not available (the last change did not move the score, or
        # the training length is already at its cap): add capacity/step size instead. Without this, an attempt
        # warm-started from a remembered config at the epoch cap had no lever and the run stopped.
        if "learning_rate" not in ch:
            lr = _raise_lr(config, 2.0 if adapter else 1.5)
            if lr is not None:
                ch["learning_rate"] = lr
                ev.append(f"learning_rate {config.learning_rate:.3g} -> {lr:.3g} (cap {_lr_cap(config):.3g})")
        if adapter and "lora_rank" not in ch:
            _double_rank(config, ch, ev)
        if adapter and config.method == "lora" and not config.train_embeddings and random_init:
            ch["train_embeddings"] = True
            ev.append("train_embeddings False -> True")
    if not ch:
        ev.append("no lever left within the caps: consider stopping or a larger base model")
    return ev, ch


def flat_high(result: TrainResult) -> tuple[float, float] | None:
    """(first, final) loss when the loss barely moved over the whole run and stayed high."""
    curve = result.loss_curve
    if result.status != "ok" or len(curve) < MIN_FLAT_POINTS:
        return None
    first, final = curve[0].loss, _final(result.train_loss, curve)
    if final is None or not (math.isfinite(first) and math.isfinite(final)) or first <= 0:
        return None
    return (first, final) if final / first > FLAT_RATIO and final > FLAT_HIGH_LOSS else None


def _underfit_flat(config: TrainConfig, result: TrainResult, report: EvalReport | None, target: float,
                   first: float, final: float, repeats: int, random_init: bool,
                   data: _Data) -> tuple[list[str], dict[str, Any]]:
    ev = [f"underfit (flat): loss {first:.2f} -> {final:.2f} over {len(result.loss_curve)} logged points "
          f"(final/first {final / first:.2f} > {FLAT_RATIO}) and still high ({final:.2f} > {FLAT_HIGH_LOSS} "
          "nats/token, where a pretrained model starts): this step size moved nothing, so more epochs of it "
          "would not either"]
    score = _score(report)
    if report is not None:
        shown = "missing" if score is None else f"{score:.3f}"
        ev.append(f"{report.primary_metric}={shown} vs target {target} "
                  f"(split={report.split}, n={report.samples_of(report.primary_metric)}, seed={report.seed})")
    ch: dict[str, Any] = {}
    lr = _raise_lr(config, FLAT_LR_FACTOR)
    adapter = config.method in ADAPTER_METHODS
    if lr is not None:
        ch["learning_rate"] = lr
        ev.append(f"learning_rate {config.learning_rate:.3g} -> {lr:.3g} "
                  f"(x{FLAT_LR_FACTOR:g}, cap {_lr_cap(config):.3g})")
    else:
        ev.append(f"learning_rate {config.learning_rate:.3g} already at cap {_lr_cap(config):.3g}: the data is the "
                  "likelier cause")
    if adapter and (repeats or lr is None):
        _double_rank(config, ch, ev)
    if adapter and config.method == "lora" and not config.train_embeddings and random_init:
        ch["train_embeddings"] = True
        ev.append("train_embeddings False -> True: a never-trained model's embeddings mean nothing yet")
    if config.data.max_rows is not None:
        ch["data.max_rows"] = None
        ev.append(f"data.max_rows {config.data.max_rows} -> all rows")
    ev.append(f"epochs {config.epochs:g} kept: the loss did not move over the steps it had")
    checks = data.check_lines(config)
    ev += checks or ["data checked: no truncated, dropped or very short rows in the profile at this config"]
    if data.p95_truncated(config):
        more, seq = data.raise_seq(config)
        ev += more
        ch.update(seq)
    if not ch:
        ev.append("no lever left within the caps: check the data, or a larger base model")
    return ev, ch


@dataclass(frozen=True)
class _Data:
    """What the profile says training did to the rows at a config: truncated, dropped, short."""

    profile: DatasetProfile | None = None
    extra_tokens: int = 0  # tokens every row carries beyond its text (persona, chat markup)
    max_positions: int | None = None  # the base model's context: max_seq_length cannot go past it
    history: Sequence[AttemptRecord] = field(default_factory=tuple)
    llm_rephrasing: bool = False  # the run has an LLM to rewrite requests (data.synthetic_source=llm)

    def _counted(self) -> bool:
        # Word counts undercount tokens: a truncation count from them would mislead (as in feasibility).
        p = self.profile
        return p is not None and p.token_unit == "tokenizer" and p.total_tokens.count > 0

    def p95(self) -> float:
        assert self.profile is not None
        return self.profile.total_tokens.p95 + self.extra_tokens

    def p95_truncated(self, config: TrainConfig) -> bool:
        """More than 5% of rows are longer than max_seq_length (the issue's medical-o1: p95 1,287 at 1,024)."""
        return self._counted() and self.p95() > config.max_seq_length

    def lines(self, config: TrainConfig) -> list[str]:
        """Truncated and dropped rows at this config, counted: evidence under every label."""
        p = self.profile
        if p is None:
            return []
        out: list[str] = []
        seq, extra = config.max_seq_length, self.extra_tokens
        if self._counted():
            over, _ = rows_over(p.total_tokens, seq - extra)
            if over:
                out.append(f"{truncation_note(p.total_tokens, seq, extra)}; p95 {self.p95():,.0f} tokens a row "
                           f"(+{extra} persona and markup): their replies lose their endings in training")
            cut, exact = rows_over(p.prompt_tokens, seq - extra)
            if cut:
                out.append(f"rows_dropped: {'' if exact else 'at least '}{cut:,} of {p.rows:,} rows' prompts alone are "
                           f"over {seq} tokens: no reply is left to train on, so the trainer drops them")
        if config.data.dedup and p.duplicates:
            out.append(f"rows_dropped: {p.duplicates:,} duplicate rows of {p.rows:,} (data.dedup)")
        if config.data.max_rows is not None and config.data.max_rows < p.rows:
            out.append(f"rows_dropped: data.max_rows={config.data.max_rows:,} trains on {config.data.max_rows:,} "
                       f"of {p.rows:,} rows")
        return out

    def check_lines(self, config: TrainConfig) -> list[str]:
        """The data checks a flat, high loss calls for: the lines above and very short replies."""
        out = self.lines(config)
        p = self.profile
        if p is not None and p.response_tokens.count and p.response_tokens.p50 <= SHORT_REPLY_TOKENS:
            unit = "tokens" if p.token_unit == "tokenizer" else "words"
            out.append(f"replies are very short (median {p.response_tokens.p50:g} {unit} a reply): the loss "
                       "averages over few tokens a row; check that the reply column is the target")
        return out

    def expects_think(self, report: EvalReport | None) -> bool:
        """Reasoning data: the references close a </think> (or the profile found a reasoning column)."""
        if self.profile is not None and "reasoning" in self.profile.column_map:
            return True
        rows = [*report.failures, *report.examples] if report is not None else []
        return any("</think>" in f.expected for f in rows)

    def raise_seq(self, config: TrainConfig) -> tuple[list[str], dict[str, Any]]:
        """max_seq_length to the next power of two over the p99 (as the policy sizes it), within the
        base model's context and below a length that already ran out of memory; or why not."""
        assert self.profile is not None
        stats = self.profile.total_tokens
        need = (stats.p99 or stats.max) + self.extra_tokens
        seq = 2 ** math.ceil(math.log2(max(need, 2)))
        cap = self.max_positions or int(_field_upper_bound("max_seq_length"))
        seq = min(seq, cap)
        if seq <= config.max_seq_length:
            return [f"max_seq_length {config.max_seq_length} not raised: the base model's context is {cap} tokens; "
                    "drop or shorten the longest rows, or use a base model with a longer context"], {}
        oom = [r for r in self.history if r.result.status == "oom" and r.config.max_seq_length <= seq
               and r.config.batch_size <= config.batch_size]
        if oom:
            r = oom[-1]
            return [f"max_seq_length {config.max_seq_length} not raised to {seq}: attempt {r.attempt} ran out of "
                    f"memory at {r.config.max_seq_length} with batch_size {r.config.batch_size}"], {}
        known = (f"within the base model's {self.max_positions}" if self.max_positions
                 else "base model's context unknown")
        return [f"max_seq_length {config.max_seq_length} -> {seq} (power of two over the p99 {need:,.0f} tokens; "
                f"{known}): the Tuner's memory check sizes the batch for it"], {"max_seq_length": seq}


# --------------------------------------------------------------------------- verdict


def standard_error(p: float, n: int) -> float:
    """Upper bound on the standard error of a [0, 1] metric's mean p over n samples."""
    return math.sqrt(max(p * (1 - p), 0.0) / max(n, 1))


def noise_band(best: float, n_best: int, score: float, n: int) -> float:
    """How far below the best a score may be and still be noise: NOISE_Z standard errors of the
    difference, never less than one sample's worth (two runs that differ by one row are a tie)."""
    se = math.sqrt(standard_error(best, n_best) ** 2 + standard_error(score, n) ** 2)
    return max(NOISE_Z * se, 1 / max(min(n, n_best), 1))


def is_accepted(record: AttemptRecord) -> bool:
    """Not rejected: accepted, or judged before verdicts existed (a record's diagnosis may be None)."""
    return record.diagnosis is None or record.diagnosis.accepted is not False


def best_attempt(records: Sequence[AttemptRecord]) -> AttemptRecord | None:
    """The run's best: the highest primary score among the scored attempts the verdict did not
    reject (ties: the later one, as export picks). None when nothing scored was accepted."""
    kept = [r for r in records if r.score is not None and is_accepted(r)]
    return max(kept, key=lambda r: (r.score or 0.0, r.attempt)) if kept else None


def verdict(report: EvalReport | None, baseline: EvalReport | None,
            history: Sequence[AttemptRecord]) -> tuple[bool | None, str, AttemptRecord | None]:
    """(accepted, why, the best accepted attempt before this one) for an attempt's report."""
    score = _score(report)
    if report is None or score is None:
        return None, "no verdict: no score on the held-out split", None
    metric = report.primary_metric
    n = report.samples_of(metric)
    ok, why = True, []
    base = baseline.metrics.get(metric) if baseline is not None else None
    if base is None:
        why.append(f"the base model has no {metric} score to beat")
    elif score > base:
        why.append(f"beats the base model ({score:.3f} > {base:.3f})")
    else:
        ok = False
        why.append(f"does not beat the base model ({score:.3f} <= {base:.3f})")
    best = best_attempt([r for r in history if r.eval is not None and r.eval.primary_metric == metric])
    if best is not None and best.eval is not None and best.score is not None:
        n_best = best.eval.samples_of(metric)
        band = noise_band(best.score, n_best, score, n)
        if score < best.score - band:
            ok = False
            why.append(f"worse than the best so far, attempt {best.attempt} ({best.score:.3f}), by "
                       f"{best.score - score:.3f} > noise {band:.3f}")
        else:
            relation = "above" if score > best.score else "within noise of"
            why.append(f"{relation} the best so far, attempt {best.attempt} ({best.score:.3f}; noise {band:.3f})")
    noise = f"noise: {NOISE_Z:g} SE of the difference, sqrt(p(1-p)/n) a side"
    return ok, (f"{'accepted' if ok else 'rejected'}: {'; '.join(why)} ({metric}, split={report.split}, n={n}, "
                f"seed={report.seed}; {noise})"), best


def _flat_config(config: TrainConfig) -> dict[str, Any]:
    """Every field as a change key (`data.x` for the recipe's)."""
    dumped = config.model_dump()
    recipe = dumped.pop("data")
    return {**dumped, **{f"data.{k}": v for k, v in recipe.items()}}


def _from_base(config: TrainConfig, result: TrainResult) -> TrainConfig:
    """The config as a fresh run from the base model: a continued attempt's max_steps counted new
    steps only, and its adapter is not where a retry starts."""
    if not config.continue_training:
        return config
    steps = result.steps_from_base or config.max_steps
    return config.with_changes({"continue_training": False, "max_steps": steps})


# Changes that go together: trying one of them tries the pair.
_TIED = ({"lora_rank", "lora_alpha"}, {"epochs", "max_steps"})


def _retry_from_best(config: TrainConfig, result: TrainResult, best: AttemptRecord,
                     history: Sequence[AttemptRecord], target: float, gates: Mapping[str, float],
                     random_init: bool, data: _Data) -> tuple[list[str], dict[str, Any]]:
    """Changes that turn this rejected attempt's config into the best accepted one's, plus the best
    attempt's own diagnosis escalated (as for a repeat) without any change tried since then."""
    start = _from_base(best.config, best.result)
    base = _flat_config(start)
    since = [_from_base(r.config, r.result) for r in history if r.attempt > best.attempt]
    tried: set[str] = set()
    for cfg in [*since, _from_base(config, result)]:
        tried |= {k for k, v in _flat_config(cfg).items() if base[k] != v}
    for tied in _TIED:
        if tried & tied:
            tried |= tied
    tried.discard("seed")
    label, _, escalated = _rules(start, best.result, best.eval, target, gates, random_init, data,
                                 count=lambda _label: 1, may_be_good=False, history=())
    new = {k: v for k, v in escalated.items() if k not in tried and _current(start, k) != v}
    assert best.score is not None
    head = f"retry from attempt {best.attempt}'s config (the best accepted, {best.score:.3f})"
    if not new:
        return [f"{head}: every change its '{label}' diagnosis suggests ({', '.join(sorted(escalated)) or 'none'}) "
                "was tried since and not accepted, so no untried change is left; it stays the run's best"], {}
    undo = {k: v for k, v in base.items() if _flat_config(config)[k] != v}
    return [f"{head}: undo {undo or 'nothing'}; then, as its '{label}' diagnosis escalates, the untried {new} "
            "(these replace the changes above, which were aimed at this attempt's config)"], {**undo, **new}


def generalization_gap(report: EvalReport | None) -> tuple[str, float, float] | None:
    """(best other group, its value, the primary group's value) when the primary metric is one
    group's and another group beats it on the same metric by GENERALIZATION_GAP or more."""
    if report is None or "/" not in report.primary_metric:
        return None
    group, metric = report.primary_metric.split("/", 1)
    mine = report.groups.get(group)
    if mine is None or metric not in mine.metrics:
        return None
    others = [(g, m.metrics[metric]) for g, m in report.groups.items() if g != group and metric in m.metrics]
    if not others:
        return None
    best, value = max(others, key=lambda kv: kv[1])
    return (best, value, mine.metrics[metric]) if value - mine.metrics[metric] >= GENERALIZATION_GAP else None


def _generalize(config: TrainConfig, report: EvalReport, gap: tuple[str, float, float], train: float,
                rows_seen: float, repeats: int, llm: bool = False) -> tuple[list[str], dict[str, Any]]:
    other, value, mine = gap
    group, metric = report.primary_metric.split("/", 1)
    ev = [f"{group}/{metric}={mine:.3f} vs {other}/{metric}={value:.3f} (gap {value - mine:.3f} >= "
          f"{GENERALIZATION_GAP}) at train loss {train:.3f} < {LOW_TRAIN_LOSS}: it learned the seen phrasings, "
          "not the task"]
    ch: dict[str, Any] = {}
    if rows_seen < 1.0:  # part of the data was never seen: every row first
        ch.update(_scale_length(config, min(2.0, 1.0 / max(rows_seen, 0.05))))
        ev.append(f"{rows_seen:.2f} of an epoch trained: train on every row ({ch})")
    if config.data.max_rows is not None:
        ch["data.max_rows"] = None
        ev.append(f"data.max_rows {config.data.max_rows} -> all rows: more phrasings")
    ratio = min(MAX_SYNTHETIC_RATIO, config.data.synthetic_ratio + SYNTHETIC_RATIO_STEP)
    if ratio > config.data.synthetic_ratio:
        ch["data.synthetic_ratio"] = ratio
        ev.append(f"data.synthetic_ratio {config.data.synthetic_ratio:g} -> {ratio:g}: rephrased requests, "
                  "filtered against train and held-out rows")
    if llm and config.data.synthetic_source != "llm":
        # Template wrappers add no verb a held-out phrasing might use (docs/benchmarks.md, the misses by
        # phrasing); an LLM's rewrites can.
        ch["data.synthetic_source"] = "llm"
        ev.append("data.synthetic_source template -> llm: the run's LLM rewrites requests in other words, "
                  "which fixed wrappers cannot")
    if repeats or not ch:
        lr = _sig(config.learning_rate / 2)
        ch["learning_rate"] = lr
        ev.append(f"learning_rate {config.learning_rate:.3g} -> {lr:.3g} (/2): fit the seen phrasings less hard")
    return ev, ch


# --------------------------------------------------------------------------- entry point


def unmet_gates(report: EvalReport | None, gates: Mapping[str, float]) -> dict[str, tuple[float | None, float]]:
    """Gates (metric -> minimum) that the report misses: metric -> (value, minimum)."""
    if report is None:
        return {}
    return {m: (report.metrics.get(m), minimum) for m, minimum in gates.items()
            if report.metrics.get(m) is None or report.metrics[m] < minimum}


def diagnose(config: TrainConfig, result: TrainResult, report: EvalReport | None, target: float,
             history: Sequence[AttemptRecord] = (), gates: Mapping[str, float] | None = None,
             random_init: bool = True, *, baseline: EvalReport | None = None,
             profile: DatasetProfile | None = None, max_positions: int | None = None,
             extra_tokens: int = 0, llm_rephrasing: bool = False) -> Diagnosis:
    """Judge one attempt, label it, and suggest validated `TrainConfig` changes for the next one.

    `gates` are minimums on other metrics that must hold too (e.g. format_compliance >= 0.95): an
    attempt that reaches the target on its primary metric but misses a gate is not good yet.
    `random_init`: the base model never trained, so its embeddings may need training; a
    pretrained model's vocabulary already means something, and training it is costly.
    `baseline`: the base model's report on the same split, which an accepted attempt must beat.
    `profile`, `max_positions`, `extra_tokens`: the data's token lengths, the base model's context
    and the tokens every row adds (persona, chat markup), to count truncated and dropped rows.
    `llm_rephrasing`: the run has an LLM that can rewrite training requests, the lever for a gap
    between trained and novel phrasings.
    """
    prior = _earlier(history, result)
    accepted, why, best = verdict(report, baseline, prior)
    data = _Data(profile, extra_tokens, max_positions, prior, llm_rephrasing)
    score = _score(report)

    def count(label: DiagnosisLabel) -> int:
        return _repeats(label, score, result, history)

    label, ev, ch = _rules(config, result, report, target, gates or {}, random_init, data, count=count,
                           may_be_good=accepted is not False, history=history)
    if result.status == "ok" and label != "good":
        ev = [*ev, *(line for line in data.lines(config) if line not in ev)]
    if accepted is False and best is not None and label not in ("oom", "unstable", "error"):
        more, ch = _retry_from_best(config, result, best, prior, target, gates or {}, random_init, data)
        ev = [*ev, *more]
    ch = {k: v for k, v in ch.items() if _current(config, k) != v}
    try:
        config.with_changes(ch)
    except ValidationError as exc:  # a rule bug must not hand the Planner an invalid config
        ev = [*ev, f"suggested changes {ch} failed validation ({exc.error_count()} error(s)); dropped"]
        ch = {}
    return Diagnosis(label=label, evidence=ev, suggested_changes=ch, accepted=accepted, verdict=why)


def _earlier(history: Sequence[AttemptRecord], result: TrainResult) -> list[AttemptRecord]:
    """The attempts before this one: a caller may have appended the current one (no diagnosis yet)."""
    prior = list(history)
    if prior and prior[-1].diagnosis is None and prior[-1].result == result:
        prior.pop()
    return prior


def _rules(config: TrainConfig, result: TrainResult, report: EvalReport | None, target: float,
           gates: Mapping[str, float], random_init: bool, data: _Data, *, count: Callable[[DiagnosisLabel], int],
           may_be_good: bool, history: Sequence[AttemptRecord]) -> tuple[DiagnosisLabel, list[str], dict[str, Any]]:
    """The first matching rule's label, evidence and raw changes (not yet checked for no-ops)."""
    score = _score(report)
    trend = loss_trend(result.loss_curve)
    unmet = unmet_gates(report, gates)

    def out(label: DiagnosisLabel, ev: list[str], ch: dict[str, Any],
            repeats: int = 0) -> tuple[DiagnosisLabel, list[str], dict[str, Any]]:
        return label, [*ev, _repeat_line(label, repeats, score, history)] if repeats else ev, ch

    if result.status == "oom":
        n = count("oom")
        return out("oom", *_oom(config, n), n)
    if result.status in ("nan", "diverged"):
        n = count("unstable")
        return out("unstable", *_unstable(config, result.status, n), n)
    if result.status == "error":
        text = (result.error or "").strip()
        last = text.splitlines()[-1] if text else "no error text recorded"
        ev = [f"status=error: {last}"]
        if count("error"):
            ev.append("the previous attempt also failed with status=error: "
                      "a code or data problem, not a hyperparameter")
        return "error", ev, {}

    gate_lines = [f"gate {m}={'missing' if v is None else f'{v:.3f}'} < {minimum}" for m, (v, minimum) in unmet.items()]
    if score is not None and score >= target and not unmet and may_be_good:
        assert report is not None
        met = [f"{m}={report.metrics[m]:.3f} >= {minimum}" for m, minimum in gates.items()]
        return "good", [
            f"{report.primary_metric}={score:.3f} >= target {target} "
            f"(split={report.split}, n={report.samples_of(report.primary_metric)}, seed={report.seed})", *met], {}

    overfit, ev = _is_overfit(result)
    if overfit:
        n = count("overfit")
        more, ch = _overfit(config, n)
        return out("overfit", ev + more, ch, n)

    flat = flat_high(result) if config.method != "dpo" else None  # DPO's loss starts at ln 2, not high
    if flat is not None:
        n = count("underfit")
        ev, ch = _underfit_flat(config, result, report, target, *flat, n, random_init, data)
        return out("underfit", gate_lines + ev, ch, n)

    compliance = report.metrics.get(FORMAT_METRIC) if report is not None else None
    format_floor = max(FORMAT_THRESHOLD, gates.get(FORMAT_METRIC, 0.0))
    if compliance is not None and compliance < format_floor and trend < FLAT_IMPROVEMENT:
        n = count("format")
        ev, ch = _format(config, compliance, format_floor, trend, n, random_init, data, report)
        return out("format", gate_lines + ev, ch, n)

    gap = generalization_gap(report)
    train = _final(result.train_loss, result.loss_curve)
    if gap is not None and train is not None and train < LOW_TRAIN_LOSS:
        assert report is not None
        n = count("generalize")
        ev, ch = _generalize(config, report, gap, train, epochs_trained(config, result), n, data.llm_rephrasing)
        return out("generalize", gate_lines + ev, ch, n)

    n = count("underfit")
    ev, ch = _underfit(config, result, report, target, trend, n, random_init)
    return out("underfit", gate_lines + ev, ch, n)


def epochs_trained(config: TrainConfig, result: TrainResult) -> float:
    """Passes over the data the run made: the last logged epoch, else the config's."""
    logged = [p.epoch for p in result.loss_curve if p.epoch is not None]
    return logged[-1] if logged else config.epochs


def _current(config: TrainConfig, key: str) -> Any:
    """The config's present value at a dotted key, to drop suggestions that change nothing."""
    value: Any = config
    for part in key.split("."):
        value = getattr(value, part)
    return value
