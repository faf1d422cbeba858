"""Judge calibration (issue 15 item 7): the calibration set, AUROC, the offline judge ranking right
replies above subtly wrong, empty and garbage ones on every task type, and an LLM judge's means
reaching the report only with its calibration beside them."""

from __future__ import annotations

import asyncio

import pytest
from test_judge import PERSONA, JudgeServer, verdict

from tunecrew.agents.judges import OfflineJudgeClient, heuristic_scores
from tunecrew.scenarios.calibration import SCORERS
from tunecrew.tools.judge import OFFLINE_JUDGE, JudgePanel, JudgeSample, compact, rubric_of
from tunecrew.tools.judge_calibration import (
    CALIBRATION_TYPES,
    KINDS,
    WRONG_KINDS,
    auroc,
    calibrate,
    calibration_items,
    spread,
)
from tunecrew.tools.report import judge_blocks, render_markdown

VERDICT = {"task-agent": "action_exact_match", "multiple-choice": "answer_accuracy", "numeric": "answer_accuracy",
           "classification": "answer_accuracy"}


def run(coro):
    return asyncio.run(coro)


def test_auroc_counts_ties_half_and_needs_both_sides():
    assert auroc([3, 2], [1, 2]) == pytest.approx((1 + 1 + 1 + 0.5) / 4)
    assert auroc([5, 5], [5]) == 0.5 and auroc([9], [1, 2]) == 1.0 and auroc([1], [9]) == 0.0
    assert auroc([], [1]) is None


@pytest.mark.parametrize("task_type", CALIBRATION_TYPES)
def test_the_calibration_set_is_fixed_balanced_and_its_labels_hold_under_the_types_own_scorer(task_type):
    items = calibration_items(task_type)
    assert items == calibration_items(task_type)  # built by code, the same on every call
    prompts = {it.prompt for it in items}
    held = {it.prompt for it in items if it.split == "held-out"}
    assert len(prompts) >= 10 and len(held) >= 3 and {it.kind for it in items} == set(KINDS)
    assert [it.sample.index for it in items] == list(range(len(items)))
    for it in items:  # a mislabelled reply would make every AUROC below meaningless
        values = SCORERS[task_type](it.sample.reference, it.sample.reply).values
        if task_type in VERDICT:
            assert values[VERDICT[task_type]] == float(it.kind == "right"), (it.variant, it.sample.reply)
        if it.kind == "empty":
            assert not it.sample.reply.strip()
    assert len(spread(items, 8)) == 8 and {it.kind for it in spread(items, 8)} == set(KINDS)


@pytest.mark.parametrize("task_type", CALIBRATION_TYPES)
def test_the_offline_judge_ranks_right_above_every_kind_of_wrong_on_accuracy(task_type):
    """Before the fix (token overlap) accuracy AUROC right vs subtly wrong was 0.62 on the task agent,
    0.50 on numeric and 0.57 on free text (docs/judge.md); 0.9 is the bar, on the held-out prompts too."""
    report = run(calibrate({OFFLINE_JUDGE: OfflineJudgeClient(SCORERS[task_type])}, calibration_items(task_type)))
    assert report.unparsed == {OFFLINE_JUDGE: 0}
    for split in ("all", "held-out"):
        for versus in (*WRONG_KINDS, "all wrong"):
            cell = report.cell(OFFLINE_JUDGE, task_type, "accuracy", versus, split)
            assert cell is not None and cell.n_right >= 8 and cell.n_wrong >= 4
            assert cell.auroc is not None and cell.auroc >= 0.9, (split, versus, cell)
            assert cell.gap is not None and cell.gap > 3, (split, versus, cell)


@pytest.mark.parametrize("task_type", CALIBRATION_TYPES)
def test_empty_and_garbage_replies_never_score_high_on_clarity_or_completeness(task_type):
    """Before the fix a looping or random-token reply got clarity up to 10."""
    for it in calibration_items(task_type):
        if it.kind not in ("empty", "garbage"):
            continue
        s = heuristic_scores(it.sample.reference, it.sample.reply, it.sample.question, SCORERS[task_type])
        assert s["clarity"] <= 5 and s["completeness"] <= 3 and s["accuracy"] <= 2, (it.variant, it.sample.reply, s)


def test_an_llm_judges_means_come_with_its_calibration_measured_once_and_cached(tmp_path):
    """A judge that answers 8 whatever the reply agrees with itself perfectly and is worthless: the
    calibration says so (AUROC 0.50) beside its means, in the report, the rubric and what the Judge reads."""
    samples = [JudgeSample(index=i, question=f"add t{i}", reference=f'<analysis>Add t{i}.</analysis>'
                           f'<action>add_task(title="t{i}")</action>', reply="sure") for i in range(3)]
    cache = tmp_path / "judge_calibration.json"
    with JudgeServer(lambda m, q, r: verdict(8, 8, 8, 8)) as server:
        panel = JudgePanel({"lazy": server.client("lazy"), OFFLINE_JUDGE: OfflineJudgeClient()}, n=3)
        kwargs = {"seed": 0, "split": "held", "scorer": SCORERS["task-agent"], "task_type": "task-agent",
                  "cache": cache}
        base = run(panel.judge(samples, PERSONA, subject="base model", **kwargs))
        assert len(server.bodies) == 8 + 3  # the calibration slice, then the samples
        tuned = run(panel.judge(samples, PERSONA, subject="attempt 1", **kwargs))
        assert len(server.bodies) == 8 + 3 + 3  # calibrated once per run
        resumed = JudgePanel({"lazy": server.client("lazy"), OFFLINE_JUDGE: OfflineJudgeClient()}, n=3)
        again = run(resumed.judge(samples, PERSONA, subject="attempt 2", **kwargs))
        assert len(server.bodies) == 8 + 3 + 3 + 3  # a resumed run reads the cache
    assert cache.exists() and base.calibration == tuned.calibration == again.calibration
    assert "lazy calibration, accuracy AUROC right vs wrong replies: task-agent 0.50 (n=2+6)" in base.calibration
    assert f"{OFFLINE_JUDGE} calibration, accuracy AUROC right vs wrong replies: task-agent 1.00" in base.calibration
    assert "Calibration: lazy calibration" in rubric_of(tuned).explanation
    assert compact(tuned)["calibration"] == tuned.calibration
    text = render_markdown(judge_blocks([base, tuned]))
    assert "Calibration (AUROC 1.00: every right reply scored above every wrong one" in text
    assert "task-agent 0.50" in text
    grounded = {v.sample: v.scores for v in tuned.verdicts if v.judge == OFFLINE_JUDGE}
    assert all(s["accuracy"] == 1 for s in grounded.values())  # "sure" is no action, by the task's own scorer


def test_a_panel_of_offline_judges_only_costs_no_calibration_and_shows_none(tmp_path):
    panel = JudgePanel({OFFLINE_JUDGE: OfflineJudgeClient()}, n=2)
    samples = [JudgeSample(index=0, question="q", reference="B", reply="B")]
    report = run(panel.judge(samples, PERSONA, seed=0, subject="s", split="s", scorer=SCORERS["multiple-choice"],
                             task_type="multiple-choice", cache=tmp_path / "c.json"))
    assert report.calibration == "" and not (tmp_path / "c.json").exists()
    assert "Calibration" not in render_markdown(judge_blocks([report]))
