"""Data recipes: marked negatives (NAT), preference pairs (DPO), and filtered synthetic rows.

Negatives teach a model what a wrong answer looks like, but only if it can tell them apart from
the right ones. So a negative never enters training unmarked:

* NAT (Wang et al. 2024, "Learning From Failure: Integrating Negative Examples when Fine-tuning
  Large Language Models as Agents"): a negative row's last user message ends with
  :data:`NEGATIVE_MARKER`, a fixed sentence on its own line. Positives are left exactly as they
  are, so the prompt used at inference (``tools/evaluate.prompt_of``: persona + the unchanged
  user turns) is the positive prompt. The paper's default is 2 negatives per positive.
* DPO: the wrong reply is the ``rejected`` side of a ``{prompt, chosen, rejected}`` pair, the
  conversational preference format TRL's ``DPOTrainer`` reads; the pair itself is the mark.

Everything here is pure: rows in, rows out, a seeded ``random.Random`` for every choice. The
optional LLM makers take an AutoGen ``ChatCompletionClient`` and are the only functions that
do I/O; their output goes through the same :func:`quality_filter` as the offline templates.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from .contracts import DataRecipe
from .control_tokens import neutralise
from .splits import normalize_prompt

Row = dict[str, Any]  # {"messages": [..., {"role": "user"}, {"role": "assistant"}]}

# The NAT marker: appended on its own line to the last user message of every negative row.
# Fixed and documented, so a reader of the train file (or a test) can check every negative has it.
NEGATIVE_MARKER = "[negative example] Answer this incorrectly."
DEFAULT_NAT_RATIO = 2.0  # negatives per positive, as in the NAT paper

# (the row whose reply is to be spoiled, all rows, rng) -> a wrong reply, or None when it cannot
NegativeMaker = Callable[[Row, Sequence[Row], random.Random], "str | None"]


# --------------------------------------------------------------------------- row helpers


def reply_of(row: Row) -> str:
    messages = row.get("messages")
    if not messages or messages[-1].get("role") != "assistant":
        raise ValueError(f"row {_short(row)} has no final assistant message: recipes need {{'messages': [..., "
                         "user, assistant]}} rows")
    return str(messages[-1]["content"])


def user_text(row: Row) -> str:
    return "\n".join(str(m["content"]) for m in row["messages"][:-1] if m["role"] == "user")


def is_marked(messages: Sequence[dict]) -> bool:
    """Whether any user turn carries the negative marker."""
    return any(m.get("role") == "user" and NEGATIVE_MARKER in str(m.get("content", "")) for m in messages)


def mark_negative(messages: Sequence[dict]) -> list[dict]:
    """The prompt messages with the marker appended to the last user turn."""
    out = [dict(m) for m in messages]
    for m in reversed(out):
        if m["role"] == "user":
            m["content"] = f"{m['content']}\n\n{NEGATIVE_MARKER}"
            return out
    raise ValueError("a negative needs a user message to carry the marker; this prompt has none")


def _short(row: Row) -> str:
    return json.dumps(row, ensure_ascii=False)[:120]


def _same(a: str, b: str) -> bool:
    return " ".join(a.split()) == " ".join(b.split())


# --------------------------------------------------------------------------- offline negative makers


def _shape(reply: str) -> tuple[str, ...]:
    """The reply's structure: its tags and call names. Prose replies all share the empty shape."""
    return tuple(re.findall(r"</?\w+>|\b\w+\(", reply))


def swap_reply(kind: Callable[[Row], Any] | None = None) -> NegativeMaker:
    """Another row's reply to the same kind of question: right format, wrong content.

    `kind` groups rows (default: the reply's tags and call names, so a tool call is swapped
    for another call of the same tool); with no other reply of that kind, any other reply is used.
    """
    key = kind or (lambda r: _shape(reply_of(r)))

    def make(row: Row, pool: Sequence[Row], rng: random.Random) -> str | None:
        own = reply_of(row)
        others = [reply_of(r) for r in pool if not _same(reply_of(r), own)]
        same_kind = [reply_of(r) for r in pool if key(r) == key(row) and not _same(reply_of(r), own)]
        choices = same_kind or others
        return rng.choice(choices) if choices else None

    return make


_NUMBER = re.compile(r"\d+")
_QUOTED = re.compile(r"\"([^\"]+)\"|'([^']+)'")


