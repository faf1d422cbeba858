"""The command line answers bad input with one clear line and exit code 2, never a traceback."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tunecrew.app.cli import main


def test_missing_base_model_names_the_flag(tmp_path, capsys, tunecrew_home):
    code = main(["run", "task-agent", "--base-model", str(tmp_path / "nope"), "--runs-dir", str(tmp_path / "runs"),
                 "--quiet"])
    err = capsys.readouterr().err
    assert code == 2
    assert "--base-model" in err and "Traceback" not in err


@pytest.mark.parametrize(("argv", "message"), [
    (["run", "task-agent", "--max-attempts", "0"], "--max-attempts 0 must be between 1 and 50"),
    (["run", "task-agent", "--target", "1.5"], "--target 1.5 must be in (0, 1]"),
])
def test_out_of_range_flags(argv, message, capsys):
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_unknown_scenario_lists_the_known_ones(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["run", "nope"])
    assert exit_.value.code == 2  # bad input, as the README says
    assert capsys.readouterr().err == ("tunecrew: unknown scenario 'nope'; "
                                       "available: custom, legal-reasoning, medical-reasoning, task-agent\n")


def test_a_run_that_is_not_there_is_named_once(tmp_path, capsys):
    assert main(["agent", str(tmp_path), "--runs-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count(str(tmp_path / "run.json")) == 1 and "does not exist" in err


def test_unknown_provider_needs_no_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "tunecrew.app.cli", "run", "task-agent", "--provider", "gpt5"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "invalid choice: 'gpt5'" in proc.stderr and "Traceback" not in proc.stderr


def test_scenarios_lists_the_task_agent(capsys):
    assert main(["scenarios"]) == 0
    assert "task-agent" in capsys.readouterr().out


def test_every_run_flag_is_a_run_config_field_and_back():
    """The flags are generated from RunConfig: each field is one flag, parsed into the same field
    (and -c/--config, the YAML file of those fields, is the one flag that is not a field)."""
    from tunecrew.app.cli import parser
    from tunecrew.app.config import RunConfig, config_from_args

    run = next(a for a in parser()._actions if a.dest == "command").choices["run"]
    dests = {a.dest for a in run._actions if a.dest != "help"}
    assert dests == set(RunConfig.model_fields) | {"config"}
    argv = ["run", "medical-reasoning", "--seed", "3", "--budget", "5", "--judge", "openai:m", "--judge", "gemini:g",
            "--no-memory", "--heldout", "0.2", "--max-attempts", "2", "--threads", "1", "--provider", "ollama"]
    config = config_from_args(RunConfig, parser().parse_args(argv))
    assert (config.scenario, config.seed, config.budget, config.judge, config.no_memory, config.heldout,
            config.max_attempts, config.threads, config.provider) == \
        ("medical-reasoning", 3, 5.0, ["openai:m", "gemini:g"], True, 0.2, 2, 1, "ollama")
    assert config_from_args(RunConfig, parser().parse_args(["run", "task-agent"])) == RunConfig(scenario="task-agent")


@pytest.mark.parametrize(("argv", "message"), [
    (["--budget", "nan"], "--budget nan must be a finite number"),
    (["--threads", "0"], "--threads 0 must be between 1 and 256"),
    (["--attempt-seconds", "-5"], "--attempt-seconds -5.0 must be above 0"),
    (["--judge-samples", "0"], "--judge-samples 0 must be at least 1"),
])
def test_out_of_range_flags_name_the_flag_and_the_range(argv, message, capsys):
    from tunecrew.app.cli import main

    assert main(["run", "task-agent", *argv]) == 2
    assert capsys.readouterr().err.strip() == f"tunecrew: {message}"


def test_a_runs_dir_that_cannot_hold_runs_is_one_line_before_any_work(tmp_path, capsys):
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    for runs_dir in (a_file, a_file / "below"):
        assert main(["run", "task-agent", "--runs-dir", str(runs_dir)]) == 2
        err = capsys.readouterr().err.strip()
        assert err == f"tunecrew: --runs-dir {runs_dir} must be a folder to hold runs/<id>/, but {a_file} is a file"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]


def test_quiet_keeps_the_summary_and_says_whether_the_target_was_reached(tmp_path, tiny_model, capsys):
    """--quiet silences the conversation, not the end: the table, the outcome and the report's path."""
    from tunecrew.app.console import CrewConsole
    from tunecrew.app.runner import RunOptions, prepare
    from tunecrew.scenarios.registry import load_scenario

    console = CrewConsole(quiet=True)
    ctx = prepare(RunOptions(scenario=load_scenario("task-agent"), base_model=tiny_model, runs_dir=tmp_path / "runs",
                             use_memory=False, quiet=True), console)
    console.note("a conversation line")
    console.summary(ctx, tmp_path / "report.md")
    out = capsys.readouterr().out.replace("\n", "")  # rich wraps long lines at the terminal's width
    assert "a conversation line" not in out
    assert "0 attempt(s); none produced a score. Target 0.900." in out and f"report: {tmp_path / 'report.md'}" in out
