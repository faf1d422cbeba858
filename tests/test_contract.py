"""The task agent's reply contract: what parses, what is rejected and why, and rendering."""

from __future__ import annotations

import random
import time

import pytest

from tunecrew.scenarios.task_agent.contract import (
    MAX_REPLY_BYTES,
    TOOLS,
    ParsedReply,
    format_action,
    parse_reply,
    render_reply,
)
from tunecrew.scenarios.task_agent.metrics import score_sample
from tunecrew.scenarios.task_agent.scenario import score
from tunecrew.tools.evaluate import score_replies

A = "<analysis>Add a task.</analysis>"


def invalid(text: str) -> str:
    parsed = parse_reply(text)
    assert parsed.kind == "invalid", parsed
    assert parsed.error
    return parsed.error


# --------------------------------------------------------------------------- valid


def test_valid_action_with_all_args() -> None:
    text = ('<analysis>Add "buy milk".</analysis>'
            '<action>add_task(title="buy milk", due="2026-12-01", priority="high")</action>')
    parsed = parse_reply(text)
    assert parsed == ParsedReply(
        kind="action", analysis='Add "buy milk".', tool="add_task",
        args={"title": "buy milk", "due": "2026-12-01", "priority": "high"},
    )
    assert list(parsed.args) == ["title", "due", "priority"]
    assert parsed.error is None


def test_valid_action_whitespace_between_and_inside() -> None:
    text = '  \n<analysis> List. </analysis>\n\n<action>  list_tasks( status = "open" )  </action>\n'
    parsed = parse_reply(text)
    assert parsed.kind == "action"
    assert parsed.analysis == "List."
    assert (parsed.tool, parsed.args) == ("list_tasks", {"status": "open"})


@pytest.mark.parametrize("call", ["summarize_tasks()", "list_tasks()", "summarize_tasks( )"])
def test_valid_action_without_args(call: str) -> None:
    parsed = parse_reply(f"{A}<action>{call}</action>")
    assert parsed.kind == "action" and parsed.args == {}


def test_valid_final() -> None:
    parsed = parse_reply("<analysis>Greeting.</analysis><final>Hello! How can I help?</final>")
    assert parsed.kind == "final"
    assert parsed.final == "Hello! How can I help?"
    assert parsed.tool is None and parsed.args == {}


def test_args_in_any_order_are_accepted() -> None:
    parsed = parse_reply(f'{A}<action>add_task(priority="low", title="x")</action>')
    assert parsed.kind == "action"
    assert parsed.args == {"priority": "low", "title": "x"}


# --------------------------------------------------------------------------- escapes


def test_escaped_quote_and_backslash() -> None:
    parsed = parse_reply(f'{A}<action>add_task(title="say \\"hi\\" to C:\\\\temp")</action>')
    assert parsed.kind == "action"
    assert parsed.args["title"] == 'say "hi" to C:\\temp'


def test_unsupported_escape_is_invalid() -> None:
    assert "escape" in invalid(f'{A}<action>add_task(title="a\\nb")</action>')


def test_comma_and_paren_inside_value() -> None:
    parsed = parse_reply(f'{A}<action>add_task(title="call mom (re: lunch), then bob")</action>')
    assert parsed.args["title"] == "call mom (re: lunch), then bob"


# --------------------------------------------------------------------------- invalid


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("", "missing <analysis>"),
        ("just text", "missing <analysis>"),
        ("<final>hi</final>", "starts with <analysis>"),
        ("hello <analysis>x</analysis><final>y</final>", "text before"),
        ("<analysis>x</analysis>", "missing <action>"),
        ("<analysis>x</analysis> and then nothing", "missing <action>"),
        ("<analysis>x", "unclosed <analysis>"),
        ("<analysis>x</analysis><final>y", "unclosed <final>"),
        ("<analysis>x</analysis>oops<final>y</final>", "text between"),
        ("<analysis>x<action>list_tasks()</action></analysis>", "nested tag <action>"),
        ("<analysis>x</analysis><final>a<final>b</final></final>", "nested tag <final>"),
        ("<analysis>x</analysis><final>a</action>", "closed by </action>"),
        ("<analysis>x</analysis><final>y</final> trailing words", "trailing text"),
        ("<analysis>x</analysis><final>y</final><final>z</final>", "exactly one"),
        ("<analysis>x</analysis><action>list_tasks()</action><final>z</final>", "exactly one"),
        ("<Analysis>x</Analysis><final>y</final>", "malformed tag"),
        ("<analysis>x</analysis>< final >y</final>", "malformed tag"),
        ("<analysis>x</analysis><analysis>y</analysis>", "expected <action> or <final>"),
        ("<analysis>  </analysis><final>y</final>", "empty <analysis>"),
        ("<analysis>x</analysis><final> </final>", "empty <final>"),
        ("<analysis>x</analysis><action></action>", "empty <action>"),
    ],
)
def test_structure_errors(text: str, needle: str) -> None:
    assert needle in invalid(text)