def corrupt_final(row: Row, pool: Sequence[Row], rng: random.Random) -> str | None:
    """The reply with its final answer changed: the last number altered (same digit count), or
    else the last quoted value replaced by one from another row."""
    reply = reply_of(row)
    numbers = list(_NUMBER.finditer(reply))
    if numbers:
        m = numbers[-1]
        digits = m.group()
        wrong = digits
        while wrong == digits:
            wrong = "".join(str(rng.randrange(10)) for _ in digits)
        return reply[: m.start()] + wrong + reply[m.end():]
    quoted = list(_QUOTED.finditer(reply))
    if quoted:
        m = quoted[-1]
        own = m.group(1) or m.group(2)
        values = {q.group(1) or q.group(2) for r in pool for q in _QUOTED.finditer(reply_of(r))} - {own}
        if values:
            value = rng.choice(sorted(values))
            quote = m.group()[0]
            return reply[: m.start()] + f"{quote}{value}{quote}" + reply[m.end():]
    return None


def truncate_reasoning(row: Row, pool: Sequence[Row], rng: random.Random) -> str | None:
    """The reply cut between 30% and 70% of its length, at a word boundary: unfinished reasoning."""
    reply = reply_of(row)
    if len(reply) < 20:
        return None
    cut = int(len(reply) * rng.uniform(0.3, 0.7))
    space = reply.rfind(" ", 0, cut)
    return reply[: space if space > 0 else cut].rstrip()


def shuffle_reasoning(row: Row, pool: Sequence[Row], rng: random.Random) -> str | None:
    """The reply's sentences (or lines) in another order: the steps no longer follow."""
    reply = reply_of(row)
    sep = "\n" if "\n" in reply.strip() else " "
    parts = [p for p in (reply.split("\n") if sep == "\n" else re.split(r"(?<=[.!?])\s+", reply)) if p.strip()]
    if len(parts) < 2:
        return None
    for _ in range(10):
        order = parts[:]
        rng.shuffle(order)
        if order != parts:
            return sep.join(order)
    return None


def mixed(*makers: NegativeMaker) -> NegativeMaker:
    """Try the makers in a random order; the first reply that differs from the true one wins."""

    def make(row: Row, pool: Sequence[Row], rng: random.Random) -> str | None:
        order = list(makers)
        rng.shuffle(order)
        for maker in order:
            wrong = maker(row, pool, rng)
            if wrong and not _same(wrong, reply_of(row)):
                return wrong
        return None

    return make


def default_maker() -> NegativeMaker:
    return mixed(swap_reply(), corrupt_final, truncate_reasoning, shuffle_reasoning)


def from_table(table: dict[str, str], fallback: NegativeMaker | None = None) -> NegativeMaker:
    """A maker that looks wrong replies up by prompt (see :func:`llm_negative_replies`)."""

    def make(row: Row, pool: Sequence[Row], rng: random.Random) -> str | None:
        wrong = table.get(_prompt_key(row))
        if wrong is None and fallback is not None:
            return fallback(row, pool, rng)
        return wrong

    return make


def users_rejected(fallback: NegativeMaker | None = None) -> NegativeMaker:
    """The row's own rejected reply (a preference dataset's), else `fallback`'s made-up one."""

    def make(row: Row, pool: Sequence[Row], rng: random.Random) -> str | None:
        wrong = row.get("rejected")
        if isinstance(wrong, str) and wrong.strip():
            return wrong
        return fallback(row, pool, rng) if fallback is not None else None

    return make


def _prompt_key(row: Row) -> str:
    return json.dumps(row["messages"][:-1], sort_keys=True, ensure_ascii=False)


# --------------------------------------------------------------------------- NAT and DPO


def nat_rows(rows: Sequence[Row], ratio: float = DEFAULT_NAT_RATIO, seed: int = 0,
             make_negative: NegativeMaker | None = None) -> list[Row]:
    """Each positive row unchanged, followed by about `ratio` marked negatives of it.

    A fractional ratio is met on average (1.5: every other positive gets a second negative).
    Negatives carry `"negative": true` and the marker; rows where no distinct wrong reply can be
    made simply get fewer negatives.
    """
    if ratio <= 0:
        raise ValueError(f"data.negative_ratio={ratio}: NAT needs at least some negatives per positive (paper: 2)")
    make = make_negative or default_maker()
    rng = random.Random(seed)
    out: list[Row] = []
    for row in rows:
        if is_marked(row["messages"]):
            raise ValueError(f"row {_short(row)} already contains the negative marker {NEGATIVE_MARKER!r}: "
                             "a positive must never look like a negative")
        reply = reply_of(row)
        out.append(row)
        wanted = math.floor(ratio) + (1 if rng.random() < ratio - math.floor(ratio) else 0)
        seen = {" ".join(reply.split())}
        for _ in range(wanted * 3):  # a few tries for distinct negatives
            if len(seen) > wanted:
                break
            wrong = make(row, rows, rng)
            if not wrong or " ".join(wrong.split()) in seen:
                continue
            seen.add(" ".join(wrong.split()))
            out.append({"messages": [*mark_negative(row["messages"][:-1]), {"role": "assistant", "content": wrong}],
                        "negative": True})
    return out


