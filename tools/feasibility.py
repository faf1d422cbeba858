"""Will this attempt fit in memory and time on this machine? Decided before spending a run on it.

Back-of-envelope estimates, deliberately simple and conservative; every assumption is a named
constant below. The point is to refuse the obviously impossible (a 70B full fine-tune on a 24 GB
card, qlora on a CPU) with a reason that names the field to change, not to predict to the second.

Memory  = weights/optimizer state (bytes per parameter by method)
        + activations (batch x seq x width-proxy x per-token factor x bytes per value)
        + a fixed framework overhead.
Time    = 6 x params x tokens / throughput, tokens = rows x epochs x mean row length.
method=dpo is costed as adapter training (like lora) over two sequences per row.
Evaluation = batches x max_new_tokens decode steps, each a forward pass of the batch (2 x params
        a token) plus a fixed per-step overhead: see `estimate_eval_seconds`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from tunecrew.tools.contracts import DatasetProfile, Hardware, TrainConfig
from tunecrew.tools.profile import rows_over, truncation_note
from tunecrew.tools.splits import cap_heldout
from tunecrew.tools.throughput import MeasuredRate
from tunecrew.tools.train import EVAL_POINTS, FORWARD_SHARE, eval_rows

_GB = 1024**3

# --------------------------------------------------------------------------- memory assumptions
# Full fine-tune in fp32 with Adam: weights 4 + grads 4 + two Adam moments 8.
FULL_BYTES_PER_PARAM = 4 + 4 + 8
# Frozen base weights under LoRA: fp32 (CPU / no bf16) or 16-bit when the device does bf16.
FROZEN_BYTES_FP32 = 4.0
FROZEN_BYTES_16BIT = 2.0
# 4-bit NF4 weights plus quantisation constants.
QLORA_BYTES_PER_PARAM = 0.5
# Every trainable parameter (adapter or embedding) carries fp32 weight, grad and Adam moments.
TRAINABLE_BYTES_PER_PARAM = FULL_BYTES_PER_PARAM
# Width proxy: sqrt(params) tracks hidden_size x n_layers within ~2x for Llama-shaped models
# (params ~ 12 L h^2 and L ~ h/128), so it stands in for both without reading a model config.
# Adapter size: all-linear LoRA adds r x (d_in + d_out) per matrix, ~19 h r per Llama layer.
ADAPTER_PARAMS_PER_RANK_WIDTH = 19
ALL_LINEAR_MODULES = 7  # q, k, v, o, gate, up, down
# train_embeddings also trains the embedding matrix and lm_head: assume this share of params.
EMBEDDING_SHARE = 0.15
# Activations kept for backward, per token per unit of (hidden x layers), in values (not bytes):
# ~34 bytes at 16-bit per Korthikanti et al. 2022, without activation checkpointing.
ACTIVATION_VALUES_PER_TOKEN_WIDTH = 17
# DPO runs a chosen and a rejected sequence per row.
DPO_SEQUENCE_FACTOR = 2
# CUDA context / torch / allocator slack.
OVERHEAD_GB = {"cpu": 0.3, "mps": 0.5, "cuda": 0.8}
# Refuse above this share of the memory budget: fragmentation and peaks need headroom.
MEMORY_HEADROOM = 0.85

# --------------------------------------------------------------------------- time assumptions
FLOPS_PER_PARAM_TOKEN = 6  # forward 2 + backward 4; LoRA skips frozen weight grads, so this is an upper bound
CPU_FLOPS_PER_CORE = 2e10  # sustained fp32 FLOP/s per core for small-matrix training
MPS_FLOPS = 3e12
# Sustained (not peak) 16-bit FLOP/s: ~35% of the dense tensor-core peak.
GPU_FLOPS = {"h200": 350e12, "h100": 350e12, "a100": 110e12, "l40": 60e12, "a10": 40e12,
             "l4": 40e12, "4090": 55e12, "3090": 25e12, "v100": 35e12, "t4": 15e12}
GPU_FLOPS_DEFAULT = 30e12
FP32_SLOWDOWN = 4  # no bf16: tensor cores mostly idle
WORDS_TO_TOKENS = 1.3  # profile lengths counted in words understate tokens

# --------------------------------------------------------------------------- evaluation assumptions
# Held-out generation (tools/evaluate.py): greedy, batches of EVAL_BATCH, KV cache on. Costed as if
# every reply ran to max_new_tokens (an untuned or random-init model often does). Per decode step:
# the batch's forward pass (2 x params FLOPs a token) at the FLOP rate above, plus a fixed
# overhead; the prompts' prefill is left out (batched, it is a small share of the decode steps).
# Checked against docs/benchmarks.md's batched generation (64 prompts, 64 new tokens, 1 thread):
# SmolLM2-135M measured 36-41 s, this model says 60 s; the 2M-param tiny model measured 3.7 s, this
# model says 5.3 s: an upper bound, as a cap on the cost should be.
EVAL_BATCH = 32
# What one evaluation may take: this share of the run's --budget (what the crew reserves for one,
# agents/toolkit.py EVAL_RESERVE_SHARE), or without a budget this many seconds.
EVAL_BUDGET_SHARE = 0.12
EVAL_SECONDS_WITHOUT_BUDGET = 900.0
FORWARD_FLOPS_PER_PARAM_TOKEN = 2
DECODE_STEP_OVERHEAD_S = 0.035


# What to try instead when memory is short, by current method.
_LIGHTER = {"full": ", or set method=lora",
            "lora": ", or set method=qlora"}


@dataclass(frozen=True)
class Feasibility:
    fits: bool
    est_memory_gb: float
    est_seconds: float
    reason: str


def check_feasibility(config: TrainConfig, hardware: Hardware, model_params: int, profile: DatasetProfile,
                      time_budget_s: float | None = None, has_bitsandbytes: bool | None = None,
                      rate: MeasuredRate | None = None, extra_tokens_per_row: int = 0) -> Feasibility:
    """Estimate memory and time for `config` and refuse what cannot run here, naming the fix.
    `has_bitsandbytes`: whether 4-bit QLoRA can load (None: look for the installed package).
    `rate`: a measured training rate; without one, time comes from the FLOP model below.
    `extra_tokens_per_row`: what every row carries beyond the profile's (system prompt, chat markup)."""
    memory = estimate_memory_gb(config, hardware, model_params)
    if rate is not None:
        seconds = rate.seconds_for(estimate_tokens(config, profile, extra_tokens_per_row))
    else:
        seconds = estimate_seconds(config, hardware, model_params, profile, extra_tokens_per_row)
    budget, budget_name = memory_budget_gb(hardware)
    problems: list[str] = []
    if has_bitsandbytes is None:
        import importlib.util

        has_bitsandbytes = importlib.util.find_spec("bitsandbytes") is not None
    if config.method == "qlora" and config.backend == "hf" and not has_bitsandbytes:
        # bitsandbytes >= 0.50 runs 4-bit on CPU too, so the package, not the device, is the limit.
        problems.append("method=qlora needs bitsandbytes (4-bit weights), which is not installed: "
                        "pip install 'tunecrew[qlora]', or set method=lora")
    if hardware.device != "cuda" and config.backend == "unsloth":
        problems.append(f"backend=unsloth needs CUDA but device={hardware.device}: set backend=hf")
    if extra_tokens_per_row and config.max_seq_length <= extra_tokens_per_row:
        # TRL truncates from the end, so every row would lose its whole reply and nothing would train
        # (the Trainer then fails on an empty dataset, after the model has loaded).
        problems.append(f"max_seq_length={config.max_seq_length} but the system prompt and chat markup alone are "
                        f"{extra_tokens_per_row} tokens a row: no reply token would be trained; set max_seq_length "
                        f"above {extra_tokens_per_row} plus the longest row")
    if config.precision == "bf16" and hardware.device == "cuda" and not hardware.bf16:
        problems.append(f"precision=bf16 but {hardware.device_name} has no bf16: set precision=auto or fp32")
    if memory > MEMORY_HEADROOM * budget:
        problems.append(
            f"estimated {memory:.1f} GB > {MEMORY_HEADROOM:.0%} of {budget:.1f} GB {budget_name}: lower "
            f"batch_size={config.batch_size} or max_seq_length={config.max_seq_length}"
            f"{_LIGHTER.get(config.method, '')}, or use a smaller base model")
    if time_budget_s is not None and seconds > time_budget_s:
        what = f"max_steps={config.max_steps}" if config.max_steps > 0 else f"epochs={config.epochs:g}"
        problems.append(f"estimated {seconds:.0f} s > time budget left {time_budget_s:.0f} s: lower {what}"
                        f"{'' if config.max_steps > 0 else ' or set data.max_rows'}")
    if problems:
        return Feasibility(False, round(memory, 3), round(seconds, 1), "; ".join(problems))
    truncated = ""
    if profile.token_unit == "tokenizer" and rows_over(profile.total_tokens,
                                                       config.max_seq_length - extra_tokens_per_row)[0]:
        truncated = f"; {truncation_note(profile.total_tokens, config.max_seq_length, extra_tokens_per_row)}"
    return Feasibility(True, round(memory, 3), round(seconds, 1),
                       f"fits: estimated {memory:.2f} GB of {budget:.1f} GB {budget_name}, ~{seconds:.0f} s"
                       + truncated)


