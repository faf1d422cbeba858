"""GPU check: LoRA training throughput, MFU, peak memory and packing on random-init Llama shapes.

    python bench/gpu_check.py --out gpu_check.json                  # on a GPU machine, < 8 min
    python bench/gpu_check.py --device cpu --tiny --seconds 1       # the CPU smoke run the tests do

Weights do not change speed, so each model is a randomly initialised Llama of a real shape (nothing
is downloaded): `llama-0.5b` has Qwen2.5-0.5B's shape (0.49B params), `llama-1b` Llama-3.2-1B's
(1.24B), `--tiny` a 0.1M-param one for CPU tests. Each gets LoRA adapters (r=16 on every linear
layer of the blocks, PEFT) and trains with AdamW on the adapters only; on CUDA the base weights are
bf16 and the step runs under bf16 autocast, on CPU everything is fp32.

Every step consumes the same documents in every mode (variable lengths, lognormal, seeded), so
tokens/s of *real* (non-pad) tokens compare directly:

- padded_sdpa: one row per document, padded to the longest in the step (attention_mask), SDPA;
- packed_sdpa: documents packed first-fit-decreasing into rows of max_len, position_ids restarting
  at each document and no attention_mask, so transformers builds a block-diagonal causal mask
  (no attention across documents); SDPA with a dense mask still computes every row position pair;
- packed_flash_attention_2: all the step's documents in one row (DataCollatorWithFlattening),
  flash-attn's varlen kernel: attention cost per document only. Needs the flash_attn package;
- packed_flex_attention: the same one row with torch's flex_attention (block-sparse, skips
  blocks across documents; compiled on first use, CUDA only). Needs nothing beyond torch.

Figures per (config, mode): real tokens/s, the pad share of computed tokens, model TFLOP/s, MFU,
peak memory (torch.cuda.max_memory_allocated; on CPU the process's max RSS) and the speed-up over
padded_sdpa. FLOPs counted (model FLOPs of useful work, pads and recomputation excluded):

    N       = weights of every matmul in the base model (all nn.Linear, lm_head included;
              the embedding lookup and the norms excluded)
    full    = 6*N*tokens + 12*layers*hidden*sum(s_i^2)        (PaLM's convention, s_i = document length)
    LoRA    = 4*N*tokens + 6*N_lora*tokens + 12*layers*hidden*sum(s_i^2)
              frozen weights need the forward (2N) and the gradient w.r.t. activations (2N) but no
              weight gradient (the 2N full fine-tuning spends there); adapters cost 6*N_lora.
    MFU     = LoRA FLOPs per second / the GPU's dense bf16 peak (PEAK_BF16_TFLOPS by device name);
              unknown device or CPU -> null.

Never hangs: each measurement runs under a SIGALRM deadline (--seconds plus warm-up/compile
allowance) and a watchdog thread ends the process at --max-total-s, printing what was measured.

The 4*N is tools/throughput.py's adapter convention; this script adds the adapters and attention,
which matter at 2k-token documents, and imports nothing from tunecrew so that it runs on a machine
that has only torch, transformers and peft.

On a lent GPU machine (torch, transformers, peft, accelerate present; no network, no TRL,
bitsandbytes or flash-attn) nothing needs carrying. Optional wheels, downloaded on a machine with
PyPI into shared/wheels (trl 1.16.0: 0.9 MB, bitsandbytes 0.50.2 manylinux: 43 MB; 44 MB together,
under the 64 MiB a run may carry):

    pip download trl==1.16.0 bitsandbytes==0.50.2 --no-deps -d shared/wheels
    # on the device, before the check:
    pip install --no-index --no-deps shared/wheels/*.whl

They are only reported (version, or "not installed"): the training loop is plain PEFT so that it
runs without them (TRL's trainer would also need `datasets` and pyarrow, over the cap; QLoRA is not
measured). flash-attn needs a build matching the device's torch and CUDA (hundreds of MB), so on a
bare machine packed_flash_attention_2 reports "not installed" and packed_flex_attention is the
varlen measurement.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import platform
import random
import re
import resource
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

# Dense (no sparsity) bf16 tensor-core peak in TFLOP/s, from the vendors' data sheets; the first
# pattern that matches the lower-cased torch.cuda.get_device_name wins, so specific names go first
# (an "L40S" must not read as an "L4", an "H100 PCIe" not as an SXM H100).
PEAK_BF16_TFLOPS: tuple[tuple[str, float], ...] = (
    (r"\bh200\b", 989.0),
    (r"\bh100\b.*\bpcie\b", 756.0),
    (r"\bh100\b", 989.0),
    (r"\bh800\b", 989.0),
    (r"\bgh200\b", 989.0),
    (r"\ba100\b", 312.0),
    (r"\ba800\b", 312.0),
    (r"\bl40s\b", 362.0),
    (r"\bl40\b", 181.0),
    (r"\bl4\b", 121.0),
    (r"\ba10\b", 125.0),
)

MODES = ("padded_sdpa", "packed_sdpa", "packed_flash_attention_2", "packed_flex_attention")
OPTIONAL_LIBS = ("trl", "bitsandbytes", "flash_attn", "accelerate")


@dataclass(frozen=True)
class Shape:
    """A Llama architecture; weights are random, so only the shape matters for speed."""

    name: str
    like: str  # the released model with this shape, so a reader can place the numbers
    hidden: int
    layers: int
    intermediate: int
    heads: int
    kv_heads: int  # GQA: fewer K/V heads than query heads, as in the released models
    vocab: int  # the lm_head matmul is a large share of N at these sizes
    tie_embeddings: bool = True


@dataclass(frozen=True)
class Workload:
    """The documents every mode trains on, one step's worth at a time."""

    docs_per_step: int
    max_len: int  # longest document and packed-row capacity
    median_len: int  # lognormal documents: many short, a long tail, like chat/instruction data
    min_len: int = 8
    sigma: float = 0.9
    pool_steps: int = 6  # distinct steps, cycled: enough variety, nothing generated inside the timed loop


