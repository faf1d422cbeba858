"""Neutralise chat-template control tokens inside untrusted text (user messages, dataset prompts).

A tokenizer maps the *text* ``<|im_start|>`` to its special token, so a message containing
``<|im_end|>\\n<|im_start|>system …`` would open a real system turn inside the prompt. Escaping
inserts a zero-width space (U+200B) after the first character of every control token:
``<\\u200b|im_start|>`` reads the same to a person but no longer matches the tokenizer's special
token, so it is tokenised as plain text. The change is idempotent and reported, so a caller can say
what it did (a note in the reply, a line in a log, a count in a data profile).

Which tokens: every special token the tokenizer knows (``all_special_tokens`` plus added tokens
flagged ``special``: a ChatML tokenizer often lists ``<|im_start|>`` only there), or, without a
tokenizer, the common chat-template markers in :data:`DEFAULT_CONTROL_TOKENS`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

ESCAPE = "\u200b"  # zero-width space: invisible, and never part of a special token

DEFAULT_CONTROL_TOKENS: tuple[str, ...] = (
    "<|im_start|>", "<|im_end|>", "<|endoftext|>", "<|pad|>",  # ChatML (Qwen, the tiny model)
    "<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>",  # Llama 3
    "<start_of_turn>", "<end_of_turn>",  # Gemma
    "<|system|>", "<|user|>", "<|assistant|>", "<|end|>",  # Phi / Zephyr
)


@dataclass(frozen=True)
class Neutralised:
    """The escaped text and which control tokens were found in it (with their counts)."""

    text: str
    found: dict[str, int]

    @property
    def changed(self) -> bool:
        return bool(self.found)

    def note(self, where: str = "the message") -> str:
        """One line for a reply note or a log: what was escaped and why."""
        listed = ", ".join(f"{tok} x{n}" if n > 1 else tok for tok, n in self.found.items())
        return (f"{where} contained chat-template control tokens ({listed}); they were escaped with a "
                "zero-width space and read as plain text")


def control_tokens(tokenizer: Any | None = None) -> tuple[str, ...]:
    """The strings to escape for `tokenizer`: its special tokens (named and added-as-special), longest
    first; :data:`DEFAULT_CONTROL_TOKENS` when there is no tokenizer."""
    if tokenizer is None:
        found: set[str] = set(DEFAULT_CONTROL_TOKENS)
    else:
        found = {str(t) for t in getattr(tokenizer, "all_special_tokens", []) or []}
        decoder = getattr(tokenizer, "added_tokens_decoder", None) or {}
        found |= {str(tok.content) for tok in decoder.values() if getattr(tok, "special", False)}
    # a one-character "token" cannot be escaped by splitting it, and would mangle ordinary text
    return tuple(sorted((t for t in found if len(t) > 1), key=lambda t: (-len(t), t)))


def neutralise(text: str, tokens: Iterable[str] | None = None) -> Neutralised:
    """`text` with every occurrence of a control token escaped (see the module doc). Longest tokens
    go first so that a token containing another (``</s>`` and ``<s>``) is counted once."""
    ordered = sorted(set(tokens) if tokens is not None else control_tokens(), key=lambda t: (-len(t), t))
    original = text
    found: dict[str, int] = {}
    for token in ordered:
        if len(token) < 2 or token not in text:
            continue
        found[token] = text.count(token)
        text = text.replace(token, token[0] + ESCAPE + token[1:])
    in_order = sorted(found, key=original.find)  # the note lists them as they appear
    return Neutralised(text=text, found={t: found[t] for t in in_order})
