"""Row layouts: tell which known layout a dataset's columns are, and turn a row into chat messages.

docs/data-formats.md lists every layout with its columns and its test.

A layout is found from the column names (matched case-insensitively, spaces and hyphens read as
underscores) and the first row's values. Two columns that could fill the same role (`question`
and `Question`, or `answer` and `response`) are never resolved by a silent pick: detection stops
with :class:`AmbiguousColumns`, naming the candidates and the `--columns` mapping to pass.
"""

from __future__ import annotations

import ast
import contextlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tunecrew.tools.rows import DataError, brief_list, short_repr, too_deep

__all__ = [
    "FORMATS", "AmbiguousColumns", "Layout", "cell_text", "columns_of", "detect_format", "detect_layout",
    "format_from_mapping", "message_list", "row_extras", "to_messages",
]

# Column names per role, compared after _norm(). Within one group two matches are ambiguous.
_CHAT_COLUMNS = ("messages", "conversations", "conversation", "chat", "dialog", "dialogue")
_PROMPT_COLUMNS = ("instruction", "question", "query", "problem", "prompt")
_ANSWER_COLUMNS = ("answer", "response", "output", "solution", "completion", "final_answer", "final_decision")
_INPUT_COLUMNS = ("input", "context", "contexts", "passage")
_TEXT_COLUMNS = ("text", "sentence", "content", "document", "body", "review")
_LABEL_COLUMNS = ("label", "labels", "class", "category", "sentiment", "intent", "emotion")
_SYSTEM_COLUMNS = ("system", "system_prompt")
_TOOLS_COLUMNS = ("tools", "functions")
_OPTIONS_COLUMNS = ("options", "choices")  # MedQA's {"A": ..., "B": ...}, or a list read as A, B, C, ...
_ANSWER_LETTER_COLUMNS = ("answer_idx", "answer_letter", "answer_key", "correct_option")
_REASONING_NAMES = ("long_answer",)  # PubMedQA's explanation of its yes/no/maybe
_REASONING_HINTS = ("cot", "reasoning", "rationale", "thoughts", "think", "thinking", "explanation")
# A column named like reasoning that holds a flag (PubMedQA's reasoning_required_pred: "yes") is not prose.
_FLAG_VALUES = frozenset({"yes", "no", "maybe", "true", "false"})

FORMATS = ("chat", "prompt_completion", "instruction", "preference", "text")


class AmbiguousColumns(DataError):
    """Two or more columns fit one role; the message lists them and the `--columns` mapping to pass."""


@dataclass(frozen=True)
class Layout:
    """A recognised row layout: its name (docs/data-formats.md), how rows convert, role -> column."""

    name: str  # openai-chat, sharegpt, alpaca, question-answer, text-label, openai-dpo, ...
    format: str  # one of FORMATS: how to_messages reads the row
    columns: dict[str, str] = field(default_factory=dict)


def _norm(column: Any) -> str:
    return re.sub(r"[\s\-]+", "_", str(column).strip().lower())


# --------------------------------------------------------------------------- detection


class _Columns:
    """The columns of a dataset, picked by role; remembers every pick that had rivals."""

    def __init__(self, columns: list[str], first_row: dict) -> None:
        self.names = [str(c) for c in columns]
        self.first_row = first_row
        self.rivals: dict[str, list[str]] = {}  # picked column -> all candidates it was picked from

    def pick(self, names: tuple[str, ...], accept: Callable[[Any], bool] | None = None) -> str | None:
        found = [c for c in self.names if _norm(c) in names and (accept is None or accept(self.first_row.get(c)))]
        return self._choose(found)

    def reasoning(self, used: set[str]) -> str | None:
        """A chain-of-thought column (`Complex_CoT`, `rationale`, `LONG_ANSWER`) holding prose, not a flag."""
        found = [c for c in self.names if c not in used and _is_reasoning_name(c)
                 and not _is_flag(self.first_row.get(c))]
        return self._choose(found)

    def optional(self, role: str, names: tuple[str, ...]) -> dict[str, str]:
        column = self.pick(names)
        return {role: column} if column else {}

    def _choose(self, found: list[str]) -> str | None:
        if len(found) > 1:
            self.rivals[found[0]] = found
        return found[0] if found else None


