"""tools/recipes.py: NAT-marked negatives, DPO pairs, negative makers, synthetic rows and their
quality filter, and the TrainConfig rules that tie a recipe to a method. All pure and fast."""

from __future__ import annotations

import asyncio
import json
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tunecrew.scenarios.task_agent.data import generate
from tunecrew.tools.contracts import DataRecipe, TrainConfig
from tunecrew.tools.evaluate import prompt_of
from tunecrew.tools.recipes import (
    DEFAULT_NAT_RATIO,
    NEGATIVE_MARKER,
    apply_recipe,
    corrupt_final,
    dpo_pairs,
    from_table,
    is_marked,
    keeps_values,
    llm_negative_replies,
    llm_paraphrase_rows,
    llm_synthetic_rows,
    nat_rows,
    quality_filter,
    reply_of,
    shuffle_reasoning,
    swap_reply,
    template_rows,
    truncate_reasoning,
    user_text,
)
from tunecrew.tools.splits import normalize_prompt
from tunecrew.tools.train import TrainJob
from tunecrew.tools.train_worker import build_rows

DATA = generate(seed=0, n_train=60, n_heldout=12)
SYSTEM = "You are a task assistant. Answer in tags."


def row(user: str, reply: str) -> dict:
    return {"messages": [{"role": "user", "content": user}, {"role": "assistant", "content": reply}]}


# --------------------------------------------------------------------------- NAT


def test_nat_keeps_positives_and_adds_two_marked_negatives_each():
    out = nat_rows(DATA.train, seed=0)
    positives = [r for r in out if not r.get("negative")]
    negatives = [r for r in out if r.get("negative")]
    assert positives == DATA.train  # unchanged, same order
    # The paper's 1:2; a row for which no second distinct wrong reply exists may get fewer.
    assert 1.8 * len(positives) <= len(negatives) <= DEFAULT_NAT_RATIO * len(positives)
    truth = {json.dumps(r["messages"][:-1]): reply_of(r) for r in DATA.train}
    for neg in negatives:
        assert is_marked(neg["messages"])
        assert neg["messages"][-2]["content"].endswith("\n\n" + NEGATIVE_MARKER)
        unmarked = neg["messages"][-2]["content"].removesuffix("\n\n" + NEGATIVE_MARKER)
        original = json.dumps([*neg["messages"][:-2], {**neg["messages"][-2], "content": unmarked}])
        assert reply_of(neg) != truth[original]  # a negative is never the right answer


def test_nat_fractional_ratio_is_met_on_average_and_seeded():
    a = nat_rows(DATA.train, ratio=0.5, seed=3)
    assert a == nat_rows(DATA.train, ratio=0.5, seed=3)
    negatives = sum(1 for r in a if r.get("negative"))
    assert 0.3 * len(DATA.train) <= negatives <= 0.7 * len(DATA.train)
    with pytest.raises(ValueError, match="negative_ratio"):
        nat_rows(DATA.train, ratio=0)


def test_a_positive_that_already_carries_the_marker_is_refused():
    bad = row(f"do it\n\n{NEGATIVE_MARKER}", "ok")
    with pytest.raises(ValueError, match="already contains the negative marker"):
        nat_rows([bad, *DATA.train[:3]])


texts = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=60)


@settings(max_examples=60, deadline=None)
@given(pairs=st.lists(st.tuples(texts, texts), min_size=1, max_size=12),
       ratio=st.floats(min_value=0.1, max_value=4.0), seed=st.integers(0, 2**16))
def test_property_no_negative_is_unmarked_and_inference_never_sees_the_marker(pairs, ratio, seed):
    rows = [row(u, r) for u, r in pairs if NEGATIVE_MARKER not in u]
    out = nat_rows(rows, ratio=ratio, seed=seed)
    originals = [json.dumps(r, sort_keys=True) for r in rows]
    for r in out:
        if r.get("negative"):
            assert is_marked(r["messages"])
        else:  # anything unflagged is an original row, byte for byte, and unmarked
            assert json.dumps(r, sort_keys=True) in originals
            assert not is_marked(r["messages"])
            # evaluation builds its prompt from the row as given: the positive, unmarked prompt
            assert all(NEGATIVE_MARKER not in m["content"] for m in prompt_of(r, SYSTEM))
    for r in dpo_pairs(rows, seed=seed):
        assert not is_marked(r["prompt"]) and r["chosen"] != r["rejected"]


def test_evaluation_prompts_of_the_heldout_split_never_carry_the_marker():
    for r in DATA.heldout:
        assert all(NEGATIVE_MARKER not in m["content"] for m in prompt_of(r, SYSTEM))