SHAPES: dict[str, Shape] = {
    "llama-0.5b": Shape("llama-0.5b", "Qwen2.5-0.5B", 896, 24, 4864, 14, 2, 151_936),
    "llama-1b": Shape("llama-1b", "Llama-3.2-1B", 2048, 16, 8192, 32, 8, 128_256),
    "tiny": Shape("tiny", "none (CPU test)", 64, 2, 128, 4, 2, 512),
}
GPU_WORKLOAD = Workload(docs_per_step=16, max_len=2048, median_len=256)
TINY_WORKLOAD = Workload(docs_per_step=6, max_len=64, median_len=20)


@dataclass
class Result:
    """One (config, mode) measurement; a mode that could not run says why in `status`."""

    config: str
    mode: str
    status: str = "ok"  # ok | not installed: ... | cuda only | skipped: ... | timeout | oom | error: ...
    steps: int = 0
    seconds: float = 0.0  # timed window only (warm-up and compilation excluded)
    real_tokens_per_s: float | None = None
    pad_fraction: float | None = None  # share of computed positions that were padding
    model_tflops_per_s: float | None = None
    mfu: float | None = None
    peak_memory_gib: float | None = None
    peak_memory_source: str | None = None  # cuda max_memory_allocated, or max RSS on CPU
    speedup_vs_padded: float | None = None
    params_matmul: int | None = None
    params_lora: int | None = None


class MeasurementTimeout(Exception):
    """Raised by SIGALRM inside a measurement that ran past its deadline."""


# ---- pure helpers (tested directly)


def peak_bf16_tflops(device_name: str | None) -> float | None:
    """Dense bf16 peak for a CUDA device name, or None (CPU, or a device not in the table)."""
    if not device_name:
        return None
    lowered = device_name.lower()
    for pattern, tflops in PEAK_BF16_TFLOPS:
        if re.search(pattern, lowered):
            return tflops
    return None


