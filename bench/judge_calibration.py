"""Judge calibration table: does a judge rank right replies above wrong ones, per task type?

    python bench/judge_calibration.py                       # the offline judge, the whole set
    python bench/judge_calibration.py --split held-out      # only the prompts it was not written against
    python bench/judge_calibration.py --judge openai:gpt-4.1-mini --limit 8   # an LLM judge, 8 replies a type

The offline judge is bound to each task type's own scorer, as a run binds it to its scenario's
(tools/judge_calibration.py builds the set; docs/judge.md has the numbers). An LLM judge costs one
request per reply (plus retries): `--limit` caps the replies per task type, drawn evenly over the kinds.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

from tunecrew.agents.judges import OfflineJudgeClient, make_judges
from tunecrew.agents.models import ProviderError, ProviderSpec
from tunecrew.scenarios.calibration import SCORERS
from tunecrew.tools.judge import OFFLINE_JUDGE, JudgePanel
from tunecrew.tools.judge_calibration import (
    CALIBRATION_TYPES,
    CalibrationItem,
    CalibrationReport,
    calibrate,
    calibration_items,
    calibration_table,
    kinds_table,
    spread,
)


async def run(judges: list[str], types: list[str], split: str, limit: int | None,
              bound: bool = True) -> CalibrationReport:
    reports = []
    for task_type in types:
        items: list[CalibrationItem] = calibration_items(task_type, split)  # type: ignore[arg-type]
        if limit:
            items = spread(items, limit)
        clients = ({OFFLINE_JUDGE: OfflineJudgeClient(SCORERS[task_type] if bound else None)} if not judges
                   else make_judges(ProviderSpec(), [], judges))
        panel = JudgePanel(clients)
        try:
            reports.append(await calibrate(panel.judges, items))
        finally:
            await panel.close()
    return CalibrationReport(cells=[c for r in reports for c in r.cells], kinds=[k for r in reports for k in r.kinds],
                             unparsed={k: sum(r.unparsed.get(k, 0) for r in reports) for r in reports
                                       for k in r.unparsed},
                             samples=sum(r.samples for r in reports))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--judge", action="append", default=[], metavar="PROVIDER[:MODEL]",
                        help="an LLM judge (repeatable); none: the offline judge bound to each type's scorer")
    parser.add_argument("--type", action="append", choices=CALIBRATION_TYPES, default=[],
                        help="calibration task type (repeatable); default: all")
    parser.add_argument("--split", choices=("all", "tune", "held-out"), default="all")
    parser.add_argument("--no-scorer", action="store_true",
                        help="the offline judge without the task type's scorer (answer support alone)")
    parser.add_argument("--limit", type=int, default=None, help="replies per task type (default: all 84)")
    args = parser.parse_args(argv)
    if args.limit is not None and args.limit < 4:
        parser.error("--limit must be at least 4: one reply of each kind")
    started = time.monotonic()
    try:
        report = asyncio.run(run(args.judge, args.type or list(CALIBRATION_TYPES), args.split, args.limit,
                                     bound=not args.no_scorer))
    except ProviderError as exc:
        print(f"judge_calibration: {exc}", file=sys.stderr)
        return 2
    print(calibration_table(report, args.split))
    print("\nMean (max) score per reply kind:\n")
    print(kinds_table(report, args.split))
    unparsed = {k: v for k, v in report.unparsed.items() if v}
    print(f"\n{report.samples} replies judged ({args.split} prompts) in {time.monotonic() - started:.1f} s"
          + (f"; unparsed verdicts: {unparsed}" if unparsed else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