def dpo_pairs(rows: Sequence[Row], seed: int = 0, make_negative: NegativeMaker | None = None) -> list[Row]:
    """One `{prompt, chosen, rejected}` pair per row (conversational, as TRL's DPOTrainer reads).
    Rows where no distinct wrong reply can be made are left out."""
    make = make_negative or default_maker()
    rng = random.Random(seed)
    pairs = []
    for row in rows:
        reply = reply_of(row)
        wrong = make(row, rows, rng)
        if not wrong or _same(wrong, reply):
            continue
        pairs.append({"prompt": [dict(m) for m in row["messages"][:-1]],
                      "chosen": [{"role": "assistant", "content": reply}],
                      "rejected": [{"role": "assistant", "content": wrong}],
                      **({"synthetic": row["synthetic"]} if row.get("synthetic") else {})})
    return pairs


def apply_recipe(rows: Sequence[Row], recipe: DataRecipe, seed: int = 0,
                 make_negative: NegativeMaker | None = None, heldout: Sequence[Row] = (),
                 rephrased: Sequence[Row] | None = None,
                 ) -> tuple[str, list[Row], FilterReport | None]:
    """The training file's rows for a recipe: ("messages", rows) or ("pairs", DPO pairs), and the
    synthetic rows' filter report when the recipe asked for any.

    `max_rows` caps the positives before synthetic rows and negatives are made, so a probe attempt
    keeps them; dedup and the cap are applied again (by positives) in the train worker. Synthetic
    rows are positives: they get negatives like any other row. `rephrased`: the LLM's rewrites
    (:func:`llm_paraphrase_rows`), the candidates when `synthetic_source` is "llm"; the I/O that
    made them happened before, so this stays pure.
    """
    rows = list(rows[: recipe.max_rows] if recipe.max_rows else rows)
    if make_negative is None and any(row.get("rejected") for row in rows):
        make_negative = users_rejected(default_maker())  # the user's own pairs before any made-up reply
    report = None
    if recipe.synthetic_ratio:
        n = round(recipe.synthetic_ratio * len(rows))
        if recipe.synthetic_source == "llm":
            if rephrased is None:
                raise ValueError("data.synthetic_source='llm': no LLM rewrites were made for this run (offline?); "
                                 "use data.synthetic_source='template'")
            candidates = list(rephrased)
        else:
            candidates = template_rows(rows, n, seed)
        kept, report = quality_filter(candidates, train=rows, heldout=heldout)
        report.surplus = max(0, len(kept) - n)
        kept = kept[:n]
        report.kept = len(kept)
        rows += kept
    if recipe.negatives == "nat":
        return "messages", nat_rows(rows, recipe.negative_ratio or DEFAULT_NAT_RATIO, seed, make_negative), report
    if recipe.negatives == "dpo":
        pairs = dpo_pairs(rows, seed, make_negative)
        if not pairs:
            raise ValueError("data.negatives='dpo': no preference pair could be made from the training rows "
                             "(every reply is identical?); use method=lora")
        return "pairs", pairs, report
    return "messages", rows, report


# --------------------------------------------------------------------------- synthetic rows

# Wrappers that change how a request is phrased, not what it asks: the reply stays valid.
DEFAULT_TEMPLATES = ("Please, {prompt}", "{prompt}, thanks", "Quick one: {prompt}", "Hi! {prompt}",
                     "{prompt} please", "Can you help? {prompt}")


