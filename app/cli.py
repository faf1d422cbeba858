"""`tunecrew` command line: launch a scenario with the crew.

    tunecrew run task-agent                 # the offline demo
    tunecrew run task-agent --max-attempts 2 --memory /tmp/mem
    tunecrew run -c configs/task-agent.yaml --seed 3   # a YAML file of the same flags; typed flags win
    tunecrew scenarios                      # what can be run
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from tunecrew.scenarios.dataset import parse_columns
from tunecrew.scenarios.registry import SCENARIOS, UnknownScenario
from tunecrew.scenarios.registry import load_scenario as _load
from tunecrew.tools.contracts import AttemptRecord
from tunecrew.tools.run_dir import RunDir, RunInUse
from tunecrew.tools.scenario import Scenario

from .config import CrewConfig, FlagError, RunConfig, add_flags, config_from_args, config_yaml


def load_scenario(name: str) -> Scenario:
    try:
        return _load(name)
    except UnknownScenario as exc:  # bad input: one line and exit 2, as every flag's refusal
        print(f"tunecrew: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tunecrew", description="A crew of agents that fine-tunes a model for a domain.")
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run a scenario end to end",
                         epilog=f"scenarios: {', '.join(sorted(SCENARIOS))}")
    add_flags(run, RunConfig)  # every flag is a RunConfig field (app/config.py)
    resume = sub.add_parser("resume", help="continue a run at its next unfinished attempt (after a crash or kill)")
    resume.add_argument("run", help="run id (in --runs-dir) or run directory")
    resume.add_argument("--runs-dir", default="runs", type=Path)
    resume.add_argument("--add-attempts", type=int, default=0, help="extend the attempt budget")
    add_flags(resume, CrewConfig)
    chat = sub.add_parser("chat", help="join a run (finished or stopped) and steer the Planner's decisions")
    chat.add_argument("run", help="run id (in --runs-dir) or run directory")
    chat.add_argument("--runs-dir", default="runs", type=Path)
    chat.add_argument("--add-attempts", type=int, default=0, help="extend the attempt budget")
    add_flags(chat, CrewConfig)
    sub.add_parser("scenarios", help="list the scenarios")
    models = sub.add_parser("models", help="the named base models: size, licence, source, cache state")
    models.add_argument("action", nargs="?", choices=["list", "pull"], default="list")
    models.add_argument("name", nargs="?", help="with pull: the model to fetch and convert now")
    from tunecrew.scenarios.task_agent import (
        cli_commands as task_agent_commands,  # serve, agent: the trained task agent
    )

    task_agent_commands.add_parsers(sub)
    from tunecrew.memory import cli as memory_commands  # memory list|search|show|export|import|forget

    memory_commands.add_parsers(sub)
    from . import export_cmd  # export RUN --merged DIR | --ollama DIR | --gguf FILE

    export_cmd.add_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command == "scenarios":
        for name in sorted(SCENARIOS):
            print(f"{name:18} {load_scenario(name).description}")
        return 0
    if args.command == "models":
        return _models(args)
    if args.command in ("serve", "agent"):
        from tunecrew.scenarios.task_agent.cli_commands import main as task_agent_main

        return task_agent_main(args)
    if args.command == "memory":
        from tunecrew.memory.cli import main as memory_main

        return memory_main(args)
    if args.command == "export":
        from .export_cmd import main as export_main

        return export_main(args)
    return _run(args)


def _models(args: argparse.Namespace) -> int:
    from tunecrew.tools.base_models import REGISTRY, listing, resolve
    from tunecrew.tools.model_info import ModelNotFound

    if args.action == "pull":
        if args.name not in REGISTRY:
            print(f"tunecrew: models pull takes one of: {', '.join(REGISTRY)} (got {args.name!r})", file=sys.stderr)
            return 2
        try:
            print(resolve(args.name))
        except ModelNotFound as exc:
            print(f"tunecrew: {exc}", file=sys.stderr)
            return 2
        return 0
    for row in listing():
        print(f"{row.name:14} {row.params:>7}  {row.licence:10}  {row.source}\n{'':14} cache: {row.cache}")
    return 0


def run_dir_of(run: str, runs_dir: Path) -> RunDir:
    """A run id in --runs-dir, or a run's own folder."""
    given = RunDir(Path(run))
    return given if given.is_run() else RunDir(runs_dir / run)


