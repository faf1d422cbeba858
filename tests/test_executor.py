"""The executor: a valid reply runs one whitelisted tool; anything else is an error result, never
an exception and never an execution. Hypothesis throws hostile text at parser and executor."""

from __future__ import annotations

import datetime as dt
import itertools
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tunecrew.scenarios.task_agent.contract import TOOLS, parse_reply, render_reply
from tunecrew.scenarios.task_agent.executor import DISPATCH, ExecutionResult, chat_payload, execute
from tunecrew.scenarios.task_agent.store import TaskError, TaskStore, check_title


@pytest.fixture
def store(tmp_path):
    with TaskStore(tmp_path / "store") as s:
        yield s


def act(tool: str, **args: str) -> str:
    return render_reply(f"Use {tool}.", tool=tool, args=args)


def test_dispatch_covers_exactly_the_whitelist():
    assert set(DISPATCH) == set(TOOLS)
    assert "delete_task" in TOOLS


def test_every_tool_executes(store):
    r = execute(act("add_task", title="pay rent", due="2026-12-01", priority="high"), store, "u")
    assert (r.kind, r.ok, r.tool) == ("action", True, "add_task")
    assert r.result["task"]["title"] == "pay rent" and r.analysis == "Use add_task."
    execute(act("add_task", title="call bob"), store, "u")

    listed = execute(act("list_tasks"), store, "u")
    assert [t["title"] for t in listed.result["tasks"]] == ["pay rent", "call bob"]

    summary = execute(act("summarize_tasks"), store, "u", today=dt.date(2026, 12, 2))
    assert summary.result["summary"]["overdue"] == 1 and summary.result["summary"]["open"] == 2

    done = execute(act("complete_task", title="Pay Rent"), store, "u")
    assert done.ok and done.result["task"]["status"] == "done"
    assert [t["title"] for t in execute(act("list_tasks", status="done"), store, "u").result["tasks"]] == ["pay rent"]

    deleted = execute(act("delete_task", title="call bob"), store, "u")
    assert deleted.ok and deleted.result["deleted"]["title"] == "call bob"
    assert execute(act("list_tasks", status="all"), store, "u").result["tasks"][0]["title"] == "pay rent"


def test_final_executes_nothing(store):
    r = execute("<analysis>A greeting.</analysis><final>Hello!</final>", store, "u")
    assert (r.kind, r.final, r.tool, r.result, r.error) == ("final", "Hello!", None, None, None)
    assert chat_payload("raw", r) == {"reply": "raw", "kind": "final", "action": None,
                                      "result": {"ok": True, "final": "Hello!"}}


def test_store_refusals_are_action_results_not_exceptions(store):
    missing = execute(act("complete_task", title="ghost"), store, "u")
    assert (missing.kind, missing.ok) == ("action", False)
    assert missing.result == {"ok": False, "error": "no open task titled 'ghost'"}
    execute(act("add_task", title="dup"), store, "u")
    dup = execute(act("add_task", title="DUP"), store, "u")
    assert not dup.ok and "already exists" in dup.error
    nul = execute("<analysis>\u202e</analysis><action>add_task(title=\"\u0000\")</action>", store, "u")
    assert (nul.kind, nul.ok) == ("action", False) and "control characters" in nul.error  # on-contract, refused
    bad_user = execute(act("list_tasks"), store, "../../etc")
    assert not bad_user.ok and "user id" in bad_user.error
    payload = chat_payload("r", missing)
    assert payload["action"] == {"tool": "complete_task", "args": {"title": "ghost"}}
    assert payload["result"]["ok"] is False


def test_ambiguous_delete_lists_candidates(store):
    for _ in range(2):
        store.add("u", "same")
        store.complete("u", "same")
    r = execute(act("delete_task", title="same"), store, "u")
    assert not r.ok and len(r.result["candidates"]) == 2 and "cannot tell which" in r.error
    assert len(store.list("u", "all")) == 2


WATER = 'Add a task "water the plants" due 2026-12-01'


