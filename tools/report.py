"""The run report a person reads: report.md, report.html, loss_curves.png, scores.png (score per
attempt) and scores_over_time.png (score against minutes since the run started).

The document is built once as a list of small blocks (heading, paragraph, table, list, image,
code) and rendered twice, so the Markdown and HTML versions cannot drift apart and no Markdown
library is needed. A score is never printed without the split, sample count and seed it was
measured on: a number without them cannot be compared with anything.

The HTML page is laid out for a laptop: at 1,400 px no table needs a horizontal scroll (cells wrap,
numbers do not), and the base model's and the best attempt's replies to the same held-out prompts
stand side by side (tests/test_report_browser.py renders it in headless Chromium to check).

Plots use `matplotlib.figure.Figure` directly with the Agg canvas: no pyplot, no global backend
switch, so this works headless and does not disturb anyone else's matplotlib state.
"""

from __future__ import annotations

import datetime as dt
import html
import math
import re
from dataclasses import dataclass, field
from itertools import accumulate, pairwise
from pathlib import Path
from typing import Any

from tunecrew.tools.contracts import (
    AttemptRecord,
    EvalReport,
    Failure,
    JudgeReport,
    RubricScores,
    RunSpec,
    TrainConfig,
)
from tunecrew.tools.diagnose import best_attempt
from tunecrew.tools.run_dir import RunDir

MAX_FAILURES_SHOWN = 3
MAX_TEXT = 300  # characters of a failure's prompt/output shown
MAX_REPLY = 700  # characters of a reply shown side by side: the evaluation keeps 500 of each reply
SCORES_OVER_TIME = "scores_over_time.png"
CLOCK_SLACK_S = 60.0  # timestamps are whole seconds and durations are rounded: a minute of give


# --------------------------------------------------------------------------- when each score was known


@dataclass(frozen=True)
class Timeline:
    """Minutes from the run's start to each attempt's end, and what they count (the plot's axis label)."""

    minutes: list[float]
    basis: str


WALL_CLOCK = "minutes since the run started (wall clock)"
WORK_CLOCK = "minutes of training + evaluation (cumulative)"


def _instant(stamp: str) -> dt.datetime | None:
    try:
        t = dt.datetime.fromisoformat(stamp)
    except ValueError:
        return None
    return t if t.tzinfo is not None else t.replace(tzinfo=dt.timezone.utc)  # utc_now writes UTC


def attempt_minutes(spec: RunSpec, records: list[AttemptRecord]) -> Timeline:
    """When each attempt's score was known, in minutes from the run's start.

    The wall clock comes from the timestamps: run.json's created_at and each record's, which is set when
    the attempt closes (after training, evaluation and the decision). They are used only when they are
    consistent with the records: attempts run one after another, so attempt k cannot close before the
    training and evaluation seconds of attempts 1..k have passed. Otherwise (records made elsewhere, a
    clock change) the cumulative training + evaluation seconds stand in; they leave out the agents' time.
    """
    work = list(accumulate(r.result.wall_seconds + (r.eval.wall_seconds if r.eval is not None else 0.0)
                           for r in records))
    start = _instant(spec.created_at)
    stamps = [_instant(r.created_at) for r in records]
    if start is not None and records and all(s is not None for s in stamps):
        elapsed = [(s - start).total_seconds() for s in stamps if s is not None]
        in_order = all(a <= b for a, b in pairwise(elapsed))
        if in_order and elapsed[-1] > 0 and all(e >= max(0.0, w - CLOCK_SLACK_S)
                                                 for e, w in zip(elapsed, work, strict=True)):
            return Timeline([e / 60 for e in elapsed], WALL_CLOCK)
    return Timeline([w / 60 for w in work], WORK_CLOCK)
DPI = 110


# --------------------------------------------------------------------------- document blocks


@dataclass(frozen=True)
class Heading:
    level: int
    text: str


@dataclass(frozen=True)
class Para:
    text: str


