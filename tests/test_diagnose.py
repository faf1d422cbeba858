"""Each diagnosis label from crafted inputs; every suggestion validates; history escalates."""

from __future__ import annotations

import math

import pytest

from tunecrew.tools.contracts import (
    AttemptRecord,
    DataRecipe,
    Decision,
    Diagnosis,
    EvalReport,
    LossPoint,
    TrainConfig,
    TrainResult,
)
from tunecrew.tools.diagnose import diagnose, loss_trend

from factories import make_record

TARGET = 0.8


def falling(n: int = 20, start: float = 4.0, rate: float = 0.15) -> list[LossPoint]:
    """Still clearly falling at the end (exponential decay to 0)."""
    return [LossPoint(step=10 * i, loss=start * math.exp(-rate * i)) for i in range(n)]


def flat(n: int = 20, level: float = 0.6) -> list[LossPoint]:
    """Fell early, flat over the last 20%."""
    return [LossPoint(step=10 * i, loss=level + 3.0 * math.exp(-i)) for i in range(n)]


def ok_result(curve: list[LossPoint] | None = None, eval_curve: list[LossPoint] | None = None,
              train_loss: float | None = None, eval_loss: float | None = None) -> TrainResult:
    curve = curve if curve is not None else falling()
    return TrainResult(status="ok", loss_curve=curve, eval_curve=eval_curve or [],
                       train_loss=train_loss if train_loss is not None else curve[-1].loss,
                       eval_loss=eval_loss, steps=len(curve) * 10)


def report(primary: float, fmt: float | None = None) -> EvalReport:
    metrics = {"tool_accuracy": primary}
    if fmt is not None:
        metrics["format_compliance"] = fmt
    return EvalReport(split="heldout", samples=50, seed=0, metrics=metrics, primary_metric="tool_accuracy")


DEMO = TrainConfig(lora_rank=32, lora_alpha=64, train_embeddings=True, learning_rate=3e-3, epochs=1.0)
SMALL = TrainConfig(lora_rank=8, lora_alpha=16, learning_rate=2e-4, epochs=1.0, data=DataRecipe(max_rows=200))
OVERFIT_EVAL = [LossPoint(step=s, loss=v) for s, v in [(50, 1.2), (100, 0.9), (150, 1.1), (200, 1.4)]]


def valid(config: TrainConfig, d: Diagnosis) -> TrainConfig:
    """Every suggestion must apply cleanly and actually change something it names."""
    new = config.with_changes(d.suggested_changes)
    assert isinstance(new, TrainConfig)
    return new


# --------------------------------------------------------------------------- loss_trend


def test_loss_trend_falling_flat_and_short() -> None:
    assert loss_trend(falling()) > 0.05
    assert abs(loss_trend(flat())) < 0.05
    assert loss_trend([]) == 0.0
    assert loss_trend([LossPoint(step=0, loss=1.0)]) == 0.0
    rising = [LossPoint(step=i, loss=1.0 + i) for i in range(10)]
    assert loss_trend(rising) < 0


# --------------------------------------------------------------------------- labels


def test_oom_halves_batch_keeps_effective_batch() -> None:
    cfg = TrainConfig(batch_size=8, grad_accum=2)
    d = diagnose(cfg, TrainResult(status="oom", error="CUDA out of memory"), None, TARGET)
    assert d.label == "oom"
    new = valid(cfg, d)
    assert (new.batch_size, new.grad_accum) == (4, 4)
    assert new.effective_batch == cfg.effective_batch
    assert any("effective batch 16 -> 16" in e for e in d.evidence)


def test_oom_at_batch_one_halves_sequence_then_gives_up() -> None:
    cfg = TrainConfig(batch_size=1, max_seq_length=512)
    d = diagnose(cfg, TrainResult(status="oom"), None, TARGET)
    assert valid(cfg, d).max_seq_length == 256
    floor = TrainConfig(batch_size=1, max_seq_length=64)
    d = diagnose(floor, TrainResult(status="oom"), None, TARGET)
    assert d.suggested_changes == {}
    assert any("qlora" in e for e in d.evidence)


@pytest.mark.parametrize("status", ["nan", "diverged"])
def test_unstable_quarters_lr_and_warms_up(status: str) -> None:
    cfg = TrainConfig(learning_rate=4e-3, warmup_ratio=0.0)
    d = diagnose(cfg, TrainResult(status=status), None, TARGET)  # type: ignore[arg-type]
    assert d.label == "unstable"
    new = valid(cfg, d)
    assert new.learning_rate == pytest.approx(1e-3)
    assert new.warmup_ratio == 0.1


