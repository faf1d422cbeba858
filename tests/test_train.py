"""The train tool end to end: real (tiny) training runs in the worker subprocess, and every way a
run can fail turned into a TrainResult instead of an exception."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest

from tunecrew.tools.train import LOG_FILE, TrainJob, run_training

from conftest import THREADS

pytestmark = pytest.mark.slow


def _job(model: str, train_file, out: Path, config) -> TrainJob:
    return TrainJob(config=config, base_model=model, train_file=str(train_file), output_dir=str(out), threads=THREADS)


def test_lora_run_learns_and_saves_a_loadable_adapter(lora_run, tiny_model):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    result = lora_run.result
    assert result.status == "ok", result.error
    assert result.error is None
    assert result.steps == lora_run.job.config.max_steps
    losses = [p.loss for p in result.loss_curve]
    assert losses and all(math.isfinite(x) for x in losses)
    # Deterministic on CPU (seed 0): ~6.4 (ln vocab) falling to ~5 in 10 steps at lr 3e-3.
    assert losses[0] > losses[-1] + 0.3, losses
    assert result.train_loss is not None and math.isfinite(result.train_loss)
    assert 0 < result.trainable_params < result.total_params
    # The steady rate leaves the first step out; the rate the next estimate uses explains the
    # run's wall time exactly: fixed seconds + tokens / steady rate.
    from tunecrew.tools.throughput import rate_of

    assert result.steady_tokens_per_second and result.steady_tokens_per_second > 0
    rate = rate_of(result, "lora run")
    assert rate is not None and rate.tokens_per_second == result.steady_tokens_per_second
    assert 0 < rate.startup_seconds < result.wall_seconds
    assert rate.seconds_for(result.tokens) == pytest.approx(result.wall_seconds - result.eval_loss_seconds)

    adapter = Path(result.adapter_path)
    assert adapter == Path(lora_run.job.output_dir) / "adapter"
    assert (adapter / "adapter_config.json").exists()
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model), str(adapter))
    assert model.peft_config["default"].modules_to_save  # train_embeddings=True: embed_tokens/lm_head saved

    kinds = [e["event"] for e in lora_run.events]
    assert kinds[0] == "start" and kinds[-1] == "done"
    assert kinds.count("log") == len(result.loss_curve)
    logged = [json.loads(line) for line in (Path(lora_run.job.output_dir) / LOG_FILE).read_text().splitlines()]
    assert logged == lora_run.events


def test_precision_bf16_trains_under_autocast_and_the_result_says_so(tmp_path, tiny_model, task_data, make_config):
    """bf16 on a CPU is autocast over fp32 weights: the same seeded steps give other losses than fp32."""
    runs = {p: run_training(_job(tiny_model, task_data.train_file, tmp_path / p, make_config(max_steps=3, precision=p)),
                            timeout_s=300) for p in ("fp32", "bf16")}
    for precision, result in runs.items():
        assert result.status == "ok", result.error
        assert result.precision == precision
        assert all(math.isfinite(p.loss) for p in result.loss_curve)
    fp32, bf16 = ([p.loss for p in r.loss_curve] for r in runs.values())
    assert fp32 != bf16  # had the Trainer ignored bf16, the seeded runs would match to the last digit
    assert fp32[0] == pytest.approx(bf16[0], rel=0.05)  # the same model and batch, rounded differently


def test_nan_loss_stops_the_run_with_status_nan(tmp_path, tiny_model, task_data, make_config):
    # No in-bounds config blows this model up in a few steps (Adam caps each update; lr 5e-2 stays
    # under 3x the first loss), so the NaN comes from the base model: a NaN final-norm weight.
    import torch
    from transformers import AutoModelForCausalLM

    broken = tmp_path / "nan_model"
    shutil.copytree(tiny_model, broken)
    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    with torch.no_grad():
        model.model.norm.weight.fill_(float("nan"))
    model.save_pretrained(broken)

    result = run_training(_job(str(broken), task_data.train_file, tmp_path / "run", make_config(max_steps=4)),
                          timeout_s=300)
    assert result.status == "nan"
    assert "nan" in result.error.lower() and "step 1" in result.error
    assert result.steps == 1  # stopped at the first logged NaN, not after max_steps
    assert result.adapter_path is None  # a broken run keeps no adapter
    assert all(math.isfinite(p.loss) for p in result.loss_curve)  # result.json stays valid JSON


@pytest.mark.parametrize("content", [None, "{not json\n"], ids=["missing", "corrupt"])
def test_bad_train_file_is_an_error_result_naming_the_file(tmp_path, tiny_model, make_config, content):
    train_file = tmp_path / "rows.jsonl"
    if content is not None:
        train_file.write_text(content)
    result = run_training(_job(tiny_model, train_file, tmp_path / "run", make_config()), timeout_s=300)
    assert result.status == "error"
    assert str(train_file) in result.error
    assert result.adapter_path is None


def test_memory_limit_too_small_is_oom(tmp_path, tiny_model, task_data, make_config):
    # 200 MB of address space cannot even map libtorch: the loader's mmap gets ENOMEM.
    job = _job(tiny_model, task_data.train_file, tmp_path, make_config())
    result = run_training(job, memory_limit_mb=200, timeout_s=120)
    assert result.status == "oom", result.error
    assert "memory" in result.error.lower()


@pytest.fixture(scope="module")
def killed_then_full(tmp_path_factory, tiny_model, task_data, make_config):
    """A run killed by `timeout_s` mid-training, then a full fine-tune in the same directory.

    (Two checks for the price of one extra subprocess: each run costs ~10 s of imports here.)
    """
    from tunecrew.tools import train

    out = tmp_path_factory.mktemp("killed_then_full")
    events: list[dict] = []

    def kill_once_training_started(event: dict) -> None:
        # SIGKILL (what the OOM killer sends) the moment the worker says training started: a kill
        # timed from another run's start-up landed before it on a loaded machine and made this flaky.
        events.append(event)
        if event["event"] == "start":
            for proc in list(train._ACTIVE):
                train._kill(proc)

    # Long enough never to finish; the timeout is only a backstop should the start event never come.
    timeout = 300.0
    job = _job(tiny_model, task_data.train_file, out, make_config(max_steps=100_000))
    killed = run_training(job, on_event=kill_once_training_started, timeout_s=timeout)
    config = make_config(method="full", train_embeddings=False, learning_rate=1e-3, max_steps=3)
    full = run_training(job.model_copy(update={"config": config}), timeout_s=300)
    return killed, events, timeout, full


def test_killed_run_is_reported_as_probable_oom(killed_then_full):
    killed, events, timeout, _ = killed_then_full
    assert killed.status == "oom"  # SIGKILL is what the kernel's OOM killer sends: reported as probable OOM
    assert "signal 9" in killed.error and "killed" in killed.error
    assert any(e["event"] == "start" for e in events), f"killed before training started ({timeout:.1f}s)"
    assert killed.adapter_path is None


def test_full_finetune_after_a_kill_in_the_same_dir(killed_then_full, tiny_model):
    from transformers import AutoModelForCausalLM

    *_, full = killed_then_full
    assert full.status == "ok", full.error
    assert full.steps == 3 and full.loss_curve
    assert full.trainable_params == full.total_params  # method=full: every weight trains
    saved = Path(full.adapter_path)
    assert not (saved / "adapter_config.json").exists()
    model = AutoModelForCausalLM.from_pretrained(saved)
    assert model.config.model_type == "llama"


def test_continue_training_keeps_training_the_previous_adapter(tiny_model, task_data, tmp_path, make_config):
    first = run_training(_job(tiny_model, task_data.train_file, tmp_path / "a1", make_config(max_steps=6)))
    assert first.status == "ok", first.error
    job = _job(tiny_model, task_data.train_file, tmp_path / "a2", make_config(max_steps=6, continue_training=True))
    second = run_training(job.model_copy(update={"init_adapter": first.adapter_path, "data_offset": first.data_end}))
    assert second.status == "ok", second.error
    # 6 steps of 8 draw from a window of the 120-row shuffle (10 steps' worth at least); the continued run
    # draws from the next one instead of replaying the rows the adapter already learned.
    assert (first.data_end, second.data_end) == (80, 160)
    # It starts where the first attempt ended, not from the base model's loss
    assert second.loss_curve[0].loss < first.loss_curve[0].loss - 0.3, (first.loss_curve, second.loss_curve)
    assert second.trainable_params == first.trainable_params  # the same adapter, not a second one on top


def test_a_noisy_batch_on_a_low_loss_is_not_a_divergence():
    from tunecrew.tools.train_worker import diverged

    assert not diverged(0.35, 0.10)  # a continued adapter's noisy batch: 3.5x, but a quarter of a nat
    assert diverged(6.0, 1.5) and diverged(2.5, 0.1)  # blown up from a normal or from a low loss


@pytest.mark.slow
def test_an_attempt_stopped_before_its_first_logged_step_still_reports_its_loss(tmp_path, tiny_model, task_data,
                                                                                make_config):
    """400 planned steps log every 10th; a 1 s cap stops at step 1. Before, that was `ok` with no
    loss at all (a run reported as trained that no curve or diagnosis could read)."""
    from tunecrew.tools.train import TrainJob, run_training

    job = TrainJob(config=make_config(max_steps=400), base_model=tiny_model, train_file=str(task_data.train_file),
                   output_dir=str(tmp_path / "out"), threads=1, max_wall_seconds=1.0)
    result = run_training(job, timeout_s=300)
    assert result.status == "ok" and 1 <= result.steps < 10, (result.status, result.steps, result.error)
    assert [p.step for p in result.loss_curve] == [result.steps]
    assert result.train_loss is not None and result.train_loss == result.loss_curve[0].loss > 0
    # With its epoch, as logged points have: the diagnosis reads how much of the data was seen from it
    assert result.loss_curve[0].epoch is not None and 0 < result.loss_curve[0].epoch < 1


def test_a_run_draws_from_a_window_and_a_continued_run_from_the_next():
    from tunecrew.tools.contracts import TrainConfig
    from tunecrew.tools.train_worker import rotated, rows_to_prepare

    demo = TrainConfig(max_steps=13, batch_size=8)  # the demo's attempt on the task agent's 960 rows
    window = rows_to_prepare(960, demo)
    assert window == 123  # 104 rows a run consumes, +10% and a batch for rows TRL drops
    second = rotated(960, window)[:window]
    assert set(second).isdisjoint(range(window)) and second[0] == window
    assert rotated(5, 7) == [2, 3, 4, 0, 1] and rotated(5, 0) == [0, 1, 2, 3, 4]
    assert rows_to_prepare(960, TrainConfig(max_steps=200, batch_size=8)) == 960  # over an epoch: every row