def memory_budget_gb(hardware: Hardware) -> tuple[float, str]:
    """Accelerator memory on CUDA/MPS (RAM when MPS reports none), RAM on CPU."""
    if hardware.device == "cuda" or (hardware.device == "mps" and hardware.accelerator_memory_gb > 0):
        return hardware.accelerator_memory_gb, f"{hardware.device} memory"
    return hardware.ram_gb, "RAM"


def estimate_trainable_params(config: TrainConfig, model_params: int) -> int:
    """Trainable parameters: all of them for full, adapters (+ embeddings) otherwise."""
    if config.method == "full":
        return model_params
    modules = ALL_LINEAR_MODULES if isinstance(config.target_modules, str) else len(config.target_modules)
    adapter = ADAPTER_PARAMS_PER_RANK_WIDTH * config.lora_rank * math.sqrt(model_params) * modules / ALL_LINEAR_MODULES
    embeddings = EMBEDDING_SHARE * model_params if config.train_embeddings else 0.0
    return int(min(model_params, adapter + embeddings))


def estimate_memory_gb(config: TrainConfig, hardware: Hardware, model_params: int) -> float:
    half = hardware.device == "cuda" and hardware.bf16
    weights: float
    if config.method == "full":
        weights = FULL_BYTES_PER_PARAM * model_params
    else:
        frozen = QLORA_BYTES_PER_PARAM if config.method == "qlora" else (
            FROZEN_BYTES_16BIT if half else FROZEN_BYTES_FP32)
        weights = frozen * model_params + TRAINABLE_BYTES_PER_PARAM * estimate_trainable_params(config, model_params)
    sequences = config.batch_size * (DPO_SEQUENCE_FACTOR if config.method == "dpo" else 1)
    activations = (sequences * config.max_seq_length * math.sqrt(model_params)
                   * ACTIVATION_VALUES_PER_TOKEN_WIDTH * (2 if half else 4))
    return (weights + activations) / _GB + OVERHEAD_GB[hardware.device]


