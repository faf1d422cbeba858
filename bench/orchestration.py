"""Orchestration cost: everything but training and evaluation, as a share of a real crew run's
wall time, with the offline provider.

    python bench/orchestration.py [--train-rows 120] [--heldout 16] [--attempts 2] [--attempt-seconds 20]

Runs `tunecrew.app.runner.run` for real (group chat, offline policy, every tool, the ledger,
Chroma memory, the report) on small task-agent data and the demo's tiny model, with the ML calls and the main helpers
wrapped in timers. Reported per tool, then:

- crew time: wall time of the group chat (`run_crew`), i.e. all attempts;
- train + evaluate: the ML work the train and evaluate tools call (`run_training`, including the
  subprocess start and its imports; `load_model` + `evaluate_with_replies` for generation and scoring);
- orchestration = crew time - train - evaluate: agents' turns, selector, the other tools
  (profiling, recall, feasibility, diagnosis, ledger fsync, memory writes), transcript writes.
Set-up (`prepare`: data + building the tiny model) and the final report are shown apart: they
happen once per run, not per attempt.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import functools
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common

TIMES: dict[str, list[float]] = collections.defaultdict(list)


def timed(name: str, fn):
    if asyncio.iscoroutinefunction(fn):
        @functools.wraps(fn)
        async def async_wrapper(*a, **kw):
            t0 = time.monotonic()
            try:
                return await fn(*a, **kw)
            finally:
                TIMES[name].append(time.monotonic() - t0)

        return async_wrapper

    @functools.wraps(fn)
    def wrapper(*a, **kw):
        t0 = time.monotonic()
        try:
            return fn(*a, **kw)
        finally:
            TIMES[name].append(time.monotonic() - t0)

    return wrapper


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--train-rows", type=int, default=120)
    p.add_argument("--heldout", type=int, default=16)
    p.add_argument("--attempts", type=int, default=2)
    p.add_argument("--attempt-seconds", type=float, default=20.0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    from tunecrew.agents import toolkit as tk
    from tunecrew.app import runner
    from tunecrew.memory.ledger import Ledger
    from tunecrew.memory.store import AttemptMemory
    from tunecrew.scenarios.task_agent.data import generate
    from tunecrew.scenarios.task_agent.scenario import SCENARIO
    from tunecrew.tools.judge import JudgePanel
    from tunecrew.tools.scenario import ScenarioData

    # The ML work, as the Toolkit calls it (module globals: the tools' own signatures stay intact).
    tk.run_training = timed("train (subprocess)", tk.run_training)
    tk.load_model = timed("evaluate: load model", tk.load_model)
    tk.evaluate_with_replies = timed("evaluate: generate + score", tk.evaluate_with_replies)
    # The offline judge is orchestration here (rules over text, no model): timed to show its share.
    JudgePanel.judge = timed("LLM judge (offline heuristic)", JudgePanel.judge)  # type: ignore[method-assign]
    # Some of the orchestration, to see where it goes.
    tk.profile_rows = timed("profile_rows", tk.profile_rows)
    tk.check_feasibility = timed("check_feasibility", tk.check_feasibility)
    tk.diagnose_attempt = timed("diagnose", tk.diagnose_attempt)
    Ledger.append = timed("ledger append (fsync)", Ledger.append)
    AttemptMemory.remember = timed("memory remember", AttemptMemory.remember)
    AttemptMemory.recall = timed("memory recall", AttemptMemory.recall)
    runner.run_crew = timed("crew (group chat)", runner.run_crew)
    runner.prepare = timed("prepare (data + tiny model)", runner.prepare)
    runner.write_report = timed("report", runner.write_report)

    def small_data(seed: int) -> ScenarioData:
        d = generate(seed=seed, n_train=args.train_rows, n_heldout=args.heldout)
        return ScenarioData(train=d.train, heldout=d.heldout, heldout_split=f"bench-heldout(seed={seed})")

    tmp = Path(tempfile.mkdtemp(prefix="tunecrew-bench-orch-"))
    scenario = replace(SCENARIO, build_data=small_data, max_attempts=args.attempts, target=1.0)
    t0 = time.monotonic()
    outcome = runner.run(runner.RunOptions(
        scenario=scenario, runs_dir=tmp / "runs", memory=str(tmp / "memory"), quiet=True, seed=args.seed,
        attempt_seconds=args.attempt_seconds, threads=args.threads, run_id="bench"))
    total = time.monotonic() - t0

    print(f"machine: {_common.machine()}")
    print(f"run: task-agent, offline provider, train_rows={args.train_rows} heldout={args.heldout} "
          f"attempts={len(outcome.records)} (max {args.attempts}), attempt_seconds={args.attempt_seconds}, "
          f"seed={args.seed}, threads={args.threads}, memory=fresh Chroma dir")
    rows = [[name, len(ts), sum(ts)] for name, ts in sorted(TIMES.items(), key=lambda kv: -sum(kv[1]))]
    print(_common.table(["timed", "calls", "seconds"], rows))
    crew = sum(TIMES["crew (group chat)"])
    ml_names = ("train (subprocess)", "evaluate: load model", "evaluate: generate + score")
    ml = sum(sum(TIMES[n]) for n in ml_names)
    other_tools = sum(sum(ts) for n, ts in TIMES.items()
                      if n not in (*ml_names, "crew (group chat)", "prepare (data + tiny model)", "report"))
    orch = crew - ml
    print(f"crew time {crew:.2f} s = train + evaluate {ml:.2f} s + orchestration {orch:.2f} s "
          f"(of which the timed helpers above {other_tools:.2f} s, the rest {orch - other_tools:.2f} s: agents, "
          "selector, tool plumbing, tokenizer load, transcript)")
    print(f"orchestration share of the crew's wall time: {orch / crew * 100:.2f}% (target <= 2%)")
    print(f"per attempt: {orch / max(1, len(outcome.records)):.2f} s of orchestration; "
          f"whole process incl. set-up and report: {total:.1f} s, "
          f"share incl. them {(total - ml) / total * 100:.2f}%")


if __name__ == "__main__":
    main()
