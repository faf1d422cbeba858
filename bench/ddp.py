"""Data-parallel training on one machine: one process with T threads vs T processes x 1 thread
(TrainJob.processes, `accelerate launch`, gloo on CPU), the same attempt side by side.

    python bench/ddp.py [--processes 2] [--steps 30] [--rows 240] [--batch 8] [--repeats 1] [--seed 0]
                        [--base-model tiny|smollm2-135m] [--small] [--no-single-thread]

Every run trains the same rows, seed and global batch (`--batch`; with N processes each device
takes batch/N, tools/train.py `per_process_batch`), so the loss curves must agree: the largest
relative gap between per-step losses is printed with the rates. Reported per run: tokens/s of the
training loop (TRL's `num_tokens`, summed over ranks, over rank 0's seconds in `trainer.train()`)
and the process wall time (imports, load, tokenising, training, save). A third run, one process
with one thread, shows how much of any gain is only the second thread's contention on a busy
machine. Runs alternate (ABBA over --repeats) so a drift in the machine's load hits each side;
`uptime` is printed before and after, since the rates mean nothing without it.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def run(model: str, train_file: Path, out: Path, args: argparse.Namespace, *, processes: int, threads: int) -> dict:
    from tunecrew.tools.contracts import TrainConfig
    from tunecrew.tools.train import TrainJob, run_training

    config = TrainConfig(method="lora", lora_rank=8, lora_alpha=16, train_embeddings=args.embeddings,
                         learning_rate=3e-3 if args.embeddings else 2e-4, lr_scheduler="constant", warmup_ratio=0.0,
                         batch_size=args.batch, max_steps=args.steps, max_seq_length=256, eval_fraction=0.0,
                         seed=args.seed, data={"dedup": False})
    job = TrainJob(config=config, base_model=model, train_file=str(train_file), output_dir=str(out),
                   threads=threads * processes, processes=processes)
    started = time.monotonic()
    result = run_training(job, timeout_s=1800)
    if result.status != "ok":
        raise SystemExit(f"{processes} process(es) x {threads} thread(s): {result.status}: {result.error}")
    return {"processes": processes, "threads": threads, "tokens_per_s": result.tokens_per_second,
            "train_s": result.train_seconds, "wall_s": time.monotonic() - started,
            "losses": [p.loss for p in result.loss_curve], "tokens": result.tokens, "steps": result.steps}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--processes", type=int, default=2, help="data-parallel processes, 1 thread each")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--rows", type=int, default=240)
    p.add_argument("--batch", type=int, default=8, help="the global batch (per device: batch / processes)")
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--base-model", default="tiny",
                   help="tiny (the demo's random-init model, embeddings trained) or a `tunecrew models` name / "
                        "folder such as smollm2-135m (pretrained: adapters only)")
    p.add_argument("--small", action="store_true", help="the tests' 0.1M-param model instead of the demo's tiny")
    p.add_argument("--no-single-thread", action="store_true", help="skip the 1 process x 1 thread reference")
    args = p.parse_args()

    from tunecrew.tools.rows import write_jsonl

    data = _common.task_rows(args.seed, args.rows)
    tmp = Path(tempfile.mkdtemp(prefix="tunecrew-bench-ddp-"))
    args.embeddings = args.base_model == "tiny"  # a random-init vocabulary must be trained; a pretrained one not
    if args.base_model == "tiny":
        texts = [m["content"] for r in data.train for m in r["messages"]]
        model = _common.tiny_model(tmp / "model", texts, small=args.small)
    else:
        from tunecrew.tools.base_models import resolve

        model = resolve(args.base_model)
    from tunecrew.tools.model_info import describe_base_model

    train_file = write_jsonl(data.train, tmp / "train.jsonl")
    n = args.processes
    print(f"machine: {_common.machine()}")
    print(f"model: {args.base_model}{' (small)' if args.small else ''} {describe_base_model(model).params / 1e6:.2f}M "
          f"params; rows={args.rows} steps={args.steps} global batch={args.batch} seed={args.seed}")
    print(f"load before: {uptime()}")

    single, multi, one = [], [], []
    for i in range(args.repeats):  # ABBA order
        pair = [lambda i=i: single.append(run(model, train_file, tmp / f"single{i}", args, processes=1, threads=n)),
                lambda i=i: multi.append(run(model, train_file, tmp / f"ddp{i}", args, processes=n, threads=1))]
        for go in pair if i % 2 == 0 else pair[::-1]:
            go()
    if not args.no_single_thread:
        one.append(run(model, train_file, tmp / "one", args, processes=1, threads=1))
    print(f"load after:  {uptime()}")

    rows = [[f"{r['processes']} process x {r['threads']} thread(s) #{k + 1}", r["steps"], r["tokens"],
             r["tokens_per_s"], r["train_s"], r["wall_s"]]
            for runs in (single, multi, one) for k, r in enumerate(runs)]
    print()
    print(_common.table(["run", "steps", "tokens", "tokens/s (train loop)", "train s", "process wall s"], rows))
    tps_single = statistics.median(r["tokens_per_s"] for r in single)
    tps_multi = statistics.median(r["tokens_per_s"] for r in multi)
    print(f"\n{n} processes x 1 thread / 1 process x {n} threads, tokens/s: {tps_multi / tps_single:.2f}x")
    wall_single, wall_multi = (statistics.median(r["wall_s"] for r in runs) for runs in (single, multi))
    print(f"end to end, 1 process wall / {n} processes wall: {wall_single / wall_multi:.2f}x")
    if one:
        print(f"{n} processes x 1 thread / 1 process x 1 thread, tokens/s: {tps_multi / one[0]['tokens_per_s']:.2f}x")
    reference = single[0]["losses"]
    print(f"loss curves vs 1 process x {n} threads, largest relative gap over the first 10 / all "
          f"{len(reference)} logged steps:")
    for name, runs in ((f"{n} processes x 1 thread", multi), ("1 process x 1 thread (float-order noise)", one)):
        for r in runs:
            gaps = [abs(a - b) / abs(b) for a, b in zip(r["losses"], reference, strict=True)]
            print(f"  {name}: {max(gaps[:10]):.1e} / {max(gaps):.1e}")


if __name__ == "__main__":
    main()