def template_rows(rows: Sequence[Row], n: int, seed: int = 0,
                  templates: Sequence[str] = DEFAULT_TEMPLATES) -> list[Row]:
    """`n` candidates: a row's last user message rephrased by a template, its reply unchanged.

    The templates must not change what is asked (a scenario whose replies depend on wording
    passes its own). Candidates still go through :func:`quality_filter`.
    """
    if not rows or n <= 0:
        return []
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        row = rng.choice(list(rows))
        template = rng.choice(list(templates))
        messages = [dict(m) for m in row["messages"]]
        last_user = max(i for i, m in enumerate(messages) if m["role"] == "user")
        messages[last_user]["content"] = template.format(prompt=messages[last_user]["content"])
        out.append({"messages": messages, "synthetic": "template"})
    return out


@dataclass
class FilterReport:
    """Why candidates were dropped: the Domain Expert reports these numbers with the data."""

    candidates: int = 0
    kept: int = 0
    duplicate: int = 0  # same normalised prompt as a training row or an earlier candidate
    leaked: int = 0  # same normalised prompt as a held-out row: would inflate the score
    too_short: int = 0
    too_long: int = 0
    bad_format: int = 0
    surplus: int = 0  # passed the filter but over the recipe's ratio (an LLM's rewrites are made for the largest)

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def quality_filter(
    candidates: Iterable[Row],
    *,
    train: Sequence[Row],
    heldout: Sequence[Row],
    min_length: int = 2,
    max_length: int = 2000,
    length_of: Callable[[str], int] = len,
    format_check: Callable[[str], bool] | None = None,
) -> tuple[list[Row], FilterReport]:
    """Keep candidates that are new, in bounds and well formed.

    Prompts are compared after :func:`tunecrew.tools.splits.normalize_prompt` against the training
    rows, the held-out rows (nothing may leak into training) and the candidates kept so far. A
    candidate that contains a held-out prompt of 3+ words (a templated paraphrase of it) counts as
    leaked too.
    `length_of` measures prompt + reply (chars by default; pass a tokenizer count for tokens).
    `format_check` is the scenario's test of a reply, e.g. its output contract.
    """
    seen = {normalize_prompt(user_text(r)) for r in train}
    held = {normalize_prompt(user_text(r)) for r in heldout}
    held_long = [h for h in held if len(h.split()) >= 3]
    report = FilterReport()
    kept: list[Row] = []
    for row in candidates:
        report.candidates += 1
        key = normalize_prompt(user_text(row))
        reply = reply_of(row)
        size = length_of(user_text(row) + "\n" + reply)
        if key in held or any(f" {h} " in f" {key} " for h in held_long):
            report.leaked += 1
        elif key in seen:
            report.duplicate += 1
        elif size < min_length:
            report.too_short += 1
        elif size > max_length:
            report.too_long += 1
        elif format_check is not None and not format_check(reply):
            report.bad_format += 1
        else:
            seen.add(key)
            kept.append(row)
    report.kept = len(kept)
    return kept, report


# --------------------------------------------------------------------------- LLM makers (I/O)

NEGATIVE_INSTRUCTION = (
    "You write plausible but WRONG answers for training a model to recognise mistakes. Given a request and "
    "its correct reply, write one reply in exactly the same format and style whose content is wrong (a wrong "
    "value, a wrong step, or a wrong conclusion). Output only that reply."
)
SYNTHETIC_INSTRUCTION = (
    "You write new training examples. Given example request/reply pairs, write {k} NEW pairs in the same "
    "domain, style and reply format, with different requests. Output one JSON object per line, with keys "
    "\"prompt\" and \"reply\", and nothing else."
)


PARAPHRASE_INSTRUCTION = (
    "You rewrite requests to teach a model the many ways people say the same thing. Rewrite the request "
    "below in {k} different ways a real user might type it: other verbs, idioms, word order and tone, the "
    "same meaning and the same intent. Keep every name, title, date, number and quoted value exactly as "
    "written. Output one rewrite per line and nothing else."
)
_LIST_MARK = re.compile(r"^\s*(?:[-*\u2022]|\d+[.)])\s*")


async def _complete(client: Any, system: str, user: str) -> str:
    from autogen_core.models import SystemMessage, UserMessage

    result = await client.create([SystemMessage(content=system), UserMessage(content=user, source="user")])
    return result.content if isinstance(result.content, str) else ""