def test_error_has_no_changes_and_quotes_last_line() -> None:
    err = "Traceback (most recent call last):\n  File x\nValueError: tokenizer has no chat template"
    d = diagnose(DEMO, TrainResult(status="error", error=err), None, TARGET)
    assert d.label == "error"
    assert d.suggested_changes == {}
    assert "ValueError: tokenizer has no chat template" in d.evidence[0]


def test_good_when_target_reached() -> None:
    d = diagnose(DEMO, ok_result(), report(0.85, fmt=0.95), TARGET)
    assert d.label == "good"
    assert d.suggested_changes == {}
    assert "0.850" in d.evidence[0] and "n=50" in d.evidence[0]


def test_target_reached_but_a_gate_missed_is_not_good() -> None:
    gates = {"format_compliance": 0.95}
    assert diagnose(DEMO, ok_result(), report(0.85, fmt=0.97), TARGET, gates=gates).label == "good"
    # Loss still falling: train longer. Loss flat: the format rule, with the gate as its floor.
    d = diagnose(DEMO, ok_result(curve=falling()), report(0.85, fmt=0.92), TARGET, gates=gates)
    assert d.label == "underfit" and d.evidence[0] == "gate format_compliance=0.920 < 0.95"
    assert ">= target" in d.evidence[1] and d.suggested_changes
    d = diagnose(DEMO, ok_result(curve=flat()), report(0.85, fmt=0.92), TARGET, gates=gates)
    assert d.label == "format" and "< 0.95 while the loss flattened" in d.evidence[1]
    valid(DEMO, d)


def test_overfit() -> None:
    cfg = TrainConfig(epochs=4.0, lora_dropout=0.0, weight_decay=0.0)
    res = ok_result(curve=flat(level=0.3), eval_curve=OVERFIT_EVAL, train_loss=0.3, eval_loss=1.4)
    d = diagnose(cfg, res, report(0.5, fmt=0.9), TARGET)
    assert d.label == "overfit"
    new = valid(cfg, d)
    assert (new.epochs, new.lora_dropout, new.weight_decay) == (2.0, 0.05, 0.01)
    assert any("1.400" in e and "0.900" in e for e in d.evidence)


def test_no_overfit_with_two_eval_points() -> None:
    two = [OVERFIT_EVAL[1], OVERFIT_EVAL[3]]  # would qualify on the ratios, but 2 points are too few
    res = ok_result(curve=flat(level=0.3), eval_curve=two, train_loss=0.3, eval_loss=1.4)
    assert diagnose(DEMO, res, report(0.5), TARGET).label != "overfit"


def test_format_when_loss_flat_and_compliance_low() -> None:
    cfg = TrainConfig(lora_rank=16, lora_alpha=32, learning_rate=5e-4, epochs=2.0, train_embeddings=False)
    d = diagnose(cfg, ok_result(curve=flat()), report(0.4, fmt=0.5), TARGET)
    assert d.label == "format"
    new = valid(cfg, d)
    assert new.learning_rate == pytest.approx(7.5e-4)
    assert new.epochs == 4.0
    assert new.train_embeddings is True


def test_format_keeps_a_high_lr_and_trains_longer() -> None:
    cfg = DEMO.with_changes({"learning_rate": 3e-3})
    d = diagnose(cfg, ok_result(curve=flat()), report(0.4, fmt=0.5), TARGET)
    assert "learning_rate" not in d.suggested_changes and d.suggested_changes["epochs"] == cfg.epochs * 2
    assert any("kept" in line for line in d.evidence)


def test_format_lr_capped_for_lora() -> None:
    first = make_record(attempt=1, diagnosis="format", score=0.4)
    cfg = DEMO.with_changes({"learning_rate": 4e-3})
    d = diagnose(cfg, ok_result(curve=flat()), report(0.4, fmt=0.5), TARGET, history=[first])
    assert d.suggested_changes["learning_rate"] == pytest.approx(5e-3)