def test_an_invented_write_is_not_executed_and_asks_for_confirmation(store):
    """The tuned model answered WATER with another title (issue 16): with the user's message, a write
    whose values it does not contain is held back and the reply asks to confirm."""
    reply = act("add_task", title="buy coffee beans", due="2026-12-01")
    r = execute(reply, store, "u", message=WATER)
    assert (r.kind, r.tool, r.result, r.action) == ("confirm", "add_task", None, None)
    assert r.proposed == {"tool": "add_task", "args": {"title": "buy coffee beans", "due": "2026-12-01"}}
    assert "does not mention title 'buy coffee beans'" in r.final and "due" not in r.final.split("mention")[1]
    assert store.list("u", "all") == []
    payload = chat_payload(reply, r)
    assert payload["kind"] == "confirm" and payload["action"] is None
    assert payload["result"] == {"ok": False, "confirm": r.final, "proposed": r.proposed}

    wrong_date = execute(act("add_task", title="water the plants", due="2026-12-02"), store, "u", message=WATER)
    assert wrong_date.kind == "confirm" and "due '2026-12-02'" in wrong_date.final
    ok = execute(act("add_task", title="Water the  PLANTS", due="2026-12-01"), store, "u", message=WATER)
    assert ok.kind == "action" and ok.ok


def test_delete_and_complete_must_name_a_title_from_the_message(store):
    store.add("u", "call mom")
    store.add("u", "pay rent")
    deleted = execute(act("delete_task", title="pay rent"), store, "u", message="Delete the task call mom")
    assert deleted.kind == "confirm" and len(store.list("u")) == 2
    invented_add = execute(act("add_task", title="call dad"), store, "u", message="Delete the task call mom")
    assert invented_add.kind == "confirm"  # the wrong tool with an invented title writes nothing either
    done = execute(act("complete_task", title="call mom"), store, "u", message="I called Mom.")
    assert done.kind == "confirm"  # "called" is not "call": whole words only
    done = execute(act("complete_task", title="call mom"), store, "u", message="mark 'Call mom' as done")
    assert done.kind == "action" and done.ok
    # reads need no grounding; without a message (evaluation, old callers) nothing is checked
    assert execute(act("list_tasks", status="all"), store, "u", message="what's on my plate?").kind == "action"
    assert execute(act("delete_task", title="pay rent"), store, "u").ok


@pytest.mark.parametrize(("message", "grounded"), [
    ("due 2026-12-01", True), ("due 2026/12/01", True), ("due 12/01/2026", True), ("due 01.12.2026", True),
    ("due December 1, 2026", True), ("due dec 1st 2026", True), ("due 1 December 2026", True),
    ("due the 1st of Dec, 2026", True), ("due tomorrow", False), ("due 2026-12-11", False), ("due 2026", False),
])
def test_due_dates_are_grounded_in_any_common_form(message, grounded):
    from tunecrew.scenarios.task_agent.executor import ungrounded

    assert (ungrounded({"due": "2026-12-01"}, message) == {}) is grounded


PWNED = Path("/tmp/tunecrew-executor-pwned")

HOSTILE = [
    "",
    "add_task(title=\"no tags\")",
    "<analysis>x</analysis><action>__import__('os').system('touch /tmp/tunecrew-executor-pwned')</action>",
    "<analysis>x</analysis><action>eval(\"__import__('os').system('id')\")</action>",
    "<analysis>x</analysis><action>add_task(title=__import__('os').getcwd())</action>",
    "<analysis>x</analysis><action>add_task(title=\"a\"); __import__('os').system('id')</action>",
    "<analysis>x</analysis><action>add_task(title=\"a\")</action><action>delete_task(title=\"a\")</action>",
    "<analysis><action>add_task(title=\"nested\")</action></analysis><final>x</final>",
    "<analysis>x</analysis><action><action>add_task(title=\"n\")</action></action>",
    "<analysis>x</analysis><action>add_task(title=\"a\", **{'title': 'b'})</action>",
    "<analysis>x</analysis><action>add_task(title=\"\\x41\")</action>",
    "<analysis>x</analysis><action>add_task(title=\"a\", due=\"2026-02-30\")</action>",
    "<analysis>x</analysis><action>add_task(title=\"" + "x" * 201 + "\")</action>",
    "<analysis>x</analysis><action>os.system(title=\"rm -rf /\")</action>",
    "<analysis>x</analysis><action>add_task.__globals__(title=\"a\")</action>",
    "<analysis>x</analysis><action>ADD_TASK(title=\"a\")</action>",
    "<analysis>x</analysis><ACTION>add_task(title=\"a\")</ACTION>",
    "<analysis>x</analysis><action>add_task(title=\"a\")",
    "<analysis>x</analysis><action>add_task(title=\"a\")</action>trailing",
    "<analysis>x</analysis><action>add_task(title=\"a\\u0000\")</action>",
    "<analysis>x</analysis><action>add_task(title=\"a\")</action>" + " " * 9000,
    "<analysis>" * 5000,
    "<analysis>x</analysis><action>add_task(title=\"" + "🙂" * 3000 + "\")</action>",
    "x" * 100_000,
    "<analysis>x</analysis><final>" + "y" * 100_000 + "</final>",
]


