"""The reply contract of the task-management agent: what a well-formed reply looks like.

A reply is exactly ``<analysis>…</analysis>`` followed by exactly one of
``<action>TOOL(k="v", …)</action>`` or ``<final>…</final>``, with nothing but whitespace around
the parts. The parser is the single judge of that shape: the dataset generator renders replies
with :func:`render_reply`, the metrics score model output with :func:`parse_reply`, so training
targets and scoring can never disagree about the format.

The parser never raises and never evaluates anything: model output is untrusted text, and an
invalid reply is a *result* (``kind="invalid"`` with an error that says what is wrong), not an
exception.

That shape, the tools and their arguments are one :class:`ReplyContract`. :data:`DEFAULT_CONTRACT`
is this scenario's own (the generator, the executor and the served agent use it); another project's
data declares its variants (`--contract FILE`, scenarios/task_agent/declared.py): an argument
alias such as ``due_date`` for ``due`` (normalised to the canonical name on parsing, so scoring
compares canonical arguments), ``<analysis>`` optional, a ``<final>`` after the ``<action>``.
"""

from __future__ import annotations

import datetime as _dt
import re
from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

MAX_REPLY_BYTES = 8192
"""Longer replies are invalid without being scanned: a runaway generation must not cost seconds."""

MAX_TITLE_CHARS = 200

PRIORITIES: tuple[str, ...] = ("low", "medium", "high")
STATUSES: tuple[str, ...] = ("open", "done", "all")

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _identifiers(names: tuple[str, ...] | list[str] | dict, what: str) -> None:
    for name in names:
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise ValueError(f"{what} {name!r} is not an identifier (letters, digits, underscore)")


class ToolSpec(BaseModel):
    """Argument names of one tool, in canonical order (required ones first)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    required: tuple[str, ...] = Field((), description="arguments every call must give")
    optional: tuple[str, ...] = Field((), description="arguments a call may give")

    @property
    def allowed(self) -> tuple[str, ...]:
        return self.required + self.optional

    @model_validator(mode="after")
    def _names(self) -> ToolSpec:
        _identifiers(self.allowed, "argument")
        twice = sorted({n for n in self.allowed if self.allowed.count(n) > 1})
        if twice:
            raise ValueError(f"argument {twice[0]!r} is listed twice (required and optional are one list)")
        return self


class ReplyContract(BaseModel):
    """What a well-formed reply is: its tools and their arguments, and the variants a project's data uses.

    Frozen: it is built once (the default, a `--contract` file, or inferred from the data) and passed
    to the parser; nothing changes it while replies are scored.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    tools: dict[str, ToolSpec] = Field(
        default_factory=lambda: {
            "add_task": ToolSpec(required=("title",), optional=("due", "priority")),
            "list_tasks": ToolSpec(optional=("status",)),
            "summarize_tasks": ToolSpec(),
            "complete_task": ToolSpec(required=("title",)),
            "delete_task": ToolSpec(required=("title",)),
        },
        description="the whitelist: a tool or argument not listed makes a reply invalid")
    aliases: dict[str, str] = Field(
        default_factory=dict,
        description="ALIAS: CANONICAL, e.g. due_date: due; a call may spell the argument either way and is read "
        "(and scored) under the canonical name, so `due_date=` in the data and `due=` from the model compare equal")
    analysis: Literal["required", "optional"] = Field(
        "required", description="optional: a reply may start straight with <action> or <final> (data whose "
        "conversational rows carry no <analysis>)")
    final_after_action: bool = Field(
        False, description="a reply may end with a <final> after its <action> (a confirmation line); only the "
        "action is scored")
    choices: dict[str, tuple[str, ...]] = Field(
        default_factory=lambda: {"priority": PRIORITIES, "status": STATUSES},
        description="argument -> the values it accepts, wherever it appears; an argument not listed takes any "
        "text, except `title` (non-empty, at most 200 characters) and `due` (an ISO date YYYY-MM-DD)")

    @field_validator("tools", mode="before")
    @classmethod
    def _no_arguments(cls, value: object) -> object:
        """`summarize_tasks:` with nothing after it (YAML null) is a tool without arguments."""
        if isinstance(value, dict):
            return {name: {} if spec is None else spec for name, spec in value.items()}
        return value

    @field_validator("tools")
    @classmethod
    def _tools(cls, value: dict[str, ToolSpec]) -> dict[str, ToolSpec]:
        if not value:
            raise ValueError("declare at least one tool")
        _identifiers(value, "tool")
        return value

    @field_validator("choices", mode="before")
    @classmethod
    def _over_default_choices(cls, value: object) -> object:
        """Declared choices add to (or replace, per argument) the default ones: declaring `priority`
        does not drop the check on `status`."""
        if isinstance(value, dict):
            return {"priority": PRIORITIES, "status": STATUSES, **value}
        return value

    @model_validator(mode="after")
    def _aliases_name_arguments(self) -> ReplyContract:
        arguments = {a for spec in self.tools.values() for a in spec.allowed}
        _identifiers(self.aliases, "alias")
        for alias, canonical in self.aliases.items():
            if canonical not in arguments:
                raise ValueError(f"alias {alias}: {canonical!r} is not an argument of any tool "
                                 f"(arguments: {', '.join(sorted(arguments))})")
            if alias in arguments:
                raise ValueError(f"alias {alias!r} is itself an argument name; an alias is another spelling")
        for name, values in self.choices.items():
            if not values:
                raise ValueError(f"choices {name}: give at least one value")
        return self

    def canonical(self, tool: str, name: str) -> str:
        """The argument `name` as `tool` declares it: an alias becomes its canonical name."""
        spec = self.tools.get(tool)
        target = self.aliases.get(name)
        if spec is None or name in spec.allowed or target is None or target not in spec.allowed:
            return name
        return target


