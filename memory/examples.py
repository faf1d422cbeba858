"""Example attempt records: one call builds a full, valid AttemptRecord.

What the memory benches fill a store with and what the tests recall from. Defaults describe a
task-management agent fine-tune that worked; the keyword arguments cover what callers vary (domain,
outcome, hyperparameters, vocabulary). `DOMAINS` holds ready-made profiles for a few unrelated
domains, so memory can be shown to keep them apart.
"""

from __future__ import annotations

from typing import Any

from tunecrew.tools.contracts import (
    AttemptRecord,
    DatasetProfile,
    Decision,
    Diagnosis,
    DomainCard,
    EvalReport,
    Hardware,
    LossPoint,
    RubricScores,
    TokenStats,
    TrainConfig,
    TrainResult,
)

__all__ = ["DOMAINS", "LEGAL_VOCAB", "MEDICAL_VOCAB", "TASK_VOCAB", "make_domain_record", "make_hardware",
           "make_profile", "make_record"]

TASK_VOCAB = [
    "task", "due", "priority", "project", "assign", "reminder", "deadline", "create_task", "list_tasks",
    "update_task", "complete", "tomorrow", "meeting", "tag", "status", "overdue", "schedule", "todo",
]
LEGAL_VOCAB = [
    "contract", "plaintiff", "defendant", "liability", "court", "statute", "clause", "negligence",
    "breach", "damages", "precedent", "jurisdiction", "tort", "appeal", "evidence", "holding",
]
MEDICAL_VOCAB = [
    "patient", "dose", "symptom", "diagnosis", "mg", "treatment", "clinical", "blood", "pressure",
    "infection", "chronic", "medication", "trial", "adverse", "therapy",
]

DOMAINS: dict[str, dict[str, Any]] = {
    "task-agent": {
        "domain": "task-management agent",
        "scenario": "task-agent",
        "persona": "You are a task-management assistant that calls tools to create, update and list tasks.",
        "vocab": TASK_VOCAB,
        "metric": "tool_accuracy",
        "format": "chat",
    },
    "legal": {
        "domain": "legal reasoning",
        "scenario": "legal-qa",
        "persona": "You are a legal analyst who reasons from statutes and precedent to a holding.",
        "vocab": LEGAL_VOCAB,
        "metric": "answer_accuracy",
        "format": "instruction",
    },
    "medical": {
        "domain": "clinical question answering",
        "scenario": "medical-qa",
        "persona": "You are a clinical assistant who answers questions about dosing and treatment.",
        "vocab": MEDICAL_VOCAB,
        "metric": "exact_match",
        "format": "prompt_completion",
    },
}


def make_profile(vocab: list[str] | None = None, rows: int = 1200, fmt: str = "chat") -> DatasetProfile:
    return DatasetProfile(
        source="data/train.jsonl",
        fingerprint="sha256:" + "ab" * 32,
        rows=rows,
        columns=["messages"] if fmt == "chat" else ["prompt", "completion"],
        format=fmt,
        prompt_tokens=TokenStats(count=rows, mean=42.0, p50=38.0, p95=90.0, max=210),
        response_tokens=TokenStats(count=rows, mean=31.0, p50=27.0, p95=64.0, max=150),
        total_tokens=TokenStats(count=rows, mean=73.0, p50=66.0, p95=150.0, max=330),
        language="en",
        vocabulary=list(vocab if vocab is not None else TASK_VOCAB),
    )


def make_hardware(device: str = "cpu") -> Hardware:
    if device == "cuda":
        return Hardware(device="cuda", device_name="NVIDIA H100 80GB HBM3", accelerator_memory_gb=79.0,
                        ram_gb=128.0, cpu_count=16, bf16=True)
    return Hardware(device="cpu", device_name="Intel Xeon", ram_gb=8.0, cpu_count=2)


def make_record(
    run_id: str = "r1",
    attempt: int = 1,
    domain: str = "task-management agent",
    scenario: str = "task-agent",
    status: str = "ok",
    score: float | None = 0.9,
    lr: float = 3e-3,
    rank: int = 32,
    diagnosis: str | None = "good",
    vocab: list[str] | None = None,
    *,
    persona: str | None = None,
    metric: str = "tool_accuracy",
    data_format: str = "chat",
    rows: int = 1200,
    base_model: str = "Qwen/Qwen2.5-0.5B-Instruct",
    model_family: str = "qwen2",
    model_params: int = 494_000_000,
    device: str = "cpu",
    epochs: float = 2.0,
    decision: str | None = None,
    reason: str | None = None,
    created_at: str | None = None,
) -> AttemptRecord:
    """A full attempt. `status` other than ok gives no eval; `score=None` gives no metric."""
    trained = status == "ok"
    result = TrainResult(
        status=status,
        loss_curve=[LossPoint(step=s, loss=2.0 / (1 + s / 20)) for s in range(0, 100, 20)] if trained else [],
        train_loss=0.42 if trained else None,
        eval_loss=0.55 if trained else None,
        steps=300 if trained else 3,
        wall_seconds=95.0,
        error=None if trained else f"RuntimeError: training stopped with status {status}",
    )
    report = None
    if trained:
        metrics = {metric: score} if score is not None else {}
        report = EvalReport(
            split="heldout", samples=100, seed=0, metrics=metrics, primary_metric=metric,
            rubric=RubricScores(accuracy=8, reasoning=7, completeness=8, clarity=9,
                                explanation="Answers are correct and well formatted; a few miss a field."),
        )
    diag = None
    if diagnosis is not None:
        evidence = {
            "good": ["eval loss tracks train loss", f"{metric} above target"],
            "underfit": ["train loss still falling at the end", f"{metric} low"],
            "overfit": ["eval loss rises after epoch 1 while train loss falls"],
            "oom": ["CUDA out of memory at step 3"],
            "unstable": ["loss spikes to nan"],
        }.get(diagnosis, [f"diagnosed {diagnosis}"])
        diag = Diagnosis(label=diagnosis, evidence=evidence)
    action = decision or ("stop" if diagnosis == "good" else "retry")
    dec = Decision(
        action=action,
        reason=reason or ("target reached" if action == "stop" else f"{diagnosis or status}: change the recipe"),
    )
    extra: dict[str, Any] = {"created_at": created_at} if created_at else {}
    return AttemptRecord(
        run_id=run_id,
        attempt=attempt,
        scenario=scenario,
        base_model=base_model,
        model_family=model_family,
        model_params=model_params,
        hardware=make_hardware(device),
        profile=make_profile(vocab, rows=rows, fmt=data_format),
        domain=DomainCard(domain=domain, persona=persona or f"You are an assistant for {domain}.",
                          evidence=[], confidence=0.8),
        config=TrainConfig(method="lora", lora_rank=rank, lora_alpha=2 * rank, learning_rate=lr, epochs=epochs),
        result=result,
        eval=report,
        diagnosis=diag,
        decision=dec,
        **extra,
    )


def make_domain_record(kind: str, **kwargs: Any) -> AttemptRecord:
    """A record for one of `DOMAINS` ("task-agent", "legal", "medical"), overridable by kwargs."""
    d = DOMAINS[kind]
    base: dict[str, Any] = {
        "domain": d["domain"], "scenario": d["scenario"], "persona": d["persona"], "vocab": d["vocab"],
        "metric": d["metric"], "data_format": d["format"],
    }
    base.update(kwargs)
    return make_record(**base)
