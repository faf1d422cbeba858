"""Evaluation with and without stopping ruled-out replies, side by side.

    python bench/eval_cut.py                                   # the untuned SmolLM2 (the run's base-model score)
    python bench/eval_cut.py --adapter runs/<id>/attempts/2/adapter   # a tuned attempt

The task agent's scenario gives evaluation a test of a partial reply (`Scenario.reply_viable`,
`contract.could_still_parse`): a reply whose opening already breaks the contract is stopped there,
since it scores zero whatever follows. This scores the scenario's held-out split (128 prompts,
seed 0, 64 new tokens) twice in one process, cut and uncut, and prints both times, their ratio, the
replies cut, and whether every metric is equal (it must be).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    _common.add_model_arguments(parser)
    args = parser.parse_args(argv)

    from tunecrew.scenarios.task_agent.scenario import SCENARIO, build_data
    from tunecrew.tools.base_models import resolve
    from tunecrew.tools.evaluate import evaluate_with_replies, load_model

    print(f"machine: {_common.machine()}; load before {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    data = build_data(args.seed)
    loaded = load_model(resolve(args.base_model), args.adapter, threads=args.threads)
    system = SCENARIO.system_prompt(_common.task_agent_persona(), baseline=args.adapter is None)
    runs = {}
    for name, viable in (("cut", SCENARIO.reply_viable), ("full length", None)):
        started = time.monotonic()
        report, _ = evaluate_with_replies(loaded, data.heldout, SCENARIO.scorer, system_prompt=system,
                                          split=data.heldout_split, seed=args.seed,
                                          primary_metric=SCENARIO.primary_metric,
                                          max_new_tokens=SCENARIO.max_new_tokens, viable=viable)
        runs[name] = (time.monotonic() - started, report)
    rows = [[name, f"{seconds:.1f}", str(report.cut_replies), f"{report.metrics.get('format_compliance', 0):.3f}",
             f"{report.score:.3f}" if report.score is not None else "-"] for name, (seconds, report) in runs.items()]
    print(f"{args.adapter or args.base_model + ' (untuned, baseline prompt)'}: {len(data.heldout)} prompts of "
          f"{data.heldout_split}, {SCENARIO.max_new_tokens} new tokens, seed {args.seed}, threads {args.threads}")
    print(_common.table(["generation", "seconds", "replies cut", "format", SCENARIO.primary_metric], rows))
    (cut_s, cut), (full_s, full) = runs["cut"], runs["full length"]
    print(f"full / cut time: {full_s / cut_s:.2f}x; every metric equal: {cut.metrics == full.metrics}; "
          f"load after {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return {"ratio": full_s / cut_s, "equal": float(cut.metrics == full.metrics)}


if __name__ == "__main__":
    main()