def _is_reasoning_name(column: str) -> bool:
    name = _norm(column)
    words = set(re.split(r"[^a-z]+", name))
    return name in _REASONING_NAMES or bool(words & set(_REASONING_HINTS)) or "reason" in name or "thought" in name


def _is_flag(value: Any) -> bool:
    return isinstance(value, (bool, int, float)) or (isinstance(value, str) and value.strip().lower() in _FLAG_VALUES)


def _chat_layout(cols: _Columns) -> Layout | None:
    column = cols.pick(_CHAT_COLUMNS, accept=lambda v: message_list(v) is not None)
    if column is None:
        return None
    first = (message_list(cols.first_row.get(column)) or [{}])[0]
    name = "sharegpt" if "from" in first or "value" in first else "openai-chat"
    return Layout(name, "chat", {"messages": column, **cols.optional("tools", _TOOLS_COLUMNS),
                                 **cols.optional("system", _SYSTEM_COLUMNS)})


def _openai_dpo_layout(cols: _Columns) -> Layout | None:
    chosen, rejected = cols.pick(("preferred_output",)), cols.pick(("non_preferred_output",))
    prompt = cols.pick(("input",))
    if not (chosen and rejected and prompt):
        return None
    return Layout("openai-dpo", "preference", {"prompt": prompt, "chosen": chosen, "rejected": rejected})


def _preference_layout(cols: _Columns) -> Layout | None:
    chosen, rejected = cols.pick(("chosen",)), cols.pick(("rejected",))
    if not (chosen and rejected):
        return None
    system = cols.optional("system", _SYSTEM_COLUMNS)
    prompt = cols.pick(("prompt", "question", "instruction"))
    if prompt:
        return Layout("preference", "preference", {"prompt": prompt, "chosen": chosen, "rejected": rejected, **system})
    if message_list(cols.first_row.get(chosen)) is not None:  # conversational pairs carry the prompt inside
        return Layout("preference-chat", "preference", {"chosen": chosen, "rejected": rejected, **system})
    return None


def _instruction_layout(cols: _Columns) -> Layout | None:
    prompt = cols.pick(_PROMPT_COLUMNS)
    answer = cols.pick(_ANSWER_COLUMNS) or cols.pick(_LABEL_COLUMNS)
    if not (prompt and answer):
        return None
    system = cols.optional("system", _SYSTEM_COLUMNS)
    extra = cols.optional("input", _INPUT_COLUMNS)
    options = cols.pick(_OPTIONS_COLUMNS, accept=lambda v: _option_items(v) is not None)
    if options:  # multiple choice: the options go into the prompt, the letter leads the answer
        extra["options"] = options
        extra.update(cols.optional("answer_letter", _ANSWER_LETTER_COLUMNS))
    reasoning = cols.reasoning(used={prompt, answer, *extra.values(), *system.values()})
    if reasoning:
        extra["reasoning"] = reasoning
    if _norm(prompt) == "prompt" and _norm(answer) in ("completion", "response") and not extra:
        return Layout("prompt-completion", "prompt_completion", {"prompt": prompt, "completion": answer, **system})
    if options:
        name = "multiple-choice"
    elif _norm(prompt) == "instruction":
        name = "alpaca"
    else:
        name = "question-reasoning-answer" if reasoning else "question-answer"
    return Layout(name, "instruction", {"prompt": prompt, "response": answer, **extra, **system})


def _text_label_layout(cols: _Columns) -> Layout | None:
    text, label = cols.pick(_TEXT_COLUMNS), cols.pick(_LABEL_COLUMNS)
    if not (text and label):
        return None
    return Layout("text-label", "instruction", {"prompt": text, "response": label,
                                                **cols.optional("system", _SYSTEM_COLUMNS)})


def _text_layout(cols: _Columns) -> Layout | None:
    text = cols.pick(_TEXT_COLUMNS)
    if text is None and len(cols.names) == 1 and isinstance(cols.first_row.get(cols.names[0]), str):
        text = cols.names[0]
    return Layout("text", "text", {"text": text}) if text else None


