"""How a measured training run becomes the rate the next attempt is sized by (tools/throughput.py,
tools/train_worker.steady_rate): pure arithmetic on recorded numbers."""

from __future__ import annotations

import pytest

from tunecrew.tools.contracts import TrainConfig, TrainResult
from tunecrew.tools.throughput import rate_of
from tunecrew.tools.train_worker import pad_multiple, steady_rate


def test_the_steady_rate_leaves_out_the_first_step_and_the_eval_passes():
    # Step 1 ends at t=10 s after a slow warm-up; steps 2-4 take 1 s each for 100 tokens; a 2 s
    # eval pass falls between steps 3 and 4.
    marks = [(10.0, 100, 0.0), (11.0, 200, 0.0), (12.0, 300, 0.0), (15.0, 400, 2.0)]
    assert steady_rate(marks) == pytest.approx(300 / 3)
    assert steady_rate(marks[:1]) is None  # one logged step says nothing about the steady state
    assert steady_rate([(1.0, 100, 0.0), (1.0, 100, 0.0)]) is None


def test_a_step_that_builds_kernels_for_a_new_padded_length_is_a_fixed_cost_not_the_rate():
    # Seven 1 s steps of 100 tokens and two of 4 s (new padded lengths: oneDNN builds their kernels).
    marks = [(0.0, 0, 0.0)]
    for seconds in (1, 4, 1, 1, 4, 1, 1, 1, 1):
        marks.append((marks[-1][0] + seconds, marks[-1][1] + 100, 0.0))
    assert steady_rate(marks) == pytest.approx(100.0)  # first to last would say 900 / 15 = 60
    run = TrainResult(status="ok", steps=10, tokens=1000, train_seconds=16.0, wall_seconds=26.0,
                      steady_tokens_per_second=steady_rate(marks))
    rate = rate_of(run, "run")
    assert rate is not None and rate.startup_seconds == pytest.approx(16.0)  # 10 s outside + the 6 s of kernels
    assert rate.seconds_for(1000) == pytest.approx(26.0)  # the same run again takes what it took


def test_batches_are_padded_to_a_quarter_of_the_sequence_on_a_cpu():
    config = TrainConfig(max_seq_length=256)
    assert pad_multiple(config, use_cpu=True) == 64
    assert pad_multiple(config, use_cpu=False) == 8
    assert pad_multiple(config.with_changes({"max_seq_length": 16}), use_cpu=True) == 8
    assert pad_multiple(config.with_changes({"pad_to_multiple_of": 1}), use_cpu=True) is None
    assert pad_multiple(config.with_changes({"pad_to_multiple_of": 32}), use_cpu=False) == 32
    assert pad_multiple(config.with_changes({"packing": True}), use_cpu=True) is None


def test_the_padding_reaches_trls_collator_settings(tmp_path):
    from tunecrew.tools.train import TrainJob
    from tunecrew.tools.train_worker import dpo_config, sft_config

    config = TrainConfig(max_seq_length=256)
    job = TrainJob(config=config, base_model="m", train_file="t.jsonl", output_dir=str(tmp_path))
    assert sft_config(config, job, False, True, False, 10).pad_to_multiple_of == 64
    dpo = config.with_changes({"method": "dpo"})
    assert dpo_config(dpo, job.model_copy(update={"config": dpo}), False, True, False, 10).pad_to_multiple_of == 64


def test_activation_checkpointing_is_off_without_a_deprecation_warning(tmp_path):
    # TRL turns checkpointing on by default (pure overhead for small models); transformers 5.24+ warns
    # on its old name on every attempt.
    import warnings

    from tunecrew.tools.train import TrainJob
    from tunecrew.tools.train_worker import dpo_config, sft_config

    config = TrainConfig(max_seq_length=256)
    job = TrainJob(config=config, base_model="m", train_file="t.jsonl", output_dir=str(tmp_path))
    dpo = config.with_changes({"method": "dpo"})
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        built = [sft_config(config, job, False, True, False, 10),
                 dpo_config(dpo, job.model_copy(update={"config": dpo}), False, True, False, 10)]
    for args in built:
        assert args.gradient_checkpointing is False
        assert getattr(args, "activation_checkpointing", False) is False


def _result(**fields) -> TrainResult:
    return TrainResult(status="ok", **fields)


def test_a_probe_with_a_slow_first_step_predicts_a_longer_run_from_its_steady_rate():
    # 4 steps of 100 tokens: the first took 6 s, the other three 1 s each; 10 s outside the loop.
    probe = _result(steps=4, tokens=400, train_seconds=9.0, wall_seconds=19.0, steady_tokens_per_second=100.0)
    rate = rate_of(probe, "probe")
    assert rate is not None
    assert rate.tokens_per_second == 100.0
    assert rate.startup_seconds == pytest.approx(15.0)  # 10 s outside + the warm-up's 5 s over a steady step
    # 20 steps of the same shape: 15 s fixed + 2000 tokens at 100/s. The whole-loop rate (400/9 =
    # 44 tokens/s) would have said 10 + 45 = 55 s.
    assert rate.seconds_for(2000) == pytest.approx(35.0)


def test_a_run_without_a_steady_rate_falls_back_to_its_whole_loop():
    old = _result(steps=1, tokens=100, train_seconds=2.0, eval_loss_seconds=0.5, wall_seconds=10.0)
    rate = rate_of(old, "one step")
    assert rate is not None
    assert rate.tokens_per_second == pytest.approx(100 / 1.5)
    assert rate.startup_seconds == pytest.approx(8.0)
    assert rate_of(_result(steps=0, wall_seconds=3.0), "nothing") is None
