"""Throughput arithmetic: model FLOPs per token, the device's peak, utilisation, and how long an
attempt takes from a measured rate. Pure functions; the numbers they need are measured elsewhere.

Model FLOPs utilisation (MFU) = model FLOPs per token x tokens/s / the device's peak FLOP/s.
- Model FLOPs per token count the matrix multiplies of the weights only (attention scores are
  small at these sequence lengths): forward 2N; backward 2N for the activation gradients, plus 2N
  for the weight gradients when the weights train (full fine-tuning). Adapters (LoRA, QLoRA, DPO's
  LoRA) freeze the base weights, so 4N; full fine-tuning 6N, as in Kaplan et al. / PaLM's MFU.
- Peak, in the precision the run computed in (TrainResult.precision): on a CPU, cores x clock x
  FLOPs per cycle of the widest unit for it; fp32: the vector FMA (AVX-512: 2 units x 16 lanes x 2 =
  64; AVX2+FMA: 32; otherwise 8); bf16: AMX's tile unit (1,024: one 16x16x32 TDPBF16PS every 16
  cycles) or AVX512-BF16 (2 units x 32 pairs x 2 = 128). On a GPU, the dense bf16 tensor-core peak
  of the named card (fp32: a quarter of it).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

from .contracts import Hardware, TrainResult

ADAPTER_METHODS = ("lora", "qlora", "dpo")
CPU_FLOPS_PER_CYCLE = {"avx512f": 64, "avx2": 32}
CPU_BF16_FLOPS_PER_CYCLE = {"amx_bf16": 1024, "avx512_bf16": 128}
CPU_FLOPS_PER_CYCLE_DEFAULT = 8
# Dense bf16 tensor-core peaks (vendor data sheets, no sparsity).
# Matched in this order by substring of the lower-cased device name, so the longer names come first
# ("l40s" before "l40", "h100 pcie" before "h100", "a100" before "a10").
GPU_PEAK_FLOPS = {"h200": 989e12, "h100 pcie": 756e12, "h100": 989e12, "a100": 312e12, "l40s": 362e12,
                  "l40": 181e12, "a10": 125e12, "l4": 121e12, "4090": 165e12, "3090": 71e12, "v100": 125e12,
                  "t4": 65e12}
MPS_PEAK_FLOPS = 10e12
CLOCK_HZ_DEFAULT = 2.5e9


def flops_per_token(params: int, method: str) -> float:
    return (4.0 if method in ADAPTER_METHODS else 6.0) * params


def peak_flops(hardware: Hardware, bf16: bool | None = None) -> float | None:
    """The device's peak FLOP/s in bf16 or fp32 (None: what the device trains in by default, `hardware.bf16`);
    None for a GPU not in the table (no MFU beats a made-up one)."""
    half = hardware.bf16 if bf16 is None else bf16
    if hardware.device == "cuda":
        name = hardware.device_name.lower()
        peak = next((v for k, v in GPU_PEAK_FLOPS.items() if k in name), None)
        return None if peak is None else peak if half else peak / 4
    if hardware.device == "mps":
        return MPS_PEAK_FLOPS
    flags, clock = _cpu_flags_and_clock()
    fp32 = next((v for k, v in CPU_FLOPS_PER_CYCLE.items() if k in flags), CPU_FLOPS_PER_CYCLE_DEFAULT)
    per_cycle = next((v for k, v in CPU_BF16_FLOPS_PER_CYCLE.items() if k in flags), fp32) if half else fp32
    return hardware.cpu_count * clock * per_cycle


def model_flops_utilization(tokens_per_second: float | None, params: int, method: str,
                            hardware: Hardware, bf16: bool | None = None) -> float | None:
    peak = peak_flops(hardware, bf16)
    if not tokens_per_second or not peak:
        return None
    return flops_per_token(params, method) * tokens_per_second / peak


def _cpu_flags_and_clock() -> tuple[set[str], float]:
    """The first CPU's flags and its nominal clock (the '@ 2.60GHz' of its name, else cpu MHz)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set(), CLOCK_HZ_DEFAULT
    flags: set[str] = set()
    clock = 0.0
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "flags" and not flags:
            flags = set(value.split())
        elif key == "model name" and "GHz" in value and not clock:
            with contextlib.suppress(ValueError):
                clock = float(value.rsplit("@", 1)[-1].strip().removesuffix("GHz")) * 1e9
        elif key == "cpu MHz" and not clock:
            clock = float(value) * 1e6
    return flags, clock or CLOCK_HZ_DEFAULT


