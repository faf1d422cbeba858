"""The run report a person reads: report.md, report.html, loss_curves.png and scores.png.

The document is built once as a list of small blocks (heading, paragraph, table, list, image,
code) and rendered twice, so the Markdown and HTML versions cannot drift apart and no Markdown
library is needed. A score is never printed without the split, sample count and seed it was
measured on: a number without them cannot be compared with anything.

Plots use `matplotlib.figure.Figure` directly with the Agg canvas: no pyplot, no global backend
switch, so this works headless and does not disturb anyone else's matplotlib state.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunecrew.tools.contracts import AttemptRecord, EvalReport, JudgeReport, RubricScores, RunSpec, TrainConfig
from tunecrew.tools.run_dir import RunDir

MAX_FAILURES_SHOWN = 3
MAX_TEXT = 300  # characters of a failure's prompt/output shown
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


@dataclass(frozen=True)
class Bullets:
    items: list[str]


@dataclass(frozen=True)
class Image:
    alt: str
    src: str


@dataclass(frozen=True)
class Code:
    text: str


Block = Heading | Para | Table | Bullets | Image | Code


# --------------------------------------------------------------------------- entry point


def write_report(run_dir: Path, spec: RunSpec, records: list[AttemptRecord],
                 baseline: EvalReport | None = None) -> Path:
    """Write report.md (returned), report.html and the two PNGs into `run_dir`."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    plot_losses(records, run_dir / "loss_curves.png")
    plot_scores(records, spec.target, run_dir / "scores.png")
    blocks = build_blocks(spec, records)
    if baseline is not None:
        at = next(i for i, b in enumerate(blocks) if isinstance(b, Heading) and b.text == "Curves")
        blocks[at:at] = base_vs_attempts(baseline, records)
    logs = training_logs(run_dir)
    if logs is not None:  # right under the Run table: where to look while and after it trains
        at = next(i for i, b in enumerate(blocks) if isinstance(b, Heading) and b.text == "Run") + 2
        blocks.insert(at, logs)
    judged = _judge_reports(run_dir, records)
    if judged:
        at = next(i for i, b in enumerate(blocks) if isinstance(b, Heading) and b.text == "Curves")
        blocks[at:at] = judge_blocks(judged)
    md_path = RunDir(run_dir).report
    md_path.write_text(render_markdown(blocks), encoding="utf-8")
    (run_dir / "report.html").write_text(render_html(blocks, title=f"tunecrew run {spec.run_id}"), encoding="utf-8")
    return md_path


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
    return [f"{k}: {a.get(k)} -> {b[k]}" for k in b if a.get(k) != b[k]]


# --------------------------------------------------------------------------- document


def build_blocks(spec: RunSpec, records: list[AttemptRecord]) -> list[Block]:
    blocks: list[Block] = [Heading(1, f"tunecrew run {spec.run_id}")]
    blocks += _summary(spec, records)
    blocks += [
        Heading(2, "Run"),
        Table(["field", "value"], [
            ["scenario", spec.scenario], ["base model", spec.base_model], ["provider", provider_line(spec, records)],
            ["seed", str(spec.seed)], ["target", f"{spec.target:.3f}"], ["max attempts", str(spec.max_attempts)],
            ["memory", spec.memory], ["created", spec.created_at],
        ]),
    ]
    blocks += _dataset(spec, records)
    blocks += [Heading(2, "Attempts")]
    if not records:
        blocks.append(Para("No attempts were recorded."))
    else:
        blocks.append(_attempts_table(records))
    blocks += [Heading(2, "Curves"), Image("loss curves per attempt", "loss_curves.png"),
               Image("scores per attempt", "scores.png")]
    previous: AttemptRecord | None = None
    for rec in records:
        blocks += _attempt_details(rec, previous)
        previous = rec
    return blocks


def base_vs_attempts(baseline: EvalReport, records: list[AttemptRecord]) -> list[Block]:
    """The untuned base model beside every attempt on the same split, and a few replies side by side."""
    scored = [r for r in records if r.eval is not None]
    metrics = list(baseline.metrics)
    rows = [["base model", _where(baseline), *[_num(baseline.metrics.get(m)) for m in metrics]]]
    rows += [[f"attempt {r.attempt}", _where(r.eval), *[_num(r.eval.metrics.get(m)) for m in metrics]]
             for r in scored if r.eval is not None]
    blocks: list[Block] = [Heading(2, "Base model vs attempts"), Table(["model", "scored on", *metrics], rows)]
    best = max(scored, key=lambda r: r.score or 0.0, default=None)
    if best is not None and best.eval is not None and best.eval.examples and baseline.examples:
        pairs = zip(baseline.examples, best.eval.examples, strict=False)
        blocks += [Para(f"Replies side by side: base model vs attempt {best.attempt} (first held-out rows)."),
                   Table(["prompt", "expected", "base model", f"attempt {best.attempt}"],
                         [[_clip(b.prompt), _clip(b.expected), _clip(b.got), _clip(a.got)] for b, a in pairs])]
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


def _summary(spec: RunSpec, records: list[AttemptRecord]) -> list[Block]:
    scored = [r for r in records if r.score is not None and r.eval is not None]
    fell_back = sum(r.fallback_steps for r in records)
    warning = [Para(f"Warning: provider {provider_line(spec, records)}.")] if fell_back else []
    if not scored:
        return [Para(f"{len(records)} attempt(s); none produced a score. Target {spec.target:.3f}."), *warning]
    best = max(scored, key=lambda r: r.score or 0.0)
    assert best.eval is not None and best.score is not None
    reached = "reached" if best.score >= spec.target else "not reached"
    return [Para(
        f"{len(records)} attempt(s). Best: attempt {best.attempt}, {best.eval.primary_metric} = "
        f"{best.score:.3f} ({_where(best.eval)}); target {spec.target:.3f} {reached}."
    ), *warning]


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


