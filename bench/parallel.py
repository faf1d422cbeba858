"""--parallel 2 vs 1 at equal total CPU: wall time to the target, and the scheduler's overhead per trial.

    python bench/parallel.py                          # SmolLM2-135M (the default model), task-agent, target 0.2
    python bench/parallel.py --base-model tiny --target 0.05 --attempt-seconds 20    # a quick smoke run

Two crew runs side by side in one process, one after the other, on the same data, seed and held-out
split, memory off: `--parallel 1` (one config per attempt, all threads) and `--parallel 2` (two
configs per attempt, half the threads each; the second from the Optuna search). Each attempt's
training is capped at --attempt-seconds, so both runs spend the same training wall time per
attempt and the same total CPU. Printed per run: whether and when the target was reached (minutes
from the run's start to the attempt that reached it), attempts, trials trained, the best score
(split, n, seed), and the ratio of times to target.

Then the engine alone (`--skip-crew` runs only this): two short trainings of the tests' tiny model,
one after the other with 2 threads each (what --parallel 1 does) and as one round of 2 trials with
1 thread each on the local pool and on Ray (if installed): the wall-time ratio, and the engine's
overhead per trial (round wall time past its longest trial, over the trials). The crew runs on
SmolLM2 take tens of minutes each on a loaded 2-core machine (its base-model evaluation alone took
11 min at load ~6): run them on a quiet one. The machine's load is printed before and after: these machines are shared.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, table, task_rows, tiny_model


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def crew_run(parallel: int, args: argparse.Namespace, root: Path) -> dict:
    from tunecrew.app.runner import RunOptions, run
    from tunecrew.scenarios.task_agent.scenario import SCENARIO
    from tunecrew.tools import trials

    scenario = replace(SCENARIO, max_attempts=args.max_attempts, target=args.target)
    started = time.monotonic()
    try:
        outcome = run(RunOptions(scenario=scenario, base_model=args.base_model, runs_dir=root / "runs",
                                 run_id=f"parallel-{parallel}", use_memory=False, quiet=True, threads=args.threads,
                                 parallel=parallel, attempt_seconds=args.attempt_seconds, seed=args.seed,
                                 budget_minutes=args.budget_minutes))
    finally:
        trials.shutdown()
    wall = time.monotonic() - started
    t0 = dt.datetime.fromisoformat(outcome.spec.created_at)
    reached = next((r for r in outcome.records if r.score is not None and r.score >= args.target), None)
    minutes = (dt.datetime.fromisoformat(reached.created_at) - t0).total_seconds() / 60 if reached else None
    best = max((r for r in outcome.records if r.score is not None), key=lambda r: r.score or 0.0, default=None)
    overheads = [float(n.split("engine overhead ")[1].split(" s")[0]) / len(r.trials)
                 for r in outcome.records for n in r.notes if "engine overhead" in n and r.trials]
    return {"parallel": parallel, "minutes_to_target": minutes, "wall_minutes": wall / 60,
            "attempts": len(outcome.records), "trials": sum(max(1, len(r.trials)) for r in outcome.records),
            "best": best.score if best else None, "where": (f"{best.eval.split}, n={best.eval.samples}, seed="
                                                          f"{best.eval.seed}" if best and best.eval else "-"),
            "overhead_per_trial_s": sum(overheads) / len(overheads) if overheads else None}


def engine_rounds(root: Path) -> list[dict]:
    from tunecrew.tools import trials
    from tunecrew.tools.contracts import TrainConfig
    from tunecrew.tools.rows import write_jsonl
    from tunecrew.tools.train import TrainJob, run_training

    data = task_rows(seed=0, n_train=120)
    train_file = write_jsonl(data.train, root / "engine" / "train.jsonl")
    model = tiny_model(root / "engine" / "model", [m["content"] for r in data.train for m in r["messages"]],
                       small=True)
    config = TrainConfig(method="lora", lora_rank=8, lora_alpha=16, learning_rate=3e-3, batch_size=8, max_steps=6,
                         max_seq_length=128, eval_fraction=0.0, warmup_ratio=0.0)
    out = []
    # The serial equivalent at the same total CPU: the same two trainings one after the other, each
    # with both threads (what --parallel 1 does with the same two configs).
    started = time.monotonic()
    serial = [run_training(TrainJob(config=config, base_model=model, train_file=str(train_file),
                                    output_dir=str(root / "engine" / "serial" / str(i)), threads=2))
              for i in range(2)]
    out.append({"engine": "serial (2 threads each)", "cluster_start_s": 0.0, "round_s": time.monotonic() - started,
                "longest_trial_s": max(r.wall_seconds for r in serial), "overhead_per_trial_s": 0.0})
    engines = ["local", "ray"] if trials.ray_available() else ["local"]
    for engine in engines:
        jobs = [TrainJob(config=config, base_model=model, train_file=str(train_file),
                         output_dir=str(root / "engine" / engine / str(i)), threads=1) for i in range(2)]
        try:
            if engine == "ray":
                started = time.monotonic()
                trials.connect(None, cpus=2)
                start_up = time.monotonic() - started
            else:
                start_up = 0.0
            _, timing = trials.run_round(jobs, engine)  # type: ignore[arg-type]
        finally:
            if engine == "ray":
                trials.shutdown()
        out.append({"engine": engine, "cluster_start_s": start_up, "round_s": timing.wall_seconds,
                    "longest_trial_s": max(timing.trial_seconds),
                    "overhead_per_trial_s": timing.overhead_seconds / len(jobs)})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base-model", default="smollm2-135m")
    parser.add_argument("--target", type=float, default=0.2)
    parser.add_argument("--max-attempts", type=int, default=3)
    parser.add_argument("--attempt-seconds", type=float, default=90)
    parser.add_argument("--budget-minutes", type=float, default=None)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-crew", action="store_true", help="only the engine rounds")
    args = parser.parse_args()
    print(f"machine: {machine()}\nload before: {load()}")
    with tempfile.TemporaryDirectory(prefix="tunecrew-bench-parallel-") as tmp:
        root = Path(tmp)
        if not args.skip_crew:
            runs = [crew_run(p, args, root) for p in (1, 2)]
            print(f"\ncrew runs: {args.base_model}, task-agent, target {args.target}, --attempt-seconds "
                  f"{args.attempt_seconds}, {args.threads} threads in all, max {args.max_attempts} attempts")
            fmt = lambda v, spec=".2f": "-" if v is None else format(v, spec)
            print(table(["--parallel", "minutes to target", "run minutes", "attempts", "trials", "best score",
                         "scored on", "engine overhead / trial s"],
                        [[str(r["parallel"]), fmt(r["minutes_to_target"]), fmt(r["wall_minutes"]), str(r["attempts"]),
                          str(r["trials"]), fmt(r["best"], ".3f"), r["where"], fmt(r["overhead_per_trial_s"])]
                         for r in runs]))
            one, two = runs
            if one["minutes_to_target"] and two["minutes_to_target"]:
                print(f"time to target, --parallel 2 / --parallel 1: "
                      f"{two['minutes_to_target'] / one['minutes_to_target']:.2f}")
            else:
                print("time to target ratio: not measured (a run did not reach the target)")
        rounds = engine_rounds(root)
        print("\nengine: 2 trainings of the tiny model (6 steps each): one after the other with 2 threads each, "
              "or as one round of 2 trials with 1 thread each")
        print(table(["engine", "cluster start s", "round s", "longest trial s", "overhead / trial s"],
                    [[r["engine"], f"{r['cluster_start_s']:.1f}", f"{r['round_s']:.1f}", f"{r['longest_trial_s']:.1f}",
                      f"{r['overhead_per_trial_s']:.2f}"] for r in rounds]))
        serial_s = rounds[0]["round_s"]
        for r in rounds[1:]:
            print(f"wall time for the two trainings, {r['engine']} round / serial: {r['round_s'] / serial_s:.2f}")
    print(f"load after: {load()}")


if __name__ == "__main__":
    main()
