"""Kill a real crew at random moments, resume it, and check the run's invariants after every kill.

    python tests/kill_loop.py --kills 25 --seed 0      # prints one line per kill and a summary

Each cycle starts the crew (a fresh run, or `resume` of the current one) in its own process, waits
a random time, and sends SIGKILL (most often) or SIGINT. After each kill:

- the ledger reads, its attempts are 1..n with no gap or repeat, and run.json validates;
- every attempt the memory store holds is in the ledger (memory never runs ahead of the ledger);
- every trained (`ok`) attempt in the ledger has its adapter on disk;
- no attempt folder lies beyond the next attempt, and no trainer outlives its crew.

At the end the last run is resumed to completion, without a kill: then memory and ledger agree
exactly (interrupted attempts excepted: the ledger keeps them, memory never holds them).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

TESTS = Path(__file__).parent
sys.path.insert(0, str(TESTS))  # as a script: factories sits beside it

from factories import trainer_pids  # noqa: E402

CREW = """
import sys
from dataclasses import replace
from pathlib import Path
from tunecrew.app.runner import RunOptions, resume, run
from tunecrew.scenarios.task_agent.scenario import SCENARIO
from factories import small_task_agent_data
command, base, runs, memory, run_id = sys.argv[1:6]
try:
    if command == "run":
        run(RunOptions(scenario=replace(SCENARIO, build_data=small_task_agent_data, max_attempts=3, target=1.0),
                       base_model=base, runs_dir=Path(runs), memory=memory, quiet=True, attempt_seconds=3,
                       run_id=run_id, threads=1))
    else:
        resume(Path(runs) / run_id, RunOptions(scenario=None, quiet=True, threads=1))
except KeyboardInterrupt:  # Ctrl-C before the crew's own handler was installed (data, model loading)
    sys.exit(130)
"""


@dataclass
class Report:
    kills: int = 0
    by_signal: dict[str, int] = field(default_factory=dict)
    runs: int = 0
    resumes: int = 0
    finished_runs: int = 0
    attempts: int = 0
    interrupted: int = 0
    violations: list[str] = field(default_factory=list)

    def line(self) -> str:
        signals = ", ".join(f"{k} {v}" for k, v in sorted(self.by_signal.items()))
        return (f"{self.kills} kills ({signals}) over {self.runs} runs and {self.resumes} resumes; "
                f"{self.finished_runs} runs finished; {self.attempts} attempts in the ledgers "
                f"({self.interrupted} interrupted); {len(self.violations)} invariant violations")



def check_run(run_folder: Path, memory_dir: Path, final: bool = False) -> list[str]:
    """What is wrong with a run's files after a kill; [] when every invariant holds."""
    from tunecrew.memory.ledger import Ledger
    from tunecrew.memory.store import AttemptMemory, MemoryStoreError, attempt_id
    from tunecrew.tools.run_dir import RunDir

    run_dir, problems = RunDir(run_folder), []
    if not run_dir.is_run():
        return []  # killed before run.json was written: nothing was promised yet
    try:
        spec = run_dir.read_spec()
        records = Ledger(run_dir.ledger).read()
    except (OSError, ValueError) as exc:
        return [f"{run_folder.name}: run.json or ledger unreadable: {exc}"]
    numbers = [r.attempt for r in records]
    if numbers != list(range(1, len(numbers) + 1)):
        problems.append(f"{run_folder.name}: ledger attempts {numbers} are not 1..n")
    for r in records:
        if r.result.status == "ok" and not run_dir.attempt(r.attempt).adapter.exists():
            problems.append(f"{run_folder.name}: attempt {r.attempt} is ok but has no adapter")
    folders = run_folder / "attempts"
    beyond = [p.name for p in folders.iterdir() if p.name.isdigit() and int(p.name) > len(records) + 1] \
        if folders.exists() else []
    if beyond:
        problems.append(f"{run_folder.name}: attempt folders {beyond} beyond the next attempt {len(records) + 1}")
    ledger_ids = {attempt_id(r) for r in records if r.result.status != "interrupted"}
    try:
        remembered = {attempt_id(r) for r in AttemptMemory(str(memory_dir)).list(
            limit=10_000, where={"run_id": spec.run_id})} if memory_dir.exists() else set()
    except MemoryStoreError as exc:
        return [*problems, f"{run_folder.name}: memory store unusable after the kill: {exc}"]
    if remembered - ledger_ids:
        problems.append(f"{run_folder.name}: memory holds {sorted(remembered - ledger_ids)} the ledger lacks")
    if final and remembered != ledger_ids:
        problems.append(f"{run_folder.name}: after a full resume memory {sorted(remembered)} != ledger "
                        f"{sorted(ledger_ids)}")
    if trainer_pids(run_folder / "attempts"):
        problems.append(f"{run_folder.name}: a trainer outlived its crew")
    return problems


def _finished(run_folder: Path) -> bool:
    from tunecrew.memory.ledger import Ledger
    from tunecrew.tools.run_dir import RunDir

    run_dir = RunDir(run_folder)
    if not run_dir.is_run():
        return False
    records, spec = Ledger(run_dir.ledger).read(), run_dir.read_spec()
    last = records[-1].decision if records else None
    return len(records) >= spec.max_attempts or (last is not None and last.action == "stop")