def train_flops(n_matmul: int, n_lora: int, tokens: int, sum_sq_lengths: int, layers: int, hidden: int,
                lora: bool = True) -> float:
    """Model FLOPs of one training step (forward + backward) over `tokens` real tokens.

    Full fine-tuning: 6*N per token. LoRA: 4*N (no weight gradient for frozen weights) + 6*N_lora.
    Attention (no weights): 12*layers*hidden*s^2 per document of length s, causal mask not halved.
    """
    dense = (4 * n_matmul + 6 * n_lora) * tokens if lora else 6 * n_matmul * tokens
    return float(dense + 12 * layers * hidden * sum_sq_lengths)


def mfu(flops_per_s: float, peak_tflops: float | None) -> float | None:
    return None if peak_tflops is None else flops_per_s / (peak_tflops * 1e12)


def doc_lengths(n: int, work: Workload, rng: random.Random) -> list[int]:
    """n document lengths, lognormal around work.median_len, clipped to [min_len, max_len]."""
    mu = math.log(work.median_len)
    return [max(work.min_len, min(work.max_len, round(rng.lognormvariate(mu, work.sigma)))) for _ in range(n)]


def pack_first_fit(lengths: list[int], capacity: int) -> list[list[int]]:
    """Indices of `lengths` grouped into rows of total <= capacity, first-fit decreasing."""
    rows: list[list[int]] = []
    room: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda j: -lengths[j]):
        if lengths[i] > capacity:
            raise ValueError(f"a document of {lengths[i]} tokens does not fit a row of {capacity}")
        for r, free in enumerate(room):
            if lengths[i] <= free:
                rows[r].append(i)
                room[r] -= lengths[i]
                break
        else:
            rows.append([i])
            room.append(capacity - lengths[i])
    return rows


def library_versions() -> dict[str, str]:
    """Version of each optional library, or "not installed" (import errors are reported, not raised)."""
    out = {}
    for name in OPTIONAL_LIBS:
        try:
            module = importlib.import_module(name)
            out[name] = str(getattr(module, "__version__", "installed"))
        except Exception as exc:  # a broken install (wrong CUDA build) is as unusable as a missing one
            out[name] = "not installed" if isinstance(exc, ModuleNotFoundError) else f"unusable: {exc}"[:120]
    return out


def markdown_table(results: list[Result]) -> str:
    head = ["config", "mode", "status", "real tok/s", "x padded", "pad %", "model TFLOP/s", "MFU",
            "peak mem GiB", "steps"]

    def num(value: float | None, spec: str) -> str:
        return "–" if value is None else format(value, spec)

    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        cells = [r.config, r.mode, r.status, num(r.real_tokens_per_s, ".0f"), num(r.speedup_vs_padded, ".2f"),
                 num(None if r.pad_fraction is None else 100 * r.pad_fraction, ".1f"),
                 num(r.model_tflops_per_s, ".3g"), num(None if r.mfu is None else 100 * r.mfu, ".1f") +
                 ("" if r.mfu is None else " %"), num(r.peak_memory_gib, ".2f"), str(r.steps)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# ---- measurement (torch from here on)


@contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Raise MeasurementTimeout in the main thread after `seconds` (SIGALRM; Unix, main thread)."""
    def fire(signum: int, frame: object) -> None:
        raise MeasurementTimeout(f"past its {seconds:.0f} s deadline")

    previous = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def build_model(shape: Shape, device: str, dtype: Any) -> tuple[Any, int, int]:
    """Random-init Llama with LoRA adapters on `device`; returns (model, N matmul weights, N lora)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, LlamaConfig

    config = LlamaConfig(
        hidden_size=shape.hidden, num_hidden_layers=shape.layers, intermediate_size=shape.intermediate,
        num_attention_heads=shape.heads, num_key_value_heads=shape.kv_heads, vocab_size=shape.vocab,
        tie_word_embeddings=shape.tie_embeddings, max_position_embeddings=8192,
    )
    with torch.device(device):  # initialise on the device: a 1B model's CPU init takes longer than its bench
        model = AutoModelForCausalLM.from_config(config, dtype=dtype, attn_implementation="sdpa")
    n_matmul = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))
    lora = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, task_type="CAUSAL_LM",
                      target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    model = get_peft_model(model, lora)
    n_lora = sum(p.numel() for p in model.parameters() if p.requires_grad)
    model.train()
    return model, n_matmul, n_lora