def test_format_with_epochs_at_cap_escalates_like_a_repeat() -> None:
    # Measured in bench/warm_start.py: a warm start at 20 epochs missed the format gate and the run
    # stopped with a budget left, because lr was "kept" and epochs had nowhere to go.
    cfg = TrainConfig(epochs=20.0, learning_rate=3e-3, lora_rank=32, lora_alpha=64, train_embeddings=True)
    d = diagnose(cfg, ok_result(curve=flat()), report(0.75, fmt=0.78), TARGET)
    assert d.label == "format"
    assert "epochs" not in d.suggested_changes
    assert d.suggested_changes["learning_rate"] == pytest.approx(4.5e-3)
    assert d.suggested_changes["lora_rank"] == 64 and d.suggested_changes["lora_alpha"] == 128
    assert any("already at cap" in e for e in d.evidence)
    valid(cfg, d)
    # A step cap that can still grow is more training, not a stuck run: only the steps change.
    capped = cfg.with_changes({"max_steps": 100})
    d = diagnose(capped, ok_result(curve=flat()), report(0.75, fmt=0.78), TARGET)
    assert d.suggested_changes == {"max_steps": 200}


def test_format_qlora_never_trains_embeddings() -> None:
    cfg = TrainConfig(method="qlora", learning_rate=1e-3)
    d = diagnose(cfg, ok_result(curve=flat()), report(0.4, fmt=0.5), TARGET)
    assert d.label == "format" and "train_embeddings" not in d.suggested_changes
    valid(cfg, d)


def test_underfit_demo_first_attempt() -> None:
    """The offline demo's short first attempt: loss still falling, compliance low -> underfit, more epochs."""
    d = diagnose(DEMO, ok_result(curve=falling()), report(0.3, fmt=0.4), TARGET)
    assert d.label == "underfit"
    new = valid(DEMO, d)
    assert new.epochs == 2.0
    assert any("still falling" in e for e in d.evidence)


def test_underfit_small_recipe_raises_everything() -> None:
    d = diagnose(SMALL, ok_result(curve=falling()), report(0.3), TARGET)
    assert d.label == "underfit"
    new = valid(SMALL, d)
    assert new.epochs == 2.0
    assert new.data.max_rows is None
    assert new.learning_rate == pytest.approx(4e-4)
    assert (new.lora_rank, new.lora_alpha) == (16, 32)


def test_underfit_scales_max_steps_too() -> None:
    cfg = TrainConfig(max_steps=100, learning_rate=3e-3)
    d = diagnose(cfg, ok_result(), report(0.3), TARGET)
    assert valid(cfg, d).max_steps == 200


def test_underfit_at_caps_suggests_nothing_invalid() -> None:
    cfg = TrainConfig(epochs=20.0, learning_rate=5e-3, lora_rank=128, lora_alpha=256, train_embeddings=True)
    d = diagnose(cfg, ok_result(), report(0.3), TARGET)
    assert d.label == "underfit" and d.suggested_changes == {}
    assert any("no lever left" in e for e in d.evidence)


def test_underfit_with_epochs_at_cap_escalates_like_a_repeat() -> None:
    # A config recalled from memory may already train for the epoch cap: the first underfit must
    # still have a lever (step size, capacity), not end the run.
    cfg = TrainConfig(epochs=20.0, learning_rate=2e-3, lora_rank=32, lora_alpha=64, train_embeddings=True)
    d = diagnose(cfg, ok_result(), report(0.3), TARGET)
    assert d.label == "underfit"
    assert "epochs" not in d.suggested_changes
    assert d.suggested_changes["learning_rate"] == pytest.approx(4e-3)
    assert d.suggested_changes["lora_rank"] == 64 and d.suggested_changes["lora_alpha"] == 128
    assert any("already at cap" in e for e in d.evidence)
    valid(cfg, d)


def test_underfit_without_report() -> None:
    d = diagnose(DEMO, ok_result(), None, TARGET)
    assert d.label == "underfit"
    valid(DEMO, d)


# --------------------------------------------------------------------------- every suggestion validates


CONFIGS = [
    TrainConfig(),
    DEMO,
    SMALL,
    TrainConfig(method="full", learning_rate=1e-5, epochs=0.5, batch_size=1, max_seq_length=64),
    TrainConfig(method="qlora", lora_rank=512, lora_alpha=1024, lora_dropout=0.5, epochs=100.0,
                learning_rate=5e-2, weight_decay=1.0, warmup_ratio=0.5),
    TrainConfig(method="dpo", lora_rank=1, lora_alpha=16, max_steps=1_000_000, batch_size=1024, grad_accum=512),
]
CASES = {
    "oom": (TrainResult(status="oom"), None),
    "unstable": (TrainResult(status="nan"), None),
    "error": (TrainResult(status="error", error="boom"), None),
    "good": (ok_result(), report(0.9)),
    "overfit": (ok_result(curve=flat(level=0.3), eval_curve=OVERFIT_EVAL, train_loss=0.3, eval_loss=1.4), report(0.5)),
    "format": (ok_result(curve=flat()), report(0.4, fmt=0.5)),
    "underfit": (ok_result(), report(0.3, fmt=0.5)),
}


