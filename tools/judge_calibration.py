"""Judge calibration: can a judge tell a right reply from a wrong one, per task type?

A judge's 1-10 means say nothing unless the judge ranks right replies above wrong ones. This module
builds, deterministically from small templates, a calibration set per task type (the task agent's
tool-call contract, multiple choice, numeric, classification, free text with reasoning): prompts
with a reference answer, and for each prompt replies of four kinds,

    right         the reference, or a paraphrase that is equally correct
    subtly_wrong  one value changed: another letter, an off-by-one number, another label or task
                  title, a plausible wrong fact, with the reference's form kept
    empty         nothing (or whitespace)
    garbage       random tokens, a looping fragment of the question, or an off-contract reply

and runs any judge over it through the same `judge_samples` path a run uses. Per task type and
criterion it reports AUROC (the chance that a right reply outscores a wrong one of that kind, ties
half; Mann-Whitney) and the mean score gap. A third of each type's prompts are `held-out`: the
offline judge was written against the `tune` prompts only, so the held-out AUROC says whether its
rules generalise rather than fit the set.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from autogen_core.models import ChatCompletionClient
from pydantic import BaseModel, Field

from .judge import CRITERIA, JudgeSample, judge_samples

__all__ = ["CALIBRATION_TYPES", "CLASSIFICATION_LABELS", "KINDS", "WRONG_KINDS", "CalibrationCell",
           "CalibrationItem", "CalibrationReport", "auroc", "calibrate", "calibration_items", "calibration_line",
           "calibration_table", "kinds_table", "spread"]

Kind = Literal["right", "subtly_wrong", "empty", "garbage"]
KINDS: tuple[Kind, ...] = ("right", "subtly_wrong", "empty", "garbage")
WRONG_KINDS: tuple[Kind, ...] = ("subtly_wrong", "empty", "garbage")
Split = Literal["tune", "held-out", "all"]
HELD_OUT_EVERY = 3  # every third prompt of a type is held out: the offline judge was not tuned on it
CLASSIFICATION_LABELS = ("negative", "neutral", "positive")

# Garbage vocabulary: what a broken small model emits. No digits and no single letters, so a garbage
# reply can never name an option letter or a number and be right by accident.
_NOISE = ("lorem", "ipsum", "banana", "quartz", "velvet", "orbit", "marble", "thunder", "pickle", "zephyr",
          "cobalt", "lantern", "saddle", "muffin", "glacier", "tundra", "kettle", "walrus", "nebula", "fjord",
          "##", "Ġ", "<|", "|>", "...", ";;", "utf", "xq", "zzv", "qlt", "brrk", "ftw", "mmh", "oop")


@dataclass(frozen=True)
class CalibrationItem:
    """One judged reply of the calibration set."""

    task_type: str  # which calibration type: task-agent, multiple-choice, numeric, classification, free-text
    prompt: int  # the prompt's index within its type: items of one prompt share question and reference
    split: Literal["tune", "held-out"]  # held-out prompts were not looked at while writing the offline judge
    kind: Kind  # what the reply is: right, or one kind of wrong
    variant: str  # how it was made (verbatim, paraphrase, random tokens, ...): for reading failures
    sample: JudgeSample


@dataclass(frozen=True)
class _Prompt:
    question: str
    reference: str
    paraphrase: str  # an equally correct reply in other words
    wrong: str  # the reference with one value changed
    off_contract: str  # on topic, but not in the form the task asks for


# --------------------------------------------------------------------------- templates

def _act(analysis: str, call: str) -> str:
    return f"<analysis>{analysis}</analysis><action>{call}</action>"


def _final(analysis: str, text: str) -> str:
    return f"<analysis>{analysis}</analysis><final>{text}</final>"


def _task_agent() -> list[_Prompt]:
    p = _Prompt
    return [
        p("add buy milk to my list", _act("Add the task buy milk.", 'add_task(title="buy milk")'),
          _act("The user wants a new task: buy milk.", 'add_task(title="buy milk")'),
          _act("Add the task buy eggs.", 'add_task(title="buy eggs")'), "Sure, I added buy milk to your list!"),
        p("remind me to call the dentist by 2025-03-14",
          _act("Add the task call the dentist due 2025-03-14.", 'add_task(title="call the dentist", due="2025-03-14")'),
          _act("New task with a due date.", 'add_task(due="2025-03-14", title="call the dentist")'),
          _act("Add the task call the dentist due 2025-03-15.", 'add_task(title="call the dentist", due="2025-03-15")'),
          "add_task(title=call the dentist, due=2025-03-14)"),
        p("i finished fixing the bike",
          _act('Mark "fix the bike" as done.', 'complete_task(title="fix the bike")'),
          _act("The bike is fixed, so that task is complete.", 'complete_task(title="fix the bike")'),
          _act('Delete "fix the bike".', 'delete_task(title="fix the bike")'), "Great job fixing the bike!"),
        p("what's still open?", _act("List the open tasks.", 'list_tasks(status="open")'),
          _act("Show the tasks that are not done yet.", 'list_tasks(status="open")'),
          _act("List the done tasks.", 'list_tasks(status="done")'), "<final>You have some open tasks.</final>"),
        p("add pay the rent, it's urgent",
          _act("Add the task pay the rent with high priority.", 'add_task(title="pay the rent", priority="high")'),
          _act("Urgent new task: pay the rent.", 'add_task(priority="high", title="pay the rent")'),
          _act("Add the task pay the rent with low priority.", 'add_task(title="pay the rent", priority="low")'),
          "I'll remember to pay the rent."),
        p("hi there!", _final("The user greets me.", "Hello! What would you like to do with your tasks?"),
          _final("A greeting, no task.", "Hi! How can I help with your tasks today?"),
          _act("The user greets me.", "list_tasks()"), "Hello!"),
        p("drop the task about the garage, never mind",
          _act('Delete "clean the garage".', 'delete_task(title="clean the garage")'),
          _act("The user no longer wants the garage task.", 'delete_task(title="clean the garage")'),
          _act('Delete "clean the kitchen".', 'delete_task(title="clean the kitchen")'),
          "<analysis>Delete it.</analysis><action>remove(title=\"clean the garage\")</action>"),
        p("give me an overview of everything", _act("Summarize the tasks.", "summarize_tasks()"),
          _act("The user wants a summary of all tasks.", "summarize_tasks()"),
          _act("List all tasks.", 'list_tasks(status="all")'), "Here is an overview of everything."),
        p("put book a flight on my todo for 2025-07-01 with low priority",
          _act("Add the task book a flight.", 'add_task(title="book a flight", due="2025-07-01", priority="low")'),
          _act("New low-priority task with a date.",
               'add_task(priority="low", due="2025-07-01", title="book a flight")'),
          _act("Add the task book a flight.", 'add_task(title="book a flight", due="2025-07-01", priority="high")'),
          "Flight booking added for July 1st."),
        p("done with email the team", _act('Mark "email the team" as done.', 'complete_task(title="email the team")'),
          _act("That email is sent: complete the task.", 'complete_task(title="email the team")'),
          _act('Mark "email my manager" as done.', 'complete_task(title="email my manager")'),
          "<analysis>Mark done.<action>complete_task(title=\"email the team\")</action>"),
        p("show me what i already finished", _act("List the done tasks.", 'list_tasks(status="done")'),
          _act("The user wants the completed tasks.", 'list_tasks(status="done")'),
          _act("List the open tasks.", 'list_tasks(status="open")'), "You finished a few things already."),
        p("add water the plants", _act("Add the task water the plants.", 'add_task(title="water the plants")'),
          _act("A new task to water the plants.", 'add_task(title="water the plants")'),
          _act("Add the task water the lawn.", 'add_task(title="water the lawn")'),
          "OK, water the plants is on your list."),
    ]


def _mc(stem: str, options: Sequence[str], right: int, wrong: int, long_form: bool) -> _Prompt:
    letters = "ABCDEFGHIJ"
    question = stem + "\n" + "\n".join(f"{letters[i]}. {o}" for i, o in enumerate(options))
    ref = f"{letters[right]}. {options[right]}" if long_form else letters[right]
    return _Prompt(question, ref, f"The answer is ({letters[right]}) {options[right]}.",
                   f"{letters[wrong]}. {options[wrong]}" if long_form else letters[wrong],
                   f"It is probably {options[right].lower()}, but I cannot pick an option.")


def _multiple_choice() -> list[_Prompt]:
    return [
        _mc("What is the capital of Australia?", ["Sydney", "Canberra", "Melbourne", "Perth"], 1, 0, False),
        _mc("Which gas do plants absorb for photosynthesis?", ["Oxygen", "Nitrogen", "Carbon dioxide", "Helium"],
            2, 0, True),
        _mc("Which vitamin deficiency causes scurvy?", ["Vitamin A", "Vitamin B12", "Vitamin C", "Vitamin D"],
            2, 3, False),
        _mc("Which organ produces insulin?", ["Liver", "Pancreas", "Kidney", "Spleen"], 1, 0, True),
        _mc("What is the largest planet in the solar system?", ["Saturn", "Jupiter", "Neptune", "Earth"], 1, 0, False),
        _mc("Which virus causes erythema infectiosum (fifth disease)?",
            ["Rubella virus", "Measles virus", "Parvovirus B19", "Varicella zoster"], 2, 3, True),
        _mc("Who wrote 'Pride and Prejudice'?", ["Charlotte Bronte", "Jane Austen", "Mary Shelley", "George Eliot"],
            1, 0, False),
        _mc("Which blood cells fight infection?", ["Red blood cells", "Platelets", "White blood cells", "Plasma"],
            2, 0, True),
        _mc("What is the chemical symbol for sodium?", ["So", "Sd", "Na", "Sn"], 2, 3, False),
        _mc("Which contract term allows one party to end the agreement early?",
            ["Indemnity clause", "Termination clause", "Force majeure", "Severability"], 1, 2, True),
        _mc("How many chambers does the human heart have?", ["Two", "Three", "Four", "Five"], 2, 1, False),
        _mc("Which layer of the atmosphere contains the ozone layer?",
            ["Troposphere", "Stratosphere", "Mesosphere", "Thermosphere"], 1, 0, True),
    ]


def _num(question: str, steps: str, answer: int, paraphrase: str) -> _Prompt:
    return _Prompt(question, f"{steps}\n#### {answer}", paraphrase.format(answer=answer),
                   f"{steps}\n#### {answer + 1}", f"{steps.split('=')[0].strip()} is the way to work it out.")


def _numeric() -> list[_Prompt]:
    return [
        _num("Tom has 3 bags with 4 apples each. How many apples does he have?", "3 * 4 = 12", 12,
             "Three bags of four apples make {answer} apples. The answer is {answer}."),
        _num("A book costs $15 and a pen costs $3. How much do 2 books and 1 pen cost?", "2 * 15 + 3 = 33", 33,
             "Two books are $30, plus the pen: {answer} dollars.\n#### {answer}"),
        _num("Sara reads 20 pages a day. How many pages does she read in a week?", "20 * 7 = 140", 140,
             "In 7 days she reads \\boxed{{{answer}}} pages."),
        _num("A train travels 60 km per hour for 3 hours. How far does it go?", "60 * 3 = 180", 180,
             "Distance is speed times time, so {answer} km.\n#### {answer}"),
        _num("There are 28 students and 4 equal teams. How many students are in each team?", "28 / 4 = 7", 7,
             "Each team gets {answer} students. Final answer: {answer}"),
        _num("Lena had 50 stickers and gave away 18. How many are left?", "50 - 18 = 32", 32,
             "She keeps {answer} stickers.\n#### {answer}"),
        _num("A box holds 12 eggs. How many eggs are in 5 boxes?", "12 * 5 = 60", 60,
             "Five dozen eggs is {answer}. The answer is {answer}."),
        _num("Mike earns $9 an hour and works 8 hours. How much does he earn?", "9 * 8 = 72", 72,
             "He makes {answer} dollars in the day.\n#### {answer}"),
        _num("A garden is 9 m long and 6 m wide. What is its area in square meters?", "9 * 6 = 54", 54,
             "Area = length x width = {answer} square meters. The answer is {answer}."),
        _num("A shirt costs $40 and is 25% off. What is the sale price?", "40 - 40 * 0.25 = 30", 30,
             "A quarter off $40 leaves ${answer}.\n#### {answer}"),
        _num("Ann is 14 and her brother is 5 years older. How old will he be in 3 years?", "14 + 5 + 3 = 22", 22,
             "He is 19 now, so in three years he is {answer}.\n#### {answer}"),
        _num("A pizza has 8 slices. How many slices are in 6 pizzas?", "8 * 6 = 48", 48,
             "Six pizzas give \\boxed{{{answer}}} slices."),
    ]


def _cls(text: str, label: str, wrong: str, paraphrase: str) -> _Prompt:
    question = f"Classify the sentiment of this review as negative, neutral or positive.\nReview: {text}"
    return _Prompt(question, label, paraphrase, wrong, f"This review is about {text.split()[1]}.")


def _classification() -> list[_Prompt]:
    return [
        _cls("The battery lasts all day and the screen is gorgeous.", "positive", "negative", "Positive."),
        _cls("It broke after two days and support never answered.", "negative", "positive",
             "The sentiment is negative."),
        _cls("The package arrived on Tuesday in a brown box.", "neutral", "positive", "Neutral"),
        _cls("Absolutely loved the food, we will come back!", "positive", "neutral", "The answer is positive."),
        _cls("Terrible service, cold soup and a rude waiter.", "negative", "neutral", "negative."),
        _cls("The hotel is two blocks from the station.", "neutral", "negative", "The review is neutral."),
        _cls("Best headphones I have ever owned.", "positive", "negative", "Sentiment: positive"),
        _cls("The shoes gave me blisters within an hour.", "negative", "positive", "It is negative."),
        _cls("The manual is printed in three languages.", "neutral", "positive", "neutral."),
        _cls("Fast shipping and the quality exceeded my expectations.", "positive", "neutral",
             "Positive, the reviewer is happy."),
        _cls("The app crashes every time I open the camera.", "negative", "neutral", "Answer: negative"),
        _cls("The course runs for six weeks on Mondays.", "neutral", "negative", "It's neutral."),
    ]


def _free_text() -> list[_Prompt]:
    p = _Prompt
    return [
        p("What is the capital of Australia?", "The capital of Australia is Canberra.",
          "Canberra is Australia's capital city.", "The capital of Australia is Sydney.",
          "<think>Australia has several big cities"),
        p("At what temperature does water boil at sea level?", "Water boils at 100 degrees Celsius at sea level.",
          "At sea level it boils at 100 °C.", "Water boils at 90 degrees Celsius at sea level.",
          "Water is a liquid made of hydrogen and oxygen."),
        p("Who developed the theory of general relativity?",
          "<think>General relativity was published in 1915.</think>Albert Einstein developed it.",
          "<think>The 1915 theory of gravity.</think>It was Einstein.",
          "<think>General relativity was published in 1915.</think>Isaac Newton developed it.",
          "<think>General relativity was published in 1915."),
        p("What is the first-line treatment for anaphylaxis?",
          "Intramuscular epinephrine (adrenaline) is the first-line treatment for anaphylaxis.",
          "Give adrenaline by intramuscular injection first.",
          "Oral antihistamines are the first-line treatment for anaphylaxis.",
          "Anaphylaxis is a severe allergic reaction."),
        p("How many bones are in the adult human body?", "An adult human has 206 bones.",
          "There are 206 bones in an adult skeleton.", "An adult human has 208 bones.",
          "Bones are made mostly of calcium."),
        p("What does a force majeure clause do?",
          "It excuses a party from performing when extraordinary events beyond its control, such as war or "
          "natural disasters, prevent performance.",
          "It releases a party from its obligations if events outside its control, like disasters or war, make "
          "performance impossible.",
          "It lets a party end the contract at any time for convenience, with thirty days notice.",
          "Force majeure is French."),
        p("Which planet is known as the Red Planet?",
          "<think>Iron oxide on its surface makes it look red.</think>Mars.",
          "<think>Its surface is rusty.</think>The Red Planet is Mars.",
          "<think>Iron oxide on its surface makes it look red.</think>Venus.",
          "<think>Iron oxide on its surface makes it look red"),
        p("What is the powerhouse of the cell?", "The mitochondrion is the powerhouse of the cell.",
          "Mitochondria, which make most of the cell's ATP.", "The ribosome is the powerhouse of the cell.",
          "Cells are the basic unit of life."),
        p("In which year did the Berlin Wall fall?", "The Berlin Wall fell in 1989.",
          "It came down in November 1989.", "The Berlin Wall fell in 1991.", "The wall divided Berlin."),
        p("What is the normal resting heart rate for adults?",
          "A normal resting heart rate for adults is 60 to 100 beats per minute.",
          "Between 60 and 100 beats a minute is normal at rest.",
          "A normal resting heart rate for adults is 40 to 60 beats per minute.",
          "The heart pumps blood around the body."),
        p("Who painted the Mona Lisa?",
          "<think>It hangs in the Louvre and dates from the early 1500s.</think>Leonardo da Vinci.",
          "<think>A Renaissance portrait.</think>It was painted by Leonardo da Vinci.",
          "<think>It hangs in the Louvre and dates from the early 1500s.</think>Michelangelo.",
          "<think>It hangs in the Louvre"),
        p("What is the chemical formula of table salt?", "Table salt is sodium chloride, NaCl.",
          "NaCl (sodium chloride).", "Table salt is potassium chloride, KCl.", "Salt makes food taste better."),
    ]


_BUILDERS: dict[str, Callable[[], list[_Prompt]]] = {
    "task-agent": _task_agent, "multiple-choice": _multiple_choice, "numeric": _numeric,
    "classification": _classification, "free-text": _free_text}
CALIBRATION_TYPES: tuple[str, ...] = tuple(_BUILDERS)


def _garbage(prompt: _Prompt, rng: random.Random) -> list[tuple[str, str]]:
    noise = " ".join(rng.choice(_NOISE) for _ in range(rng.randint(6, 14)))
    fragment = " ".join(prompt.question.split()[:3])
    return [("random tokens", noise), ("looping fragment", " ".join([fragment] * 8)),
            ("off contract", prompt.off_contract)]


def calibration_items(task_type: str, split: Split = "all") -> list[CalibrationItem]:
    """The calibration set of one task type (see the module docstring), the same on every call."""
    if task_type not in _BUILDERS:
        raise ValueError(f"calibration task type {task_type!r}: choose one of {', '.join(CALIBRATION_TYPES)}")
    out: list[CalibrationItem] = []
    for i, prompt in enumerate(_BUILDERS[task_type]()):
        part: Literal["tune", "held-out"] = "held-out" if i % HELD_OUT_EVERY == HELD_OUT_EVERY - 1 else "tune"
        if split != "all" and part != split:
            continue
        rng = random.Random(f"{task_type}:{i}")  # str seeds hash with sha512: the same on every machine
        replies: list[tuple[Kind, str, str]] = [
            ("right", "verbatim", prompt.reference), ("right", "paraphrase", prompt.paraphrase),
            ("subtly_wrong", "one value changed", prompt.wrong),
            ("empty", "empty" if i % 2 else "whitespace", "" if i % 2 else " \n "),
            *(("garbage", variant, text) for variant, text in _garbage(prompt, rng))]
        for kind, variant, reply in replies:
            sample = JudgeSample(index=len(out), question=prompt.question, reference=prompt.reference, reply=reply)
            out.append(CalibrationItem(task_type, i, part, kind, variant, sample))
    return out


def spread(items: Sequence[CalibrationItem], n: int) -> list[CalibrationItem]:
    """At most `n` items, the kinds taken in turn, each kind's items in a fixed shuffled order (so
    they come from prompts across the set): a small, balanced slice for a judge that costs a request
    per reply. The same items on every call."""
    pools = {k: [it for it in items if it.kind == k] for k in KINDS}
    for kind, pool in pools.items():
        random.Random(f"spread:{kind}").shuffle(pool)
    picked: list[CalibrationItem] = []
    for round_ in range(max(len(p) for p in pools.values())):
        picked += [pools[k][round_] for k in KINDS if round_ < len(pools[k])]
    return picked[:n]


# --------------------------------------------------------------------------- measuring


def auroc(positive: Sequence[float], negative: Sequence[float]) -> float | None:
    """P(a positive outscores a negative), ties counted half (the Mann-Whitney U over n+ * n-)."""
    if not positive or not negative:
        return None
    wins = sum((p > n) + 0.5 * (p == n) for p in positive for n in negative)
    return wins / (len(positive) * len(negative))


class CalibrationCell(BaseModel):
    """How well one judge separates right replies from one kind of wrong reply on one criterion."""

    judge: str
    task_type: str
    split: str = Field(description="tune, held-out or all: which prompts of the calibration set")
    criterion: str
    versus: str = Field(description="the wrong kind the right replies are compared with, or 'all wrong'")
    auroc: float | None = Field(description="P(right scores above wrong), ties half; None when a side is empty")
    gap: float | None = Field(description="mean score of right replies minus that of the wrong ones")
    n_right: int
    n_wrong: int


class KindScores(BaseModel):
    """What one judge gave one kind of reply on one criterion: a garbage reply's clarity, say."""

    judge: str
    task_type: str
    split: str
    kind: str
    criterion: str
    mean: float
    max: int
    n: int


