"""The offline policy's decisions on given inputs: change the data, the model, the machine or the
memory, and the decision changes."""

from __future__ import annotations

import asyncio
import json

import pytest
from autogen_core import FunctionCall
from autogen_core.models import AssistantMessage, FunctionExecutionResult, FunctionExecutionResultMessage, UserMessage
from autogen_core.tools import FunctionTool

from tunecrew.agents import policy
from tunecrew.agents.answers import DiagnoseAnswer, TuningBrief
from tunecrew.agents.offline import OfflinePolicyClient, TurnView
from tunecrew.tools.contracts import LossPoint, TrainConfig, TrainResult


def brief_of(rows=480, params=2_600_000, random_init=True, device="cpu", p95=90, recalled=(), previous=None,
             changes=None) -> dict:
    """A Tuner's brief as the JSON an agent reads: what recall_attempts answers."""
    return {
        "attempt": 1, "max_attempts": 3, "target": 0.95, "primary_metric": "tool_accuracy",
        "profile": {"source": "d.jsonl", "fingerprint": "f", "columns": [], "rows": rows, "format": "chat",
                    "total_tokens": {"count": rows, "mean": p95 * 0.7, "p50": p95 * 0.7,
                                                                     "p95": p95, "max": p95 + 10}},
        "base_model": {"name": "m", "family": "llama", "params": params, "vocab_size": 2000, "max_positions": 512,
                       "random_init": random_init},
        "hardware": {"device": device, "device_name": "x", "ram_gb": 24, "cpu_count": 2},
        "previous_config": previous, "planner_changes": changes or {}, "recalled": list(recalled),
    }


def brief(**kwargs) -> TuningBrief:
    return TuningBrief.model_validate(brief_of(**kwargs))


def test_never_trained_model_gets_trained_embeddings_and_high_lr():
    config, why = policy.initial_config(brief())
    assert config.method == "lora" and config.lora_rank == 32 and config.train_embeddings is True
    assert config.learning_rate == policy.RANDOM_INIT_LR
    assert "probe" in why


def test_pretrained_models_get_standard_lora_or_qlora_by_size_and_device():
    small_cpu, _ = policy.initial_config(brief(params=500_000_000, random_init=False))
    assert small_cpu.method == "lora" and small_cpu.train_embeddings is False
    assert small_cpu.learning_rate == policy.SMALL_PRETRAINED_LORA_LR and small_cpu.batch_size == 1
    # A sub-billion model gets the wider adapter measured to generalise better; alpha stays 2 x rank.
    assert (small_cpu.lora_rank, small_cpu.lora_alpha) == (64, 128)
    mid_cpu, _ = policy.initial_config(brief(params=1_500_000_000, random_init=False))
    assert mid_cpu.learning_rate == policy.PRETRAINED_LORA_LR and (mid_cpu.lora_rank, mid_cpu.lora_alpha) == (16, 32)
    big_gpu, why = policy.initial_config(brief(params=8_000_000_000, random_init=False, device="cuda"))
    assert big_gpu.method == "qlora" and "QLoRA" in why


def test_more_data_means_fewer_epochs_and_longer_rows_mean_longer_sequences():
    few, _ = policy.initial_config(brief(rows=200))
    many, _ = policy.initial_config(brief(rows=2000))
    assert few.epochs > many.epochs
    short, _ = policy.initial_config(brief(p95=40))
    long, _ = policy.initial_config(brief(p95=300))
    assert short.max_seq_length == 64 and long.max_seq_length == 512
    # The persona is prepended to every row, so it counts toward the sequence length.
    with_persona, _ = policy.initial_config(brief(p95=40).model_copy(update={"system_prompt_tokens": 40}))
    assert with_persona.max_seq_length == 128


def test_a_probe_on_small_data_leaves_room_to_double_it():
    config, _ = policy.initial_config(brief(rows=120))
    assert config.epochs == policy.MAX_PROBE_EPOCHS
    config.with_changes({"epochs": config.epochs * 2})


