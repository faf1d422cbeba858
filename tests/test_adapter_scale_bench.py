"""bench/adapter_scale.py's premise: an adapter saved with lora_alpha x s is the base weights plus s
times the update, as PEFT reloads it (no weight touched)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import LlamaConfig, LlamaForCausalLM

from factories import load_bench

adapter_scale = load_bench("adapter_scale", "adapter_scale_bench")


def _logits(model: torch.nn.Module, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=ids).logits


def test_scaled_copy_scales_the_update_and_refuses_whole_module_copies(tmp_path: Path) -> None:
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=4)
    base = LlamaForCausalLM(config).eval()
    ids = torch.randint(0, 64, (1, 8))
    before = _logits(base, ids)
    tuned = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    for name, param in tuned.named_parameters():
        if "lora_B" in name:  # B starts at zero: give the adapter an update to scale
            torch.nn.init.normal_(param, std=0.5)
    tuned.save_pretrained(tmp_path / "adapter")
    full = _logits(tuned, ids) - before
    tuned.unload()  # the base model without the adapter's layers, for the reloads below

    def delta(scale: float) -> torch.Tensor:
        copy = adapter_scale.scaled_copy(tmp_path / "adapter", scale, tmp_path / f"s{scale}")
        model = PeftModel.from_pretrained(base, copy).eval()
        out = _logits(model, ids) - before
        model.unload()
        return out

    assert full.abs().max() > 1e-3
    assert torch.allclose(delta(1.0), full, atol=1e-5)
    assert delta(0.0).abs().max() < 1e-6
    half = delta(0.5)
    assert not torch.allclose(half, full, atol=1e-3)
    # q and v both scale by s, so the logits move less than the full update, not by exactly half
    assert half.abs().mean() < full.abs().mean()

    cfg = tmp_path / "adapter" / "adapter_config.json"
    cfg.write_text(cfg.read_text().replace('"modules_to_save": null', '"modules_to_save": ["embed_tokens"]'))
    with pytest.raises(SystemExit, match="modules_to_save"):
        adapter_scale.scaled_copy(tmp_path / "adapter", 0.5, tmp_path / "refused")
