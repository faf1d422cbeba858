"""Misses by phrasing: which held-out phrasings a tuned task agent gets wrong.

    python bench/misses_by_phrasing.py --adapter runs/<run-id>/attempts/<n>/adapter
    python bench/misses_by_phrasing.py --adapter DIR --group trained_phrasing

Scores a kept adapter on the task-agent scenario's held-out split with the crew's own evaluation
(same split, seed, system prompt and generation budget as a run), then groups the chosen phrasing
group's prompts by the template that wrote them (scenarios/task_agent/data.py) and prints, per
template, how many of its prompts missed the action exact match and one miss with its reason. A
novel-phrasing score is an average over the templates the split happened to draw, so a few
templates the model never learns can hold the whole group down: this says which.
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from tuning_quality import Trials, make_scenario

import _common


def template_matchers(templates: dict[str, tuple[str, ...]]) -> list[tuple[str, re.Pattern[str]]]:
    """One regex per template, its slots matching any text; longer templates first, so the most
    specific one wins when two match (decorations wrap the prompt, hence `search`)."""
    out = []
    for template in sorted({t for ts in templates.values() for t in ts}, key=len, reverse=True):
        out.append((template, re.compile(re.sub(r"\\\{\w+\\\}", ".+?", re.escape(template)))))
    return out


def phrasing_of(prompt: str, matchers: list[tuple[str, re.Pattern[str]]]) -> str:
    return next((template for template, rx in matchers if rx.search(prompt)), "(no template matched)")


def main(argv: list[str] | None = None) -> dict[str, tuple[int, int]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--adapter", required=True, type=Path, help="a kept attempt's adapter folder")
    parser.add_argument("--base-model", default="smollm2-135m")
    parser.add_argument("--group", default="novel_phrasing", choices=["novel_phrasing", "trained_phrasing"])
    parser.add_argument("--n-train", type=int, default=960)
    parser.add_argument("--n-heldout", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--worst", type=int, default=3, help="how many of the most-missed templates to set apart")
    args = parser.parse_args(argv)

    from tunecrew.scenarios.task_agent.data import NOVEL_TEMPLATES, TRAIN_TEMPLATES

    print(f"machine: {_common.machine()}; load {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    with tempfile.TemporaryDirectory(prefix="misses-") as tmp:
        trials = Trials(make_scenario(args.n_train, args.n_heldout, runs=1), args.base_model, args.seed,
                        Path(tmp), "misses", args.threads)
        tk, ctx = trials.tk, trials.ctx
        report, replies = tk._score(str(args.adapter))
        rows = ctx.data.heldout
    matchers = template_matchers(NOVEL_TEMPLATES if args.group == "novel_phrasing" else TRAIN_TEMPLATES)
    scorer = ctx.scenario.scorer
    tally: dict[str, list[int]] = collections.defaultdict(lambda: [0, 0])
    example: dict[str, str] = {}
    for row, reply in zip(rows, replies, strict=True):
        if row.get("group") != args.group:
            continue
        prompt = row["messages"][0]["content"]
        template = phrasing_of(prompt, matchers)
        score = scorer(row["messages"][-1]["content"], reply)
        tally[template][1] += 1
        if score.values.get("action_exact_match", 0.0) < 1.0:
            tally[template][0] += 1
            example.setdefault(template, f"{prompt!r}: {score.reason}")
    missed = sum(m for m, _ in tally.values())
    total = sum(n for _, n in tally.values())
    print(f"{ctx.data.heldout_split}, group {args.group}: {total - missed}/{total} action exact match "
          f"(report: {report.metrics.get(f'{args.group}/action_exact_match', float('nan')):.3f}); "
          f"{len(tally)} templates drawn")
    ordered = sorted(tally.items(), key=lambda kv: (-kv[1][0], -kv[1][1], kv[0]))
    print(_common.table(["missed / prompts", "template", "a miss"],
                        [[f"{m}/{n}", t, example.get(t, "")] for t, (m, n) in ordered]))
    worst, rest = ordered[:args.worst], ordered[args.worst:]
    rest_n = sum(n for _, (_, n) in rest)
    print(f"the {len(worst)} most-missed templates hold {sum(m for _, (m, _) in worst)} of the {missed} misses; "
          f"the other {len(rest)} templates: {sum(n - m for _, (m, n) in rest)}/{rest_n} right")
    return {t: (m, n) for t, (m, n) in tally.items()}


if __name__ == "__main__":
    main()
