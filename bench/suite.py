"""The task-type suite: the crew on one small real-format dataset per task type, scored against the base
model and a trivial baseline.

    python bench/suite.py                                   # SmolLM2-135M (the default model), 3 min a task
    python bench/suite.py --budget-minutes 3 --max-attempts 1 --out suite.json
    python bench/suite.py --only math --base-model tiny     # one task, the tests' tiny model: a smoke run

In the spirit of FT-Dojo's tasks over domains: one dataset per kind of task, each in a published format,
each run as a user would (`tunecrew run [task-agent] --data FILE --heldout N`, memory off, offline crew):

    tool-calls       llama-task-agent chat rows (<analysis>/<action>/<final>)  task-agent scenario, --data
    multiple-choice  MedQA rows (question, options {A..D}, answer_idx)         --data, detected
    math             GSM8K in OpenAI chat format (`#### N`)                    --data, detected
    classification   review text,label CSV (positive/negative)                 --data, detected
    free-text        medical-o1 rows (Question, Complex_CoT, Response)         --data, detected
    preference       prompt/chosen/rejected pairs                              --data, detected

The tool-call rows are the committed fixture (tests/fixtures/data/llama_task_agent_chat.jsonl, 40 rows) and
the free-text rows the medical-reasoning scenario's shipped sample (160 rows); the other fixtures hold 2-4
rows, so their rows are generated here as look-alikes of the same format (seeded, in a temporary folder;
the output says which). Each reply's generation budget is sized to the dataset's answers
(Task.max_new_tokens, set on the scenario: no command-line flag does). Printed per task: the detected
layout, task type and its evidence, the scorer's primary metric, the domain the crew found, the method(s)
it chose, attempts, the best held-out score beside the base model's (runs/<id>/baseline_eval.json) and a
trivial baseline's on the same rows, with the split, n, seed and wall minutes. A task that fails is
recorded with its error and the suite goes on.

The trivial baseline answers every held-out row without a model, scored by the run's own scorer: the best
of "the most frequent training answer" (for multiple choice, its option letter: the majority class) and
"the prompt copied back".
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, table

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures" / "data"
MEDICAL_SAMPLE = REPO / "scenarios" / "medical_reasoning" / "data" / "sample.jsonl"
N_GENERATED = 60  # look-alike rows per generated dataset: 48 to train, 12 held out
HELDOUT = 12  # held-out rows per task (8 for the 40-row tool-call fixture)


@dataclass(frozen=True)
class Task:
    """One row of the suite: a kind of task and the dataset that stands for it."""

    kind: str  # the --only name
    scenario: str  # tunecrew scenario the data goes to (`custom`: `tunecrew run --data FILE`)
    make_data: Callable[[Path, int], tuple[Path, str]]  # (folder, seed) -> (file, where the rows came from)
    heldout: int = HELDOUT
    # Generation budget per held-out reply, sized to the dataset's answers; None: the scenario's. `custom`
    # allows 512 tokens, and at 512 not even 4 held-out rows of SmolLM2-135M fit the 12% of a 3-minute
    # --budget that the crew reserves for an evaluation on 2 cores (tools/feasibility.py), so the run
    # would stop before training.
    max_new_tokens: int | None = None


@dataclass
class Result:
    """What the suite prints for one task; None where the run did not get that far."""

    kind: str
    dataset: str  # the file's name and where its rows came from
    max_new_tokens: int | None = None  # the generation budget per reply the run scored with
    layout: str | None = None  # detected layout (format family)
    task_type: str | None = None  # spec.task_type; None: the scenario's own scorer (task agent)
    evidence: str | None = None
    metric: str | None = None  # the primary metric every score below is
    domain: str | None = None  # what the Domain Expert called it
    methods: list[str] = field(default_factory=list)  # config.method of each attempt, in order
    attempts: int = 0
    steps: list[int] = field(default_factory=list)  # optimizer steps each attempt trained: 0-1 is the base model
    best: float | None = None  # the best attempt the crew's verdict accepted (beats the base model, not noise)
    rejected_best: float | None = None  # with none accepted: the best score the verdict rejected
    base: float | None = None  # the base model, prompt only, same rows and scorer
    trivial: float | None = None
    trivial_kind: str | None = None  # which trivial answer scored `trivial`
    split: str | None = None
    samples: int | None = None
    seed: int = 0
    wall_minutes: float = 0.0
    error: str | None = None  # why the task did not finish


# --------------------------------------------------------------------------- look-alike data

_MC_FACTS = [  # (question stem, right answer, three distractors)
    ("Which vitamin deficiency causes scurvy?", "Vitamin C", ["Vitamin D", "Vitamin B12", "Vitamin A"]),
    ("Which test confirms iron-deficiency anaemia?", "Serum ferritin", ["Serum sodium", "Troponin", "Lipase"]),
    ("Which organism most often causes community-acquired pneumonia?", "Streptococcus pneumoniae",
     ["Escherichia coli", "Candida albicans", "Clostridium difficile"]),
    ("Which drug reverses opioid overdose?", "Naloxone", ["Flumazenil", "Atropine", "Protamine"]),
    ("Which hormone is deficient in type 1 diabetes?", "Insulin", ["Glucagon", "Cortisol", "Thyroxine"]),
    ("Which electrolyte disturbance causes peaked T waves?", "Hyperkalaemia",
     ["Hyponatraemia", "Hypocalcaemia", "Hypermagnesaemia"]),
    ("Which nerve is injured in wrist drop?", "Radial nerve", ["Ulnar nerve", "Median nerve", "Axillary nerve"]),
    ("Which antidote treats paracetamol overdose?", "N-acetylcysteine", ["Naloxone", "Vitamin K", "Digoxin Fab"]),
    ("Which enzyme rises first after a myocardial infarction?", "Troponin", ["Amylase", "ALP", "GGT"]),
    ("Which virus causes infectious mononucleosis?", "Epstein-Barr virus",
     ["Measles virus", "Hepatitis A virus", "Rotavirus"]),
    ("Which vitamin is given to newborns to prevent bleeding?", "Vitamin K", ["Vitamin C", "Vitamin E", "Folate"]),
    ("Which gland secretes thyroxine?", "Thyroid gland", ["Adrenal gland", "Pineal gland", "Parotid gland"]),
    ("Which bone is most often fractured in a fall on an outstretched hand in adults?", "Distal radius",
     ["Femoral neck", "Patella", "Calcaneus"]),
    ("Which condition presents with a positive Murphy's sign?", "Acute cholecystitis",
     ["Appendicitis", "Pancreatitis", "Diverticulitis"]),
    ("Which valve lesion causes a mid-diastolic rumble at the apex?", "Mitral stenosis",
     ["Aortic stenosis", "Mitral regurgitation", "Tricuspid regurgitation"]),
    ("Which cell type does HIV primarily infect?", "CD4 T cells", ["B cells", "Neutrophils", "Erythrocytes"]),
    ("Which drug class ends in -pril?", "ACE inhibitors", ["Beta blockers", "Statins", "Diuretics"]),
    ("Which cranial nerve controls the lateral rectus?", "Abducens nerve",
     ["Oculomotor nerve", "Trochlear nerve", "Facial nerve"]),
    ("Which organ produces bile?", "Liver", ["Gallbladder", "Pancreas", "Spleen"]),
    ("Which disease is caused by Mycobacterium tuberculosis?", "Tuberculosis", ["Leprosy", "Syphilis", "Malaria"]),
]
_MC_LEADS = ["", "A {age}-year-old {who} is seen in clinic. ", "During a ward round a {age}-year-old {who} is "
             "discussed. ", "A student is asked about a {age}-year-old {who}. "]


def medqa_rows(seed: int, n: int) -> list[dict]:
    """MedQA-style rows (question, answer, options {A..D}, meta_info, answer_idx): facts x vignette leads,
    options shuffled per row so the right letter varies."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        stem, right, wrong = _MC_FACTS[i % len(_MC_FACTS)]
        lead = _MC_LEADS[(i // len(_MC_FACTS)) % len(_MC_LEADS)].format(age=rng.randint(18, 80),
                                                                         who=rng.choice(["man", "woman"]))
        choices = [right, *wrong]
        rng.shuffle(choices)
        options = dict(zip("ABCD", choices, strict=True))
        letter = "ABCD"[choices.index(right)]
        rows.append({"question": lead + stem, "answer": right, "options": options, "meta_info": "step1",
                     "answer_idx": letter})
    return rows


_MATH = [  # (question template, working template, answer); a..c drawn per row
    ("A baker makes {a} rolls an hour for {b} hours and sells {c}. How many are left?",
     "{a} * {b} = {ab} rolls. {ab} - {c} = {r}.", lambda a, b, c: a * b - c),
    ("Sam has {b} boxes of {a} pencils and gives away {c}. How many does he keep?",
     "{b} * {a} = {ab} pencils. {ab} - {c} = {r}.", lambda a, b, c: a * b - c),
    ("A farm has {a} rows of {b} apple trees and plants {c} more trees. How many trees are there now?",
     "{a} * {b} = {ab} trees. {ab} + {c} = {r}.", lambda a, b, c: a * b + c),
    ("Mia reads {a} pages a day for {b} days, then {c} pages on Sunday. How many pages did she read?",
     "{a} * {b} = {ab} pages. {ab} + {c} = {r}.", lambda a, b, c: a * b + c),
]


def gsm8k_rows(seed: int, n: int) -> list[dict]:
    """GSM8K-style word problems in OpenAI chat format: working, then `#### N`."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        question, working, answer = _MATH[i % len(_MATH)]
        a, b = rng.randint(3, 15), rng.randint(2, 9)
        c = rng.randint(1, a * b - 1)
        values = {"a": a, "b": b, "c": c, "ab": a * b, "r": answer(a, b, c)}
        rows.append({"messages": [
            {"role": "system", "content": "You solve grade-school math word problems."},
            {"role": "user", "content": question.format(**values)},
            {"role": "assistant", "content": working.format(**values) + f"\n#### {values['r']}"}]})
    return rows


_GOOD = ["a warm , funny film", "a moving and honest story", "sharp writing and a great cast", "a joy to watch",
         "beautifully shot and well acted", "clever , tender and often hilarious"]
_BAD = ["the plot goes nowhere", "a dull , lifeless mess", "badly acted and far too long", "a tired , clumsy script",
        "boring from start to finish", "flat jokes and a thin story"]
_ENDS = ["", " , slowly", " with a big heart", " in every scene", " for most of its running time", " , sadly"]


def review_rows(seed: int, n: int) -> list[dict]:
    """Review rows in the text,label layout (tests/fixtures/data/text_label.csv): positive / negative. SST-2's
    own 0/1 labels are not used: detection reads a 0/1 answer as a number (numeric, not classification)."""
    rng = random.Random(seed)
    rows: list[dict] = []
    seen: set[str] = set()
    while len(rows) < n:
        label = rng.randint(0, 1)
        sentence = rng.choice(_GOOD if label else _BAD) + rng.choice(_ENDS) + " "
        if sentence not in seen:  # equal prompts would be one group in the split: keep them distinct
            seen.add(sentence)
            rows.append({"text": sentence.strip(), "label": "positive" if label else "negative"})
    return rows


_PRIMES = [7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47]


def preference_rows(seed: int, n: int) -> list[dict]:
    """prompt/chosen/rejected pairs (TRL's preference format): a right answer beside a wrong one."""
    rng = random.Random(seed)
    rows: list[dict] = []
    seen: set[str] = set()
    while len(rows) < n:
        p, q = rng.sample(_PRIMES, 2)
        if rng.random() < 0.5:
            prompt = f"Is {p * q} a prime number?"
            chosen, rejected = f"No: {p * q} = {min(p, q)} x {max(p, q)}.", f"Yes, {p * q} is prime."
        else:
            prompt = f"Is {p} a prime number?"
            chosen, rejected = f"Yes: {p} has no divisors but 1 and itself.", f"No, {p} is even."
        if prompt not in seen:
            seen.add(prompt)
            rows.append({"prompt": prompt, "chosen": chosen, "rejected": rejected})
    return rows


def _jsonl(rows: list[dict], path: Path) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _csv(rows: list[dict], path: Path) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


GENERATED = f"{N_GENERATED} look-alike rows generated by bench/suite.py (seeded)"
TASKS = [
    Task("tool-calls", "task-agent",
         lambda d, s: (FIXTURES / "llama_task_agent_chat.jsonl", "tests/fixtures, 40 rows"), heldout=8),
    Task("multiple-choice", "custom",
         lambda d, s: (_jsonl(medqa_rows(s, N_GENERATED), d / "medqa.jsonl"), GENERATED), max_new_tokens=32),
    Task("math", "custom",
         lambda d, s: (_jsonl(gsm8k_rows(s, N_GENERATED), d / "gsm8k_chat.jsonl"), GENERATED), max_new_tokens=64),
    Task("classification", "custom",
         lambda d, s: (_csv(review_rows(s, N_GENERATED), d / "text_label.csv"), GENERATED), max_new_tokens=16),
    Task("free-text", "custom", lambda d, s: (MEDICAL_SAMPLE, "medical-reasoning's shipped sample, 160 rows"),
         max_new_tokens=192),
    Task("preference", "custom",
         lambda d, s: (_jsonl(preference_rows(s, N_GENERATED), d / "preference.jsonl"), GENERATED),
         max_new_tokens=48),
]


# --------------------------------------------------------------------------- the trivial baseline


def trivial_replies(train: list[dict], heldout: list[dict], task_type: str | None) -> dict[str, list[str]]:
    """Model-free answers to every held-out row: the most frequent training answer (for multiple choice its
    option letter, the majority class), and each row's prompt copied back."""
    from tunecrew.scenarios.task_types import choice_letter

    answers = [r["messages"][-1]["content"] for r in train]
    if task_type == "multiple-choice":
        letters = Counter(x for a in answers if (x := choice_letter(a)))
        majority = f"The answer is {letters.most_common(1)[0][0]}." if letters else ""
    else:
        majority = Counter(answers).most_common(1)[0][0] if answers else ""
    return {"most frequent training answer": [majority] * len(heldout),
            "prompt copied": [r["messages"][-2]["content"] for r in heldout]}


def trivial_baseline(scenario_name: str, data: str, heldout: int, seed: int, task_type: str | None = None,
                     run_dir: Path | None = None) -> tuple[float | None, str | None]:
    """The best trivial baseline's primary metric and its name, with the run's own scorer on the run's own
    held-out rows: runs/<id>/data/ when the run wrote them (the crew may have sampled fewer held-out rows to
    fit its evaluation time), else the same split built again."""
    from tunecrew.scenarios.dataset import with_data
    from tunecrew.scenarios.registry import load_scenario
    from tunecrew.scenarios.task_types import specialise
    from tunecrew.tools.evaluate import score_replies
    from tunecrew.tools.rows import load_rows
    from tunecrew.tools.run_dir import RunDir
    from tunecrew.tools.scenario import ScenarioData

    scenario = with_data(load_scenario(scenario_name), data, None, float(heldout))
    assert scenario.build_data is not None
    rows = scenario.build_data(seed)
    if run_dir is not None and RunDir(run_dir).heldout_data.exists():
        files = RunDir(run_dir)
        rows = ScenarioData(train=load_rows(files.train_data), heldout=load_rows(files.heldout_data),
                            heldout_split=rows.heldout_split)
    scenario, detection = specialise(scenario, rows, task_type)
    assert scenario.scorer is not None
    best: tuple[float | None, str | None] = (None, None)
    for name, replies in trivial_replies(rows.train, rows.heldout, detection.task_type if detection else None).items():
        report = score_replies(rows.heldout, replies, scenario.scorer, split=rows.heldout_split, seed=seed,
                               primary_metric=scenario.primary_metric)
        if report.score is not None and (best[0] is None or report.score > best[0]):
            best = (report.score, name)
    return best


# --------------------------------------------------------------------------- one task


def detected_layout(scenario_name: str, data: str, heldout: int, seed: int) -> str | None:
    """The layout (and format) detected in the user's file, from the notes of reading it as the run does."""
    from tunecrew.scenarios.dataset import with_data
    from tunecrew.scenarios.registry import load_scenario

    scenario = with_data(load_scenario(scenario_name), data, None, float(heldout))
    assert scenario.build_data is not None
    notes = scenario.build_data(seed).notes
    layout = next((n.removeprefix("layout: ").split(" (")[0] for n in notes if n.startswith("layout: ")), None)
    fmt = next((n.removeprefix("columns: ").split(" ")[0] for n in notes if n.startswith("columns: ")), None)
    return f"{layout} ({fmt})" if layout and fmt else layout or fmt


def summarise(result: Result, task: Task, data: Path, run_dir: Path, seed: int) -> None:
    """Fill `result` from a run's folder (run.json, the ledger, baseline_eval.json): also usable on the
    kept --runs-dir folders of a suite that was stopped."""
    from tunecrew.memory.ledger import Ledger
    from tunecrew.tools.contracts import EvalReport
    from tunecrew.tools.diagnose import best_attempt, is_accepted
    from tunecrew.tools.run_dir import RunDir

    files = RunDir(run_dir)
    spec, records = files.read_spec(), Ledger(files.ledger).read()
    result.task_type, result.evidence = spec.task_type, spec.task_evidence
    result.attempts, result.methods = len(records), [r.config.method for r in records]
    result.steps = [r.result.steps for r in records]
    scored = [r for r in records if r.score is not None]
    # The run's own best (tools/diagnose.best_attempt): what report, export and serve hand back, so an
    # attempt the verdict rejected is never the row's "best", however it scored.
    best = best_attempt(records) or (max(scored, key=lambda r: r.score or 0.0) if scored else None)
    accepted = best is not None and is_accepted(best)
    first = records[0] if records else None
    # The records' profile is of the run's own train.jsonl (already chat rows): the user's file's layout
    # is in the notes of reading it, which no run file keeps, so the same rows are read again here.
    result.layout = detected_layout(task.scenario, str(data), task.heldout, seed)
    if first is not None:
        result.domain = first.domain.domain if first.domain else None
    if best is not None and best.eval is not None:
        result.metric = best.eval.primary_metric
        if accepted:
            result.best = best.score
        else:
            result.rejected_best = best.score
        result.split, result.samples = best.eval.split, best.eval.samples_of(best.eval.primary_metric)
    if files.baseline.exists():
        base = EvalReport.model_validate_json(files.baseline.read_text(encoding="utf-8"))
        result.base, result.metric = base.score, result.metric or base.primary_metric
        result.split = result.split or base.split
        result.samples = result.samples or base.samples_of(base.primary_metric)
    result.trivial, result.trivial_kind = trivial_baseline(task.scenario, str(data), task.heldout, seed,
                                                           spec.task_type, run_dir)
    if not records:
        result.error = "no attempt finished within the budget"
    elif best is None:  # trained (or tried to) but nothing was scored: say why, not just "-"
        last = records[-1].result
        why = (last.error or "").strip().split("\n")[0][:120]
        result.error = f"no attempt scored (training {last.status}: {why})"


def run_task(task: Task, args: argparse.Namespace, root: Path) -> Result:
    from tunecrew.app.runner import RunOptions, run
    from tunecrew.scenarios.registry import load_scenario

    scenario = load_scenario(task.scenario)
    if task.max_new_tokens is not None:
        scenario = replace(scenario, max_new_tokens=task.max_new_tokens)

    started = time.monotonic()
    data_dir = root / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    path, origin = task.make_data(data_dir, args.seed)
    result = Result(kind=task.kind, dataset=f"{path.name} ({origin})", seed=args.seed,
                    max_new_tokens=scenario.max_new_tokens)
    try:  # before the run too: a run that fails still has its trivial baseline in the table
        result.trivial, result.trivial_kind = trivial_baseline(task.scenario, str(path), task.heldout, args.seed)
        outcome = run(RunOptions(scenario=scenario, base_model=args.base_model, data=str(path),
                                 heldout=float(task.heldout), runs_dir=root / "runs", run_id=f"suite-{task.kind}",
                                 use_memory=False, quiet=True, threads=args.threads, seed=args.seed,
                                 max_attempts=args.max_attempts, budget_minutes=args.budget_minutes))
        summarise(result, task, path, outcome.run_dir, args.seed)
    except Exception as exc:  # one task's failure is a row of the table, not the suite's end
        result.error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''}"
    result.wall_minutes = (time.monotonic() - started) / 60
    return result


# --------------------------------------------------------------------------- output


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def render(results: list[Result]) -> str:
    headers = ["task kind", "dataset file", "detected layout", "task type (evidence)", "primary metric", "domain",
               "method", "attempts (steps)", "best", "base model", "trivial", "held-out split, n, seed", "wall min"]
    rows: list[list[object]] = []
    for r in results:
        kind = r.task_type or ("scenario's contract scorer" if r.kind == "tool-calls" and r.metric else "-")
        evidence = f"{kind} ({r.evidence[:70]}{'…' if len(r.evidence) > 70 else ''})" if r.evidence else kind
        trivial = f"{_num(r.trivial)} ({r.trivial_kind})" if r.trivial_kind else _num(r.trivial)
        best = _num(r.best) if r.best is not None or r.rejected_best is None else \
            f"none accepted ({_num(r.rejected_best)} rejected)"
        best = best if r.error is None else f"FAILED: {r.error[:90]}"
        rows.append([r.kind, r.dataset, r.layout or "-", evidence, r.metric or "-", r.domain or "-",
                     ",".join(dict.fromkeys(r.methods)) or "-",
                     f"{r.attempts} ({'+'.join(map(str, r.steps))})" if r.steps else str(r.attempts), best,
                     _num(r.base), trivial,
                     f"{r.split}, n={r.samples}, seed={r.seed}" if r.split else "-", f"{r.wall_minutes:.1f}"])
    return table(headers, rows)


def write_json(args: argparse.Namespace, results: list[Result]) -> None:
    args.out.write_text(json.dumps({"base_model": args.base_model, "budget_minutes": args.budget_minutes,
                                    "max_attempts": args.max_attempts, "seed": args.seed,
                                    "results": [asdict(r) for r in results]}, indent=2), encoding="utf-8")


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base-model", default="smollm2-135m", help="a `tunecrew models` name, folder or hub id")
    parser.add_argument("--budget-minutes", type=float, default=3.0, help="--budget of each task's run")
    parser.add_argument("--max-attempts", type=int, default=2)
    parser.add_argument("--only", choices=[t.kind for t in TASKS], action="append",
                        help="run this task kind only (repeatable)")
    parser.add_argument("--seed", type=int, default=0, help="data generation, split and run seed")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, help="also write the results as JSON here")
    parser.add_argument("--runs-dir", type=Path, help="keep the run folders here (default: a temporary folder)")
    args = parser.parse_args()
    if args.budget_minutes <= 0 or args.max_attempts < 1:
        parser.error("--budget-minutes must be > 0 and --max-attempts >= 1")
    tasks = [t for t in TASKS if not args.only or t.kind in args.only]
    print(f"machine: {machine()}\nload before: {load()}")
    print(f"{args.base_model}, --budget {args.budget_minutes} min and at most {args.max_attempts} attempts per task, "
          f"seed {args.seed}, memory off, offline crew")
    results = []
    with tempfile.TemporaryDirectory(prefix="tunecrew-bench-suite-") as tmp:
        root = args.runs_dir or Path(tmp)
        for task in tasks:
            print(f"… {task.kind}", flush=True)
            results.append(run_task(task, args, root))
            if args.out:  # after every task: a suite stopped halfway keeps what it measured
                write_json(args, results)
            r = results[-1]
            print(f"  {r.kind}: best {_num(r.best)}, base {_num(r.base)}, trivial {_num(r.trivial)}, "
                  f"{r.attempts} attempts, {r.wall_minutes:.1f} min{'; ' + r.error if r.error else ''}", flush=True)
    print()
    print(render(results))
    print(f"load after: {load()}")
    if args.out:
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
