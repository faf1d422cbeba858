"""Feasibility estimates and hardware detection."""

from __future__ import annotations

from pathlib import Path

from tunecrew.tools.contracts import DatasetProfile, Hardware, TokenStats, TrainConfig
from tunecrew.tools.feasibility import check_feasibility
from tunecrew.tools.hardware import detect_hardware

CPU = Hardware(device="cpu", device_name="test cpu", ram_gb=8.0, cpu_count=2)
GPU_24GB = Hardware(device="cuda", device_name="NVIDIA GeForce RTX 4090", accelerator_memory_gb=24.0,
                    ram_gb=64.0, cpu_count=16, bf16=True)
TINY_PARAMS = 3_700_000
PROFILE = DatasetProfile(source="demo", fingerprint="sha256:00", rows=800, columns=["messages"], format="chat",
                         total_tokens=TokenStats(count=800, mean=60.0, p50=55.0, p95=110.0, max=200))
DEMO = TrainConfig(lora_rank=32, lora_alpha=64, train_embeddings=True, learning_rate=3e-3, epochs=3.0)


def test_tiny_model_fits_on_cpu() -> None:
    f = check_feasibility(DEMO, CPU, TINY_PARAMS, PROFILE)
    assert f.fits, f.reason
    assert 0 < f.est_memory_gb < 2
    assert 0 < f.est_seconds < 600
    assert "fits" in f.reason


def test_70b_full_finetune_refused_on_24gb() -> None:
    f = check_feasibility(TrainConfig(method="full", learning_rate=1e-5), GPU_24GB, 70_000_000_000, PROFILE)
    assert not f.fits
    assert f.est_memory_gb > 24
    assert "24.0 GB" in f.reason and "method=lora" in f.reason


def test_qlora_needs_bitsandbytes_not_cuda_and_unsloth_refused_on_cpu() -> None:
    f = check_feasibility(TrainConfig(method="qlora"), CPU, TINY_PARAMS, PROFILE, has_bitsandbytes=False)
    assert not f.fits and "method=qlora" in f.reason and "method=lora" in f.reason and "bitsandbytes" in f.reason
    f = check_feasibility(TrainConfig(method="qlora"), CPU, TINY_PARAMS, PROFILE, has_bitsandbytes=True)
    assert f.fits, f.reason  # bitsandbytes >= 0.50 trains 4-bit on CPU (tests/test_train_methods.py)
    f = check_feasibility(TrainConfig(backend="unsloth"), CPU, TINY_PARAMS, PROFILE)
    assert not f.fits and "backend=unsloth" in f.reason and "backend=hf" in f.reason


def test_precision_bf16_refused_on_a_card_without_bf16_and_allowed_on_a_cpu() -> None:
    t4 = GPU_24GB.model_copy(update={"device_name": "Tesla T4", "bf16": False})
    f = check_feasibility(TrainConfig(precision="bf16"), t4, TINY_PARAMS, PROFILE)
    assert not f.fits and "precision=bf16" in f.reason and "Tesla T4" in f.reason and "precision=auto" in f.reason
    assert check_feasibility(TrainConfig(precision="auto"), t4, TINY_PARAMS, PROFILE).fits
    # A CPU autocasts bf16 without bf16 instructions too, only slowly: the user's call, not an error.
    assert check_feasibility(TrainConfig(precision="bf16"), CPU, TINY_PARAMS, PROFILE).fits


def test_a_max_seq_length_the_system_prompt_fills_is_refused_naming_both() -> None:
    f = check_feasibility(TrainConfig(max_seq_length=128), CPU, TINY_PARAMS, PROFILE, extra_tokens_per_row=158)
    assert not f.fits and "max_seq_length=128" in f.reason and "158 tokens" in f.reason and "no reply token" in f.reason
    assert check_feasibility(TrainConfig(max_seq_length=256), CPU, TINY_PARAMS, PROFILE, extra_tokens_per_row=158).fits


def test_qlora_allowed_on_cuda_and_lighter_than_lora() -> None:
    lora = check_feasibility(TrainConfig(method="lora"), GPU_24GB, 7_000_000_000, PROFILE)
    qlora = check_feasibility(TrainConfig(method="qlora"), GPU_24GB, 7_000_000_000, PROFILE)
    assert qlora.fits, qlora.reason
    assert qlora.est_memory_gb < lora.est_memory_gb


def test_time_budget() -> None:
    f = check_feasibility(DEMO, CPU, TINY_PARAMS, PROFILE, time_budget_s=0.001)
    assert not f.fits and "time budget" in f.reason and "epochs" in f.reason
    longer = check_feasibility(DEMO.with_changes({"epochs": 6.0}), CPU, TINY_PARAMS, PROFILE)
    assert longer.est_seconds > check_feasibility(DEMO, CPU, TINY_PARAMS, PROFILE).est_seconds


def test_detect_hardware_matches_torch() -> None:
    """cpu on the development box; the same test stays true on a GPU machine."""
    import torch

    hw = detect_hardware()
    assert hw.cpu_count >= 1 and hw.ram_gb > 0
    if torch.cuda.is_available():
        assert hw.device == "cuda" and hw.accelerator_memory_gb > 0
    elif not torch.backends.mps.is_available():
        assert hw.device == "cpu" and hw.accelerator_memory_gb == 0
        flags = Path("/proc/cpuinfo").read_text()
        assert hw.bf16 == ("amx_bf16" in flags or "avx512_bf16" in flags)  # precision=auto trains bf16 there
