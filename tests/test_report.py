"""The run report: files exist, PNGs are real, every score carries split/samples/seed."""

from __future__ import annotations

import datetime as dt
import math
import re
from pathlib import Path

from tunecrew.tools.contracts import (
    AttemptRecord,
    Failure,
    GroupMetrics,
    LeakCheck,
    LossPoint,
    RunSpec,
)
from tunecrew.tools.report import WALL_CLOCK, WORK_CLOCK, attempt_minutes, write_report

from factories import make_record

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def spec() -> RunSpec:
    return RunSpec(run_id="demo-1", scenario="task-agent", base_model="tiny-llama-3.7M", provider="offline",
                   max_attempts=4, target=0.8, seed=7, dataset_fingerprint="sha256:" + "ab" * 32, memory="on")


def curve(n: int, start: float, floor: float, every: int = 10) -> list[LossPoint]:
    return [LossPoint(step=every * i, loss=floor + (start - floor) * math.exp(-i / 5)) for i in range(n)]


def two_records() -> list[AttemptRecord]:
    first = make_record(attempt=1, score=0.55, diagnosis="underfit", epochs=1.0, lr=1e-3)
    assert first.eval is not None
    first = first.model_copy(update={
        "result": first.result.model_copy(update={"loss_curve": curve(12, 8.0, 1.5),
                                                  "eval_curve": curve(3, 8.0, 1.8, 40),
                                                  "train_loss": 1.71, "eval_loss": 2.04}),
        "eval": first.eval.model_copy(update={
            "split": "heldout-tools", "samples": 48, "seed": 3,
            "metrics": {"tool_accuracy": 0.55, "format_compliance": 0.625},
            "groups": {"create_task": GroupMetrics(samples=20, metrics={"tool_accuracy": 0.6})},
            "failures": [Failure(prompt=f"prompt {i}", expected="create_task", got="list_tasks", reason="wrong tool")
                         for i in range(5)],
            "leak_check": LeakCheck(checked=48, exact_overlap=0),
        }),
    })
    second = make_record(attempt=2, score=0.875, diagnosis="good", epochs=3.0, lr=3e-3)
    assert second.eval is not None
    second = second.model_copy(update={
        "result": second.result.model_copy(update={"loss_curve": curve(36, 8.0, 0.4), "train_loss": 0.41,
                                                   "eval_loss": None}),
        "eval": second.eval.model_copy(update={
            "split": "heldout-tools", "samples": 48, "seed": 3,
            "metrics": {"tool_accuracy": 0.875, "format_compliance": 0.958},
        }),
    })
    return [first, second]


def assert_png(path: Path) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC, path
    assert len(data) > 1024, path


def test_report_for_two_attempts(tmp_path: Path) -> None:
    records = two_records()
    md_path = write_report(tmp_path, spec(), records)
    assert md_path == tmp_path / "report.md"
    for name in ("report.md", "report.html", "loss_curves.png", "scores.png"):
        assert (tmp_path / name).is_file(), name
    assert_png(tmp_path / "loss_curves.png")
    assert_png(tmp_path / "scores.png")

    md = md_path.read_text()
    assert "demo-1" in md and "tiny-llama-3.7M" in md and "offline" in md and "sha256:" + "ab" * 32 in md
    assert "![" in md and "loss_curves.png" in md and "scores.png" in md
    # Each metric value of each attempt appears on a line that also names split, samples and seed.
    for value in ("0.550", "0.625", "0.875", "0.958"):
        lines = [line for line in md.splitlines() if value in line]
        assert lines, value
        for line in lines:
            assert "heldout-tools" in line and "48" in line and re.search(r"\b3\b", line), line
    # Failures are capped, leak check and decisions reported.
    assert md.count("wrong tool") == 3
    assert "Leak check passed" in md
    assert "underfit" in md and "stop" in md

    page = (tmp_path / "report.html").read_text()
    assert page.startswith("<!doctype html>") and "<table>" in page and "0.875" in page
    assert "<img src='scores.png'" in page and "<img src='scores_over_time.png'" in page
    assert_png(tmp_path / "scores_over_time.png")


def test_failed_attempt_without_eval_or_curves(tmp_path: Path) -> None:
    crashed = make_record(attempt=1, status="oom", diagnosis="oom")
    assert crashed.eval is None and not crashed.result.loss_curve
    write_report(tmp_path, spec(), [crashed])
    md = (tmp_path / "report.md").read_text()
    assert "No evaluation: training ended with status=oom" in md
    assert_png(tmp_path / "loss_curves.png")
    assert_png(tmp_path / "scores.png")


def test_zero_records(tmp_path: Path) -> None:
    out = write_report(tmp_path / "nested" / "run", spec(), [])
    md = out.read_text()
    assert "No attempts were recorded." in md
    assert_png(out.parent / "loss_curves.png")
    assert_png(out.parent / "scores.png")
    assert (out.parent / "report.html").is_file()


