"""Deterministic synthetic dataset for the task-management agent.

Each row is one user message and one canonical reply (see :mod:`.contract`). The held-out split
is built to measure generalisation, not recall:

* every held-out task title comes from a title pool that training never uses, in both groups;
* ``trained_phrasing`` rows use the training templates, ``novel_phrasing`` rows use a disjoint
  template pool that training never sees;
* no held-out prompt equals (or near-equals, after normalisation) a training prompt.

Replies are deliberately short (one canonical analysis sentence that names the key value, then
the action): the smallest model in the benchmark has a few million parameters and a couple of
CPU minutes to learn the format.
"""

from __future__ import annotations

import collections
import datetime as _dt
import random
from dataclasses import dataclass
from pathlib import Path

from tunecrew.scenarios.task_agent.contract import PRIORITIES, parse_reply, render_reply
from tunecrew.tools.rows import write_jsonl
from tunecrew.tools.splits import normalize_prompt

# --------------------------------------------------------------------------- pools

_OBJECTS: dict[str, tuple[str, ...]] = {
    "buy": ("milk", "bread", "eggs", "coffee beans", "a birthday gift", "printer ink", "dog food",
            "new shoes", "train tickets", "batteries", "a phone charger", "olive oil"),
    "call": ("mom", "the dentist", "the plumber", "the bank", "grandma", "the landlord",
             "the insurance company", "the electrician", "uncle joe", "the vet"),
    "email": ("the team", "my manager", "the recruiter", "the school", "the accountant", "the client",
              "professor lee"),
    "fix": ("the bike", "the leaking tap", "the garden fence", "the login bug", "the car radio",
            "the squeaky door", "the broken lamp"),
    "book": ("a flight", "a hotel", "a haircut", "a table for two", "a doctor appointment",
             "the conference room", "a massage"),
    "pay": ("the rent", "the electricity bill", "the phone bill", "the parking fine", "the credit card",
            "the water bill", "the gym fee"),
    "clean": ("the garage", "the kitchen", "the windows", "the fridge", "the bathroom", "the oven",
              "the car"),
    "write": ("the report", "a thank-you note", "the blog post", "the project proposal", "the newsletter",
              "the meeting notes"),
    "review": ("the contract", "the pull request", "the budget", "the slides", "the lease",
               "the test plan"),
    "plan": ("the team offsite", "the birthday party", "the vacation", "the weekly menu",
             "the garden layout", "the road trip"),
    "renew": ("the passport", "the gym membership", "the car insurance", "the library books",
              "the domain name", "the driving licence"),
    "send": ("the invoice", "the package", "the birthday card", "the signed form", "the photos"),
    "prepare": ("the presentation", "the tax return", "the lunch boxes", "the guest room",
                "the quarterly report"),
    "organize": ("the closet", "the photo album", "the desk", "the bookshelf", "the spice rack"),
    "schedule": ("the team meeting", "the car service", "the vet visit", "the eye exam",
                 "the piano lesson"),
    "update": ("the resume", "the website", "the budget spreadsheet", "the linkedin profile",
               "the wiki page"),
    "water": ("the plants", "the herb garden", "the lawn"),
    "return": ("the rental car", "the borrowed ladder", "the online order"),
}
ALL_TITLES: tuple[str, ...] = tuple(f"{verb} {obj}" for verb, objs in _OBJECTS.items() for obj in objs)

_NAMES = ("alice", "bob", "carmen", "dmitri", "elena", "farid", "grace", "hiro", "ines", "jamal", "kofi",
          "lena", "marco", "nadia", "omar", "priya", "quinn", "rosa", "sven", "tara", "umar", "vera",
          "wei", "ximena", "yusuf", "zoe", "amara", "bruno", "chloe", "diego")

