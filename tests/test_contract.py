"""The task agent's reply contract: what parses, what is rejected and why, and rendering."""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest

from tunecrew.scenarios.task_agent.contract import (
    DEFAULT_CONTRACT,
    MAX_REPLY_BYTES,
    TOOLS,
    ParsedReply,
    ReplyContract,
    ToolSpec,
    could_still_parse,
    format_action,
    parse_reply,
    render_reply,
)
from tunecrew.scenarios.task_agent.declared import ContractError, declaration, load_contract, prompt_line
from tunecrew.scenarios.task_agent.metrics import score_sample
from tunecrew.scenarios.task_agent.scenario import score
from tunecrew.tools.evaluate import score_replies

A = "<analysis>Add a task.</analysis>"
FIXTURES = Path(__file__).parent / "fixtures" / "data"


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


def test_a_reply_judged_unparseable_mid_generation_never_parses_whatever_follows() -> None:
    """Evaluation stops generating a reply once could_still_parse says no: that is only sound if no
    continuation would have parsed. Random prefixes and continuations, both contracts; and every
    prefix of every valid reply stays viable, so a good reply is never cut."""
    rng = random.Random(1)
    alphabet = ['<analysis>', '</analysis>', '<action>', '</action>', '<final>', '</final>', '<', '>', 'a',
                'analysis', '<anal', 'ysis>', ' ', '\n', 'Sure', '(', ')', '"', 'add_task', 'title', '=', 'x',
                '< analysis>', '<ANALYSIS>', '<act', 'ion>', 'fin', 'al>']
    optional = ReplyContract(analysis="optional")
    contracts, cut = (DEFAULT_CONTRACT, optional), [0, 0]
    for _ in range(4000):
        prefix = "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 6)))
        rest = "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 12)))
        for k, contract in enumerate(contracts):
            if not could_still_parse(prefix, contract):
                cut[k] += 1
                for tail in (rest, "<analysis>Hi.</analysis><final>Hello!</final>",
                             '<action>add_task(title="x")</action>'):
                    assert parse_reply(prefix + tail, contract).kind == "invalid", (prefix, tail)
    assert min(cut) > 500  # the check does cut: most random openings are prose
    valid = [render_reply("Add it.", tool="add_task", args={"title": "milk", "due": "2026-01-02"}),
             render_reply("Hi.", final="Hello!"), "  \n" + A + "<final>ok</final>"]
    for reply in valid:
        assert parse_reply(reply).kind != "invalid"
        assert all(could_still_parse(reply[:i]) for i in range(len(reply) + 1))
    assert could_still_parse("<action>", optional) and not could_still_parse("<action>")
    assert not could_still_parse("Sure! <analysis>")


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


# --------------------------------------------------------------------------- declared contracts (--contract)

SEED_ADD = '<analysis>\nAdd it.\n</analysis>\n\n<action>\nadd_task(title="Buy milk", due_date="2026-01-20")\n</action>'
SEED_CONTRACT = ReplyContract(aliases={"due_date": "due"}, analysis="optional")


def test_the_default_contract_spelled_out_is_the_baseline_prompt() -> None:
    from tunecrew.scenarios.task_agent.scenario import CONTRACT

    assert prompt_line(DEFAULT_CONTRACT) == CONTRACT
    assert TOOLS is DEFAULT_CONTRACT.tools


def test_an_alias_is_read_under_its_canonical_name() -> None:
    parsed = parse_reply(SEED_ADD, SEED_CONTRACT)
    assert (parsed.kind, parsed.tool, parsed.args) == ("action", "add_task", {"title": "Buy milk", "due": "2026-01-20"})
    assert parsed.aliased == ("due_date",)
    assert "unknown argument 'due_date'" in invalid(SEED_ADD)  # the default contract has no alias
    both = parse_reply(f'{A}<action>add_task(title="x", due_date="2026-01-20", due="2026-01-21")</action>',
                       SEED_CONTRACT)
    assert both.kind == "invalid" and "'due' is given twice, as 'due_date' and 'due'" in (both.error or "")
    bad_date = parse_reply(SEED_ADD.replace("2026-01-20", "next friday"), SEED_CONTRACT)
    assert bad_date.kind == "invalid" and "ISO date" in (bad_date.error or "")  # the canonical argument's rule


def test_scoring_compares_an_alias_and_its_canonical_name_as_one_argument() -> None:
    model = '<analysis>Add.</analysis><action>add_task(due="2026-01-20", title="Buy milk")</action>'
    same = score_sample(SEED_ADD, model, SEED_CONTRACT)
    assert (same.format_ok, same.tool_ok, same.args_ok, same.reason) == (True, True, True, "")
    late = score_sample(SEED_ADD, model.replace("2026-01-20", "2026-01-21"), SEED_CONTRACT)
    assert (late.tool_ok, late.args_ok) == (True, False)
    assert late.reason == "args differ: due: expected '2026-01-20', got '2026-01-21'"
    with pytest.raises(ValueError, match="expected reply is off-contract"):
        score_sample(SEED_ADD, model)  # under the default contract the seed's reference is a dataset error