def test_the_worker_reads_nat_rows_with_marks_and_caps_positives(tmp_path):
    path = tmp_path / "nat.jsonl"
    out = nat_rows(DATA.train[:10], seed=0)
    path.write_text("".join(json.dumps(r) + "\n" for r in out))
    job = TrainJob(config=TrainConfig(data=DataRecipe(negatives="nat", max_rows=4)), base_model="x",
                   train_file=str(path), output_dir=str(tmp_path))
    rows = build_rows(job)
    marked = [r for r in rows if NEGATIVE_MARKER in r["prompt"][-1]["content"]]
    assert len(rows) - len(marked) == 4  # max_rows counts positives...
    assert len(marked) == sum(1 for r in out[: len(rows)] if r.get("negative")) >= 4  # ...their negatives stay


# --------------------------------------------------------------------------- DPO


def test_dpo_pairs_keep_the_prompt_and_reject_a_wrong_reply():
    pairs = dpo_pairs(DATA.train, seed=0)
    assert len(pairs) >= 0.95 * len(DATA.train)
    by_prompt = {json.dumps(r["messages"][:-1]): reply_of(r) for r in DATA.train}
    for p in pairs:
        assert set(p) == {"prompt", "chosen", "rejected"}
        assert p["chosen"][0]["content"] == by_prompt[json.dumps(p["prompt"])]
        assert p["rejected"][0]["role"] == "assistant" and p["rejected"][0]["content"] != p["chosen"][0]["content"]


def test_apply_recipe_by_config():
    nat = TrainConfig(data={"negatives": "nat", "max_rows": 10})
    assert nat.data.negative_ratio == 2.0  # unset ratio: the paper's default
    kind, rows, _ = apply_recipe(DATA.train, nat.data, seed=0)
    assert kind == "messages" and sum(1 for r in rows if not r.get("negative")) == 10
    kind, rows, _ = apply_recipe(DATA.train, TrainConfig(method="dpo").data, seed=0)
    assert kind == "pairs" and "chosen" in rows[0]
    kind, rows, report = apply_recipe(DATA.train, DataRecipe(), seed=0)
    assert kind == "messages" and rows == DATA.train and report is None


def test_synthetic_recipe_adds_filtered_rephrasings_that_never_leak():
    rows = DATA.train[:40]
    # a held-out prompt that a template would reproduce from a training row: must be dropped
    heldout = [{"messages": [{"role": "user", "content": "Please, " + user_text(rows[0])},
                             {"role": "assistant", "content": "x"}]}]
    kind, out, report = apply_recipe(rows, DataRecipe(synthetic_ratio=1.0), seed=0, heldout=heldout)
    assert kind == "messages" and out[:40] == rows
    synthetic = out[40:]
    assert report is not None and report.candidates == 40 and report.kept == len(synthetic) > 0
    assert report.kept + report.duplicate + report.leaked + report.too_short + report.too_long == 40
    train_prompts = {normalize_prompt(user_text(r)) for r in rows}
    held = normalize_prompt(user_text(heldout[0]))
    for r in synthetic:
        assert r["synthetic"] == "template" and reply_of(r) in {reply_of(x) for x in rows}
        assert normalize_prompt(user_text(r)) not in train_prompts and normalize_prompt(user_text(r)) != held
    # synthetic rows are positives: NAT gives them negatives too, all marked
    kind, out, _ = apply_recipe(rows, DataRecipe(synthetic_ratio=0.5, negatives="nat"), seed=0)
    assert all(is_marked(r["messages"]) == bool(r.get("negative")) for r in out)
    with pytest.raises(ValueError, match="no preference pair"):
        apply_recipe([row("a", "same"), row("b", "same")], DataRecipe(negatives="dpo"))


# --------------------------------------------------------------------------- negative makers


def test_corrupt_final_changes_the_last_number_or_quoted_value():
    rng = random.Random(0)
    r = row("add x due 2025-03-09", '<action>add_task(title="x", due="2025-03-09")</action>')
    wrong = corrupt_final(r, [r], rng)
    assert wrong != reply_of(r) and wrong.startswith('<action>add_task(title="x", due="2025-03-')
    assert len(wrong) == len(reply_of(r))
    a, b = row("show open", '<action>list_tasks(status="open")</action>'), row("q", 'list_tasks(status="done")')
    assert corrupt_final(a, [a, b], rng) == '<action>list_tasks(status="done")</action>'
    assert corrupt_final(row("hi", "hello"), [], rng) is None


def test_swap_reply_prefers_a_reply_of_the_same_shape():
    rows = [row("1", "<a>x</a><action>f(1)</action>"), row("2", "<a>y</a><action>f(2)</action>"),
            row("3", "<a>z</a><final>done</final>")]
    assert swap_reply()(rows[0], rows, random.Random(0)) == "<a>y</a><action>f(2)</action>"
    assert swap_reply()(rows[2], rows, random.Random(0)) in {reply_of(rows[0]), reply_of(rows[1])}
    assert swap_reply()(rows[0], rows[:1], random.Random(0)) is None