def estimate_tokens(config: TrainConfig, profile: DatasetProfile, extra_tokens_per_row: int = 0) -> float:
    """Tokens processed: rows (after eval split and max_rows) x epochs x mean row length (capped by
    max_seq_length); or max_steps x effective batch x row length when max_steps is set."""
    mean = profile.total_tokens.mean or (profile.prompt_tokens.mean + profile.response_tokens.mean)
    if profile.token_unit == "words":
        mean *= WORDS_TO_TOKENS
    mean += extra_tokens_per_row
    per_row = min(mean if mean > 0 else config.max_seq_length / 2, config.max_seq_length)
    per_row *= DPO_SEQUENCE_FACTOR if config.method == "dpo" else 1
    rows = profile.rows if config.data.max_rows is None else min(profile.rows, config.data.max_rows)
    held_back = eval_rows(rows, config)
    evals = EVAL_POINTS * held_back * per_row * FORWARD_SHARE  # the eval-loss passes: forward only
    if config.max_steps > 0:
        return config.max_steps * config.effective_batch * per_row + evals
    return (rows - held_back) * config.epochs * per_row + evals


def throughput_flops(hardware: Hardware) -> float:
    if hardware.device == "cuda":
        name = hardware.device_name.lower()
        flops = next((v for k, v in GPU_FLOPS.items() if k in name), GPU_FLOPS_DEFAULT)
        return flops if hardware.bf16 else flops / FP32_SLOWDOWN
    if hardware.device == "mps":
        return MPS_FLOPS
    return CPU_FLOPS_PER_CORE * hardware.cpu_count