def test_remembered_success_is_a_warm_start_and_weak_matches_are_ignored():
    good = TrainConfig(lora_rank=32, lora_alpha=64, learning_rate=3e-3, epochs=10.6, train_embeddings=True).model_dump()
    hit = {"similarity": 0.8, "worked": True, "score": 1.0, "summary": "WORKED", "config": good}
    config, why = policy.initial_config(brief(recalled=[hit]))
    assert config.epochs == 10.6 and "warm start" in why
    weak = {**hit, "similarity": policy.RECALL_TRUST - 0.1}
    config, why = policy.initial_config(brief(recalled=[weak]))
    assert config.epochs != 10.6 and "probe" in why
    failed = {**hit, "worked": False}
    config, _ = policy.initial_config(brief(recalled=[failed]))
    assert config.epochs != 10.6


def test_retry_applies_the_planners_changes_to_the_previous_config():
    prev = TrainConfig(epochs=5.3, learning_rate=3e-3, data={"max_rows": 100}).model_dump()
    config, why = policy.initial_config(brief(previous=prev, changes={"epochs": 10.6, "data.max_rows": None}))
    assert config.epochs == 10.6 and config.data.max_rows is None and "Planner" in why


def test_seq_length_is_a_power_of_two_within_the_models_context():
    assert policy.seq_length_for(90, 100, 512) == 128
    assert policy.seq_length_for(5000, 6000, 2048) == 2048
    assert policy.seq_length_for(10, 12, None) == 64


def test_refused_proposals_are_repaired_only_when_the_refusal_says_how():
    config = TrainConfig(batch_size=16)
    repaired = policy.shrink_for_errors(config, ["needs 30 GB of memory, 22 available"])
    assert repaired is not None and (repaired.batch_size, repaired.grad_accum) == (8, 2)
    assert policy.shrink_for_errors(config, ["learning_rate=10: must be <= 0.05"]) is None


def test_rubric_follows_the_metrics_and_names_the_common_failure():
    rubric = policy.rubric_from_metrics(
        {"format_compliance": 1.0, "tool_accuracy": 0.5, "action_exact_match": 0.0},
        {"accuracy": "action_exact_match", "reasoning": "tool_accuracy", "completeness": "format_compliance",
         "clarity": "format_compliance"},
        [{"reason": "args differ: title"}, {"reason": "args differ: due"}, {"reason": "invalid reply: x"}],
    )
    assert (rubric["accuracy"], rubric["reasoning"], rubric["completeness"]) == (1, 6, 10)
    assert rubric["explanation"].index("args differ (2)") < rubric["explanation"].index("invalid reply (1)")


@pytest.mark.parametrize(
    ("label", "attempt", "changes", "action"),
    [("good", 1, {}, "stop"), ("underfit", 3, {"epochs": 2}, "stop"), ("underfit", 1, {"epochs": 2}, "retry"),
     ("error", 1, {}, "stop")],
)
def test_plan(label, attempt, changes, action):
    answer = DiagnoseAnswer.model_validate({"attempt": attempt, "max_attempts": 3, "target": 0.95, "diagnosis": {
        "label": label, "evidence": ["e"], "suggested_changes": changes}})
    decision = policy.plan(answer)
    assert decision.action == action
    if action == "retry":
        assert decision.changes == changes


def _exchange(name: str, args: dict, answer: dict, n: int) -> list:
    call = FunctionCall(id=str(n), name=name, arguments=json.dumps(args))
    return [AssistantMessage(content=[call], source="Tuner"),
            FunctionExecutionResultMessage(content=[FunctionExecutionResult(content=json.dumps(answer), name=name,
                                                                            call_id=str(n))])]


