"""Dataset-backed scenarios (medical-reasoning, legal-reasoning, custom) and `tunecrew run --data`:
column detection and mapping on the shipped samples, the offline fallback for hub ids, one-line
errors for bad layouts and flags, answer scoring, and one offline end-to-end run."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tunecrew.app.cli import main
from tunecrew.scenarios.dataset import parse_columns, score_reply, with_data
from tunecrew.scenarios.legal_reasoning import sample_data as legal_sample
from tunecrew.scenarios.medical_reasoning import sample_data as medical_sample
from tunecrew.scenarios.registry import load_scenario
from tunecrew.tools.data_layouts import detect_format
from tunecrew.tools.rows import DataError, load_rows, write_jsonl
from tunecrew.tools.splits import leak_check

MEDICAL, LEGAL = load_scenario("medical-reasoning"), load_scenario("legal-reasoning")


def flat(text: str) -> str:
    """Console output without rich's line wrapping."""
    return " ".join(text.split())


@pytest.mark.parametrize("module", [medical_sample, legal_sample])
def test_shipped_samples_are_regenerated_byte_for_byte(module):
    shipped = module.SAMPLE
    assert shipped.stat().st_size < 300_000
    assert load_rows(shipped) == module.rows()
    assert len(module.rows()) == 160
    assert len({json.dumps(r, sort_keys=True) for r in module.rows()}) == 160  # no duplicate rows


def test_medical_sample_columns_are_detected_like_the_hub_dataset():
    rows = load_rows(medical_sample.SAMPLE)
    assert set(rows[0]) == {"Question", "Complex_CoT", "Response"}  # the hub dataset's columns
    fmt, cmap = detect_format(list(rows[0]), rows[0])
    assert (fmt, cmap) == ("instruction", {"prompt": "Question", "response": "Response", "reasoning": "Complex_CoT"})


def test_legal_sample_needs_the_scenarios_mapping_and_detection_says_why():
    rows = load_rows(legal_sample.SAMPLE)
    assert set(rows[0]) == {"ID", "Case_Description", "Argument", "Technique"}
    with pytest.raises(DataError, match=r"cannot tell the row layout from columns \['ID', 'Case_Description'"):
        detect_format(list(rows[0]), rows[0])
    data = LEGAL.build_data(0)
    assert any(n == "columns: instruction (prompt=Case_Description, reasoning=Argument, response=Technique), "
               "the scenario's mapping" for n in data.notes)
    assistant = data.train[0]["messages"][-1]["content"]
    assert assistant.startswith("<think>\nIssue:") and assistant.split("</think>\n")[1] in {
        r[0] for r in legal_sample.ISSUES}


def test_default_hub_dataset_falls_back_to_the_sample_at_once_when_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    started = time.monotonic()
    data = MEDICAL.build_data(0)
    assert time.monotonic() - started < 20  # no network timeout (most of this is the split on a busy CPU)
    assert len(data.train) + len(data.heldout) == 160 and len(data.heldout) == 16
    assert data.heldout_split == "medical-reasoning:sample-heldout(seed=0)"
    assert data.notes[0].startswith("data: HF_HUB_OFFLINE is set, so the shipped sample "
                                    "medical_reasoning/data/sample.jsonl (160 rows) stands in for "
                                    "FreedomIntelligence/medical-o1-reasoning-SFT:en")
    assert data.notes[1] == ("columns: instruction (prompt=Question, reasoning=Complex_CoT, response=Response), "
                             "detected")
    assert leak_check(data.train, data.heldout).passed
    assert data.train[0]["messages"][1]["content"].startswith("<think>\n")
    assert MEDICAL.build_data(0).heldout == data.heldout  # deterministic for a seed
    assert MEDICAL.build_data(1).heldout != data.heldout


def test_unreachable_hub_falls_back_without_waiting(monkeypatch):
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens on the discard port
    data = LEGAL.build_data(0)
    assert "the Hugging Face Hub cannot be reached" in data.notes[0] and "chemouda/legal_reason" in data.notes[0]


