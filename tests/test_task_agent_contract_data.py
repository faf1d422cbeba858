"""`tunecrew run task-agent --data FILE [--contract FILE]`: another project's task-agent rows (look-alikes of
the llama-task-agent seed project: `due_date=`, direct replies without <analysis>) trained and scored by tool
and argument under their declared or inferred reply contract (scenarios/task_agent/user_data.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tunecrew.app.cli import main
from tunecrew.scenarios.dataset import with_data
from tunecrew.scenarios.registry import load_scenario
from tunecrew.scenarios.task_agent.contract import ReplyContract, parse_reply
from tunecrew.tools.rows import DataError, load_rows

FIXTURES = Path(__file__).parent / "fixtures" / "data"
SEED = FIXTURES / "llama_task_agent_chat.jsonl"  # 40 rows: 15 add_task with due_date, 10 replies without <analysis>
RAW = FIXTURES / "llama_task_agent_raw.json"  # the seed's own instruction/analysis/action/final layout
CONTRACT = FIXTURES / "task_agent_contract.yaml"
INFERRED = ("contract: inferred from the data: due_date= for due in 15, no <analysis> in 10, <final> after </action> "
            "in 2 of 40 references; pin it (or declare what else your data uses) with --contract FILE holding "
            "{aliases: {due_date: due}, analysis: optional, final_after_action: true} (docs/data-formats.md)")
OFF = ("contract: 2 of 40 references are off-contract, left out of training and scoring (first, row 38: unknown tool "
       "'mark_done'; allowed tools: add_task, list_tasks, summarize_tasks, complete_task, delete_task); if your "
       "replies follow another contract, declare it with --contract FILE")


def reply(row: dict) -> str:
    return row["messages"][-1]["content"]


def test_the_seed_data_is_off_the_default_contract_and_on_the_inferred_one() -> None:
    references = [reply(r) for r in load_rows(SEED)]
    assert sum(parse_reply(r).kind == "invalid" for r in references) == 26  # the issue: most rows refused

    scenario = with_data(load_scenario("task-agent"), data=str(SEED), heldout=8)
    data = scenario.build_data(0)
    assert INFERRED in data.notes and OFF in data.notes
    assert "contract: scored by tool and argument; references by kind: add_task 15, final 9, list_tasks 8, " \
           "summarize_tasks 6" in data.notes
    assert (len(data.train), len(data.heldout)) == (30, 8)
    assert data.heldout_split == "task-agent:llama_task_agent_chat-heldout(seed=0)"
    assert not any("mark_done" in reply(r) or "sometime" in reply(r) for r in data.train + data.heldout)
    assert scenario.primary_metric == "action_exact_match" and scenario.max_new_tokens == 128

    # Every kept reference scores 1.0 against itself, by tool and argument, under the inferred contract.
    for row in data.heldout:
        assert scenario.scorer(reply(row), reply(row)).values == {
            "format_compliance": 1.0, "tool_accuracy": 1.0, "action_exact_match": 1.0}


def test_the_seed_data_is_scored_by_tool_and_argument_with_aliases_normalised() -> None:
    scenario = with_data(load_scenario("task-agent"), data=str(SEED), heldout=8)
    scenario.build_data(0)
    ref = ('<analysis>\nUser wants to create a new task \'water the ferns\' with due date tomorrow.\n</analysis>\n\n'
           '<action>\nadd_task(title="Water the ferns", due_date="2026-03-03")\n</action>')
    canonical = '<analysis>Add it.</analysis><action>add_task(title="Water the ferns", due="2026-03-03")</action>'
    assert scenario.scorer(ref, canonical).values["action_exact_match"] == 1.0
    wrong_day = scenario.scorer(ref, canonical.replace("03-03", "03-04"))
    assert wrong_day.values == {"format_compliance": 1.0, "tool_accuracy": 1.0, "action_exact_match": 0.0}
    assert wrong_day.reason == "args differ: due: expected '2026-03-03', got '2026-03-04'"
    no_analysis = scenario.scorer(ref, '<action>add_task(title="Water the ferns", due_date="2026-03-03")</action>')
    assert no_analysis.values["action_exact_match"] == 1.0
    wrong_tool = scenario.scorer(ref, "<action>list_tasks()</action>")
    assert wrong_tool.values == {"format_compliance": 1.0, "tool_accuracy": 0.0, "action_exact_match": 0.0}
    assert scenario.scorer(ref, "Sure, added!").values["format_compliance"] == 0.0
    # A reference off the contract is not a crash in the middle of an evaluation: it is not scored.
    skipped = scenario.scorer("<action>mark_done()</action>", "<action>list_tasks()</action>")
    assert skipped.values == {} and skipped.reason.startswith("not scored:")


def test_a_declared_contract_is_used_as_declared(tmp_path: Path) -> None:
    data = with_data(load_scenario("task-agent"), data=str(SEED), heldout=8, contract=str(CONTRACT)).build_data(0)
    assert f"contract: declared in {CONTRACT}" in data.notes and OFF in data.notes
    assert not any(n.startswith("contract: inferred") for n in data.notes)

    # A declaration without the alias keeps the due_date rows out: counted in one note, no crash.
    narrow = tmp_path / "narrow.yaml"
    narrow.write_text("analysis: optional\n")
    data = with_data(load_scenario("task-agent"), data=str(SEED), heldout=8, contract=str(narrow)).build_data(0)
    note = next(n for n in data.notes if "off-contract" in n)
    assert note.startswith("contract: 18 of 40 references are off-contract, left out of training and scoring "
                           "(first, row 0: unknown argument 'due_date' for add_task")
    assert len(data.train) + len(data.heldout) == 22

    # The tuned model (and so the baseline) is told the declared contract, tools spelled out.
    scenario = with_data(load_scenario("task-agent"), data=str(SEED), contract=str(narrow))
    assert scenario.system_prompt("An expert.") == (
        'An expert. Reply as optionally <analysis>one sentence</analysis>, then <action>TOOL(arg="value", ...)'
        '</action> or <final>short reply</final>. Tools: add_task(title, due="YYYY-MM-DD", '
        'priority="low|medium|high"), list_tasks(status="open|done|all"), summarize_tasks(), complete_task(title), '
        'delete_task(title).')


def test_an_inferred_contract_is_the_system_prompt_once_the_rows_are_read(tmp_path: Path) -> None:
    tools = tmp_path / "tools.jsonl"
    rows = [{"messages": [{"role": "user", "content": f"add chore {i}"},
                          {"role": "assistant", "content": f'<action>add_task(title="chore {i}")</action>'}]}
            for i in range(20)]
    tools.write_text("\n".join(json.dumps(r) for r in rows))
    scenario = with_data(load_scenario("task-agent"), data=str(tools), heldout=4)
    with pytest.raises(RuntimeError, match="known once its rows are read"):
        scenario.system_prompt("An expert.")  # never a guess at the contract before the rows say it
    scenario.build_data(0)
    prompt = scenario.system_prompt("An expert.")
    assert prompt.startswith("An expert. Reply as optionally <analysis>one sentence</analysis>, then <action>")
    assert "add_task(title, due=" in prompt and "complete_task(title)" in prompt


def test_the_seed_projects_own_layout_is_rendered_as_its_training_script_does() -> None:
    data = with_data(load_scenario("task-agent"), data=str(RAW), heldout=4).build_data(0)
    assert ("data: llama-task-agent rows (instruction, analysis, action, final) rendered as its training script "
            "renders them, 16 rows") in data.notes
    assert any(n.startswith("contract: inferred from the data: due_date= for due in 6, no <analysis> in 5 of 16")
               for n in data.notes)
    rows = {r["messages"][0]["content"]: reply(r) for r in data.train + data.heldout}
    assert len(rows) == 16
    assert rows["Remind me to water the ferns tomorrow"] == (
        "<analysis>\nUser wants to create a new task 'water the ferns' with due date tomorrow.\n</analysis>\n\n"
        '<action>\nadd_task(title="Water the ferns", due_date="2026-03-03")\n</action>')
    # A final keeps only its answer, as the seed's format_sample does, even where the row has an analysis.
    assert rows["I need to do something tomorrow"] == (
        "<final>\nCould you please specify what task you'd like to add for tomorrow?\n</final>")


def test_a_seed_row_without_an_answer_is_one_line_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "seed.json"
    path.write_text(json.dumps([{"instruction": "Hello", "final": "Hi!"}, {"instruction": "Add milk"}] * 5))
    with pytest.raises(DataError, match=r"seed\.json row 1: needs an action or a final answer"):
        with_data(load_scenario("task-agent"), data=str(path)).build_data(0)


def test_contract_and_data_flags_go_where_they_mean_something(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="generates its own data; --columns, --heldout, --heldout-data and "
                                        "--contract describe a file you give: add --data FILE"):
        with_data(load_scenario("task-agent"), contract=str(CONTRACT))
    with pytest.raises(DataError, match="declares the task agent's reply contract; it works with tunecrew run "
                                        "task-agent --data FILE --contract FILE, not with scenario custom"):
        with_data(load_scenario("custom"), data=str(SEED), contract=str(CONTRACT))
    assert with_data(load_scenario("task-agent")) is load_scenario("task-agent")  # no flags: the generated data


def test_a_bad_contract_flag_is_one_line_before_any_work(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                         tunecrew_home: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("toolz: {}\n")
    runs = tmp_path / "runs"
    args = ["run", "task-agent", "--data", str(SEED), "--runs-dir", str(runs), "--no-memory", "--quiet"]
    assert main([*args, "--contract", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err == (f"tunecrew: --contract {bad}: unknown key 'toolz' (known: tools, aliases, analysis, "
                   "final_after_action, choices)\n")
    config = tmp_path / "run.yaml"
    config.write_text(f"contract: {bad}\n")
    assert main([*args, "-c", str(config)]) == 2
    assert capsys.readouterr().err.startswith(f"tunecrew: {config}: contract: {bad}: unknown key 'toolz'")
    assert not runs.exists()


def test_a_good_contract_flag_is_kept_as_an_absolute_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tunecrew.app.config import RunConfig

    monkeypatch.chdir(FIXTURES)
    config = RunConfig(scenario="task-agent", data=str(SEED), contract="task_agent_contract.yaml")
    assert config.contract == str(CONTRACT)


def test_task_agent_data_through_the_runs_prepare(tmp_path: Path, tiny_model: str) -> None:
    from tunecrew.app.console import CrewConsole
    from tunecrew.app.runner import RunOptions, prepare

    notes: list[str] = []
    console = CrewConsole(quiet=True)
    console.note = notes.append  # type: ignore[method-assign]
    ctx = prepare(RunOptions(scenario=load_scenario("task-agent"), data=str(SEED), heldout=8, base_model=tiny_model,
                             runs_dir=tmp_path / "runs", use_memory=False, quiet=True), console)
    assert INFERRED in notes and OFF in notes
    assert ctx.spec.scenario == "task-agent" and ctx.scenario.primary_metric == "action_exact_match"
    assert ctx.spec.heldout_split == "task-agent:llama_task_agent_chat-heldout(seed=0)"
    assert len(load_rows(ctx.run.heldout_data)) == 8 and len(load_rows(ctx.run.train_data)) == 30
    assert "due_date=" in "".join(reply(r) for r in load_rows(ctx.run.train_data))  # trained as the user wrote it
    # Trained (and the baseline prompted) with this data's contract spelled out (here inferred: <analysis> optional).
    assert "Reply as optionally <analysis>" in ctx.system_prompt and "list_tasks(status=" in ctx.system_prompt
    perfect = ctx.scenario.scorer(reply(ctx.data.heldout[0]), reply(ctx.data.heldout[0]))
    assert perfect.values["action_exact_match"] == 1.0

    # Resume scores, and serve parses, under the contract the rows were checked with (contract.json).
    from tunecrew.app.runner import reopen
    from tunecrew.scenarios.task_agent.executor import execute
    from tunecrew.scenarios.task_agent.store import TaskStore

    assert ctx.run.contract.exists()
    resumed = reopen(ctx.run, console)
    aliased = next(reply(r) for r in ctx.data.heldout + ctx.data.train if "due_date=" in reply(r))
    canonical = aliased.replace("due_date=", "due=")
    again = resumed.scenario.scorer(aliased, canonical)
    assert again.values["action_exact_match"] == 1.0 and resumed.scenario.primary_metric == "action_exact_match"
    assert resumed.system_prompt == ctx.system_prompt  # a resumed run's next attempt is prompted as its first was
    saved = ReplyContract.model_validate_json(ctx.run.contract.read_text())
    with TaskStore(tmp_path / "tasks.db") as store:
        assert execute(aliased, store, "me").kind == "error"  # the default contract refuses due_date=
        served = execute(aliased, store, "me", contract=saved)
        assert served.kind == "action" and "due" in served.args and "due_date" not in served.args

    notes.clear()
    ctx = prepare(RunOptions(scenario=load_scenario("task-agent"), data=str(SEED), heldout=8, contract=str(CONTRACT),
                             base_model=tiny_model, runs_dir=tmp_path / "runs", use_memory=False, quiet=True), console)
    assert f"contract: declared in {CONTRACT}" in notes and OFF in notes
    assert len(ctx.data.train) == 30


def test_the_contract_flag_reaches_the_run(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import tunecrew.app.runner as runner

    seen: list = []

    def record(options, **_: object):
        seen.append(options)
        raise DataError("recorded")

    monkeypatch.setattr(runner, "run", record)
    assert main(["run", "task-agent", "--data", str(SEED), "--contract", str(CONTRACT), "--no-memory",
                 "--runs-dir", str(tmp_path / "runs"), "--quiet"]) == 2
    assert getattr(seen[0], "contract", None) == str(CONTRACT)


@pytest.mark.slow
def test_the_cli_trains_and_scores_the_seed_data_by_tool_and_argument(tmp_path: Path) -> None:
    """The whole run in a subprocess, as a user types it: one attempt of a tiny model, scored on the held-out rows."""
    env = {**os.environ, "TUNECREW_HOME": str(tmp_path / "home"), "HF_HUB_OFFLINE": "1"}
    runs = tmp_path / "runs"
    proc = subprocess.run([sys.executable, "-m", "tunecrew.app.cli", "run", "task-agent", "--data", str(SEED),
                           "--contract", str(CONTRACT), "--heldout", "8", "--base-model", "tiny", "--max-attempts",
                           "1", "--budget", "1", "--no-memory", "--runs-dir", str(runs), "--threads", "1"],
                          capture_output=True, text=True, env=env, timeout=600)
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert "contract: declared in" in proc.stdout and "2 of 40 references are off-contract" in proc.stdout, \
        proc.stdout[-2000:]
    (run,) = runs.iterdir()
    report = json.loads((run / "attempts" / "1" / "eval.json").read_text())
    assert report["split"] == "task-agent:llama_task_agent_chat-heldout(seed=0)" and report["samples"] == 8
    assert set(report["metrics"]) >= {"format_compliance", "tool_accuracy", "action_exact_match"}
    assert report["primary_metric"] == "action_exact_match"
    job = json.loads((run / "attempts" / "1" / "job.json").read_text())
    assert "Tools: add_task(title, " in job["system_prompt"]  # trained with the declared contract spelled out
    assert f"contract: {CONTRACT}" in (run / "config.yaml").read_text()  # `-c config.yaml` repeats it


def test_a_split_too_small_because_references_were_off_contract_says_so(tmp_path):
    """The default contract (an empty --contract file declares it) leaves 26 of the 40 references out;
    the refusal must name that and --contract, not only ask for more data."""
    empty = tmp_path / "contract.yaml"
    empty.write_text("")
    scenario = with_data(load_scenario("task-agent"), data=str(SEED), contract=str(empty))
    with pytest.raises(DataError) as info:
        scenario.build_data(0)
    message = str(info.value)
    assert "the held-out split has" in message and "26 of 40 references are off-contract" in message
    assert "declare it with --contract FILE" in message and "\n" not in message
