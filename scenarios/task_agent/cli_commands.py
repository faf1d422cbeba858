"""`tunecrew serve` and `tunecrew agent`: the trained task agent over HTTP or in the terminal.

    tunecrew serve RUN_ID_OR_DIR [--runs-dir runs] [--host 127.0.0.1] [--port 8000]
                   [--tokens-file FILE] [--token-env TUNECREW_TOKEN] [--user me] [--max-queue 16]
                   [--store DIR] [--merged DIR]
    tunecrew agent RUN_ID_OR_DIR [--runs-dir runs] [--user me] [--store DIR] [--merged DIR]

Every flag, the credentials and the task store are checked before the model loads; a bad one is
one `tunecrew: ...` line and exit 2.

Kept apart from cli.py so that the CLI module only registers the parsers; nothing heavy (torch,
FastAPI) is imported until a command runs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported where a command runs: the model libraries load only then
    from .agent import RunInfo, TaskAgent
    from .store import TaskStore

COMMANDS = ("serve", "agent")
LOOPBACK = ("127.0.0.1", "localhost", "::1")
TOKEN_ENV = "TUNECREW_TOKEN"
TOKENS_ENV = "TUNECREW_TOKENS"  # same content as --tokens-file: user:token entries, by line or comma
MAX_THREADS = 256


class FlagError(ValueError):
    """A flag or its environment cannot work; the message names it and says what to do."""


def default_store_dir() -> Path:
    """$TUNECREW_HOME/tasks, else ~/.tunecrew/tasks: tasks belong to users, not to one run, so
    serving a newer run keeps them."""
    home = os.environ.get("TUNECREW_HOME")
    return (Path(home) if home else Path.home() / ".tunecrew") / "tasks"


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("run", metavar="RUN_ID_OR_DIR", help="a run id under --runs-dir, or a run directory")
        p.add_argument("--runs-dir", default="runs", type=Path, help="where run ids are looked up (default ./runs)")
        p.add_argument("--store", type=Path,
                       help="task database dir (default $TUNECREW_HOME/tasks or ~/.tunecrew/tasks)")
        p.add_argument("--merged", type=Path, help="serve this merged model dir instead of base model + adapter")
        p.add_argument("--threads", type=int, default=None,
                       help=f"CPU threads for torch, 1-{MAX_THREADS} (default: the free cores, at most 4)")

    serve = sub.add_parser("serve", help="serve a task-agent run's trained adapter over HTTP (FastAPI)")
    common(serve)
    serve.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--tokens-file", type=Path, metavar="FILE",
                       help=f"per-user bearer tokens, one user:token per line; a token acts as its user only "
                            f"(default: ${TOKENS_ENV}, same content)")
    serve.add_argument("--token-env", default=None, metavar="NAME",
                       help=f"variable holding one shared bearer token that acts as --user (default {TOKEN_ENV}, "
                            "optional; a variable named here must be set and non-empty)")
    serve.add_argument("--user", default="me",
                       help="whose tasks the shared token, or no token (loopback only), acts for (default: me)")
    serve.add_argument("--max-body", type=int, default=16384, help="request size limit in bytes (default 16384)")
    serve.add_argument("--max-queue", type=int, default=16,
                       help="chats waiting or generating at once; more get 503 + Retry-After (default 16)")
    agent = sub.add_parser("agent", help="talk to a task-agent run's trained adapter in the terminal")
    common(agent)
    agent.add_argument("--user", default="me", help="whose tasks (default: me)")


def main(args: argparse.Namespace) -> int:
    from .agent import RunNotUsable, load_run
    from .store import StoreError, TaskError

    try:
        _check_flags(args)
        auth = _credentials(args) if args.command == "serve" else ({}, None)
        info = load_run(args.run, args.runs_dir, merged_model=args.merged)
        store_dir = args.store or default_store_dir()
        _check_store(store_dir, named=args.store is not None)
    except (RunNotUsable, TaskError, StoreError, FlagError) as exc:
        print(f"tunecrew: {exc}", file=sys.stderr)
        return 2
    _quiet_libraries()
    if args.command == "serve":
        return _serve(args, info, store_dir, *auth)
    return _terminal(args, info, store_dir)


def _check_flags(args: argparse.Namespace) -> None:
    """Numbers and names that cannot work, refused before anything loads."""
    from .store import TaskError, check_user

    try:
        check_user(args.user)
    except TaskError as exc:
        raise FlagError(f"--user: {exc}") from None
    if args.threads is not None and not 1 <= args.threads <= MAX_THREADS:
        raise FlagError(f"--threads {args.threads} must be between 1 and {MAX_THREADS} (or left out: the free cores)")
    if args.command != "serve":
        return
    if not 0 <= args.port <= 65535:
        raise FlagError(f"--port {args.port} must be between 0 and 65535")
    if args.max_body < 1:
        raise FlagError(f"--max-body {args.max_body} must be at least 1 byte")
    if args.max_queue < 1:
        raise FlagError(f"--max-queue {args.max_queue} must be at least 1")


def _credentials(args: argparse.Namespace) -> tuple[dict[str, str], str | None]:
    """({user: token}, shared token): from --tokens-file (else $TUNECREW_TOKENS) and --token-env
    (else $TUNECREW_TOKEN). No credentials at all are allowed on a loopback host only."""
    from .server import credentials, parse_tokens

    token = _shared_token(args.token_env)
    tokens: dict[str, str] = {}
    try:
        if args.tokens_file is not None:
            tokens = parse_tokens(_read_tokens_file(args.tokens_file), f"--tokens-file {args.tokens_file}")
            if not tokens:
                raise FlagError(f"--tokens-file {args.tokens_file}: no user:token line in it; add one per user")
            if args.tokens_file.stat().st_mode & 0o077:
                print(f"tunecrew: warning: --tokens-file {args.tokens_file} is readable by other users; chmod 600 it",
                      file=sys.stderr)
        elif os.environ.get(TOKENS_ENV) is not None:
            tokens = parse_tokens(os.environ[TOKENS_ENV], TOKENS_ENV)
            if not tokens:
                raise FlagError(f"{TOKENS_ENV} is set but holds no user:token entry; fill it or unset it")
        credentials(tokens, token, args.user)  # one token for two users: refused here, not at the first request
    except FlagError:
        raise
    except ValueError as exc:
        raise FlagError(str(exc)) from None
    if not tokens and token is None and args.host not in LOOPBACK:
        raise FlagError(f"--host {args.host}: refusing to serve beyond this machine without a token; "
                        f"pass --tokens-file FILE or set {TOKEN_ENV}")
    return tokens, token


def _shared_token(name: str | None) -> str | None:
    """The shared token. A variable named by --token-env must hold one (a typo or an empty variable
    used to serve with no token, silently); the default variable may be unset, not empty."""
    if name is not None:
        value = os.environ.get(name)
        if value is None or not value.strip():
            state = "is not set" if value is None else "is empty"
            raise FlagError(f"--token-env {name}: the variable {state}; export {name}=<token>, "
                            "or drop --token-env to serve without a shared token")
        return value.strip()
    value = os.environ.get(TOKEN_ENV)
    if value is not None and not value.strip():
        raise FlagError(f"{TOKEN_ENV} is set but empty; put the token in it, or unset it to serve without one")
    return value.strip() if value else None


def _read_tokens_file(path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise FlagError(f"--tokens-file {path}: cannot read it ({reason}); "
                        "give a text file of user:token lines") from exc
    return text


def _check_store(store_dir: Path, *, named: bool) -> None:
    """Open and close the task store now, so a path that cannot hold one fails before the model loads."""
    from .store import StoreError, TaskStore

    try:
        TaskStore(store_dir).close()
    except StoreError as exc:
        raise StoreError(f"--store {exc}" if named else f"task store {exc} (pass --store DIR)") from None


def _serve(args: argparse.Namespace, info: RunInfo, store_dir: Path, tokens: dict[str, str],
           token: str | None) -> int:
    from .server import create_app, serve

    if not tokens and token is None:
        print(f"tunecrew: warning: no token: every request acts as user {args.user!r}, and anyone on this machine "
              f"who reaches port {args.port} reads and changes those tasks; pass --tokens-file FILE or set "
              f"{TOKEN_ENV}", file=sys.stderr)
    agent = _load_agent(info, args.threads)
    if agent is None:
        return 2
    auth = ", ".join(filter(None, [f"{len(tokens)} per-user tokens" if tokens else "",
                                   f"a shared token as user {args.user!r}" if token else ""])) or "none"
    print(f"tunecrew: serving run {info.run_id} ({info.describe()['base_model']} + {info.adapter or 'merged'}) "
          f"on http://{args.host}:{args.port}; tasks in {store_dir}; auth: {auth}; queue {args.max_queue}",
          file=sys.stderr)
    app = create_app(agent, store_dir, token=token, max_body_bytes=args.max_body, tokens=tokens,
                     token_user=args.user, max_queue=args.max_queue)
    serve(app, host=args.host, port=args.port)
    return 0


# Every character str.splitlines() breaks at, written as its Python escape (\n, \x85, \u2028).
_ESCAPED_LINE_BREAKS = {ord(c): repr(c)[1:-1] for c in "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"}


def _terminal(args: argparse.Namespace, info: RunInfo, store_dir: Path) -> int:
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
            # One line per reply, whatever it holds: a script reading this pairs `agent>` and `result>` lines.
            print(f"agent> {payload['reply'].translate(_ESCAPED_LINE_BREAKS)}", flush=True)
            print(f"result> {json.dumps(payload['result'], ensure_ascii=False)}", flush=True)
    return 0


def _load_agent(info: RunInfo, threads: int | None, store: TaskStore | None = None) -> TaskAgent | None:
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
