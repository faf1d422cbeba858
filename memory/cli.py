"""`tunecrew memory`: look into, search, move and prune the attempt memory.

    tunecrew memory list [--limit 20] [--scenario task-agent] [--domain "task-management agent"]
    tunecrew memory search "task agent, tiny llama, format failures" [-k 5]
    tunecrew memory show RUN_ID:ATTEMPT
    tunecrew memory export attempts.jsonl          # '-' writes to stdout
    tunecrew memory import attempts.jsonl          # validated line by line, re-embedded here
    tunecrew memory forget RUN_ID:ATTEMPT | --run RUN_ID
    tunecrew memory rebuild [--runs-dir runs]      # a damaged store: moved aside, rebuilt from the ledgers

Every command takes `--memory DIR|URL` (default ~/.tunecrew/memory; http://host:port is a Chroma
server) and `--embedder SPEC` (default hashing). An export holds records, not vectors: one
`AttemptRecord` JSON per line, so it moves between machines and embedders; import embeds each
record again with the destination's embedder.

A damaged store (see `MemoryStoreDamaged`) is reported as one line that names the `rebuild`
command: it moves the store aside to `DIR.damaged-TIMESTAMP` and remembers every attempt of every
run's `ledger.jsonl` again, through the same `remember_many` a run uses, so ids and records are the
ones the runs wrote. Attempts that only came from `import` are not in any ledger: import their
export again.

This module only registers the parsers at import; chromadb is loaded when a command runs.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tunecrew.memory.store import AttemptMemory
    from tunecrew.tools.contracts import AttemptRecord

IMPORT_BATCH = 256  # records embedded and upserted per call


class _Refusal(Exception):
    """A command that cannot do what was asked: one line on stderr, exit code 2."""


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--memory", help="memory store dir or Chroma server URL (default ~/.tunecrew/memory)")
    common.add_argument("--embedder", default="hashing",
                        help="hashing[:DIM] (default, offline), st:/path/to/model, openai:MODEL or gemini:MODEL; "
                             "must be the one the store was built with")
    memory = sub.add_parser("memory", help="list, search, show, export, import, forget or rebuild remembered attempts")
    cmds = memory.add_subparsers(dest="memory_command", required=True, metavar="COMMAND")

    ls = cmds.add_parser("list", parents=[common], help="the most recent attempts, as a table")
    ls.add_argument("--limit", type=int, default=20, help="how many (default 20)")
    ls.add_argument("--scenario", help="only this scenario, e.g. task-agent")
    ls.add_argument("--domain", help="only this domain label, e.g. 'task-management agent'")

    search = cmds.add_parser("search", parents=[common],
                             help="the attempts nearest to a text, as the Tuner recalls them")
    search.add_argument("text", help="what to look for: words of a task, a domain, a model, a failure")
    search.add_argument("-k", type=int, default=5, help="how many (default 5)")
    search.add_argument("--min-similarity", type=float, default=0.0,
                        help="drop attempts under this cosine similarity (default 0: show the k nearest)")

    show = cmds.add_parser("show", parents=[common], help="one attempt's full record, as JSON")
    show.add_argument("id", metavar="ID", help="RUN_ID:ATTEMPT, as `list` and `search` print it")

    export = cmds.add_parser("export", parents=[common], help="write every attempt to a JSONL file")
    export.add_argument("file", help="output file, or - for stdout")

    imp = cmds.add_parser("import", parents=[common], help="read attempts from a JSONL file (re-embedded here)")
    imp.add_argument("file", type=Path, help="a file written by `tunecrew memory export` (or a run's ledger.jsonl)")

    forget = cmds.add_parser("forget", parents=[common], help="delete one attempt, or every attempt of a run")
    what = forget.add_mutually_exclusive_group(required=True)
    what.add_argument("id", nargs="?", metavar="ID", help="RUN_ID:ATTEMPT")
    what.add_argument("--run", help="every attempt of this run id")

    rebuild = cmds.add_parser("rebuild", parents=[common],
                              help="move a damaged store aside and rebuild it from every run's ledger.jsonl")
    rebuild.add_argument("--runs-dir", type=Path, default=Path("runs"),
                         help="where the runs are, runs/<id>/ledger.jsonl (default ./runs); stop runs that use "
                              "the store first")


def main(args: argparse.Namespace) -> int:
    from tunecrew.memory.store import AttemptMemory, MemoryStoreError

    if args.memory_command == "rebuild":  # the store is not opened: it may be damaged
        try:
            return _rebuild(args)
        except (_Refusal, MemoryStoreError) as exc:
            print(f"tunecrew: {exc}", file=sys.stderr)
            return 2
    if args.memory_command == "import":  # check the file before anything opens (or creates) a store
        try:
            records = read_records(args.file)
        except _Refusal as exc:
            print(f"tunecrew: {exc}", file=sys.stderr)
            return 2
    try:
        memory = AttemptMemory(args.memory, embedder=args.embedder)
    except (MemoryStoreError, ValueError, RuntimeError) as exc:  # a bad --embedder is a ValueError/RuntimeError
        print(f"tunecrew: {exc}", file=sys.stderr)
        return 2
    try:
        if args.memory_command == "import":
            return _import(memory, args.file, records)
        return _COMMANDS[args.memory_command](memory, args)
    except (_Refusal, MemoryStoreError) as exc:  # a store found damaged by a read or write, past the open
        print(f"tunecrew: {exc}", file=sys.stderr)
        return 2


# --------------------------------------------------------------------------- commands


def _list(memory: AttemptMemory, args: argparse.Namespace) -> int:
    from rich.table import Table

    from tunecrew.memory.store import is_worked

    if args.limit < 1:
        raise _Refusal(f"--limit {args.limit} must be at least 1")
    where = {k: v for k, v in (("scenario", args.scenario), ("domain", args.domain)) if v}
    records = memory.list(limit=args.limit, where=where or None)
    total = memory.count()
    table = Table(title=f"memory {memory.location}: {len(records)} of {total} attempts, newest first")
    for name, kw in (("id", {"no_wrap": True}), ("created", {"no_wrap": True}), ("scenario", {}), ("domain", {}),
                     ("base model", {}), ("config", {"no_wrap": True}), ("status", {}), ("score", {"justify": "right"}),
                     ("outcome", {})):
        table.add_column(name, **kw)
    for r in records:
        c = r.config
        worked = is_worked(r)
        score = r.score
        table.add_row(
            f"{r.run_id}:{r.attempt}", r.created_at[:16].replace("T", " "), r.scenario,
            r.domain.domain if r.domain else "-", f"{r.model_family} {_size(r.model_params)}",
            f"{c.method} r{c.lora_rank} lr {c.learning_rate:g} ep {c.epochs:g} bs {c.effective_batch}",
            r.result.status, f"{score:.3f}" if score is not None else "-",
            "[green]worked[/green]" if worked else
            f"[red]failed[/red] ({r.diagnosis.label if r.diagnosis else r.result.status})",
        )
    _console().print(table)
    return 0


def _search(memory: AttemptMemory, args: argparse.Namespace) -> int:
    from rich.table import Table

    if args.k < 1:
        raise _Refusal(f"-k {args.k} must be at least 1")
    hits = memory.recall(args.text, k=args.k, min_similarity=args.min_similarity)
    if not hits:
        print(f"no remembered attempt at similarity >= {args.min_similarity:g} "
              f"({memory.count()} in {memory.location})")
        return 0
    table = Table(title=f"nearest attempts to {args.text[:60]!r} (worked first, then failures)")
    for name, kw in (("similarity", {"justify": "right"}), ("outcome", {}), ("id", {"no_wrap": True}),
                     ("summary", {"overflow": "fold"})):
        table.add_column(name, **kw)
    for h in hits:
        head, _, summary = h.summary.partition(": ")
        table.add_row(f"{h.similarity:.3f}", "[green]worked[/green]" if h.worked else f"[red]{head.lower()}[/red]",
                      h.id, summary)
    _console().print(table)
    return 0


def _show(memory: AttemptMemory, args: argparse.Namespace) -> int:
    record = memory.get(args.id)
    if record is None:
        print(f"tunecrew: no attempt {args.id!r} in {memory.location} (ids look like RUN_ID:ATTEMPT; "
              "see `tunecrew memory list`)", file=sys.stderr)
        return 1
    print(record.model_dump_json(indent=2))
    return 0


def _export(memory: AttemptMemory, args: argparse.Namespace) -> int:
    records = memory.list(limit=max(1, memory.count()))
    records.reverse()  # oldest first: the file reads like a history
    lines = "".join(r.model_dump_json() + "\n" for r in records)
    if args.file == "-":
        sys.stdout.write(lines)
    else:
        out = Path(args.file)
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            tmp = out.with_name(out.name + ".part")
            tmp.write_text(lines, encoding="utf-8")
            tmp.replace(out)  # a reader never sees half an export
        except OSError as exc:
            raise _Refusal(f"cannot write {out} ({exc.strerror or exc})") from exc
    print(f"exported {len(records)} attempts from {memory.location} to {args.file}", file=sys.stderr)
    return 0


def read_records(path: Path) -> list[AttemptRecord]:
    """Every record of a JSONL file, or a `_Refusal` naming the first bad line as FILE:LINE."""
    from pydantic import ValidationError

    from tunecrew.tools.contracts import AttemptRecord

    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise _Refusal(f"cannot read {path} ({getattr(exc, 'strerror', None) or exc})") from exc
    records = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(AttemptRecord.model_validate_json(line))
        except (ValidationError, ValueError) as exc:
            raise _Refusal(
                f"{path}:{lineno}: not an attempt record ({_first_error(exc)}); nothing was imported"
            ) from exc
    return records


def _import(memory: AttemptMemory, path: Path, records: list[AttemptRecord]) -> int:
    from tunecrew.memory.store import attempt_id

    before = memory.count()
    for i in range(0, len(records), IMPORT_BATCH):
        memory.remember_many(records[i : i + IMPORT_BATCH])
    distinct = len({attempt_id(r) for r in records})
    added = memory.count() - before
    print(f"imported {len(records)} records from {path} into {memory.location}: {added} new, "
          f"{distinct - added} replaced an attempt with the same id (embedded with {memory.embedder})")
    return 0


def _forget(memory: AttemptMemory, args: argparse.Namespace) -> int:
    n = memory.forget(id=args.id) if args.id else memory.forget(run_id=args.run)
    what = f"attempt {args.id}" if args.id else f"run {args.run}"
    if n == 0:
        print(f"tunecrew: nothing to forget: no {what} in {memory.location}", file=sys.stderr)
        return 1
    print(f"forgot {n} attempt{'s' if n != 1 else ''} ({what}) in {memory.location}")
    return 0


def _rebuild(args: argparse.Namespace) -> int:
    """Read every ledger first (a bad one refuses before anything moves), then move aside and rebuild."""
    from tunecrew.memory.guard import LocalStoreGuard
    from tunecrew.memory.store import AttemptMemory, MemoryStoreError, attempt_id, default_memory_dir

    if args.memory and args.memory.startswith(("http://", "https://")):
        raise _Refusal(f"rebuild is for a local store directory, not the Chroma server {args.memory}")
    store = (Path(args.memory).expanduser() if args.memory else default_memory_dir()).resolve()
    records, runs, skipped = _ledger_records(args.runs_dir, store, default_memory_dir().resolve())
    if not runs:
        raise _Refusal(f"no run under {args.runs_dir} remembered in {store} (looked for "
                       f"{args.runs_dir}/*/ledger.jsonl); pass the folder your runs are in with --runs-dir, or "
                       f"move {store} aside to start an empty memory; nothing was moved")
    moved = None
    if store.exists() or store.is_symlink():
        moved = store.with_name(f"{store.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}")
        n = 1
        while moved.exists():
            n += 1
            moved = moved.with_name(f"{store.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}-{n}")
        LocalStoreGuard.discard(store)  # this process's client of the old files must not serve the new store
        try:
            os.rename(store, moved)
        except OSError as exc:
            raise _Refusal(f"cannot move {store} aside to {moved} ({exc.strerror or exc}); "
                           "nothing was changed") from exc
    try:
        memory = AttemptMemory(store, embedder=args.embedder)
        for i in range(0, len(records), IMPORT_BATCH):
            memory.remember_many(records[i : i + IMPORT_BATCH])  # what a run does after each attempt
    except MemoryStoreError as exc:
        raise _Refusal(f"{exc} (the old store is in {moved})" if moved else str(exc)) from exc
    where = f"moved the old store to {moved}; " if moved else ""
    print(f"{where}rebuilt {store} with {len({attempt_id(r) for r in records})} attempts from the ledgers of "
          f"{runs} runs under {args.runs_dir} (embedded with {memory.embedder})"
          + (f"; skipped {skipped} runs that remembered elsewhere or not at all" if skipped else ""))
    return 0


def _ledger_records(runs_dir: Path, store: Path, default_store: Path) -> tuple[list[AttemptRecord], int, int]:
    """(records, runs read, runs skipped): the runs whose run.json names this store, or has no memory set."""
    from tunecrew.memory.ledger import Ledger, LedgerError
    from tunecrew.tools.contracts import RunSpec

    if not runs_dir.is_dir():
        raise _Refusal(f"--runs-dir {runs_dir} is not a directory; pass the folder your runs are in; nothing was moved")
    records: list[AttemptRecord] = []
    runs = skipped = 0
    for ledger in sorted(runs_dir.glob("*/ledger.jsonl")):
        spec_file = ledger.parent / "run.json"
        if spec_file.is_file():
            try:
                memory = RunSpec.model_validate_json(spec_file.read_text(encoding="utf-8")).memory
            except (OSError, ValueError):
                memory = None  # the ledger is what counts; an unreadable run.json does not hide it
            if memory is not None and _store_of(memory, default_store) != store:
                skipped += 1
                continue
        try:
            records.extend(Ledger(ledger).read())
        except (LedgerError, OSError) as exc:
            raise _Refusal(f"{exc}; nothing was moved") from exc
        runs += 1
    return records, runs, skipped


def _store_of(memory: str, default_store: Path) -> Path | None:
    """The store a run.json's `memory` names: 'default', 'off', a URL or an absolute path."""
    if memory == "default":
        return default_store
    if memory == "off" or memory.startswith(("http://", "https://")):
        return None
    return Path(memory).resolve()


_COMMANDS = {"list": _list, "search": _search, "show": _show, "export": _export, "forget": _forget}


# --------------------------------------------------------------------------- helpers


def _console() -> Any:
    from rich.console import Console

    # Wide enough that ids and configs stay on one line when stdout is a pipe (rich assumes 80 there).
    return Console(highlight=False, width=None if sys.stdout.isatty() else 160)


def _size(params: int | None) -> str:
    if not params:
        return ""
    return f"{params / 1e9:.1f}B" if params >= 1e9 else f"{params / 1e6:.1f}M"


def _first_error(exc: Exception) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        first = errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "line"
        return f"{where}: {first.get('msg', '')}"[:200]
    return str(exc).splitlines()[0][:200]
