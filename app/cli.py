"""`tunecrew` command line: launch a scenario with the crew.

    tunecrew run task-agent                 # the offline demo
    tunecrew run task-agent --max-attempts 2 --memory /tmp/mem
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
from tunecrew.tools.run_dir import RunDir
from tunecrew.tools.scenario import Scenario


def load_scenario(name: str) -> Scenario:
    try:
        return _load(name)
    except UnknownScenario as exc:
        raise SystemExit(f"tunecrew: {exc}") from exc


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tunecrew", description="A crew of agents that fine-tunes a model for a domain.")
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run a scenario end to end")
    run.add_argument("scenario", nargs="?", help=f"one of: {', '.join(sorted(SCENARIOS))} "
                     "(leave out with --data: your own dataset)")
    run.add_argument("--data", metavar="FILE_OR_HUB_ID",
                     help="a .jsonl/.csv/.parquet file or hub id (owner/name[:config]) instead of the scenario's data")
    run.add_argument("--columns", metavar="ROLE=COLUMN,...",
                     help="column mapping when detection fails, "
                          "e.g. prompt=Question,response=Response,reasoning=Complex_CoT")
    run.add_argument("--heldout", type=float, metavar="N",
                     help="held-out rows to score on (N >= 1) or a fraction (< 1); default 10%%, at most 64")
    run.add_argument("--base-model", metavar="NAME_PATH_OR_HUB_ID",
                     help="a name from `tunecrew models` (default smollm2-135m, a pretrained model that resolves "
                          "offline; tiny: a random-init model built from the data, for tests), a local model "
                          "folder or a hub id")
    _crew_args(run)
    run.add_argument("--max-attempts", type=int, help="training attempts at most (default: the scenario's, 3)")
    run.add_argument("--target", type=float, help="stop when the primary metric reaches this (0-1)")
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--budget", type=float, metavar="MINUTES",
                     help="wall-clock minutes for the whole run: each attempt is sized from the measured training "
                          "rate to fit (default: the scenario's, 10 for task-agent)")
    run.add_argument("--attempt-seconds", type=float, help="wall-clock cap per training run (keeps what it learned)")
    run.add_argument("--judge", action="append", default=[], metavar="PROVIDER[:MODEL]",
                     help="an LLM judge of held-out replies, e.g. openai:gpt-4.1-mini (repeatable: agreement is "
                          "reported); default: the Judge agent's provider (offline: a heuristic judge, no LLM)")
    run.add_argument("--judge-samples", type=int, default=30,
                     help="held-out samples each judge scores, chosen by --seed (default 30; all when fewer)")
    run.add_argument("--memory", help="memory store dir or Chroma server URL (default ~/.tunecrew/memory)")
    run.add_argument("--no-memory", action="store_true", help="neither recall nor remember attempts")
    run.add_argument("--embedder", default="hashing", help="memory embedder: hashing[:DIM] (default, offline), "
                     "st:/path/to/model, openai:MODEL or gemini:MODEL; must match the store's")
    run.add_argument("--runs-dir", default="runs", type=Path, help="where runs/<id>/ is written (default ./runs)")
    resume = sub.add_parser("resume", help="continue a run at its next unfinished attempt (after a crash or kill)")
    resume.add_argument("run", help="run id (in --runs-dir) or run directory")
    resume.add_argument("--runs-dir", default="runs", type=Path)
    resume.add_argument("--add-attempts", type=int, default=0, help="extend the attempt budget")
    _crew_args(resume)
    chat = sub.add_parser("chat", help="join a run (finished or stopped) and steer the Planner's decisions")
    chat.add_argument("run", help="run id (in --runs-dir) or run directory")
    chat.add_argument("--runs-dir", default="runs", type=Path)
    chat.add_argument("--add-attempts", type=int, default=0, help="extend the attempt budget")
    _crew_args(chat)
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
    return p


def _crew_args(p: argparse.ArgumentParser) -> None:
    """Who drives the agents and how the run uses this machine; shared by run and resume."""
    p.add_argument("--provider", default="offline", choices=["offline", "openai", "gemini", "ollama"],
                   help="who drives the agents (default: offline, a deterministic policy)")
    p.add_argument("--model", help="LLM name for the provider, e.g. gemini-2.5-flash")
    p.add_argument("--base-url", help="OpenAI-compatible endpoint (vLLM, Ollama, LM Studio, llama.cpp)")
    p.add_argument("--api-key", help="API key (prefer OPENAI_API_KEY / GEMINI_API_KEY in the environment)")
    p.add_argument("--agent", action="append", default=[], metavar="ROLE=PROVIDER[:MODEL]",
                   help="a different provider for one agent, e.g. Planner=openai:gpt-4.1 (repeatable)")
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads for torch (default: the free cores, at most 4)")
    p.add_argument("--train-python", metavar="PATH",
                   help="interpreter that runs training, e.g. .venv-unsloth/bin/python for backend=unsloth "
                        "(default: $TUNECREW_TRAIN_PYTHON, else this one)")
    p.add_argument("--interactive", action="store_true",
                   help="review each Planner decision: approve, edit ('lr 1e-4, rank 8'), +N attempts, stop, or guide")
    p.add_argument("--quiet", action="store_true")


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

    if (problem := _check_train_python(args) or (_check_run_flags(args) if args.command == "run" else None)):
        print(f"tunecrew: {problem}", file=sys.stderr)
        return 2
    provider = ProviderSpec(provider=args.provider, model=args.model, base_url=args.base_url, api_key=args.api_key)
    args.threads = args.threads or free_cores()
    try:
        if args.command in ("resume", "chat"):
            options = RunOptions(scenario=None, provider=provider, agents=args.agent,  # type: ignore[arg-type]
                                 threads=args.threads, quiet=args.quiet, train_python=args.train_python,
                                 interactive=args.interactive or args.command == "chat")
            resume(run_dir_of(args.run, args.runs_dir), options, add_attempts=args.add_attempts)
        else:
            run(RunOptions(
                scenario=load_scenario(args.scenario or "custom"), base_model=args.base_model, provider=provider,
                data=args.data, columns=parse_columns(args.columns) if args.columns else None, heldout=args.heldout,
                agents=args.agent, max_attempts=args.max_attempts, target=args.target, seed=args.seed,
                memory=args.memory, use_memory=not args.no_memory, embedder=args.embedder, runs_dir=args.runs_dir,
                threads=args.threads, quiet=args.quiet, attempt_seconds=args.attempt_seconds,
                budget_minutes=args.budget, interactive=args.interactive, judges=args.judge,
                judge_samples=args.judge_samples, train_python=args.train_python,
            ))
    except (DataError, ModelNotFound, ProviderError, MemoryStoreError, ResumeError, LedgerError) as exc:
        print(f"tunecrew: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        from tunecrew.tools.train import kill_active

        killed = kill_active()
        print(f"tunecrew: interrupted{' (training stopped)' if killed else ''}; finished attempts are in the "
              "run's ledger.jsonl; `tunecrew resume RUN_ID` continues", file=sys.stderr)
        os._exit(130)  # do not wait for the tool thread that was waiting on the killed trainer
    return 0


def _check_run_flags(args: argparse.Namespace) -> str | None:
    if args.max_attempts is not None and not 1 <= args.max_attempts <= 50:
        return f"--max-attempts {args.max_attempts} must be between 1 and 50"
    if args.target is not None and not 0 < args.target <= 1:
        return f"--target {args.target} must be in (0, 1]"
    if args.scenario is None and args.data is None:
        return "give a scenario name (tunecrew scenarios lists them) or --data FILE_OR_HUB_ID"
    if args.columns is not None:
        try:
            parse_columns(args.columns)
        except ValueError as exc:
            return str(exc)
    if args.heldout is not None and (args.heldout <= 0 or (args.heldout >= 1 and args.heldout != int(args.heldout))):
        return f"--heldout {args.heldout} must be a row count (1, 2, ...) or a fraction in (0, 1)"
    if args.budget is not None and not 1 <= args.budget <= 10_000:
        return f"--budget {args.budget} must be minutes between 1 and 10000"
    if args.judge_samples < 1:
        return f"--judge-samples {args.judge_samples} must be at least 1"
    return None


def _check_train_python(args: argparse.Namespace) -> str | None:
    if args.train_python:  # checked before any work: a broken interpreter would fail every attempt
        from tunecrew.tools.train import TrainSetupError, resolve_python

        try:
            resolve_python(args.train_python)
        except TrainSetupError as exc:
            return str(exc)
    return None


if __name__ == "__main__":
    sys.exit(main())
