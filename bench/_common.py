"""Shared set-up for the bench scripts: the tiny model, the task-agent data, a text table, and the
example AttemptRecords the memory benches fill stores with (from the installed package,
tunecrew.memory.examples, which the tests use too: no bench imports tests/).

Not a bench itself. Each script puts this folder on sys.path and imports it.
"""

from __future__ import annotations

import contextlib
import os
import platform
import random
from collections.abc import Iterator
from pathlib import Path

from tunecrew.memory.examples import DOMAINS, make_domain_record, make_hardware, make_profile

__all__ = ["DOMAINS", "add_model_arguments", "environ", "machine", "make_domain_record", "make_hardware",
           "make_profile", "table", "task_agent_persona", "task_rows", "tiny_model", "train_first_config",
           "variable_rows", "write_task_train_file"]

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def add_model_arguments(parser) -> None:
    """--base-model, --adapter, --seed, --threads: the task-agent evaluation benches' model and split."""
    parser.add_argument("--base-model", default="smollm2-135m")
    parser.add_argument("--adapter", help="a tuned attempt's adapter; without it the base model, prompted as the "
                        "run's baseline is (the contract and tools in the system prompt)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)


def task_agent_persona() -> str:
    """The persona the Domain Expert writes for the task agent's data (tools/domain.py)."""
    from tunecrew.tools.domain import DOMAINS as DOMAIN_TABLE

    return next(d.persona for d in DOMAIN_TABLE if d.label == "task-management agent")


def machine() -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    dev = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    return f"{cpu}, {os.cpu_count()} cores visible, device={dev}, torch {torch.__version__}"


def task_rows(seed: int, n_train: int, n_heldout: int = 16):
    from tunecrew.scenarios.task_agent.data import generate

    return generate(seed=seed, n_train=n_train, n_heldout=n_heldout)


def write_task_train_file(path: Path, seed: int, n_train: int = 416) -> Path:
    """The task agent's training rows of `seed`'s split as the train tool reads them."""
    import json

    rows = task_rows(seed, n_train=n_train).train
    path.write_text("".join(json.dumps({"messages": r["messages"]}) + "\n" for r in rows))
    return path


@contextlib.contextmanager
def environ(env: dict[str, str] | None) -> Iterator[None]:
    """`env` set in os.environ (which the train tool hands its worker) for the block, then put back."""
    saved = {key: os.environ.get(key) for key in env or {}}
    os.environ.update(env or {})
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def train_first_config(model: str, train_file: Path, out: Path, *, steps: int, seed: int, threads: int,
                       precision: str = "auto", env: dict[str, str] | None = None):
    """The crew's first config for SmolLM2-135M on the task agent (LoRA r64 on every linear layer,
    lr 1e-3, batch 4), `steps` optimizer steps from the base model through the train tool (the worker
    subprocess), with `env` set for that run only. Exits naming the arm if it does not train."""
    from tunecrew.tools.contracts import TrainConfig
    from tunecrew.tools.train import TrainJob, run_training

    config = TrainConfig(method="lora", lora_rank=64, lora_alpha=128, learning_rate=1e-3, batch_size=4,
                         max_steps=steps, max_seq_length=128, eval_fraction=0.0, seed=seed, precision=precision)
    job = TrainJob(config=config, base_model=model, train_file=str(train_file), output_dir=str(out),
                   system_prompt=task_agent_persona(), threads=threads)
    with environ(env):
        result = run_training(job, timeout_s=1800)
    if result.status != "ok":
        raise SystemExit(f"precision={precision} env={env}: {result.status}: {result.error}")
    return result


def variable_rows(rows: list[dict], seed: int, max_repeat: int = 8) -> list[dict]:
    """Variable-length chat rows from short task-agent rows: each reply is followed by 0..max_repeat-1
    further task-agent replies, so lengths spread over roughly 1x..max_repeat x (long tail)."""
    rng = random.Random(seed)
    replies = [r["messages"][-1]["content"] for r in rows]
    out = []
    for row in rows:
        k = min(max_repeat - 1, int(rng.expovariate(0.45)))
        extra = " ".join(rng.choice(replies) for _ in range(k))
        msgs = [dict(m) for m in row["messages"]]
        msgs[-1]["content"] = (msgs[-1]["content"] + (" " + extra if extra else "")).strip()
        out.append({"messages": msgs})
    return out


def tiny_model(out_dir: Path, texts: list[str], small: bool = False) -> str:
    from tunecrew.scenarios.task_agent.scenario import TINY_SPEC
    from tunecrew.tools.tinymodel import TinyModelSpec, create_tiny_model

    spec = TINY_SPEC
    if small:
        spec = TinyModelSpec(hidden_size=64, intermediate_size=128, num_layers=2, num_heads=2, num_kv_heads=1,
                             vocab_size=600, added_tokens=TINY_SPEC.added_tokens)
    return str(create_tiny_model(out_dir, texts, spec))


def table(headers: list[str], rows: list[list[object]]) -> str:
    cells = [[str(h) for h in headers]] + [[_fmt(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)
