"""The synthetic task-agent dataset: sizes, determinism, disjoint held-out pools, no leaks."""

from __future__ import annotations

import collections
import json

import pytest

from tunecrew.scenarios.task_agent import data as task_data
from tunecrew.scenarios.task_agent.contract import parse_reply
from tunecrew.scenarios.task_agent.data import (
    NOVEL_TEMPLATES,
    TRAIN_TEMPLATES,
    TaskAgentData,
    generate,
    reply_stats,
    write,
)
from tunecrew.tools.rows import load_rows
from tunecrew.tools.splits import leak_check, normalize_prompt


@pytest.fixture(scope="module")
def data() -> TaskAgentData:
    return generate(seed=0)


def _prompt(row: dict) -> str:
    return row["messages"][0]["content"]


def _reply(row: dict) -> str:
    return row["messages"][1]["content"]


def _titles(rows: list[dict]) -> set[str]:
    return {p.args["title"] for p in map(parse_reply, map(_reply, rows)) if "title" in p.args}


def test_sizes_and_row_shape(data: TaskAgentData) -> None:
    assert len(data.train) >= 400 and len(data.heldout) >= 50
    for row in data.train:
        assert set(row) == {"messages"}
        assert [m["role"] for m in row["messages"]] == ["user", "assistant"]
    for row in data.heldout:
        assert set(row) == {"messages", "group"}


def test_custom_sizes() -> None:
    small = generate(seed=3, n_train=50, n_heldout=10)
    assert (len(small.train), len(small.heldout)) == (50, 10)
    with pytest.raises(ValueError, match="n_train"):
        generate(n_train=0)


def test_deterministic_per_seed(data: TaskAgentData) -> None:
    again = generate(seed=0)
    assert again.train == data.train and again.heldout == data.heldout
    other = generate(seed=1)
    assert other.train != data.train


def test_both_groups_about_half(data: TaskAgentData) -> None:
    groups = collections.Counter(row["group"] for row in data.heldout)
    assert set(groups) == {"trained_phrasing", "novel_phrasing"}
    assert abs(groups["trained_phrasing"] - groups["novel_phrasing"]) <= 2


def test_every_reply_parses_and_kinds_are_balanced(data: TaskAgentData) -> None:
    for row in data.train + data.heldout:
        parsed = parse_reply(_reply(row))
        assert parsed.kind != "invalid", (row, parsed.error)
    stats = reply_stats(data.train)
    assert set(stats) == {"add_task", "list_tasks", "summarize_tasks", "complete_task", "final"}
    assert max(stats.values()) - min(stats.values()) <= len(data.train) * 0.05
    assert set(reply_stats(data.heldout)) == set(stats)


def test_args_vary(data: TaskAgentData) -> None:
    parsed = [parse_reply(_reply(r)) for r in data.train]
    assert {p.args.get("priority") for p in parsed} >= {"low", "medium", "high"}
    assert {p.args.get("status") for p in parsed if p.tool == "list_tasks"} == {None, "open", "done", "all"}
    assert len({p.args["due"] for p in parsed if "due" in p.args}) > 30
    finals = {p.analysis for p in parsed if p.kind == "final"}
    assert len(finals) == 3  # greeting, thanks, out of scope


def test_key_value_is_in_prompt_and_analysis(data: TaskAgentData) -> None:
    for row in data.train + data.heldout:
        parsed = parse_reply(_reply(row))
        for name in ("title", "due", "priority"):
            if name in parsed.args:
                assert parsed.args[name] in _prompt(row), row
                assert parsed.args[name] in parsed.analysis, row


def test_replies_are_short(data: TaskAgentData) -> None:
    assert max(len(_reply(r)) for r in data.train) < 240


def test_heldout_titles_never_seen_in_training(data: TaskAgentData) -> None:
    train_titles, heldout_titles = _titles(data.train), _titles(data.heldout)
    assert heldout_titles and train_titles
    assert not train_titles & heldout_titles
    train_text = "\n".join(_prompt(r) for r in data.train)
    for title in heldout_titles:
        assert title not in train_text
    for group in ("trained_phrasing", "novel_phrasing"):
        assert _titles([r for r in data.heldout if r["group"] == group])


def test_novel_templates_are_disjoint_and_only_in_novel_rows(data: TaskAgentData) -> None:
    assert set(TRAIN_TEMPLATES) == set(NOVEL_TEMPLATES)
    for intent in TRAIN_TEMPLATES:
        assert not set(TRAIN_TEMPLATES[intent]) & set(NOVEL_TEMPLATES[intent]), intent
    # A fixed phrase of each novel template never occurs in a training prompt.
    markers = ["don't let me forget", "jot this down", "flag it", "importance", "anything on my plate",
               "which to-dos", "pull up", "recap", "digest", "workload", "boil my task", "cross", "wrapped up",
               "consider", "taken care of", "greetings from", "checking in", "appreciate", "many thanks",
               "poem", "population", "tallest", "compute", "how do you say", "stick", "to-do for"]
    train_text = "\n".join(_prompt(r) for r in data.train)
    for marker in markers:
        assert marker not in train_text, marker
    novel_text = "\n".join(_prompt(r) for r in data.heldout if r["group"] == "novel_phrasing")
    assert sum(marker in novel_text for marker in markers) >= 8


def test_no_heldout_prompt_in_training(data: TaskAgentData) -> None:
    train = {normalize_prompt(_prompt(r)) for r in data.train}
    assert not any(normalize_prompt(_prompt(r)) in train for r in data.heldout)
    heldout = [normalize_prompt(_prompt(r)) for r in data.heldout]
    assert len(set(heldout)) == len(heldout)


def test_leak_check_passes_and_catches_planted_prompt(data: TaskAgentData) -> None:
    check = leak_check(data.train, data.heldout)
    assert check.passed and check.checked == len(data.heldout)

    planted = [*data.heldout, data.train[5]]
    check = leak_check(data.train, planted)
    assert not check.passed and check.exact_overlap == 1
    assert _prompt(data.train[5])[:40] in check.examples[0]

    near = {"messages": [{"role": "user", "content": "  " + _prompt(data.train[7]).upper() + "!!"},
                         {"role": "assistant", "content": "x"}]}
    check = leak_check(data.train, [*data.heldout, near])
    assert (check.exact_overlap, check.near_overlap) == (0, 1)


def test_heldout_too_large_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(task_data, "_MAX_TRIES", 1)
    monkeypatch.setitem(task_data.NOVEL_TEMPLATES, "summarize", ("sum up my tasks",))
    monkeypatch.setattr(task_data, "_DECORATED", set())
    with pytest.raises(ValueError, match=r"no unused \w+ prompt left for intent"):
        generate(seed=0, n_train=200, n_heldout=60)


def test_write_round_trip(tmp_path, data: TaskAgentData) -> None:
    paths = write(data, tmp_path / "out")
    assert load_rows(paths["train"]) == data.train
    assert load_rows(paths["heldout"]) == data.heldout
    first = json.loads(paths["heldout"].read_text(encoding="utf-8").splitlines()[0])
    assert first["group"] in ("trained_phrasing", "novel_phrasing")
