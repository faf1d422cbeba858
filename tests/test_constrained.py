"""Constrained decoding: the contract's grammar accepts what the parser accepts (every reference reply,
each contract variant) and rules out what it must; generation under it never leaves it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from transformers import AutoTokenizer

from tunecrew.scenarios.task_agent.contract import DEFAULT_CONTRACT, ReplyContract, ToolSpec, parse_reply
from tunecrew.scenarios.task_agent.declared import load_contract
from tunecrew.scenarios.task_agent.grammar import _orderings, reply_grammar
from tunecrew.tools import constrained
from tunecrew.tools.constrained import GrammarError, grammar_processor
from tunecrew.tools.evaluate import generate_cut, load_model, prompt_of

from conftest import THREADS

FIXTURES = Path(__file__).parent / "fixtures" / "data"


@pytest.fixture(scope="module")
def tokenizer(tiny_model):
    return AutoTokenizer.from_pretrained(tiny_model)


def accepts(tokenizer, contract: ReplyContract, text: str) -> bool:
    return constrained.accepts(tokenizer, reply_grammar(contract), text)


def test_the_grammar_accepts_every_reference_reply(tokenizer, task_data):
    references = [row["messages"][-1]["content"] for row in task_data.train + task_data.heldout]
    assert {parse_reply(r).kind for r in references} == {"action", "final"}
    rejected = [r for r in references if not accepts(tokenizer, DEFAULT_CONTRACT, r)]
    assert rejected == []


@pytest.mark.parametrize("reply", [
    '<analysis>Shrink the list.</analysis><action>boil_tasks()</action>',  # a tool the contract lacks
    'Sure! <analysis>Add it.</analysis><action>add_task(title="x")</action>',  # prose before the first tag
    '<analysis>Add it.</analysis><action>add_task(title="x")</action><action>list_tasks()</action>',
    '<analysis>Add it.</analysis><action>add_task(title="x", due="tomorrow")</action>',  # not a date
    '<analysis>Add it.</analysis><action>add_task(title="x", priority="urgent")</action>',  # not a choice
    '<analysis>Add it.</analysis><action>add_task(title="x", colour="red")</action>',  # not an argument
    '<analysis> </analysis><final>Done.</final>',  # a blank analysis
    '<action>list_tasks()</action>',  # the default contract requires <analysis>
    '<analysis>List them.</analysis><action>list_tasks()</action> and more',  # trailing text
    '<analysis>Add it.</analysis><action>add_task(title="x", due="2027-01-02", due="2027-01-03")</action>',  # twice
    '<analysis>Add it.</analysis><action>add_task(due="2027-01-02")</action>',  # no title
    '<analysis>Add it.</analysis><action>add_task(title="x", due="0123-45-61")</action>',  # month 45
    '<analysis>Add it.</analysis><action>add_task(title="x", due="0000-01-01")</action>',  # no year 0
    '<analysis>a</analysis><action>add_task(title="x</analysis><final>y")</action>',  # a tag inside a value
])
def test_the_grammar_rules_out_what_the_parser_rejects(tokenizer, reply):
    assert parse_reply(reply).kind == "invalid"
    assert not accepts(tokenizer, DEFAULT_CONTRACT, reply)


def test_a_declared_contract_is_its_own_grammar(tokenizer):
    declared = ReplyContract(tools={"add_task": ToolSpec(required=("title",), optional=("due",)), "ping": ToolSpec()},
                             aliases={"due_date": "due"}, analysis="optional", final_after_action=True)
    reply = '<action>add_task(title="file taxes", due_date="2027-04-15")</action><final>Added.</final>'
    assert parse_reply(reply, declared).kind == "action"
    assert accepts(tokenizer, declared, reply)
    assert accepts(tokenizer, declared, "<action>ping()</action>")
    assert not accepts(tokenizer, declared, '<analysis>x</analysis><action>list_tasks()</action>')  # not declared
    assert not accepts(tokenizer, DEFAULT_CONTRACT, reply)  # no alias, no closing <final>, <analysis> required


def test_a_users_data_laid_out_over_lines_decodes_in_its_own_layout(tokenizer):
    """llama-task-agent's replies put newlines between and inside the tags, where the parser skips
    whitespace: the grammar takes every reply the parser takes, or decoding would bend them."""
    contract = load_contract(FIXTURES / "task_agent_contract.yaml")
    rows = [json.loads(line) for line in (FIXTURES / "llama_task_agent_chat.jsonl").read_text().splitlines()]
    valid = [r["messages"][-1]["content"] for r in rows
             if parse_reply(r["messages"][-1]["content"], contract).kind != "invalid"]
    assert len(valid) >= 30 and any("\n\n<action>\n" in reply for reply in valid)
    assert [reply for reply in valid if not accepts(tokenizer, contract, reply)] == []
    spaced = '<analysis>Add it.</analysis>\n<action>\n  add_task( title = "x" ,\n due="2027-01-02" )\n</action>\n'
    assert parse_reply(spaced).kind == "action" and accepts(tokenizer, DEFAULT_CONTRACT, spaced)


def test_tool_and_argument_names_in_any_case_compile(tokenizer):
    contract = ReplyContract(tools={"getWeather": ToolSpec(required=("City",)), "Ping": ToolSpec()},
                             analysis="optional")
    call = '<action>getWeather(City="Oslo")</action>'
    assert parse_reply(call, contract).kind == "action" and accepts(tokenizer, contract, call)
    assert accepts(tokenizer, contract, "<action>Ping()</action>")
    assert not accepts(tokenizer, contract, '<action>getweather(City="Oslo")</action>')


def test_arguments_come_in_any_order_and_a_wide_tool_falls_back_to_any_list(tokenizer):
    reordered = '<analysis>Add it.</analysis><action>add_task(priority="high", due="2027-01-02", title="x")</action>'
    assert parse_reply(reordered).kind == "action" and accepts(tokenizer, DEFAULT_CONTRACT, reordered)
    wide = ReplyContract(tools={"log": ToolSpec(required=("title",), optional=tuple("abcdef"))})
    assert len(_orderings(("title",), tuple("abc")) or []) == 1 + 3 * 2 + 3 * 6 + 24
    assert _orderings(("title",), tuple("abcdef")) is None  # 11,743 orderings: a list of any arguments instead
    call = '<analysis>Log it.</analysis><action>log(f="1", title="x", a="2")</action>'
    assert parse_reply(call, wide).kind == "action" and accepts(tokenizer, wide, call)


def test_generation_under_the_grammar_never_leaves_it(tiny_model, tokenizer, task_data):
    """The untrained tiny model writes noise; decoded under the grammar, every reply is a prefix the
    grammar takes (cut only by the token limit), and every finished one parses."""
    loaded = load_model(tiny_model, threads=THREADS)
    prompts = [prompt_of(row, "") for row in task_data.heldout[:8]]
    grammar = reply_grammar(DEFAULT_CONTRACT)
    free, _ = generate_cut(loaded, prompts, max_new_tokens=24, batch_size=4)
    held, _ = generate_cut(loaded, prompts, max_new_tokens=24, batch_size=4, grammar=grammar)

    def in_grammar(text: str) -> bool:
        return constrained.accepts(tokenizer, grammar, text, complete=False)

    assert not all(in_grammar(r) for r in free)  # without it the noise leaves the contract at once
    assert all(r.lstrip().startswith("<analysis>") and in_grammar(r) for r in held), held
    finished = [r for r in held if r.endswith(("</action>", "</final>"))]
    assert all(parse_reply(r).kind != "invalid" for r in finished), finished


def test_a_grammar_that_does_not_compile_is_named(tokenizer):
    with pytest.raises(GrammarError, match="reply grammar does not compile"):
        grammar_processor(tokenizer, "start: undefined_rule\n")