@dataclass(frozen=True)
class Table:
    headers: list[str]
    rows: list[list[str]]
    # Column index -> share of the page's width (HTML only): prose columns get room so that they are not
    # squeezed into a tall thin strip beside columns of short numbers.
    widths: dict[int, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Bullets:
    items: list[str]


@dataclass(frozen=True)
class Image:
    alt: str
    src: str


@dataclass(frozen=True)
class Figures:
    """Images that sit side by side where the page is wide enough (one a line in Markdown)."""

    images: list[Image]


@dataclass(frozen=True)
class Code:
    text: str


@dataclass(frozen=True)
class Answer:
    text: str
    verdict: str  # "passed", or why the scorer failed it: a reader should not have to judge the reply alone


@dataclass(frozen=True)
class Exchange:
    """One held-out prompt, its expected reply and two models' replies to it."""

    prompt: str
    expected: str
    left: Answer
    right: Answer


@dataclass(frozen=True)
class SideBySide:
    left: str  # who answered on the left, e.g. "base model"
    right: str
    exchanges: list[Exchange]


Block = Heading | Para | Table | Bullets | Image | Figures | Code | SideBySide


# --------------------------------------------------------------------------- entry point


def write_report(run_dir: Path, spec: RunSpec, records: list[AttemptRecord],
                 baseline: EvalReport | None = None) -> Path:
    """Write report.md (returned), report.html and the three PNGs into `run_dir`. Without `baseline`,
    the run folder's baseline_eval.json is read, if there is one."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    if baseline is None:
        baseline = _read_baseline(run_dir)
    base_score = baseline.score if baseline is not None else None
    timeline = attempt_minutes(spec, records)
    plot_losses(records, run_dir / "loss_curves.png")
    plot_scores(records, spec.target, run_dir / "scores.png", base_score=base_score)
    plot_scores_over_time(records, spec.target, timeline, run_dir / SCORES_OVER_TIME, base_score=base_score)
    blocks = build_blocks(spec, records, timeline)
    if baseline is not None:
        at = next(i for i, b in enumerate(blocks) if isinstance(b, Heading) and b.text == "Loss curves")
        blocks[at:at] = base_vs_attempts(baseline, records)
    logs = training_logs(run_dir)
    if logs is not None:  # under the summary: where to look while and after it trains
        at = next(i for i, b in enumerate(blocks) if isinstance(b, Heading) and b.text == "Attempts")
        blocks.insert(at, logs)
    judged = _judge_reports(run_dir, records)
    if judged:
        at = next(i for i, b in enumerate(blocks) if isinstance(b, Heading) and b.text == "Loss curves")
        blocks[at:at] = judge_blocks(judged)
    md_path = RunDir(run_dir).report
    md_path.write_text(render_markdown(blocks), encoding="utf-8")
    (run_dir / "report.html").write_text(render_html(blocks, title=f"tunecrew run {spec.run_id}"), encoding="utf-8")
    return md_path


def _read_baseline(run_dir: Path) -> EvalReport | None:
    try:
        return EvalReport.model_validate_json(RunDir(run_dir).baseline.read_text())
    except (OSError, ValueError):
        return None  # not scored yet (or unreadable): the report leaves the base model out


def training_logs(run_dir: Path) -> Para | None:
    """Where the attempts' TensorBoard logs are (tools/train_worker.py writes attempts/<n>/tb), if any."""
    from tunecrew.tools.train_worker import TB_DIR

    attempts = Path(run_dir) / "attempts"
    if not any(attempts.glob(f"*/{TB_DIR}")):
        return None
    return Para(f"Training logs (loss, learning rate, grad norm per step; one TensorBoard run per attempt): "
                f"`tensorboard --logdir {attempts}`")


# --------------------------------------------------------------------------- formatting helpers


def _num(x: float | None, fmt: str = ".3f") -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-" if x is None else str(x)
    return format(x, fmt)


def _where(report: EvalReport, samples: int | None = None) -> str:
    """The provenance every score carries."""
    n = report.samples if samples is None else samples
    return f"split={report.split}, n={n}, seed={report.seed}"


def _clip(text: str, limit: int = MAX_TEXT) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _metric_names(records: list[AttemptRecord]) -> list[str]:
    """Every metric seen, primary metrics first, then in order of appearance."""
    names: list[str] = []
    for rec in records:
        if rec.eval is not None and rec.eval.primary_metric not in names:
            names.append(rec.eval.primary_metric)
    for rec in records:
        for name in rec.eval.metrics if rec.eval is not None else {}:
            if name not in names:
                names.append(name)
    return names


def _primary(records: list[AttemptRecord]) -> str | None:
    return next((r.eval.primary_metric for r in records if r.eval is not None), None)


def _flat(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _config_diff(before: TrainConfig, after: TrainConfig) -> list[str]:
    a, b = _flat(before.model_dump()), _flat(after.model_dump())
    # A no-break space before the arrow: a wrapped cell never starts a line with "→".
    return [f"{k}: {a.get(k)}\u00a0→ {b[k]}" for k in b if a.get(k) != b[k]]


# --------------------------------------------------------------------------- document


def build_blocks(spec: RunSpec, records: list[AttemptRecord], timeline: Timeline | None = None) -> list[Block]:
    """The page, in the order a reader asks: how did it go (summary, attempts, scores), what changed
    in the replies, how training went, then the setup (run, dataset) and each attempt in detail."""
    timeline = timeline or attempt_minutes(spec, records)
    blocks: list[Block] = [Heading(1, f"tunecrew run {spec.run_id}")]
    blocks += _summary(spec, records)
    blocks += [Heading(2, "Attempts")]
    if not records:
        blocks.append(Para("No attempts were recorded."))
    else:
        blocks.append(_attempts_table(records, timeline))
    blocks += [Heading(2, "Scores"),
               Figures([Image("score per attempt", "scores.png"),
                        Image(f"score against {timeline.basis}", SCORES_OVER_TIME)])]
    blocks += [Heading(2, "Loss curves"), Image("loss curves per attempt", "loss_curves.png")]
    blocks += [
        Heading(2, "Run"),
        Table(["field", "value"], [
            ["scenario", spec.scenario], ["base model", spec.base_model], ["provider", provider_line(spec, records)],
            ["seed", str(spec.seed)], ["target", f"{spec.target:.3f}"], ["max attempts", str(spec.max_attempts)],
            ["memory", spec.memory], ["created", spec.created_at],
        ]),
    ]
    blocks += _dataset(spec, records)
    previous: AttemptRecord | None = None
    for rec in records:
        blocks += _attempt_details(rec, previous)
        previous = rec
    return blocks


def _answer(sample: Failure) -> Answer:
    return Answer(sample.got, f"failed: {sample.reason}" if sample.reason else "passed")


def base_vs_attempts(baseline: EvalReport, records: list[AttemptRecord]) -> list[Block]:
    """The untuned base model beside every attempt on the same split, and its replies beside the best
    attempt's to the same held-out prompts (the evaluation keeps the first few rows of each)."""
    scored = [r for r in records if r.eval is not None]
    metrics = sorted(baseline.metrics, key=lambda m: m != baseline.primary_metric)  # the primary first
    rows = [["base model", _where(baseline), *[_num(baseline.metrics.get(m)) for m in metrics]]]
    rows += [[f"attempt {r.attempt}", _where(r.eval), *[_num(r.eval.metrics.get(m)) for m in metrics]]
             for r in scored if r.eval is not None]
    blocks: list[Block] = [Heading(2, "Base model vs attempts"), Table(["model", "scored on", *metrics], rows)]
    # The accepted best (tools/diagnose.py's verdict); when none was accepted, the highest score, whose
    # replies still show what the tuning did.
    best = best_attempt(scored) or max(scored, key=lambda r: r.score or 0.0, default=None)
    if best is None or best.eval is None:
        return blocks
    tuned = {sample.prompt: sample for sample in best.eval.examples}
    exchanges = [Exchange(b.prompt, b.expected, _answer(b), _answer(tuned[b.prompt]))
                 for b in baseline.examples if b.prompt in tuned]
    if exchanges:
        blocks += [Heading(3, f"Replies: base model vs attempt {best.attempt}"),
                   Para(f"The same {len(exchanges)} held-out prompts (the first rows of split {baseline.split}), "
                        f"answered by the untuned base model and by the best attempt"
                        + (", both decoded under the scenario's reply grammar" if baseline.constrained else "")
                        + "; replies are cut at 500 characters by the evaluation"
                        + (f", and {baseline.cut_replies} of the base model's {baseline.samples} stopped at the first "
                           "token that ruled out a well-formed reply (they score as at full length)."
                           if baseline.cut_replies else ".")),
                   SideBySide("base model", f"attempt {best.attempt}", exchanges)]
    return blocks


def _judge_reports(run_dir: Path, records: list[AttemptRecord]) -> list[JudgeReport]:
    """judge_baseline.json, then each recorded attempt's judge.json, where they exist."""
    folder = RunDir(run_dir)
    paths = [folder.judge_baseline] + [folder.attempt(r.attempt).judge for r in records]
    out = []
    for path in paths:
        try:
            out.append(JudgeReport.model_validate_json(path.read_text()))
        except (OSError, ValueError):
            continue  # not judged (or unreadable): the table shows what was judged
    return out


def judge_blocks(reports: list[JudgeReport]) -> list[Block]:
    """Criteria x judges, the base model and every attempt side by side, with counts and agreement."""
    first = reports[0]
    subjects = [r.subject for r in reports]
    judges = list(dict.fromkeys(j.judge for r in reports for j in r.judges))
    summaries = {(r.subject, j.judge): j for r in reports for j in r.judges}
    rows = []
    for judge in judges:
        for criterion in [*first.criteria, "mean"]:
            cells = []
            for r in reports:
                s = summaries.get((r.subject, judge))
                if s is None or not s.means:
                    cells.append("-")
                else:
                    value = sum(s.means.values()) / len(s.means) if criterion == "mean" else s.means.get(criterion)
                    cells.append(_num(value, ".2f"))
            rows.append([judge, criterion, *cells])
        rows.append([judge, "judged / unparsed", *[
            f"{summaries[(r.subject, judge)].judged} / {summaries[(r.subject, judge)].unparsed}"
            if (r.subject, judge) in summaries else "-" for r in reports]])
    blocks: list[Block] = [
        Heading(2, "LLM judge"),
        Para(f"Scores 1-10 on split={first.split}, n={first.samples} per judge ({first.selection}), "
             f"seed={first.seed}; unparsed verdicts are left out of the means, never scored 0. "
             f"The judge's persona: {_clip(first.persona, 160) or '(none)'}"),
        Table(["judge", "criterion", *subjects], rows),
    ]
    calibrated = next((r.calibration for r in reports if r.calibration), "")
    if calibrated:  # an LLM judge's means are only worth its calibration: shown beside them, always
        blocks.append(Para(f"Calibration (AUROC 1.00: every right reply scored above every wrong one; 0.50: "
                           f"chance): {calibrated}"))
    agreement = [(r.subject, a) for r in reports for a in r.agreement]
    if agreement:
        blocks += [Para("Agreement between judges, on the samples both scored ('all': the four criteria pooled)."),
                   Table(["model", "judges", "criterion", "samples", "mean |diff|", "within 1 point", "Spearman"], [
                       [subject, " vs ".join(a.judges), a.criterion, str(a.samples), _num(a.mean_abs_diff, ".2f"),
                        _num(a.within_one, ".0%") if a.within_one is not None else "-", _num(a.spearman, ".2f")]
                       for subject, a in agreement])]
    return blocks


def _rubric_line(rb: RubricScores, e: EvalReport) -> str:
    what = "LLM judge" if rb.samples else "Rubric"
    return (f"{what} by {rb.judge} ({_where(e, rb.samples or None)}): mean {rb.mean:.2f} — accuracy "
            f"{rb.accuracy:.3g}, reasoning {rb.reasoning:.3g}, completeness {rb.completeness:.3g}, clarity "
            f"{rb.clarity:.3g}." + (f" {_clip(rb.explanation)}" if rb.explanation else ""))


def provider_line(spec: RunSpec, records: list[AttemptRecord]) -> str:
    """Who really drove the agents: the provider(s), and how many steps the offline policy answered
    because the LLM call failed (an unreachable endpoint would otherwise pass for an LLM run)."""
    labels = list(dict.fromkeys(r.provider for r in records if r.provider)) or [spec.provider]
    if all(label == "offline" for label in labels):
        return "offline (the deterministic policy, no LLM)"
    steps = sum(r.llm_steps + r.fallback_steps for r in records)
    fell_back = sum(r.fallback_steps for r in records)
    label = " then ".join(labels)
    if not steps:
        return label
    if fell_back:
        return f"{label}: {fell_back} of {steps} LLM steps answered by the offline policy (the LLM call failed)"
    return f"{label}: all {steps} LLM steps answered by the LLM"


def outcome_sentence(spec: RunSpec, records: list[AttemptRecord]) -> str:
    """The run's result in one sentence: the best accepted attempt and whether it reached the target.
    report.md opens with it and the terminal ends with it (also under --quiet)."""
    scored = [r for r in records if r.score is not None and r.eval is not None]
    if not scored:
        return f"{len(records)} attempt(s); none produced a score. Target {spec.target:.3f}."
    best = best_attempt(scored)
    if best is None:  # a score is no result when it did not beat the base model: say so, name no "best"
        top = max(scored, key=lambda r: r.score or 0.0)
        return (f"{len(records)} attempt(s); none was accepted (none beat the base model beyond noise; "
                f"highest: attempt {top.attempt}, {top.score:.3f}). Target {spec.target:.3f} not reached.")
    assert best.eval is not None and best.score is not None
    reached = "reached" if best.score >= spec.target else "not reached"
    return (f"{len(records)} attempt(s). Best: attempt {best.attempt}, {best.eval.primary_metric} = "
            f"{best.score:.3f} ({_where(best.eval)}); target {spec.target:.3f} {reached}.")


def _summary(spec: RunSpec, records: list[AttemptRecord]) -> list[Block]:
    fell_back = sum(r.fallback_steps for r in records)
    warning = [Para(f"Warning: provider {provider_line(spec, records)}.")] if fell_back else []
    return [Para(outcome_sentence(spec, records)), *warning]


def _dataset(spec: RunSpec, records: list[AttemptRecord]) -> list[Block]:
    rows = [["fingerprint", spec.dataset_fingerprint]]
    if records:
        p = records[0].profile
        rows += [
            ["source", p.source], ["rows", str(p.rows)], ["format", p.format],
            ["duplicates", str(p.duplicates)], ["language", p.language],
            [f"mean tokens ({p.token_unit}) prompt / response / total",
             f"{p.prompt_tokens.mean:.1f} / {p.response_tokens.mean:.1f} / {p.total_tokens.mean:.1f}"],
        ]
        hw = records[0].hardware
        rows.append(["hardware", f"{hw.device} ({hw.device_name}), {hw.ram_gb:.1f} GB RAM, "
                                 f"{hw.accelerator_memory_gb:.1f} GB accelerator, {hw.cpu_count} CPU(s)"])
    blocks: list[Block] = [Heading(2, "Dataset"), Table(["field", "value"], rows)]
    other = sorted({r.profile.fingerprint for r in records} - {spec.dataset_fingerprint})
    if other:
        blocks.append(Para(f"Warning: attempts used other dataset fingerprints than the run's: {', '.join(other)}"))
    return blocks


def _recipe(c: TrainConfig) -> str:
    rank = f" r{c.lora_rank}" if c.method != "full" else ""
    return f"{c.method}{rank}, lr {c.learning_rate:.2g}, {c.epochs:g} ep, batch {c.effective_batch}"


def _attempts_table(records: list[AttemptRecord], timeline: Timeline) -> Table:
    """One row per attempt, narrow enough for a laptop: the recipe in one cell, what changed from the
    attempt before in words (cells wrap), numbers in their own columns."""
    metrics = _metric_names(records)
    clock = "min since start" if timeline.basis == WALL_CLOCK else "min of work"
    headers = ["#", "recipe", "changed from the attempt before", "status", clock, "loss train / eval", "scored on",
               *metrics, "rubric mean", "diagnosis", "decision"]
    widths = {1: "9%", 2: "20%", 6: "12%"}
    rows = []
    previous: AttemptRecord | None = None
    for rec, minutes in zip(records, timeline.minutes, strict=True):
        c, r, e = rec.config, rec.result, rec.eval
        # One change a line in HTML (cells keep line breaks); Markdown joins them with "; ".
        changed = "-" if previous is None else ";\n".join(_config_diff(previous.config, c)) or "nothing"
        rows.append([
            str(rec.attempt), _recipe(c), changed, r.status, f"{minutes:.1f}",
            f"{_num(r.train_loss)} / {_num(r.eval_loss)}",
            _where(e) if e is not None else "no eval",
            *[_num(e.metrics.get(m)) if e is not None else "-" for m in metrics],
            _num(e.rubric.mean, ".2f") if e is not None and e.rubric is not None else "-",
            rec.diagnosis.label if rec.diagnosis is not None else "-",
            rec.decision.action if rec.decision is not None else "-",  # its reason: under the attempt below
        ])
        previous = rec
    return Table(headers, rows, widths)


def _attempt_details(rec: AttemptRecord, previous: AttemptRecord | None) -> list[Block]:
    c, r, e = rec.config, rec.result, rec.eval
    blocks: list[Block] = [Heading(2, f"Attempt {rec.attempt}")]
    setup = [f"method={c.method}, backend={c.backend}, lora_rank={c.lora_rank}, lora_alpha={c.lora_alpha}, "
             f"train_embeddings={c.train_embeddings}, learning_rate={c.learning_rate:.3g}, epochs={c.epochs:g}, "
             f"batch_size={c.batch_size} x grad_accum={c.grad_accum}, max_seq_length={c.max_seq_length}, "
             f"seed={c.seed}, data.max_rows={c.data.max_rows}"]
    if previous is not None:
        diff = _config_diff(previous.config, c)
        setup.append("changes from attempt {}: {}".format(previous.attempt, "; ".join(diff) if diff else "none"))
    blocks += [Heading(3, "Configuration"), Bullets(setup)]

    train = [f"status={r.status}, steps={r.steps}, wall={r.wall_seconds:.1f} s"
             + (f", continued attempt {r.continued_from}'s adapter ({r.steps_from_base} steps from the base model)"
                if r.continued_from else ""),
             f"train loss {_num(r.train_loss)}, eval loss {_num(r.eval_loss)}, "
             f"{len(r.loss_curve)} train / {len(r.eval_curve)} eval loss points"]
    if r.estimated_seconds:
        train.append(f"estimated {r.estimated_seconds:.0f} s before training, took {r.wall_seconds:.0f} s "
                     f"({(r.wall_seconds - r.estimated_seconds) / r.estimated_seconds:+.0%})")
    if r.tokens_per_second is not None:
        peak = f"the device's {r.precision} peak" if r.precision else "the device's peak"
        mfu = (f", model FLOPs utilisation {r.model_flops_utilization:.1%} of {peak}"
               if r.model_flops_utilization is not None else "")
        train.append(f"{r.tokens_per_second:.0f} tokens/s{' in ' + r.precision if r.precision else ''}{mfu}")
    if r.peak_memory_mb is not None:
        train.append(f"peak memory {r.peak_memory_mb:.0f} MB")
    if r.trainable_params is not None and r.total_params:
        train.append(f"trainable {r.trainable_params:,} of {r.total_params:,} params "
                     f"({r.trainable_params / r.total_params:.1%})")
    blocks += [Heading(3, "Training"), Bullets(train)]
    if r.error:
        blocks.append(Code(r.error.strip()))

    blocks.append(Heading(3, "Evaluation"))
    if e is None:
        blocks.append(Para(f"No evaluation: training ended with status={r.status}."))
    else:
        blocks += _evaluation(e)

    if rec.diagnosis is not None:
        d = rec.diagnosis
        items = [*d.evidence]
        if d.suggested_changes:
            items.append("suggested: " + ", ".join(f"{k}={v}" for k, v in d.suggested_changes.items()))
        blocks += [Heading(3, f"Diagnosis: {d.label}"), Bullets(items or ["no evidence recorded"])]
    if rec.decision is not None:
        dec = rec.decision
        line = f"{dec.action} (by {dec.by}): {dec.reason}"
        if dec.changes:
            line += " — changes: " + ", ".join(f"{k}={v}" for k, v in dec.changes.items())
        blocks += [Heading(3, "Decision"), Para(line)]
    if rec.notes:  # fallbacks and a person's edits: what the numbers alone would not explain
        blocks += [Heading(3, "Notes"), Bullets(rec.notes)]
    return blocks


def _evaluation(e: EvalReport) -> list[Block]:
    cut = (f" {e.cut_replies} replies stopped at the first token that ruled out a well-formed reply (they score "
           "as at full length)." if e.cut_replies else "")
    decoding = (" Greedy decoding under the scenario's reply grammar: no reply could name a tool, argument or value "
                "shape the contract does not have." if e.constrained else "")
    blocks: list[Block] = [Para(f"Scored on split {e.split}: {e.samples} samples, seed {e.seed}, "
                                f"{e.wall_seconds:.1f} s.{cut}{decoding}")]
    blocks.append(Table(["metric", "value", "split", "samples", "seed"], [
        [f"{m} (primary)" if m == e.primary_metric else m, _num(v), e.split, str(e.samples), str(e.seed)]
        for m, v in e.metrics.items()
    ] or [["(none)", "-", e.split, str(e.samples), str(e.seed)]]))
    if e.groups:
        names = sorted({m for g in e.groups.values() for m in g.metrics})
        blocks.append(Table(["group", "split", "samples", "seed", *names], [
            [name, e.split, str(g.samples), str(e.seed), *[_num(g.metrics.get(m)) for m in names]]
            for name, g in e.groups.items()
        ]))
    for rb in (e.rubric, e.agent_rubric):
        if rb is not None:
            blocks.append(Para(_rubric_line(rb, e)))
    if e.failures:
        shown = e.failures[:MAX_FAILURES_SHOWN]
        blocks.append(Para(f"Failures: {len(shown)} of {len(e.failures)} shown."))
        blocks.append(Table(["group", "reason", "prompt", "expected", "got"], [
            [f.group or "-", _clip(f.reason, 120), _clip(f.prompt), _clip(f.expected), _clip(f.got)]
            for f in shown
        ]))
    if e.leak_check is not None:
        lc = e.leak_check
        verdict = "passed" if lc.passed else "FAILED"
        line = (f"Leak check {verdict}: {lc.checked} held-out prompts checked, {lc.exact_overlap} exact and "
                f"{lc.near_overlap} near overlaps with training.")
        if lc.examples:
            line += " Examples: " + "; ".join(_clip(x, 80) for x in lc.examples[:3])
        blocks.append(Para(line))
    else:
        blocks.append(Para("Leak check: not run."))
    return blocks


# --------------------------------------------------------------------------- renderers


def _md_cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def render_markdown(blocks: list[Block]) -> str:
    out: list[str] = []
    for b in blocks:
        if isinstance(b, Heading):
            out.append(f"{'#' * b.level} {b.text}")
        elif isinstance(b, Para):
            out.append(b.text)
        elif isinstance(b, Table):
            out.append("| " + " | ".join(_md_cell(h) for h in b.headers) + " |")
            out.append("|" + "|".join("---" for _ in b.headers) + "|")
            out += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in b.rows]
        elif isinstance(b, Bullets):
            out += [f"- {' '.join(item.split())}" for item in b.items]
        elif isinstance(b, Image):
            out.append(f"![{b.alt}]({b.src})")
        elif isinstance(b, Figures):
            out += [f"![{i.alt}]({i.src})" for i in b.images]
        elif isinstance(b, Code):
            out += ["```", b.text, "```"]
        elif isinstance(b, SideBySide):
            out.append(f"| prompt | expected | {b.left} | {b.right} |")
            out.append("|---|---|---|---|")
            out += [f"| {_md_cell(_clip(x.prompt))} | {_md_cell(_clip(x.expected))} | "
                    f"{_md_cell(f'({x.left.verdict}) ' + _clip(x.left.text))} | "
                    f"{_md_cell(f'({x.right.verdict}) ' + _clip(x.right.text))} |" for x in b.exchanges]
        out.append("")
    return "\n".join(out)


# Laid out for a laptop: a table is as wide as its content up to the page, and then its cells wrap;
# long unbroken strings (fingerprints, paths) may break anywhere, numbers never do.
_CSS = """
body{font-family:system-ui,sans-serif;max-width:1320px;margin:1.5em auto;padding:0 1em;color:#222;line-height:1.4}
h1{font-size:1.6em}h2{margin-top:1.6em;border-bottom:1px solid #ddd;padding-bottom:.2em}
.table{max-width:100%;overflow-x:auto}
table{border-collapse:collapse;margin:.5em 0;font-size:.86em}
th,td{border:1px solid #ccc;padding:.3em .5em;text-align:left;vertical-align:top}
td{overflow-wrap:anywhere;white-space:pre-line}
th{background:#f3f3f3;font-weight:600}
td.num{text-align:right;white-space:nowrap;font-variant-numeric:tabular-nums}
tbody tr:nth-child(even){background:#fafafa}
img{max-width:100%;display:block;margin:1em 0}
.figures{display:flex;flex-wrap:wrap;gap:1em}.figures img{flex:1 1 560px;min-width:0;margin:.5em 0}
pre{background:#f6f6f6;padding:.5em;white-space:pre-wrap;overflow-wrap:anywhere}
.exchange{border:1px solid #ddd;border-radius:6px;margin:1em 0;padding:.6em .8em}
.exchange .prompt{margin-bottom:.5em}
.replies{display:grid;grid-template-columns:repeat(3,minmax(0,1fr));gap:.8em}
.replies pre{margin:.2em 0 0;max-height:18em;overflow-y:auto;font-size:.85em}
.label{font-size:.8em;color:#555;text-transform:uppercase;letter-spacing:.04em}
.passed,.failed{font-size:.85em}.passed{color:#1a7f37}.failed{color:#b42318}
"""

_NUMBER = re.compile(r"^(-|[-+]?\d[\d.,e+-]*%?)( / (-|[-+]?\d[\d.,e+-]*%?))*$")


def _th(text: str) -> str:
    """A header that may wrap after `_` and `/`: metric names are long single words."""
    return html.escape(text).replace("_", "_<wbr>").replace("/", "/<wbr>")


def _numeric_columns(table: Table) -> set[int]:
    """Columns that hold only numbers (or '-'): right-aligned and never wrapped."""
    return {i for i in range(len(table.headers))
            if table.rows and all(i < len(row) and _NUMBER.match(row[i]) for row in table.rows)}


def _td(text: str, numeric: bool) -> str:
    return f"<td{' class=num' if numeric else ''}>{html.escape(text)}</td>"


def _reply_html(label: str, text: str, verdict: str | None = None) -> str:
    e = html.escape
    mark = ""
    if verdict is not None:
        mark = f" <span class='{'passed' if verdict == 'passed' else 'failed'}'>{e(verdict)}</span>"
    body = (text if len(text) <= MAX_REPLY else text[: MAX_REPLY - 1] + "…") if text.strip() else "(empty reply)"
    return f"<div><span class='label'>{e(label)}</span>{mark}<pre>{e(body)}</pre></div>"


def render_html(blocks: list[Block], title: str) -> str:
    e = html.escape
    out = ["<!doctype html>", "<html><head><meta charset='utf-8'>",
           "<meta name='viewport' content='width=device-width, initial-scale=1'>", f"<title>{e(title)}</title>",
           f"<style>{_CSS}</style></head><body>"]
    for b in blocks:
        if isinstance(b, Heading):
            out.append(f"<h{b.level}>{e(b.text)}</h{b.level}>")
        elif isinstance(b, Para):
            out.append(f"<p>{e(b.text)}</p>")
        elif isinstance(b, Table):
            numeric = _numeric_columns(b)
            heads = "".join(f"<th style='width:{b.widths[i]}'>{_th(h)}</th>" if i in b.widths else f"<th>{_th(h)}</th>"
                            for i, h in enumerate(b.headers))
            out.append(f"<div class='table'><table><thead><tr>{heads}</tr></thead><tbody>")
            out += ["<tr>" + "".join(_td(c, i in numeric) for i, c in enumerate(row)) + "</tr>" for row in b.rows]
            out.append("</tbody></table></div>")
        elif isinstance(b, Bullets):
            out.append("<ul>" + "".join(f"<li>{e(i)}</li>" for i in b.items) + "</ul>")
        elif isinstance(b, Image):
            out.append(f"<img src='{e(b.src)}' alt='{e(b.alt)}'>")
        elif isinstance(b, Figures):
            out.append("<div class='figures'>" + "".join(f"<img src='{e(i.src)}' alt='{e(i.alt)}'>" for i in b.images)
                       + "</div>")
        elif isinstance(b, Code):
            out.append(f"<pre>{e(b.text)}</pre>")
        elif isinstance(b, SideBySide):
            for x in b.exchanges:
                out.append(f"<div class='exchange'><div class='prompt'><span class='label'>prompt</span> "
                           f"{e(_clip(x.prompt, MAX_REPLY))}</div><div class='replies'>"
                           + _reply_html(b.left, x.left.text, x.left.verdict)
                           + _reply_html(b.right, x.right.text, x.right.verdict)
                           + _reply_html("expected", x.expected) + "</div></div>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------- plots


def _figure(width: float = 9.0, height: float = 4.8) -> Any:
    from matplotlib.figure import Figure  # lazy: matplotlib import costs ~0.5 s

    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def _placeholder(ax: Any, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=13, color="#666", transform=ax.transAxes)
    ax.set_xticks([])
    ax.set_yticks([])


def _minor_log_label(value: float, _pos: int) -> str:
    """Label 2x and 5x minor ticks on a log axis, so the reader gets numbers, not 10^0."""
    if value <= 0:
        return ""
    lead = round(value / 10 ** math.floor(math.log10(value)))
    return f"{value:g}" if lead in (2, 5) else ""


def plot_losses(records: list[AttemptRecord], path: Path) -> Path:
    """Train loss per attempt vs step (solid), eval loss (dashed, same colour)."""
    fig = _figure()
    ax = fig.add_subplot()
    values: list[float] = []
    for i, rec in enumerate(records):
        colour = f"C{i % 10}"
        train, evals = rec.result.loss_curve, rec.result.eval_curve
        c = rec.config
        label = f"#{rec.attempt} {c.method} r{c.lora_rank} lr {c.learning_rate:.2g} ep {c.epochs:g}"
        if train:
            ax.plot([p.step for p in train], [p.loss for p in train], color=colour, lw=1.8, label=f"{label} train")
            values += [p.loss for p in train]
        if evals:
            ax.plot([p.step for p in evals], [p.loss for p in evals], color=colour, lw=1.6, ls="--", marker="o",
                    ms=3, label=f"#{rec.attempt} eval")
            values += [p.loss for p in evals]
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        _placeholder(ax, "no attempts" if not records else "no loss curves logged")
    else:
        if min(finite) > 0 and max(finite) / min(finite) > 10:
            from matplotlib.ticker import FuncFormatter

            ax.set_yscale("log")  # early losses ~10 would otherwise flatten the interesting tail
            ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            ax.yaxis.set_minor_formatter(FuncFormatter(_minor_log_label))
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="upper right")
        missing = [str(r.attempt) for r in records if not r.result.loss_curve]
        if missing:
            ax.text(0.01, 0.01, f"no curve: attempt {', '.join(missing)}", transform=ax.transAxes,
                    fontsize=8, color="#666")
    ax.set_title("Loss per attempt (train solid, eval dashed)")
    fig.savefig(path)
    return path


_METRIC_COLOURS = ["C1", "C2", "C4", "C5", "C6", "C7", "C8", "C9"]  # C0 is the primary metric's, red the target's


def _provenance(records: list[AttemptRecord]) -> str | None:
    """split/n/seed when every evaluated attempt shares them: then the title says it once."""
    wheres = {_where(r.eval) for r in records if r.eval is not None}
    return next(iter(wheres)) if len(wheres) == 1 else None


def _score_lines(ax: Any, xs: list[float], records: list[AttemptRecord], target: float,
                 base_score: float | None, point_label: str) -> None:
    """The primary metric bold with its values written on, the other metrics thin and dashed, the target
    and the base model's score as horizontal lines, attempts without a score as red crosses at 0.
    `point_label` ("value" or "attempt") says what is written beside each primary point."""
    primary = _primary(records)
    others = iter(_METRIC_COLOURS * 4)
    for name in _metric_names(records):
        pts = [(x, rec, rec.eval.metrics[name]) for x, rec in zip(xs, records, strict=True)
               if rec.eval is not None and name in rec.eval.metrics and math.isfinite(rec.eval.metrics[name])]
        if not pts:
            continue
        px, py = [p[0] for p in pts], [p[2] for p in pts]
        if name == primary:
            ax.plot(px, py, color="C0", lw=2.2, marker="o", ms=7, zorder=3, label=f"{name} (primary)")
            for x, rec, y in pts:
                text = f"{y:.2f}" if point_label == "value" else f"#{rec.attempt}: {y:.2f}"
                ax.annotate(text, (x, y), textcoords="offset points", xytext=(0, 9), ha="center", fontsize=8,
                            color="C0", fontweight="bold", zorder=5,
                            bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.85})
        else:
            ax.plot(px, py, color=next(others), lw=1.1, ls="--", marker=".", ms=6, alpha=0.85, label=name)
    for x, rec in zip(xs, records, strict=True):
        if rec.eval is None:
            ax.plot([x], [0.0], marker="x", ms=9, mew=2, color="crimson", zorder=4, ls="none")
            ax.annotate(f"#{rec.attempt} {rec.result.status}", (x, 0.0), textcoords="offset points",
                        xytext=(0, 8), ha="center", fontsize=8, color="crimson")
    ax.axhline(target, color="crimson", ls="--", lw=1.3, label=f"target {target:.2f} (primary)")
    if base_score is not None and math.isfinite(base_score):
        ax.axhline(base_score, color="#555", ls=":", lw=1.6, label=f"base model {base_score:.2f} (primary)")
    ax.set_ylim(-0.03, 1.1)
    ax.set_ylabel("score (0-1)")
    ax.grid(alpha=0.3)