ONE_LINE_INSTRUCTION = "Answer <analysis>…</analysis> then <action>tool(…)</action> or <final>…</final>."
"""The contract's shape without its tools: what the tuned model was prompted with before the tools went
into its system prompt (generated data until 016a51c, `--data` runs until the commit that added
`Scenario.data_instruction`). Kept as the other arm of `bench/lever_ab.py --instruction one-line`."""

DEFAULT_CONTRACT = ReplyContract()
"""This scenario's contract: the generator renders it, the executor and the served agent read it."""

TOOLS: dict[str, ToolSpec] = DEFAULT_CONTRACT.tools
"""The default whitelist: a tool or argument not listed here makes a reply invalid."""

TAGS: tuple[str, ...] = ("analysis", "action", "final")

# Anything that looks like one of our tags, including sloppy variants (`< Action >`, `</FINAL>`),
# so that a near-miss is reported as a malformed tag rather than as stray text.
_TAG_RE = re.compile(r"<\s*(/?)\s*(analysis|action|final)\s*>", re.IGNORECASE)
_DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}")
_IDENT_START = re.compile(r"[A-Za-z_]")
_IDENT_CHAR = re.compile(r"[A-Za-z0-9_]")


@dataclass(frozen=True)
class ParsedReply:
    """The outcome of parsing one reply; ``error`` is set exactly when ``kind == "invalid"``."""

    kind: Literal["action", "final", "invalid"]
    analysis: str | None = None
    tool: str | None = None
    args: dict[str, str] = field(default_factory=dict)
    final: str | None = None  # the answer of a final; with `final_after_action`, an action's closing line
    error: str | None = None
    aliased: tuple[str, ...] = ()  # argument names written as an alias (due_date), read as canonical: evidence


class _ReplyError(Exception):
    """Internal: carries the message of an invalid reply up to :func:`parse_reply`."""


def _clip(text: str, limit: int = 40) -> str:
    text = text.replace("\n", "\\n")
    return repr(text if len(text) <= limit else text[:limit] + "…")


# --------------------------------------------------------------------------- validation


def validate_action(tool: str, args: dict[str, str], contract: ReplyContract = DEFAULT_CONTRACT) -> str | None:
    """The reason `tool(**args)` breaks the whitelist, or None when it is allowed.

    Shared by the parser (model output) and the renderer (training targets), so a target the
    generator writes is valid by the same rules the model is scored on. `args` are canonical names.
    """
    spec = contract.tools.get(tool)
    if spec is None:
        return f"unknown tool {tool!r}; allowed tools: {', '.join(contract.tools)}"
    for name in args:
        if name not in spec.allowed:
            allowed = ", ".join(spec.allowed) or "no arguments"
            return f"unknown argument {name!r} for {tool}; allowed: {allowed}"
    for name in spec.required:
        if name not in args:
            return f"missing required argument {name!r} for {tool}"
    for name, value in args.items():
        problem = _value_problem(name, value, contract.choices)
        if problem:
            return f"{tool}: {problem}"
    return None


