"""Evaluation speed: batched greedy generation (what the evaluate tool does) vs a per-sample
`generate` loop, on the same prompts, same model, same run.

    python bench/batched_generation.py [--prompts 64] [--max-new-tokens 64] [--batch 32] [--threads 1]

Both sides call `tunecrew.tools.evaluate.generate`, the batched side with `batch_size=--batch`
(left padding, KV cache, longest first), the per-sample side once per prompt with batch_size=1,
which is the plain `for prompt in prompts: model.generate(...)` loop. Replies are compared: greedy
decoding must give the same text either way (a mismatch count is printed).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--prompts", type=int, default=64)
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--base-model", default="smollm2-135m",
                   help="a `tunecrew models` name (default smollm2-135m), tiny, or a model folder")
    args = p.parse_args()

    import torch

    from tunecrew.scenarios.task_agent.scenario import SCENARIO
    from tunecrew.tools.evaluate import generate, load_model, prompt_of

    data = _common.task_rows(args.seed, n_train=480, n_heldout=args.prompts)
    tmp = Path(tempfile.mkdtemp(prefix="tunecrew-bench-gen-"))
    if args.base_model == "tiny":
        texts = [m["content"] for r in data.train for m in r["messages"]] + [SCENARIO.instruction]
        model = _common.tiny_model(tmp / "model", texts)
        label = "tiny llama (random init: every reply runs to max_new_tokens)"
    else:
        from tunecrew.tools.base_models import resolve

        model, label = resolve(args.base_model), f"{args.base_model} (pretrained, untuned: replies run long)"
    loaded = load_model(model, threads=args.threads)
    torch.manual_seed(args.seed)
    system = "You are a task-management assistant. " + SCENARIO.instruction
    prompts = [prompt_of(r, system) for r in data.heldout]
    params = sum(p.numel() for p in loaded.model.parameters())
    print(f"machine: {_common.machine()}")
    print(f"model: {label}, {params / 1e6:.2f}M params; "
          f"prompts={len(prompts)} max_new_tokens={args.max_new_tokens} threads={args.threads} seed={args.seed}")

    generate(loaded, prompts[:2], max_new_tokens=4, batch_size=2)  # warm-up: first-call allocations
    t0 = time.monotonic()
    batched = generate(loaded, prompts, max_new_tokens=args.max_new_tokens, batch_size=args.batch)
    t_batched = time.monotonic() - t0
    t0 = time.monotonic()
    single = [generate(loaded, [prompt], max_new_tokens=args.max_new_tokens, batch_size=1)[0] for prompt in prompts]
    t_single = time.monotonic() - t0

    tok = loaded.tokenizer
    n_tokens = sum(len(tok(r, add_special_tokens=False)["input_ids"]) for r in batched)
    mismatches = sum(a != b for a, b in zip(batched, single, strict=True))
    print(_common.table(["mode", "seconds", "prompts/s", "generated tokens/s"], [
        [f"batched (batch_size={args.batch})", t_batched, len(prompts) / t_batched, n_tokens / t_batched],
        ["per-sample loop", t_single, len(prompts) / t_single, n_tokens / t_single],
    ]))
    print(f"replies that differ between the two: {mismatches} of {len(prompts)}")
    print(f"batched speed-up: per-sample seconds / batched seconds = {t_single / t_batched:.2f}x (target >= 5x)")


if __name__ == "__main__":
    main()
