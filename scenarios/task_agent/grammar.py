"""The reply contract as a grammar, for decoding that cannot leave it (tools/constrained.py).

A :class:`ReplyContract` becomes a Lark grammar (llguidance's dialect): the tags in their order,
only the whitelisted tools, each call with its required arguments and any of its optional ones
(under a name or an alias), each once, in any order; dates as YYYY-MM-DD with a year from 0001, a
month 01-12 and a day 01-31, and choice arguments as one of their values. Replies are rendered the way training
targets are (:func:`~.contract.format_action`: `k="v"` joined by `, `), and whitespace goes where the
parser skips it (before and between the tags, around the call and its `(`, `=`, `,` and `)`), so a
user's data that lays replies out over lines (`<analysis>\n…\n</analysis>\n\n<action>\n…`) decodes
in its own layout. What the grammar removes is what the parser would reject anyway (a tool the
contract does not have, prose outside the tags, a second action, a tag inside a value), and one
thing it would not: a `<` inside a quoted value, which is how a tag would start there.

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
# A double-quoted value with the parser's two escapes (\" and \\); no raw newline, and no "<": the
# parser reads a tag anywhere, so a value with "</analysis>" in it would end the reply's section.
_STRING = r'/"([^"\\\n<]|\\["\\])+"/'
# Where the parser skips whitespace; the canonical rendering writes only ", " between arguments.
_WS = r"/[ \t\r\n]+/"
_COMMA = '(WS? "," WS?)'
# A year from 0001 (the calendar has no year 0: four tuned replies a run wrote "0000-01-01"), a month
# 01-12, a day 01-31; the parser also checks the calendar (February 30th).
_YEAR = "([0-9]{3}[1-9]|[0-9]{2}[1-9][0-9]|[0-9][1-9][0-9]{2}|[1-9][0-9]{3})"
_DATE = r'/"' + _YEAR + r'-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"/'


MAX_ORDERINGS = 120
"""A tool's calls are spelled out as every order of every allowed set of its arguments (a required one
in each), so no call repeats or misses one; past this many orderings (most tools of 5 or more
arguments: 1 required and 4 optional make 261) it falls back to a list of any of its arguments, which
the parser then checks."""


def reply_grammar(contract: ReplyContract) -> str:
    """A Lark grammar whose sentences are the replies `contract` can accept (and a few it rejects:
    see the module docstring)."""
    head = "analysis WS? " if contract.analysis == "required" else "(analysis WS?)? "
    closing = ' (WS? "<final>" TEXT "</final>")?' if contract.final_after_action else ""
    # Rule names by position: Lark's rule names are lower-case, a contract's tool and argument names
    # need not be (getWeather).
    tools = list(contract.tools.items())
    lines = [
        f"start: WS? {head}(action | final) WS?",
        'analysis: "<analysis>" TEXT "</analysis>"',
        'final: "<final>" TEXT "</final>"',
        f'action: "<action>" WS? call WS? "</action>"{closing}',
        "call: " + " | ".join(f"call_{i}" for i in range(len(tools))),
    ]
    for i, (tool, spec) in enumerate(tools):
        rule = {name: f"arg_{i}_{j}" for j, name in enumerate(spec.allowed)}
        for name in spec.allowed:
            lines.append(f"{rule[name]}: {_argument(name, contract)}")
        orders = _orderings(spec.required, spec.optional)
        if orders is None:
            any_arg = "(" + " | ".join(rule.values()) + ")"
            body, optional = f"{any_arg} ({_COMMA} {any_arg})*", True
        else:
            spelled = [f" {_COMMA} ".join(rule[n] for n in order) for order in orders if order]
            body, optional = "(" + " | ".join(spelled) + ")", () in orders
        # One WS? between two tokens, never two in a row: the parser's ambiguity stays one token long.
        if not body or body == "()":
            inside = "WS?"
        elif optional:
            inside = f"WS? ({body} WS?)?"
        else:
            inside = f"WS? {body} WS?"
        lines.append(f'call_{i}: {json.dumps(tool)} WS? "(" {inside} ")"')
    lines += [f"TEXT: {_TEXT}", f"STRING: {_STRING}", f"DATE: {_DATE}", f"WS: {_WS}"]
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
    written = "(" + " | ".join(json.dumps(s) for s in spellings) + ")"
    if name == "due":
        value = "DATE"
    elif name != "title" and name in contract.choices:
        value = "(" + " | ".join(json.dumps(json.dumps(choice)) for choice in contract.choices[name]) + ")"
    else:
        value = "STRING"
    return f'{written} WS? "=" WS? {value}'
