"""How many cores a run takes: what is busy now, not the trailing load average."""

from __future__ import annotations

import subprocess
import sys

from tunecrew.tools import hardware


def test_a_core_spinning_right_now_is_counted_busy():
    spinner = subprocess.Popen([sys.executable, "-c",
                                "import time\nend = time.time() + 3\nwhile time.time() < end: pass"])
    try:
        busy = hardware.busy_cores(0.5)
    finally:
        spinner.kill()
    assert busy is not None and busy >= 0.7  # one spinning process is at least most of a core


def test_free_cores_stays_within_one_and_the_limit():
    assert 1 <= hardware.free_cores(limit=4, window_s=0.1) <= min(4, hardware.cpu_count())
    assert hardware.free_cores(limit=1, window_s=0.1) == 1


def test_a_gpus_peak_is_matched_by_its_longest_name_and_an_unknown_gpu_gets_no_mfu():
    from tunecrew.memory.examples import make_hardware
    from tunecrew.tools.throughput import model_flops_utilization, peak_flops

    gpu = make_hardware("cuda")
    assert peak_flops(gpu.model_copy(update={"device_name": "NVIDIA L40S"})) == 362e12  # not the L40's 181
    assert peak_flops(gpu.model_copy(update={"device_name": "NVIDIA H100 PCIe"})) == 756e12
    assert peak_flops(gpu.model_copy(update={"device_name": "NVIDIA A100-SXM4-80GB"})) == 312e12
    unknown = gpu.model_copy(update={"device_name": "Some Future GPU"})
    assert peak_flops(unknown) is None and model_flops_utilization(1000.0, 10**9, "lora", unknown) is None
    assert model_flops_utilization(1000.0, 10**9, "lora", gpu) == 4e9 * 1000 / 989e12


def test_precision_auto_trains_bf16_only_where_the_device_runs_it_fast():
    assert hardware.autocast_bf16("auto", device_bf16=True) and not hardware.autocast_bf16("auto", device_bf16=False)
    assert hardware.autocast_bf16("bf16", device_bf16=False)  # asked for: the user's call
    assert not hardware.autocast_bf16("fp32", device_bf16=True)


def test_the_cpu_flags_decide_bf16_and_its_peak(monkeypatch):
    from tunecrew.memory.examples import make_hardware
    from tunecrew.tools import throughput

    cpuinfo = "processor\t: 0\nmodel name\t: Xeon @ 2.00GHz\nflags\t\t: fpu avx2 avx512f avx512_bf16 amx_bf16\n"
    monkeypatch.setattr(hardware, "_read", lambda path: cpuinfo if path == "/proc/cpuinfo" else "")
    assert hardware.cpu_bf16_fast() and {"avx512f", "amx_bf16"} <= hardware.cpu_flags()
    cpu = make_hardware("cpu").model_copy(update={"cpu_count": 2, "bf16": True})
    monkeypatch.setattr(throughput, "_cpu_flags_and_clock", lambda: (hardware.cpu_flags(), 2e9))
    assert throughput.peak_flops(cpu, bf16=False) == 2 * 2e9 * 64  # AVX-512 fp32 FMA
    assert throughput.peak_flops(cpu, bf16=True) == throughput.peak_flops(cpu) == 2 * 2e9 * 1024  # AMX tiles
    monkeypatch.setattr(throughput, "_cpu_flags_and_clock", lambda: ({"avx512f", "avx512_bf16"}, 2e9))
    assert throughput.peak_flops(cpu, bf16=True) == 2 * 2e9 * 128
    monkeypatch.setattr(hardware, "_read", lambda path: "flags\t\t: fpu avx2 avx512f avx512_bf16\n")
    assert hardware.cpu_bf16_fast()  # AVX512-BF16 without AMX: 1.37x the fp32 tokens/s on a Zen 4 EPYC
    monkeypatch.setattr(hardware, "_read", lambda path: "flags\t\t: fpu avx2 avx512f\n")
    assert not hardware.cpu_bf16_fast()  # no bf16 instructions: autocast would convert around every matmul
