"""Data-parallel training (TrainJob.processes > 1) under `accelerate launch`: the same loss curve as
one process at the same global batch, one TrainResult when a rank crashes, and no rank left behind
when the launcher is killed or dies."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import psutil
import pytest

from tunecrew.tools.contracts import TrainConfig
from tunecrew.tools.train import TrainJob, _collect, _kill, per_process_batch, run_training, worker_command
from tunecrew.tools.train_worker import FAIL_RANK_ENV

from factories import trainer_pids, wait_until

# 2 gloo processes of batch 4 vs 1 process of batch 8: the same rows, seed and global batch. DDP
# all-reduces the gradient and transformers divides the loss by the token count of the whole global
# batch, so each update is the single-process one; only the order of float additions differs (two
# half-batch forwards, an all-reduce), and Adam amplifies that step by step. Measured (2 CPU cores):
# step 1 equal to 7e-8 relative (one float32 ulp) on this model and the demo's 2M-param one; over
# this test's 10 steps 9e-8; over 30 steps of the 2M-param model up to 2.2e-4 (bench/ddp.py). A
# different batch split, normalisation or data order moves step 1 itself by far more than 1e-6.
FIRST_STEP_RTOL = 1e-6
LOSS_RTOL = 1e-4


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_the_global_effective_batch_is_kept_across_processes():
    def split(batch: int, accum: int, n: int) -> tuple[int, int]:
        return per_process_batch(TrainConfig(batch_size=batch, grad_accum=accum), n)

    assert split(8, 4, 1) == (8, 4)
    assert split(8, 4, 2) == (8, 2)  # accumulation divides first: each device keeps its micro-batch
    assert split(8, 1, 2) == (4, 1)
    assert split(6, 3, 4) == (2, 3)  # neither divides: the batch rounds up, 2 x 3 x 4 = 24 > 18
    for batch, accum, n in [(8, 4, 2), (8, 1, 2), (16, 1, 4), (4, 6, 3)]:
        b, a = split(batch, accum, n)
        assert b * a * n == batch * accum


def test_processes_are_launched_by_accelerate_and_checked(tmp_path):
    job_file = tmp_path / "job.json"
    assert worker_command("py", job_file) == ["py", "-m", "tunecrew.tools.train_worker", str(job_file)]
    cmd = worker_command("py", job_file, processes=3)
    assert cmd[:3] == ["py", "-m", "accelerate.commands.launch"]
    assert cmd[cmd.index("--num_processes") + 1] == "3" and cmd[cmd.index("--main_process_port") + 1] == "0"
    assert cmd[-3:] == ["-m", "tunecrew.tools.train_worker", str(job_file)]

    job = TrainJob(config=TrainConfig(), base_model="m", train_file="t", output_dir=str(tmp_path), threads=5,
                   processes=2)
    assert job.threads_per_process == 2
    assert job.model_copy(update={"processes": 8}).threads_per_process == 1
    with pytest.raises(ValueError, match="processes=2: backend=unsloth"):
        TrainJob(config=TrainConfig(backend="unsloth"), base_model="m", train_file="t", output_dir="o", processes=2)


def test_killing_the_launcher_kills_ranks_in_sessions_of_their_own(tmp_path):
    """torchrun starts every rank with start_new_session: `_kill` must reach past the launcher's group."""
    launcher = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent("""
            import subprocess, sys, time
            rank = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], start_new_session=True)
            print(rank.pid, flush=True)
            time.sleep(120)
        """)],
        stdout=subprocess.PIPE, text=True, start_new_session=True)
    assert launcher.stdout is not None
    rank_pid = int(launcher.stdout.readline())
    _kill(launcher)
    launcher.wait(timeout=10)
    wait_until(lambda: _gone(rank_pid), timeout=10, what=f"rank {rank_pid} to die with its launcher")