# Most specific first: a chat column wins over everything, pairs over prompt/answer columns.
_MATCHERS = (_chat_layout, _openai_dpo_layout, _preference_layout, _instruction_layout, _text_label_layout,
             _text_layout)


def columns_of(rows: list[dict]) -> list[str]:
    """The column names of rows, in first-seen order (the first 1,000 rows are read)."""
    seen: dict[str, None] = {}
    for row in rows[:1000]:
        for key in row:
            seen.setdefault(str(key), None)
    return list(seen)


def detect_layout(columns: list[str], first_row: dict) -> Layout:
    """The layout of rows with these columns; raises DataError listing the columns if none fits,
    AmbiguousColumns if a role has two candidate columns."""
    cols = _Columns(columns, first_row)
    for matcher in _MATCHERS:
        cols.rivals = {}  # rivals seen by a matcher that did not match are no ambiguity
        layout = matcher(cols)
        if layout is not None:
            _refuse_ambiguity(layout, cols.rivals)
            return layout
    raise DataError(
        f"cannot tell the row layout from columns {brief_list(columns)}; give a column mapping "
        "(roles: docs/data-formats.md)"
    )


def detect_format(columns: list[str], first_row: dict) -> tuple[str, dict[str, str]]:
    """(format, role -> column) for a row layout; see :func:`detect_layout`.

    Roles: chat `messages` (+ `tools`); prompt_completion `prompt`, `completion`; preference
    `prompt` (optional), `chosen`, `rejected`; instruction `prompt`, `response`, optional `input`,
    `reasoning`; text `text`; any format may add `system`.
    """
    layout = detect_layout(columns, first_row)
    return layout.format, dict(layout.columns)


def _refuse_ambiguity(layout: Layout, rivals: dict[str, list[str]]) -> None:
    clashes = [(role, rivals[column]) for role, column in layout.columns.items() if column in rivals]
    if not clashes:
        return
    named = "; ".join(f"{role} could be {_either(candidates)}" for role, candidates in clashes)
    flag = ",".join(f"{role}={column}" for role, column in layout.columns.items())
    raise AmbiguousColumns(f"ambiguous columns: {named}; choose with --columns {flag}")


def _either(candidates: list[str], limit: int = 4) -> str:
    shown = " or ".join(short_repr(c) for c in candidates[:limit])
    return shown + (f" … (+{len(candidates) - limit} more)" if len(candidates) > limit else "")


def format_from_mapping(mapping: dict[str, str], columns: list[str]) -> tuple[str, dict[str, str]]:
    """(format, mapping) for a user-given role -> column map; checks the columns exist.

    The escape hatch that :func:`detect_layout`'s errors point to.
    """
    missing = [c for c in mapping.values() if c not in columns]
    if missing:
        raise DataError(f"column mapping names {brief_list(missing)}, which are not among the columns "
                        f"{brief_list(columns)}")
    roles = set(mapping) - {"system", "tools"}
    for fmt, needed in (
        ("chat", {"messages"}),
        ("preference", {"chosen", "rejected"}),
        ("prompt_completion", {"prompt", "completion"}),
        ("instruction", {"prompt", "response"}),
        ("text", {"text"}),
    ):
        if needed <= roles:
            return fmt, dict(mapping)
    raise DataError(
        f"column mapping roles {sorted(mapping)} fit no format; use messages, prompt+completion, "
        "prompt+response (+input, reasoning), prompt+chosen+rejected, or text"
    )


# --------------------------------------------------------------------------- cells


def _parse_list_repr(value: str) -> list | None:
    """A list pasted as text (`['a', 'b']` from pandas.to_csv, or JSON), else None.

    Parsed only when the text looks like a list, and with json/ast.literal_eval (never eval).
    """
    text = value.strip()
    if len(text) < 2 or text[0] != "[" or text[-1] != "]":
        return None
    for parse in (json.loads, ast.literal_eval):
        try:
            parsed = parse(text)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            continue
        return parsed if isinstance(parsed, list) else None
    return None


def message_list(value: Any) -> list[dict] | None:
    """`value` as a non-empty list of message objects (a real list or its pasted repr), else None."""
    if isinstance(value, str):
        value = _parse_list_repr(value)
    if isinstance(value, list) and value and all(isinstance(m, dict) for m in value):
        return value
    return None


