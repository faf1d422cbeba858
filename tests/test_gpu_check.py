"""bench/gpu_check.py: its FLOPs and peak-FLOPs helpers, its packing, and a real CPU --tiny run.

No GPU here: the CPU run checks that the script runs end to end, writes its table and JSON, and
reports the CUDA-only modes as such; the GPU figures need a lent machine (docs/benchmarks.md).
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

from factories import load_bench

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "gpu_check.py"


gc = load_bench("gpu_check", "gpu_check")


@pytest.mark.parametrize(("name", "tflops"), [
    ("NVIDIA H200", 989.0), ("NVIDIA H100 80GB HBM3", 989.0), ("NVIDIA H100 PCIe", 756.0),
    ("NVIDIA A100-SXM4-80GB", 312.0), ("NVIDIA L4", 121.0), ("NVIDIA L40S", 362.0),
    ("NVIDIA GeForce GTX 1080", None), ("", None), (None, None),
])
def test_peak_flops_by_device_name(name: str | None, tflops: float | None) -> None:
    assert gc.peak_bf16_tflops(name) == tflops


def test_flops_formula_full_and_lora() -> None:
    # 1 layer, hidden 10, N = 1000 matmul weights, 50 LoRA weights, two documents of 3 and 4 tokens.
    full = gc.train_flops(1000, 50, tokens=7, sum_sq_lengths=9 + 16, layers=1, hidden=10, lora=False)
    lora = gc.train_flops(1000, 50, tokens=7, sum_sq_lengths=9 + 16, layers=1, hidden=10, lora=True)
    attention = 12 * 1 * 10 * 25
    assert full == 6 * 1000 * 7 + attention
    assert lora == 4 * 1000 * 7 + 6 * 50 * 7 + attention
    assert gc.mfu(989e12 / 2, 989.0) == pytest.approx(0.5)
    assert gc.mfu(1e12, None) is None


def test_packing_keeps_every_document_and_respects_the_row_capacity() -> None:
    rng = random.Random(3)
    lengths = gc.doc_lengths(200, gc.GPU_WORKLOAD, rng)
    assert all(gc.GPU_WORKLOAD.min_len <= n <= gc.GPU_WORKLOAD.max_len for n in lengths)
    rows = gc.pack_first_fit(lengths, 2048)
    assert sorted(i for row in rows for i in row) == list(range(200))
    assert all(sum(lengths[i] for i in row) <= 2048 for row in rows)
    assert len(rows) < len(lengths) // 2  # short documents share rows
    with pytest.raises(ValueError, match="does not fit"):
        gc.pack_first_fit([10, 3000], 2048)


def test_packed_rows_attend_only_within_each_document() -> None:
    """The packed step's loss equals the padded step's: no token saw another document."""
    import torch

    torch.manual_seed(0)
    model, n_matmul, n_lora = gc.build_model(gc.SHAPES["tiny"], "cpu", torch.float32)
    assert n_matmul > n_lora > 0
    model.eval()
    losses = {}
    for mode in ("padded_sdpa", "packed_sdpa"):
        step = gc.make_steps(mode, gc.SHAPES["tiny"], gc.TINY_WORKLOAD, "cpu", seed=5)[0]
        with torch.no_grad():
            losses[mode] = model(**step.inputs).loss.item()
    assert losses["packed_sdpa"] == pytest.approx(losses["padded_sdpa"], rel=1e-4)


@pytest.mark.slow
def test_cpu_tiny_run_writes_table_and_json(tmp_path: Path) -> None:
    out = tmp_path / "gpu_check.json"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--device", "cpu", "--tiny", "--seconds", "0.3", "--warmup", "1",
         "--max-total-s", "240", "--out", str(out)],
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "| tiny | padded_sdpa | ok |" in done.stdout
    assert "| tiny | packed_sdpa | ok |" in done.stdout
    data = json.loads(out.read_text())
    assert data["complete"] is True and data["device"] == "cpu" and data["peak_bf16_tflops"] is None
    by_mode = {r["mode"]: r for r in data["results"]}
    assert set(by_mode) == set(gc.MODES)
    for mode in ("padded_sdpa", "packed_sdpa"):
        r = by_mode[mode]
        assert r["steps"] >= 2 and r["mfu"] is None
        for key in ("real_tokens_per_s", "model_tflops_per_s", "peak_memory_gib", "seconds", "speedup_vs_padded"):
            assert r[key] > 0, (mode, key, r[key])
        assert 0 <= r["pad_fraction"] < 1
    assert by_mode["padded_sdpa"]["pad_fraction"] > by_mode["packed_sdpa"]["pad_fraction"]
    assert by_mode["packed_flash_attention_2"]["status"] == "cuda only"
    assert by_mode["packed_flex_attention"]["status"].startswith("cuda only")


def test_bad_flags_are_one_line_not_a_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        gc.parse_args(["--modes", "padded_sdpa,warp_speed"])
    assert "--modes: unknown warp_speed" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        gc.parse_args(["--out", str(tmp_path / "missing" / "x.json")])
    assert "does not exist" in capsys.readouterr().err
    args = gc.parse_args(["--tiny", "--modes", "packed_sdpa"])
    assert args.modes == ["packed_sdpa"] and [s.name for s in args.shapes] == ["tiny"]


def test_the_overall_cap_skips_what_no_longer_fits(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "capped.json"
    assert gc.main(["--device", "cpu", "--tiny", "--seconds", "5", "--max-total-s", "1", "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    statuses = {r["mode"]: r["status"] for r in data["results"]}
    assert statuses["padded_sdpa"].startswith("skipped:") and statuses["packed_sdpa"].startswith("skipped:")
    assert all(r["steps"] == 0 for r in data["results"])
    assert "skipped:" in capsys.readouterr().out
