"""What machine are we on? One `Hardware` record for feasibility checks, the report and memory recall.

torch is imported inside `detect_hardware` so importing this module (e.g. from the CLI's --help
path or a test) stays cheap.
"""

from __future__ import annotations

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
    return Hardware(device="cpu", device_name=cpu_name(), ram_gb=ram, cpu_count=cpus)


def free_cores(limit: int = 4) -> int:
    """Cores torch should use: those not already busy (1-minute load), at most `limit`.

    On a shared machine a torch thread that lands on a busy core makes every step wait for it:
    measured here, 2 threads with one core taken trained 10x slower than 1 thread.
    """
    try:
        busy = os.getloadavg()[0]
    except OSError:
        busy = 0.0
    return max(1, min(limit, round(cpu_count() - busy)))


def cpu_count() -> int:
    """Cores this process may run on: affinity mask, then a cgroup v2 CPU quota if tighter."""
    try:
        count = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # macOS / Windows have no sched_getaffinity
        count = os.cpu_count() or 1
    quota = _read("/sys/fs/cgroup/cpu.max").split()
    if len(quota) == 2 and quota[0] != "max":
        try:
            count = min(count, max(1, int(int(quota[0]) / int(quota[1]))))
        except (ValueError, ZeroDivisionError):
            pass
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
