"""Shared fixtures: offline settings, one small tiny model and its task-agent data per session.

Everything heavy is session-scoped and built once: a 2-layer, 64-wide Llama (~0.1M params) whose
tokenizer is trained on a small slice of the task-agent data, and one short LoRA run whose adapter
the evaluation tests reuse.
"""

from __future__ import annotations

import os

# Set before transformers/tokenizers/torch are imported anywhere in the test session.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
# One OpenMP thread for whatever does not set its own (tools pass `threads`): with -n 2 on 2 cores a
# second thread only waits for a busy core (4 crew test files: 250 s at 2, 229 s at 1).
os.environ["OMP_NUM_THREADS"] = "1"

from dataclasses import dataclass
from pathlib import Path

import pytest

# One torch thread: on a shared 2-core machine a second intra-op thread waits for a busy core at
# every op, and a tiny model's generation or training step gets ~20x slower.
THREADS = 1

TEST_SPEC_KW = dict(hidden_size=64, intermediate_size=128, num_layers=2, num_heads=2, num_kv_heads=1, vocab_size=600)


@dataclass(frozen=True)
class TaskData:
    train: list[dict]
    heldout: list[dict]
    train_file: Path
    heldout_file: Path


def small_spec():
    """The tests' TinyModelSpec: ~0.1M params, the task-agent contract tags as single tokens."""
    from tunecrew.scenarios.task_agent.scenario import TINY_SPEC
    from tunecrew.tools.tinymodel import TinyModelSpec

    return TinyModelSpec(**TEST_SPEC_KW, added_tokens=TINY_SPEC.added_tokens)


def model_texts(data: TaskData) -> list[str]:
    """What the tests' tokenizer is trained on: every train message and the scenario instruction."""
    from tunecrew.scenarios.task_agent.scenario import SCENARIO

    return [m["content"] for row in data.train for m in row["messages"]] + [SCENARIO.instruction]


@pytest.fixture(scope="session")
def task_data(tmp_path_factory) -> TaskData:
    """A small, fixed task-agent split and its JSONL files."""
    from tunecrew.scenarios.task_agent.data import generate
    from tunecrew.tools.rows import write_jsonl

    data = generate(seed=0, n_train=120, n_heldout=16)
    out = tmp_path_factory.mktemp("task_data")
    return TaskData(
        train=data.train,
        heldout=data.heldout,
        train_file=write_jsonl(data.train, out / "train.jsonl"),
        heldout_file=write_jsonl(data.heldout, out / "heldout.jsonl"),
    )


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory, task_data) -> str:
    """Path of a small random-init Llama + BPE tokenizer with the contract tags as single tokens."""
    from tunecrew.tools.tinymodel import create_tiny_model

    out = tmp_path_factory.mktemp("tiny_model")
    return str(create_tiny_model(out, model_texts(task_data), small_spec()))


@pytest.fixture(scope="session")
def tiny_spec():
    """The spec `tiny_model` was built with."""
    return small_spec()


def lora_config(**changes):
    """A LoRA config that learns visibly in a few CPU steps on the tiny model."""
    from tunecrew.tools.contracts import TrainConfig

    base = dict(method="lora", lora_rank=8, lora_alpha=16, train_embeddings=True, learning_rate=3e-3,
                lr_scheduler="constant", warmup_ratio=0.0, batch_size=8, max_steps=6, max_seq_length=128,
                eval_fraction=0.0, seed=0)
    return TrainConfig(**{**base, **changes})


@pytest.fixture(scope="session")
def make_config():
    """`make_config(**changes)`: the tests' LoRA TrainConfig with `changes` applied."""
    return lora_config


@dataclass
class LoraRun:
    job: object  # TrainJob
    result: object  # TrainResult
    events: list[dict]


@pytest.fixture(scope="session")
def lora_run(tmp_path_factory, tiny_model, task_data) -> LoraRun:
    """One short real LoRA run (10 steps, in the train tool's subprocess), shared by every test
    that needs a trained adapter or a reference run."""
    from tunecrew.tools.train import TrainJob, run_training

    out = tmp_path_factory.mktemp("lora_run")
    job = TrainJob(config=lora_config(max_steps=10), base_model=tiny_model, train_file=str(task_data.train_file),
                   output_dir=str(out), threads=THREADS)
    events: list[dict] = []
    result = run_training(job, on_event=events.append, timeout_s=300)
    return LoraRun(job=job, result=result, events=events)


@pytest.fixture(scope="session")
def trained_adapter(lora_run) -> str:
    """The PEFT adapter directory of the shared LoRA run."""
    assert lora_run.result.status == "ok", lora_run.result.error
    assert lora_run.result.adapter_path
    return lora_run.result.adapter_path


@pytest.fixture
def tunecrew_home(tmp_path, monkeypatch) -> Path:
    """Point TUNECREW_HOME at a temp dir so no test reads or writes ~/.tunecrew."""
    home = tmp_path / "tunecrew_home"
    home.mkdir()
    monkeypatch.setenv("TUNECREW_HOME", str(home))
    return home

