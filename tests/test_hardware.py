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
