"""One lever, side by side: the crew's first config with and without a change, at equal steps.

    python bench/lever_ab.py --change data.synthetic_ratio=0.5            # the Planner's "generalize" lever
    python bench/lever_ab.py --change learning_rate=3e-4 --steps 26
    python bench/lever_ab.py --change lora_dropout=0.1 --change neftune_noise_alpha=5   # two arms, one control
    python bench/lever_ab.py --base-model tiny --n-train 120 --n-heldout 16 --steps 4   # smoke run
    python bench/lever_ab.py --change data.synthetic_ratio=0.5,data.synthetic_source=llm --rewrites FILE

`--rewrites FILE` stands in for an LLM provider on this offline machine: JSON lines
{"request": ..., "rewrites": [...]}, an LLM's answers to the crew's rewrite instruction
(`tools/recipes.PARAPHRASE_INSTRUCTION`) written beforehand, which the crew's own
`data.synthetic_source=llm` path then asks for by request (`RecordedRewrites`): sampling, the value
check, the filter and the ratio are the crew's, only the LLM's text is fixed.

Each arm is one attempt from the base model through the crew's own tools (propose_config's
validation, train, evaluate) on the task-agent scenario's data, split and seed: the offline
Tuner's first config for `--steps` optimizer steps, then the same with `--change` applied. Prints
both arms' scores (novel and trained phrasings, format), steps and tokens trained, so a lever the
Planner reaches for can be checked against doing nothing at the same cost in steps.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from tuning_quality import Trials, make_scenario

import _common


def parse_change(text: str) -> dict[str, object]:
    """`a.b=v,c=w` -> {"a.b": v, "c": w}, each value read as JSON when it parses (numbers, true)."""
    out: dict[str, object] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, _, raw = part.partition("=")
        try:
            out[key.strip()] = json.loads(raw)
        except ValueError:
            out[key.strip()] = raw.strip()
    return out


def instruction_text(choice: str, scenario_instruction: str) -> str:
    """`--instruction`: scenario, one-line, or a file's text (stripped)."""
    from tunecrew.scenarios.task_agent.contract import ONE_LINE_INSTRUCTION

    if choice == "scenario":
        return scenario_instruction
    if choice == "one-line":
        return ONE_LINE_INSTRUCTION
    path = Path(choice)
    if not path.is_file():
        raise SystemExit(f"--instruction {choice}: not scenario, one-line or a file; pass one of those")
    return path.read_text(encoding="utf-8").strip()


def recorded_rewrites(path: Path):
    """An AutoGen client that answers each rewrite request with the rewrites recorded for it, and
    counts the requests it had none for (the bench prints them: a miss trains fewer rewrites)."""
    from autogen_core.models import CreateResult, RequestUsage
    from autogen_ext.models.replay import ReplayChatCompletionClient

    class RecordedRewrites(ReplayChatCompletionClient):
        def __init__(self, by_request: dict[str, str]) -> None:
            super().__init__(["(unused)"])
            self.by_request, self.asked, self.missed = by_request, 0, 0

        async def create(self, messages, **kwargs) -> CreateResult:  # type: ignore[override]
            self.asked += 1
            text = self.by_request.get(str(messages[-1].content))
            self.missed += text is None
            return CreateResult(finish_reason="stop", content=text or "", cached=False,
                                usage=RequestUsage(prompt_tokens=0, completion_tokens=0))

    lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return RecordedRewrites({item["request"]: "\n".join(item["rewrites"]) for item in lines})


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--change", action="append", default=[],
                        help="config changes, e.g. data.synthetic_ratio=0.5; repeat for more arms beside one "
                             "first-config arm (none: the first-config arm alone)")
    parser.add_argument("--instruction", default="scenario", metavar="scenario|one-line|FILE",
                        help="the system prompt's instruction for every arm: the scenario's (default: the contract "
                             "with its tools spelled out), one-line (the contract's shape without its tools, what a "
                             "--data run trains with), or the text of FILE")
    parser.add_argument("--no-control", action="store_true",
                        help="leave out the first-config arm (cite that seed's first-config row from a run of the "
                             "same code: on a CPU with the same threads the arm is deterministic)")
    parser.add_argument("--steps", type=int, default=52, help="optimizer steps of each arm")
    parser.add_argument("--base-model", default="smollm2-135m")
    parser.add_argument("--n-train", type=int, default=960)
    parser.add_argument("--n-heldout", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rewrites", type=Path, help="an LLM's recorded rewrites (JSON lines) for "
                                                      "data.synthetic_source=llm on a machine with no LLM")
    args = parser.parse_args(argv)

    print(f"machine: {_common.machine()}; load before {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    out: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="lever-ab-") as tmp:
        scenario = make_scenario(args.n_train, args.n_heldout, runs=2)
        scenario = replace(scenario, instruction=instruction_text(args.instruction, scenario.instruction))
        trials = Trials(scenario, args.base_model, args.seed, Path(tmp), "lever", args.threads)
        rephraser = recorded_rewrites(args.rewrites) if args.rewrites else None
        trials.ctx.rephraser = rephraser
        plain = trials.crew_first.with_changes({"max_steps": args.steps})
        arms = {} if args.no_control else {"first config": plain}
        arms.update({f"+ {text}": plain.with_changes(parse_change(text)) for text in args.change})
        if not arms:
            parser.error("--no-control with no --change leaves no arm to run")
        rows = []
        for number, (name, config) in enumerate(arms.items(), start=1):
            started = time.monotonic()
            score, report = trials.score(config, number)
            result = trials.ctx.current.result
            if score is None or result is None:
                print(f"{name}: not scored: {report}")
                continue
            metrics = report.metrics
            out[name] = {k: round(v, 4) for k, v in metrics.items()}
            rows.append([name, str(result.steps), str(result.tokens), f"{time.monotonic() - started:.0f}",
                         f"{metrics.get('novel_phrasing/action_exact_match', 0):.3f}",
                         f"{metrics.get('trained_phrasing/action_exact_match', 0):.3f}",
                         f"{metrics.get('format_compliance', 0):.3f}"])
            for note in trials.ctx.current.notes:
                print(f"  {note}")
            print(f"{name} done", flush=True)
    n_novel = sum(1 for r in trials.ctx.data.heldout if r.get("group") == "novel_phrasing")
    print(f"{args.base_model}, {trials.ctx.data.heldout_split}, seed {args.seed}, threads {args.threads}, "
          f"instruction {args.instruction}: {scenario.instruction!r}; "
          f"load after {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(_common.table(["arm", "steps", "tokens", "train+eval s", "novel action EM", "trained action EM", "format"],
                        rows))
    print(f"n = {n_novel} novel-phrasing prompts: one prompt is {100 / max(1, n_novel):.1f} points")
    if rephraser is not None:
        print(f"recorded rewrites: asked for {rephraser.asked} requests, {rephraser.missed} not in {args.rewrites}")
    return out


if __name__ == "__main__":
    main()
