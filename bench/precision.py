"""bf16 autocast vs fp32 for the train tool on a CPU, side by side: what `precision=auto` buys.

    python bench/precision.py [--base-model smollm2-135m] [--steps 24] [--repeats 2] [--threads 2]

The crew's first config for SmolLM2-135M on the task agent (LoRA r64 on every linear layer, lr 1e-3,
batch 4), trained by the train tool (`run_training`, the worker subprocess) for `--steps` optimizer
steps from the base model with `precision=fp32` and with `precision=bf16`, alternating (fp32, bf16,
bf16, fp32, ...) so a drift in the machine's load hits both. Reported per run: the steady tokens/s
(first logged step to the last, what attempts are sized from) and the training loop's seconds, then
the median ratio bf16 / fp32. The first losses of both are printed too: equal data and seed, so they
differ only by rounding (a run whose Trainer ignored bf16 would match fp32 to the last digit).

`precision=auto` trains bf16 where `tools/hardware.py` says the device runs it fast (CUDA with bf16;
CPUs with AMX-BF16 or AVX512-BF16): on a CPU with neither, this shows what auto leaves alone there.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--base-model", default="smollm2-135m", help="a registry name, hub id or local folder")
    p.add_argument("--steps", type=int, default=24)
    p.add_argument("--repeats", type=int, default=2, help="runs of each precision")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    from tunecrew.tools.base_models import resolve
    from tunecrew.tools.hardware import cpu_bf16_fast, detect_hardware

    model = resolve(args.base_model)
    hardware = detect_hardware()
    print(f"machine: {_common.machine()}; AMX-BF16 or AVX512-BF16: {cpu_bf16_fast()}; precision=auto trains "
          f"{'bf16' if hardware.bf16 else 'fp32'} here", flush=True)
    with tempfile.TemporaryDirectory(prefix="tunecrew-precision-") as tmp:
        train_file = _common.write_task_train_file(Path(tmp) / "train.jsonl", args.seed)
        runs: dict[str, list] = {"fp32": [], "bf16": []}
        for i in range(args.repeats):
            order = ("fp32", "bf16") if i % 2 == 0 else ("bf16", "fp32")
            for precision in order:
                runs[precision].append(_common.train_first_config(
                    model, train_file, Path(tmp) / f"{precision}{i}", steps=args.steps, seed=args.seed,
                    threads=args.threads, precision=precision))
                print(f"{precision} #{i + 1} done", flush=True)
    table = [[f"{precision} #{i + 1}", r.precision, r.steps, round(r.steady_tokens_per_second or 0),
              round(r.train_seconds or 0, 1), [round(x.loss, 3) for x in r.loss_curve[:3]]]
             for precision, results in runs.items() for i, r in enumerate(results)]
    print(f"\n## {args.base_model}: LoRA r64, batch 4, {args.steps} steps, {args.threads} threads, seed {args.seed}")
    print(_common.table(["run", "ran in", "steps", "steady tokens/s", "train loop s", "first losses"], table))
    fp32 = statistics.median(r.steady_tokens_per_second or 0 for r in runs["fp32"])
    bf16 = statistics.median(r.steady_tokens_per_second or 0 for r in runs["bf16"])
    print(f"\nbf16 / fp32 steady tokens/s (median of {args.repeats} each): {bf16 / fp32:.2f}x")


if __name__ == "__main__":
    main()