@pytest.mark.parametrize("label", list(CASES))
@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: f"{c.method}-r{c.lora_rank}")
@pytest.mark.parametrize("repeated", [False, True])
def test_every_suggestion_validates(label: str, cfg: TrainConfig, repeated: bool) -> None:
    result, rep = CASES[label]
    history = [_prior(label, score=rep.metrics["tool_accuracy"] if rep else None)] if repeated else []
    d = diagnose(cfg, result, rep, TARGET, history)
    assert d.label == label
    new = valid(cfg, d)
    for key in d.suggested_changes:  # no no-op suggestions
        obj, old = new, cfg
        for part in key.split("."):
            obj, old = getattr(obj, part), getattr(old, part)
        assert obj != old, key
    assert all(any(ch.isdigit() for ch in e) or "status=" in e for e in d.evidence[:1])


# --------------------------------------------------------------------------- history


def _prior(label: str, score: float | None, attempt: int = 1, action: str = "retry") -> AttemptRecord:
    rec = make_record(attempt=attempt, score=score if score is not None else 0.5, diagnosis=label,
                      decision=action, lr=2e-3, rank=32)
    return rec.model_copy(update={"diagnosis": Diagnosis(label=label), "decision": Decision(action=action, reason="x")})  # type: ignore[arg-type]


def test_underfit_twice_without_progress_escalates() -> None:
    cfg = TrainConfig(lora_rank=32, lora_alpha=64, learning_rate=2e-3, epochs=2.0, train_embeddings=True)
    first = diagnose(cfg, ok_result(), report(0.50), TARGET)
    assert set(first.suggested_changes) == {"epochs"}
    d = diagnose(cfg, ok_result(), report(0.51), TARGET, [_prior("underfit", 0.50)])
    assert d.label == "underfit"
    new = valid(cfg, d)
    assert new.epochs == 4.0
    assert new.learning_rate == pytest.approx(4e-3)
    assert (new.lora_rank, new.lora_alpha) == (64, 128)
    assert any("escalating" in e and "0.500" in e and "0.510" in e for e in d.evidence)


def test_underfit_that_improved_is_not_escalated() -> None:
    cfg = TrainConfig(lora_rank=32, lora_alpha=64, learning_rate=2e-3, epochs=2.0, train_embeddings=True)
    d = diagnose(cfg, ok_result(), report(0.60), TARGET, [_prior("underfit", 0.50)])
    assert set(d.suggested_changes) == {"epochs"}
    assert not any("escalating" in e for e in d.evidence)


def test_different_previous_label_is_not_escalated() -> None:
    cfg = TrainConfig(lora_rank=32, lora_alpha=64, learning_rate=2e-3, epochs=2.0, train_embeddings=True)
    d = diagnose(cfg, ok_result(), report(0.50), TARGET, [_prior("format", 0.50)])
    assert set(d.suggested_changes) == {"epochs"}


def test_current_attempt_in_history_is_ignored() -> None:
    cfg = TrainConfig(lora_rank=32, lora_alpha=64, learning_rate=2e-3, epochs=2.0, train_embeddings=True)
    res, rep = ok_result(), report(0.50)
    current = _prior("underfit", 0.50).model_copy(update={"result": res, "eval": rep, "diagnosis": None,
                                                          "decision": None})
    d = diagnose(cfg, res, rep, TARGET, [_prior("underfit", 0.50), current])
    assert "lora_rank" in d.suggested_changes  # escalated against the earlier attempt, not the current one


def test_repeated_oom_also_shortens_sequences() -> None:
    cfg = TrainConfig(batch_size=4, grad_accum=2, max_seq_length=1024)
    d = diagnose(cfg, TrainResult(status="oom"), None, TARGET, [_prior("oom", None)])
    new = valid(cfg, d)
    assert (new.batch_size, new.grad_accum, new.max_seq_length) == (2, 4, 512)
    assert any("escalating" in e for e in d.evidence)


def test_repeated_unstable_cuts_lr_harder() -> None:
    cfg = TrainConfig(learning_rate=1e-3, warmup_ratio=0.1)
    d = diagnose(cfg, TrainResult(status="diverged"), None, TARGET, [_prior("unstable", None)])
    new = valid(cfg, d)
    assert new.learning_rate == pytest.approx(1e-4)
    assert new.warmup_ratio == 0.2


