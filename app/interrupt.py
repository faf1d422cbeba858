"""Ctrl-C and SIGTERM during a crew run: stop within seconds, say what was kept, exit 128 + signal.

Why not let `KeyboardInterrupt` unwind: AutoGen's group chat absorbs the cancellation of its task
(the crew went on to train the next attempts, console quiet), and an evaluation running in a
worker thread cannot be cancelled at all. So the handler does the few things that matter itself,
on the main thread, then ends the process:

- kills the training worker (its process group), so no orphan keeps writing into the attempt;
- if an attempt was training, appends it to the ledger as `interrupted` (what it had reached), with
  a retry of the same changes, and gives the run one more attempt: an interrupted attempt does not
  use up the budget the user asked for;
- prints one line saying how to resume, and exits 130 (SIGINT) or 143 (SIGTERM).

A second signal while the first is handled exits at once. The run-folder lock dies with the process.
Everything else a crash can leave (a trained attempt not yet evaluated, a half transcript) is what
`resume` already repairs.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from collections.abc import Callable
from types import FrameType, TracebackType

from tunecrew.agents.state import RunContext
from tunecrew.tools.contracts import Decision, LossPoint, TrainResult
from tunecrew.tools.train import LOG_FILE, kill_active
from tunecrew.tools.trials import stop_all

__all__ = ["StopOnSignal", "record_interruption"]

SIGNALS = (signal.SIGINT, signal.SIGTERM)


def record_interruption(ctx: RunContext, reason: str) -> str:
    """Put the attempt that was training into the ledger as interrupted; return what to tell the user.

    Called only when a training worker was killed: an attempt whose training had finished is
    reused by `resume` from its folder, so it needs no record.
    """
    attempt = ctx.current
    if attempt.config is None or attempt.result is not None or ctx.profile is None:
        return f"attempt {attempt.number} had not started training"
    curve = _loss_so_far(ctx)
    attempt.result = TrainResult(status="interrupted", steps=curve[-1].step if curve else 0, loss_curve=curve,
                                 error=f"{reason} during training")
    decision = Decision(action="retry", by="user", changes=dict(attempt.changes),
                        reason=f"{reason}: attempt {attempt.number} stopped after {attempt.result.steps} steps; "
                               "it does not count against the attempt budget and resume trains it again")
    ctx.ledger.append(attempt.close(ctx, decision))
    ctx.spec = ctx.spec.model_copy(update={"max_attempts": ctx.spec.max_attempts + 1})
    ctx.run.write_spec(ctx.spec)
    return f"attempt {attempt.number} recorded as interrupted after {attempt.result.steps} steps"


def _loss_so_far(ctx: RunContext) -> list[LossPoint]:
    """The losses the worker had logged: its progress lines in the attempt's train_log.jsonl."""
    points: list[LossPoint] = []
    try:
        lines = (ctx.attempt_dir.path / LOG_FILE).read_text(encoding="utf-8").splitlines()
    except OSError:
        return points
    for line in lines:
        try:
            event = json.loads(line)
            if event.get("event") == "log" and "loss" in event:
                points.append(LossPoint(step=int(event["step"]), loss=float(event["loss"]), epoch=event.get("epoch")))
        except (ValueError, TypeError, KeyError):
            continue  # a line cut by the kill
    return points


class StopOnSignal:
    """Installed around all of `run`/`resume` (main thread only: where Python runs signal handlers).

    Until `ctx` is set (data, base model and memory are being prepared) a signal runs `before_run`
    instead: `run` removes the folder it was making, `resume` has changed nothing. Python's own
    KeyboardInterrupt there could land in any library's code and hang the exit on its threads.
    """

    def __init__(self, resume_hint: str, before_run: Callable[[], str]):
        self.resume_hint = resume_hint  # the command that continues this run, as the user would type it
        self.before_run = before_run  # what a signal before the crew starts does, and says
        self.ctx: RunContext | None = None  # set once the run's state exists
        self.fired = False
        self.code = 0  # 128 + the first signal's number: what the process exits with
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopOnSignal:
        if threading.current_thread() is threading.main_thread():
            for sig in SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)  # type: ignore[arg-type]

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.fired:  # the first is still being handled: the user wants out now
            os.write(2, b"\ntunecrew: stopped\n")
            os._exit(self.code)
        self.fired, self.code = True, 128 + signum
        name = signal.Signals(signum).name
        killed = kill_active() + stop_all()
        try:
            if self.ctx is None:
                what = self.before_run()
            else:
                what = (record_interruption(self.ctx, f"interrupted by {name}") if killed else _state_of(self.ctx))
                what += f"; {self.resume_hint} continues"
        except Exception as exc:  # the ledger or run.json could not be written: say so, still exit
            what = f"the interruption could not be recorded ({type(exc).__name__}: {exc})"
        sys.stderr.write(f"\ntunecrew: interrupted ({name}); {what}\n")
        sys.stderr.flush()
        os._exit(self.code)  # not sys.exit: AutoGen would catch it, and a worker thread would keep the process


def _state_of(ctx: RunContext) -> str:
    attempt = ctx.current
    if attempt.result is not None and attempt.result.status == "ok":
        return f"attempt {attempt.number} is trained and resume reuses it"
    return f"{len(ctx.records)} finished attempts are in the ledger"