def test_truncate_and_shuffle_reasoning():
    r = row("why", "First we add two. Then we double it. So the answer is 8.")
    cut = truncate_reasoning(r, [r], random.Random(1))
    assert cut and len(cut) < len(reply_of(r)) and reply_of(r).startswith(cut)
    shuffled = shuffle_reasoning(r, [r], random.Random(1))
    assert shuffled != reply_of(r) and sorted(shuffled.split(". ")) != [] and set(shuffled) == set(reply_of(r))
    assert shuffle_reasoning(row("a", "One sentence only."), [], random.Random(0)) is None


# --------------------------------------------------------------------------- synthetic rows + filter


def test_template_rows_are_seeded_and_keep_the_reply():
    a = template_rows(DATA.train, 20, seed=1)
    assert a == template_rows(DATA.train, 20, seed=1) and a != template_rows(DATA.train, 20, seed=2)
    replies = {reply_of(r) for r in DATA.train}
    assert all(reply_of(r) in replies and r["synthetic"] == "template" for r in a)


def test_quality_filter_drops_duplicates_leaks_length_and_format():
    train = [row("show my open tasks", "<action>list_tasks()</action>")]
    heldout = [row("Delete task 3", "<action>delete_task(id=3)</action>")]
    candidates = [
        row("Show my open tasks!", "<action>list_tasks()</action>"),  # duplicate of train after normalising
        row("delete   task 3.", "<action>delete_task(id=3)</action>"),  # the held-out prompt: would leak
        row("x", ""),  # too short
        row("y" * 500, "<action>z()</action>"),  # too long
        row("tell me a joke", "sure"),  # fails the format check
        row("list done tasks", "<action>list_tasks(status=\"done\")</action>"),  # kept
        row("List done tasks", "<action>list_tasks(status=\"done\")</action>"),  # duplicate of a kept candidate
    ]
    kept, report = quality_filter(candidates, train=train, heldout=heldout, min_length=5, max_length=200,
                                  format_check=lambda reply: reply.startswith("<action>"))
    assert [reply_of(r) for r in kept] == ['<action>list_tasks(status="done")</action>']
    assert report.as_dict() == {"candidates": 7, "kept": 1, "duplicate": 2, "leaked": 1, "too_short": 1,
                                "too_long": 1, "bad_format": 1, "surplus": 0}


def test_quality_filter_counts_length_in_tokens_when_given_a_counter():
    words = lambda text: len(text.split())  # a stand-in for a tokenizer's count
    kept, report = quality_filter([row("one two three four", "five six")], train=[], heldout=[],
                                  max_length=5, length_of=words)
    assert kept == [] and report.too_long == 1


def test_templated_paraphrases_of_heldout_prompts_count_as_leaks():
    # Every held-out prompt here has 3+ words, so each paraphrase ("Hi! <prompt>") contains one.
    kept, report = quality_filter(template_rows(DATA.heldout, 40, seed=0), train=[], heldout=DATA.heldout)
    assert kept == [] and report.leaked == 40
    kept, report = quality_filter(template_rows(DATA.train, 100, seed=0), train=DATA.train, heldout=DATA.heldout)
    assert report.kept == len(kept) > 0 and report.duplicate < 100


# --------------------------------------------------------------------------- LLM makers (AutoGen client)


def test_llm_negatives_through_an_autogen_client_feed_the_nat_recipe():
    from autogen_ext.models.replay import ReplayChatCompletionClient

    rows = DATA.train[:3]
    answers = ["<analysis>wrong</analysis><final>nope</final>", reply_of(rows[1]), "   "]
    client = ReplayChatCompletionClient(answers)
    table = asyncio.run(llm_negative_replies(client, rows, concurrency=1))
    assert len(table) == 1  # the copy of the right answer and the blank one are dropped
    out = nat_rows(rows, ratio=1, seed=0, make_negative=from_table(table, fallback=swap_reply()))
    negatives = [r for r in out if r.get("negative")]
    assert len(negatives) == 3 and all(is_marked(r["messages"]) for r in negatives)
    assert reply_of(negatives[0]) == answers[0]


def test_llm_synthetic_rows_parse_json_lines_and_skip_the_rest():
    from autogen_ext.models.replay import ReplayChatCompletionClient

    text = ('{"prompt": "add milk to my list", "reply": "<action>add_task(title=\\"milk\\")</action>"}\n'
            "Sure! here you go\n{\"prompt\": 3}\n"
            '{"prompt": "what is open?", "reply": "<action>list_tasks(status=\\"open\\")</action>"}')
    client = ReplayChatCompletionClient([text])
    out = asyncio.run(llm_synthetic_rows(client, DATA.train, n=5, per_call=5))
    assert [r["messages"][0]["content"] for r in out] == ["add milk to my list", "what is open?"]
    assert all(r["synthetic"] == "llm" for r in out)


