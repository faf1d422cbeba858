"""What machine are we on? One `Hardware` record for feasibility checks, the report and memory recall.

torch is imported inside `detect_hardware` so importing this module (e.g. from the CLI's --help
path or a test) stays cheap.
"""

from __future__ import annotations

import contextlib
import os
import platform
from pathlib import Path

from tunecrew.tools.contracts import Hardware

_GB = 1024**3


def detect_hardware() -> Hardware:
    """Detect the training device: CUDA first, then Apple MPS, else CPU.

    On CUDA the memory is the *free* memory of the current device (what a new process can still
    allocate), not the card's total; on CPU the budget is available RAM, capped by a cgroup limit.
    """
    import torch  # lazy: torch import costs seconds

    cpus = cpu_count()
    ram = ram_gb()
    if torch.cuda.is_available():
        index = torch.cuda.current_device()
        free, _total = torch.cuda.mem_get_info(index)
        return Hardware(
            device="cuda",
            device_name=torch.cuda.get_device_name(index),
            accelerator_memory_gb=round(free / _GB, 2),
            ram_gb=ram,
            cpu_count=cpus,
            bf16=bool(torch.cuda.is_bf16_supported()),
        )
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        # Unified memory: the GPU share torch recommends, or RAM when this torch cannot tell.
        recommended = getattr(getattr(torch, "mps", None), "recommended_max_memory", None)
        memory = round(recommended() / _GB, 2) if callable(recommended) else ram
        return Hardware(device="mps", device_name="Apple MPS", accelerator_memory_gb=memory,
                        ram_gb=ram, cpu_count=cpus, bf16=False)
    return Hardware(device="cpu", device_name=cpu_name(), ram_gb=ram, cpu_count=cpus, bf16=cpu_bf16_fast())


# A CPU with bf16 matmul instructions runs them faster than fp32 under autocast (bench/precision.py, the train
# tool on SmolLM2-135M, LoRA r64, 2 threads): AMX's tile unit on a 2-core Xeon, 1.09-1.18x the fp32 tokens/s;
# AVX512-BF16's dot products on a 2-core AMD EPYC (Zen 4, no AMX), 1.37x (24 steps, 2 runs a side) and 1.58x over
# a 214-step attempt at the same novel-phrasing score (+2 prompts of 64). A CPU with neither
# converts around every matmul: fp32.
CPU_BF16_FLAGS = ("amx_bf16", "avx512_bf16")


def cpu_bf16_fast() -> bool:
    """The CPU has AMX-BF16 or AVX512-BF16 (Linux /proc/cpuinfo; elsewhere unknown, so False)."""
    return not cpu_flags().isdisjoint(CPU_BF16_FLAGS)


def cpu_flags() -> set[str]:
    """The first CPU's feature flags (Linux; empty elsewhere)."""
    for line in _read("/proc/cpuinfo").splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return set(value.split())
    return set()


def autocast_bf16(precision: str, device_bf16: bool) -> bool:
    """Whether a training run computes in bf16: asked for, or `auto` on a device that runs it fast."""
    return precision == "bf16" or (precision == "auto" and device_bf16)


def free_cores(limit: int = 4, window_s: float = 0.5) -> int:
    """Cores torch should use: those not busy right now, at most `limit`.

    On a shared machine a torch thread that lands on a busy core makes every step wait for it:
    measured here, 2 threads with one core taken trained 10x slower than 1 thread. Busy is read
    over `window_s` from /proc/stat, not from the 1-minute load average, which still counts a
    `pip install` that ended a minute ago (measured: load 0.53 on an idle machine gave 1 thread).
    """
    busy = busy_cores(window_s)
    if busy is None:
        try:
            busy = os.getloadavg()[0]
        except OSError:
            busy = 0.0
    return max(1, min(limit, round(cpu_count() - busy)))


def busy_cores(window_s: float = 0.5) -> float | None:
    """Cores' worth of CPU time used by anything over the next `window_s` (None off Linux)."""
    import time

    first = _cpu_times()
    if first is None:
        return None
    time.sleep(window_s)
    second = _cpu_times()
    if second is None:
        return None
    total, idle = second[0] - first[0], second[1] - first[1]
    if total <= 0:
        return None
    return (1 - idle / total) * (os.cpu_count() or 1)


def _cpu_times() -> tuple[int, int] | None:
    """(all jiffies, idle + iowait jiffies) from the first line of /proc/stat."""
    fields = _read("/proc/stat").split("\n", 1)[0].split()
    if len(fields) < 6 or fields[0] != "cpu":
        return None
    values = [int(v) for v in fields[1:]]
    return sum(values[:8]), values[3] + values[4]


def cpu_count() -> int:
    """Cores this process may run on: affinity mask, then a cgroup v2 CPU quota if tighter."""
    try:
        count = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # macOS / Windows have no sched_getaffinity
        count = os.cpu_count() or 1
    quota = _read("/sys/fs/cgroup/cpu.max").split()
    if len(quota) == 2 and quota[0] != "max":
        with contextlib.suppress(ValueError, ZeroDivisionError):
            count = min(count, max(1, int(int(quota[0]) / int(quota[1]))))
    return max(1, count)


def ram_gb() -> float:
    """Available host memory in GB (MemAvailable, else physical total), capped by a cgroup v2 limit."""
    available = None
    for line in _read("/proc/meminfo").splitlines():
        if line.startswith("MemAvailable:"):
            available = int(line.split()[1]) * 1024
            break
    if available is None:
        try:
            available = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (AttributeError, ValueError, OSError):
            available = 0
    limit = _read("/sys/fs/cgroup/memory.max").strip()
    if limit.isdigit():
        available = min(available, int(limit))
    return round(available / _GB, 2)


def cpu_name() -> str:
    for line in _read("/proc/cpuinfo").splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "cpu"


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""