# --------------------------------------------------------------------------- time from a measured rate

# A start-up the rate does not cover (interpreter, imports, loading weights, tokenising), used only
# until one is measured.
STARTUP_SECONDS_DEFAULT = 15.0


@dataclass(frozen=True)
class MeasuredRate:
    """How fast this machine trains this model, measured, not assumed: what attempts are sized by."""

    tokens_per_second: float  # tokens trained per second of the training loop
    startup_seconds: float  # wall time outside that loop: start, load, tokenise, save
    source: str  # where it was measured: "attempt 1", "timed steps (4)", "memory: run R attempt N"

    def seconds_for(self, tokens: float) -> float:
        return self.startup_seconds + tokens / self.tokens_per_second

    def tokens_in(self, seconds: float) -> float:
        return max(0.0, seconds - self.startup_seconds) * self.tokens_per_second


def sizing_rate(timed: MeasuredRate | None, remembered: MeasuredRate | None) -> tuple[MeasuredRate | None, str | None]:
    """The rate attempts are sized from, and a note when memory disagrees or stands in.

    Timed now wins: the same machine trained SmolLM2 at 84 and at 143 tokens/s hours apart, and an
    attempt sized from memory's 84 was estimated at 498 s and took 245 s (-51%), where 4 timed steps
    land within -25%..+4% of the attempt after them (bench/rate_probe.py). A remembered rate sizes
    attempts only when timing failed."""
    if timed is None:
        return remembered, (f"rate: timing steps failed; sized from {remembered.source} "
                            f"({remembered.tokens_per_second:.0f} tokens/s)") if remembered else None
    if remembered is None:
        return timed, None
    ratio = timed.tokens_per_second / remembered.tokens_per_second
    return timed, (f"rate: timed {timed.tokens_per_second:.0f} tokens/s now; {remembered.source} measured "
                   f"{remembered.tokens_per_second:.0f} on this machine ({ratio:.2f}x); attempts are sized from "
                   "the timed rate")


def rate_of(result: TrainResult, source: str) -> MeasuredRate | None:
    """The rate a finished training run measured; None when it trained too little to tell.

    The steady rate (the median stretch between logged steps, `train_worker.steady_rate`) is the
    per-token cost; whatever of the run's wall time it does not explain (start-up, the first step,
    the kernels built for each new padded length, saving) is a fixed cost per run, not spread over
    the tokens. With 8 probe steps and batches padded to a quarter of the sequence, two probes
    estimated 100-step SmolLM2-135M attempts at +8 and +11 % (bench/rate_probe.py), where the first
    to last rate of 4 steps read 183-335 tokens/s on the same batches minutes apart."""
    train_seconds = result.train_seconds or 0.0
    training = train_seconds - result.eval_loss_seconds
    if not result.tokens or training <= 0:
        return None
    rate = result.steady_tokens_per_second or result.tokens / training
    fixed = result.wall_seconds - result.eval_loss_seconds - result.tokens / rate
    return MeasuredRate(tokens_per_second=rate, startup_seconds=max(0.0, fixed), source=source)


def error_share(estimated: float | None, actual: float) -> float | None:
    """(actual - estimated) / estimated: +0.10 means it took 10% longer than estimated."""
    return (actual - estimated) / estimated if estimated else None
