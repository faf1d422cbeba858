"""TRL's fused LM head on a CPU: every position scored (TRL's rule off CUDA) vs labelled positions only
(tools/lm_head.py), side by side through the train tool.

    python bench/lm_head.py [--base-model smollm2-135m] [--steps 24] [--repeats 2] [--threads 2] [--precision auto]

The crew's first config for SmolLM2-135M on the task agent (LoRA r64, lr 1e-3, batch 4,
`--precision`, default auto), trained by the train tool (the worker subprocess) for `--steps` optimizer steps
from the base model, once with TUNECREW_SCORE_ALL_POSITIONS=1 (TRL's own head) and once without
(the tool's default), alternating (all, labelled, labelled, all, ...) so a drift in the machine's load
hits both. Reported per run: the steady tokens/s (what attempts are sized from), the training loop's
seconds and the first losses, then the median ratio labelled / all and the largest loss difference
between any two runs. The shim changes which positions the head computes, not the numbers: at
`--precision fp32` the curves are identical (0.0 over 24 steps, measured); under bf16 autocast the
body's rounding lets them drift apart by up to ~1e-2 over 24 steps, with equal first losses.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common

ARMS = {"all positions (TRL)": {"TUNECREW_SCORE_ALL_POSITIONS": "1"},
        "labelled only (tool)": {"TUNECREW_SCORE_ALL_POSITIONS": "0"}}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--base-model", default="smollm2-135m", help="a registry name, hub id or local folder")
    p.add_argument("--steps", type=int, default=24)
    p.add_argument("--repeats", type=int, default=2, help="runs of each arm")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    args = p.parse_args()

    from tunecrew.tools.base_models import resolve

    model = resolve(args.base_model)
    print(f"machine: {_common.machine()}", flush=True)
    names = list(ARMS)
    runs: dict[str, list] = {name: [] for name in names}
    with tempfile.TemporaryDirectory(prefix="tunecrew-lm-head-") as tmp:
        train_file = _common.write_task_train_file(Path(tmp) / "train.jsonl", args.seed)
        for i in range(args.repeats):
            for j, name in enumerate(names if i % 2 == 0 else names[::-1]):
                runs[name].append(_common.train_first_config(
                    model, train_file, Path(tmp) / f"{i}-{j}", steps=args.steps, seed=args.seed,
                    threads=args.threads, precision=args.precision, env=ARMS[name]))
                print(f"{name} #{i + 1} done", flush=True)
    table = [[f"{name} #{i + 1}", r.precision, r.steps, round(r.steady_tokens_per_second or 0),
              round(r.train_seconds or 0, 1), [round(x.loss, 4) for x in r.loss_curve[:4]]]
             for name, results in runs.items() for i, r in enumerate(results)]
    print(f"\n## {args.base_model}: LoRA r64, batch 4, {args.steps} steps, {args.threads} threads, seed {args.seed}")
    print(_common.table(["run", "precision", "steps", "steady tokens/s", "train loop s", "first losses"], table))
    every, labelled = (statistics.median(r.steady_tokens_per_second or 0 for r in runs[name]) for name in names)
    curves = [[x.loss for x in r.loss_curve] for rs in runs.values() for r in rs]
    gap = max(abs(a - b) for curve in curves[1:] for a, b in zip(curves[0], curve, strict=True))
    print(f"\nlabelled only / all positions, steady tokens/s (median of {args.repeats} each): {labelled / every:.2f}x; "
          f"largest loss difference between any two runs over {len(curves[0])} logged steps: {gap:.2e}")


if __name__ == "__main__":
    main()