def test_analysis_is_optional_only_when_declared() -> None:
    bare = "<final>\nHello! How can I help you manage your tasks today?\n</final>"
    assert "starts with <analysis>" in invalid(bare)
    parsed = parse_reply(bare, SEED_CONTRACT)
    assert (parsed.kind, parsed.analysis) == ("final", None)
    assert parsed.final == "Hello! How can I help you manage your tasks today?"
    assert parse_reply("<analysis>Hi.</analysis><final>Hello</final>", SEED_CONTRACT).analysis == "Hi."
    for text, needle in [("hello <final>y</final>", "text before the first tag"), ("", "missing <action>"),
                         ("<final>a</final><final>b</final>", "exactly one"),
                         ("</action>", "expected <action> or <final> after the start")]:
        broken = parse_reply(text, SEED_CONTRACT)
        assert broken.kind == "invalid" and needle in (broken.error or ""), (text, broken)
    score = score_sample(bare, "<final>Hi there!</final>", SEED_CONTRACT)
    assert (score.format_ok, score.args_ok) == (True, True)


def test_a_final_after_the_action_only_when_declared() -> None:
    text = '<action>list_tasks()</action>\n<final>Here are your tasks.</final>'
    contract = ReplyContract(analysis="optional", final_after_action=True)
    parsed = parse_reply(text, contract)
    assert (parsed.kind, parsed.tool, parsed.final) == ("action", "list_tasks", "Here are your tasks.")
    assert "exactly one" in (parse_reply(text, SEED_CONTRACT).error or "")
    assert "empty <final> after </action>" in (parse_reply(text.replace("Here are your tasks.", " "), contract).error
                                               or "")
    # Only the action is scored: another closing line is no error, another tool is.
    assert score_sample(text, '<action>list_tasks()</action><final>Your list:</final>', contract).args_ok
    assert not score_sample(text, "<action>summarize_tasks()</action>", contract).tool_ok


def test_declared_tools_and_choices_replace_and_extend_the_default() -> None:
    contract = ReplyContract(tools={"set_reminder": ToolSpec(required=("text",), optional=("priority",))},
                             choices={"priority": ("low", "high", "urgent")})
    ok = parse_reply(f'{A}<action>set_reminder(text="x", priority="urgent")</action>', contract)
    assert (ok.kind, ok.tool) == ("action", "set_reminder")
    assert "unknown tool 'add_task'" in (parse_reply(f'{A}<action>add_task(title="x")</action>', contract).error or "")
    assert contract.choices["status"] == ("open", "done", "all")  # declaring priority keeps the status check
    assert "urgent" in invalid(f'{A}<action>add_task(title="a", priority="urgent")</action>')


def test_a_contract_file_is_read(tmp_path) -> None:
    loaded = load_contract(FIXTURES / "task_agent_contract.yaml")
    assert loaded == ReplyContract(aliases={"due_date": "due"}, analysis="optional", final_after_action=True)
    path = tmp_path / "c.json"
    path.write_text('{"tools": {"add_task": {"required": ["title"], "optional": ["due"]}, "summarize_tasks": null}}')
    assert load_contract(path).tools == {"add_task": ToolSpec(required=("title",), optional=("due",)),
                                         "summarize_tasks": ToolSpec()}
    assert declaration(loaded) == "{aliases: {due_date: due}, analysis: optional, final_after_action: true}"


@pytest.mark.parametrize(("text", "message"), [
    ("toolz: {}", "c.yaml: unknown key 'toolz' (known: tools, aliases, analysis, final_after_action, choices)"),
    ("tools: {add_task: {requird: [title]}}", "c.yaml: tools.add_task: unknown key 'requird' (known: required, "
     "optional)"),
    ("aliases: {due_date: when}", "c.yaml: alias due_date: 'when' is not an argument of any tool"),
    ("aliases: {title: due}", "c.yaml: alias 'title' is itself an argument name"),
    ("analysis: maybe", "c.yaml: analysis: 'maybe' should be 'required' or 'optional'"),
    ("tools: {}", "c.yaml: tools: declare at least one tool"),
    ("tools: {add task: {}}", "c.yaml: tools: tool 'add task' is not an identifier"),
    ("tools: {add_task: {required: [title], optional: [title]}}", "c.yaml: tools.add_task: argument 'title' is "
     "listed twice"),
    ("tools: {add_task: {required: title}}", "c.yaml: tools.add_task.required: 'title' should be a valid tuple"),
    ("- add_task", "c.yaml: the top level must be a mapping"),
    ("tools: [unclosed", "c.yaml: YAML syntax error at line"),
])
def test_a_contract_file_that_cannot_be_used_is_one_line_naming_the_key(tmp_path, monkeypatch, text: str,
                                                                         message: str) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "c.yaml").write_text(text)
    with pytest.raises(ContractError) as caught:
        load_contract("c.yaml")
    assert str(caught.value).startswith(message), str(caught.value)
    assert "\n" not in str(caught.value) and len(str(caught.value)) < 300


def test_a_missing_contract_file_is_named(tmp_path) -> None:
    with pytest.raises(ContractError, match=r"nope\.yaml: no such contract file"):
        load_contract(tmp_path / "nope.yaml")