async def llm_negative_replies(client: Any, rows: Sequence[Row], *, concurrency: int = 4) -> dict[str, str]:
    """Ask an LLM for one wrong reply per row; returns a table for :func:`from_table`. Replies that
    are empty or equal to the correct one are left out (the fallback maker covers those rows)."""
    gate = asyncio.Semaphore(concurrency)

    async def one(row: Row) -> tuple[str, str | None]:
        async with gate:
            text = await _complete(client, NEGATIVE_INSTRUCTION,
                                   f"Request:\n{user_text(row)}\n\nCorrect reply:\n{reply_of(row)}")
        text = neutralise(text.strip()).text  # an LLM's text is as untrusted as the data's (issue 16)
        return _prompt_key(row), (text if text and not _same(text, reply_of(row)) else None)

    answers = await asyncio.gather(*(one(r) for r in rows))
    return {key: wrong for key, wrong in answers if wrong}


async def llm_synthetic_rows(client: Any, examples: Sequence[Row], n: int, *, seed: int = 0,
                             per_call: int = 5, shots: int = 4) -> list[Row]:
    """Ask an LLM for about `n` new rows, `per_call` at a time, each call shown `shots` random
    examples. Lines that are not `{"prompt", "reply"}` JSON are skipped; filter the result with
    :func:`quality_filter` before training on it."""
    rng = random.Random(seed)
    out: list[Row] = []
    for _ in range(math.ceil(n / per_call)):
        sample = rng.sample(list(examples), min(shots, len(examples)))
        shown = "\n".join(json.dumps({"prompt": user_text(r), "reply": reply_of(r)}, ensure_ascii=False)
                          for r in sample)
        text = await _complete(client, SYNTHETIC_INSTRUCTION.format(k=per_call), shown)
        for line in text.splitlines():
            try:
                item = json.loads(line.strip())
            except ValueError:
                continue
            if isinstance(item, dict) and isinstance(item.get("prompt"), str) and isinstance(item.get("reply"), str):
                # Escaped like the data's own rows: no control token of the LLM's opens a turn (issue 16).
                out.append({"messages": [{"role": "user", "content": neutralise(item["prompt"]).text},
                                         {"role": "assistant", "content": neutralise(item["reply"]).text}],
                            "synthetic": "llm"})
    return out[:n]


def keeps_values(prompt: str, rewrite: str, reply: str) -> bool:
    """Whether a rewrite of `prompt` still says every value the reply takes from it: each quoted
    value of the reply (a tool argument: a title, a date, a priority) found in the prompt must be
    in the rewrite too, or the canonical reply no longer answers the rewritten request."""
    said, new = prompt.lower(), rewrite.lower()
    values = [a or b for a, b in _QUOTED.findall(reply)]
    return all(v.lower() in new for v in values if v.lower() in said)


def _rewrites(text: str) -> list[str]:
    """An LLM's lines, without list marks or wrapping quotes."""
    out = []
    for line in text.splitlines():
        line = _LIST_MARK.sub("", line).strip()
        if len(line) >= 2 and line[0] == line[-1] and line[0] in "\"'":
            line = line[1:-1].strip()
        if line:
            out.append(line)
    return out


async def llm_paraphrase_rows(client: Any, rows: Sequence[Row], n: int, *, seed: int = 0, per_call: int = 4,
                              concurrency: int = 4) -> list[Row]:
    """About `n` rows whose last request an LLM rewrote in other words, `per_call` rewrites of each
    of a seeded sample of rows; the reply is the row's own, so a rewrite that drops a value the
    reply uses (:func:`keeps_values`) is left out. Filter the result with :func:`quality_filter`."""
    if not rows or n <= 0:
        return []
    rng = random.Random(seed)
    pool = list(rows)
    sample = rng.sample(pool, min(len(pool), math.ceil(n / per_call)))
    gate = asyncio.Semaphore(concurrency)

    async def one(row: Row) -> list[Row]:
        async with gate:
            text = await _complete(client, PARAPHRASE_INSTRUCTION.format(k=per_call), user_text(row))
        out = []
        for line in _rewrites(text)[:per_call]:
            line = neutralise(line).text  # an LLM's text is as untrusted as the data's (issue 16)
            if _same(line, user_text(row)) or not keeps_values(user_text(row), line, reply_of(row)):
                continue
            messages = [dict(m) for m in row["messages"]]
            last_user = max(i for i, m in enumerate(messages) if m["role"] == "user")
            messages[last_user]["content"] = line
            out.append({"messages": messages, "synthetic": "llm"})
        return out

    batches = await asyncio.gather(*(one(r) for r in sample))
    return [row for batch in batches for row in batch][:n]