class CalibrationReport(BaseModel):
    """The cells of one calibration run, and how many verdicts never parsed (left out of the cells)."""

    cells: list[CalibrationCell]
    kinds: list[KindScores] = Field(default_factory=list, description="mean and max score per reply kind")
    unparsed: dict[str, int] = Field(default_factory=dict, description="judge -> verdicts that never parsed")
    samples: int = Field(description="replies each judge was asked to score")

    def cell(self, judge: str, task_type: str, criterion: str, versus: str = "all wrong",
             split: str = "all") -> CalibrationCell | None:
        return next((c for c in self.cells if (c.judge, c.task_type, c.criterion, c.versus, c.split)
                     == (judge, task_type, criterion, versus, split)), None)


async def calibrate(judges: dict[str, ChatCompletionClient], items: Sequence[CalibrationItem], persona: str = "",
                    *, retries: int = 1, concurrency: int = 4) -> CalibrationReport:
    """Every judge scores every item through `judge_samples` (the run's path); cells per task type,
    split (tune, held-out, all), criterion and wrong kind."""
    if not items:
        raise ValueError("calibrate needs at least one calibration item")
    samples = [JudgeSample(index=i, question=it.sample.question, reference=it.sample.reference,
                           reply=it.sample.reply) for i, it in enumerate(items)]
    report = await judge_samples(judges, samples, persona, n=len(samples), retries=retries,
                                 concurrency=concurrency, subject="calibration", split="calibration")
    cells: list[CalibrationCell] = []
    kinds: list[KindScores] = []
    unparsed: dict[str, int] = {}
    for name in judges:
        scored = {v.sample: v.scores for v in report.verdicts if v.judge == name and v.scores is not None}
        unparsed[name] = sum(1 for v in report.verdicts if v.judge == name and v.scores is None)
        for task_type in dict.fromkeys(it.task_type for it in items):
            for split in ("tune", "held-out", "all"):
                mine = [(it, scored[i]) for i, it in enumerate(items) if i in scored and it.task_type == task_type
                        and (split == "all" or it.split == split)]
                if mine:
                    cells += _cells(name, task_type, split, mine)
                    kinds += [KindScores(judge=name, task_type=task_type, split=split, kind=kind, criterion=c,
                                         mean=sum(got) / len(got), max=max(got), n=len(got))
                              for kind in KINDS for c in CRITERIA
                              if (got := [s[c] for it, s in mine if it.kind == kind])]
    return CalibrationReport(cells=cells, kinds=kinds, unparsed=unparsed, samples=len(samples))