def test_offline_tuner_reads_its_tool_results_and_repairs_a_refused_config():
    def tool(name):
        return FunctionTool(lambda: "", name=name, description=name)

    tools = [tool("recall_attempts"), tool("propose_config"), tool("train")]
    client = OfflinePolicyClient("Tuner")
    history = [UserMessage(content="go", source="user")]
    first = asyncio.run(client.create(history, tools=tools))
    assert first.content[0].name == "recall_attempts"
    history += _exchange("recall_attempts", {}, brief_of(), 1)
    second = asyncio.run(client.create(history, tools=tools))
    proposed = json.loads(second.content[0].arguments)
    assert second.content[0].name == "propose_config" and proposed["learning_rate"] == policy.RANDOM_INIT_LR
    history += _exchange("propose_config", proposed, {"accepted": False, "errors": ["needs more memory than 24 GB"]}, 2)
    third = asyncio.run(client.create(history, tools=tools))
    repaired = json.loads(third.content[0].arguments)
    assert repaired["batch_size"] == proposed["batch_size"] // 2 and repaired["grad_accum"] == 2
    history += _exchange("propose_config", repaired, {"accepted": True}, 3)
    assert asyncio.run(client.create(history, tools=tools)).content[0].name == "train"
    assert len(TurnView(history).calls) == 3


def test_offline_client_refuses_unknown_roles():
    with pytest.raises(ValueError, match="unknown offline role"):
        OfflinePolicyClient("Janitor")


def test_offline_proposals_round_trip_keeps_recipe_and_backend() -> None:
    # The offline Tuner sends only the fields that differ from the defaults, as an LLM would: a
    # recalled recipe or backend must come back as it was, not be refused or dropped.
    from tunecrew.agents.offline import _proposal

    for config in (TrainConfig(), TrainConfig(backend="unsloth", data={"negatives": "nat", "synthetic_ratio": 0.5,
                                                                       "max_rows": 40})):
        assert TrainConfig.model_validate(_proposal(config)) == config


@pytest.mark.parametrize("recalled", [(), ({"worked": True, "similarity": 0.9, "score": 0.97, "summary": "s",
                                            "config": TrainConfig(seed=0, epochs=3).model_dump()},)],
                         ids=["no memory", "warm start"])
def test_the_run_seed_reaches_the_proposed_config(recalled):
    """The seed bug: the policy read brief['seed'], which the brief never carried, so every run (warm
    start or not) trained with seed 0 whatever --seed said."""
    config, _ = policy.initial_config(TuningBrief.model_validate({**brief_of(recalled=recalled), "seed": 7}))
    assert config.seed == 7


def trained(steps: int, last_lr: float, *, from_base: int | None = None, status: str = "ok") -> TrainResult:
    """A finished run whose loss curve logged `last_lr` at its last step."""
    curve = [LossPoint(step=s, loss=0.5, lr=1e-3 if s < steps else last_lr) for s in range(2, steps + 1, 2)]
    return TrainResult.model_validate({"status": status, "steps": steps, "loss_curve": curve, "wall_seconds": 60.0,
                                       "steps_from_base": from_base})