def _lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except OSError:
        return 0


def wait_for_moment(rng: random.Random, crew: subprocess.Popen, transcript: Path) -> str:
    """Wait for a random moment to kill at; returns it in words.

    A quarter of the kills land in start-up (data, model, memory); the rest after a random number
    of new crew messages (1-14, plus up to 1.5 s), so they fall in every tool: profiling,
    proposing, training, evaluating, judging, deciding, and between the ledger and memory writes.
    """
    started = time.monotonic()
    if rng.random() < 0.25:
        target = rng.uniform(0.5, 6.0)
        with contextlib.suppress(subprocess.TimeoutExpired):
            crew.wait(timeout=target)
        return f"start-up + {target:.1f} s"
    messages, pause = rng.randint(1, 14), rng.uniform(0.0, 1.5)
    goal = _lines(transcript) + messages
    while crew.poll() is None and _lines(transcript) < goal and time.monotonic() - started < 180:
        time.sleep(0.05)
    time.sleep(pause)
    return f"{messages} messages + {pause:.1f} s ({time.monotonic() - started:.0f} s)"


def kill_loop(kills: int, seed: int, work: Path, base_model: str, say=print) -> Report:
    rng, report = random.Random(seed), Report()
    runs, memory = work / "runs", work / "memory"
    script = work / "crew.py"
    script.write_text(CREW)
    env = {**os.environ, "PYTHONPATH": str(TESTS)}
    run_id: str | None = None

    def start() -> subprocess.Popen:
        nonlocal run_id
        fresh = run_id is None or not (runs / run_id / "run.json").exists() or _finished(runs / run_id)
        if fresh:
            report.runs += 1
            run_id = f"victim-{report.runs}"
        else:
            report.resumes += 1
        assert run_id is not None
        return subprocess.Popen([sys.executable, str(script), "run" if fresh else "resume", base_model, str(runs),
                                 str(memory), run_id], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                text=True)

    while report.kills < kills:
        crew = start()
        assert run_id is not None
        moment = wait_for_moment(rng, crew, runs / run_id / "transcript.jsonl")
        if crew.poll() is None:
            sig = signal.SIGKILL if rng.random() < 0.7 else signal.SIGINT
            crew.send_signal(sig)
            try:
                _, stderr = crew.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                crew.kill()
                _, stderr = crew.communicate()
                report.violations.append(f"kill {report.kills + 1}: still running 60 s after {sig.name}")
            report.kills += 1
            report.by_signal[sig.name] = report.by_signal.get(sig.name, 0) + 1
            if sig == signal.SIGINT and "Traceback" in (stderr or ""):
                report.violations.append(f"kill {report.kills}: SIGINT printed a traceback: {stderr[-400:]}")
        else:
            _, stderr = crew.communicate()
            if crew.returncode not in (0, 1):
                report.violations.append(f"{run_id}: crew exited {crew.returncode} unkilled: {stderr[-400:]}")
        assert run_id is not None
        time.sleep(0.5)  # the kernel reaps the trainer (PDEATHSIG) a moment after its crew
        deadline = time.monotonic() + 10
        while trainer_pids(runs / run_id / "attempts") and time.monotonic() < deadline:
            time.sleep(0.2)
        problems = check_run(runs / run_id, memory)
        report.violations += problems
        say(f"kill {report.kills:2d} at {moment}: {run_id} "
            f"{'ok' if not problems else '; '.join(problems)}")

    if run_id is not None and (runs / run_id / "run.json").exists() and not _finished(runs / run_id):
        crew = start()  # the last run, resumed to the end without a kill
        crew.communicate(timeout=600)
        if crew.returncode not in (0, 1):
            report.violations.append(f"{run_id}: the final resume exited {crew.returncode}")
    for folder in sorted(runs.iterdir()) if runs.exists() else []:
        report.violations += check_run(folder, memory, final=folder.name == run_id)
        report.finished_runs += _finished(folder)
        from tunecrew.memory.ledger import Ledger

        records = Ledger(folder / "ledger.jsonl").read() if (folder / "run.json").exists() else []
        report.attempts += len(records)
        report.interrupted += sum(r.result.status == "interrupted" for r in records)
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=25)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    sys.path.insert(0, str(TESTS))
    from tunecrew.scenarios.task_agent.data import generate
    from tunecrew.tools.tinymodel import create_tiny_model

    from conftest import model_texts, small_spec  # the tests' tiny model, built once here

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        data = generate(seed=0, n_train=120, n_heldout=16)

        class _Data:
            train = data.train

        base = str(create_tiny_model(work / "tiny", model_texts(_Data), small_spec()))  # type: ignore[arg-type]
        started = time.monotonic()
        report = kill_loop(args.kills, args.seed, work, base)
        print(f"{report.line()} in {time.monotonic() - started:.0f} s (load {os.getloadavg()[0]:.1f})")
        for v in report.violations:
            print("  violation:", v)
    return 1 if report.violations else 0


if __name__ == "__main__":
    sys.exit(main())
