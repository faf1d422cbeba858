"""Test helpers: the example attempt records (tunecrew.memory.examples, shared with the benches),
what an agent reads of a tool's answer, small scenario data, and watching crew processes."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tunecrew.memory.examples import (  # noqa: F401 - re-exported for the tests
    DOMAINS,
    LEGAL_VOCAB,
    MEDICAL_VOCAB,
    TASK_VOCAB,
    make_domain_record,
    make_hardware,
    make_profile,
    make_record,
)
from tunecrew.scenarios.task_agent.data import generate
from tunecrew.tools.contracts import AttemptRecord, Decision, Diagnosis, TrainConfig
from tunecrew.tools.scenario import ScenarioData


def seen(answer: Any) -> dict[str, Any]:
    """A tool's answer as the agent reads it: the JSON the tool sends, parsed."""
    return json.loads(answer.model_dump_json(exclude_none=True))


def as_remembered_success(record: AttemptRecord, run_id: str, primary_metric: str,
                          **config_changes: Any) -> AttemptRecord:
    """`record` as another project's attempt that reached its target with `config_changes` applied:
    what a later run's Tuner should start from."""
    return record.model_copy(update={
        "run_id": run_id,
        "eval": record.eval.model_copy(update={"metrics": {**record.eval.metrics, primary_metric: 1.0}}),
        "diagnosis": Diagnosis(label="good", evidence=["target reached"]),
        "decision": Decision(action="stop", reason="target reached"),
        "config": record.config.with_changes(config_changes),
    })


def retry_config(first: AttemptRecord) -> TrainConfig:
    """The config the policy trains after `first` (agents/policy.initial_config's retry branch): the
    Planner's changes; a rate the first attempt held decays now; when both are sized in steps (a
    --budget's or --attempt-seconds'), the retry continues the adapter with only the steps it lacks,
    or as many again when the Planner left the length alone."""
    from tunecrew.agents import policy

    changes = first.decision.changes
    expected = first.config.with_changes(changes)
    if expected.max_steps > 0 and first.config.max_steps > 0:
        done = first.result.steps_from_base or first.result.steps
        new = (first.config.max_steps if policy.LENGTH_FIELDS.isdisjoint(changes)
               else max(policy.MIN_STEPS, expected.max_steps - done))
        expected = expected.with_changes({"continue_training": True, "max_steps": new})
    if first.config.lr_scheduler == policy.HELD_SCHEDULER and "lr_scheduler" not in changes:
        expected = expected.with_changes({"lr_scheduler": policy.DECAY_SCHEDULER})
    return expected


def small_task_agent_data(seed: int) -> ScenarioData:
    """120 train / 16 held-out task-agent rows: a crew run in tens of seconds."""
    data = generate(seed=seed, n_train=120, n_heldout=16)
    return ScenarioData(train=data.train, heldout=data.heldout, heldout_split=f"small-heldout(seed={seed})")


def trainer_pids(folder: Path) -> list[int]:
    """Processes whose command line names `folder` (a training worker writing into an attempt)."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and str(folder) in (proc / "cmdline").read_text():
                pids.append(int(proc.name))
        except OSError:
            continue
    return pids


def wait_until(condition: Callable[[], bool], timeout: float, what: str, every: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(every)


def load_bench(name: str, module_name: str):
    """A bench script (`bench/<name>.py`) as a module, for tests of its pure helpers."""
    import importlib.util
    import sys

    script = Path(__file__).resolve().parents[1] / "bench" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(module_name, script)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses resolve their module by name
    spec.loader.exec_module(module)
    return module
