"""Fake task-agent run directories for the serving tests: run.json, domain.json, ledger.jsonl and
attempts/<n>/adapter, pointing at whatever base model and adapters a test gives."""

from __future__ import annotations

from pathlib import Path

from tunecrew.memory.ledger import Ledger
from tunecrew.tools.contracts import DomainCard, RunSpec, TrainResult

from factories import make_record

PERSONA = "You are a task-management assistant that calls tools to add, list and complete tasks."


def make_run(
    runs_dir: Path,
    base_model: str,
    attempts: list[dict] | None = None,
    *,
    run_id: str = "20260101-000000-task-agent-test",
    scenario: str = "task-agent",
    persona: str | None = PERSONA,
) -> Path:
    """A run dir under `runs_dir`. Each attempt dict: status ("ok"), score (float|None),
    adapter (a path to record in the ledger, or None)."""
    run_dir = runs_dir / run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    spec = RunSpec(run_id=run_id, scenario=scenario, base_model=base_model, provider="offline", max_attempts=3,
                   target=0.95, seed=0, dataset_fingerprint="sha256:" + "00" * 32, memory="off")
    (run_dir / "run.json").write_text(spec.model_dump_json(indent=2))
    if persona is not None:
        card = DomainCard(domain="task-management agent", persona=persona, confidence=0.9)
        (run_dir / "domain.json").write_text(card.model_dump_json(indent=2))
    ledger = Ledger(run_dir / "ledger.jsonl")
    for n, attempt in enumerate(attempts or [], start=1):
        status = attempt.get("status", "ok")
        record = make_record(run_id=run_id, attempt=n, status=status, score=attempt.get("score"),
                             base_model=base_model, metric="trained_phrasing/tool_accuracy")
        result: TrainResult = record.result.model_copy(update={"adapter_path": attempt.get("adapter")})
        ledger.append(record.model_copy(update={"result": result}))
    return run_dir


def fake_adapter(path: Path) -> str:
    """A directory that looks like a PEFT adapter to the run loader (not loadable by PEFT)."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "adapter_config.json").write_text("{}")
    return str(path)