@dataclass
class Step:
    """One step's tensors, already on the device, and what they hold."""

    inputs: dict[str, Any]
    real_tokens: int  # tokens with a loss: the documents' own tokens
    computed_tokens: int  # positions the model runs on, pads included
    sum_sq: int  # sum of document lengths squared, for the attention FLOPs


def make_steps(mode: str, shape: Shape, work: Workload, device: str, seed: int) -> list[Step]:
    """The same documents (seeded) laid out for `mode`."""
    import torch
    from transformers import DataCollatorWithFlattening

    rng = random.Random(seed)
    gen = torch.Generator().manual_seed(seed)
    flatten = DataCollatorWithFlattening(return_tensors="pt")
    steps = []
    for _ in range(work.pool_steps):
        lengths = doc_lengths(work.docs_per_step, work, rng)
        docs = [torch.randint(1, shape.vocab, (n,), generator=gen) for n in lengths]
        real, sum_sq = sum(lengths), sum(n * n for n in lengths)
        if mode == "padded_sdpa":
            ids = torch.nn.utils.rnn.pad_sequence(docs, batch_first=True, padding_value=0)
            mask = torch.nn.utils.rnn.pad_sequence([torch.ones(n, dtype=torch.long) for n in lengths],
                                                   batch_first=True, padding_value=0)
            inputs = {"input_ids": ids, "attention_mask": mask, "labels": ids.masked_fill(mask == 0, -100)}
        elif mode == "packed_sdpa":
            rows = [flatten([{"input_ids": docs[i].tolist()} for i in row])
                    for row in pack_first_fit(lengths, work.max_len)]
            width = max(r["input_ids"].shape[1] for r in rows)
            padded = []
            for r in rows:  # pad short rows: the pad is its own "document" (position ids from 0), with no loss
                gap = width - r["input_ids"].shape[1]
                padded.append({
                    "input_ids": torch.cat([r["input_ids"][0], torch.zeros(gap, dtype=torch.long)]),
                    "labels": torch.cat([r["labels"][0], torch.full((gap,), -100, dtype=torch.long)]),
                    "position_ids": torch.cat([r["position_ids"][0], torch.arange(gap, dtype=torch.long)]),
                })
            inputs = {k: torch.stack([p[k] for p in padded]) for k in ("input_ids", "labels", "position_ids")}
        else:  # the varlen kernels: every document of the step in one row
            inputs = dict(flatten([{"input_ids": d.tolist()} for d in docs]))
        computed = int(inputs["input_ids"].numel())
        # use_cache=False: with a cache (the config's default, train mode too) transformers 5.24 skips
        # the packed position_ids check and packed documents attend to each other (TRL passes it too).
        steps.append(Step({**{k: v.to(device) for k, v in inputs.items()}, "use_cache": False}, real, computed, sum_sq))
    return steps


def unavailable(mode: str, device: str) -> str | None:
    """Why `mode` cannot run here, or None."""
    if mode == "packed_flash_attention_2":
        if device != "cuda":
            return "cuda only"
        version = library_versions()["flash_attn"]
        return f"{version}: flash_attn" if version == "not installed" or version.startswith("unusable") else None
    if mode == "packed_flex_attention" and device != "cuda":
        return "cuda only (compiled kernel)"
    return None