def grouped(novel: float, trained: float, fmt: float = 1.0) -> EvalReport:
    """The task agent's shape: the target is the novel-phrasing group's action exact match."""
    from tunecrew.tools.contracts import GroupMetrics

    groups = {"trained_phrasing": GroupMetrics(samples=64, metrics={"action_exact_match": trained}),
              "novel_phrasing": GroupMetrics(samples=64, metrics={"action_exact_match": novel})}
    return EvalReport(split="heldout", samples=128, seed=0, primary_metric="novel_phrasing/action_exact_match",
                      metrics={"format_compliance": fmt, "action_exact_match": (novel + trained) / 2,
                               "novel_phrasing/action_exact_match": novel,
                               "trained_phrasing/action_exact_match": trained}, groups=groups)


def test_a_gap_between_seen_and_unseen_phrasings_is_diagnosed_as_generalisation():
    low_loss = ok_result(flat(level=0.05))
    half_epoch = TrainConfig(learning_rate=1e-3, max_steps=60, batch_size=8, epochs=0.5)
    d = diagnose(half_epoch, low_loss.model_copy(update={"loss_curve": [
        p.model_copy(update={"epoch": 0.5 * (i + 1) / 20}) for i, p in enumerate(low_loss.loss_curve)]}),
        grouped(novel=0.53, trained=0.83), TARGET)
    assert d.label == "generalize"
    assert "novel_phrasing/action_exact_match=0.530 vs trained_phrasing/action_exact_match=0.830" in d.evidence[0]
    new = valid(half_epoch, d)
    assert new.max_steps == 120 and new.data.synthetic_ratio == 0.5  # every row, and rephrased rows
    assert new.data.synthetic_source == "template"  # offline: the fixed wrappers are all there is
    with_llm = diagnose(half_epoch, low_loss, grouped(novel=0.53, trained=0.83), TARGET, llm_rephrasing=True)
    assert with_llm.label == "generalize" and valid(half_epoch, with_llm).data.synthetic_source == "llm"
    assert any("synthetic_source template -> llm" in line for line in with_llm.evidence)
    # The same gap while the loss is still high is underfitting, not a generalisation problem
    assert diagnose(half_epoch, ok_result(falling(start=4.0, rate=0.01)), grouped(0.2, 0.5), TARGET).label == "underfit"
    # A small gap is not a generalisation problem either
    assert diagnose(half_epoch, low_loss, grouped(0.6, 0.7), TARGET).label == "underfit"


def test_a_pretrained_model_is_never_told_to_train_its_embeddings():
    """A pretrained vocabulary already means something; training 49k x 576 embeddings is costly."""
    pretrained = TrainConfig(learning_rate=1e-3, max_steps=16, batch_size=8, epochs=0.15)
    gates = {"format_compliance": 0.98}
    fmt = diagnose(pretrained, ok_result(flat(level=0.3)), report(0.3, fmt=0.83), TARGET, gates=gates,
                   random_init=False)
    assert fmt.label == "format" and "train_embeddings" not in fmt.suggested_changes
    assert fmt.suggested_changes.get("max_steps") == 32
    scratch = diagnose(pretrained, ok_result(flat(level=0.3)), report(0.3, fmt=0.83), TARGET, gates=gates,
                       random_init=True)
    assert scratch.suggested_changes.get("train_embeddings") is True


def test_the_format_rule_fires_on_a_reasoning_scenario_whose_replies_never_close_think() -> None:
    """medical-o1 on the tiny model: </think> never closed, and the Planner said "underfit". The
    reasoning scorer called its metric format_ok, the diagnosis read format_compliance: one name now."""
    from tunecrew.scenarios.dataset import score_reply
    from tunecrew.tools.evaluate import score_replies

    rows = [{"messages": [{"role": "user", "content": f"Case {i}?"},
                          {"role": "assistant", "content": f"<think>\nreasoning {i}\n</think>\nDiagnosis {i}."}]}
            for i in range(20)]
    replies = [f"<think>\nthe patient has {i} and so on and on" for i in range(20)]  # never closed
    scored = score_replies(rows, replies, score_reply, split="t", seed=0, primary_metric="answer_f1")
    assert scored.metrics["format_compliance"] == 0.0
    cfg = TrainConfig(lora_rank=16, lora_alpha=32, learning_rate=5e-4, epochs=2.0)
    assert diagnose(cfg, ok_result(curve=flat()), scored, TARGET).label == "format"


