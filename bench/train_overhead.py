"""Training throughput: tunecrew's train tool vs a plain TRL `SFTTrainer` script, and packing on
variable-length data vs no packing. Everything side by side in one run.

    python bench/train_overhead.py [--rows 240] [--steps 30] [--repeats 2] [--threads 1] [--seed 0]

1. Overhead. The same tiny model, rows and hyperparameters are trained (a) by the train tool
   (`run_training`: a subprocess, JSON job in, progress events out, result.json) and (b) by a
   plain ~40-line TRL script run as its own process (no tunecrew import), with the tool's
   hyperparameters and bf16=False, the tool at precision=fp32 and with TRL's own LM head
   (TUNECREW_SCORE_ALL_POSITIONS=1): like for like. Shown apart, one run each: TRL's defaults, which
   autocast to bf16 even on a CPU, and the tool's defaults (precision=auto, the LM head on the
   labelled positions only: tools/lm_head.py). Reported: tokens/s of
   the training loop (TRL's `num_tokens` / seconds in `trainer.train()`), and the end-to-end wall
   time of the whole process (imports, model load, training, save). Runs alternate (a, b, a, b, ...)
   so load from other jobs on a shared machine hits both; the median is reported.
2. Packing. Variable-length rows (each reply followed by a long-tailed number of further replies)
   are trained for one epoch by the train tool with packing=False and packing=True. Effective
   tokens/s = non-padding tokens trained / seconds in `trainer.train()` (TRL counts
   `attention_mask.sum()` unpacked and the packed length packed: both exclude padding).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common

PLAIN_TRL = r'''
import json, sys, time
started = time.monotonic()
import torch
from datasets import Dataset
from peft import LoraConfig
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import SFTConfig, SFTTrainer

a = json.loads(open(sys.argv[1]).read())
torch.set_num_threads(a["threads"])
rows = [json.loads(l) for l in open(a["train_file"])]
rows = [{"prompt": [{"role": "system", "content": a["system"]}] + r["messages"][:-1],
         "completion": [r["messages"][-1]]} for r in rows]
tok = AutoTokenizer.from_pretrained(a["model"])
model = AutoModelForCausalLM.from_pretrained(a["model"], dtype=torch.float32)
ds = Dataset.from_list(rows).shuffle(seed=0)
args = SFTConfig(output_dir=a["out"] + "/ckpt", per_device_train_batch_size=a["batch"], learning_rate=a["lr"],
                 lr_scheduler_type="constant", warmup_steps=0.0, max_steps=a["steps"], max_length=a["seq"],
                 packing=a["packing"], completion_only_loss=True, seed=0, data_seed=0,
                 logging_steps=a["log_every"], logging_nan_inf_filter=False, save_strategy="no", report_to="none",
                 use_cpu=True, gradient_checkpointing=False, dataloader_num_workers=0, disable_tqdm=True,
                 **({} if a["bf16"] is None else {"bf16": a["bf16"]}))
peft = LoraConfig(r=a["rank"], lora_alpha=2 * a["rank"], target_modules="all-linear",
                  modules_to_save=["embed_tokens", "lm_head"] if a["embeddings"] else None, task_type="CAUSAL_LM")
trainer = SFTTrainer(model=model, args=args, train_dataset=ds, processing_class=tok, peft_config=peft)
t0 = time.monotonic()
trainer.train()
train_s = time.monotonic() - t0
tokens = [h["num_tokens"] for h in trainer.state.log_history if "num_tokens" in h][-1]
trainer.save_model(a["out"] + "/adapter")
print(json.dumps({"tokens": tokens, "train_s": train_s, "tokens_per_s": tokens / train_s,
                  "steps": trainer.state.global_step}))
'''


# Like for like with the plain script: TRL's own LM head, which scores every position off CUDA. The
# tool's default scores only the labelled ones on a CPU (tools/lm_head.py), shown apart.
TRL_HEAD = {"TUNECREW_SCORE_ALL_POSITIONS": "1"}


def tool_run(model: str, train_file: Path, out: Path, args, *, packing: bool, steps: int, epochs: float = 1.0,
             seq: int, precision: str = "fp32", env: dict[str, str] | None = None) -> dict:
    from tunecrew.tools.contracts import TrainConfig
    from tunecrew.tools.train import TrainJob, run_training

    config = TrainConfig(method="lora", lora_rank=8, lora_alpha=16, train_embeddings=args.embeddings,
                         learning_rate=3e-3, lr_scheduler="constant", warmup_ratio=0.0, batch_size=args.batch,
                         max_steps=steps, epochs=epochs, max_seq_length=seq, packing=packing, eval_fraction=0.0, seed=0,
                         data={"dedup": False}, precision=precision)  # fp32: the plain script's bf16=False
    job = TrainJob(config=config, base_model=model, train_file=str(train_file), output_dir=str(out),
                   system_prompt=SYSTEM, threads=args.threads)
    t0 = time.monotonic()
    with _common.environ(env):
        result = run_training(job, timeout_s=1200)
    wall = time.monotonic() - t0
    if result.status != "ok":
        raise SystemExit(f"train tool failed: {result.status}: {result.error}")
    return {"tokens_per_s": result.tokens_per_second, "wall_s": wall, "steps": result.steps,
            "train_s": None}


def plain_run(model: str, train_file: Path, out: Path, args, *, steps: int, seq: int, script: Path,
              bf16: bool | None = False) -> dict:
    log_every = max(1, steps // 40)  # what the train tool logs at
    spec = dict(model=model, train_file=str(train_file), out=str(out), threads=args.threads, batch=args.batch,
                lr=3e-3, steps=steps, seq=seq, packing=False, rank=8, log_every=log_every, system=SYSTEM,
                bf16=bf16, embeddings=args.embeddings)
    spec_file = out.with_suffix(".json")
    out.mkdir(parents=True, exist_ok=True)
    spec_file.write_text(json.dumps(spec))
    env = {**__import__("os").environ, "OMP_NUM_THREADS": str(args.threads), "TOKENIZERS_PARALLELISM": "false",
           "PYTHONUNBUFFERED": "1"}
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, str(script), str(spec_file)], capture_output=True, text=True, env=env,
                          timeout=1200)
    wall = time.monotonic() - t0
    if proc.returncode != 0:
        raise SystemExit(f"plain TRL script failed:\n{proc.stderr[-3000:]}")
    line = [out for out in proc.stdout.splitlines() if out.startswith("{")][-1]
    return {**json.loads(line), "wall_s": wall}


SYSTEM = ("You are a task-management assistant. Answer <analysis>…</analysis> then <action>…</action> "
          "or <final>…</final>.")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--rows", type=int, default=240)
    p.add_argument("--steps", type=int, default=30, help="optimizer steps per overhead run")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--small", action="store_true", help="the tests' 0.1M-param model instead of the demo's")
    p.add_argument("--base-model", default="tiny",
                   help="tiny (the demo's random-init model, embeddings trained) or a `tunecrew models` name / "
                        "folder such as smollm2-135m (pretrained: adapters only)")
    p.add_argument("--skip-packing", action="store_true")
    p.add_argument("--skip-overhead", action="store_true")
    args = p.parse_args()

    from tunecrew.tools.rows import write_jsonl

    data = _common.task_rows(args.seed, args.rows)
    var_rows = _common.variable_rows(data.train, args.seed)
    tmp = Path(tempfile.mkdtemp(prefix="tunecrew-bench-train-"))
    texts = [m["content"] for r in data.train for m in r["messages"]] + [SYSTEM]
    args.embeddings = args.base_model == "tiny"  # a random-init vocabulary must be trained; a pretrained one not
    if args.base_model == "tiny":
        model = _common.tiny_model(tmp / "model", texts, small=args.small)
    else:
        from tunecrew.tools.base_models import resolve

        model = resolve(args.base_model)
    from tunecrew.tools.model_info import describe_base_model

    info = describe_base_model(model)
    print(f"machine: {_common.machine()}")
    print(f"model: {args.base_model} {info.params / 1e6:.2f}M params; rows={args.rows} seed={args.seed} "
          f"batch={args.batch} threads={args.threads}")

    if not args.skip_overhead:
        train_file = write_jsonl(data.train, tmp / "train.jsonl")
        script = tmp / "plain_trl.py"
        script.write_text(PLAIN_TRL)
        tool, plain = [], []
        for i in range(args.repeats):  # ABBA order: a drift in the machine's load hits both sides alike
            runs = [lambda i=i: tool.append(tool_run(model, train_file, tmp / f"tool{i}", args, packing=False,
                                                     steps=args.steps, seq=256, env=TRL_HEAD)),
                    lambda i=i: plain.append(plain_run(model, train_file, tmp / f"plain{i}", args, steps=args.steps,
                                                       seq=256, script=script))]
            for run in runs if i % 2 == 0 else runs[::-1]:
                run()
        # TRL's SFTConfig defaults to bf16=True, also on a CPU. The train tool's precision=auto turns it on
        # only where the device runs it fast (CUDA with bf16, CPUs with AMX or AVX512-BF16;
        # bench/precision.py). Shown once, apart.
        default = plain_run(model, train_file, tmp / "plain_default", args, steps=args.steps, seq=256,
                            script=script, bf16=None)
        # What a user of the tool gets: its own defaults (precision=auto, the LM head on labelled positions).
        own = tool_run(model, train_file, tmp / "tool_default", args, packing=False, steps=args.steps, seq=256,
                       precision="auto")
        rows = [[f"train tool, TRL's LM head, fp32 #{i + 1}", t["steps"], t["tokens_per_s"], t["wall_s"]]
                for i, t in enumerate(tool)]
        rows += [[f"plain TRL bf16=False #{i + 1}", t["steps"], t["tokens_per_s"], t["wall_s"]]
                 for i, t in enumerate(plain)]
        rows += [["plain TRL, SFTConfig defaults (bf16 autocast on CPU)", default["steps"], default["tokens_per_s"],
                  default["wall_s"]],
                 ["train tool, its defaults (precision=auto, labelled positions)", own["steps"], own["tokens_per_s"],
                  own["wall_s"]]]
        print(f"\n## overhead ({args.steps} steps, max_seq_length=256, LoRA r=8"
              f"{' + embeddings' if args.embeddings else ''})")
        print(_common.table(["run", "steps", "tokens/s (train loop)", "process wall s"], rows))
        tps_t = statistics.median(t["tokens_per_s"] for t in tool)
        tps_p = statistics.median(t["tokens_per_s"] for t in plain)
        wall_t = statistics.median(t["wall_s"] for t in tool)
        wall_p = statistics.median(t["wall_s"] for t in plain)
        print(f"overhead, training loop: plain tokens/s / tool tokens/s = {tps_p / tps_t:.3f}x (target <= 1.05x)")
        print(f"overhead, end to end:    tool wall / plain wall         = {wall_t / wall_p:.3f}x")
        print(f"plain TRL with its defaults vs the tool: tool tokens/s / default tokens/s = "
              f"{tps_t / default['tokens_per_s']:.3f}x")
        print(f"the tool with its defaults vs plain TRL bf16=False: tool tokens/s / plain tokens/s = "
              f"{own['tokens_per_s'] / tps_p:.3f}x")

    if not args.skip_packing:
        var_file = write_jsonl(var_rows, tmp / "variable.jsonl")
        lengths = sorted(len(" ".join(m["content"] for m in r["messages"]).split()) for r in var_rows)
        print(f"\n## packing (variable-length rows: words per row p50={lengths[len(lengths) // 2]} "
              f"p95={lengths[int(len(lengths) * .95)]} max={lengths[-1]}; 1 epoch, max_seq_length=512)")
        results = {}
        for packing in (False, True):
            results[packing] = tool_run(model, var_file, tmp / f"pack{int(packing)}", args, packing=packing,
                                        steps=-1, epochs=1.0, seq=512)
        print(_common.table(["packing", "steps", "effective tokens/s", "process wall s"],
                            [[str(k), v["steps"], v["tokens_per_s"], v["wall_s"]] for k, v in results.items()]))
        print(f"packing speed-up: packed effective tokens/s / unpacked = "
              f"{results[True]['tokens_per_s'] / results[False]['tokens_per_s']:.3f}x (target >= 1.5x)")


if __name__ == "__main__":
    main()