_SLOT_VALUES: dict[str, tuple[str, ...]] = {
    "hi": ("hi", "hello", "hey", "hiya", "howdy"),
    "tod": ("morning", "afternoon", "evening"),
    "when": ("today", "now", "tonight", "this morning", "the moment", "this week"),
    "help": ("the help", "your help", "sorting that out", "the reminder", "the summary", "the list",
             "keeping track"),
    "bye": ("bye", "see you later", "talk soon", "catch you later", "have a good one"),
    "city": ("paris", "tokyo", "lima", "cairo", "oslo", "denver", "mumbai", "sydney", "toronto", "madrid"),
    "sport": ("football", "basketball", "hockey", "cricket", "baseball", "rugby"),
    "thing": ("cats", "the ocean", "pirates", "robots", "winter", "coffee", "dinosaurs", "the moon"),
    "country": ("peru", "kenya", "norway", "vietnam", "chile", "canada", "egypt", "portugal", "nepal"),
    "phrase": ("good morning", "thank you", "where is the station", "i am hungry", "see you soon"),
    "lang": ("french", "spanish", "german", "japanese", "italian", "korean"),
    "a": tuple(str(n) for n in range(3, 20)),
    "b": tuple(str(n) for n in range(3, 20)),
}

# Decorations make slot-free intents (list, summarize) varied enough that held-out prompts can be
# new strings; none of them hints at a priority or a date.
_PREFIXES = ("", "hey, ", "hi, ", "okay, ", "quick one: ", "please ", "so, ", "um, ")
_SUFFIXES = ("", " please", " thanks", " thank you", " when you get a chance", " for me")

# --------------------------------------------------------------------------- templates

TRAIN_TEMPLATES: dict[str, tuple[str, ...]] = {
    "add.plain": (
        "add {title}", "add a task: {title}", "remind me to {title}", "new task: {title}",
        "put {title} on my list", "i need to {title}", "create a task to {title}",
        'add "{title}" to my tasks', "please add a to-do: {title}", "note down that i must {title}",
    ),
    "add.due": (
        "add {title} due {due}", "remind me to {title} by {due}", "new task: {title}, due {due}",
        "i need to {title} before {due}", "put {title} on my list for {due}",
        'add "{title}" with due date {due}', "create a task to {title}, deadline {due}",
        "{title} by {due}, add it",
    ),
    "add.priority": (
        "add {title} with {priority} priority", "new {priority} priority task: {title}",
        "remind me to {title}, priority {priority}", 'add "{title}" as {priority} priority',
        "i need to {title}, it's {priority} priority", "create a {priority} priority task to {title}",
    ),
    "add.due_priority": (
        "add {title} due {due} with {priority} priority", "new {priority} priority task: {title}, due {due}",
        "remind me to {title} by {due}, priority {priority}", 'add "{title}" due {due} as {priority} priority',
        "create a {priority} priority task to {title} before {due}",
    ),
    "list.any": (
        "show my tasks", "list my tasks", "what's on my list?", "what do i have to do?",
        "show me my to-do list", "what tasks do i have?", "read me my tasks",
    ),
    "list.open": (
        "show my open tasks", "what's still pending?", "which tasks are not done yet?",
        "list unfinished tasks", "what's left to do?", "show open items",
    ),
    "list.done": (
        "show completed tasks", "what have i finished?", "list done tasks", "which tasks did i complete?",
        "show my finished items", "what's already done?",
    ),
    "list.all": (
        "show all my tasks", "list every task, done or not", "show all tasks including finished ones",
        "list all my tasks", "everything on my list, open and done",
    ),
    "summarize": (
        "summarize my tasks", "give me an overview of my tasks", "how am i doing on my to-dos?",
        "quick summary of my list", "sum up my tasks", "what's the big picture on my tasks?",
        "brief me on my task list",
    ),
    "complete": (
        "mark {title} as done", "i finished {title}", "{title} is done", "done with {title}",
        "check off {title}", "complete the task {title}", 'tick off "{title}"', 'mark "{title}" complete',
    ),
    "greeting": (
        "{hi}", "{hi}!", "{hi}, i'm {name}", "{hi}, {name} here", "good {tod}", "good {tod}, it's {name}",
        "{hi}, how are you?", "{hi} there, {name} speaking",
    ),
    "thanks": (
        "thanks", "thank you", "thanks, that's all for {when}", "thank you so much for {help}",
        "great, thanks for {help}", "perfect, thank you", "thanks for {help}", "cheers, done for {when}",
        "thanks, {bye}", "thank you, {bye}", "thanks for {help}, {bye}",
    ),
    "out_of_scope": (
        "what's the weather in {city}?", "who won the {sport} game last night?", "tell me a joke about {thing}",
        "what is the capital of {country}?", "translate '{phrase}' into {lang}", "what's {a} times {b}?",
        "recommend a movie about {thing}",
    ),
}