def _value_problem(name: str, value: str, choices: dict[str, tuple[str, ...]]) -> str | None:
    if not isinstance(value, str):
        return f"argument {name!r} must be a string, got {type(value).__name__}"
    if name == "title":
        if not value.strip():
            return "argument 'title' is empty"
        if len(value) > MAX_TITLE_CHARS:
            return f"argument 'title' is {len(value)} characters, over {MAX_TITLE_CHARS}"
    elif name == "due":
        if not _DATE_RE.fullmatch(value):
            return f"argument 'due' must be an ISO date YYYY-MM-DD, got {_clip(value)}"
        try:
            _dt.date.fromisoformat(value)
        except ValueError:
            return f"argument 'due' is not a real calendar date: {value!r}"
    elif name in choices and value not in choices[name]:
        return f"argument {name!r} must be one of {'|'.join(choices[name])}, got {_clip(value)}"
    return None


# --------------------------------------------------------------------------- parsing


def parse_reply(text: str, contract: ReplyContract = DEFAULT_CONTRACT) -> ParsedReply:
    """Parse one reply under `contract`. Never raises: anything off-contract comes back as ``kind="invalid"``."""
    if not isinstance(text, str):
        return ParsedReply(kind="invalid", error=f"reply must be a string, got {type(text).__name__}")
    size = len(text.encode("utf-8", errors="replace"))
    if size > MAX_REPLY_BYTES:
        return ParsedReply(kind="invalid", error=f"reply is {size} bytes, over the {MAX_REPLY_BYTES}-byte limit")
    try:
        return _parse(text, contract)
    except _ReplyError as exc:
        return ParsedReply(kind="invalid", error=str(exc))


def could_still_parse(prefix: str, contract: ReplyContract = DEFAULT_CONTRACT) -> bool:
    """False once no continuation of a partial reply can parse: what comes before its first tag is
    neither whitespace nor the start of a tag a reply may open with. Evaluation stops generating such
    a reply there, so an untuned model's prose costs a token, not the whole generation budget.
    Only the opening is checked: False means `parse_reply` rejects the reply whatever follows
    (tests/test_contract.py checks it), True promises nothing."""
    head = prefix.lstrip()
    openers = ("<analysis>", "<action>", "<final>") if contract.analysis == "optional" else ("<analysis>",)
    return any(head.startswith(tag) or tag.startswith(head) for tag in openers)