def _attempts_table(records: list[AttemptRecord]) -> Table:
    metrics = _metric_names(records)
    headers = ["#", "method", "rank", "lr", "epochs", "status", "train loss", "eval loss", "scored on",
               *metrics, "rubric mean", "diagnosis", "decision"]
    rows = []
    for rec in records:
        c, r, e = rec.config, rec.result, rec.eval
        adapter = c.method != "full"
        rows.append([
            str(rec.attempt), c.method, str(c.lora_rank) if adapter else "-", f"{c.learning_rate:.2g}",
            f"{c.epochs:g}", r.status, _num(r.train_loss), _num(r.eval_loss),
            _where(e) if e is not None else "no eval",
            *[_num(e.metrics.get(m)) if e is not None else "-" for m in metrics],
            _num(e.rubric.mean, ".2f") if e is not None and e.rubric is not None else "-",
            rec.diagnosis.label if rec.diagnosis is not None else "-",
            rec.decision.action if rec.decision is not None else "-",
        ])
    return Table(headers, rows)


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
        mfu = (f", model FLOPs utilisation {r.model_flops_utilization:.1%} of the device's peak"
               if r.model_flops_utilization is not None else "")
        train.append(f"{r.tokens_per_second:.0f} tokens/s{mfu}")
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
    return blocks


def _evaluation(e: EvalReport) -> list[Block]:
    blocks: list[Block] = [Para(f"Scored on split {e.split}: {e.samples} samples, seed {e.seed}, "
                                f"{e.wall_seconds:.1f} s.")]
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
        elif isinstance(b, Code):
            out += ["```", b.text, "```"]
        out.append("")
    return "\n".join(out)


_CSS = ("body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}"
        "table{border-collapse:collapse;margin:.5em 0;font-size:.9em}"
        "th,td{border:1px solid #ccc;padding:.25em .5em;text-align:left;vertical-align:top}"
        "th{background:#f3f3f3}img{max-width:100%;display:block;margin:1em 0}"
        "pre{background:#f6f6f6;padding:.5em;overflow-x:auto}")


def render_html(blocks: list[Block], title: str) -> str:
    e = html.escape
    out = ["<!doctype html>", "<html><head><meta charset='utf-8'>", f"<title>{e(title)}</title>",
           f"<style>{_CSS}</style></head><body>"]
    for b in blocks:
        if isinstance(b, Heading):
            out.append(f"<h{b.level}>{e(b.text)}</h{b.level}>")
        elif isinstance(b, Para):
            out.append(f"<p>{e(b.text)}</p>")
        elif isinstance(b, Table):
            out.append("<table><thead><tr>" + "".join(f"<th>{e(h)}</th>" for h in b.headers) + "</tr></thead><tbody>")
            out += ["<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>" for row in b.rows]
            out.append("</tbody></table>")
        elif isinstance(b, Bullets):
            out.append("<ul>" + "".join(f"<li>{e(i)}</li>" for i in b.items) + "</ul>")
        elif isinstance(b, Image):
            out.append(f"<img src='{e(b.src)}' alt='{e(b.alt)}'>")
        elif isinstance(b, Code):
            out.append(f"<pre>{e(b.text)}</pre>")
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


def plot_scores(records: list[AttemptRecord], target: float, path: Path) -> Path:
    """Grouped bars: one group per attempt, one bar per metric; the target as a horizontal line.
    Tick labels carry split/samples/seed so the plot never shows a bare score."""
    metrics = _metric_names(records)
    primary = _primary(records)
    fig = _figure()
    ax = fig.add_subplot()
    if not records or not metrics:
        _placeholder(ax, "no attempts" if not records else "no scores: no attempt was evaluated")
        ax.set_title("Scores per attempt")
        fig.savefig(path)
        return path
    width = 0.8 / len(metrics)
    xs = list(range(len(records)))
    for j, name in enumerate(metrics):
        heights = [rec.eval.metrics.get(name, math.nan) if rec.eval is not None else math.nan for rec in records]
        offsets = [x - 0.4 + width * (j + 0.5) for x in xs]
        bars = ax.bar(offsets, heights, width, label=name + (" (primary)" if name == primary else ""),
                      color=f"C{j % 10}", edgecolor="black" if name == primary else None,
                      linewidth=1.2 if name == primary else 0)
        if name == primary:
            ax.bar_label(bars, labels=[_num(h, ".2f") if math.isfinite(h) else "" for h in heights],
                         fontsize=8, padding=2)
    ax.axhline(target, color="crimson", ls="--", lw=1.5, label=f"target {target:.2f}" +
               (f" ({primary})" if primary else ""))
    labels = []
    for rec in records:
        if rec.eval is None:
            labels.append(f"#{rec.attempt}\nno eval ({rec.result.status})")
        else:
            labels.append(f"#{rec.attempt}\n{rec.eval.split} n={rec.eval.samples} seed={rec.eval.seed}")
    ax.set_xticks(xs, labels, fontsize=8)
    ax.set_ylim(0, 1.08)
    ax.set_ylabel("score (0-1)")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_title("Scores per attempt")
    fig.savefig(path)
    return path