@pytest.mark.parametrize(
    ("call", "needle"),
    [
        ('drop_table(title="x")', "unknown tool 'drop_table'"),
        ("delete_task()", "missing required argument 'title'"),
        ('add_task(titel="x")', "unknown argument 'titel'"),
        ('summarize_tasks(status="open")', "unknown argument 'status'"),
        ('add_task(due="2026-01-01")', "missing required argument 'title'"),
        ("complete_task()", "missing required argument 'title'"),
        ('add_task(title="a", title="b")', "duplicate argument 'title'"),
        ('add_task(title="a", due="2026-13-01")', "not a real calendar date"),
        ('add_task(title="a", due="tomorrow")', "ISO date"),
        ('add_task(title="a", priority="urgent")', "low|medium|high"),
        ('list_tasks(status="pending")', "open|done|all"),
        ('add_task(title="")', "'title' is empty"),
        ("add_task(title='x')", "double-quoted"),
        ("add_task(title=x)", "double-quoted"),
        ('add_task(title="x"', "expected ',' or ')'"),
        ('add_task(title="x)', "unterminated string"),
        ('add_task(title="x",)', "argument name"),
        ('add_task title="x"', "expected '('"),
        ('add_task(title="x") extra', "unexpected text"),
        ('add_task(title "x")', "expected '='"),
        ('add_task(title="x" due="2026-01-01")', "expected ',' or ')'"),
        ('__import__("os").system("ls")', "unknown tool"),
        ('1add(title="x")', "tool name"),
    ],
)
def test_action_errors(call: str, needle: str) -> None:
    assert needle in invalid(f"{A}<action>{call}</action>")


def test_oversized_input_is_rejected_fast() -> None:
    text = "<analysis>" + "x" * 100_000 + "</analysis><final>y</final>"
    start = time.perf_counter()
    error = invalid(text)
    assert time.perf_counter() - start < 0.05
    assert str(MAX_REPLY_BYTES) in error


def test_just_under_limit_is_parsed() -> None:
    body = "x" * (MAX_REPLY_BYTES - 100)
    parsed = parse_reply(f"<analysis>{body}</analysis><final>ok</final>")
    assert parsed.kind == "final"


def test_non_string_input_is_invalid() -> None:
    assert "string" in invalid(None)  # type: ignore[arg-type]


def test_parser_never_raises_on_random_text() -> None:
    rng = random.Random(0)
    alphabet = ['<analysis>', '</analysis>', '<action>', '</action>', '<final>', '</final>', '(', ')', '"',
                '\\', ',', '=', ' ', 'add_task', 'title', 'x', '<', '>', '/', 'list_tasks', 'status', 'open']
    for _ in range(3000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 25)))
        parsed = parse_reply(text)
        assert parsed.kind in ("action", "final", "invalid")
        assert (parsed.kind == "invalid") == (parsed.error is not None)


# --------------------------------------------------------------------------- rendering


def test_format_action_is_canonical() -> None:
    assert (format_action("add_task", {"title": "buy milk", "due": "2026-12-01"})
            == 'add_task(title="buy milk", due="2026-12-01")')
    assert format_action("summarize_tasks", {}) == "summarize_tasks()"
    assert format_action("add_task", {"title": 'a "b" \\c'}) == 'add_task(title="a \\"b\\" \\\\c")'
    with pytest.raises(ValueError, match="identifier"):
        format_action("bad name", {})


def test_render_reply_has_no_whitespace_between_parts() -> None:
    reply = render_reply("Add it.", tool="add_task", args={"title": "buy milk"})
    assert reply == '<analysis>Add it.</analysis><action>add_task(title="buy milk")</action>'
    assert render_reply("Hi.", final="Hello!") == "<analysis>Hi.</analysis><final>Hello!</final>"
    assert render_reply("Sum.", tool="summarize_tasks") == "<analysis>Sum.</analysis><action>summarize_tasks()</action>"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"analysis": "x"},
        {"analysis": "x", "tool": "list_tasks", "final": "y"},
        {"analysis": "", "final": "y"},
        {"analysis": "x <final>", "final": "y"},
        {"analysis": "x", "final": "a</final>"},
        {"analysis": "x", "tool": "nope", "args": {}},
        {"analysis": "x", "tool": "add_task", "args": {"due": "2026-01-01"}},
        {"analysis": "x", "final": "y", "args": {"title": "z"}},
    ],
)
def test_render_reply_refuses_off_contract(kwargs: dict) -> None:
    with pytest.raises(ValueError, match="render_reply"):
        render_reply(**kwargs)


