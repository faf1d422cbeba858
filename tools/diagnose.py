"""Why did an attempt fall short, and what single set of changes should the next one try?

Pure rules over (config, result, report, history): no model, no I/O. The Planner reads the
returned `Diagnosis` as evidence, not as an order, so every evidence line carries the numbers the
rule used, and every suggested change is a `TrainConfig` field (dotted for nested ones, e.g.
``data.max_rows``) that validates through `TrainConfig.with_changes`.

Rules run in a fixed order; the first that matches wins:
  1. status oom            -> oom       (smaller per-device batch, same effective batch)
  2. status nan/diverged   -> unstable  (lr / 4, warmup >= 0.1)
  3. status error          -> error     (no changes: a bug is not a hyperparameter)
  4. primary >= target     -> good
  5. eval loss turned up   -> overfit
  6. format low, loss flat -> format    (it learned the words, not the contract: more steps, higher lr)
  7. primary group far below another group, train loss low
                           -> generalize (it learned the seen phrasings, not the task: every row, more
                              varied rows, a gentler lr)
  8. otherwise             -> underfit
`history` turns a repeated label whose score did not move into an escalation, so the crew does
not pay for the same failing change twice.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import ValidationError

from tunecrew.tools.contracts import (
    AttemptRecord,
    Diagnosis,
    DiagnosisLabel,
    EvalReport,
    LossPoint,
    TrainConfig,
    TrainResult,
)

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
    prior = list(history)
    if prior and prior[-1].diagnosis is None and prior[-1].result == result:
        prior.pop()
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
            repeats: int, random_init: bool) -> tuple[list[str], dict[str, Any]]:
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
            rank = _raise_rank(config)
            ch.update(rank)
            if rank:
                ev.append(f"lora_rank {config.lora_rank} -> {rank['lora_rank']} "
                          f"(alpha {rank['lora_alpha']}, cap {MAX_RANK})")
        if adapter and config.method == "lora" and not config.train_embeddings and random_init:
            ch["train_embeddings"] = True
            ev.append("train_embeddings False -> True")
    if not ch:
        ev.append("no lever left within the caps: consider stopping or a larger base model")
    return ev, ch


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
                rows_seen: float, repeats: int) -> tuple[list[str], dict[str, Any]]:
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
             random_init: bool = True) -> Diagnosis:
    """Label one attempt and suggest validated `TrainConfig` changes for the next one.

    `gates` are minimums on other metrics that must hold too (e.g. format_compliance >= 0.95): an
    attempt that reaches the target on its primary metric but misses a gate is not good yet.
    `random_init`: the base model never trained, so its embeddings may need training; a
    pretrained model's vocabulary already means something, and training it is costly.
    """
    score = _score(report)
    trend = loss_trend(result.loss_curve)
    unmet = unmet_gates(report, gates or {})

    def done(label: DiagnosisLabel, ev: list[str], ch: dict[str, Any], repeats: int = 0) -> Diagnosis:
        if repeats:
            ev = [*ev, _repeat_line(label, repeats, score, history)]
        ch = {k: v for k, v in ch.items() if _current(config, k) != v}
        try:
            config.with_changes(ch)
        except ValidationError as exc:  # a rule bug must not hand the Planner an invalid config
            ev = [*ev, f"suggested changes {ch} failed validation ({exc.error_count()} error(s)); dropped"]
            ch = {}
        return Diagnosis(label=label, evidence=ev, suggested_changes=ch)

    def repeats(label: DiagnosisLabel) -> int:
        return _repeats(label, score, result, history)

    if result.status == "oom":
        n = repeats("oom")
        return done("oom", *_oom(config, n), n)
    if result.status in ("nan", "diverged"):
        n = repeats("unstable")
        return done("unstable", *_unstable(config, result.status, n), n)
    if result.status == "error":
        text = (result.error or "").strip()
        last = text.splitlines()[-1] if text else "no error text recorded"
        ev = [f"status=error: {last}"]
        if repeats("error"):
            ev.append("the previous attempt also failed with status=error: "
                      "a code or data problem, not a hyperparameter")
        return Diagnosis(label="error", evidence=ev)

    gate_lines = [f"gate {m}={'missing' if v is None else f'{v:.3f}'} < {minimum}" for m, (v, minimum) in unmet.items()]
    if score is not None and score >= target and not unmet:
        assert report is not None
        met = [f"{m}={report.metrics[m]:.3f} >= {minimum}" for m, minimum in (gates or {}).items()]
        return Diagnosis(label="good", evidence=[
            f"{report.primary_metric}={score:.3f} >= target {target} "
            f"(split={report.split}, n={report.samples_of(report.primary_metric)}, seed={report.seed})", *met])

    overfit, ev = _is_overfit(result)
    if overfit:
        n = repeats("overfit")
        more, ch = _overfit(config, n)
        return done("overfit", ev + more, ch, n)

    compliance = report.metrics.get(FORMAT_METRIC) if report is not None else None
    format_floor = max(FORMAT_THRESHOLD, (gates or {}).get(FORMAT_METRIC, 0.0))
    if compliance is not None and compliance < format_floor and trend < FLAT_IMPROVEMENT:
        n = repeats("format")
        ev, ch = _format(config, compliance, format_floor, trend, n, random_init)
        return done("format", gate_lines + ev, ch, n)

    gap = generalization_gap(report)
    train = _final(result.train_loss, result.loss_curve)
    if gap is not None and train is not None and train < LOW_TRAIN_LOSS:
        assert report is not None
        n = repeats("generalize")
        ev, ch = _generalize(config, report, gap, train, epochs_trained(config, result), n)
        return done("generalize", gate_lines + ev, ch, n)

    n = repeats("underfit")
    ev, ch = _underfit(config, result, report, target, trend, n, random_init)
    return done("underfit", gate_lines + ev, ch, n)


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