def test_a_retry_after_a_decayed_attempt_needs_time_for_as_many_steps_again():
    """Measured: 25 or 53 more steps on a converged 107-step SmolLM2 adapter lost novel prompts on 2 of
    3 seeds, 107 more gained on 2 of 3, so after a schedule that decayed to its end the floor is as many
    steps again, not MIN_STEPS."""
    cosine = TrainConfig(learning_rate=1e-3, max_steps=106, lr_scheduler="cosine")
    floor, why = policy.min_retry_steps(cosine, trained(106, 1e-6), random_init=False)
    assert floor == 106 and "decayed" in why and "106 steps" in why
    # A continued attempt counts its steps from the base model: the adapter it would continue is that long.
    assert policy.min_retry_steps(cosine, trained(26, 4e-6, from_base=132), random_init=False)[0] == 132
    # A held rate (the policy's split for a continuing retry), a schedule cut mid-way by the per-attempt
    # cap, a random-init model and a failed run keep the floor of MIN_STEPS.
    held = cosine.with_changes({"lr_scheduler": "constant_with_warmup"})
    assert policy.min_retry_steps(held, trained(106, 1e-3), random_init=False) == (policy.MIN_STEPS, "")
    assert policy.min_retry_steps(cosine, trained(40, 6e-4), random_init=False) == (policy.MIN_STEPS, "")
    assert policy.min_retry_steps(cosine, trained(106, 1e-6), random_init=True) == (policy.MIN_STEPS, "")
    assert policy.min_retry_steps(cosine, trained(106, 1e-6, status="oom"), random_init=False)[0] == policy.MIN_STEPS
    # A short run keeps the floor: 8 steps are under it.
    assert policy.min_retry_steps(cosine, trained(8, 1e-6), random_init=False)[0] == policy.MIN_STEPS


def test_a_time_budget_sizes_the_first_attempt_from_the_measured_rate():
    # 100,000 rows: the probe (0.4 epochs) is far longer than the time, which sizes it
    timed = {**brief_of(rows=100_000, params=134_000_000, random_init=False), "time_left_s": 1500.0,
             "eval_reserve_s": 60.0, "tokens_per_row": 100.0,
             "rate": {"tokens_per_second": 200.0, "startup_seconds": 10.0, "source": "t"}}
    config, why = policy.initial_config(TuningBrief.model_validate(timed))
    # (1500 - 2 x 60) x 0.45 - 10 s of start-up = 611 s; at 200 tokens/s and 4 rows of 100 tokens a step,
    # plus 10% for the eval-loss passes and a 5% margin: 122,200 / 463 = 263 steps
    assert config.max_steps == 263 and config.batch_size == 4
    assert "263 steps" in why and "200 tokens/s" in why
    # The retry's evaluation never scores the base model: when the brief says what one costs (30 s),
    # the first attempt keeps 60 + 30 s, not 2 x 60: (1500 - 90) x 0.45 - 10 = 624.5 s -> 269 steps
    cheaper, _ = policy.initial_config(TuningBrief.model_validate({**timed, "next_eval_s": 30.0}))
    assert cheaper.max_steps == 269
    # A retry takes all that is left after its own evaluation: (1500 - 60) - 10 = 1430 s -> 617 steps
    retry, _ = policy.initial_config(TuningBrief.model_validate({**timed, "previous_config": config.model_dump(),
                                                                 "planner_changes": {"max_steps": 1000}}))
    assert retry.max_steps == 617
    # 45% of 500 s would train 69 steps, under the probe's 80 (0.4 x 200): one attempt takes it all,
    # (500 - 60) - 10 = 430 s -> 185 steps, with no retry's evaluation kept back
    alone, why = policy.initial_config(TuningBrief.model_validate({**timed, "time_left_s": 500.0}))
    assert alone.max_steps == 185 and "takes all of it" in why
    # Less time than a few steps need: the floor keeps an attempt measurable
    short, _ = policy.initial_config(TuningBrief.model_validate({**timed, "time_left_s": 80.0}))
    assert short.max_steps == policy.MIN_STEPS


