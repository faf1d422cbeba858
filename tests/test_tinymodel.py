"""The locally built tiny base model: files on disk, tokenizer contract, reuse, and description."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tunecrew.tools.model_info import ModelNotFound, describe_base_model
from tunecrew.tools.tinymodel import MARKER_FILE, create_tiny_model


@pytest.fixture(scope="module")
def tokenizer(tiny_model):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model)


def test_writes_config_tokenizer_and_marker(tiny_model, tiny_spec):
    out = Path(tiny_model)
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json", MARKER_FILE):
        assert (out / name).exists(), name
    assert any(out.glob("*.safetensors"))
    config = json.loads((out / "config.json").read_text())
    assert config["hidden_size"] == tiny_spec.hidden_size and config["num_hidden_layers"] == tiny_spec.num_layers
    assert config["num_key_value_heads"] == tiny_spec.num_kv_heads
    assert config["tie_word_embeddings"] is False
    marker = json.loads((out / MARKER_FILE).read_text())
    assert marker["random_init"] is True and marker["params"] > 0
    assert marker["spec"]["added_tokens"] == list(tiny_spec.added_tokens)


def test_contract_tags_are_single_tokens_that_survive_decoding(tokenizer, tiny_spec):
    assert tiny_spec.added_tokens  # <analysis>, </analysis>, <action>, ...
    for tag in tiny_spec.added_tokens:
        ids = tokenizer(tag, add_special_tokens=False)["input_ids"]
        assert len(ids) == 1, (tag, ids)
    reply = '<analysis>List the tasks.</analysis><action>list_tasks()</action>'
    ids = tokenizer(reply, add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(ids, skip_special_tokens=True) == reply
    # ...while the chat markers are special and do disappear.
    im = tokenizer("<|im_start|>user\nhi<|im_end|>", add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(im, skip_special_tokens=True) == "user\nhi"
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.pad_token == "<|pad|>"
    assert tokenizer.padding_side == "left"


def test_chat_template_renders_chatml_with_generation_prompt(tokenizer):
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "list my tasks"}]
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert text == ("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nlist my tasks<|im_end|>\n"
                    "<|im_start|>assistant\n")
    full = tokenizer.apply_chat_template([*messages, {"role": "assistant", "content": "ok"}], tokenize=False)
    assert full.endswith("<|im_start|>assistant\nok<|im_end|>\n")


def test_same_spec_reuses_the_directory(tiny_model, tiny_spec):
    weights = next(Path(tiny_model).glob("*.safetensors"))
    mtime = weights.stat().st_mtime_ns
    started = time.monotonic()
    # Texts are not even read when the marker matches: the build is keyed on the spec.
    assert create_tiny_model(Path(tiny_model), ["unused"], tiny_spec) == Path(tiny_model)
    assert time.monotonic() - started < 1.0
    assert weights.stat().st_mtime_ns == mtime


def test_describe_reports_family_size_and_random_init(tiny_model):
    info = describe_base_model(tiny_model)
    marker = json.loads((Path(tiny_model) / MARKER_FILE).read_text())
    assert info.family == "llama"
    assert info.params == marker["params"]
    assert info.random_init is True
    assert info.vocab_size == json.loads((Path(tiny_model) / "config.json").read_text())["vocab_size"]
    assert info.max_positions == 512


@pytest.mark.parametrize("name", ["/no/such/model/dir", "./missing-model", "not-a-hub-id", "a/b/c"])
def test_missing_path_or_bad_id_is_model_not_found(name):
    with pytest.raises(ModelNotFound, match="--base-model"):
        describe_base_model(name)