def _cells(judge: str, task_type: str, split: str,
           scored: Sequence[tuple[CalibrationItem, dict[str, int]]]) -> list[CalibrationCell]:
    out = []
    for criterion in CRITERIA:
        right = [float(s[criterion]) for it, s in scored if it.kind == "right"]
        for versus in (*WRONG_KINDS, "all wrong"):
            wrong = [float(s[criterion]) for it, s in scored
                     if it.kind != "right" and (versus == "all wrong" or it.kind == versus)]
            gap = sum(right) / len(right) - sum(wrong) / len(wrong) if right and wrong else None
            out.append(CalibrationCell(judge=judge, task_type=task_type, split=split, criterion=criterion,
                                       versus=versus, auroc=auroc(right, wrong), gap=gap,
                                       n_right=len(right), n_wrong=len(wrong)))
    return out


# --------------------------------------------------------------------------- showing


def _f(value: float | None, spec: str = ".2f") -> str:
    return "n/a" if value is None else format(value, spec)


def calibration_table(report: CalibrationReport, split: str = "all") -> str:
    """Markdown: per judge, task type and criterion, AUROC right vs each wrong kind (gap beside it)."""
    head = ("| judge | task type | criterion | " + " | ".join(f"vs {k.replace('_', ' ')}" for k in WRONG_KINDS)
            + " | vs all wrong (gap) | n right / wrong |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    keys = dict.fromkeys((c.judge, c.task_type, c.criterion) for c in report.cells if c.split == split)
    for judge, task_type, criterion in keys:
        cells = {k: report.cell(judge, task_type, criterion, k, split) for k in (*WRONG_KINDS, "all wrong")}
        pooled = cells["all wrong"]
        assert pooled is not None  # every (judge, type, criterion) has its pooled cell
        lines.append(f"| {judge} | {task_type} | {criterion} | "
                     + " | ".join(_f(c.auroc) if c else "n/a" for k, c in cells.items() if k != "all wrong")
                     + f" | {_f(pooled.auroc)} ({_f(pooled.gap, '+.1f')}) | {pooled.n_right} / {pooled.n_wrong} |")
    return "\n".join(lines)


def kinds_table(report: CalibrationReport, split: str = "all") -> str:
    """Markdown: per judge and task type, the mean (max) score each kind of reply got per criterion."""
    head = "| judge | task type | reply kind | " + " | ".join(CRITERIA) + " | n |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    keys = dict.fromkeys((k.judge, k.task_type, k.kind) for k in report.kinds if k.split == split)
    for judge, task_type, kind in keys:
        by = {k.criterion: k for k in report.kinds if (k.judge, k.task_type, k.kind, k.split)
              == (judge, task_type, kind, split)}
        lines.append(f"| {judge} | {task_type} | {kind.replace('_', ' ')} | "
                     + " | ".join(f"{by[c].mean:.1f} ({by[c].max})" for c in CRITERIA)
                     + f" | {by[CRITERIA[0]].n} |")
    return "\n".join(lines)


def calibration_line(report: CalibrationReport, judge: str) -> str:
    """One line to show beside a judge's rubric: its accuracy AUROC per task type on the set."""
    cells = [c for c in report.cells if c.judge == judge and c.criterion == "accuracy" and c.split == "all"
             and c.versus == "all wrong"]
    if not cells:
        return f"{judge}: not calibrated"
    parts = ", ".join(f"{c.task_type} {_f(c.auroc)} (n={c.n_right}+{c.n_wrong})" for c in cells)
    missed = report.unparsed.get(judge, 0)
    return (f"{judge} calibration, accuracy AUROC right vs wrong replies: {parts}"
            + (f"; {missed} verdicts unparsed" if missed else ""))
