"""Property test over `tunecrew run` and `tunecrew resume` flags: any command line with a bad value
in it stops with exit 2 and one line naming a bad flag, before anything is written.

Each example mixes good values with at least one bad one (nan, inf, negatives, zero where it means
nothing, out of range, not a number, a file where a folder goes, unknown roles or providers).
`run` and `resume` themselves are replaced by a tripwire: a bad value that got through would start
a run, and the tripwire fails the example naming the command line.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tunecrew.app import runner
from tunecrew.app.cli import main

GOOD = {
    "--threads": ["1", "2"], "--max-attempts": ["1", "3"], "--target": ["0.5", "1"], "--seed": ["0", "7"],
    "--budget": ["5", "2.5"], "--attempt-seconds": ["30", "0.5"], "--heldout": ["8", "0.2"],
    "--judge-samples": ["5"], "--columns": ["prompt=q,response=a"], "--agent": ["Planner=offline"],
}
BAD = {
    "--threads": ["0", "-1", "1000", "nan", "abc", "1.5", ""],
    "--max-attempts": ["0", "-5", "51", "nan", "x"],
    "--target": ["0", "-0.1", "1.5", "nan", "inf", "-inf"],
    "--seed": ["-1", "x", "1.5"],
    "--budget": ["0", "0.5", "-3", "nan", "inf", "1e9"],
    "--attempt-seconds": ["0", "-5", "nan", "inf", "-inf"],
    "--heldout": ["0", "-1", "1.5", "nan", "inf", "2.5", "1e400"],
    "--judge-samples": ["0", "-1", "x"],
    "--columns": ["prompt", "=x", "bogus=x", "prompt=a,prompt=b"],
    "--agent": ["Nobody=openai", "Planner=gpt5", "Planner"],
    "--provider": ["gpt5", ""],
    "--runs-dir": ["FILE", "FILE/sub"],
    "--train-python": ["/nonexistent/bin/python"],
    "--heldout-data": ["missing.jsonl", "./nope/held.csv"],
}
RESUME_BAD = {"--add-attempts": ["-5", "51", "x", "nan"], "--threads": BAD["--threads"],
              "--provider": BAD["--provider"], "--agent": BAD["--agent"]}


class Tripwire(Exception):
    pass


def _tripwire(*args, **kwargs):
    raise Tripwire(f"a command line with a bad flag started a run: {args} {kwargs}")


def _command_line(draw, good: dict[str, list[str]], bad: dict[str, list[str]]) -> tuple[list[str], set[str]]:
    bad_flags = draw(st.sets(st.sampled_from(sorted(bad)), min_size=1, max_size=3))
    others = sorted(set(good) - bad_flags)
    good_flags = draw(st.sets(st.sampled_from(others), max_size=4)) if others else set()
    argv: list[str] = []
    for flag in sorted(bad_flags | good_flags, key=lambda _: draw(st.integers(0, 99))):
        value = draw(st.sampled_from(bad[flag] if flag in bad_flags else good[flag]))
        argv += [flag, value]
    return argv, bad_flags


@st.composite
def run_lines(draw):
    return _command_line(draw, GOOD, BAD)


@st.composite
def resume_lines(draw):
    return _command_line(draw, {"--threads": ["1"], "--add-attempts": ["2"]}, RESUME_BAD)


def _check(argv: list[str], bad: set[str], capsys, tmp_path) -> None:
    capsys.readouterr()
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse: a value of the wrong type, a choice that does not exist
        code = exc.code
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, (argv, err)
    assert "Traceback" not in err
    if lines[-1].startswith("tunecrew: "):
        assert len(lines) == 1, (argv, err)  # ours: one line
        named = set(re.findall(r"--[a-z-]+", lines[0]))
    else:  # argparse's own: the usage, then `error: argument --flag: ...`
        assert "error: argument" in lines[-1], (argv, err)
        named = set(re.findall(r"--[a-z-]+", lines[-1]))
    assert named & bad, (argv, err)  # the line names one of the bad flags, not a good one
    assert not (tmp_path / "runs").exists(), argv  # nothing written


@pytest.fixture
def fenced(monkeypatch, tmp_path):
    monkeypatch.setattr(runner, "run", _tripwire)
    monkeypatch.setattr(runner, "resume", _tripwire)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "FILE").write_text("a file, not a folder")
    return tmp_path


@settings(max_examples=150, derandomize=True, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(line=run_lines())
def test_any_bad_run_flag_is_one_line_naming_it_before_anything_is_written(line, fenced, capsys):
    argv, bad = line
    if "--runs-dir" not in bad:
        argv = [*argv, "--runs-dir", "runs"]
    _check(["run", "task-agent", *argv], bad, capsys, fenced)


@settings(max_examples=60, derandomize=True, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(line=resume_lines())
def test_any_bad_resume_flag_is_one_line_naming_it(line, fenced, capsys):
    argv, bad = line
    _check(["resume", "some-run", "--runs-dir", "runs", *argv], bad, capsys, fenced)
