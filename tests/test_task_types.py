"""Each task measured the way it must be: multiple choice by letter, math by the number,
classification by accuracy beside the majority-class baseline, free text by answer F1.

Rows are look-alikes of the published formats (MedQA, GSM8K in OpenAI chat format, a yes/no/maybe
set, Alpaca), generated here.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tunecrew.agents.answers import TuningBrief
from tunecrew.scenarios.dataset import score_reply, with_data
from tunecrew.scenarios.registry import load_scenario
from tunecrew.scenarios.task_types import (
    choice_letter,
    detect_task_type,
    final_number,
    label_scorer,
    reply_letter,
    score_choice,
    score_number,
    specialise,
)
from tunecrew.tools.evaluate import score_replies


def _chat(prompt: str, answer: str) -> dict:
    return {"messages": [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]}


def medqa_rows(n: int = 40) -> list[dict]:
    letters = "ABCDE"
    return [{"question": f"A {20 + i}-year-old presents with fever and a rash. Most likely cause?",
             "options": {letter: f"Cause {letter}{i}" for letter in letters},
             "answer": f"Cause {letters[i % 5]}{i}", "answer_idx": letters[i % 5], "meta_info": "step1"}
            for i in range(n)]


def gsm8k_rows(n: int = 40) -> list[dict]:
    return [_chat(f"Tom has {i} apples and buys {i + 3} more. How many?",
                  f"He has {i} + {i + 3} = {2 * i + 3} apples.\n#### {2 * i + 3}") for i in range(n)]


def yes_no_rows(n: int = 40) -> list[dict]:
    labels = ["yes"] * 6 + ["no"] * 3 + ["maybe"]
    return [_chat(f"Does treatment {i} reduce mortality?", labels[i % 10]) for i in range(n)]


def alpaca_rows(n: int = 40) -> list[dict]:
    return [_chat(f"Write a sentence about topic {i}.", f"Topic {i} is interesting because of reason {i * 7}.")
            for i in range(n)]


def _converted(tmp_path: Path, rows: list[dict], name: str) -> list[dict]:
    path = tmp_path / name
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    data = with_data(load_scenario("custom"), str(path)).build_data(0)
    return data.train + data.heldout


def test_medqa_options_are_rendered_and_the_letter_leads_the_answer(tmp_path):
    rows = _converted(tmp_path, medqa_rows(), "medqa.jsonl")
    prompt, answer = rows[0]["messages"][-2]["content"], rows[0]["messages"][-1]["content"]
    assert "\nA. Cause A" in prompt and "\nE. Cause E" in prompt  # before: the options were dropped
    assert answer.split(".")[0] in "ABCDE" and choice_letter(answer) == answer[0]
    detection = detect_task_type(rows)
    assert detection.task_type == "multiple-choice" and "lettered options" in detection.evidence


@pytest.mark.parametrize(("rows", "kind", "metric"), [
    (gsm8k_rows(), "numeric", "answer_accuracy"), (yes_no_rows(), "classification", "answer_accuracy"),
    (alpaca_rows(), "free-text", "answer_f1"),
])
def test_each_kind_of_data_is_detected_with_its_evidence(rows, kind, metric):
    detection = detect_task_type(rows)
    assert detection.task_type == kind and detection.primary_metric == metric and detection.evidence


def test_a_wrong_number_no_longer_passes():
    expected = "Natalia sold 48/2 = 24 clips in May... 48+24 = 72\n#### 72"
    wrong = "She sold 48/2 = 24 clips in May... 48+24 = 27\n#### 27"
    assert score_reply(expected, wrong).values["answer_f1"] > 0.5  # token F1 called it mostly right
    assert score_number(expected, wrong).values["answer_accuracy"] == 0.0
    for right in ("#### 72", "The answer is 72.", "\\boxed{72}", "so 72 clips in all: 72", "#### 72.0"):
        assert score_number(expected, right).values["answer_accuracy"] == 1.0, right
    assert final_number("1,234 dollars", strict=False) == 1234.0
    assert score_number(expected, "I do not know").values == {"answer_accuracy": 0.0, "format_compliance": 0.0}


def test_option_letters_in_references_and_replies():
    assert choice_letter("D. Parvovirus B19") == "D" and choice_letter("(B)") == "B" and choice_letter("C") == "C"
    assert choice_letter("Parvovirus B19") is None
    assert reply_letter("Let me think. The answer is (C) because ...") == "C"
    assert reply_letter("<think>A is wrong, B too</think>\nD. Parvovirus B19") == "D"
    assert score_choice("D. Parvovirus B19", "D").values["answer_accuracy"] == 1.0
    assert score_choice("D. Parvovirus B19", "Answer: B").values["answer_accuracy"] == 0.0


def test_classification_reports_the_majority_baseline_beside_accuracy():
    rows = yes_no_rows()
    detection = detect_task_type(rows)
    assert detection.majority == "yes" and set(detection.labels) == {"yes", "no", "maybe"}
    scorer = label_scorer(detection.labels, detection.majority)
    heldout = yes_no_rows(20)
    always_yes = ["Yes."] * len(heldout)
    report = score_replies(heldout, always_yes, scorer, split="t", seed=0, primary_metric="answer_accuracy")
    # A model that always says the majority class scores exactly the baseline: no better than trivial.
    assert report.metrics["answer_accuracy"] == report.metrics["majority_baseline"] == pytest.approx(0.6)
    assert scorer("no", "The answer is no, because the trial was small.").values["answer_accuracy"] == 1.0


def test_empty_references_are_excluded_and_counted():
    rows = [_chat("q1", "yes"), _chat("q2", ""), _chat("q3", "no"), _chat("q4", "  ")]
    report = score_replies(rows, ["yes", "", "yes", ""], score_reply, split="t", seed=0, primary_metric="answer_f1")
    # Before: an empty reply against an empty reference scored 1.0 and counted.
    assert report.samples == 2 and report.excluded == 2 and report.metrics["answer_f1"] == 0.5


def test_a_dataset_run_records_its_task_type_and_resume_scores_the_same(tmp_path, tiny_model):
    from tunecrew.app.console import CrewConsole
    from tunecrew.app.runner import RunOptions, prepare, reopen

    path = tmp_path / "gsm8k.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in gsm8k_rows(60)), encoding="utf-8")
    ctx = prepare(RunOptions(scenario=load_scenario("custom"), data=str(path), base_model=tiny_model,
                             runs_dir=tmp_path / "runs", use_memory=False, quiet=True), CrewConsole(quiet=True))
    assert ctx.spec.task_type == "numeric" and ctx.scenario.primary_metric == "answer_accuracy"
    assert ctx.scenario.scorer("#### 72", "#### 27").values["answer_accuracy"] == 0.0
    again = reopen(ctx.run, CrewConsole(quiet=True))
    assert again.scenario.primary_metric == "answer_accuracy"

    forced = prepare(RunOptions(scenario=load_scenario("custom"), data=str(path), base_model=tiny_model,
                                runs_dir=tmp_path / "runs", use_memory=False, quiet=True, task_type="free-text"),
                     CrewConsole(quiet=True))
    assert forced.spec.task_type == "free-text" and "detection said numeric" in (forced.spec.task_evidence or "")


def test_the_task_agent_keeps_its_own_contract_scorer():
    scenario = load_scenario("task-agent")
    from tunecrew.tools.scenario import ScenarioData

    same, detection = specialise(scenario, ScenarioData(train=alpaca_rows(), heldout=[], heldout_split='t'))
    assert same is scenario and detection is None


def test_preference_pairs_keep_the_users_rejected_reply_and_the_policy_trains_dpo_on_them(tmp_path):
    """Before: prompt/chosen/rejected was trained as SFT on `chosen`, and method=dpo paired made-up
    wrong replies instead of the user's (issue 15 item 4)."""

    from test_policy import brief_of

    from tunecrew.agents import policy
    from tunecrew.tools.contracts import DataRecipe
    from tunecrew.tools.profile import profile_rows
    from tunecrew.tools.recipes import apply_recipe

    rows = [{"prompt": f"Explain idea {i} briefly.", "chosen": f"Idea {i} means the careful answer {i}.",
             "rejected": f"whatever, idea {i} is dumb"} for i in range(40)]
    converted = _converted(tmp_path, rows, "pairs.jsonl")
    assert all(r["rejected"].startswith("whatever, idea") for r in converted)
    kind, pairs, _ = apply_recipe(converted, DataRecipe(negatives="dpo"), seed=0)
    assert kind == "pairs" and len(pairs) == len(converted)
    assert all(p["rejected"][0]["content"] == r["rejected"] for p, r in zip(pairs, converted, strict=True))
    _, nat, _ = apply_recipe(converted, DataRecipe(negatives="nat", negative_ratio=1.0), seed=0)
    negatives = [r["messages"][-1]["content"] for r in nat if r.get("negative")]
    assert negatives and all(n.startswith("whatever, idea") for n in negatives)  # the user's, marked

    profile = profile_rows(converted, "pairs.jsonl")
    assert profile.extra["preference_pairs"] == len(converted)
    brief = brief_of(rows=len(converted), params=134_000_000, random_init=False)
    brief["profile"]["extra"] = {"preference_pairs": len(converted)}
    config, why = policy.initial_config(TuningBrief.model_validate(brief))
    assert config.method == "dpo" and config.data.negatives == "dpo" and "preference pairs" in why
    assert config.learning_rate == policy.DPO_LORA_LR


def test_bare_numeric_class_codes_are_classification_and_computed_answers_stay_numeric():
    """SST-2 ships its labels as 0/1: a handful of bare integers is a class code, not a sum to compute."""
    from tunecrew.scenarios.task_types import detect_task_type

    sst2 = [_chat(f"review {i}: {'great' if i % 3 else 'dull'} film", "1" if i % 3 else "0") for i in range(40)]
    found = detect_task_type(sst2)
    assert found.task_type == "classification" and set(found.labels) == {"0", "1"} and found.majority == "1"
    gsm = [_chat(f"{i} apples and {i + 3} more?", f"{i} + {i + 3} = {2 * i + 3}\n#### {2 * i + 3}") for i in range(40)]
    assert detect_task_type(gsm).task_type == "numeric"