def test_an_attempt_cap_sizes_the_first_attempt_to_end_its_schedule_inside_it():
    """bench/tuning_quality.py, --attempt-seconds 180: the crew planned 80 cosine steps (1.48 epochs of
    240 rows), the cap stopped them at 37-49 with the learning rate still high."""
    timed = {**brief_of(rows=240, params=134_000_000, random_init=False), "tokens_per_row": 100.0,
             "rate": {"tokens_per_second": 200.0, "startup_seconds": 10.0, "source": "t"}}
    free, _ = policy.initial_config(TuningBrief.model_validate(timed))
    assert free.max_steps <= 0 and free.epochs == 1.48  # 80 steps of 4, in epochs: no cap to fit
    capped, why = policy.initial_config(TuningBrief.model_validate({**timed, "attempt_cap_s": 180.0}))
    # (180 - 10) s x 200 tokens/s / (4 rows x 100 tokens x 1.1 / 0.95) = 73 steps; a retry continues and decays
    assert capped.max_steps == 73 and capped.lr_scheduler == policy.HELD_SCHEDULER
    assert "--attempt-seconds 180" in why
    # the run's last attempt decays itself
    last, _ = policy.initial_config(TuningBrief.model_validate({**timed, "attempt_cap_s": 180.0, "max_attempts": 1}))
    assert last.max_steps == 73 and last.lr_scheduler == policy.DECAY_SCHEDULER
    # a cap the plan fits inside changes nothing; no measured rate: nothing to size from, the cap just stops it
    roomy, why = policy.initial_config(TuningBrief.model_validate({**timed, "attempt_cap_s": 600.0}))
    assert roomy == free and "--attempt-seconds" not in why
    unmeasured, _ = policy.initial_config(TuningBrief.model_validate({**timed, "rate": None, "attempt_cap_s": 180.0}))
    assert unmeasured == free
    # what a Planner or a person asked of a retry is theirs: the cap stops it, the policy does not rewrite it
    retry, _ = policy.initial_config(TuningBrief.model_validate({
        **timed, "attempt_cap_s": 180.0, "previous_config": free.model_dump(), "planner_changes": {"epochs": 4.0}}))
    assert retry.epochs == 4.0 and retry.max_steps <= 0


def test_a_retry_with_the_same_adapter_shape_continues_the_previous_adapter():
    pretrained = brief_of(rows=960, params=134_000_000, random_init=False)
    first, _ = policy.initial_config(TuningBrief.model_validate(pretrained))
    previous = first.with_changes({"max_steps": 16}).model_dump()
    retry, why = policy.initial_config(TuningBrief.model_validate({
        **pretrained, "previous_config": previous, "previous_ok": True, "previous_steps": 16,
        "planner_changes": {"max_steps": 32}}))
    # The Planner asked for 32 steps from the base model; 16 are in the adapter already
    assert retry.continue_training is True and retry.max_steps == 16 and "continuing" in why
    # The Planner changed the data, not the length: as many steps again on top, not the floor's 10
    more_data, why = policy.initial_config(TuningBrief.model_validate({
        **pretrained, "previous_config": previous, "previous_ok": True, "previous_steps": 16,
        "planner_changes": {"data.synthetic_ratio": 0.5}}))
    assert more_data.continue_training is True and more_data.max_steps == 16 and "for 16 more" in why
    # A new rank cannot reuse the old adapter, and a failed attempt left none to continue
    reshaped, _ = policy.initial_config(TuningBrief.model_validate({
        **pretrained, "previous_config": previous, "previous_ok": True, "previous_steps": 16,
        "planner_changes": {"lora_rank": 32, "lora_alpha": 64}}))
    failed, _ = policy.initial_config(TuningBrief.model_validate({
        **pretrained, "previous_config": previous, "previous_ok": False, "planner_changes": {"max_steps": 32}}))
    assert reshaped.continue_training is False and failed.continue_training is False


