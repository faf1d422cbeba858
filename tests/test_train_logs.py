"""Training logs where people look: TensorBoard event files in each attempt's `tb/` folder, read
back here from the files themselves; W&B / MLflow only when named in TUNECREW_REPORT_TO and installed."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from tunecrew.tools.train import TrainJob, run_training
from tunecrew.tools.train_worker import REPORT_TO_ENV, TB_DIR, report_targets

from conftest import THREADS


def read_scalars(tb_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar in the event files under `tb_dir`, by tag: (step, value) in file order.

    An event file is a TFRecord stream (u64 length, u32 crc, payload, u32 crc) of `Event` protos;
    tensorboard's EventAccumulator reads the same, but tensorboard is not a dependency."""
    from tensorboardX.proto.event_pb2 import Event

    scalars: dict[str, list[tuple[int, float]]] = {}
    for path in sorted(tb_dir.glob("events.out.tfevents.*")):
        data = path.read_bytes()
        at = 0
        while at + 12 <= len(data):
            (length,) = struct.unpack("<Q", data[at:at + 8])
            event = Event.FromString(data[at + 12:at + 12 + length])
            at += 12 + length + 4
            for value in event.summary.value:
                if value.HasField("simple_value"):
                    scalars.setdefault(value.tag, []).append((event.step, value.simple_value))
    return scalars


def test_tensorboard_is_the_default_and_others_only_when_asked_and_installed():
    everything = lambda module: True
    only_tbx = lambda module: module == "tensorboardX"
    assert report_targets(None, only_tbx) == (["tensorboard"], [])
    assert report_targets("", only_tbx) == (["tensorboard"], [])
    assert report_targets("none", everything) == ([], [])
    assert report_targets("TensorBoard, wandb,mlflow,wandb", everything) == (["tensorboard", "wandb", "mlflow"], [])
    targets, notes = report_targets("tensorboard,wandb", only_tbx)
    assert targets == ["tensorboard"]
    assert len(notes) == 1 and "wandb is not installed" in notes[0]
    targets, notes = report_targets("comet", everything)
    assert targets == [] and len(notes) == 1 and "'comet' is not one of" in notes[0]
    assert report_targets(None, lambda module: False)[0] == []  # no writer at all: train without logs


@pytest.mark.slow
def test_an_attempt_writes_its_train_loss_to_tensorboard(lora_run):
    tb = Path(lora_run.job.output_dir) / TB_DIR
    assert list(tb.glob("events.out.tfevents.*")), f"no event file in {tb}"
    scalars = read_scalars(tb)
    logged = scalars["train/loss"]
    curve = lora_run.result.loss_curve
    assert [step for step, _ in logged] == [p.step for p in curve]
    assert [value for _, value in logged] == pytest.approx([p.loss for p in curve], rel=1e-5)
    assert "train/learning_rate" in scalars


@pytest.mark.slow
def test_report_to_none_writes_no_event_files(tmp_path, tiny_model, task_data, make_config, monkeypatch):
    monkeypatch.setenv(REPORT_TO_ENV, "none")
    job = TrainJob(config=make_config(max_steps=2), base_model=tiny_model, train_file=str(task_data.train_file),
                   output_dir=str(tmp_path / "attempt"), threads=THREADS)
    result = run_training(job, timeout_s=300)
    assert result.status == "ok", result.error
    assert not (tmp_path / "attempt" / TB_DIR).exists()


def test_the_report_says_where_the_logs_are_once_an_attempt_wrote_them(tmp_path):
    from tunecrew.tools.contracts import RunSpec
    from tunecrew.tools.report import write_report

    spec = RunSpec(run_id="r1", scenario="task-agent", base_model="tiny", provider="offline", max_attempts=2,
                   target=0.9, seed=0, dataset_fingerprint="sha256:" + "00" * 32, memory="off")
    run = tmp_path / "runs" / "r1"
    assert "tensorboard" not in write_report(run, spec, []).read_text()
    (run / "attempts" / "1" / TB_DIR).mkdir(parents=True)
    md = write_report(run, spec, []).read_text()
    assert f"`tensorboard --logdir {run / 'attempts'}`" in md
    assert md.index("tensorboard --logdir") < md.index("## Attempts")
    assert "tensorboard --logdir" in (run / "report.html").read_text()
