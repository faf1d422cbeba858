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

Dataset rows (:func:`neutralise_rows`) are escaped when a scenario's data is built
(``tools/scenario.ScenarioData``), before the base model's tokenizer is loaded (the tiny model is
even built *from* that data), so they get the fixed list. It names turn markers only: ``<s>`` and
``</s>`` (Llama 2 / Mistral BOS and EOS) are left out because they are also HTML's strikethrough
tags, which real data holds and a model should learn to write unchanged; a tokenizer that has them
as special tokens escapes them when its own list is used.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

ESCAPE = "\u200b"  # zero-width space: invisible, and never part of a special token

DEFAULT_CONTROL_TOKENS: tuple[str, ...] = (
    "<|im_start|>", "<|im_end|>", "<|endoftext|>", "<|pad|>",  # ChatML (Qwen, the tiny model)
    "<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>",  # Llama 3
    "<|eom_id|>", "<|python_tag|>",  # Llama 3.1 tool turns
    "<start_of_turn>", "<end_of_turn>",  # Gemma
    "<|system|>", "<|user|>", "<|assistant|>", "<|end|>",  # Phi / Zephyr
    "[INST]", "[/INST]",  # Mistral / Llama 2: plain text in older tokenizers, still the template's turn marks
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


@dataclass(frozen=True)
class RowsNeutralised:
    """Rows with every text escaped, how many rows changed, and the tokens found (with counts)."""

    rows: list[dict]
    changed_rows: int
    found: dict[str, int]

    def note(self, where: str = "") -> str:
        """`control tokens escaped in 3 rows (<|im_end|> x3, <|im_start|> x3); …`, for the data notes."""
        listed = ", ".join(f"{tok} x{n}" if n > 1 else tok for tok, n in self.found.items())
        rows = "row" if self.changed_rows == 1 else "rows"
        return (f"control tokens escaped in {self.changed_rows} {rows}{where} ({listed}); "
                "they read as plain text, not as chat-turn boundaries")


def neutralise_rows(rows: Iterable[dict], tokens: Iterable[str] | None = None) -> RowsNeutralised:
    """Every string inside each row (message contents, tool calls, pair sides, nested lists and
    dicts) escaped with :func:`neutralise`; dict keys and message ``role`` values are left alone.
    A row without control tokens is returned as the same object; a changed row is a copy."""
    ordered = tuple(sorted(set(tokens) if tokens is not None else control_tokens(), key=lambda t: (-len(t), t)))
    out: list[dict] = []
    changed = 0
    found: dict[str, int] = {}

    def walk(value: Any, key: str | None = None) -> Any:  # one frame a level: rows nest <= rows.MAX_NESTING
        if isinstance(value, str):
            if key == "role":
                return value
            cleaned = neutralise(value, ordered)
            for token, n in cleaned.found.items():
                found[token] = found.get(token, 0) + n
            return cleaned.text
        if isinstance(value, dict):
            out_dict = {}
            for k, v in value.items():
                out_dict[k] = walk(v, k if isinstance(k, str) else None)
            return out_dict
        if isinstance(value, (list, tuple)):
            out_list = []
            for v in value:
                out_list.append(walk(v))
            return out_list
        return value

    for row in rows:
        before = sum(found.values())
        new = walk(row)
        if sum(found.values()) > before:
            changed += 1
            out.append(new)
        else:
            out.append(row)
    return RowsNeutralised(rows=out, changed_rows=changed, found=found)
