"""Grammar-constrained greedy decoding: each step, tokens the scenario's reply grammar cannot
continue with are masked before the argmax, so a reply cannot leave the contract's shape.

The grammar engine is llguidance (the one vLLM, SGLang and llama.cpp use): it compiles a Lark
grammar against the tokenizer once and computes each step's allowed-token bitmask in microseconds.
This module is only the transformers glue: one matcher per batch row, fed the token the row
generated last, its mask applied to that row's logits.
"""

from __future__ import annotations

import json
import weakref
from copy import copy
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedTokenizerBase

# hf tokenizer -> vocabulary size -> its llguidance tokenizer (building one costs ~1 s); weak, so a
# freed tokenizer's id can never map a new one to a stale vocabulary
_TOKENIZERS: weakref.WeakKeyDictionary[Any, dict[int, Any]] = weakref.WeakKeyDictionary()


class GrammarError(ValueError):
    """The grammar does not compile (a scenario bug, named with llguidance's own message), or the
    model's tokenizer is not one llguidance reads."""


def grammar_processor(tokenizer: PreTrainedTokenizerBase, grammar: str) -> Any:
    """A transformers LogitsProcessor that keeps every reply of one `generate` call inside the Lark
    `grammar` (a new one per call: it holds each row's parse state)."""
    import llguidance
    from transformers import LogitsProcessor

    lark = llguidance.LLMatcher.grammar_from_lark(grammar)
    failed, messages = llguidance.LLMatcher.validate_grammar_with_warnings(lark)
    if failed:
        raise GrammarError(f"the reply grammar does not compile: {messages[0]}")

    class GrammarMask(LogitsProcessor):
        def __init__(self) -> None:
            self.prompt_len = 0
            self.matchers: list[Any] = []
            self.done: list[bool] = []

        def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
            import torch

            if not self.matchers:  # the first step: the logits say the model's vocabulary size
                self.prompt_len = input_ids.shape[1]
                ll_tok = ll_tokenizer(tokenizer, scores.shape[1])
                self.matchers = [llguidance.LLMatcher(ll_tok, lark, log_level=0)
                                 for _ in range(input_ids.shape[0])]
                self.done = [False] * input_ids.shape[0]
            allowed = torch.ones_like(scores, dtype=torch.bool)
            for row, matcher in enumerate(self.matchers):
                if input_ids.shape[1] > self.prompt_len and not self.done[row]:
                    token = int(input_ids[row, -1])
                    if token == tokenizer.eos_token_id:
                        self.done[row] = True  # generate pads it from here, whatever we allow
                    else:
                        matcher.consume_token(token)
                if not self.done[row]:
                    # A complete reply's mask holds only EOS; so does a matcher in error (not expected:
                    # every token came from its mask), which ends the row as a truncated, invalid reply.
                    allowed[row] = _unpack(matcher.compute_bitmask(), scores.shape[1], scores.device)
            return scores.masked_fill(~allowed, float("-inf"))

    return GrammarMask()


def ll_tokenizer(tokenizer: PreTrainedTokenizerBase, vocab_size: int | None = None) -> Any:
    """llguidance's view of `tokenizer` (built once per tokenizer and vocabulary size: ~1 s)."""
    import llguidance
    from transformers import PreTrainedTokenizerFast

    known = _TOKENIZERS.setdefault(tokenizer, {})
    if (vocab_size or 0) not in known:
        if not isinstance(tokenizer, PreTrainedTokenizerFast):
            raise GrammarError(f"constrained decoding needs a fast (tokenizers) tokenizer; "
                               f"{type(tokenizer).__name__} of {tokenizer.name_or_path!r} is not one")
        backend = copy(tokenizer.backend_tokenizer)  # as llguidance.hf.from_tokenizer does, plus _as_text
        backend.no_padding()
        backend.no_truncation()
        known[vocab_size or 0] = llguidance.LLTokenizer(_as_text(backend.to_str()), n_vocab=vocab_size,
                                                        eos_token=tokenizer.eos_token_id)
    return known[vocab_size or 0]


def accepts(tokenizer: PreTrainedTokenizerBase, grammar: str, text: str, *, complete: bool = True) -> bool:
    """Whether `grammar` takes `text` (as a whole reply; `complete=False`: as the start of one)."""
    import llguidance

    matcher = llguidance.LLMatcher(ll_tokenizer(tokenizer), llguidance.LLMatcher.grammar_from_lark(grammar),
                                   log_level=0)
    taken = matcher.consume_tokens(tokenizer(text, add_special_tokens=False)["input_ids"])
    return bool(taken and (matcher.is_accepting() or not complete))


def _as_text(tokenizer_json: str) -> str:
    """The tokenizer with its non-special added tokens moved into a byte-level BPE vocabulary.

    llguidance reads every added token as a special one (matched only by name, never as text), but
    an added token marked `special: false` is text the model writes: the tiny model's `<analysis>`
    is one token. In the vocabulary it is matched by its bytes, which is what it decodes to."""
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    spec = json.loads(tokenizer_json)
    if (spec.get("model") or {}).get("type") != "BPE" or (spec.get("decoder") or {}).get("type") != "ByteLevel":
        return tokenizer_json
    to_char = bytes_to_unicode()
    text = [t for t in spec.get("added_tokens", []) if not t.get("special", True)]
    for token in text:
        spec["model"]["vocab"]["".join(to_char[b] for b in token["content"].encode("utf-8"))] = token["id"]
    spec["added_tokens"] = [t for t in spec.get("added_tokens", []) if t not in text]
    return json.dumps(spec)


def _unpack(bitmask: bytes, vocab_size: int, device: Any) -> torch.Tensor:
    """llguidance's mask (one bit per token id, little-endian 32-bit words) as a bool row."""
    import numpy as np
    import torch

    bits = np.unpackbits(np.frombuffer(bitmask, dtype=np.uint8), bitorder="little")[:vocab_size]
    return torch.from_numpy(bits.astype(bool)).to(device)