@pytest.mark.parametrize("reply", HOSTILE, ids=lambda s: repr(s[:30]) + f"[{len(s)}]")
def test_hostile_replies_are_errors_and_execute_nothing(store, reply):
    PWNED.unlink(missing_ok=True)
    r = execute(reply, store, "u")
    assert r.kind == "error" and r.error and r.error.startswith("invalid reply: ")
    assert r.tool is None and r.result is None
    assert store.list("u", "all") == []
    assert not PWNED.exists()


# --------------------------------------------------------------------------- fuzzing

FRAGMENTS = [
    "<analysis>", "</analysis>", "<action>", "</action>", "<final>", "</final>", "< action >", "</FINAL>",
    "<analysis >", "add_task", "list_tasks", "complete_task", "delete_task", "summarize_tasks", "(", ")", ",",
    "=", '"', "\\", '\\"', "title", "due", "priority", "status", '"2026-12-01"', '"high"', '"open"',
    "__import__('os').system('touch /tmp/tunecrew-executor-pwned')", "eval(", "exec(", "lambda: 0", ";", "\n",
    "'; DROP TABLE tasks; --", "\x00", "\u202e", "🙂", "ß", "İ", "ﬁ", "\ufeff", " ",
]

hostile_text = st.one_of(
    st.text(max_size=300),
    st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=12)), max_size=40).map("".join),
    st.builds(lambda a, body, tag: f"<analysis>{a}</analysis><{tag}>{body}</{tag}>",
              st.text(max_size=30), st.lists(st.sampled_from(FRAGMENTS), max_size=20).map("".join),
              st.sampled_from(["action", "final", "analysis", "Action"])),
    st.integers(min_value=8000, max_value=120_000).map(lambda n: ("<analysis>" + "x" * n)[:n]),
)

_users = (f"fuzz{i}" for i in itertools.count())


@settings(max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(hostile_text)
def test_fuzz_parse_and_execute_never_raise_and_add_only_valid_add_task(fuzz_store, text):
    parsed = parse_reply(text)
    assert parsed.kind in ("action", "final", "invalid")
    assert (parsed.error is not None) == (parsed.kind == "invalid")
    user = next(_users)
    fuzz_store.add(user, "pre-existing")
    before = fuzz_store.list(user, "all")

    r = execute(text, fuzz_store, user)
    assert isinstance(r, ExecutionResult)
    ExecutionResult.model_validate_json(r.model_dump_json())  # JSON-able, round-trips
    after = fuzz_store.list(user, "all")
    assert not PWNED.exists()
    if parsed.kind != "action":
        assert r.kind == ("final" if parsed.kind == "final" else "error")
        assert after == before  # nothing executed
    else:
        assert (r.kind, r.tool, r.args) == ("action", parsed.tool, parsed.args)
        if parsed.tool != "add_task":
            assert len(after) <= len(before)  # no tool but add_task creates a task
        else:
            assert len(after) == len(before) + (1 if r.ok else 0)


@pytest.fixture(scope="module")
def fuzz_store(tmp_path_factory):
    PWNED.unlink(missing_ok=True)
    with TaskStore(tmp_path_factory.mktemp("fuzz_store")) as s:
        yield s


titles = st.text(min_size=1, max_size=200).filter(lambda t: "<" not in t and t.strip())


@settings(max_examples=150, deadline=None, database=None)
@given(title=titles, due=st.one_of(st.none(), st.dates(dt.date(1900, 1, 1), dt.date(2999, 12, 31))),
       priority=st.one_of(st.none(), st.sampled_from(["low", "medium", "high"])))
def test_fuzz_valid_add_task_stores_the_title_exactly(fuzz_store, title, due, priority):
    args = {"title": title, **({"due": due.isoformat()} if due else {}), **({"priority": priority} if priority else {})}
    reply = render_reply("Add it.", tool="add_task", args=args)
    user = next(_users)
    r = execute(reply, fuzz_store, user)
    assert r.kind == "action"
    try:
        check_title(title)
    except TaskError:
        assert not r.ok and fuzz_store.list(user, "all") == []
        return
    assert r.ok, r.error
    (task,) = fuzz_store.list(user)
    assert task["title"] == title.strip()
    assert task["due"] == (due.isoformat() if due else None)