# --------------------------------------------------------------------------- verdict (issue 15 item 6)


def scored(score: float, n: int = 64, metric: str = "tool_accuracy") -> EvalReport:
    return EvalReport(split="heldout", samples=n, seed=0, metrics={metric: score}, primary_metric=metric)


def attempt(number: int, config: TrainConfig, score: float, accepted: bool | None = True,
            label: str = "underfit", result: TrainResult | None = None) -> AttemptRecord:
    """A closed attempt of this run, scored at n=64 (the task agent's held-out group size)."""
    rec = make_record(attempt=number, score=score)
    return rec.model_copy(update={
        "config": config, "eval": scored(score), "result": result or ok_result(),
        "diagnosis": Diagnosis(label=label, accepted=accepted),  # type: ignore[arg-type]
        "decision": Decision(action="retry", reason="x")})


PRETRAINED = TrainConfig(learning_rate=1e-3, lora_rank=16, lora_alpha=32, epochs=1.0, max_seq_length=256)
BASE = scored(0.03)  # the untuned model on the same split


def test_an_attempt_that_does_not_beat_the_base_model_is_rejected_and_never_good() -> None:
    d = diagnose(PRETRAINED, ok_result(), scored(0.03), TARGET, baseline=BASE)
    assert d.accepted is False and "does not beat the base model (0.030 <= 0.030)" in d.verdict
    # Even at the target: the base model already scores higher, so fine-tuning made nothing better
    d = diagnose(PRETRAINED, ok_result(), scored(0.85), TARGET, baseline=scored(0.9))
    assert d.accepted is False and d.label != "good"
    # Above the base model, with nothing before it: accepted
    d = diagnose(PRETRAINED, ok_result(), scored(0.28), TARGET, baseline=BASE)
    assert d.accepted is True and d.verdict.startswith("accepted: beats the base model (0.280 > 0.030)")


def test_within_noise_of_the_best_is_accepted_and_clearly_worse_is_rejected() -> None:
    # Measured pairs from the task-agent ledgers at n=64: 0.234 after 0.266 (noise), 0.281 after 0.391.
    best = attempt(1, PRETRAINED, 0.266)
    near = diagnose(PRETRAINED.with_changes({"epochs": 2.0}), ok_result(), scored(0.234), TARGET, [best],
                    baseline=BASE)
    assert near.accepted is True and "within noise of the best so far, attempt 1 (0.266" in near.verdict
    best = attempt(1, PRETRAINED, 0.391)
    worse = diagnose(PRETRAINED.with_changes({"epochs": 2.0}), ok_result(), scored(0.281), TARGET, [best],
                     baseline=BASE)
    assert worse.accepted is False
    assert "worse than the best so far, attempt 1 (0.391), by 0.110 > noise 0.083" in worse.verdict
    # The band is one standard error of the difference: sqrt(.391*.609/64 + .281*.719/64)
    assert math.sqrt(0.391 * 0.609 / 64 + 0.281 * 0.719 / 64) == pytest.approx(0.083, abs=5e-4)
    # A rejected attempt is never the best, however it scored before the verdict existed
    from tunecrew.tools.diagnose import best_attempt
    rejected = attempt(2, PRETRAINED, 0.5, accepted=False)
    legacy = attempt(3, PRETRAINED, 0.4, accepted=None)  # a ledger line from before verdicts
    assert best_attempt([best, rejected, legacy]) is legacy
    assert best_attempt([rejected]) is None


def test_a_rejected_attempt_retries_from_the_best_accepted_config() -> None:
    best = attempt(1, PRETRAINED, 0.391)  # its diagnosis was underfit: the Planner doubled the epochs
    tried = PRETRAINED.with_changes({"epochs": 2.0})
    d = diagnose(tried, ok_result(), scored(0.2), TARGET, [best], baseline=BASE, random_init=False)
    assert d.accepted is False
    new = valid(tried, d)
    # Back to attempt 1's epochs; the escalated underfit changes that were not tried: lr and rank
    assert new.epochs == 1.0
    assert new.learning_rate == pytest.approx(2e-3) and (new.lora_rank, new.lora_alpha) == (32, 64)
    assert any(e.startswith("retry from attempt 1's config") for e in d.evidence)
    # The Planner reads it: its reason leads with the verdict, and it retries with these changes
    from tunecrew.agents import policy
    from tunecrew.agents.answers import DiagnoseAnswer

    decision = policy.plan(DiagnoseAnswer(attempt=2, max_attempts=4, target=TARGET, diagnosis=d))
    assert decision.action == "retry" and decision.changes == d.suggested_changes
    assert decision.reason.startswith("underfit: rejected: ") and "retry from attempt 1" in decision.reason