NOVEL_TEMPLATES: dict[str, tuple[str, ...]] = {
    "add.plain": (
        "don't let me forget to {title}", "jot this down: {title}", 'could you track "{title}"',
        "i've got to {title} at some point, save it", "stick {title} in my to-dos",
    ),
    "add.due": (
        "by {due} i have to {title}", "deadline {due}: {title}", "schedule {title} for {due}",
        'track "{title}", it is due on {due}', "don't let me forget to {title} by {due}",
    ),
    "add.priority": (
        "{priority}-priority to-do: {title}", "log {title} and flag it {priority}",
        'track "{title}" at {priority} importance', "jot down {title}, priority level {priority}",
    ),
    "add.due_priority": (
        "deadline {due}, {priority} priority: {title}", "{priority}-priority to-do for {due}: {title}",
        'track "{title}" (due {due}, {priority} importance)', "by {due} i must {title}; flag it {priority}",
    ),
    "list.any": (
        "anything on my plate?", "let me see the to-do list", "which to-dos have i got?", "pull up my task list",
    ),
    "list.open": (
        "what haven't i finished?", "which to-dos remain open?", "pull up the pending stuff",
        "tasks still outstanding?",
    ),
    "list.done": (
        "which to-dos are ticked off?", "pull up what i've wrapped up", "anything i've crossed off?",
        "show the to-dos i already completed",
    ),
    "list.all": (
        "pull up the whole task list, finished ones too", "every single to-do, completed or pending",
        "give me the full list of tasks, all statuses",
    ),
    "summarize": (
        "recap my to-do situation", "a short digest of my tasks", "how's my workload looking overall?",
        "boil my task list down for me",
    ),
    "complete": (
        "you can cross {title} off", '"{title}": finished', "i've wrapped up {title}",
        "consider {title} completed", "{title} - all taken care of",
    ),
    "greeting": (
        "yo, {name} checking in", "greetings from {name}", "{hi} hi, anybody there?", "{name} again, good {tod}",
    ),
    "thanks": (
        "appreciate {help}", "many thanks for {help}", "grateful for {help}, bye for {when}", "ta, that helps",
    ),
    "out_of_scope": (
        "how tall is the tallest building in {city}?", "write me a poem about {thing}",
        "how do you say '{phrase}' in {lang}?", "can you compute {a} plus {b}?",
        "what's the population of {country}?",
    ),
}

_KINDS = ("add", "list", "summarize", "complete", "final")
_VARIANTS: dict[str, tuple[tuple[str, float], ...]] = {
    "add": (("add.plain", 1), ("add.due", 1), ("add.priority", 1), ("add.due_priority", 1)),
    "list": (("list.any", 1), ("list.open", 1), ("list.done", 1), ("list.all", 1)),
    "summarize": (("summarize", 1),),
    "complete": (("complete", 1),),
    "final": (("greeting", 0.3), ("thanks", 0.25), ("out_of_scope", 0.45)),
}
_DECORATED = {"add.plain", "add.due", "add.priority", "add.due_priority", "list.any", "list.open",
              "list.done", "list.all", "summarize", "complete"}