def test_one_attempt_that_takes_all_the_time_trains_past_a_probes_size():
    """The demo's shape (960 rows; the brief of a 10-minute run at 176 tokens/s): 45% of the time would
    train a probe too small for a retry, so one attempt takes the time. It is the run's training, not a
    probe: its steps come from the time (185), not the probe's 0.4 epochs (87 steps of 4)."""
    demo = {**brief_of(rows=960, params=134_000_000, random_init=False), "time_left_s": 557.9,
            "eval_reserve_s": 72.0, "next_eval_s": 72.0, "tokens_per_row": 98.2,
            "rate": {"tokens_per_second": 176.5, "startup_seconds": 9.0, "source": "timed steps (4)"}}
    config, why = policy.initial_config(TuningBrief.model_validate(demo))
    # (557.9 - 72) - 9 = 476.9 s x 176.5 tokens/s / (4 rows x 98.2 tokens x 1.1 / 0.95) = 185 steps
    assert config.max_steps == 185 and config.batch_size == 4 and config.lr_scheduler == policy.DECAY_SCHEDULER
    assert "takes all of it" in why and "probe of" in why
    # With time for a probe and a retry, the first attempt is the probe (0.4 of the 1-epoch target)
    roomy, why = policy.initial_config(TuningBrief.model_validate({**demo, "time_left_s": 1400.0}))
    assert roomy.max_steps <= 0 and roomy.epochs == 0.4 and "a probe of 0.4 epochs first" in why


def test_one_attempt_on_tiny_data_stays_within_the_epoch_cap():
    """40 rows for a random-init model under a 1-minute budget: its step target is hundreds of
    epochs of such data; the one attempt that takes the time is capped at the diagnosis' 20."""
    from tunecrew.tools.diagnose import MAX_EPOCHS

    tiny = {**brief_of(rows=40), "time_left_s": 50.0, "eval_reserve_s": 5.0, "tokens_per_row": 60.0,
            "rate": {"tokens_per_second": 200.0, "startup_seconds": 2.0, "source": "t"}}
    config, why = policy.initial_config(TuningBrief.model_validate(tiny))
    assert config.epochs <= MAX_EPOCHS and "takes all of it" in why


def test_a_first_attempt_split_for_a_retry_holds_its_rate_and_the_attempt_after_it_decays():
    timed = {**brief_of(rows=100_000, params=134_000_000, random_init=False), "time_left_s": 1500.0,
             "eval_reserve_s": 60.0, "tokens_per_row": 100.0,
             "rate": {"tokens_per_second": 200.0, "startup_seconds": 10.0, "source": "t"}}
    first, why = policy.initial_config(TuningBrief.model_validate(timed))
    # Sized in steps for a retry that can continue it: no decay of its own
    assert first.max_steps == 263 and first.lr_scheduler == policy.HELD_SCHEDULER and "held" in why
    # The retry continuing it takes the time left, so it is the one that decays
    retry, why = policy.initial_config(TuningBrief.model_validate({
        **timed, "previous_config": first.model_dump(), "previous_ok": True, "previous_steps": first.max_steps,
        "planner_changes": {"max_steps": 1000}}))
    assert retry.continue_training and retry.lr_scheduler == policy.DECAY_SCHEDULER and "decay" in why
    # So does a fresh retry (a new rank cannot continue), unless the Planner chose a scheduler itself
    fresh, _ = policy.initial_config(TuningBrief.model_validate({
        **timed, "previous_config": first.model_dump(), "previous_ok": True, "planner_changes": {"lora_rank": 32}}))
    assert not fresh.continue_training and fresh.lr_scheduler == policy.DECAY_SCHEDULER
    chosen, _ = policy.initial_config(TuningBrief.model_validate({
        **timed, "previous_config": first.model_dump(), "planner_changes": {"lr_scheduler": "linear"}}))
    assert chosen.lr_scheduler == "linear"
    # A remembered held first attempt, warm-started as one attempt from the base model, decays
    hit = {"similarity": 0.9, "worked": True, "score": 0.5, "summary": "W", "config": first.model_dump()}
    warm, _ = policy.initial_config(TuningBrief.model_validate({**timed, "recalled": [hit]}))
    assert warm.lr_scheduler == policy.DECAY_SCHEDULER
    # One attempt that takes all the time decays; so does one sized in epochs (no budget), which no
    # retry continues
    alone, _ = policy.initial_config(TuningBrief.model_validate({**timed, "time_left_s": 500.0}))
    untimed, _ = policy.initial_config(brief(params=134_000_000, random_init=False))
    assert alone.lr_scheduler == untimed.lr_scheduler == policy.DECAY_SCHEDULER and untimed.max_steps <= 0


