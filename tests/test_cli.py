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


def test_unknown_scenario_lists_the_known_ones():
    with pytest.raises(SystemExit, match="unknown scenario 'nope'; "
                                         "available: custom, legal-reasoning, medical-reasoning, task-agent"):
        main(["run", "nope"])


def test_unknown_provider_needs_no_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "tunecrew.app.cli", "run", "task-agent", "--provider", "gpt5"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "invalid choice: 'gpt5'" in proc.stderr and "Traceback" not in proc.stderr


def test_scenarios_lists_the_task_agent(capsys):
    assert main(["scenarios"]) == 0
    assert "task-agent" in capsys.readouterr().out
