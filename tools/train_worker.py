"""Child process of the train tool: `python -m tunecrew.tools.train_worker <job.json>`.

Reads a TrainJob, trains with TRL's SFTTrainer (+ PEFT for LoRA/QLoRA) or DPOTrainer (method=dpo,
LoRA adapter, the adapter-disabled base as reference), prints one JSON progress event per log
step on stdout, and always tries to leave `result.json` behind, whatever went wrong. Every method
saves the same thing: a PEFT adapter (or, for full, a model) in `<output_dir>/adapter`. The Trainer's
logs also go to TensorBoard event files in `<output_dir>/tb` (TUNECREW_REPORT_TO: docs/export.md).

backend=unsloth runs the same loop with Unsloth's patched model; Unsloth pins older transformers
and TRL, so it lives in its own environment and the train tool starts this module with that
environment's interpreter (`--train-python`).

Under `accelerate launch` (TrainJob.processes > 1, tools/train.py) every rank runs this module:
each trains its shard of every global batch (tools/train.py `per_process_batch`), rank 0 alone
prints progress and writes `result.json`, and any rank that raises writes `rank<N>.failed.json`.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import os
import resource
import statistics
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from .contracts import LossPoint, TrainConfig, TrainResult
from .hardware import autocast_bf16, cpu_bf16_fast
from .lm_head import score_labelled_positions_only
from .train import (
    EVAL_POINTS,
    RANK_FAILURE_FILE,
    RESULT_FILE,
    RankFailure,
    TrainJob,
    eval_rows,
    looks_like_oom,
    per_process_batch,
)

ADAPTER_DIR = "adapter"
# A loss this many times the first logged loss (after warmup), and this far above it in nats, means
# the run blew up. The absolute rise matters when an attempt continues an adapter whose loss is
# already low: measured on SmolLM2-135M, a continued adapter went 0.10 -> 0.35 on one noisy batch.
DIVERGENCE_FACTOR = 3.0
DIVERGENCE_MIN_RISE = 1.0
# Tokenising (TRL's dataset preparation) happens before the first step, where no step-end check can
# stop it: the worker prepares only the rows the run can consume. The step plan consumes
# steps x batch x grad_accum rows; ROW_MARGIN more cover the rows TRL drops when truncation leaves
# them no completion. Under a wall cap, preparing may take at most PREP_SHARE of the time left.
ROW_MARGIN = 1.1
PREP_SHARE = 0.25
MIN_PREPARED_STEPS = 10  # never prepare fewer rows than this many optimizer steps consume
PREP_PROBE_ROWS = 32
# TRL's preparation per row over one chat-template render + tokenise of the whole row. Measured on
# the tiny test model, 5,000 short rows: 0.637 ms vs 0.240 ms a row (2.65x).
PREP_FACTOR = 3.0


# Test hook (tests/test_ddp.py): the rank named here raises after its first optimizer step, as a
# rank that crashes mid-training would. Unset outside that test.
FAIL_RANK_ENV = "TUNECREW_TEST_FAIL_RANK"


def diverged(loss: float, early: float) -> bool:
    return loss > DIVERGENCE_FACTOR * early and loss - early > DIVERGENCE_MIN_RISE


def rank() -> int:
    """This process's rank: torchrun sets RANK in each process it starts; 0 when run alone."""
    return int(os.environ.get("RANK", "0"))


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def emit(event: str, **fields: Any) -> None:
    if rank() == 0:  # one progress stream, whatever the number of processes
        print(json.dumps({"event": event, **fields}), flush=True)


# Training logs where people look: TensorBoard event files in `<attempt>/tb` by default; W&B and
# MLflow only when asked for by name in this variable AND installed (they are not dependencies).
# The list replaces the default, as transformers' `report_to` does: `tensorboard,wandb` keeps both,
# `none` writes nothing.
REPORT_TO_ENV = "TUNECREW_REPORT_TO"
TB_DIR = "tb"
REPORTERS = ("tensorboard", "wandb", "mlflow")
_REPORTER_MODULES = {"tensorboard": ("tensorboardX", "tensorboard"), "wandb": ("wandb",), "mlflow": ("mlflow",)}


