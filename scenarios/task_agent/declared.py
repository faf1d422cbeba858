"""A task agent's reply contract as a project declares it (`--contract FILE`) or as its data shows it.

A contract file is YAML (or JSON) with the keys of :class:`~.contract.ReplyContract`; every key may
be left out and then keeps the task agent's default::

    analysis: optional            # rows may answer without <analysis>
    aliases: {due_date: due}      # add_task(due_date="2026-01-20") reads as due=
    tools:                        # the whitelist, replacing the default one
      add_task: {required: [title], optional: [due, priority]}
      list_tasks: {optional: [status]}
      summarize_tasks: {}

A file that cannot be used is one line naming it and the key (an unknown key lists the known ones).

Without a file, :func:`infer_contract` reads the references: it widens the default contract by the
variants it knows (:data:`KNOWN_ALIASES`, `<analysis>` optional, a `<final>` after the `<action>`)
and keeps only those the data uses, with the counts as evidence. It never invents a tool or an
argument: a reference that needs one stays off-contract and is counted, and the note says how to
declare it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from tunecrew.tools.rows import DataError
from tunecrew.tools.yaml_file import YamlFileError, load_yaml_file

from .contract import DEFAULT_CONTRACT, ReplyContract, parse_reply

__all__ = ["KNOWN_ALIASES", "ContractError", "Inference", "declaration", "infer_contract", "load_contract",
           "prompt_line"]

KNOWN_ALIASES: dict[str, str] = {"due_date": "due", "deadline": "due"}
"""Spellings of a default argument seen in other task-agent projects (llama-task-agent writes
`due_date=`). Inference adds one only when the data uses it."""


class ContractError(DataError):
    """A contract file that cannot be used; the message names the file and the key."""


def load_contract(path: str | Path) -> ReplyContract:
    """The contract a YAML or JSON file declares; ContractError (one line) when it cannot be used."""
    where = str(path)
    try:
        data = load_yaml_file(path, "contract file", "--contract takes a YAML or JSON file")
    except YamlFileError as exc:
        raise ContractError(str(exc)) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ContractError(f"{where}: the top level must be a mapping (tools: ..., aliases: ..., analysis: ...), "
                            f"not a {type(data).__name__}")
    try:
        return ReplyContract.model_validate(data)
    except ValidationError as exc:
        raise ContractError(f"{where}: {_first_error(exc, data)}") from None


def _first_error(exc: ValidationError, data: dict) -> str:
    """The first problem as `key.path: what is wrong`, with the known keys for an unknown one."""
    err = exc.errors()[0]
    loc = [str(p) for p in err["loc"]]
    message = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        known = _known_keys(loc[:-1])
        at = ".".join(loc[:-1])
        return f"{at + ': ' if at else ''}unknown key {loc[-1]!r} (known: {', '.join(known)})"
    if not loc:
        return message
    if err["type"] == "value_error":  # our validators' messages name the value themselves
        return f"{'.'.join(loc)}: {message}"
    return f"{'.'.join(loc)}: {_short(err.get('input'))} {message.replace('Input should', 'should', 1)}"


def _known_keys(parent: list[str]) -> list[str]:
    if not parent:
        return list(ReplyContract.model_fields)
    if parent[0] == "tools" and len(parent) == 2:
        return ["required", "optional"]
    return []


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:60] + "…"


@dataclass(frozen=True)
class Inference:
    """The contract the references keep and why: the evidence goes into the run's notes."""

    contract: ReplyContract
    evidence: str  # counts of each variant, e.g. "due_date= for due in 128, no <analysis> in 80 of 355 references"
    variants: tuple[str, ...]  # short names of the variants found; empty: the base contract fits as it is


def infer_contract(references: Sequence[str], base: ReplyContract = DEFAULT_CONTRACT) -> Inference:
    """`base` widened by the known variants that `references` use, and nothing else."""
    known = {a: c for a, c in KNOWN_ALIASES.items()
             if a not in base.aliases and any(c in spec.allowed and a not in spec.allowed
                                              for spec in base.tools.values())}
    widest = _with(base, aliases={**known, **base.aliases}, analysis="optional", final_after_action=True)
    parsed = [parse_reply(r, widest) for r in references]
    kept = [p for p in parsed if p.kind != "invalid"]
    aliases = Counter(a for p in kept for a in set(p.aliased) if a in known)
    bare = sum(p.analysis is None for p in kept) if base.analysis == "required" else 0
    closing = sum(p.kind == "action" and p.final is not None for p in kept) if not base.final_after_action else 0
    n = len(references)
    found = [(f"{a}= for {known[a]} in {count}", f"alias {a}") for a, count in sorted(aliases.items())]
    if bare:
        found.append((f"no <analysis> in {bare}", "analysis optional"))
    if closing:
        found.append((f"<final> after </action> in {closing}", "final after action"))
    contract = _with(base, aliases={**base.aliases, **{a: known[a] for a in aliases}},
                     analysis="optional" if bare else base.analysis,
                     final_after_action=base.final_after_action or closing > 0)
    evidence = (", ".join(text for text, _ in found) + f" of {n} references" if found
                else f"all {n} references keep the default contract")
    return Inference(contract=contract, evidence=evidence, variants=tuple(name for _, name in found))


def _with(base: ReplyContract, **changes: Any) -> ReplyContract:
    """`base` with `changes`, validated (model_copy would skip the checks)."""
    return ReplyContract.model_validate({**base.model_dump(), **changes})


def declaration(contract: ReplyContract, base: ReplyContract = DEFAULT_CONTRACT) -> str:
    """The keys of a contract file that declare `contract` over `base`, in one line of flow YAML."""
    import yaml

    ours, theirs = contract.model_dump(mode="json"), base.model_dump(mode="json")
    changed = {k: v for k, v in ours.items() if v != theirs[k]}
    if not changed:
        return "{}"
    return " ".join(yaml.safe_dump(changed, default_flow_style=True, sort_keys=False).split())


def prompt_line(contract: ReplyContract) -> str:
    """The contract spelled out, tools and arguments: a `--data` run's system prompt instruction for
    the tuned model and the prompt-only baseline, like the task agent's own CONTRACT line."""
    def argument(tool_required: tuple[str, ...], name: str) -> str:
        if name in contract.choices:
            return f'{name}="{"|".join(contract.choices[name])}"'
        if name == "due":
            return 'due="YYYY-MM-DD"'
        return name if name in tool_required else f'{name}="..."'

    tools = ", ".join(f"{tool}({', '.join(argument(spec.required, a) for a in spec.allowed)})"
                      for tool, spec in contract.tools.items())
    analysis = ("<analysis>one sentence</analysis> then " if contract.analysis == "required"
                else "optionally <analysis>one sentence</analysis>, then ")
    closing = " (optionally followed by <final>short reply</final>)" if contract.final_after_action else ""
    return (f'Reply as {analysis}<action>TOOL(arg="value", ...)</action>{closing} or <final>short reply</final>. '
            f"Tools: {tools}.")
