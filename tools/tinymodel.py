"""A tiny Llama-style base model and tokenizer, built locally from a scenario's own text.

Weights cannot be downloaded on an offline machine, so the offline default creates its base model:
a byte-level BPE tokenizer trained on the scenario's text (with a ChatML chat template) and a small,
randomly initialised Llama. Both are written with ``save_pretrained`` and loaded back by the train
and eval tools through ``AutoModelForCausalLM.from_pretrained`` / ``AutoTokenizer.from_pretrained``,
exactly the path a hub id takes, so nothing downstream knows the model is tiny.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

# `{% generation %}` marks the assistant's tokens (end-of-turn included) so TRL can mask the
# prompt out of the loss when a dataset comes as whole conversations.
CHATML_TEMPLATE = (
    "{%- for message in messages %}"
    "{%- if message['role'] == 'assistant' %}"
    "{{- '<|im_start|>assistant\\n' }}{% generation %}{{- message['content'] + '<|im_end|>' }}{% endgeneration %}"
    "{{- '\\n' }}"
    "{%- else %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|pad|>"]

# Sidecar file that tells the Tuner what it cannot read from config.json: this model has never
# been trained, so its embeddings must be trained too (LoRA alone cannot move a random embedding).
MARKER_FILE = "tunecrew_base.json"


@dataclass(frozen=True)
class TinyModelSpec:
    vocab_size: int = 2048  # enough merges to make the scenario's words single tokens
    hidden_size: int = 192
    intermediate_size: int = 512  # ~2.7x hidden, as in Llama
    num_layers: int = 4
    num_heads: int = 4
    num_kv_heads: int = 2  # grouped-query attention, like current Llamas
    max_positions: int = 512
    seed: int = 0
    added_tokens: tuple[str, ...] = field(default_factory=tuple)  # e.g. contract tags, one token each


def build_tokenizer(texts: Iterable[str], spec: TinyModelSpec):
    """Train a byte-level BPE tokenizer on `texts` and wrap it as a transformers fast tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import AddedToken, PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=spec.vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(texts, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        eos_token="<|im_end|>",
        pad_token="<|pad|>",
        bos_token=None,
        unk_token=None,
        chat_template=CHATML_TEMPLATE,
        padding_side="left",  # generation appends on the right; as an init kwarg it is saved and reloaded
    )
    if spec.added_tokens:
        # Not special: decode(skip_special_tokens=True) must keep the contract's tags.
        tokenizer.add_tokens([AddedToken(t, special=False, normalized=False) for t in spec.added_tokens])
    return tokenizer


def create_tiny_model(out_dir: Path, texts: Iterable[str], spec: TinyModelSpec = TinyModelSpec()) -> Path:
    """Write tokenizer + random-init Llama to `out_dir`; return it. Reuses an existing identical build."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    out_dir = Path(out_dir)
    marker = out_dir / MARKER_FILE
    if marker.exists() and json.loads(marker.read_text()).get("spec") == _jsonable(spec):
        return out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(list(texts), spec)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_layers,
        num_attention_heads=spec.num_heads,
        num_key_value_heads=spec.num_kv_heads,
        max_position_embeddings=spec.max_positions,
        tie_word_embeddings=False,  # PEFT trains embed_tokens and lm_head as separate copies
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=None,
    )
    torch.manual_seed(spec.seed)
    model = LlamaForCausalLM(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    params = sum(p.numel() for p in model.parameters())
    marker.write_text(json.dumps({"random_init": True, "params": params, "spec": _jsonable(spec)}, indent=2))
    return out_dir


def _jsonable(spec: TinyModelSpec) -> dict:
    data = asdict(spec)
    data["added_tokens"] = list(spec.added_tokens)
    return data
