"""Free vs grammar-constrained decoding of the same model, side by side.

    python bench/constrained_ab.py                                          # the untuned SmolLM2 (baseline prompt)
    python bench/constrained_ab.py --adapter runs/<id>/attempts/1/adapter   # a tuned attempt

The task agent's scenario gives evaluation and the served agent its reply grammar
(`Scenario.reply_grammar`, scenarios/task_agent/grammar.py): only the contract's tags, tools,
argument names and value shapes can be decoded. This scores the scenario's held-out split (128
prompts, seed 0, 64 new tokens) twice in one process, free and constrained, and prints both rows
(format, action exact match overall and per phrasing group, seconds) and every reply whose score
changed, with what it was and what it became, then every reply still off-contract under the grammar.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common  # sets HF_HUB_OFFLINE and TOKENIZERS_PARALLELISM before transformers loads


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    _common.add_model_arguments(parser)
    parser.add_argument("--max-new-tokens", type=int, help="default: the scenario's generation budget")
    args = parser.parse_args(argv)

    from tunecrew.scenarios.task_agent.scenario import SCENARIO, build_data
    from tunecrew.tools.base_models import resolve
    from tunecrew.tools.evaluate import evaluate_with_replies, load_model

    assert SCENARIO.reply_grammar is not None and SCENARIO.scorer is not None
    print(f"machine: {_common.machine()}; load before {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    data = build_data(args.seed)
    loaded = load_model(resolve(args.base_model), args.adapter, threads=args.threads)
    system = SCENARIO.system_prompt(_common.task_agent_persona(), baseline=args.adapter is None)
    budget = args.max_new_tokens or SCENARIO.max_new_tokens
    runs = {}
    for name, grammar in (("free", None), ("constrained", SCENARIO.reply_grammar())):
        started = time.monotonic()
        report, replies = evaluate_with_replies(loaded, data.heldout, SCENARIO.scorer, system_prompt=system,
                                                split=data.heldout_split, seed=args.seed,
                                                primary_metric=SCENARIO.primary_metric,
                                                max_new_tokens=budget,
                                                viable=SCENARIO.reply_viable, grammar=grammar)
        runs[name] = (time.monotonic() - started, report, replies)

    def metric(report, group: str | None, name: str) -> str:
        metrics = report.groups[group].metrics if group else report.metrics
        return f"{metrics.get(name, 0):.3f}"

    groups = sorted(runs["free"][1].groups)
    rows = [[name, metric(r, None, "format_compliance"), metric(r, None, "action_exact_match"),
             *(metric(r, g, "action_exact_match") for g in groups), f"{seconds:.1f}"]
            for name, (seconds, r, _) in runs.items()]
    n = {g: runs["free"][1].groups[g].samples for g in groups}
    print(f"{args.adapter or args.base_model + ' (untuned, baseline prompt)'}: {len(data.heldout)} prompts of "
          f"{data.heldout_split}, {budget} new tokens, greedy, seed {args.seed}, "
          f"threads {args.threads}")
    print(_common.table(["decoding", "format", "action EM (all)",
                         *(f"action EM ({g}, n={n[g]})" for g in groups), "seconds"], rows))
    changed = 0
    for i, row in enumerate(data.heldout):
        expected = row["messages"][-1]["content"]
        before = SCENARIO.scorer(expected, runs["free"][2][i])
        after = SCENARIO.scorer(expected, runs["constrained"][2][i])
        if before.values != after.values:
            changed += 1
            print(f"- [{row.get('group', '')}] {row['messages'][-2]['content']!r}\n"
                  f"    free:        {runs['free'][2][i]!r} ({before.reason or 'right'})\n"
                  f"    constrained: {runs['constrained'][2][i]!r} ({after.reason or 'right'})")
    still = [(row, reply, SCENARIO.scorer(row["messages"][-1]["content"], reply).reason)
             for row, reply in zip(data.heldout, runs["constrained"][2], strict=True)]
    for row, reply, reason in still:
        if reason.startswith("invalid reply"):
            print(f"- off-contract under the grammar [{row.get('group', '')}] {row['messages'][-2]['content']!r}\n"
                  f"    {reply!r} ({reason})")
    print("what the served agent would do with each reply (the executor, one empty task store per decoding, "
          "one user per prompt):")
    print(_common.table(["decoding", "right", "a wrong write or read ran", "held back (value not in the message)",
                         "wrong final answer", "rejected (off-contract)"],
                        [[name, *map(str, _outcomes(data.heldout, run[2]))] for name, run in runs.items()]))
    (free_s, free, _), (held_s, held, _) = runs["free"], runs["constrained"]
    print(f"replies whose score changed: {changed}; primary {SCENARIO.primary_metric}: "
          f"{free.score:.3f} -> {held.score:.3f}; constrained / free time: {held_s / free_s:.2f}x; "
          f"load after {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return {"free": free.score or 0.0, "constrained": held.score or 0.0}


def _outcomes(rows: list[dict], replies: list[str]) -> tuple[int, int, int, int, int]:
    """Counts of: right, a wrong tool call ran, a write held back for confirmation, a wrong final
    answer, a reply rejected as off-contract. Right is the scorer's action exact match."""
    import tempfile

    from tunecrew.scenarios.task_agent.executor import execute
    from tunecrew.scenarios.task_agent.scenario import SCENARIO
    from tunecrew.scenarios.task_agent.store import TaskStore

    assert SCENARIO.scorer is not None
    counts = {"right": 0, "action": 0, "confirm": 0, "final": 0, "error": 0}
    with tempfile.TemporaryDirectory() as folder, TaskStore(folder) as store:
        for i, (row, reply) in enumerate(zip(rows, replies, strict=True)):
            message = row["messages"][-2]["content"]
            result = execute(reply, store, f"user{i}", message=message)
            right = SCENARIO.scorer(row["messages"][-1]["content"], reply).values.get("action_exact_match") == 1.0
            counts["right" if right else result.kind] += 1
    return counts["right"], counts["action"], counts["confirm"], counts["final"], counts["error"]


if __name__ == "__main__":
    main()