@pytest.mark.parametrize(
    ("tool", "args"),
    [
        ("add_task", {"title": "buy milk"}),
        ("add_task", {"title": 'quote " and \\ back', "due": "2028-02-29", "priority": "medium"}),
        ("list_tasks", {"status": "all"}),
        ("list_tasks", {}),
        ("summarize_tasks", {}),
        ("complete_task", {"title": "call the bank (again)"}),
    ],
)
def test_round_trip_actions(tool: str, args: dict) -> None:
    parsed = parse_reply(render_reply("Do it.", tool=tool, args=args))
    assert (parsed.kind, parsed.tool, parsed.args, parsed.analysis) == ("action", tool, args, "Do it.")


def test_round_trip_final() -> None:
    parsed = parse_reply(render_reply("Thanks.", final="You're welcome!"))
    assert (parsed.kind, parsed.final) == ("final", "You're welcome!")


def test_tools_whitelist() -> None:
    assert set(TOOLS) == {"add_task", "list_tasks", "summarize_tasks", "complete_task", "delete_task"}
    assert TOOLS["add_task"].required == ("title",)
    assert TOOLS["add_task"].allowed == ("title", "due", "priority")


# --------------------------------------------------------------------------- metrics


def test_score_sample_levels() -> None:
    ref = render_reply("Add.", tool="add_task", args={"title": "buy milk", "due": "2026-12-01"})
    assert score_sample(ref, ref) == score_sample(ref, ref.replace("Add.", "Other words."))
    perfect = score_sample(ref, ref)
    assert (perfect.format_ok, perfect.tool_ok, perfect.args_ok, perfect.reason) == (True, True, True, "")

    wrong_arg = score_sample(ref, render_reply("Add.", tool="add_task",
                                              args={"title": "buy milk", "due": "2026-12-02"}))
    assert (wrong_arg.format_ok, wrong_arg.tool_ok, wrong_arg.args_ok) == (True, True, False)
    assert "due" in wrong_arg.reason

    missing = score_sample(ref, render_reply("Add.", tool="add_task", args={"title": "buy milk"}))
    assert not missing.args_ok and "missing due" in missing.reason

    wrong_tool = score_sample(ref, render_reply("Done.", tool="complete_task", args={"title": "buy milk"}))
    assert (wrong_tool.format_ok, wrong_tool.tool_ok, wrong_tool.args_ok) == (True, False, False)

    final = score_sample(ref, render_reply("Hi.", final="Hello"))
    assert (final.format_ok, final.tool_ok) == (True, False) and "final" in final.reason

    broken = score_sample(ref, "add_task(title='buy milk')")
    assert (broken.format_ok, broken.tool_ok, broken.args_ok) == (False, False, False)
    assert broken.reason.startswith("invalid reply")


def test_score_sample_finals_match_on_kind() -> None:
    ref = render_reply("Greeting.", final="Hello!")
    score = score_sample(ref, render_reply("Hi there.", final="Hey, what can I do?"))
    assert (score.format_ok, score.tool_ok, score.args_ok) == (True, True, True)


def test_score_sample_rejects_bad_reference() -> None:
    with pytest.raises(ValueError, match="expected reply is off-contract"):
        score_sample("not a reply", "whatever")


def test_scores_average_over_samples_and_groups() -> None:
    ref = render_reply("List.", tool="list_tasks", args={"status": "open"})
    replies = [ref, render_reply("List.", tool="list_tasks", args={"status": "done"}),
               render_reply("Sum.", tool="summarize_tasks"), "garbage"]
    rows = [{"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": ref}],
             "group": "a" if i < 2 else "b"} for i in range(4)]
    report = score_replies(rows, replies, score, split="t", seed=0, primary_metric="a/tool_accuracy")
    assert report.metrics["format_compliance"] == 0.75
    assert report.metrics["tool_accuracy"] == 0.5
    assert report.metrics["action_exact_match"] == 0.25
    assert report.score == report.metrics["a/tool_accuracy"] == 1.0
    assert report.groups["b"].metrics["format_compliance"] == 0.5 and report.groups["b"].samples == 2
    assert report.samples_of("a/tool_accuracy") == 2 and report.samples_of("tool_accuracy") == 4
    assert [f.reason.split(":")[0] for f in report.failures] == [
        "args differ", "expected tool list_tasks, got summarize_tasks", "invalid reply"]