def _add_row(prompt: str, title: str, due: str) -> dict:
    return row(prompt, f'<analysis>Add "{title}".</analysis>\n<action>add_task(title="{title}", due="{due}")</action>')


def test_an_llms_rewrites_keep_the_reply_and_every_value_it_uses():
    from autogen_ext.models.replay import ReplayChatCompletionClient

    source = _add_row("remind me to pay the rent by 2026-03-01", "pay the rent", "2026-03-01")
    answer = ("1. don't let me forget: pay the rent, deadline 2026-03-01\n"
              "2. pay the rent sometime soon\n"  # the date is gone: the reply would no longer answer it
              "- \"remind me to pay the rent by 2026-03-01\"\n"  # the request itself, quoted
              "* Rent is due 2026-03-01, PAY THE RENT")
    out = asyncio.run(llm_paraphrase_rows(ReplayChatCompletionClient([answer]), [source], n=4, per_call=4))
    assert [user_text(r) for r in out] == ["don't let me forget: pay the rent, deadline 2026-03-01",
                                           "Rent is due 2026-03-01, PAY THE RENT"]
    assert all(reply_of(r) == reply_of(source) and r["synthetic"] == "llm" for r in out)
    # values the request never said (a list's status, a summary) bind nothing
    assert keeps_values("what have i finished?", "anything i've crossed off?",
                        '<action>list_tasks(status="done")</action>')
    assert not keeps_values('add "water the plants"', "add watering", '<action>add_task(title="water the plants")'
                            "</action>")


def test_the_llm_recipe_trains_its_rewrites_through_the_same_filter_and_never_without_them():
    rows = [_add_row(f"add task {i} due 2026-01-0{i}", f"task {i}", f"2026-01-0{i}") for i in range(1, 5)]
    heldout = [_add_row("jot down task 9 by 2026-01-09", "task 9", "2026-01-09")]
    rewrites = [_add_row(p, "task 1", "2026-01-01") | {"synthetic": "llm"} for p in (
        "jot down task 9 by 2026-01-09",  # a held-out prompt: must not be trained on
        "add task 1 due 2026-01-01",  # a training prompt again
        "log task 1, deadline 2026-01-01", "task 1 needs doing by 2026-01-01", "by 2026-01-01: task 1")]
    recipe = DataRecipe(synthetic_ratio=0.5, synthetic_source="llm")
    _, out, report = apply_recipe(rows, recipe, seed=0, heldout=heldout, rephrased=rewrites)
    assert report is not None and (report.candidates, report.leaked, report.duplicate) == (5, 1, 1)
    assert [user_text(r) for r in out[4:]] == ["log task 1, deadline 2026-01-01", "task 1 needs doing by 2026-01-01"]
    assert (report.kept, report.surplus) == (2, 1)  # capped at the ratio: 0.5 x 4 rows
    with pytest.raises(ValueError, match="synthetic_source='template'"):
        apply_recipe(rows, recipe, seed=0)


# --------------------------------------------------------------------------- config coherence


def test_config_ties_the_recipe_to_the_method():
    assert TrainConfig(method="dpo").data.negatives == "dpo"
    with pytest.raises(ValueError, match=r"data\.negatives='dpo'"):
        TrainConfig(method="dpo", data={"negatives": "nat"})
    with pytest.raises(ValueError, match="only method=dpo"):
        TrainConfig(method="lora", data={"negatives": "dpo"})
    assert TrainConfig(data={"negatives": "nat", "negative_ratio": 1.0}).data.negative_ratio == 1.0
    with pytest.raises(ValueError, match="backend=unsloth"):
        TrainConfig(method="full", backend="unsloth", learning_rate=1e-5)
    # the Planner's dotted change keeps the rule
    assert TrainConfig().with_changes({"method": "dpo"}).data.negatives == "dpo"


def test_worker_cap_counts_dataset_rows_so_synthetic_rows_and_pairs_survive_a_probe(tmp_path):
    from tunecrew.tools.rows import write_jsonl
    from tunecrew.tools.train_worker import build_pairs

    for negatives, build in (("none", build_rows), ("dpo", build_pairs)):
        recipe = DataRecipe(max_rows=10, synthetic_ratio=1.0, negatives=negatives)
        _, out, report = apply_recipe(DATA.train, recipe, seed=0)
        assert report is not None and report.kept > 0
        path = write_jsonl(out, tmp_path / f"{negatives}.jsonl")
        job = TrainJob(config=TrainConfig(method="dpo" if negatives == "dpo" else "lora", data=recipe),
                       base_model="x", train_file=str(path), output_dir=str(tmp_path))
        assert len(build(job)) == len(out) > 10  # nothing cut: the recipe already applied the cap
