"""`tunecrew serve` and `tunecrew agent`: the trained task agent over HTTP or in the terminal.

    tunecrew serve RUN_ID_OR_DIR [--runs-dir runs] [--host 127.0.0.1] [--port 8000]
                   [--token-env TUNECREW_TOKEN] [--store DIR] [--merged DIR]
    tunecrew agent RUN_ID_OR_DIR [--runs-dir runs] [--user me] [--store DIR] [--merged DIR]

Kept apart from cli.py so that the CLI module only registers the parsers; nothing heavy (torch,
FastAPI) is imported until a command runs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

COMMANDS = ("serve", "agent")
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def default_store_dir() -> Path:
    """$TUNECREW_HOME/tasks, else ~/.tunecrew/tasks: tasks belong to users, not to one run, so
    serving a newer run keeps them."""
    home = os.environ.get("TUNECREW_HOME")
    return (Path(home) if home else Path.home() / ".tunecrew") / "tasks"


def add_parsers(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("run", metavar="RUN_ID_OR_DIR", help="a run id under --runs-dir, or a run directory")
        p.add_argument("--runs-dir", default="runs", type=Path, help="where run ids are looked up (default ./runs)")
        p.add_argument("--store", type=Path, help="task database dir (default $TUNECREW_HOME/tasks or ~/.tunecrew/tasks)")
        p.add_argument("--merged", type=Path, help="serve this merged model dir instead of base model + adapter")
        p.add_argument("--threads", type=int, default=None,
                   help="CPU threads for torch (default: the free cores, at most 4)")

    serve = sub.add_parser("serve", help="serve a task-agent run's trained adapter over HTTP (FastAPI)")
    common(serve)
    serve.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--token-env", default="TUNECREW_TOKEN",
                       help="environment variable holding the bearer token (default TUNECREW_TOKEN; unset: no token)")
    serve.add_argument("--max-body", type=int, default=16384, help="request size limit in bytes (default 16384)")
    agent = sub.add_parser("agent", help="talk to a task-agent run's trained adapter in the terminal")
    common(agent)
    agent.add_argument("--user", default="me", help="whose tasks (default: me)")


def main(args: argparse.Namespace) -> int:
    from .agent import RunNotUsable, load_run
    from .store import TaskError, check_user

    try:
        if args.command == "agent":
            check_user(args.user)
        if args.command == "serve" and not 0 <= args.port <= 65535:
            raise TaskError(f"--port {args.port} must be between 0 and 65535")
        info = load_run(args.run, args.runs_dir, merged_model=args.merged)
    except (RunNotUsable, TaskError) as exc:
        print(f"tunecrew: {exc}", file=sys.stderr)
        return 2
    _quiet_libraries()
    store_dir = args.store or default_store_dir()
    if args.command == "serve":
        return _serve(args, info, store_dir)
    return _terminal(args, info, store_dir)


def _serve(args: argparse.Namespace, info, store_dir: Path) -> int:  # type: ignore[no-untyped-def]
    from .server import create_app, serve

    token = os.environ.get(args.token_env) or None
    if token is None and args.host not in LOOPBACK:
        print(f"tunecrew: warning: serving on {args.host} without a token; set {args.token_env}", file=sys.stderr)
    agent = _load_agent(info, args.threads)
    if agent is None:
        return 2
    print(f"tunecrew: serving run {info.run_id} ({info.describe()['base_model']} + {info.adapter or 'merged'}) "
          f"on http://{args.host}:{args.port}; tasks in {store_dir}; token {'on' if token else 'off'}",
          file=sys.stderr)
    serve(create_app(agent, store_dir, token=token, max_body_bytes=args.max_body), host=args.host, port=args.port)
    return 0


def _terminal(args: argparse.Namespace, info, store_dir: Path) -> int:  # type: ignore[no-untyped-def]
    from .executor import chat_payload
    from .store import TaskStore

    interactive = sys.stdin.isatty()
    with TaskStore(store_dir) as store:
        agent = _load_agent(info, args.threads, store)
        if agent is None:
            return 2
        print(f"run {info.run_id}, attempt {info.attempt}, user {args.user}; tasks in {store.path}. "
              "Type a request; 'exit' or Ctrl-D quits.", flush=True)
        while True:
            if interactive:
                print("you> ", end="", flush=True)
            try:
                line = sys.stdin.readline()
            except KeyboardInterrupt:
                print(file=sys.stderr)
                break
            if not line:
                break
            message = line.strip()
            if not message:
                continue
            if message.lower() in ("exit", "quit"):
                break
            try:
                payload = chat_payload(*agent.run(args.user, message))
            except KeyboardInterrupt:  # Ctrl-C during generation ends the session, quietly
                print(file=sys.stderr)
                return 130
            print(f"agent> {payload['reply']}", flush=True)
            print(f"result> {json.dumps(payload['result'], ensure_ascii=False)}", flush=True)
    return 0


def _load_agent(info, threads: int | None, store=None):  # type: ignore[no-untyped-def]
    """The TaskAgent, or None after one clear line when the model files cannot be loaded."""
    from tunecrew.tools.hardware import free_cores

    from .agent import TaskAgent

    threads = threads or free_cores()
    try:
        return TaskAgent(info, threads=threads, store=store)
    except (OSError, ValueError) as exc:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"tunecrew: run {info.run_dir}: could not load {info.model_path} + {info.adapter or 'no adapter'}: "
              f"{detail}", file=sys.stderr)
        return None


def _quiet_libraries() -> None:
    import warnings

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
    except ImportError:  # pragma: no cover
        pass
    warnings.filterwarnings("ignore", category=FutureWarning)
