"""Steps to target: how far the task agent's novel-phrasing score gets with more training, attempt by attempt.

    python bench/steps_to_target.py                                   # SmolLM2-135M, 13,13,26,52,52 steps
    python bench/steps_to_target.py --segments 13,13 --threads 2 --out steps.json
    python bench/steps_to_target.py --segments 26,26 --continue-change learning_rate=5e-4 --score last
    python bench/steps_to_target.py --segments 26,26 --first-change lr_scheduler=constant_with_warmup --score last
    python bench/steps_to_target.py --base-model tiny --segments 4,4 --n-train 120 --n-heldout 16   # smoke run

The 10-minute demo fits two attempts of ~13 optimizer steps on a 2-core CPU. This bench asks what the
target (novel-phrasing action exact match >= 0.90) would take: it trains the crew's own first config
(the offline Tuner's: the policy's LoRA rank, learning rate, batch and sequence length for this model)
as a chain of attempts of the given lengths, each continuing the previous adapter on the next rows of
the data (as the crew's continued attempts do), and scores every link on the scenario's held-out split
with the crew's own evaluation. Printed per link: optimizer steps from the base model, training seconds
and tokens/s, evaluation seconds, and the scores (novel and trained phrasings, format), beside the
base model's on the same rows. Nothing is changed between links: the curve is what more steps alone
buy, the crew's other levers (learning rate, rank, data recipes) aside. `--first-change` and
`--continue-change` apply config changes to the first link and to every continued one (how a chain's
learning-rate schedule should be split across attempts), and
`--score last` evaluates only the chain's end (equal-steps comparisons need no middle scores).

The wall-clock minutes a score would cost a crew run are the training and evaluation seconds summed
up to it, plus a run's fixed start-up (model, profile, rate probe, base evaluation), printed once.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from tuning_quality import Trials, make_scenario

import _common


@dataclass
class Link:
    """One attempt of the chain, scored."""

    attempt: int
    steps: int  # optimizer steps in this attempt
    steps_from_base: int
    rows_window: tuple[int, int]  # [start, end) of the seeded shuffle this attempt drew from
    train_seconds: float
    wall_seconds: float  # the training subprocess, start-up included
    tokens_per_second: float | None
    eval_seconds: float
    metrics: dict[str, float]


def main(argv: list[str] | None = None) -> list[Link]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base-model", default="smollm2-135m", help="a `tunecrew models` name, folder or hub id")
    parser.add_argument("--segments", default="13,13,26,52,52", help="optimizer steps of each attempt in the chain")
    parser.add_argument("--n-train", type=int, default=960, help="training rows (the scenario's: 960)")
    parser.add_argument("--n-heldout", type=int, default=128, help="held-out rows (the scenario's: 128)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, help="also write the links as JSON here")
    parser.add_argument("--keep", type=Path, help="keep each attempt's folder (adapter, result.json) here")
    parser.add_argument("--continue-from", type=Path, metavar="ATTEMPT_DIR",
                        help="extend a kept chain: start from this attempt folder's adapter and rows (its "
                        "result.json), with --steps-before steps behind it; the base model is not re-scored")
    parser.add_argument("--steps-before", type=int, default=0, help="with --continue-from: its steps from base")
    parser.add_argument("--first-change", default="", metavar="CHANGES",
                        help="config changes for the first link only, e.g. lr_scheduler=constant_with_warmup")
    parser.add_argument("--continue-change", default="", metavar="CHANGES",
                        help="config changes for every continued link, e.g. learning_rate=5e-4,warmup_ratio=0")
    parser.add_argument("--score", choices=("each", "last"), default="each",
                        help="evaluate every link (the curve) or the chain's end only")
    args = parser.parse_args(argv)
    from lever_ab import parse_change
    first_change, continue_change = parse_change(args.first_change), parse_change(args.continue_change)
    segments = [int(s) for s in args.segments.split(",") if s.strip()]
    if not segments or min(segments) < 1:
        parser.error("--segments: comma-separated step counts, each at least 1")

    from tunecrew.tools.contracts import TrainResult
    from tunecrew.tools.train import run_training

    print(f"machine: {_common.machine()}")
    print(f"load before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    with tempfile.TemporaryDirectory(prefix="steps-to-target-") as tmp:
        started = time.monotonic()
        base_model = args.base_model  # `tiny` too: the run builds it from the data, as `tunecrew run` does
        scenario = make_scenario(args.n_train, args.n_heldout, runs=len(segments))
        trials = Trials(scenario, base_model, args.seed, Path(tmp), "chain", args.threads)
        tk, ctx = trials.tk, trials.ctx
        t0 = time.monotonic()
        base_report = None if args.continue_from else tk._score(None, ctx.system_prompt)[0]
        base_eval_s = time.monotonic() - t0
        setup_s = time.monotonic() - started
        first = trials.crew_first
        print(f"{base_model}: {len(ctx.data.train)} train rows, {len(ctx.data.heldout)} held-out "
              f"({ctx.data.heldout_split}), seed {args.seed}, threads {args.threads}")
        print(f"config (the crew's first): LoRA r{first.lora_rank} lr {first.learning_rate:g} batch "
              f"{first.effective_batch} seq {first.max_seq_length} {first.lr_scheduler}, embeddings "
              f"{'on' if first.train_embeddings else 'off'}; each attempt continues the previous adapter")
        links: list[Link] = []
        adapter: str | None = None
        offset, done = 0, 0
        if base_report is not None:
            print(f"base model: {_fmt(base_report.metrics)} ({base_eval_s:.0f} s to evaluate); set-up with the "
                  f"base evaluation {setup_s:.0f} s")
        else:
            kept = TrainResult.model_validate_json((args.continue_from / "result.json").read_text())
            adapter, offset, done = str(args.continue_from / "adapter"), kept.data_end or 0, args.steps_before
            print(f"continuing {args.continue_from}: {done} steps from base, rows from {offset}; "
                  f"set-up {setup_s:.0f} s")
        for number, steps in enumerate(segments, start=1):
            config = first.with_changes({"max_steps": steps, "eval_fraction": 0.0,
                                         "continue_training": adapter is not None})
            config = config.with_changes(continue_change if adapter is not None else first_change)
            job = tk._job(config, ctx.run.train_data, Path(tmp) / f"attempt{number}", max_wall_seconds=None,
                          init_adapter=adapter, data_offset=offset)
            result = run_training(job)
            if result.status != "ok" or not result.adapter_path:
                print(f"attempt {number}: {result.status}: {result.error}")
                break
            done += result.steps
            end = result.data_end or offset
            scored = args.score == "each" or number == len(segments)
            t0 = time.monotonic()
            metrics = tk._score(result.adapter_path)[0].metrics if scored else {}
            eval_s = time.monotonic() - t0
            link = Link(number, result.steps, done, (offset, end), round(result.train_seconds or 0.0, 1),
                        round(result.wall_seconds or 0.0, 1),
                        round(result.tokens_per_second, 1) if result.tokens_per_second else None, round(eval_s, 1),
                        {k: round(v, 4) for k, v in metrics.items()})
            links.append(link)
            print(f"attempt {number}: {result.steps} steps ({done} from base), rows [{offset}, {end}), lr "
                  f"{config.learning_rate:g} {config.lr_scheduler}, train {link.train_seconds:.0f} s at "
                  f"{link.tokens_per_second} tokens/s"
                  + (f", eval {eval_s:.0f} s: {_fmt(metrics)}" if scored else "; not scored"), flush=True)
            adapter, offset = result.adapter_path, end
            if args.keep:
                shutil.copytree(Path(tmp) / f"attempt{number}", args.keep / f"attempt{number}", dirs_exist_ok=True)
                adapter = str(args.keep / f"attempt{number}" / "adapter")
        print(f"load after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}; wall {time.monotonic() - started:.0f} s")
        rows = [[str(k.attempt), str(k.steps_from_base),
                 *(f"{k.metrics[m]:.3f}" if m in k.metrics else "–" for m in
                   ("novel_phrasing/action_exact_match", "trained_phrasing/action_exact_match", "format_compliance")),
                 f"{sum(x.wall_seconds + x.eval_seconds for x in links[:i + 1]) / 60:.1f}"]
                for i, k in enumerate(links)]
        print(_common.table(["attempt", "steps from base", "novel action EM", "trained action EM", "format",
                             "train+eval min (cumulative)"], rows))
        n_novel = sum(1 for r in ctx.data.heldout if r.get("group") == "novel_phrasing")
        print(f"n = {n_novel} novel-phrasing prompts of {len(ctx.data.heldout)} held-out; one prompt is "
              f"{100 / max(1, n_novel):.1f} points")
        if args.out:
            args.out.write_text(json.dumps({"base": base_report.metrics if base_report else None,
                                            "base_eval_seconds": base_eval_s,
                                            "setup_seconds": setup_s, "links": [asdict(k) for k in links]},
                                           indent=2))
        return links


def _fmt(metrics: dict[str, float]) -> str:
    keys = ("novel_phrasing/action_exact_match", "trained_phrasing/action_exact_match", "format_compliance")
    names = ("novel", "trained", "format")
    return ", ".join(f"{n} {metrics[k]:.3f}" for n, k in zip(names, keys, strict=True) if k in metrics)


if __name__ == "__main__":
    main()