def cell_text(value: Any, column: str, where: str) -> str:
    """A cell as text. Lists of plain values are joined one item a line: real lists (parquet,
    JSON, the hub) and lists pasted as text, the latter only when every item is a string, so an
    answer such as `[1, 2, 3]` stays as written."""
    if value is None:
        raise DataError(f"{where}: column {short_repr(column)} is empty (null); drop or fill the row")
    if isinstance(value, str):
        items = _parse_list_repr(value)
        if items and all(isinstance(x, str) for x in items):
            return "\n".join(items)
        return value
    if isinstance(value, (list, tuple)) and not any(isinstance(x, (list, tuple, dict)) for x in value):
        return "\n".join(str(x) for x in value)
    if isinstance(value, (list, tuple, dict)):
        raise DataError(f"{where}: column {short_repr(column)} holds a {type(value).__name__} of objects, expected "
                        "text; map another column with --columns")
    return str(value)


def row_extras(row: dict, column_map: dict[str, str]) -> dict[str, Any]:
    """What a converted row carries besides its messages: the `tools` a chat row declares, and a
    preference row's `rejected` reply (the user's own negative: DPO pairs and NAT negatives use it
    instead of making one up)."""
    extras: dict[str, Any] = {}
    if "tools" in column_map:
        tools = row.get(column_map["tools"])
        if isinstance(tools, str):
            tools = _parse_list_repr(tools) or tools  # LLaMA-Factory's ShareGPT keeps tools as a JSON string
        if tools:
            extras["tools"] = tools
    if "rejected" in column_map and (rejected := _rejected_reply(row.get(column_map["rejected"]))):
        extras["rejected"] = rejected
    return extras


def _rejected_reply(raw: Any) -> str | None:
    """The rejected side's reply: the text, or the last assistant turn of a message list."""
    if raw is None:
        return None
    messages = message_list(raw)
    if messages is not None:
        replies = [m for m in messages if str(m.get("role", m.get("from", ""))).lower() in ("assistant", "gpt")]
        text = replies[-1].get("content", replies[-1].get("value")) if replies else None
        return str(text) if text and str(text).strip() else None
    text = raw if isinstance(raw, str) else None
    return text if text and text.strip() else None


# --------------------------------------------------------------------------- conversion


_ROLE_ALIASES = {
    "user": "user", "human": "user", "prompter": "user",
    "assistant": "assistant", "gpt": "assistant", "bot": "assistant", "model": "assistant",
    "system": "system",
    # ShareGPT with tools (LLaMA-Factory): the call is an assistant turn, its result a tool turn.
    "function_call": "assistant", "tool": "tool", "observation": "tool", "function": "tool", "ipython": "tool",
}