def test_a_proposal_too_long_for_the_time_left_gets_fewer_steps_not_a_smaller_batch():
    config = TrainConfig(batch_size=8, max_steps=40)
    fixed = policy.shrink_for_errors(config, ["estimated 200 s > time budget left 100 s: lower max_steps=40"])
    assert fixed == config.with_changes({"max_steps": 19})  # 40 x 100/200 x 0.95
    assert policy.shrink_for_errors(config, ["estimated 9.1 GB > 85% of 8.0 GB RAM: lower batch_size=8"]) == \
        config.with_changes({"batch_size": 4, "grad_accum": 2})


def test_a_remembered_rate_is_reused_only_for_the_same_model_machine_and_threads():
    """Found from a clean clone: a rate measured with 1 thread sized a 2-thread run's attempt 40% short."""
    from types import SimpleNamespace

    from tunecrew.agents.toolkit import Toolkit

    from factories import make_record

    record = make_record()
    result = record.result.model_copy(update={"tokens": 9100, "train_seconds": 100.0, "threads": 1})
    hit = SimpleNamespace(record=record.model_copy(update={"result": result}))
    ctx = SimpleNamespace(base=SimpleNamespace(params=record.model_params), hardware=record.hardware,
                          wiring=SimpleNamespace(threads=2, processes=1))
    assert Toolkit(ctx)._remembered_rate([hit]) is None  # type: ignore[arg-type]
    ctx.wiring.threads, ctx.wiring.processes = 1, 2  # the same threads, but data-parallel: another rate
    assert Toolkit(ctx)._remembered_rate([hit]) is None  # type: ignore[arg-type]
    ctx.wiring.processes = 1
    rate = Toolkit(ctx)._remembered_rate([hit])  # type: ignore[arg-type]
    assert rate is not None and rate.tokens_per_second == 91.0 and rate.source.startswith("memory: run r1")
    # A rate measured in bf16 does not size an fp32 run (1.09-1.40x the tokens/s on an AMX CPU), nor the reverse.
    bf16 = record.hardware.model_copy(update={"bf16": True})
    for hw, precision, reused in ((record.hardware, "bf16", False), (bf16, "fp32", False), (bf16, "bf16", True),
                                  (bf16, None, True)):  # None: a record from before precision was kept
        ctx.hardware = hw
        hit.record = record.model_copy(update={"hardware": hw, "result": result.model_copy(
            update={"precision": precision})})
        assert (Toolkit(ctx)._remembered_rate([hit]) is not None) is reused, (hw.bf16, precision)  # type: ignore[arg-type]


