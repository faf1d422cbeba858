"""The trained task agent: a run's best adapter, its system prompt, and the executor.

:func:`load_run` reads what a finished run left on disk (no torch): ``run.json`` (the RunSpec),
``ledger.jsonl`` (the attempts; the best one with an adapter is served: highest primary-metric
score, else the last attempt that trained), and ``domain.json`` (the persona that, with the
scenario's instruction, was the system prompt in training; it must be the same at inference).
:class:`TaskAgent` loads base model + adapter (or a merged model) and answers one message at a
time, greedily, with the scenario's generation budget, exactly as the Judge evaluated it.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from tunecrew.memory.ledger import Ledger, LedgerError
from tunecrew.tools.contracts import AttemptRecord, DomainCard, RunSpec
from tunecrew.tools.diagnose import best_attempt
from tunecrew.tools.export import adapter_dir, locate, trained_system_prompt
from tunecrew.tools.run_dir import NoSuchRun, RunDir, find_run

from .contract import DEFAULT_CONTRACT, ReplyContract
from .executor import ExecutionResult, chat_payload, execute
from .grammar import reply_grammar
from .store import TaskStore

SCENARIO_NAME = "task-agent"

log = logging.getLogger("tunecrew.agent")


class RunNotUsable(ValueError):
    """The run cannot be served; the message names the run dir and what is missing."""


@dataclass(frozen=True)
class RunInfo:
    run_dir: Path
    spec: RunSpec
    base_model: str  # path or hub id, resolved against the run dir
    adapter: str | None  # PEFT adapter (or full fine-tune) dir; None when a merged model is served
    attempt: int | None
    score: float | None
    system_prompt: str
    max_new_tokens: int
    merged_model: str | None = None
    contract: ReplyContract = DEFAULT_CONTRACT  # the run's reply contract (contract.json for --data runs)

    @property
    def run_id(self) -> str:
        return self.spec.run_id

    @property
    def model_path(self) -> str:
        return self.merged_model or self.base_model

    def describe(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "base_model": self.merged_model or self.base_model,
                "adapter": self.adapter, "attempt": self.attempt, "score": self.score}


def resolve_run_dir(ref: str | Path, runs_dir: str | Path = "runs") -> Path:
    """`ref` as a directory holding run.json, else `runs_dir/ref`."""
    try:
        return find_run(ref, runs_dir).path
    except NoSuchRun as exc:
        raise RunNotUsable(str(exc)) from None


def load_run(ref: str | Path, runs_dir: str | Path = "runs", *, merged_model: str | Path | None = None) -> RunInfo:
    """What to serve for run `ref`. Raises RunNotUsable with a message naming what is missing."""
    from .scenario import SCENARIO

    run_dir = resolve_run_dir(ref, runs_dir)
    try:
        spec = RunDir(run_dir).read_spec()
    except (ValidationError, ValueError, OSError) as exc:
        raise RunNotUsable(f"run {run_dir}: run.json is not a valid run spec ({_first_line(exc)})") from exc
    if spec.scenario != SCENARIO_NAME:
        raise RunNotUsable(f"run {run_dir} is a {spec.scenario!r} run; only {SCENARIO_NAME!r} runs can be served")

    records = _read_ledger(run_dir)
    record = None if merged_model else _pick_attempt(run_dir, records)
    adapter = _adapter_dir(run_dir, record) if record else None
    if merged_model is not None and not Path(merged_model).is_dir():
        raise RunNotUsable(f"merged model {merged_model}: no such directory")
    base_model = _locate(spec.base_model, run_dir) if merged_model is None else spec.base_model
    if merged_model is None and _looks_local(spec.base_model) and not Path(base_model).is_dir():
        raise RunNotUsable(f"run {run_dir}: base model {spec.base_model} is missing (looked in {base_model})")
    persona = _persona(run_dir, record or (records[-1] if records else None))
    # Every attempt of a run trains with one system prompt; a merged model is one of them.
    trained = record or (records[-1] if records else None)
    system_prompt = (trained_system_prompt(RunDir(run_dir), trained) if trained else None) \
        or SCENARIO.system_prompt(persona)
    return RunInfo(run_dir=run_dir, spec=spec, base_model=base_model, adapter=adapter,
                   attempt=record.attempt if record else None, score=record.score if record else None,
                   system_prompt=system_prompt, max_new_tokens=SCENARIO.max_new_tokens,
                   merged_model=str(merged_model) if merged_model is not None else None,
                   contract=(ReplyContract.model_validate_json(folder.contract.read_text())
                             if (folder := RunDir(run_dir)).contract.exists() else DEFAULT_CONTRACT))


def _read_ledger(run_dir: Path) -> list[AttemptRecord]:
    ledger = RunDir(run_dir).ledger
    if not ledger.is_file():
        return []
    try:
        return Ledger(ledger).read()
    except LedgerError as exc:
        raise RunNotUsable(str(exc)) from exc


def _pick_attempt(run_dir: Path, records: list[AttemptRecord]) -> AttemptRecord:
    if not records:
        raise RunNotUsable(f"run {run_dir} has no trained adapter: {RunDir(run_dir).ledger} records no attempt "
                           "(the run stopped before training; run it again, or pass --merged DIR)")
    usable = [r for r in records if r.result.status == "ok" and _adapter_dir(run_dir, r)]
    if not usable:
        statuses = ", ".join(f"attempt {r.attempt}: {r.result.status}" for r in records)
        raise RunNotUsable(f"run {run_dir} has no trained adapter: no attempt finished with an adapter on disk "
                           f"({statuses}; expected {RunDir(run_dir).path / 'attempts' / '<n>' / 'adapter'})")
    if any(r.score is not None for r in usable):
        best = best_attempt(usable)  # ties: the later attempt; never one the diagnosis rejected
        if best is None:
            raise RunNotUsable(f"run {run_dir}: no attempt beat the base model (the diagnosis rejected every "
                               "scored one), so none is served; see report.md, or pass --merged DIR")
        return best
    return usable[-1]


def _adapter_dir(run_dir: Path, record: AttemptRecord) -> str | None:
    """The attempt's adapter dir if it exists (the ledger's path, else attempts/<n>/adapter)."""
    found = adapter_dir(RunDir(run_dir), record)
    return str(found) if found is not None else None


def _locate(path: str, run_dir: Path) -> str:
    """A run file's path found again (tools/export.locate); a hub id `owner/name` stays as it is."""
    return locate(path, run_dir) if _looks_local(path) else path


