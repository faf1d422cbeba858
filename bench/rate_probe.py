"""Rate probe: how well a few timed steps predict the attempt that follows them.

    python bench/rate_probe.py                          # SmolLM2-135M, 2 rounds of a 4-step probe + a 20-step attempt
    python bench/rate_probe.py --rounds 3 --steps 30
    python bench/rate_probe.py --base-model tiny --n-train 120 --n-heldout 16    # smoke run

With no rate in memory the Tuner sizes the first attempt from a 4-step training run of its own
first config (agents/toolkit.py, `_timed_steps`). Each round here runs that probe and then the
crew's first attempt shape for `--steps` steps, as a fresh run does, and prints the attempt's wall
seconds beside two predictions from the probe:

* whole loop: the probe's tokens over its whole training loop, discounted 0.85 (the rule before
  the steady rate), start-up = wall - loop;
* steady (tools/throughput.rate_of): tokens/s from the probe's first logged step to its last, and
  every other second of the probe (start-up, the first step's warm-up, saving) a fixed cost per run.

Both predictions use the attempt's own token count, so they measure the rate alone; the crew's
token estimate (profile mean x rows a step x steps) is printed beside it. Ratios only: the machine
is shared, so the load before and after is printed too.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from tuning_quality import Trials, make_scenario

import _common

OLD_DISCOUNT = 0.85


def main(argv: list[str] | None = None) -> list[dict[str, float]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base-model", default="smollm2-135m", help="a `tunecrew models` name, folder or hub id")
    parser.add_argument("--rounds", type=int, default=2, help="probe + attempt pairs, one after the other")
    parser.add_argument("--probe-steps", type=int, default=4, help="the crew's probe: 4 steps")
    parser.add_argument("--steps", type=int, default=20, help="the attempt's optimizer steps")
    parser.add_argument("--n-train", type=int, default=960)
    parser.add_argument("--n-heldout", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)

    from tunecrew.tools.feasibility import estimate_tokens
    from tunecrew.tools.throughput import rate_of
    from tunecrew.tools.train import run_training

    print(f"machine: {_common.machine()}")
    print(f"load before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    out: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="rate-probe-") as tmp:
        trials = Trials(make_scenario(args.n_train, args.n_heldout, runs=1), args.base_model, args.seed,
                        Path(tmp), "probe", args.threads)
        tk, ctx = trials.tk, trials.ctx
        first = trials.crew_first.with_changes({"eval_fraction": 0.0})
        print(f"{args.base_model}, config (the crew's first): LoRA r{first.lora_rank} batch {first.effective_batch} "
              f"seq {first.max_seq_length}; probe {args.probe_steps} steps, attempt {args.steps} steps, "
              f"threads {args.threads}")
        rows = []
        for n in range(1, args.rounds + 1):
            probe = run_training(tk._job(first.with_changes({"max_steps": args.probe_steps}), ctx.run.train_data,
                                         Path(tmp) / f"probe{n}", max_wall_seconds=None))
            attempt_config = first.with_changes({"max_steps": args.steps})
            attempt = run_training(tk._job(attempt_config, ctx.run.train_data, Path(tmp) / f"attempt{n}",
                                           max_wall_seconds=None))
            if probe.status != "ok" or attempt.status != "ok" or not probe.tokens or not attempt.tokens:
                print(f"round {n}: probe {probe.status}, attempt {attempt.status}: {probe.error or attempt.error}")
                continue
            loop = (probe.train_seconds or 0.0) - probe.eval_loss_seconds
            whole = probe.tokens / loop * OLD_DISCOUNT
            old = (probe.wall_seconds - (probe.train_seconds or 0.0)) + attempt.tokens / whole
            steady = rate_of(probe, "probe")
            assert steady is not None
            new = steady.seconds_for(attempt.tokens)
            crew_tokens = estimate_tokens(attempt_config, ctx.profile, tk._extra_tokens_per_row())
            result = {"round": n, "probe_whole_tps": probe.tokens / loop, "probe_steady_tps": steady.tokens_per_second,
                      "probe_fixed_s": steady.startup_seconds, "attempt_tps": attempt.tokens_per_second or 0.0,
                      "attempt_wall_s": attempt.wall_seconds, "old_estimate_s": old, "new_estimate_s": new,
                      "attempt_tokens": attempt.tokens, "crew_tokens": crew_tokens,
                      "new_with_crew_tokens_s": steady.seconds_for(crew_tokens)}
            out.append(result)
            wall, crew_s = attempt.wall_seconds, result["new_with_crew_tokens_s"]
            rows.append([str(n), f"{result['probe_whole_tps']:.0f}", f"{result['probe_steady_tps']:.0f}",
                         f"{result['attempt_tps']:.0f}", f"{wall:.0f}", f"{old:.0f} ({_off(old, wall)})",
                         f"{new:.0f} ({_off(new, wall)})", f"{crew_tokens:.0f} / {attempt.tokens}",
                         f"{crew_s:.0f} ({_off(crew_s, wall)})"])
            print(f"round {n} done", flush=True)
        print(f"load after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        print(_common.table(["round", "probe tokens/s (whole loop)", "probe tokens/s (steady)", "attempt tokens/s",
                             "attempt wall s", "whole x0.85 estimate (off)", "steady estimate (off)",
                             "crew tokens est / actual", "steady + crew tokens (off)"], rows))
        print("off = (actual - estimate) / estimate; the issue's bar is within +-25%")
    return out


def _off(estimate: float, actual: float) -> str:
    return f"{(actual - estimate) / estimate:+.0%}"


if __name__ == "__main__":
    main()