def test_a_rejected_attempt_with_every_change_already_tried_stops_at_the_best() -> None:
    best = attempt(1, PRETRAINED, 0.391)
    second = attempt(2, PRETRAINED.with_changes({"epochs": 2.0}), 0.2, accepted=False)
    third = PRETRAINED.with_changes({"learning_rate": 2e-3, "lora_rank": 32, "lora_alpha": 64})
    d = diagnose(third, ok_result(), scored(0.21), TARGET, [best, second], baseline=BASE, random_init=False)
    assert d.accepted is False and d.suggested_changes == {}
    assert any("no untried change is left" in e for e in d.evidence)


def test_an_unscored_attempt_has_no_verdict_and_keeps_its_own_fix() -> None:
    best = attempt(1, PRETRAINED, 0.391)
    d = diagnose(PRETRAINED.with_changes({"batch_size": 8}), TrainResult(status="oom"), None, TARGET, [best],
                 baseline=BASE)
    assert d.accepted is None and d.label == "oom" and d.suggested_changes["batch_size"] == 4


def test_export_never_hands_back_a_rejected_attempt(tmp_path) -> None:
    from tunecrew.tools.export import ExportError, choose_attempt
    from tunecrew.tools.run_dir import RunDir

    run = RunDir(tmp_path / "run")
    for n in (1, 2):
        (run.attempt(n).adapter).mkdir(parents=True)
        (run.attempt(n).adapter / "adapter_config.json").write_text("{}")
    good, rejected = attempt(1, PRETRAINED, 0.3), attempt(2, PRETRAINED, 0.35, accepted=False)
    assert choose_attempt(run, [good, rejected]).attempt == 1
    with pytest.raises(ExportError, match="no attempt was accepted"):
        choose_attempt(run, [rejected])
    assert choose_attempt(run, [good, rejected], attempt=2).attempt == 2  # asked for by number: allowed


# --------------------------------------------------------------------------- flat, high loss


def medical_flat(n: int = 12) -> list[LossPoint]:
    """medical-o1 on the tiny model: 6.1 -> 6.0 over the whole run."""
    return [LossPoint(step=5 * i, loss=6.1 - 0.1 * i / (n - 1)) for i in range(n)]


def never_closed(n: int = 64) -> EvalReport:
    from tunecrew.tools.contracts import Failure

    fails = [Failure(prompt=f"Case {i}?", expected=f"<think>\nwhy {i}\n</think>\nDx {i}.", got="<think>\nthe the",
                     reason="no final answer: the reply never closed </think>") for i in range(4)]
    return EvalReport(split="heldout", samples=n, seed=0, primary_metric="answer_f1", failures=fails,
                      metrics={"answer_f1": 0.02, "format_compliance": 0.0})


def test_a_flat_high_loss_raises_the_lr_and_checks_the_data_not_only_epochs() -> None:
    tiny = TrainConfig(lora_rank=32, lora_alpha=64, train_embeddings=True, learning_rate=1e-3, epochs=2.0)
    d = diagnose(tiny, ok_result(medical_flat()), never_closed(), TARGET)
    assert d.label == "underfit"  # not "format": at 6.0 nats it learned neither the words nor the contract
    assert d.evidence[0].startswith("underfit (flat): loss 6.10 -> 6.00 over 12 logged points (final/first 0.98")
    new = valid(tiny, d)
    assert new.learning_rate == pytest.approx(3e-3) and "epochs" not in d.suggested_changes
    # Capped: the random-init demo's lr 3e-3 goes to the adapter cap 5e-3, not 9e-3
    demo = diagnose(DEMO, ok_result(medical_flat()), never_closed(), TARGET)
    assert demo.suggested_changes["learning_rate"] == pytest.approx(5e-3)
    at_cap = DEMO.with_changes({"learning_rate": 5e-3})
    d = diagnose(at_cap, ok_result(medical_flat()), never_closed(), TARGET)
    assert any("already at cap" in e for e in d.evidence) and d.suggested_changes == {"lora_rank": 64,
                                                                                      "lora_alpha": 128}