def report_targets(value: str | None, installed: Any = None) -> tuple[list[str], list[str]]:
    """(integrations to log to, one note per name that was asked for but cannot be used).

    `value` is TUNECREW_REPORT_TO (None or empty: tensorboard); `installed(module)` says whether a
    module is importable (default: importlib's find_spec). Never raises: logging is not worth a run."""
    import importlib.util

    found = installed or (lambda module: importlib.util.find_spec(module) is not None)
    asked = [name.strip().lower() for name in (value or "tensorboard").split(",") if name.strip()]
    targets: list[str] = []
    notes: list[str] = []
    for name in asked:
        if name == "none":
            continue
        if name not in REPORTERS:
            notes.append(f"{REPORT_TO_ENV}: {name!r} is not one of {', '.join(REPORTERS)}, none; ignored")
        elif not any(found(module) for module in _REPORTER_MODULES[name]):
            notes.append(f"{REPORT_TO_ENV}: {name} is not installed in {sys.executable}; not logging to it")
        elif name not in targets:
            targets.append(name)
    return targets, notes


def tensorboard_callback(log_dir: Path) -> Any:
    """transformers' TensorBoardCallback writing to `log_dir` (not the Trainer's dated default
    under output_dir), with tensorboardX's writer (a dependency; torch's needs `tensorboard`, whose
    protobuf pin conflicts with autogen-core's), else torch's."""
    from transformers.integrations import TensorBoardCallback

    try:
        from tensorboardX import SummaryWriter
    except ImportError:
        from torch.utils.tensorboard import SummaryWriter
    return TensorBoardCallback(tb_writer=SummaryWriter(log_dir=str(log_dir)))


UNSLOTH_SETUP = (
    "Unsloth pins older transformers/TRL/datasets, so it runs from its own environment: "
    "python -m venv .venv-unsloth; .venv-unsloth/bin/pip install unsloth pydantic; "
    ".venv-unsloth/bin/pip install --no-deps -e .; then tunecrew run ... --train-python .venv-unsloth/bin/python "
    "(or set TUNECREW_TRAIN_PYTHON). Without a CUDA GPU use backend=hf."
)


def _read_jsonl(path: str, needs: tuple[str, ...]):
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            keys = ", ".join(repr(k) for k in needs)
            try:
                row = json.loads(line)
            except ValueError as exc:  # name the file: the Planner must know which one
                raise ValueError(f"{path}:{lineno}: not a JSON row with {keys} ({exc})") from None
            missing = [k for k in needs if k not in row] if isinstance(row, dict) else list(needs)
            if missing:
                raise ValueError(f"{path}:{lineno}: not a JSON row with {keys} (missing {', '.join(missing)})")
            yield row


def _with_system(prompt: list[dict], system_prompt: str) -> list[dict]:
    prompt = [m for m in prompt if m["role"] != "system"]
    return [{"role": "system", "content": system_prompt}, *prompt] if system_prompt else prompt


def build_rows(job: TrainJob) -> list[dict]:
    """Training rows as conversational prompt-completion: TRL then masks the prompt out of the
    loss for any chat template, with no `{% generation %}` block needed.

    `max_rows` counts the dataset's own rows: NAT negatives (`"negative": true`, written right after
    their positive by tools/recipes.py) and synthetic rows stay with the rows that are kept."""
    rows: list[dict] = []
    seen: set[str] = set()
    positives = 0
    cap = job.config.data.max_rows
    for row in _read_jsonl(job.train_file, ("messages",)):
        messages = row["messages"]
        key = json.dumps(messages, sort_keys=True)
        if job.config.data.dedup and key in seen:
            continue
        seen.add(key)
        if not row.get("negative") and not row.get("synthetic"):  # a recipe's extra rows ride with the cap
            positives += 1
            if cap and positives > cap:
                break
        rows.append({"prompt": _with_system(messages[:-1], job.system_prompt), "completion": [messages[-1]]})
    return rows