def _parse(text: str, contract: ReplyContract) -> ParsedReply:
    tags = list(_TAG_RE.finditer(text))
    for tag in tags:
        if tag.group(0) not in _CANONICAL_TAGS:
            raise _ReplyError(f"malformed tag {tag.group(0)!r}; write tags exactly as <analysis>, <action>, <final>")
    optional = contract.analysis == "optional"
    if not tags:
        raise _ReplyError("missing <action>…</action> or <final>…</final>" if optional
                          else "missing <analysis>…</analysis>: a reply starts with <analysis>")

    # 1. <analysis> first (unless the contract makes it optional), with nothing but whitespace before it.
    lead = text[: tags[0].start()]
    first = "<analysis>, <action> or <final>" if optional else "<analysis>"
    if lead.strip():
        raise _ReplyError(f"text before the first tag: {_clip(lead.strip())}; a reply starts with {first}")
    analysis = None
    if tags[0].group(0) == "<analysis>":
        analysis = _section(text, tags, 0, "analysis")
        tags_after, where = tags[2:], "</analysis>"
    elif optional:
        tags_after, where = tags, "the start"
    else:
        raise _ReplyError(f"a reply starts with <analysis>, found {tags[0].group(0)}")

    # 2. exactly one <action> or <final> after it.
    if not tags_after:
        rest = text[tags[1].end():].strip() if analysis is not None else ""
        found = f" (found text {_clip(rest)})" if rest else ""
        raise _ReplyError(f"missing <action>…</action> or <final>…</final> after </analysis>{found}")
    if analysis is not None:
        between = text[tags[1].end(): tags_after[0].start()]
        if between.strip():
            raise _ReplyError(f"text between </analysis> and {tags_after[0].group(0)}: {_clip(between.strip())}")
    opener = tags_after[0].group(0)
    if opener not in ("<action>", "<final>"):
        raise _ReplyError(f"expected <action> or <final> after {where}, found {opener}")
    name = opener[1:-1]
    body = _section(text, tags_after, 0, name)
    closing = None
    rest_tags = tags_after[2:]
    if name == "action" and contract.final_after_action and rest_tags and rest_tags[0].group(0) == "<final>":
        between = text[tags_after[1].end(): rest_tags[0].start()]
        if between.strip():
            raise _ReplyError(f"text between </action> and <final>: {_clip(between.strip())}")
        closing = _section(text, rest_tags, 0, "final")
        name, last, rest_tags = "final", rest_tags[1], rest_tags[2:]
    else:
        last = tags_after[1]

    # 3. nothing after it.
    if rest_tags:
        raise _ReplyError(
            f"extra {rest_tags[0].group(0)} after </{name}>: a reply has exactly one <action> or <final>"
        )
    trailing = text[last.end():]
    if trailing.strip():
        raise _ReplyError(f"trailing text after </{name}>: {_clip(trailing.strip())}")

    if closing is None and opener == "<final>":
        if not body.strip():
            raise _ReplyError("empty <final>: write the answer to the user inside it")
        return ParsedReply(kind="final", analysis=analysis, final=body.strip())
    if closing is not None and not closing.strip():
        raise _ReplyError("empty <final> after </action>: write the line to the user inside it, or leave it out")
    tool, written = _parse_call(body, contract)
    args, aliased = _canonical_args(tool, written, contract)
    problem = validate_action(tool, args, contract)
    if problem:
        raise _ReplyError(problem)
    return ParsedReply(kind="action", analysis=analysis, tool=tool, args=args, final=closing, aliased=aliased)


def _canonical_args(tool: str, written: dict[str, str], contract: ReplyContract) -> tuple[dict[str, str],
                                                                                          tuple[str, ...]]:
    """The arguments under their canonical names, and the alias names that were written."""
    if not contract.aliases:
        return written, ()
    args: dict[str, str] = {}
    spelled: dict[str, str] = {}
    for name, value in written.items():
        canonical = contract.canonical(tool, name)
        if canonical in args:
            raise _ReplyError(f"argument {canonical!r} is given twice, as {spelled[canonical]!r} and {name!r}")
        args[canonical], spelled[canonical] = value, name
    return args, tuple(name for canonical, name in spelled.items() if name != canonical)


_CANONICAL_TAGS = frozenset(f"<{t}>" for t in TAGS) | frozenset(f"</{t}>" for t in TAGS)


def _section(text: str, tags: list[re.Match[str]], i: int, name: str) -> str:
    """Content between tags[i] (the opener of `name`) and tags[i+1], which must be its closer."""
    if i + 1 >= len(tags):
        raise _ReplyError(f"unclosed <{name}>: add </{name}>")
    closer = tags[i + 1].group(0)
    if closer != f"</{name}>":
        if not closer.startswith("</"):
            raise _ReplyError(f"nested tag {closer} inside <{name}>: close </{name}> first")
        raise _ReplyError(f"<{name}> closed by {closer}: expected </{name}>")
    content = text[tags[i].end(): tags[i + 1].start()]
    if name == "analysis" and not content.strip():
        raise _ReplyError("empty <analysis>: say in one sentence what the user wants")
    return content.strip()


