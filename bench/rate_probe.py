"""Rate probe: how well a few timed steps predict the attempt that follows them.

    python bench/rate_probe.py                          # SmolLM2-135M, 2 rounds of an 8-step probe + a 100-step attempt
    python bench/rate_probe.py --rounds 3 --steps 60
    python bench/rate_probe.py --base-model tiny --n-train 120 --n-heldout 16 --steps 20    # smoke run

With no rate in memory the Tuner sizes the first attempt from a short training run of its own first
config (agents/toolkit.py, `_timed_steps`). Each round here runs one probe of `--probe-steps` and then
the crew's first attempt shape for `--steps` steps, as a fresh run does, and prints the attempt's wall
seconds beside predictions from stretches of the probe (its train_log.jsonl: time and tokens at
every step):

* steps 1-4 of the probe: the crew's 4-step probe until this bench's second version, its rate from
  the first logged step to the last;
* steps 1-N: the whole probe, the same rule;
* steps N/2-N: the probe's second half only, its first steps (new shapes, first kernels) left to the
  fixed cost.

* crew: what the crew sizes by now, `tools/throughput.rate_of` on the whole probe: the median
  stretch between logged steps as the per-token cost (`train_worker.steady_rate`).

Each stretch's prediction is tools/throughput.rate_of's model: tokens/s over the stretch as the per-token cost,
every other second of the probe up to the stretch's end a fixed cost per run. All use the attempt's
own token count, so they measure the rate alone. Ratios only: the machine is shared, so the load
before and after is printed too.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from tuning_quality import Trials, make_scenario

import _common

STRETCHES = (("1-4", 4, False), ("1-N", None, False), ("N/2-N", None, True))
"""(label, last step or None for the probe's last, second half only)"""


def points_of(log: Path) -> list[tuple[float, float, float]]:
    """(elapsed s, tokens so far, eval seconds so far) at each logged step of a training log."""
    out = []
    for line in log.read_text(encoding="utf-8").splitlines():
        event = json.loads(line)
        if event.get("event") == "log" and event.get("tokens"):
            out.append((float(event["elapsed"]), float(event["tokens"]), float(event.get("eval_seconds") or 0.0)))
    return out


def predict(probe_wall: float, points: list[tuple[float, float, float]], last: int | None, second_half: bool,
            attempt_tokens: float) -> tuple[float, float] | None:
    """(tokens/s, predicted attempt wall s) from the probe cut at step `last`: the rate over the
    stretch, and the probe's other seconds up to that step as the fixed cost."""
    end = (len(points) if last is None else min(last, len(points))) - 1
    begin = max(0, (end + 1) // 2 - 1) if second_half else 0
    if end <= begin:
        return None
    (e0, t0, v0), (e1, t1, v1) = points[begin], points[end]
    seconds = (e1 - e0) - (v1 - v0)
    if seconds <= 0 or t1 <= t0:
        return None
    rate = (t1 - t0) / seconds
    wall = probe_wall - (points[-1][0] - e1)  # the probe as if it had stopped at this step
    fixed = wall - t1 / rate
    return rate, fixed + attempt_tokens / rate


def main(argv: list[str] | None = None) -> list[dict[str, float]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base-model", default="smollm2-135m", help="a `tunecrew models` name, folder or hub id")
    parser.add_argument("--rounds", type=int, default=2, help="probe + attempt pairs, one after the other")
    parser.add_argument("--probe-steps", type=int, default=8, help="the probe's steps")
    parser.add_argument("--steps", type=int, default=100, help="the attempt's optimizer steps (the demo's: ~100-150)")
    parser.add_argument("--n-train", type=int, default=960)
    parser.add_argument("--n-heldout", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--pad-to-multiple-of", type=int,
                        help="TrainConfig.pad_to_multiple_of for probe and attempt (default: the config's own, a "
                             "quarter of max_seq_length on a CPU; 1: pad to each batch's longest row)")
    args = parser.parse_args(argv)

    from tunecrew.tools.throughput import rate_of
    from tunecrew.tools.train import LOG_FILE, run_training

    print(f"machine: {_common.machine()}")
    print(f"load before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    out: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="rate-probe-") as tmp:
        trials = Trials(make_scenario(args.n_train, args.n_heldout, runs=1), args.base_model, args.seed,
                        Path(tmp), "probe", args.threads)
        tk, ctx = trials.tk, trials.ctx
        first = trials.crew_first.with_changes({"eval_fraction": 0.0})
        if args.pad_to_multiple_of:
            first = first.with_changes({"pad_to_multiple_of": args.pad_to_multiple_of})
        print(f"{args.base_model}, config (the crew's first): LoRA r{first.lora_rank} batch {first.effective_batch} "
              f"seq {first.max_seq_length}, padded to a multiple of {first.pad_to_multiple_of or 'auto'}; probe "
              f"{args.probe_steps} steps, attempt {args.steps} steps, threads {args.threads}")
        rows = []
        for n in range(1, args.rounds + 1):
            probe_dir = Path(tmp) / f"probe{n}"
            probe = run_training(tk._job(first.with_changes({"max_steps": args.probe_steps}), ctx.run.train_data,
                                         probe_dir, max_wall_seconds=None))
            attempt = run_training(tk._job(first.with_changes({"max_steps": args.steps}), ctx.run.train_data,
                                           Path(tmp) / f"attempt{n}", max_wall_seconds=None))
            if probe.status != "ok" or attempt.status != "ok" or not probe.tokens or not attempt.tokens:
                print(f"round {n}: probe {probe.status}, attempt {attempt.status}: {probe.error or attempt.error}")
                continue
            points = points_of(probe_dir / LOG_FILE)
            wall = attempt.wall_seconds
            result: dict[str, float] = {"round": n, "attempt_wall_s": wall,
                                        "attempt_tps": attempt.tokens_per_second or 0.0}
            row = [str(n), f"{attempt.tokens_per_second or 0:.0f}", f"{wall:.0f}"]
            for label, last, second_half in STRETCHES:
                found = predict(probe.wall_seconds, points, last, second_half, attempt.tokens)
                if found is None:
                    row.append("-")
                    continue
                rate, estimate = found
                result[f"{label}_tps"], result[f"{label}_estimate_s"] = rate, estimate
                row.append(f"{rate:.0f} · {estimate:.0f} ({_off(estimate, wall)})")
            crew = rate_of(probe, "probe")
            if crew is None:
                row.append("-")
            else:
                estimate = crew.seconds_for(attempt.tokens)
                result["crew_tps"], result["crew_estimate_s"] = crew.tokens_per_second, estimate
                row.append(f"{crew.tokens_per_second:.0f} · {estimate:.0f} ({_off(estimate, wall)})")
            out.append(result)
            rows.append(row)
            print(f"round {n} done", flush=True)
        print(f"load after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        print(_common.table(["round", "attempt tokens/s", "attempt wall s"]
                            + [f"probe steps {label}: tokens/s · estimate s (off)" for label, _, _ in STRETCHES]
                            + ["crew (median stretch): tokens/s · estimate s (off)"], rows))
        print(f"N = {args.probe_steps}; off = (actual - estimate) / estimate; the issue's bar is within +-25%")
    return out


def _off(estimate: float, actual: float) -> str:
    return f"{(actual - estimate) / estimate:+.0%}"


if __name__ == "__main__":
    main()