_FINALS = {
    "greeting": ("The user greets me; no tool is needed.",
                 "Hello! I can add, list, complete and summarize your tasks."),
    "thanks": ("The user says thanks; no tool is needed.", "You're welcome!"),
    "out_of_scope": ("The request is outside task management.", "Sorry, I can only help with your tasks."),
}
_LIST_ANALYSIS = {"list.any": ("List the tasks.", {}),
                  "list.open": ("List open tasks.", {"status": "open"}),
                  "list.done": ("List done tasks.", {"status": "done"}),
                  "list.all": ("List all tasks.", {"status": "all"})}

_FIRST_DAY = _dt.date(2025, 1, 1)
_DAYS = (_dt.date(2027, 12, 31) - _FIRST_DAY).days
_MAX_TRIES = 200
HELDOUT_TITLE_FRACTION = 0.25


@dataclass
class TaskAgentData:
    """The generated splits; held-out rows carry a `group` key."""

    train: list[dict]
    heldout: list[dict]


# --------------------------------------------------------------------------- generation


def split_pool(values: tuple[str, ...], seed: int, fraction: float) -> tuple[list[str], list[str]]:
    """(train, heldout) halves of a pool, disjoint, chosen by `seed`."""
    shuffled = list(values)
    random.Random(f"pool-{seed}-{len(values)}").shuffle(shuffled)
    cut = max(1, round(len(shuffled) * fraction))
    return sorted(shuffled[cut:]), sorted(shuffled[:cut])


def _reply(intent: str, slots: dict[str, str]) -> str:
    """The canonical reply for an intent: one short analysis sentence naming the key value."""
    if intent.startswith("add."):
        args = {"title": slots["title"]}
        sentence = f'Add a task "{slots["title"]}"'
        if intent in ("add.due", "add.due_priority"):
            args["due"] = slots["due"]
            sentence += f" due {slots['due']}"
        if intent in ("add.priority", "add.due_priority"):
            args["priority"] = slots["priority"]
            sentence += f" with {slots['priority']} priority"
        return render_reply(sentence + ".", tool="add_task", args=args)
    if intent in _LIST_ANALYSIS:
        sentence, args = _LIST_ANALYSIS[intent]
        return render_reply(sentence, tool="list_tasks", args=dict(args))
    if intent == "summarize":
        return render_reply("Summarize the tasks.", tool="summarize_tasks", args={})
    if intent == "complete":
        return render_reply(f'Mark "{slots["title"]}" as done.', tool="complete_task", args={"title": slots["title"]})
    analysis, final = _FINALS[intent]
    return render_reply(analysis, final=final)


def _candidate(rng: random.Random, intent: str, templates: tuple[str, ...], titles: list[str],
               names: list[str]) -> tuple[str, str]:
    slots = {key: rng.choice(values) for key, values in _SLOT_VALUES.items()}
    slots["title"] = rng.choice(titles)
    slots["name"] = rng.choice(names)
    slots["due"] = (_FIRST_DAY + _dt.timedelta(days=rng.randrange(_DAYS + 1))).isoformat()
    slots["priority"] = rng.choice(PRIORITIES)
    prompt = rng.choice(templates).format(**slots)
    if intent in _DECORATED:
        prompt = _decorate(rng, prompt)
    return prompt, _reply(intent, slots)


def _decorate(rng: random.Random, prompt: str) -> str:
    """Add a filler prefix/suffix, never repeating a word ("please ... please") or trailing a '?'."""
    prefix = rng.choice(_PREFIXES)
    words = set((prefix + prompt).replace(",", " ").split())
    suffixes = [s for s in _SUFFIXES if not set(s.replace(",", " ").split()) & words]
    if prompt.endswith("?"):
        suffixes = [s for s in suffixes if s == "" or s.startswith(" thank")]
    return prefix + prompt + rng.choice(suffixes)