def build_pairs(job: TrainJob) -> list[dict]:
    """Preference pairs for DPO, conversational, with the persona as system message. `max_rows`
    counts the dataset's own rows, as in :func:`build_rows`; synthetic rows' pairs ride along."""
    pairs: list[dict] = []
    seen: set[str] = set()
    originals = 0
    cap = job.config.data.max_rows
    for row in _read_jsonl(job.train_file, ("prompt", "chosen", "rejected")):
        key = json.dumps([row["prompt"], row["chosen"], row["rejected"]], sort_keys=True)
        if job.config.data.dedup and key in seen:
            continue
        seen.add(key)
        if not row.get("synthetic"):
            originals += 1
            if cap and originals > cap:
                break
        pairs.append({"prompt": _with_system(row["prompt"], job.system_prompt),
                      "chosen": row["chosen"], "rejected": row["rejected"]})
    return pairs


def lora_config(config: TrainConfig):
    from peft import LoraConfig

    return LoraConfig(
        r=config.lora_rank,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=config.target_modules,
        # A random or extended vocabulary has no useful embedding to adapt: train those weights fully.
        modules_to_save=["embed_tokens", "lm_head"] if config.train_embeddings else None,
        task_type="CAUSAL_LM",
    )


def sft_config(config: TrainConfig, job: TrainJob, has_eval: bool, use_cpu: bool, bf16: bool, steps_per_epoch: int):
    from trl import SFTConfig

    return SFTConfig(**_common_args(config, job, has_eval, use_cpu, bf16, steps_per_epoch),
                     packing=config.packing, completion_only_loss=config.completion_only_loss,
                     neftune_noise_alpha=config.neftune_noise_alpha or None)