@pytest.mark.parametrize("curve", [
    falling(start=2.2, rate=0.12),  # a pretrained model learning: 2.2 -> 0.23
    [LossPoint(step=i, loss=0.09 + 0.01 * (i % 2)) for i in range(10)],  # a continued adapter: flat but low
    [LossPoint(step=i, loss=7.2 - 0.5 * i) for i in range(12)],  # random init, falling fast: 7.2 -> 1.7
    medical_flat(2),  # two points say nothing about the shape
])
def test_a_healthy_or_short_curve_is_not_flat_high(curve: list[LossPoint]) -> None:
    d = diagnose(DEMO, ok_result(curve), report(0.3, fmt=0.9), TARGET)
    assert not any(e.startswith("underfit (flat)") for e in d.evidence)


# --------------------------------------------------------------------------- truncated and dropped rows


def medical_profile(p95: float = 1287, p99: float = 1500, longest: int = 2100, prompt_max: int = 300,
                    duplicates: int = 0, reply_p50: float = 200):
    """medical-o1's shape (issue 15): p95 1,287 tokens, 1,000 rows, counted with the tokenizer."""
    from tunecrew.tools.contracts import DatasetProfile, TokenStats

    over = [longest - 10 * i for i in range(32)]
    return DatasetProfile(
        source="medical-o1", fingerprint="f", rows=1000, columns=["Question", "Complex_CoT", "Response"],
        format="instruction", token_unit="tokenizer", duplicates=duplicates,
        total_tokens=TokenStats(count=1000, mean=700, p50=650, p95=p95, p99=p99, max=longest, longest=over),
        prompt_tokens=TokenStats(count=1000, mean=60, p50=50, p95=150, p99=250, max=prompt_max,
                                 longest=[prompt_max - i for i in range(32)]),
        response_tokens=TokenStats(count=1000, mean=640, p50=reply_p50, p95=1200, p99=1400, max=2000))


def test_format_on_truncated_reasoning_rows_raises_max_seq_length_within_the_context() -> None:
    cfg = TrainConfig(learning_rate=1e-3, epochs=2.0, max_seq_length=1024)
    args = dict(profile=medical_profile(), extra_tokens=40)
    d = diagnose(cfg, ok_result(flat(level=0.9)), never_closed(), TARGET, max_positions=8192, **args)
    assert d.label == "format"
    assert any("truncated at max_seq_length 1024 (p95 1,327 tokens a row)" in e and "</think>" in e
               for e in d.evidence)
    assert any(e.startswith("rows_truncated: at least 32 of 1,000 over 1024 tokens") for e in d.evidence)
    assert valid(cfg, d).max_seq_length == 2048  # next power of two over the p99 (1,540)
    # The base model's context is 1,024: say why not, and change nothing else about it
    d = diagnose(cfg, ok_result(flat(level=0.9)), never_closed(), TARGET, max_positions=1024, **args)
    assert "max_seq_length" not in d.suggested_changes
    assert any("not raised: the base model's context is 1024 tokens" in e for e in d.evidence)
    # Rows that fit: no truncation line and no change to max_seq_length
    short = dict(profile=medical_profile(p95=700, p99=900, longest=1000), extra_tokens=10)
    d = diagnose(cfg, ok_result(flat(level=0.9)), never_closed(), TARGET, max_positions=8192, **short)
    assert d.label == "format" and "max_seq_length" not in d.suggested_changes
    assert not any("truncat" in e for e in d.evidence)


def test_dropped_rows_are_evidence_under_every_label() -> None:
    cfg = TrainConfig(learning_rate=1e-3, epochs=2.0, max_seq_length=256, data=DataRecipe(max_rows=500))
    profile = medical_profile(p95=200, p99=230, longest=400, prompt_max=300, duplicates=12)
    d = diagnose(cfg, ok_result(falling()), report(0.3, fmt=0.9), TARGET, profile=profile, extra_tokens=20)
    assert d.label == "underfit"
    lines = [e for e in d.evidence if e.startswith("rows_")]
    assert any("prompts alone are over 256 tokens" in e for e in lines)
    assert any("12 duplicate rows of 1,000 (data.dedup)" in e for e in lines)
    assert any("data.max_rows=500 trains on 500 of 1,000 rows" in e for e in lines)
    # A flat, high loss on very short replies says so
    short = medical_profile(p95=200, p99=230, longest=240, prompt_max=200, reply_p50=1)
    d = diagnose(cfg, ok_result(medical_flat()), report(0.1, fmt=0.2), TARGET, profile=short)
    assert any("replies are very short (median 1 tokens a reply)" in e for e in d.evidence)
