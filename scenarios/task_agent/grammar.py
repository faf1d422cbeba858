"""The reply contract as a grammar, for decoding that cannot leave it (tools/constrained.py).

A :class:`ReplyContract` becomes a Lark grammar (llguidance's dialect): the tags in their order,
only the whitelisted tools, only each tool's argument names (and their aliases), dates as
YYYY-MM-DD and choice arguments as one of their values. Replies are rendered the way training
targets are (:func:`~.contract.format_action`: `k="v"` joined by `, `), so a tuned model's own
output is never bent; what the grammar removes is what the parser would reject anyway: a tool the
contract does not have, prose outside the tags, a second action.

The grammar is a superset check, not the judge: a call that misses a required argument or repeats
one still decodes and is still rejected by :func:`~.contract.parse_reply`, which scores every reply.
"""

from __future__ import annotations

import json

from .contract import ReplyContract

# Text inside <analysis> and <final>: not blank (the parser rejects an empty one), and no "<": a reply
# never nests tags.
_TEXT = r"/[^<]*[^<\s][^<]*/"
# A double-quoted value with the parser's two escapes (\" and \\); no raw newline.
_STRING = r'/"([^"\\\n]|\\["\\])+"/'
_DATE = r'/"[0-9]{4}-[0-9]{2}-[0-9]{2}"/'


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
        names = list(spec.allowed) + [alias for alias, target in contract.aliases.items() if target in spec.allowed]
        if not names:
            lines.append(f'call_{tool}: {json.dumps(tool + "()")}')
            continue
        lines.append(f'call_{tool}: {json.dumps(tool + "(")} (arg_{tool} (", " arg_{tool})*)? ")"')
        lines.append(f"arg_{tool}: " + " | ".join(_argument(name, contract.aliases.get(name, name), contract)
                                                  for name in names))
    lines += [f"TEXT: {_TEXT}", f"STRING: {_STRING}", f"DATE: {_DATE}"]
    return "\n".join(lines) + "\n"


def _argument(written: str, canonical: str, contract: ReplyContract) -> str:
    """`name="value"`, the value shaped as the parser checks `canonical` (see contract._value_problem)."""
    if canonical == "due":
        value = "DATE"
    elif canonical != "title" and canonical in contract.choices:
        value = "(" + " | ".join(json.dumps(json.dumps(choice)) for choice in contract.choices[canonical]) + ")"
    else:
        value = "STRING"
    return f"{json.dumps(written + '=')} {value}"
