"""The report as a person sees it: rendered by headless Chromium at a laptop's 1,400 px.

A long run (six attempts, long config changes, notes and decisions, a crashed attempt, group
metrics with long names, the base model's replies beside the best attempt's) must fit the screen
without a horizontal scroll, and every plot must load. The page itself carries no script: the test
renders a copy with a small one that measures the layout on load and writes the numbers into the
DOM, which `--dump-dom` hands back. Skipped only where Chromium is not installed (CI installs it).
"""

from __future__ import annotations

import datetime as dt
import html
import json
import math
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from PIL import Image

from tunecrew.tools.contracts import (
    AttemptRecord,
    EvalReport,
    Failure,
    GroupMetrics,
    LeakCheck,
    LossPoint,
    RunSpec,
)
from tunecrew.tools.report import SCORES_OVER_TIME, WALL_CLOCK, attempt_minutes, write_report

from factories import make_record

CHROMIUM = Path("/usr/bin/chromium")
WIDTH, HEIGHT = 1400, 900
START = dt.datetime(2026, 5, 4, 9, 0, tzinfo=dt.timezone.utc)

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is not installed (apt-get install "
                                "chromium): the report's layout is checked in a real browser")

# Measures the page once everything (the plots included) has loaded.
MEASURE = """<script>
addEventListener('load', () => {
  const doc = document.documentElement;
  const scrolls = [...document.querySelectorAll('.table, pre, .figures, .replies, .exchange')]
    .filter(el => el.scrollWidth > el.clientWidth + 1)
    .map(el => el.className || el.tagName + ': ' + el.textContent.slice(0, 60));
  const images = [...document.images].map(i => ({src: i.getAttribute('src'), natural: i.naturalWidth,
    shown: Math.round(i.getBoundingClientRect().width)}));
  document.body.setAttribute('data-layout', JSON.stringify({scrollWidth: doc.scrollWidth,
    clientWidth: doc.clientWidth, innerWidth: innerWidth, height: doc.scrollHeight, scrolls, images}));
});
</script>"""

HELDOUT = [
    "Remind me to call the dentist tomorrow at 9 and tag it health, high priority please",
    "What's overdue in the Apollo project? List everything assigned to Priya or to nobody",
    "Move the quarterly budget review to Friday afternoon and tell the finance team",
    "mark 'renew passport' done",
    "Create three tasks for the offsite: book venue, order catering, send invites; all due next Monday",
    "Which of my tasks have no due date?",
]


def expected_reply(i: int) -> str:
    return (f"<analysis>The user wants an action on their tasks (request {i}); pick the tool and fill every field."
            f"</analysis>\n<final>{{\"tool\": \"create_task\", \"args\": {{\"title\": \"{HELDOUT[i][:40]}\", "
            f"\"due\": \"2026-05-05T09:00\", \"priority\": \"high\", \"tags\": [\"health\"]}}}}</final>")


def examples(tuned: bool) -> list[Failure]:
    out = []
    for i, prompt in enumerate(HELDOUT):
        if tuned:
            got, reason = expected_reply(i), "" if i != 3 else "wrong tool: update_task expected"
        else:  # an untuned model rambles, and sometimes writes one very long unbroken token
            got = ("Sure! I'd be happy to help you with that. As an AI language model I cannot access your "
                   "calendar, but here is what you could do:\n1. Open your task app\n2. Create a new task\n"
                   + ("https://example.invalid/" + "x" * 180 if i == 1 else "3. Set a reminder")) * (2 if i == 0 else 1)
            reason = "no <final> block: format not followed"
        out.append(Failure(prompt=prompt, expected=expected_reply(i), got=got[:500], reason=reason, group="all"))
    return out


METRICS = ["tool_accuracy", "format_compliance", "action_exact_match", "novel_phrasing/action_exact_match",
           "trained_phrasing/action_exact_match"]