def test_a_rank_dies_when_its_launcher_is_killed_9(tmp_path):
    """The crew itself killed -9 takes the launcher down (its PDEATHSIG); each rank sets its own."""
    ready = tmp_path / "ready"
    rank_code = ("import pathlib, time; from tunecrew.tools.train_worker import die_with_launcher; "
                 f"die_with_launcher(); pathlib.Path({str(ready)!r}).write_text('1'); time.sleep(120)")
    launcher = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import os, subprocess, sys, time
            rank = subprocess.Popen([sys.executable, "-c", {rank_code!r}], start_new_session=True,
                                    env={{**os.environ, "WORLD_SIZE": "2", "RANK": "1"}})
            print(rank.pid, flush=True)
            time.sleep(120)
        """)],
        stdout=subprocess.PIPE, text=True)
    assert launcher.stdout is not None
    rank_pid = int(launcher.stdout.readline())
    wait_until(ready.exists, timeout=30, what="the rank to set its death signal")
    launcher.kill()  # the launcher alone, as the kernel does when its own parent's death signal fires
    launcher.wait(timeout=10)
    wait_until(lambda: _gone(rank_pid), timeout=10, what=f"rank {rank_pid} to die with its launcher")


def test_a_rank_killed_by_signal_9_is_oom_even_when_the_others_raised(tmp_path):
    """The OOM killer's rank leaves no failure file; the rank that lost its peer does. torchrun's
    summary (its format in torch 2.13) names the root cause."""
    (tmp_path / "rank0.failed.json").write_text(json.dumps({"rank": 0, "at": 1.0, "result": {
        "status": "error", "error": "rank 0 of 2: RuntimeError: Connection closed by peer"}}))
    tail = ["Failures:", "[1]:", "  rank      : 0 (local_rank: 0)", "  exitcode  : 1 (pid: 41)",
            "Root Cause (first observed failure):", "[0]:", "  rank      : 1 (local_rank: 1)",
            "  exitcode  : -9 (pid: 42)", "  traceback : Signal 9 (SIGKILL) received by PID 42"]
    result = _collect(tmp_path, 1, tail, 2.0)
    assert result.status == "oom" and "signal 9" in result.error
    assert _collect(tmp_path, 1, tail[:4], 2.0).error.startswith("rank 0 of 2")  # no -9 root cause: the file


@pytest.mark.slow
def test_two_processes_follow_the_single_process_loss_curve(lora_run, tmp_path):
    """The shared 1-process run (10 LoRA steps, batch 8) against 2 gloo processes of batch 4."""
    single = lora_run.result
    assert single.status == "ok", single.error
    job = lora_run.job.model_copy(update={"output_dir": str(tmp_path / "ddp"), "processes": 2, "threads": 2})
    events: list[dict] = []
    ddp = run_training(job, on_event=events.append, timeout_s=300)
    assert ddp.status == "ok", ddp.error

    assert [p.step for p in ddp.loss_curve] == [p.step for p in single.loss_curve]
    got, want = [p.loss for p in ddp.loss_curve], [p.loss for p in single.loss_curve]
    assert got[0] == pytest.approx(want[0], rel=FIRST_STEP_RTOL), (got, want)  # same weights, same rows
    assert got == pytest.approx(want, rel=LOSS_RTOL), (got, want)
    assert ddp.tokens == single.tokens  # the same rows trained on: rank shards of the same global batches
    assert ddp.trainable_params == single.trainable_params
    assert (ddp.processes, single.processes) == (2, 1)

    start = events[0]
    assert start["event"] == "start" and (start["processes"], start["per_device_batch"]) == (2, 4)
    kinds = [e["event"] for e in events]
    assert kinds.count("start") == kinds.count("done") == 1  # rank 0's stream alone
    assert kinds.count("log") == len(ddp.loss_curve)
    assert (Path(ddp.adapter_path) / "adapter_config.json").exists()
    assert not list(Path(job.output_dir).glob("rank*.failed.json"))


@pytest.mark.slow
def test_a_crash_on_one_rank_is_one_error_result_and_no_rank_survives(tiny_model, task_data, make_config, tmp_path,
                                                                      monkeypatch):
    monkeypatch.setenv(FAIL_RANK_ENV, "1")
    out = tmp_path / "crash"
    job = TrainJob(config=make_config(max_steps=50), base_model=tiny_model, train_file=str(task_data.train_file),
                   output_dir=str(out), threads=2, processes=2)
    result = run_training(job, timeout_s=300)

    assert result.status == "error"
    # Rank 0 fails too (its all-reduce loses its peer), later: the result is the rank that went first.
    assert result.error.startswith("rank 1 of 2: RuntimeError"), result.error
    assert f"{FAIL_RANK_ENV}: rank 1 fails on purpose" in result.error
    assert "train_worker.py" in result.error  # the failing rank's own traceback, not the launcher's
    assert result.adapter_path is None
    assert not (out / "result.json").exists()
    assert trainer_pids(out) == []  # the launcher is gone and took both ranks with it