def to_messages(
    row: dict, fmt: str, column_map: dict[str, str], *, where: str = "row", include_reasoning: bool = True
) -> list[dict]:
    """A row as chat messages: optional system, then user/assistant (and tool) turns.

    Chat rows keep all their turns (multi-turn stays multi-turn); ShareGPT `from`/`value` keys
    and `human`/`gpt` roles are normalised; OpenAI `tool_calls` stay on their assistant message.
    Instruction rows with a reasoning column put it before the answer inside `<think>…</think>`
    (set `include_reasoning=False` to drop it). Text rows have no prompt and become a single
    assistant message. List cells become one item a line (:func:`cell_text`).
    """

    def value(role: str) -> Any:
        column = column_map.get(role)
        if column is None:
            raise DataError(f"{where}: column map has no {role!r} role for format {fmt!r}")
        if column not in row:
            raise DataError(f"{where}: missing column {short_repr(column)} (role {role!r}); "
                            f"columns are {brief_list(row)}")
        return row[column]

    def text(role: str) -> str:
        return cell_text(value(role), column_map[role], where)

    def side(role: str, speaker: str) -> list[dict]:
        raw = value(role)
        if isinstance(raw, dict) and "messages" in raw:  # OpenAI DPO's input: {messages, tools, ...}
            raw = raw["messages"]
        messages = message_list(raw)
        if messages is not None:
            return _normalise_chat(messages, where, require_pair=False)
        return [{"role": speaker, "content": text(role)}]

    system = [{"role": "system", "content": text("system")}] if "system" in column_map else []

    if fmt == "chat":
        raw = value("messages")
        messages = _normalise_chat(message_list(raw) or raw, where)
        if system and not any(m["role"] == "system" for m in messages):
            messages = system + messages
        return messages
    if fmt == "text":
        return [*system, {"role": "assistant", "content": text("text")}]
    if fmt == "preference":
        # The chosen answer is the SFT target; `rejected` only matters to DPO.
        prompt_msgs = side("prompt", "user") if "prompt" in column_map else []
        chosen = message_list(value("chosen"))
        if chosen is not None:  # conversational pair: the prompt may live inside `chosen`
            return system + prompt_msgs + _normalise_chat(chosen, where, require_pair=not prompt_msgs)
        return system + prompt_msgs + [{"role": "assistant", "content": text("chosen")}]
    if fmt == "prompt_completion":
        # Either side may be a message list (TRL's conversational prompt-completion layout).
        return system + side("prompt", "user") + side("completion", "assistant")
    if fmt == "instruction":
        return system + _instruction_turns(row, column_map, text, where, include_reasoning)
    raise DataError(f"{where}: unknown format {fmt!r}; expected {', '.join(FORMATS)}")


def _instruction_turns(row: dict, column_map: dict[str, str], text: Callable[[str], str], where: str,
                       include_reasoning: bool) -> list[dict]:
    user = text("prompt")
    extra = _optional_text(row, column_map, "input", where)
    if extra:
        user = f"{user}\n\n{extra}"
    answer = text("response")
    if "options" in column_map:
        items = _option_items(row.get(column_map["options"]))
        if items is None:
            raise DataError(f"{where}: {short_repr(column_map['options'])} must map letters to options "
                            "({\"A\": ..., \"B\": ...}) or list them")
        user += "\n\n" + "\n".join(f"{letter}. {option}" for letter, option in items)
        letter = _optional_text(row, column_map, "answer_letter", where).strip().rstrip(".):").upper()
        if not letter:  # the answer may be the option's text: its letter is the answer
            letter = next((k for k, v in items if v.strip().lower() == answer.strip().lower()), "")
        if letter and not answer.upper().startswith(letter):
            answer = f"{letter}. {answer}" if answer.strip() and answer.strip().upper() != letter else letter
    reasoning = _optional_text(row, column_map, "reasoning", where) if include_reasoning else ""
    if reasoning:
        answer = f"<think>\n{reasoning.strip()}\n</think>\n{answer}"
    return [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]


def _option_items(value: Any) -> list[tuple[str, str]] | None:
    """Multiple-choice options as (letter, text) pairs: a {letter: text} object, or a list (A, B, ...)."""
    if isinstance(value, str):
        value = _parse_list_repr(value) or _json_object(value)
    if isinstance(value, dict) and value and all(re.fullmatch(r"[A-Za-z]", str(k)) for k in value):
        return [(str(k).upper(), str(v)) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]).upper())]
    if isinstance(value, list) and 2 <= len(value) <= 26 and all(isinstance(v, (str, int, float)) for v in value):
        return [(chr(ord("A") + i), str(v)) for i, v in enumerate(value)]
    return None


def _json_object(text: str) -> Any:
    text = text.strip()
    if not (text.startswith("{") and text.endswith("}")):
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


def _optional_text(row: dict, column_map: dict[str, str], role: str, where: str) -> str:
    """An optional role's text; a missing, null or blank cell is simply absent."""
    column = column_map.get(role)
    if not column:
        return ""
    raw = row.get(column)
    if raw is None:
        return ""
    text = cell_text(raw, column, where)
    return text if text.strip() else ""