def test_after_a_rejected_attempt_the_retry_starts_from_the_best_accepted_config():
    """Attempt 1 (16 steps) scored 0.391; attempt 2 continued its adapter to 32 steps from the base
    model and scored 0.2 (n=64): rejected. The retry is attempt 1's config with untried changes, from the
    base model, never a continuation of the rejected adapter."""
    from tunecrew.tools.contracts import Decision, Diagnosis, EvalReport, LossPoint, TrainResult
    from tunecrew.tools.diagnose import diagnose

    from factories import make_record

    def scored(score):
        return EvalReport(split="h", samples=64, seed=0, metrics={"tool_accuracy": score},
                          primary_metric="tool_accuracy")

    curve = [LossPoint(step=i, loss=2.2 * 0.85 ** i) for i in range(16)]
    ok = TrainResult(status="ok", loss_curve=curve, train_loss=curve[-1].loss, steps=16, steps_from_base=16,
                     adapter_path="a1")
    first = TrainConfig(learning_rate=1e-3, lora_rank=16, lora_alpha=32, max_steps=16, epochs=0.3, batch_size=8)
    best = make_record(attempt=1, score=0.391).model_copy(update={
        "config": first, "result": ok, "eval": scored(0.391), "diagnosis": Diagnosis(label="underfit", accepted=True),
        "decision": Decision(action="retry", changes={"max_steps": 32}, reason="x")})
    second = first.with_changes({"max_steps": 16, "continue_training": True})
    result = ok.model_copy(update={"steps_from_base": 32, "continued_from": 1, "adapter_path": "a2"})
    d = diagnose(second, result, scored(0.2), 0.95, [best], baseline=scored(0.03), random_init=False)
    decision = policy.plan(DiagnoseAnswer(attempt=2, max_attempts=4, target=0.95, diagnosis=d))
    assert d.accepted is False and decision.action == "retry"
    pretrained = brief_of(rows=960, params=134_000_000, random_init=False)
    retry, why = policy.initial_config(TuningBrief.model_validate({
        **pretrained, "previous_config": second.model_dump(), "previous_ok": False, "previous_steps": 32,
        "planner_changes": decision.changes}))
    assert retry.continue_training is False and "continuing" not in why
    # attempt 1's 16 steps were tried up to 32: the escalation keeps 16 and changes lr and rank instead
    assert retry.max_steps == 16 and retry.learning_rate == pytest.approx(2e-3) and retry.lora_rank == 32


def test_attempts_are_sized_from_the_rate_timed_now_not_a_remembered_one():
    """Found from a clean clone: memory's 84 tokens/s (the same machine, hours earlier) sized an attempt
    at 498 s that took 245 s; timed steps said 143."""
    from tunecrew.tools.throughput import MeasuredRate, sizing_rate

    timed = MeasuredRate(tokens_per_second=143.0, startup_seconds=9.0, source="timed steps (4)")
    remembered = MeasuredRate(tokens_per_second=84.0, startup_seconds=12.0, source="memory: run r1 attempt 1")
    rate, note = sizing_rate(timed, remembered)
    assert rate is timed and note is not None and "memory: run r1 attempt 1 measured 84" in note and "1.70x" in note
    assert sizing_rate(timed, None) == (timed, None)
    rate, note = sizing_rate(None, remembered)
    assert rate is remembered and note is not None and "timing steps failed" in note
    assert sizing_rate(None, None) == (None, None)


def test_a_warm_start_fills_this_runs_time_not_the_steps_that_fit_the_remembered_one():
    """Found from a clean clone: a remembered 74-step attempt (sized at 84 tokens/s) was copied onto a
    machine training 143 tokens/s; the same brief as the one-attempt demo test sizes 185 steps."""
    first = TrainConfig(method="lora", lora_rank=16, lora_alpha=32, learning_rate=1e-3, batch_size=4, max_steps=74,
                        epochs=0.34, max_seq_length=256)
    hit = {"similarity": 1.0, "worked": True, "score": 0.516, "summary": "WORKED", "config": first.model_dump()}
    demo = {**brief_of(rows=960, params=134_000_000, random_init=False), "time_left_s": 557.9,
            "eval_reserve_s": 72.0, "next_eval_s": 72.0, "tokens_per_row": 98.2, "recalled": [hit],
            "rate": {"tokens_per_second": 176.5, "startup_seconds": 9.0, "source": "timed steps (4)"}}
    config, why = policy.initial_config(TuningBrief.model_validate(demo))
    assert "warm start" in why and config.max_steps == 185 and config.lora_rank == 16
    # A slower machine than the remembered one's still shrinks it; a long budget grows it to one epoch only
    slow, _ = policy.initial_config(TuningBrief.model_validate({**demo, "time_left_s": 150.0}))
    assert slow.max_steps < 74
    roomy, _ = policy.initial_config(TuningBrief.model_validate({**demo, "time_left_s": 5000.0}))
    assert roomy.max_steps == 216  # 960 rows x 0.9 / 4