def _intents(rng: random.Random, n: int) -> list[str]:
    """n intents, the five kinds in equal shares (shuffled), variants drawn by weight."""
    kinds = [_KINDS[i % len(_KINDS)] for i in range(n)]
    rng.shuffle(kinds)
    out = []
    for kind in kinds:
        names, weights = zip(*_VARIANTS[kind], strict=True)
        out.append(rng.choices(names, weights=weights)[0])
    return out


def generate(seed: int = 0, n_train: int = 480, n_heldout: int = 64) -> TaskAgentData:
    """Build the train and held-out splits; same seed, same rows."""
    if n_train < 1 or n_heldout < 0:
        raise ValueError(f"generate: n_train={n_train} must be >= 1 and n_heldout={n_heldout} >= 0")
    train_titles, heldout_titles = split_pool(ALL_TITLES, seed, HELDOUT_TITLE_FRACTION)
    train_names, heldout_names = split_pool(_NAMES, seed, HELDOUT_TITLE_FRACTION)
    rng = random.Random(seed)
    used: set[str] = set()

    train: list[dict] = []
    for intent in _intents(rng, n_train):
        for _ in range(_MAX_TRIES):
            prompt, reply = _candidate(rng, intent, TRAIN_TEMPLATES[intent], train_titles, train_names)
            if normalize_prompt(prompt) not in used:
                break  # after _MAX_TRIES the pool is spent: a repeated training row is harmless
        used.add(normalize_prompt(prompt))
        train.append(_row(prompt, reply))

    heldout: list[dict] = []
    for i, intent in enumerate(_intents(rng, n_heldout)):
        group = "trained_phrasing" if i % 2 == 0 else "novel_phrasing"
        pool = TRAIN_TEMPLATES if group == "trained_phrasing" else NOVEL_TEMPLATES
        found = None
        # A small pool (e.g. "thanks") can be spent by training; then a sibling variant of the same
        # kind stands in, so the kind balance holds and no held-out prompt repeats a training one.
        for variant in _siblings(intent):
            for _ in range(_MAX_TRIES):
                prompt, reply = _candidate(rng, variant, pool[variant], heldout_titles, heldout_names)
                if normalize_prompt(prompt) not in used:
                    found = prompt, reply
                    break
            if found:
                break
        if found is None:
            raise ValueError(
                f"generate: no unused {group} prompt left for intent {intent!r} after {_MAX_TRIES} tries; "
                f"lower n_heldout={n_heldout} or n_train={n_train}"
            )
        used.add(normalize_prompt(found[0]))
        heldout.append({**_row(*found), "group": group})
    return TaskAgentData(train=train, heldout=heldout)


def _siblings(intent: str) -> list[str]:
    """`intent` first, then the other variants of its kind."""
    kind = next(k for k, variants in _VARIANTS.items() if any(v == intent for v, _ in variants))
    return [intent] + [v for v, _ in _VARIANTS[kind] if v != intent]


def _row(prompt: str, reply: str) -> dict:
    return {"messages": [{"role": "user", "content": prompt}, {"role": "assistant", "content": reply}]}


# --------------------------------------------------------------------------- helpers


def reply_stats(rows: list[dict]) -> dict[str, int]:
    """How many rows call each tool or answer with <final> (for DatasetProfile.extra)."""
    counts: collections.Counter[str] = collections.Counter()
    for row in rows:
        parsed = parse_reply(row["messages"][-1]["content"])
        counts[parsed.tool if parsed.kind == "action" and parsed.tool is not None else parsed.kind] += 1
    return dict(sorted(counts.items()))


def write(data: TaskAgentData, out_dir: str | Path) -> dict[str, Path]:
    """Write train.jsonl and heldout.jsonl under out_dir; returns their paths."""
    out = Path(out_dir)
    return {"train": write_jsonl(data.train, out / "train.jsonl"),
            "heldout": write_jsonl(data.heldout, out / "heldout.jsonl")}