def _normalise_chat(messages: Any, where: str, require_pair: bool = True) -> list[dict]:
    if not isinstance(messages, list) or not messages:
        raise DataError(f"{where}: messages must be a non-empty list of {{role, content}} objects")
    out: list[dict] = []
    calls_open = False  # a tool message must answer an assistant tool call
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise DataError(f"{where}: message {i} must be an object, got {type(message).__name__}")
        raw_role = message.get("role", message.get("from"))
        role = _ROLE_ALIASES.get(str(raw_role).lower()) if raw_role is not None else None
        if role is None:
            raise DataError(f"{where}: message {i} has role {short_repr(raw_role)}; use system, user, assistant or "
                            "tool (or ShareGPT's human/gpt/function_call/observation)")
        if role == "tool" and not calls_open:
            raise DataError(f"{where}: message {i} has role {short_repr(raw_role)} but no assistant tool call comes "
                            "before it; a tool result must follow the call it answers")
        converted = _convert_message(message, role, str(raw_role).lower(), i, where)
        if role == "assistant":
            calls_open = "tool_calls" in converted
        out.append(converted)
    if require_pair:
        roles = {m["role"] for m in out}
        if "user" not in roles or "assistant" not in roles:
            raise DataError(f"{where}: a conversation needs at least one user and one assistant message")
    return out


def _convert_message(message: dict, role: str, raw_role: str, i: int, where: str) -> dict:
    content = message.get("content", message.get("value"))
    calls = message.get("tool_calls") if role == "assistant" else None
    if raw_role == "function_call" and isinstance(content, str):
        calls = _sharegpt_call(content)
        content = None if calls else content  # the value is the call itself, spelled below
    if isinstance(content, list):
        content = _text_parts(content, i, where)
    if calls:
        # Keep the structured calls and also spell them out as text (Hermes/Qwen <tool_call>
        # tags), so a chat template that renders only `content` still trains and scores them.
        spelled = _tool_call_text(calls, i, where)
        if not (isinstance(content, str) and content.strip()):
            content = spelled
        elif spelled not in content:  # converted rows come back through here: spell the calls once
            content = f"{content}\n{spelled}"
    if content is None or isinstance(content, dict):
        raise DataError(f"{where}: message {i} ({role}) needs text content")
    out: dict[str, Any] = {"role": role, "content": str(content)}
    if calls:
        out["tool_calls"] = calls
    for key in ("tool_call_id", "name") if role == "tool" else ():
        if message.get(key) is not None:
            out[key] = message[key]
    return out


def _text_parts(parts: list, i: int, where: str) -> str:
    """OpenAI content as a list of parts: the text parts joined; any other part is refused."""
    texts = []
    for part in parts:
        if isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str):
            texts.append(part["text"])
        else:
            kind = part.get("type") if isinstance(part, dict) else type(part).__name__
            raise DataError(f"{where}: message {i} has a {short_repr(kind, 30)} content part; only text parts are read")
    return "\n".join(texts)


def _sharegpt_call(value: str) -> list[dict] | None:
    """A ShareGPT function_call turn (`{"name": …, "arguments": {…}}`) as OpenAI tool_calls."""
    try:
        call = json.loads(value)
    except (ValueError, RecursionError):  # not JSON, or nested past the parser's limit
        return None
    calls = call if isinstance(call, list) else [call]
    if too_deep(calls) or not all(isinstance(c, dict) and "name" in c for c in calls):
        return None
    return [{"type": "function", "function": {"name": c["name"], "arguments": json.dumps(c.get("arguments", {}))}}
            for c in calls]


def _tool_call_text(calls: Any, i: int, where: str) -> str:
    if not isinstance(calls, list):
        raise DataError(f"{where}: message {i} has tool_calls that are not a list")
    lines = []
    for call in calls:
        function = call.get("function", call) if isinstance(call, dict) else None
        if not isinstance(function, dict) or "name" not in function:
            raise DataError(f"{where}: message {i} has a tool call without a function name")
        arguments = function.get("arguments", {})
        if isinstance(arguments, str):  # OpenAI sends arguments as a JSON string
            with contextlib.suppress(ValueError, RecursionError):
                parsed = json.loads(arguments)
                arguments = arguments if too_deep(parsed) else parsed  # kept as the text it came as
        body = json.dumps({"name": function["name"], "arguments": arguments}, ensure_ascii=False)
        lines.append(f"<tool_call>\n{body}\n</tool_call>")
    return "\n".join(lines)