def test_user_given_hub_id_never_falls_back(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    scenario = with_data(MEDICAL, data="nobody/no-such-dataset:en")
    assert scenario.build_data.source == "nobody/no-such-dataset" and scenario.build_data.config == "en"
    with pytest.raises(DataError, match="nobody/no-such-dataset: could not load hub dataset"):
        scenario.build_data(0)


def test_hub_config_reaches_datasets(monkeypatch):
    import datasets

    calls = []

    def fake_load(source, config=None, split="train"):
        calls.append((source, config, split))
        return [{"Question": f"q{i}?", "Response": f"a{i}"} for i in range(20)]

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    data = with_data(MEDICAL, data="someone/med-data:en", heldout=4).build_data(0)
    assert calls == [("someone/med-data", "en", "train")]
    assert data.notes[0] == "data: someone/med-data:en, 20 rows" and len(data.heldout) == 4


def test_columns_override_on_a_csv_and_heldout_count(tmp_path):
    import pandas as pd

    rows = [{"q": f"What is {i} plus {i}?", "why": f"{i} and {i} make {2 * i}.", "a": str(2 * i)} for i in range(40)]
    path = tmp_path / "sums.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    scenario = with_data(MEDICAL, data=str(path), columns=parse_columns("prompt=q, response=a, reasoning=why"),
                         heldout=8)
    data = scenario.build_data(3)
    assert len(data.heldout) == 8 and len(data.train) == 32
    assert data.notes == [f"data: {path}, 40 rows",
                          "columns: instruction (prompt=q, reasoning=why, response=a), from --columns"]
    assert data.heldout_split == "medical-reasoning:sums-heldout(seed=3)"
    reply = data.train[0]["messages"][-1]["content"]
    assert reply.startswith("<think>\n") and reply.endswith("</think>\n" + reply.rsplit("\n", 1)[1])
    with pytest.raises(DataError, match="leaves no training rows"):
        with_data(scenario, heldout=40).build_data(0)
    with pytest.raises(DataError, match=r"column mapping names \['answer'\], which are not among the columns"):
        with_data(scenario, columns={"prompt": "q", "response": "answer"}).build_data(0)


@pytest.mark.parametrize(("text", "message"), [
    ("prompt", "'prompt' is not ROLE=COLUMN"),
    ("prompt=Q,answer=A", "unknown role 'answer'; roles are prompt, response"),
    ("prompt=Q,prompt=R", "role 'prompt' is given twice"),
    ("prompt=Q,,response=R", "'' is not ROLE=COLUMN"),
])
def test_parse_columns_rejects_bad_syntax(text, message):
    with pytest.raises(ValueError, match=message):
        parse_columns(text)