def measure(model: Any, steps: list[Step], seconds: float, warmup: int, device: str, lora_flops: Callable[[Step],
            float], peak: float | None, result: Result) -> None:
    """Train on `steps` (cycled): `warmup` untimed steps, then timed ones until `seconds` have passed."""
    import torch

    cuda = device == "cuda"
    optim = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4, fused=cuda)

    def step(s: Step) -> None:
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):
            loss = model(**s.inputs).loss
        loss.backward()
        optim.step()
        optim.zero_grad(set_to_none=True)

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    for i in range(warmup):
        step(steps[i % len(steps)])
    sync()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    n, real, computed, flops = 0, 0, 0, 0.0
    t0 = time.perf_counter()
    while n < 2 or time.perf_counter() - t0 < seconds:  # two steps at least: one is no rate
        s = steps[(warmup + n) % len(steps)]
        step(s)
        sync()
        n, real, computed, flops = n + 1, real + s.real_tokens, computed + s.computed_tokens, flops + lora_flops(s)
    elapsed = time.perf_counter() - t0
    result.steps, result.seconds = n, round(elapsed, 3)
    result.real_tokens_per_s = real / elapsed
    result.pad_fraction = 1 - real / computed
    result.model_tflops_per_s = flops / elapsed / 1e12
    result.mfu = mfu(flops / elapsed, peak)
    if cuda:
        result.peak_memory_gib = torch.cuda.max_memory_allocated() / 2**30
        result.peak_memory_source = "torch.cuda.max_memory_allocated"
    else:  # torch does not track CPU allocations; the process high-water mark is an upper bound
        result.peak_memory_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        result.peak_memory_source = "max RSS of the process (cpu)"


def run_config(shape: Shape, work: Workload, args: argparse.Namespace, peak: float | None, results: list[Result],
               stop_at: float) -> None:
    """Every mode on one model; appends to `results` as it goes (the watchdog prints what is there)."""
    import torch

    device = args.device
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    try:
        with deadline(max(30.0, min(180.0, stop_at - time.monotonic()))):
            model, n_matmul, n_lora = build_model(shape, device, dtype)
    except Exception as exc:
        results.append(Result(shape.name, "build", status=f"error: {type(exc).__name__}: {exc}"[:200]))
        return

    def flops(s: Step) -> float:
        return train_flops(n_matmul, n_lora, s.real_tokens, s.sum_sq, shape.layers, shape.hidden, lora=True)

    padded_rate: float | None = None
    for mode in args.modes:
        result = Result(shape.name, mode, params_matmul=n_matmul, params_lora=n_lora)
        results.append(result)
        why = unavailable(mode, device)
        left = stop_at - time.monotonic()
        allowance = args.seconds + (args.compile_allowance if mode == "packed_flex_attention" else 60.0)
        if why:
            result.status = why
            continue
        if left < args.seconds + 10:
            result.status = f"skipped: {left:.0f} s left of --max-total-s"
            continue
        try:
            with deadline(min(allowance, left - 5)):
                impl = mode.removeprefix("padded_").removeprefix("packed_")
                model.base_model.model.set_attn_implementation(impl)
                steps = make_steps(mode, shape, work, device, args.seed)
                # flex compiles per new shape until torch marks it dynamic: warm up on every distinct step
                warmup = max(args.warmup, len(steps)) if impl == "flex_attention" else args.warmup
                measure(model, steps, args.seconds, warmup, device, flops, peak, result)
        except MeasurementTimeout as exc:
            result.status = f"timeout: {exc}"
        except torch.OutOfMemoryError:
            result.status = "oom"
        except Exception as exc:  # one mode failing (a kernel refusing a shape) must not end the check
            result.status = f"error: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:200]
        finally:
            model.zero_grad(set_to_none=True)
            if device == "cuda":
                torch.cuda.empty_cache()
        if result.status == "ok" and result.real_tokens_per_s:
            if mode == "padded_sdpa":
                padded_rate = result.real_tokens_per_s
            if padded_rate:
                result.speedup_vs_padded = result.real_tokens_per_s / padded_rate
    del model
    if device == "cuda":
        torch.cuda.empty_cache()