def pad_multiple(config: TrainConfig, use_cpu: bool) -> int | None:
    """What batches are padded to a multiple of (None: the longest row). On a CPU every new padded
    length makes oneDNN build kernels for it (2-6 s a step on SmolLM2-135M, bf16 on AMX), so a run
    of rows padded to their longest keeps paying for new lengths; a quarter of max_seq_length leaves
    at most four. Packed rows have no padding to round."""
    if config.packing:
        return None
    multiple = config.pad_to_multiple_of or (max(8, config.max_seq_length // 4) if use_cpu else 8)
    return multiple if multiple > 1 else None


def checkpointing_off() -> dict[str, bool]:
    """Activation checkpointing off, under the name this transformers takes: 5.24 renamed
    `gradient_checkpointing` to `activation_checkpointing` and warns on the old name, which TRL's
    configs set (True) by default; Unsloth's pinned transformers knows only the old one."""
    from transformers import TrainingArguments

    names = {f.name for f in dataclasses.fields(TrainingArguments)}
    if "activation_checkpointing" in names:
        return {"activation_checkpointing": False, "gradient_checkpointing": False}
    return {"gradient_checkpointing": False}


def dpo_config(config: TrainConfig, job: TrainJob, has_eval: bool, use_cpu: bool, bf16: bool, steps_per_epoch: int):
    from trl import DPOConfig

    # With a PEFT model and no ref_model, DPOTrainer scores the reference with the adapter
    # disabled: the base model, without a second copy in memory.
    return DPOConfig(**_common_args(config, job, has_eval, use_cpu, bf16, steps_per_epoch), beta=config.dpo_beta)


def _common_args(config: TrainConfig, job: TrainJob, has_eval: bool, use_cpu: bool, bf16: bool,
                 steps_per_epoch: int) -> dict[str, Any]:
    total_steps = config.max_steps if config.max_steps > 0 else math.ceil(steps_per_epoch * config.epochs)
    log_every = max(1, total_steps // 40)  # ~40 points per curve: enough to diagnose, cheap to log
    processes = world_size()
    batch, accum = per_process_batch(config, processes)
    if batch * accum * processes != config.effective_batch and rank() == 0:
        print(f"tunecrew: batch_size={config.batch_size} and grad_accum={config.grad_accum} do not split over "
              f"{processes} processes: global effective batch {batch * accum * processes}, not "
              f"{config.effective_batch}", file=sys.stderr, flush=True)
    return dict(
        output_dir=str(Path(job.output_dir) / "checkpoints"),
        per_device_train_batch_size=batch,
        per_device_eval_batch_size=max(batch, 8),
        gradient_accumulation_steps=accum,
        # Explicit, not left to accelerate's guess; None when alone (no process group at all).
        ddp_backend=("gloo" if use_cpu else "nccl") if processes > 1 else None,
        # Every trainable weight (adapter, saved embeddings, or all of them) takes part in each forward:
        # the default (True for a PEFT model) costs an autograd-graph traversal a step and warns so.
        ddp_find_unused_parameters=False if processes > 1 else None,
        learning_rate=config.learning_rate,
        lr_scheduler_type=config.lr_scheduler,
        warmup_steps=config.warmup_ratio,  # transformers 5: a float < 1 is a ratio of total steps
        weight_decay=config.weight_decay,
        num_train_epochs=config.epochs,
        max_steps=config.max_steps,
        max_length=config.max_seq_length,
        seed=config.seed,
        # A continued run draws its batches in another order too: with the same seed, a run whose window
        # was every row would replay the draws of the run it continues.
        data_seed=config.seed + job.data_offset,
        logging_steps=log_every,
        # The default filter logs a NaN/inf step loss as the mean of earlier ones (0.0 at step 1):
        # the Progress callback must see the NaN to stop the run and report it.
        logging_nan_inf_filter=False,
        eval_strategy="steps" if has_eval else "no",
        eval_steps=max(1, total_steps // EVAL_POINTS) if has_eval else None,
        save_strategy="no",
        # TensorBoard comes as a callback with its own folder (train()); what is left is W&B / MLflow
        report_to=[n for n in report_targets(os.environ.get(REPORT_TO_ENV))[0] if n != "tensorboard"] or "none",
        use_cpu=use_cpu,
        bf16=bf16,
        # On by default in TRL; pure overhead for small models (Unsloth applies its own in get_peft_model).
        **checkpointing_off(),
        dataloader_num_workers=0,
        disable_tqdm=True,
        dataset_num_proc=None,
        pad_to_multiple_of=pad_multiple(config, use_cpu),
    )


def steady_rate(marks: list[tuple[float, float, float]]) -> float | None:
    """Tokens/s of a typical stretch between logged steps (the median's), eval-loss passes left out.
    Not first to last: a step that meets a new padded length builds kernels for it (2-6 s where the
    step takes 1.5), once per length and process, so those steps are a run's fixed cost, and what
    the median leaves out `throughput.rate_of` counts as such. A first-to-last rate of a 4-step probe
    read 183-335 tokens/s on the same batches minutes apart. `marks` are (monotonic time, tokens so
    far, eval seconds so far) at each logged step."""
    rates = []
    for (t0, tokens0, eval0), (t1, tokens1, eval1) in itertools.pairwise(marks):
        seconds = (t1 - t0) - (eval1 - eval0)
        if seconds > 0 and tokens1 > tokens0:
            rates.append((tokens1 - tokens0) / seconds)
    return statistics.median(rates) if rates else None


def _peak_memory_mb(use_cuda: bool) -> float:
    if use_cuda:
        import torch

        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def require_unsloth() -> Any:
    """Unsloth's FastLanguageModel, or a RuntimeError saying how to set up its environment.
    Imported before transformers/TRL, as Unsloth patches them on import."""
    import torch

    if not torch.cuda.is_available():
        raise RuntimeError(f"backend=unsloth needs a CUDA GPU and none is visible. {UNSLOTH_SETUP}")
    try:
        from unsloth import FastLanguageModel
    except ImportError as exc:
        raise RuntimeError(f"backend=unsloth: unsloth is not importable in {sys.executable} ({exc}). "
                           f"{UNSLOTH_SETUP}") from None
    return FastLanguageModel


def _require_bitsandbytes() -> None:
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise RuntimeError("method=qlora needs bitsandbytes (4-bit weights): pip install 'tunecrew[qlora]' "
                           "(bitsandbytes>=0.50 also runs on CPU), or use method=lora") from None


def _load_hf(job: TrainJob, config: TrainConfig, dtype: Any):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(job.base_model)
    if config.method == "qlora":
        from peft import prepare_model_for_kbit_training
        from transformers import BitsAndBytesConfig

        quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                   bnb_4bit_compute_dtype=dtype)
        model = AutoModelForCausalLM.from_pretrained(job.base_model, dtype=dtype, quantization_config=quant)
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    else:
        model = AutoModelForCausalLM.from_pretrained(job.base_model, dtype=dtype)
    return model, tokenizer


UNSLOTH_DEFAULT_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def _load_unsloth(fast: Any, job: TrainJob, config: TrainConfig):
    """Unsloth's model with its LoRA already applied: the trainer then gets no peft_config."""
    model, tokenizer = fast.from_pretrained(model_name=job.base_model, max_seq_length=config.max_seq_length,
                                            dtype=None, load_in_4bit=config.method == "qlora")
    targets = UNSLOTH_DEFAULT_TARGETS if config.target_modules == "all-linear" else config.target_modules
    model = fast.get_peft_model(
        model, r=config.lora_rank, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
        target_modules=targets, bias="none", use_gradient_checkpointing="unsloth", random_state=config.seed,
        modules_to_save=["embed_tokens", "lm_head"] if config.train_embeddings else None,
    )
    return model, tokenizer


def planned_steps(n_rows: int, config: TrainConfig) -> int:
    """Optimizer steps the Trainer will run over `n_rows` (transformers' own arithmetic)."""
    if config.max_steps > 0:
        return config.max_steps
    batches = math.ceil(n_rows / config.batch_size)
    per_epoch = max(1, math.ceil(batches / config.grad_accum))
    return math.ceil(config.epochs * per_epoch)


def rows_to_prepare(n_rows: int, config: TrainConfig, seconds_per_row: float | None = None,
                    seconds_left: float | None = None) -> int:
    """How many of `n_rows` (already shuffled) the run draws from and tokenises: what the step plan
    consumes, plus ROW_MARGIN; under a wall cap, no more than PREP_SHARE of the time left prepares.
    Never fewer than MIN_PREPARED_STEPS consume, nor more than there are.

    A run shorter than an epoch thus draws from a window at the front of the shuffle, not from every
    row: a continued attempt (TrainJob.data_offset) starts after that window and sees new rows. Drawn
    at random from all the rows, its rows could not be told apart from the ones already trained on;
    on the task agent's 960 rows a 13-step continuation replayed the same 104 rows."""
    need = planned_steps(n_rows, config) * config.effective_batch
    keep = n_rows if need >= n_rows else math.ceil(need * ROW_MARGIN) + config.effective_batch
    if seconds_per_row and seconds_left is not None:
        keep = min(keep, int(PREP_SHARE * max(0.0, seconds_left) / seconds_per_row))
    return min(n_rows, max(keep, MIN_PREPARED_STEPS * config.effective_batch))


def rotated(n_rows: int, offset: int) -> list[int]:
    """Row order starting at `offset` (mod n_rows) and wrapping around: a continued run's rows."""
    start = offset % n_rows if n_rows else 0
    return [*range(start, n_rows), *range(start)]


def prep_seconds_per_row(tokenizer: Any, rows: list[dict]) -> float | None:
    """Seconds TRL's preparation will take a row, from timing the chat template on a few rows."""
    sample = rows[:PREP_PROBE_ROWS]
    started = time.perf_counter()
    try:
        for row in sample:
            tokenizer.apply_chat_template(row["prompt"] + (row.get("completion") or row.get("chosen") or []),
                                          tokenize=True)
    except Exception:  # a template that renders only in TRL's way: no estimate, no time-based cut
        return None
    return PREP_FACTOR * (time.perf_counter() - started) / max(1, len(sample))


def train(job: TrainJob) -> TrainResult:
    # The wall cap counts from here: reading, loading and tokenising are inside it, not only the steps.
    started = time.monotonic()
    config = job.config
    # Data first: a missing or malformed train file fails in a second, not after loading the weights.
    rows = build_pairs(job) if config.method == "dpo" else build_rows(job)
    if not rows:
        raise ValueError(f"{job.train_file}: no training rows left after the data recipe")
    fast = require_unsloth() if config.backend == "unsloth" else None
    if config.method == "qlora":
        _require_bitsandbytes()

    import torch
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import DPOTrainer, SFTTrainer

    torch.set_num_threads(job.threads_per_process if world_size() > 1 else job.threads)
    use_cuda = torch.cuda.is_available()
    if use_cuda and world_size() > torch.cuda.device_count():
        raise RuntimeError(f"processes={world_size()} but {torch.cuda.device_count()} CUDA device(s) are visible: "
                           "DDP runs one process per GPU; set processes to at most the GPU count")
    bf16 = autocast_bf16(config.precision, torch.cuda.is_bf16_supported() if use_cuda else cpu_bf16_fast())
    # On a CPU the weights stay fp32 under autocast: bf16 weights trained no faster there (1.10 vs 1.10 s a
    # step), and fp32 keeps what the run saves and merges as the CPU evaluation loads it.
    dtype = torch.bfloat16 if bf16 and use_cuda else torch.float32
    model, tokenizer = _load_unsloth(fast, job, config) if fast else _load_hf(job, config, dtype)
    if job.init_adapter:  # continue_training: the previous attempt's adapter, trainable, instead of a new one
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, job.init_adapter, is_trainable=True)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token

    dataset = Dataset.from_list(rows).shuffle(seed=config.seed)
    n_eval = eval_rows(len(rows), config)
    train_ds, eval_ds = ((dataset.select(range(n_eval, len(rows))), dataset.select(range(n_eval))) if n_eval
                         else (dataset, None))
    n_train = len(train_ds)
    if job.data_offset % max(1, n_train):  # continuing an adapter: start after the rows it was trained on
        train_ds = train_ds.select(rotated(n_train, job.data_offset))
    steps_per_epoch = math.ceil(n_train / (config.batch_size * config.grad_accum))
    # Tokenise only what the run can consume (the first rows of the seeded shuffle): 50,000 rows
    # under a 20 s cap took ~60-110 s to prepare before the first step could check the cap.
    cap = job.max_wall_seconds
    # Under DDP every rank must keep the same rows (each samples its shard of one permutation), so
    # the cut cannot rest on each rank's own clock: only the step plan's, which all ranks share.
    per_row = prep_seconds_per_row(tokenizer, [train_ds[i] for i in range(min(PREP_PROBE_ROWS, n_train))]) \
        if cap and world_size() == 1 else None
    keep = rows_to_prepare(n_train, config, per_row, cap - (time.monotonic() - started) if cap else None)
    epoch_scale = 1.0
    if keep < n_train:
        planned = planned_steps(n_train, config)
        train_ds = train_ds.select(range(keep))
        epoch_scale = keep / n_train  # logged epochs stay passes over all the rows, as diagnose reads them
        # The step count (and with it the schedule and the logging) stays the one planned for all rows.
        config = config.with_changes({"max_steps": planned})

    state: dict[str, Any] = {"curve": [], "eval": [], "status": "ok", "error": None, "first": None, "marks": []}

    class Progress(TrainerCallback):
        def on_log(self, args, tstate, control, logs=None, **kwargs):
            logs = logs or {}
            step = tstate.global_step
            epoch = tstate.epoch * epoch_scale if tstate.epoch is not None else None
            if "loss" in logs:
                loss = float(logs["loss"])
                if math.isfinite(loss):  # JSON has no NaN: a NaN point would make result.json unreadable
                    state["curve"].append(LossPoint(step=step, loss=loss, epoch=epoch, lr=logs.get("learning_rate")))
                state["tokens"] = logs.get("num_tokens", state.get("tokens"))
                if state["tokens"]:
                    state["marks"].append((time.monotonic(), state["tokens"], state.get("eval_seconds", 0.0)))
                # tokens and eval seconds so far: a reader (bench/rate_probe.py) can time any stretch of the run
                emit("log", step=step, max_steps=tstate.max_steps, loss=loss, epoch=epoch,
                     lr=logs.get("learning_rate"), elapsed=time.monotonic() - started, tokens=state["tokens"],
                     eval_seconds=state.get("eval_seconds", 0.0))
                if not math.isfinite(loss):
                    state["status"], state["error"] = "nan", f"loss became {loss} at step {step}"
                    control.should_training_stop = True
                elif state["first"] is None and step > tstate.max_steps * config.warmup_ratio:
                    state["first"] = loss
                elif state["first"] is not None and diverged(loss, state["first"]):
                    state["status"] = "diverged"
                    state["error"] = (f"loss rose to {loss:.3f} at step {step}, "
                                      f"over {DIVERGENCE_FACTOR}x its early {state['first']:.3f}")
                    control.should_training_stop = True
            if "eval_runtime" in logs:
                state["eval_seconds"] = state.get("eval_seconds", 0.0) + float(logs["eval_runtime"])
            if "eval_loss" in logs:
                eval_loss = float(logs["eval_loss"])
                emit("eval", step=step, eval_loss=eval_loss)
                if math.isfinite(eval_loss):
                    state["eval"].append(LossPoint(step=step, loss=eval_loss, epoch=epoch))
                elif state["status"] == "ok":
                    state["status"], state["error"] = "nan", f"eval loss became {eval_loss} at step {step}"
                    control.should_training_stop = True

        def on_step_end(self, args, tstate, control, **kwargs):
            if job.max_wall_seconds and _all_agree(time.monotonic() - started > job.max_wall_seconds, args.device):
                control.should_training_stop = True
            if os.environ.get(FAIL_RANK_ENV) == str(rank()):
                raise RuntimeError(f"{FAIL_RANK_ENV}: rank {rank()} fails on purpose after step {tstate.global_step}")

    reporters, notes = report_targets(os.environ.get(REPORT_TO_ENV))
    # Before the trainer is built: TRL patches the model's forward with its fused LM head then.
    head_note = score_labelled_positions_only()
    notes += [head_note] if head_note else []
    for note in notes:
        print(f"tunecrew: {note}", file=sys.stderr, flush=True)
    loggers = [tensorboard_callback(Path(job.output_dir) / TB_DIR)] if "tensorboard" in reporters else []
    trainer_cls, make_args = (DPOTrainer, dpo_config) if config.method == "dpo" else (SFTTrainer, sft_config)
    trainer = trainer_cls(
        model=model,
        args=make_args(config, job, eval_ds is not None, use_cpu=not use_cuda, bf16=bf16,
                       steps_per_epoch=steps_per_epoch),
        train_dataset=train_ds,
        eval_dataset=eval_ds,
        processing_class=tokenizer,
        # Unsloth's model carries its adapter already; full fine-tuning has none.
        peft_config=(lora_config(config) if config.method in ("lora", "qlora", "dpo") and fast is None
                     and not job.init_adapter else None),
        callbacks=[Progress(), *loggers],
    )
    emit("start", max_steps=trainer.args.max_steps if trainer.args.max_steps > 0 else steps_per_epoch * config.epochs,
         rows=n_train, tokenised_rows=len(train_ds), eval_rows=len(eval_ds) if eval_ds is not None else 0,
         processes=world_size(), per_device_batch=trainer.args.per_device_train_batch_size,
         grad_accum=trainer.args.gradient_accumulation_steps)
    train_started = time.monotonic()
    output = trainer.train()
    train_seconds = time.monotonic() - train_started
    steps_done = trainer.state.global_step
    if state["status"] == "ok" and steps_done == 0:
        # The cap came before the first optimizer step: an adapter saved now is the base model
        # under another name, and calling it `ok` would be a false success.
        state["status"], state["error"] = "error", (
            f"no optimizer step ran in {train_seconds:.1f} s of training (the time cap came first): give the "
            "attempt more time (--attempt-seconds, --budget) or make a step cheaper (batch_size, max_seq_length)")
    elif state["status"] == "ok" and not state["curve"] and output.training_loss == output.training_loss:
        # Stopped before the first logging step: the Trainer's mean loss over the steps that ran
        # is the only loss there is; without it the attempt would be `ok` with no loss at all.
        # With its epoch (scaled as the logged points are), or a diagnosis reading epochs finds none.
        epoch = trainer.state.epoch * epoch_scale if trainer.state.epoch is not None else None
        state["curve"].append(LossPoint(step=steps_done, loss=float(output.training_loss), epoch=epoch))

    adapter_dir = Path(job.output_dir) / ADAPTER_DIR
    if state["status"] == "ok":
        trainer.save_model(str(adapter_dir))
        tokenizer.save_pretrained(str(adapter_dir))
    curve: list[LossPoint] = state["curve"]
    tail = curve[-max(1, len(curve) // 10):]
    trained = trainer.model
    assert trained is not None  # the Trainer was built with a model; its annotation allows none
    params_total = sum(p.numel() for p in trained.parameters())
    params_trainable = sum(p.numel() for p in trained.parameters() if p.requires_grad)
    tokens = state.get("tokens")
    return TrainResult(
        status=state["status"],
        loss_curve=curve,
        eval_curve=state["eval"],
        train_loss=sum(p.loss for p in tail) / len(tail) if tail else None,
        eval_loss=state["eval"][-1].loss if state["eval"] else None,
        steps=trainer.state.global_step,
        processes=world_size(),  # result.json says how it was trained, whoever reads it
        precision="bf16" if bf16 else "fp32",
        # Eval-loss passes are timed apart, so the rate is training's own.
        tokens_per_second=float(tokens) / max(1e-9, train_seconds - state.get("eval_seconds", 0.0)) if tokens else None,
        tokens=int(tokens) if tokens else None,
        steady_tokens_per_second=steady_rate(state["marks"]),
        train_seconds=train_seconds,
        eval_loss_seconds=state.get("eval_seconds", 0.0),
        peak_memory_mb=_peak_memory_mb(use_cuda),
        wall_seconds=time.monotonic() - started,
        trainable_params=params_trainable,
        total_params=params_total,
        adapter_path=str(adapter_dir) if state["status"] == "ok" else None,
        data_end=job.data_offset + len(train_ds) if state["status"] == "ok" else None,
        error=state["error"],
    )


def _write_result(out_dir: Path, result: TrainResult) -> None:
    tmp = out_dir / (RESULT_FILE + ".tmp")
    tmp.write_text(result.model_dump_json(indent=2))
    os.replace(tmp, out_dir / RESULT_FILE)  # atomic: the parent never reads half a result


def _all_agree(flag: bool, device: Any) -> bool:
    """`flag` on every rank as rank 0 sees it: a stop decided from each rank's own clock would let
    one rank leave the loop while the others wait for it in the next all-reduce, for ever."""
    if world_size() <= 1:
        return flag
    import torch
    import torch.distributed as dist

    decided = torch.tensor([1 if flag else 0], device=device)
    dist.broadcast(decided, src=0)
    return bool(decided.item())


def die_with_launcher() -> None:
    """Under a launcher, die with it: torchrun starts each rank in a session of its own, so neither
    the crew's PDEATHSIG (on the launcher) nor its kill of the launcher's group reaches the ranks."""
    if world_size() > 1 and sys.platform.startswith("linux"):
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        if os.getppid() == 1:  # the launcher died before the line above: nobody will reap this rank's work
            os._exit(1)


def _write_failure(out_dir: Path, result: TrainResult) -> None:
    failure = RankFailure(rank=rank(), at=time.time(), result=result)
    path = out_dir / RANK_FAILURE_FILE.format(rank=rank())
    tmp = path.with_suffix(".tmp")
    tmp.write_text(failure.model_dump_json(indent=2))
    os.replace(tmp, path)


def main(argv: list[str]) -> int:
    die_with_launcher()
    job = TrainJob.model_validate_json(Path(argv[1]).read_text())
    out = Path(job.output_dir)
    started = time.monotonic()
    failed = False
    try:
        result = train(job)
    except MemoryError as exc:
        where = f"rank {rank()} of {world_size()}: " if world_size() > 1 else ""
        result = TrainResult(status="oom", wall_seconds=time.monotonic() - started, error=f"{where}MemoryError: {exc}")
        failed = True
    except Exception as exc:  # every failure must become a result the Planner can read
        text = f"{type(exc).__name__}: {exc}"
        capped = resource.getrlimit(resource.RLIMIT_AS)[0] != resource.RLIM_INFINITY
        status = "oom" if looks_like_oom(text, memory_capped=capped) else "error"
        if status == "oom" and "memory" not in text.lower():
            text = f"out of memory (address space capped by run_training's memory_limit_mb): {text}"
        traceback.print_exc(file=sys.stderr)
        if world_size() > 1:  # this rank's own traceback: the launcher's stderr interleaves every rank's
            frames = [line for line in traceback.format_exc().strip().splitlines()[:-1]
                      if line.strip(" ^~")][-8:]  # the caret lines under each frame say nothing here
            text = (f"rank {rank()} of {world_size()}: {text[-1000:]}\n" + "\n".join(frames))[:2000]
        result = TrainResult(status=status, wall_seconds=time.monotonic() - started, error=text[-2000:])
        failed = True
    if failed and world_size() > 1:
        _write_failure(out, result)
    elif rank() == 0:
        _write_result(out, result)
    emit("done", status=result.status)
    return 0 if result.status == "ok" else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