def test_bad_columns_flag_is_one_line_exit_2(capsys):
    assert main(["run", "--data", "x.jsonl", "--columns", "prompt=Question;response=Response"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "separate ROLE=COLUMN pairs with commas" in err and "Traceback" not in err


@pytest.mark.parametrize(("argv", "message"), [
    (["run"], "give a scenario name"),
    (["run", "medical-reasoning", "--heldout", "2.5"], "--heldout 2.5 must be a row count"),
    (["run", "medical-reasoning", "--heldout", "0"], "--heldout 0.0 must be a row count"),
])
def test_run_flags(argv, message, capsys):
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_unknown_columns_exit_2_with_one_line_listing_them(tmp_path, capsys, tunecrew_home):
    path = write_jsonl([{"foo": f"x{i}", "bar": f"y{i}"} for i in range(10)], tmp_path / "odd.jsonl")
    code = main(["run", "--data", str(path), "--runs-dir", str(tmp_path / "runs"), "--no-memory", "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert err.count("\n") == 1
    assert err.startswith(f"tunecrew: {path}: cannot tell the row layout from columns ['foo', 'bar']")
    assert "pass --columns prompt=COL,response=COL" in err


def test_task_agent_data_must_keep_its_reply_contract(tmp_path, capsys, tunecrew_home):
    path = write_jsonl([{"question": "q", "answer": "a"}], tmp_path / "d.jsonl")
    assert main(["run", "task-agent", "--data", str(path), "--runs-dir", str(tmp_path / "runs"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "none of the 1 references keeps the task agent's reply contract" in err and "--contract FILE" in err


def test_custom_scenario_needs_data():
    with pytest.raises(DataError, match="scenario custom needs a dataset: tunecrew run --data"):
        load_scenario("custom").build_data(0)


def test_score_reply_metrics_and_reasons():
    expected = "<think>\nRLQ pain and fever.\n</think>\nAcute appendicitis."
    right = score_reply(expected, "<think>\nfever\n</think>\nacute appendicitis")
    assert right.values["answer_f1"] == 1.0 and right.values["answer_exact_match"] == 1.0
    assert right.values["exact_match"] == 0.0 and right.values["format_compliance"] == 1.0 and right.reason == ""
    # whole replies, tags included: ref [think rlq pain and fever think acute appendicitis] (8 tokens), reply
    # [think fever think acute appendicitis] (5); LCS = the whole reply = 5 -> P 1, R 5/8, F = 1.25/1.625
    assert right.values["rouge_l"] == pytest.approx(1.25 / 1.625)
    partial = score_reply(expected, "<think>x</think> Acute cholecystitis")
    assert partial.values["answer_f1"] == pytest.approx(0.5) and partial.values["answer_recall"] == 0.5
    assert partial.reason.startswith("partial answer: F1 0.50")
    unclosed = score_reply(expected, "<think>RLQ pain and fever, so acute appendicitis")
    assert unclosed.values["format_compliance"] == 0.0
    assert unclosed.reason == "no final answer: the reply never closed </think>"
    assert score_reply(expected, "<think>x</think>").reason == "no final answer: nothing after the reasoning"
    assert score_reply("B", "The answer is (B).").values["answer_exact_match"] == 1.0  # no think in the reference


def test_scenarios_are_listed(capsys):
    assert main(["scenarios"]) == 0
    out = capsys.readouterr().out
    assert "medical-reasoning" in out and "legal-reasoning" in out and "custom" in out


@pytest.mark.slow
def test_medical_reasoning_end_to_end_offline(tmp_path, capsys, monkeypatch, tunecrew_home):
    """`tunecrew run medical-reasoning --max-attempts 1` on the shipped sample: tiny local model, offline
    crew, 8 held-out rows with a short generation budget so it fits a test's time."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(MEDICAL, "max_new_tokens", 48)  # the registry returns this very object
    runs = tmp_path / "runs"
    code = main(["run", "medical-reasoning", "--base-model", "tiny", "--max-attempts", "1", "--heldout", "8",
                 "--attempt-seconds", "5", "--no-memory", "--threads", "1", "--runs-dir", str(runs)])
    out = flat(capsys.readouterr().out)
    assert code == 0
    assert "stands in for FreedomIntelligence/medical-o1-reasoning-SFT:en" in out
    assert "columns: instruction (prompt=Question, reasoning=Complex_CoT, response=Response), detected" in out
    (run_dir,) = runs.iterdir()
    record = json.loads((run_dir / "ledger.jsonl").read_text().splitlines()[0])
    report = record["eval"]
    assert report["split"] == "medical-reasoning:sample-heldout(seed=0)" and report["samples"] == 8
    assert report["seed"] == 0 and report["primary_metric"] == "answer_f1"
    assert set(report["metrics"]) == {"answer_f1", "answer_exact_match", "answer_recall", "exact_match", "rouge_l",
                                      "format_compliance"}
    assert all(0.0 <= v <= 1.0 for v in report["metrics"].values())
    text = (run_dir / "report.md").read_text()
    assert "split=medical-reasoning:sample-heldout(seed=0), n=8, seed=0" in text
    for metric in ("answer_f1", "answer_exact_match", "rouge_l", "exact_match"):
        assert metric in text
    assert json.loads((run_dir / "domain.json").read_text())["domain"] == "medical reasoning"
    assert Path(record["result"]["adapter_path"]).exists()