def report(results: list[Result], meta: dict[str, Any], out: Path | None, complete: bool) -> None:
    t0 = meta["_t0"]
    meta = {k: v for k, v in meta.items() if k != "_t0"}
    meta.update(complete=complete, wall_s=round(time.monotonic() - t0, 1), results=[asdict(r) for r in results])
    print(f"# GPU check: {meta['device_name']} ({meta['device']}, {meta['dtype']}), peak bf16 "
          f"{meta['peak_bf16_tflops'] or 'unknown'} TFLOP/s{'' if complete else ' - INCOMPLETE (time cap)'}\n")
    print(markdown_table(results))
    print(f"\nFLOPs: {meta['flops_formula']}")
    print(f"libraries: {meta['libraries']}; wall {meta['wall_s']} s")
    if out:
        out.write_text(json.dumps(meta, indent=2) + "\n")
        print(f"wrote {out}")
    sys.stdout.flush()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--device", choices=["cpu", "cuda"], default=None, help="default: cuda if available")
    parser.add_argument("--tiny", action="store_true", help="one tiny model and small documents (CPU test)")
    parser.add_argument("--configs", default="llama-0.5b,llama-1b",
                        help=f"comma-separated, of {', '.join(k for k in SHAPES if k != 'tiny')} (ignored with --tiny)")
    parser.add_argument("--modes", default=",".join(MODES), help=f"comma-separated, of {', '.join(MODES)}")
    parser.add_argument("--seconds", type=float, default=20.0, help="timed window per measurement (default 20)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps before each measurement")
    parser.add_argument("--compile-allowance", type=float, default=150.0,
                        help="extra seconds flex_attention may spend compiling before its deadline")
    parser.add_argument("--max-total-s", type=float, default=420.0,
                        help="overall cap: the process prints what it has and exits at this time (default 420)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    if args.seconds <= 0 or args.max_total_s <= 0 or args.warmup < 0:
        parser.error("--seconds and --max-total-s must be positive and --warmup not negative")
    args.modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if bad := [m for m in args.modes if m not in MODES]:
        parser.error(f"--modes: unknown {', '.join(bad)}; choose from {', '.join(MODES)}")
    names = ["tiny"] if args.tiny else [c.strip() for c in args.configs.split(",") if c.strip()]
    if bad := [c for c in names if c not in SHAPES]:
        parser.error(f"--configs: unknown {', '.join(bad)}; choose from {', '.join(SHAPES)}")
    args.shapes = [SHAPES[c] for c in names]
    if args.out and not args.out.parent.is_dir():
        parser.error(f"--out {args.out}: folder {args.out.parent} does not exist")
    return args


def main(argv: list[str] | None = None) -> int:
    t0 = time.monotonic()
    args = parse_args(argv)
    import torch
    import transformers

    if args.device is None:
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.device == "cuda" and not torch.cuda.is_available():
        print("gpu_check: --device cuda but torch sees no CUDA device; run with --device cpu --tiny", file=sys.stderr)
        return 2
    device_name = torch.cuda.get_device_name(0) if args.device == "cuda" else platform.processor() or "cpu"
    peak = peak_bf16_tflops(device_name) if args.device == "cuda" else None
    work = TINY_WORKLOAD if args.tiny else GPU_WORKLOAD
    results: list[Result] = []
    meta: dict[str, Any] = {
        "_t0": t0, "device": args.device, "device_name": device_name, "dtype": "bfloat16" if args.device == "cuda"
        else "float32", "peak_bf16_tflops": peak,
        "torch": torch.__version__, "transformers": transformers.__version__,
        "peft": importlib.import_module("peft").__version__, "libraries": library_versions(),
        "flops_formula": "LoRA: 4*N*tokens + 6*N_lora*tokens + 12*layers*hidden*sum(doc_len^2); N = matmul weights "
                         "(all Linear incl. lm_head); tokens = real tokens; MFU = FLOPs/s / dense bf16 peak",
        "settings": {"seconds": args.seconds, "warmup": args.warmup, "max_total_s": args.max_total_s,
                     "seed": args.seed, "lora_r": 16, "workload": asdict(work),
                     "configs": {s.name: asdict(s) for s in args.shapes}},
    }
    stop_at = t0 + args.max_total_s
    done = threading.Event()

    def watchdog() -> None:  # the last resort: a C call that never returns to Python ignores SIGALRM
        if not done.wait(max(0.0, stop_at - time.monotonic()) + 20):
            report(list(results), dict(meta), args.out, complete=False)
            import os

            os._exit(3)

    threading.Thread(target=watchdog, daemon=True).start()
    torch.manual_seed(args.seed)
    if args.device == "cpu":
        torch.set_num_threads(min(2, torch.get_num_threads()))
    for shape in args.shapes:
        run_config(shape, work, args, peak, results, stop_at)
    done.set()
    report(results, meta, args.out, complete=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