def test_base_model_beside_every_attempt(tmp_path: Path) -> None:
    from tunecrew.tools.contracts import Failure

    records = two_records()
    example = Failure(prompt="add milk", expected="<analysis>a</analysis><final>x</final>", got="garbage", reason="bad")
    baseline = records[0].eval.model_copy(update={"metrics": {k: 0.0 for k in records[0].eval.metrics},
                                                  "examples": [example]})
    tuned = records[1].model_copy(update={"eval": records[1].eval.model_copy(update={
        "examples": [example.model_copy(update={"got": "TUNED-REPLY", "reason": ""})]})})
    md = write_report(tmp_path, spec(), [records[0], tuned], baseline=baseline).read_text()
    section = md[md.index("## Base model vs attempts"):md.index("## Loss curves")]
    assert "| base model |" in section and "| attempt 1 |" in section and "| attempt 2 |" in section
    assert "garbage" in section and "TUNED-REPLY" in section and "n=" in section


def test_the_terminal_summary_shows_the_target_its_other_groups_and_the_gates():
    from tunecrew.app.console import summary_metrics

    present = {"format_compliance", "tool_accuracy", "action_exact_match", "novel_phrasing/action_exact_match",
               "trained_phrasing/action_exact_match"}
    assert summary_metrics("novel_phrasing/action_exact_match", {"format_compliance": 0.98}, present) == [
        "novel_phrasing/action_exact_match", "trained_phrasing/action_exact_match", "format_compliance"]
    assert summary_metrics("answer_f1", {}, {"answer_f1", "rouge_l"}) == ["answer_f1"]


def at(minutes: float) -> str:
    return (dt.datetime(2026, 5, 4, 9, 0, tzinfo=dt.timezone.utc) + dt.timedelta(minutes=minutes)).isoformat()


def test_minutes_since_the_run_started_come_from_the_timestamps() -> None:
    run = spec().model_copy(update={"created_at": at(0)})
    records = [make_record(attempt=1, created_at=at(4.5)), make_record(attempt=2, status="oom", created_at=at(6)),
               make_record(attempt=3, created_at=at(19.25))]
    timeline = attempt_minutes(run, records)
    assert timeline.basis == WALL_CLOCK
    assert timeline.minutes == [4.5, 6.0, 19.25]


def test_minutes_fall_back_to_training_and_evaluation_time_when_the_timestamps_cannot_be_right() -> None:
    """Each attempt trained 95 s; the first was evaluated for 30 s more. Timestamps that say the run was
    over before that time had passed (records made elsewhere), or run backwards, are not used."""
    first = make_record(attempt=1, created_at=at(0.5))
    assert first.eval is not None and first.result.wall_seconds == 95.0
    first = first.model_copy(update={"eval": first.eval.model_copy(update={"wall_seconds": 30.0})})
    crashed = make_record(attempt=2, status="oom", created_at=at(1))
    run = spec().model_copy(update={"created_at": at(0)})
    too_early = attempt_minutes(run, [first, crashed])
    assert too_early.basis == WORK_CLOCK
    assert too_early.minutes == [125 / 60, 220 / 60]

    backwards = [first.model_copy(update={"created_at": at(30)}), crashed.model_copy(update={"created_at": at(20)})]
    assert attempt_minutes(run, backwards).basis == WORK_CLOCK
    unreadable = run.model_copy(update={"created_at": "yesterday"})
    assert attempt_minutes(unreadable, [first]).minutes == [125 / 60]
    assert attempt_minutes(run, []).minutes == []


def test_the_base_model_is_read_from_the_run_folder(tmp_path: Path) -> None:
    from tunecrew.tools.run_dir import RunDir

    records = two_records()
    sample = Failure(prompt="add milk", expected="create_task", got="BASE-REPLY", reason="wrong tool")
    baseline = records[0].eval.model_copy(update={"metrics": {"tool_accuracy": 0.125, "format_compliance": 0.5},
                                                  "examples": [sample]})
    RunDir(tmp_path).baseline.write_text(baseline.model_dump_json())
    tuned = records[1].model_copy(update={"eval": records[1].eval.model_copy(update={
        "examples": [sample.model_copy(update={"got": "TUNED-REPLY", "reason": ""})]})})
    md = write_report(tmp_path, spec(), [records[0], tuned]).read_text()
    assert "| base model | split=heldout-tools, n=48, seed=3 | 0.125 |" in md
    assert "(failed: wrong tool) BASE-REPLY" in md and "(passed) TUNED-REPLY" in md
    page = (tmp_path / "report.html").read_text()
    assert "<pre>BASE-REPLY</pre>" in page and "<pre>TUNED-REPLY</pre>" in page