def scored(score: float, tuned: bool = True) -> EvalReport:
    values = [score, min(1.0, score + 0.2), score * 0.9, score * 0.8, min(1.0, score * 1.05)]
    return EvalReport(
        split="heldout-tools(seed=3)", samples=48, seed=3, primary_metric="novel_phrasing/action_exact_match",
        metrics=dict(zip(METRICS, values, strict=True)),
        groups={"novel_phrasing": GroupMetrics(samples=24, metrics={"action_exact_match": score * 0.8}),
                "trained_phrasing": GroupMetrics(samples=24, metrics={"action_exact_match": score})},
        failures=[f for f in examples(tuned) if f.reason][:4], examples=examples(tuned),
        leak_check=LeakCheck(checked=48, exact_overlap=0), wall_seconds=140.0)


def curve(n: int, start: float, floor: float, every: int = 10) -> list[LossPoint]:
    return [LossPoint(step=every * i, loss=floor + (start - floor) * math.exp(-i * every / 60)) for i in range(n)]


# (minutes after the run's start the attempt closed, score or None for a crash, config changes)
PLAN: list[tuple[float, float | None, dict]] = [
    (9.5, 0.21, {}),
    (21.0, 0.38, {"lr": 1e-3, "epochs": 2.0, "rank": 32, "alpha": 64, "max_seq_length": 768,
                  "data.max_rows": 4000, "data.synthetic_ratio": 0.5}),
    (24.0, None, {"batch_size": 32, "grad_accum": 1, "max_seq_length": 2048}),
    (38.5, 0.55, {"batch_size": 8, "grad_accum": 4, "max_seq_length": 1024, "train_embeddings": True,
                  "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]}),
    (51.0, 0.71, {"epochs": 3.0, "lr_scheduler": "constant_with_warmup", "warmup_ratio": 0.1,
                  "continue_training": True, "data.negatives": "nat"}),
    (63.2, 0.83, {"lr": 5e-4, "weight_decay": 0.01, "lora_dropout": 0.05}),
]


def long_run() -> tuple[RunSpec, list[AttemptRecord], EvalReport]:
    spec = RunSpec(run_id="tasks-2026-05-04-0900", scenario="task-agent", provider="openai:gpt-4o-mini",
                   base_model="HuggingFaceTB/SmolLM2-135M-Instruct", max_attempts=8, target=0.8, seed=3, memory="on",
                   dataset_fingerprint=make_record().profile.fingerprint, created_at=START.isoformat())
    records: list[AttemptRecord] = []
    config = make_record().config.with_changes({"lr": 2e-4, "epochs": 1.0, "rank": 16, "alpha": 32})
    for n, (minutes, score, changes) in enumerate(PLAN, start=1):
        config = config.with_changes(changes)
        train, evals = curve(30, 9.0, 2.0 - n * 0.25), curve(4, 9.0, 2.3 - n * 0.25, 80)
        base = make_record(attempt=n, run_id=spec.run_id, status="ok" if score is not None else "oom",
                           diagnosis="good" if score and score >= 0.8 else ("oom" if score is None else "underfit"),
                           created_at=(START + dt.timedelta(minutes=minutes)).isoformat())
        rec = base.model_copy(update={
            "config": config,
            "result": base.result.model_copy(update={
                "loss_curve": train, "eval_curve": evals, "train_loss": train[-1].loss, "eval_loss": evals[-1].loss,
            }) if score is not None else base.result,
            "eval": scored(score) if score is not None else None,
            "notes": [f"The LLM call for the Tuner failed (HTTP 429 rate limited, retried 3 times over 40 s); the "
                      f"offline policy proposed attempt {n}'s config from the diagnosis and memory instead.",
                      "A person edited the config: lr 1e-3, rank 32 (typed at the prompt between attempts)."],
        })
        assert rec.decision is not None
        rec = rec.model_copy(update={"decision": rec.decision.model_copy(update={
            "reason": "novel_phrasing/action_exact_match is still below the target while trained phrasings pass: "
                      "the model memorises the training wording; more varied data and a longer schedule should "
                      "generalise better, and the loss is still falling at the last step."})})
        records.append(rec)
    return spec, records, scored(0.02, tuned=False)


def chromium(*args: str) -> subprocess.CompletedProcess[str]:
    with tempfile.TemporaryDirectory() as profile:
        proc = subprocess.run(
            [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={profile}", f"--window-size={WIDTH},{HEIGHT}", *args],
            capture_output=True, text=True, timeout=90)
    assert proc.returncode == 0, f"chromium exited {proc.returncode}: {proc.stderr[-2000:]}"
    return proc


def layout(page: Path) -> dict:
    """The measurements MEASURE took in a copy of `page` (same folder, so the plots resolve)."""
    probe = page.with_name("_layout_probe.html")
    probe.write_text(page.read_text(encoding="utf-8").replace("</body>", MEASURE + "</body>"), encoding="utf-8")
    dom = chromium("--dump-dom", probe.as_uri()).stdout
    found = re.search(r'data-layout="([^"]*)"', dom)
    assert found, f"the probe did not run: {dom[:500]}"
    return json.loads(html.unescape(found.group(1)))


def test_a_long_run_fits_a_laptop_screen_and_every_plot_loads(tmp_path: Path) -> None:
    spec, records, baseline = long_run()
    write_report(tmp_path, spec, records, baseline=baseline)
    page = tmp_path / "report.html"

    seen = layout(page)
    assert seen["innerWidth"] == WIDTH, seen
    assert seen["scrollWidth"] <= seen["clientWidth"], f"the page scrolls sideways at {WIDTH} px: {seen}"
    assert seen["scrolls"] == [], f"these scroll sideways at {WIDTH} px: {seen['scrolls']}"
    loaded = {i["src"]: i for i in seen["images"]}
    for plot in ("scores.png", SCORES_OVER_TIME, "loss_curves.png"):
        assert plot in loaded and loaded[plot]["natural"] > 300, f"{plot} did not load: {seen['images']}"
        assert loaded[plot]["shown"] >= 500, f"{plot} is shown too small to read: {loaded[plot]}"
    # Both score plots side by side on one row: each about half the page.
    assert loaded["scores.png"]["shown"] < WIDTH * 0.6

    shot = tmp_path / "report_1400.png"
    chromium(f"--screenshot={shot}", page.as_uri())
    with Image.open(shot) as image:
        assert image.size == (WIDTH, HEIGHT)
        grey = image.convert("L")
        ink = sum(count for level, count in enumerate(grey.histogram()) if level < 200) / (WIDTH * HEIGHT)
        colours = len(image.convert("RGB").getcolors(maxcolors=1 << 20) or [])
    assert ink > 0.02, f"the screenshot is nearly blank ({ink:.1%} dark pixels)"
    assert colours > 50, f"the screenshot has {colours} colours: not a rendered page"

    md = (tmp_path / "report.md").read_text()
    section = md[md.index("### Replies: base model vs attempt 6"):md.index("## Loss curves")]
    assert "(failed: no <final> block: format not followed) Sure!" in section
    assert "(passed) <analysis>" in section
    assert attempt_minutes(spec, records).basis == WALL_CLOCK


def keep_screenshot(target: Path) -> None:
    """Not a test: `python -c 'import test_report_browser as t; t.keep_screenshot(...)'` writes the long
    run's report beside `target` and a full-length 1,400 px screenshot of it to `target`."""
    spec, records, baseline = long_run()
    folder = target.parent / (target.stem + "_run")
    shutil.rmtree(folder, ignore_errors=True)
    write_report(folder, spec, records, baseline=baseline)
    height = layout(folder / "report.html")["height"]
    chromium(f"--screenshot={target}", f"--window-size={WIDTH},{height}", (folder / "report.html").as_uri())
