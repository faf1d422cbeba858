"""The evaluate tool: pure scoring of replies, then real greedy generation with the tiny model."""

from __future__ import annotations

import pytest

from tunecrew.tools.evaluate import (
    SampleScore,
    evaluate,
    generate,
    generate_cut,
    load_model,
    prompt_of,
    score_replies,
)

from conftest import THREADS


def _row(prompt: str, reply: str, group: str | None = None) -> dict:
    row = {"messages": [{"role": "user", "content": prompt}, {"role": "assistant", "content": reply}]}
    return {**row, "group": group} if group else row


def _exact(expected: str, got: str) -> SampleScore:
    ok = float(expected == got)
    return SampleScore(values={"exact": ok, "nonempty": float(bool(got))}, reason="" if ok else "differs")


# --------------------------------------------------------------------------- score_replies (pure)


def test_score_replies_averages_overall_and_per_group():
    rows = [_row("p1", "a", "seen"), _row("p2", "b", "seen"), _row("p3", "c", "novel"), _row("p4", "d", "novel")]
    report = score_replies(rows, ["a", "b", "c", "x"], _exact, split="heldout", seed=3, primary_metric="exact")
    assert report.split == "heldout" and report.seed == 3 and report.samples == 4
    assert report.metrics == {"exact": 0.75, "nonempty": 1.0}
    assert report.score == 0.75
    assert set(report.groups) == {"seen", "novel"}
    assert report.groups["seen"].samples == 2 and report.groups["seen"].metrics["exact"] == 1.0
    assert report.groups["novel"].metrics["exact"] == 0.5
    [failure] = report.failures
    assert ((failure.prompt, failure.expected, failure.got, failure.reason, failure.group)
            == ("p4", "d", "x", "differs", "novel"))


def test_score_replies_single_group_reports_no_groups():
    report = score_replies([_row("p", "a"), _row("q", "b")], ["a", "b"], _exact, split="s", seed=0,
                           primary_metric="exact")
    assert report.groups == {} and report.failures == [] and report.score == 1.0


def test_primary_metric_can_name_a_group_metric():
    rows = [_row("p1", "a", "trained_phrasing"), _row("p2", "b", "novel_phrasing")]
    report = score_replies(rows, ["a", "zz"], _exact, split="s", seed=0,
                           primary_metric="trained_phrasing/exact")
    assert report.metrics["exact"] == 0.5
    assert report.metrics["trained_phrasing/exact"] == 1.0
    assert report.score == 1.0


def test_unknown_primary_metric_raises_naming_the_choices():
    with pytest.raises(ValueError, match=r"nope.*exact"):
        score_replies([_row("p", "a")], ["a"], _exact, split="s", seed=0, primary_metric="nope")
    with pytest.raises(ValueError, match="missing/exact"):  # a group that is not in the split
        score_replies([_row("p", "a", "g1"), _row("q", "b", "g2")], ["a", "b"], _exact, split="s", seed=0,
                      primary_metric="missing/exact")


def test_failures_are_capped_and_long_replies_truncated():
    rows = [_row(f"p{i}", "right") for i in range(20)]
    report = score_replies(rows, ["w" * 900] * 20, _exact, split="s", seed=0, primary_metric="exact", max_failures=5)
    assert report.metrics["exact"] == 0.0
    assert [f.prompt for f in report.failures] == ["p0", "p1", "p2", "p3", "p4"]
    assert all(len(f.got) == 500 for f in report.failures)


def test_mismatched_lengths_raise():
    with pytest.raises(ValueError, match="2 held-out rows but 1 replies"):
        score_replies([_row("p", "a"), _row("q", "b")], ["a"], _exact, split="s", seed=0, primary_metric="exact")


def test_empty_split_is_an_empty_report():
    report = score_replies([], [], _exact, split="s", seed=0, primary_metric="exact")
    assert report.samples == 0 and report.metrics == {} and report.score is None


def test_task_agent_scorer_on_canonical_and_broken_replies(task_data):
    from tunecrew.scenarios.task_agent.scenario import score

    rows = task_data.heldout[:4]
    expected = [r["messages"][-1]["content"] for r in rows]
    perfect = score_replies(rows, expected, score, split="s", seed=0, primary_metric="tool_accuracy")
    assert perfect.metrics == {"format_compliance": 1.0, "tool_accuracy": 1.0, "action_exact_match": 1.0}
    broken = score_replies(rows, ["hello"] * 4, score, split="s", seed=0, primary_metric="tool_accuracy")
    assert broken.metrics["format_compliance"] == 0.0 and len(broken.failures) == 4


