"""`tunecrew run --data TRAIN --heldout-data TEST`: the user's own held-out rows are scored as they are, read
with the same layout detection and checks as the training rows, and no scored prompt is trained on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tunecrew.app.cli import main
from tunecrew.scenarios.dataset import with_data
from tunecrew.scenarios.registry import load_scenario
from tunecrew.tools.rows import DataError, load_rows

FIXTURES = Path(__file__).parent / "fixtures" / "data"
SEED = FIXTURES / "llama_task_agent_chat.jsonl"  # 40 rows; 2 off the inferred contract (mark_done, due "sometime")


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _alpaca(n: int, start: int = 0) -> list[dict]:
    return [{"instruction": f"What is {i} plus {i}?", "input": "", "output": f"{2 * i}"}
            for i in range(start, start + n)]


def test_the_heldout_file_is_scored_as_it_is_and_its_prompts_stay_out_of_training(tmp_path: Path) -> None:
    train = _write_jsonl(tmp_path / "train.jsonl", _alpaca(20))
    # Another layout than the training file (prompt/response), one prompt the training file also has
    # (differing only in case and punctuation).
    held_rows = [{"prompt": f"What is {i} plus {i}?", "response": f"{2 * i}"} for i in range(100, 105)]
    held_rows.append({"prompt": "what is 3 plus 3", "response": "6"})
    held = _write_jsonl(tmp_path / "test.jsonl", held_rows)

    data = with_data(load_scenario("custom"), data=str(train), heldout_data=str(held)).build_data(0)
    assert len(data.heldout) == 6 and len(data.train) == 19
    assert [r["messages"][-1]["content"] for r in data.heldout] == [r["response"] for r in held_rows]
    assert not any("3 plus 3" in r["messages"][-2]["content"] for r in data.train)
    assert f"held-out data: {held}, 6 rows, scored as they are (not split from --data)" in data.notes
    assert "left 1 training rows out: their prompts are also in the held-out data" in data.notes
    assert data.heldout_split == "custom:test(heldout-data)"
    assert [n for n in data.notes if "columns:" in n] == [
        "columns: instruction (prompt=instruction, input=input, response=output), detected",
        "held-out data: columns: prompt_completion (prompt=prompt, completion=response), detected"]
    # The same seed or another: the held-out rows are the file's, not a seeded sample
    assert with_data(load_scenario("custom"), data=str(train), heldout_data=str(held)).build_data(5).heldout == \
        data.heldout


def test_task_agent_heldout_file_is_held_to_the_training_data_contract(tmp_path: Path) -> None:
    rows = load_rows(SEED)
    train = _write_jsonl(tmp_path / "train.jsonl", rows[:28])
    held = _write_jsonl(tmp_path / "held.jsonl", rows[28:])
    scenario = with_data(load_scenario("task-agent"), data=str(train), heldout_data=str(held))
    data = scenario.build_data(0)
    assert f"held-out data: contract: --heldout-data {held} checked under the contract inferred from the training " \
           "data" in data.notes
    # The training rows never put a <final> after </action>, so the contract inferred from them does not
    # allow it: 2 such held-out rows are off it, with the fixture's 2 off any contract (mark_done, "sometime").
    off = [n for n in data.notes if "off-contract" in n]
    assert off == ["held-out data: contract: 4 of 12 references are off-contract, left out of training and scoring "
                   "(first, row 8: extra <final> after </action>: a reply has exactly one <action> or <final>); if "
                   "your replies follow another contract, declare it with --contract FILE"]
    assert len(data.train) == 28 and len(data.heldout) == 8
    assert scenario.primary_metric == "action_exact_match"
    for row in data.heldout:  # every kept reference scores 1.0 against itself under that contract
        ref = row["messages"][-1]["content"]
        assert scenario.scorer(ref, ref).values["action_exact_match"] == 1.0


def test_heldout_data_mistakes_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    train = _write_jsonl(tmp_path / "train.jsonl", _alpaca(20))
    runs = tmp_path / "runs"
    args = ["run", "--data", str(train), "--runs-dir", str(runs), "--no-memory", "--quiet"]

    assert main([*args, "--heldout-data", str(tmp_path / "nope.jsonl")]) == 2
    assert capsys.readouterr().err == (f"tunecrew: --heldout-data {tmp_path / 'nope.jsonl'} is not a file; give a "
                                       ".jsonl/.json/.csv/.tsv/.parquet file of held-out rows or a hub id "
                                       "owner/name[:config]\n")
    assert main([*args, "--heldout-data", str(train), "--heldout", "4"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tunecrew: ") and "--heldout and --heldout-data: give one" in err and err.count("\n") == 1
    small = _write_jsonl(tmp_path / "small.jsonl", _alpaca(2, start=50))
    with pytest.raises(DataError, match=r"--heldout-data .*small\.jsonl: the held-out split has 2 rows; at least 4"):
        with_data(load_scenario("custom"), data=str(train), heldout_data=str(small)).build_data(0)
    every = _write_jsonl(tmp_path / "every.jsonl", _alpaca(20))
    with pytest.raises(DataError, match="every training row's prompt is also in the held-out data"):
        with_data(load_scenario("custom"), data=str(train), heldout_data=str(every)).build_data(0)
    assert not runs.exists()


def test_heldout_data_through_the_runs_prepare_profile_and_saved_config(tmp_path: Path, tiny_model: str,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from tunecrew.agents.toolkit import Toolkit
    from tunecrew.app.config import RunConfig, config_yaml
    from tunecrew.app.console import CrewConsole
    from tunecrew.app.runner import RunOptions, prepare

    train = _write_jsonl(tmp_path / "train.jsonl", _alpaca(20))
    held = _write_jsonl(tmp_path / "test.jsonl", _alpaca(6, start=200))
    ctx = prepare(RunOptions(scenario=load_scenario("custom"), data=str(train), heldout_data=str(held),
                             base_model=tiny_model, runs_dir=tmp_path / "runs", use_memory=False, quiet=True),
                  CrewConsole(quiet=True))
    assert ctx.spec.heldout_split == "custom:test(heldout-data)"
    assert len(load_rows(ctx.run.heldout_data)) == 6 and len(load_rows(ctx.run.train_data)) == 20
    # The profile (and so the report) names the user's file, not only the run's converted copy of it
    assert ctx.spec.data_source == str(train)
    profile = Toolkit(ctx).profile_dataset().profile
    assert profile.source == f"{train} (as converted into {ctx.run.train_data})"

    monkeypatch.chdir(tmp_path)  # a relative path is saved absolute: `-c config.yaml` repeats the run anywhere
    config = RunConfig(data=str(train), heldout_data="test.jsonl")
    assert f"heldout_data: {held}" in config_yaml(config)