def estimate_seconds(config: TrainConfig, hardware: Hardware, model_params: int, profile: DatasetProfile,
                     extra_tokens_per_row: int = 0) -> float:
    tokens = estimate_tokens(config, profile, extra_tokens_per_row)
    return FLOPS_PER_PARAM_TOKEN * model_params * tokens / throughput_flops(hardware)


def estimate_eval_seconds(rows: int, max_new_tokens: int, model_params: int, hardware: Hardware,
                          threads: int | None = None) -> float:
    """Seconds to generate replies for `rows` held-out prompts, upper bound (every reply runs to
    `max_new_tokens`). On a CPU, `threads` (the torch threads generation uses) sets the FLOP rate."""
    if rows <= 0:
        return 0.0
    flops = (CPU_FLOPS_PER_CORE * (threads or hardware.cpu_count) if hardware.device == "cpu"
             else throughput_flops(hardware))
    per_token = FORWARD_FLOPS_PER_PARAM_TOKEN * model_params / flops
    batches = math.ceil(rows / EVAL_BATCH)
    return batches * max_new_tokens * (DECODE_STEP_OVERHEAD_S + min(rows, EVAL_BATCH) * per_token)


def eval_time_cap(run_budget_s: float | None) -> tuple[float, str]:
    """(seconds one evaluation may take, where that limit comes from, in words)."""
    if run_budget_s:
        return (EVAL_BUDGET_SHARE * run_budget_s,
                f"{EVAL_BUDGET_SHARE:.0%} of --budget {run_budget_s / 60:g} min, what the crew reserves for one")
    return EVAL_SECONDS_WITHOUT_BUDGET, "what one evaluation may take without --budget"


def cap_evaluation(heldout: list[dict], *, seed: int, max_new_tokens: int, model_params: int, hardware: Hardware,
                   threads: int | None = None, run_budget_s: float | None = None) -> tuple[list[dict], str | None]:
    """The held-out rows every evaluation generates for: all of them when their estimated time fits
    `eval_time_cap`, else a seeded sample that fits, with a note saying n and the cap (a DataError
    naming --heldout when not even the minimum fits). See `cap_heldout`."""
    cap_s, cap_name = eval_time_cap(run_budget_s)
    return cap_heldout(heldout, seed=seed, cap_s=cap_s, cap_name=cap_name,
                       seconds_for=lambda n: estimate_eval_seconds(n, max_new_tokens, model_params, hardware,
                                                                   threads=threads))