def _parse_call(body: str, contract: ReplyContract) -> tuple[str, dict[str, str]]:
    """`TOOL(k="v", k2="v2")` -> (tool, args). A hand tokenizer: only `\\"` and `\\\\` escapes."""
    s = body.strip()
    pos = 0

    def fail(msg: str) -> _ReplyError:
        return _ReplyError(f"bad action at character {pos + 1} of {_clip(s)}: {msg}")

    def skip_ws() -> None:
        nonlocal pos
        while pos < len(s) and s[pos].isspace():
            pos += 1

    def ident(what: str) -> str:
        nonlocal pos
        if pos >= len(s) or not _IDENT_START.match(s[pos]):
            raise fail(f"expected {what}")
        start = pos
        while pos < len(s) and _IDENT_CHAR.match(s[pos]):
            pos += 1
        return s[start:pos]

    if not s:
        raise _ReplyError('empty <action>: write TOOL(arg="value")')
    tool = ident("a tool name")
    if tool not in contract.tools:  # say so before any syntax complaint about what follows
        raise _ReplyError(f"unknown tool {tool!r}; allowed tools: {', '.join(contract.tools)}")
    skip_ws()
    if pos >= len(s) or s[pos] != "(":
        raise fail(f"expected '(' after {tool}; write {tool}(...)")
    pos += 1
    args: dict[str, str] = {}
    skip_ws()
    if pos < len(s) and s[pos] == ")":
        pos += 1
    else:
        while True:
            skip_ws()
            name = ident("an argument name")
            skip_ws()
            if pos >= len(s) or s[pos] != "=":
                raise fail(f"expected '=' after argument {name!r}")
            pos += 1
            skip_ws()
            if pos >= len(s) or s[pos] != '"':
                raise fail(f'argument {name!r} needs a double-quoted value, e.g. {name}="..."')
            pos += 1
            chars: list[str] = []
            while True:
                if pos >= len(s):
                    raise fail(f"unterminated string for argument {name!r}")
                c = s[pos]
                if c == "\\":
                    nxt = s[pos + 1] if pos + 1 < len(s) else ""
                    if nxt not in ('"', "\\"):
                        raise fail(f"unsupported escape '\\{nxt}' in {name!r}; only \\\" and \\\\ are allowed")
                    chars.append(nxt)
                    pos += 2
                    continue
                if c == '"':
                    pos += 1
                    break
                chars.append(c)
                pos += 1
            if name in args:
                raise fail(f"duplicate argument {name!r}")
            args[name] = "".join(chars)
            skip_ws()
            if pos < len(s) and s[pos] == ",":
                pos += 1
                continue
            if pos < len(s) and s[pos] == ")":
                pos += 1
                break
            raise fail("expected ',' or ')' after an argument value")
    skip_ws()
    if pos != len(s):
        raise fail(f"unexpected text after the closing ')': {_clip(s[pos:])}")
    return tool, args


# --------------------------------------------------------------------------- rendering


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def format_action(tool: str, args: dict[str, str]) -> str:
    """Canonical `tool(k="v", k2="v2")`, args in the order given, values escaped.

    Does not check the whitelist (negative samples may need an unknown tool); it does refuse
    names the parser could never read back.
    """
    for name in (tool, *args):
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise ValueError(f"format_action: {name!r} is not an identifier (letters, digits, underscore)")
    for name, value in args.items():
        if not isinstance(value, str):
            raise ValueError(f"format_action: argument {name!r} must be a string, got {type(value).__name__}")
    return f"{tool}(" + ", ".join(f"{k}={_quote(v)}" for k, v in args.items()) + ")"


def render_reply(
    analysis: str,
    tool: str | None = None,
    args: dict[str, str] | None = None,
    final: str | None = None,
) -> str:
    """The canonical reply string, with no whitespace between parts.

    Raises ValueError for anything :func:`parse_reply` would reject, so a training target can
    never be off-contract.
    """
    if (tool is None) == (final is None):
        raise ValueError("render_reply: give exactly one of tool= (an action) or final= (an answer)")
    if final is None and args is None:
        args = {}
    if tool is None and args:
        raise ValueError("render_reply: args= only goes with tool=")
    parts = [("analysis", analysis)] + ([("final", final)] if final is not None else [])
    parts += [(f"argument {k!r}", v) for k, v in (args or {}).items() if isinstance(v, str)]
    for what, text in parts:
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"render_reply: {what} must be a non-empty string")
        tag = _TAG_RE.search(text)
        if tag:
            raise ValueError(f"render_reply: {what} contains the tag {tag.group(0)!r}, which would nest tags")
    if tool is not None:
        problem = validate_action(tool, args or {})
        if problem:
            raise ValueError(f"render_reply: {problem}")
        reply = f"<analysis>{analysis.strip()}</analysis><action>{format_action(tool, args or {})}</action>"
    else:
        assert final is not None  # exactly one of tool= and final= is given (checked above)
        reply = f"<analysis>{analysis.strip()}</analysis><final>{final.strip()}</final>"
    size = len(reply.encode("utf-8"))
    if size > MAX_REPLY_BYTES:
        raise ValueError(f"render_reply: reply is {size} bytes, over the {MAX_REPLY_BYTES}-byte limit")
    return reply
