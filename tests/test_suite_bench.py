"""bench/suite.py without training: each of its datasets is read as the task type it stands for, and its
trivial baseline agrees with the project's own majority-class baseline on the same held-out rows."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from tunecrew.scenarios.dataset import with_data
from tunecrew.scenarios.registry import load_scenario
from tunecrew.scenarios.task_types import choice_letter, specialise
from tunecrew.tools.evaluate import score_replies

from factories import load_bench

suite = load_bench("suite", "suite_bench")
EXPECTED = {  # task kind -> (task type detected, layout detected); None: the scenario's own scorer
    "tool-calls": (None, "openai-chat"),
    "multiple-choice": ("multiple-choice", "multiple-choice"),
    "math": ("numeric", "openai-chat"),
    "classification": ("classification", "text-label"),
    "free-text": ("free-text", "question-reasoning-answer"),
    "preference": ("free-text", "preference"),
}


def _rows(kind: str, folder: Path):
    task = next(t for t in suite.TASKS if t.kind == kind)
    path, _ = task.make_data(folder, 0)
    scenario = with_data(load_scenario(task.scenario), str(path), None, float(task.heldout))
    data = scenario.build_data(0)
    return task, path, data, *specialise(scenario, data)


@pytest.mark.parametrize("kind", sorted(EXPECTED))
def test_each_dataset_is_read_as_its_task_type(kind: str, tmp_path: Path) -> None:
    task, path, data, _, detection = _rows(kind, tmp_path)
    task_type, layout = EXPECTED[kind]
    assert (detection.task_type if detection else None) == task_type
    assert any(note == f"layout: {layout} (docs/data-formats.md)" for note in data.notes), data.notes
    assert suite.detected_layout(task.scenario, str(path), task.heldout, 0).startswith(f"{layout} (")
    assert len(data.heldout) == task.heldout and len(data.train) >= 30


def test_classification_trivial_baseline_is_the_majority_class(tmp_path: Path) -> None:
    task, path, data, scenario, _ = _rows("classification", tmp_path)
    score, name = suite.trivial_baseline(task.scenario, str(path), task.heldout, 0)
    # The label scorer's own majority_baseline, computed on the same rows whatever the reply.
    own = score_replies(data.heldout, [""] * len(data.heldout), scenario.scorer, split="s", seed=0,
                        primary_metric="answer_accuracy").metrics["majority_baseline"]
    assert name == "most frequent training answer"
    assert score == pytest.approx(own)
    assert 0.0 < score < 1.0


def test_multiple_choice_trivial_baseline_is_the_majority_letter(tmp_path: Path) -> None:
    task, path, data, _, _ = _rows("multiple-choice", tmp_path)
    letters = Counter(choice_letter(r["messages"][-1]["content"]) for r in data.train)
    majority = letters.most_common(1)[0][0]
    expected = sum(choice_letter(r["messages"][-1]["content"]) == majority for r in data.heldout) / len(data.heldout)
    score, _ = suite.trivial_baseline(task.scenario, str(path), task.heldout, 0)
    assert score == pytest.approx(expected)


def test_a_failed_task_is_a_row_of_the_table() -> None:
    failed = suite.Result(kind="math", dataset="gsm8k_chat.jsonl", trivial=0.0, trivial_kind="prompt copied",
                          error="DataError: --heldout: too slow")
    text = suite.render([failed])
    assert "FAILED: DataError: --heldout: too slow" in text and "0.000 (prompt copied)" in text


def test_a_task_whose_attempts_were_all_rejected_has_no_best() -> None:
    """The row's best is the run's own (accepted) best: a rejected attempt's score is shown as rejected."""
    rejected = suite.Result(kind="free-text", dataset="sample.jsonl", base=0.008, rejected_best=0.003)
    accepted = suite.Result(kind="math", dataset="gsm8k_chat.jsonl", base=0.0, best=0.417)
    text = suite.render([rejected, accepted])
    assert "none accepted (0.003 rejected)" in text and "0.417" in text