def _score_figure(records: list[AttemptRecord], title: str) -> tuple[Any, Any, str | None]:
    fig = _figure(6.4, 4.6)
    ax = fig.add_subplot()
    where = _provenance(records)
    ax.set_title(title + (f"\n{where}" if where else ""), fontsize=11)
    return fig, ax, where


def _legend_below(fig: Any, ax: Any) -> None:
    handles, labels = ax.get_legend_handles_labels()
    if handles:  # below the plot: inside it would hide points, to the right it would squeeze the axes
        fig.legend(handles, labels, loc="outside lower center", ncol=min(2, len(handles)), fontsize=8,
                   frameon=False)


def plot_scores(records: list[AttemptRecord], target: float, path: Path, base_score: float | None = None) -> Path:
    """Score against attempt number: every metric, the target and the base model's score. The title (or,
    when attempts were scored differently, the tick labels) carries split/samples/seed."""
    fig, ax, where = _score_figure(records, "Score per attempt")
    if not records or not _metric_names(records):
        _placeholder(ax, "no attempts" if not records else "no scores: no attempt was evaluated")
        fig.savefig(path)
        return path
    xs = [float(r.attempt) for r in records]
    _score_lines(ax, xs, records, target, base_score, "value")
    labels = [f"#{r.attempt}" if where or r.eval is None else
              f"#{r.attempt}\n{r.eval.split}\nn={r.eval.samples} seed={r.eval.seed}" for r in records]
    ax.set_xticks(xs, labels, fontsize=8)
    ax.set_xlim(min(xs) - 0.5, max(xs) + 0.5)
    ax.set_xlabel("attempt")
    _legend_below(fig, ax)
    fig.savefig(path)
    return path


def plot_scores_over_time(records: list[AttemptRecord], target: float, timeline: Timeline, path: Path,
                          base_score: float | None = None) -> Path:
    """Score against minutes since the run started (or of work, see `attempt_minutes`): what the time
    bought. Each point is written with its attempt number."""
    fig, ax, _ = _score_figure(records, "Score over time")
    if not records or not _metric_names(records):
        _placeholder(ax, "no attempts" if not records else "no scores: no attempt was evaluated")
        fig.savefig(path)
        return path
    _score_lines(ax, timeline.minutes, records, target, base_score, "attempt")
    ax.set_xlim(0, max(timeline.minutes) * 1.08 or 1.0)
    ax.set_xlabel(timeline.basis)
    _legend_below(fig, ax)
    fig.savefig(path)
    return path