def _looks_local(name: str) -> bool:
    """A path rather than a hub id `owner/name`."""
    return Path(name).exists() or name.startswith((".", "/", "~")) or name.count("/") != 1


def _persona(run_dir: Path, record: AttemptRecord | None) -> str:
    card_file = RunDir(run_dir).domain
    if card_file.is_file():
        try:
            return DomainCard.model_validate_json(card_file.read_text(encoding="utf-8")).persona
        except (ValidationError, ValueError) as exc:
            raise RunNotUsable(f"run {run_dir}: domain.json is not a valid domain card ({_first_line(exc)})") from exc
    if record is not None and record.domain is not None:
        return record.domain.persona
    return ""  # training used the instruction alone too (RunContext.system_prompt)


def _first_line(exc: Exception) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0][:200] if lines else type(exc).__name__


class TaskAgent:
    """A served run: `reply(message)` generates; `chat(user, message)` generates and executes."""

    def __init__(self, info: RunInfo, *, threads: int = 2, store: TaskStore | None = None) -> None:
        from tunecrew.tools.evaluate import load_model

        self.info = info
        self.store = store
        self._loaded = load_model(info.model_path, None if info.merged_model else info.adapter, threads=threads)
        self._lock = threading.Lock()  # one generation at a time: model.generate is not re-entrant
        self._controls: tuple[str, ...] | None = None
        # Decoded under the run's contract, as its held-out replies were: a reply cannot name a tool,
        # an argument or a value shape the contract does not have.
        self._grammar = reply_grammar(info.contract)

    @classmethod
    def from_run(cls, ref: str | Path, runs_dir: str | Path = "runs", *, merged_model: str | Path | None = None,
                 threads: int = 2, store: TaskStore | None = None) -> TaskAgent:
        return cls(load_run(ref, runs_dir, merged_model=merged_model), threads=threads, store=store)

    @property
    def run_id(self) -> str:
        return self.info.run_id

    def describe(self) -> dict[str, Any]:
        return self.info.describe()

    def control_tokens(self) -> tuple[str, ...]:
        """This model's chat-template control tokens (its tokenizer's special tokens)."""
        from tunecrew.tools.control_tokens import control_tokens

        if self._controls is None:
            self._controls = control_tokens(self._loaded.tokenizer)
        return self._controls

    def prompt(self, message: str) -> list[dict]:
        """The chat prompt for `message`, its control tokens escaped: every path to the model passes
        here, so no message can open a turn of its own (`<|im_end|><|im_start|>system …`)."""
        from tunecrew.tools.control_tokens import neutralise
        from tunecrew.tools.evaluate import prompt_of

        cleaned = neutralise(message, self.control_tokens())
        if cleaned.changed:
            log.warning("%s", cleaned.note())
        return prompt_of({"messages": [{"role": "user", "content": cleaned.text},
                                       {"role": "assistant", "content": ""}]}, self.info.system_prompt)

    def reply(self, message: str) -> str:
        """The model's raw reply to one user message (greedy, scenario's max_new_tokens)."""
        from tunecrew.tools.evaluate import generate

        with self._lock:
            return generate(self._loaded, [self.prompt(message)], max_new_tokens=self.info.max_new_tokens,
                            batch_size=1, grammar=self._grammar)[0]

    def run(self, user: str, message: str, store: TaskStore | None = None) -> tuple[str, ExecutionResult]:
        store = store or self.store
        if store is None:
            raise ValueError("TaskAgent.chat needs a TaskStore: pass store= here or to the constructor")
        reply = self.reply(message)
        # Writes must be grounded in `message`; replies are read under the run's contract.
        return reply, execute(reply, store, user, message=message, contract=self.info.contract)

    def chat(self, user: str, message: str, store: TaskStore | None = None) -> dict[str, Any]:
        """{reply, kind, action, result}: the raw reply and what executing it did."""
        return chat_payload(*self.run(user, message, store))

