"""The reply contract as a grammar, for decoding that cannot leave it (tools/constrained.py).

A :class:`ReplyContract` becomes a Lark grammar (llguidance's dialect): the tags in their order,
only the whitelisted tools, each call with its required arguments and any of its optional ones
(under a name or an alias), each once, in any order; dates as YYYY-MM-DD with a month 01-12 and a
day 01-31, and choice arguments as one of their values. Replies are rendered the way training
targets are (:func:`~.contract.format_action`: `k="v"` joined by `, `), so a tuned model's own
output is never bent; what the grammar removes is what the parser would reject anyway: a tool the
contract does not have, prose outside the tags, a second action.

The grammar is a superset check, not the judge: February 30th, a 201-character title, or (past
MAX_ORDERINGS) a repeated argument still decode and are still rejected by
:func:`~.contract.parse_reply`, which scores every reply.
"""

from __future__ import annotations

import json
from itertools import combinations, permutations
from math import factorial

from .contract import ReplyContract

# Text inside <analysis> and <final>: not blank (the parser rejects an empty one), and no "<": a reply
# never nests tags.
_TEXT = r"/[^<]*[^<\s][^<]*/"
# A double-quoted value with the parser's two escapes (\" and \\); no raw newline.
_STRING = r'/"([^"\\\n]|\\["\\])+"/'
_DATE = r'/"[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"/'  # the parser also checks the calendar


MAX_ORDERINGS = 120
"""A tool's calls are spelled out as every order of every allowed set of its arguments (a required one
in each), so no call repeats or misses one; past this many orderings (most tools of 5 or more
arguments: 1 required and 4 optional make 261) it falls back to a list of any of its arguments, which
the parser then checks."""


def reply_grammar(contract: ReplyContract) -> str:
    """A Lark grammar whose sentences are the replies `contract` can accept (and a few it rejects:
    see the module docstring)."""
    head = "analysis " if contract.analysis == "required" else "analysis? "
    closing = ' ("<final>" TEXT "</final>")?' if contract.final_after_action else ""
    lines = [
        f"start: {head}(action | final)",
        'analysis: "<analysis>" TEXT "</analysis>"',
        'final: "<final>" TEXT "</final>"',
        f'action: "<action>" call "</action>"{closing}',
        "call: " + " | ".join(f"call_{tool}" for tool in contract.tools),
    ]
    for tool, spec in contract.tools.items():
        rule = {name: f"arg_{tool}_{name}" for name in spec.allowed}
        for name in spec.allowed:
            lines.append(f"{rule[name]}: {_argument(name, contract)}")
        orders = _orderings(spec.required, spec.optional)
        if orders is None:
            any_arg = "(" + " | ".join(rule.values()) + ")"
            body = f'({any_arg} (", " {any_arg})*)?'
        else:
            spelled = [' ", " '.join(rule[n] for n in order) for order in orders if order]
            body = ("(" + " | ".join(spelled) + ")" + ("?" if () in orders else "")) if spelled else ""
        lines.append(f"call_{tool}: {json.dumps(tool + '(')} {body} \")\"".replace("  ", " "))
    lines += [f"TEXT: {_TEXT}", f"STRING: {_STRING}", f"DATE: {_DATE}"]
    return "\n".join(lines) + "\n"


def _orderings(required: tuple[str, ...], optional: tuple[str, ...]) -> list[tuple[str, ...]] | None:
    """Every order of the required arguments plus any subset of the optional ones; None past MAX_ORDERINGS."""
    sets = [required + chosen for k in range(len(optional) + 1) for chosen in combinations(optional, k)]
    if sum(factorial(len(s)) for s in sets) > MAX_ORDERINGS:
        return None
    return [order for s in sets for order in permutations(s)]


def _argument(name: str, contract: ReplyContract) -> str:
    """`name="value"` (or an alias of `name`), the value shaped as the parser checks it (see
    contract._value_problem)."""
    spellings = [name] + [alias for alias, target in contract.aliases.items() if target == name]
    written = "(" + " | ".join(json.dumps(s + "=") for s in spellings) + ")"
    if name == "due":
        value = "DATE"
    elif name != "title" and name in contract.choices:
        value = "(" + " | ".join(json.dumps(json.dumps(choice)) for choice in contract.choices[name]) + ")"
    else:
        value = "STRING"
    return f"{written} {value}"