def _run(args: argparse.Namespace) -> int:
    """`run` and `resume`: build the options, run the crew, turn known failures into one line."""
    # Imported here so `tunecrew --help` answers at once, without loading torch.
    from tunecrew.agents.models import ProviderError, ProviderSpec
    from tunecrew.memory.ledger import LedgerError
    from tunecrew.memory.store import MemoryStoreError
    from tunecrew.tools.hardware import free_cores
    from tunecrew.tools.model_info import ModelNotFound
    from tunecrew.tools.rows import DataError

    from .runner import ResumeError, RunOptions, resume, run

    try:
        crew = config_from_args(RunConfig if args.command == "run" else CrewConfig, args)
    except FlagError as exc:
        print(f"tunecrew: {exc}", file=sys.stderr)
        return 2
    if args.command != "run" and not 0 <= args.add_attempts <= 50:
        print(f"tunecrew: --add-attempts {args.add_attempts} must be between 0 and 50", file=sys.stderr)
        return 2
    if problem := _check_train_python(crew.train_python):
        print(f"tunecrew: {problem}", file=sys.stderr)
        return 2
    if crew.ray_address:
        from tunecrew.tools.trials import EngineError, choose_engine, connect

        try:  # joined now: a wrong address is one line before minutes of data and model preparation
            connect(crew.ray_address) if choose_engine(crew.ray_address) == "ray" else None
        except EngineError as exc:
            print(f"tunecrew: {exc}", file=sys.stderr)
            return 2
    provider = None if crew.provider is None else ProviderSpec(
        provider=crew.provider, model=crew.model, base_url=crew.base_url, api_key=crew.api_key,
        fallback=not crew.strict_provider)
    threads = crew.threads or free_cores()
    try:
        if args.command in ("resume", "chat"):
            options = RunOptions(scenario=None, provider=provider, agents=crew.agent,  # type: ignore[arg-type]
                                 strict_provider=crew.strict_provider, threads=threads, quiet=crew.quiet,
                                 train_python=crew.train_python, interactive=crew.interactive or args.command == "chat",
                                 parallel=crew.parallel, ray_address=crew.ray_address, processes=crew.processes)
            outcome = resume(run_dir_of(args.run, args.runs_dir), options, add_attempts=args.add_attempts)
        else:
            c: RunConfig = crew
            scenario = load_scenario(c.scenario or "custom")
            outcome = run(RunOptions(
                scenario=scenario, base_model=c.base_model, provider=provider,
                strict_provider=c.strict_provider,
                data=c.data, columns=parse_columns(c.columns) if c.columns else None, heldout=c.heldout,
                heldout_data=c.heldout_data, agents=c.agent, max_attempts=c.max_attempts, target=c.target, seed=c.seed,
                memory=c.memory,
                use_memory=not c.no_memory, embedder=c.embedder, runs_dir=c.runs_dir, threads=threads, quiet=c.quiet,
                attempt_seconds=c.attempt_seconds, budget_minutes=c.budget, interactive=c.interactive,
                judges=c.judge, judge_samples=c.judge_samples, train_python=c.train_python, task_type=c.task_type,
                parallel=c.parallel, ray_address=c.ray_address, contract=c.contract, processes=c.processes,
                saved_config=config_yaml(resolved_config(c, scenario)),
            ))
    except (DataError, ModelNotFound, ProviderError, MemoryStoreError, ResumeError, LedgerError, RunInUse) as exc:
        print(f"tunecrew: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        from tunecrew.tools.train import kill_active

        killed = kill_active()
        print(f"tunecrew: interrupted{' (training stopped)' if killed else ''}; finished attempts are in the "
              "run's ledger.jsonl; `tunecrew resume RUN_ID` continues", file=sys.stderr)
        os._exit(130)  # do not wait for the tool thread that was waiting on the killed trainer
    if problem := unfinished_work(outcome.records):
        print(f"tunecrew: {problem}; see {outcome.report}", file=sys.stderr)
        return 1
    return 0


def resolved_config(config: RunConfig, scenario: Scenario) -> RunConfig:
    """The run's configuration with the scenario's defaults written in (scenario, base model,
    attempts, target, budget), so the saved config.yaml repeats this run even if a default changes."""
    return config.model_copy(update=dict(
        scenario=scenario.name, base_model=config.base_model or scenario.default_base_model,
        max_attempts=config.max_attempts or scenario.max_attempts,
        target=config.target if config.target is not None else scenario.target,
        budget=config.budget if config.budget is not None else scenario.budget_minutes))


def unfinished_work(records: list[AttemptRecord]) -> str | None:
    """Why a run that ended produced nothing to use, or None: the exit code must not say success."""
    if not any(r.result.status == "ok" for r in records):
        statuses = ", ".join(f"#{r.attempt} {r.result.status}" for r in records)
        return f"no attempt trained ({statuses})" if records else "no attempt was recorded"
    if not any(r.score is not None for r in records):
        return "no trained attempt was scored on the held-out split"
    return None


def _check_train_python(train_python: str | None) -> str | None:
    if train_python:  # checked before any work: a broken interpreter would fail every attempt
        from tunecrew.tools.train import TrainSetupError, resolve_python

        try:
            resolve_python(train_python)
        except TrainSetupError as exc:
            return str(exc)
    return None


if __name__ == "__main__":
    sys.exit(main())