# --------------------------------------------------------------------------- real generation


SYSTEM = "You are a task-management assistant."
NEW_TOKENS = 16  # a few dozen ms a step on CPU: keeps per-sample generation cheap


@pytest.fixture(scope="module")
def base(tiny_model):
    return load_model(tiny_model, threads=THREADS)


@pytest.fixture(scope="module")
def prompts(task_data):
    return [prompt_of(r, SYSTEM) for r in task_data.heldout[:8]]


@pytest.mark.slow
def test_evaluate_untrained_model_on_heldout(base, task_data):
    from tunecrew.scenarios.task_agent.scenario import SCENARIO, score

    rows = task_data.heldout[:8]
    assert {r["group"] for r in rows} == {"trained_phrasing", "novel_phrasing"}
    report = evaluate(base, rows, score, system_prompt=SYSTEM, split="task-agent-heldout(seed=0)", seed=0,
                      primary_metric=SCENARIO.primary_metric, max_new_tokens=24, batch_size=8)
    assert report.samples == 8 and report.split == "task-agent-heldout(seed=0)" and report.seed == 0
    assert set(report.metrics) >= {"format_compliance", "tool_accuracy", "action_exact_match", SCENARIO.primary_metric}
    assert all(0.0 <= v <= 1.0 for v in report.metrics.values())
    assert report.score is not None
    assert sum(g.samples for g in report.groups.values()) == 8
    assert report.failures  # a random model does not speak the contract
    assert report.wall_seconds > 0 and report.generated_tokens_per_second


@pytest.mark.slow
def test_batched_generation_equals_per_sample(base, prompts):
    # Left padding + attention mask + position ids from the mask: a padded row must decode exactly
    # as it does alone. Prompts differ in length, so the batch of 8 is really padded.
    tok = base.tokenizer
    texts = [tok.apply_chat_template(p, tokenize=False, add_generation_prompt=True) for p in prompts]
    lengths = {len(tok(t, add_special_tokens=False)["input_ids"]) for t in texts}
    assert len(lengths) > 1
    batched = generate(base, prompts, max_new_tokens=NEW_TOKENS, batch_size=8)
    single = generate(base, prompts, max_new_tokens=NEW_TOKENS, batch_size=1)
    assert batched == single
    assert all(isinstance(r, str) for r in batched)


@pytest.mark.slow
def test_adapter_changes_the_replies(base, prompts, tiny_model, trained_adapter):
    tuned = load_model(tiny_model, trained_adapter, threads=THREADS)
    assert "no adapter" not in tuned.description and "no adapter" in base.description
    before = generate(base, prompts[:4], max_new_tokens=NEW_TOKENS, batch_size=4)
    after = generate(tuned, prompts[:4], max_new_tokens=NEW_TOKENS, batch_size=4)
    assert before != after


@pytest.mark.slow
def test_a_reply_the_scenario_rules_out_stops_there_and_the_rest_run_on(base, prompts):
    """generate_cut with a `viable` test: a rejected reply ends at the token that broke it, the
    others are exactly what plain generation writes, and the report counts the cut ones."""
    from tunecrew.scenarios.task_agent.scenario import SCENARIO, score

    full = generate(base, prompts, max_new_tokens=NEW_TOKENS, batch_size=8)

    def viable(text: str) -> bool:  # rules a reply out at its third visible character
        return len(text.strip()) < 3

    replies, cut = generate_cut(base, prompts, max_new_tokens=NEW_TOKENS, batch_size=8, viable=viable)
    long = {i for i, reply in enumerate(full) if not viable(reply)}
    assert long and cut == long
    for i, (reply, whole) in enumerate(zip(replies, full, strict=True)):
        assert whole.startswith(reply)  # the same greedy tokens, up to where it stopped
        if i in cut:
            assert not viable(reply) and len(reply) < len(whole)
        else:
            assert reply == whole
    rows = [{"messages": [*p[1:], {"role": "assistant", "content": "<analysis>x</analysis><final>y</final>"}]}
            for p in prompts]
    report = evaluate(base, rows, score, system_prompt=SYSTEM, split="s", seed=0, primary_metric="action_exact_match",
                      max_new_tokens=NEW_TOKENS, batch_size=8, viable=SCENARIO.reply_viable)
    plain = evaluate(base, rows, score, system_prompt=SYSTEM, split="s", seed=0, primary_metric="action_exact_match",
                     max_new_tokens=NEW_TOKENS, batch_size=8)
    assert report.metrics == plain.metrics and report.cut_replies > 0 and plain.cut_replies == 0
