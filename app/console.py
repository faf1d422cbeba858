"""What a person sees in the terminal: the conversation as it happens, a training progress bar,
and a final table of attempts."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.panel import Panel
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from tunecrew.agents.roles import colour_of
from tunecrew.tools.report import outcome_sentence, provider_line


class CrewConsole:
    def __init__(self, quiet: bool = False):
        # --quiet silences the conversation and progress, not the summary: `out` always prints.
        self.console = Console(quiet=quiet, highlight=False)
        self.out = Console(highlight=False)
        self._progress: Progress | None = None
        self._task: Any = None

    def note(self, text: str) -> None:
        self.console.print(f"[dim]{text}[/dim]")

    def status(self, text: str):
        return self.console.status(text) if not self.console.quiet else contextlib.nullcontext()

    def header(self, ctx) -> None:
        s = ctx.spec
        self.console.rule(f"tunecrew · {s.scenario} · run {s.run_id}")
        self.note(f"provider {s.provider} · target {ctx.scenario.primary_metric} >= {s.target} · "
                  f"max {s.max_attempts} attempts · seed {s.seed} · memory {s.memory} · {ctx.run.path}")

    def message(self, item: Any) -> None:
        kind = type(item).__name__
        source = getattr(item, "source", "")
        if kind == "ToolCallRequestEvent":
            for call in item.content:
                args = call.arguments if len(call.arguments) < 300 else call.arguments[:300] + "…"
                self.console.print(f"  [dim]{source} → {call.name}({args})[/dim]")
        elif kind == "ToolCallExecutionEvent":
            for res in item.content:
                text = res.content if len(res.content) < 240 else res.content[:240] + "…"
                style = "red" if res.is_error else "dim"
                self.console.print(f"  [{style}]← {res.name}: {text}[/{style}]", markup=True)
        elif kind in ("TextMessage", "ToolCallSummaryMessage", "StopMessage"):
            color = colour_of(source)
            self.console.print(Panel(str(item.content), title=source, title_align="left", border_style=color))
        elif kind == "TaskResult":
            self.note(f"crew finished: {item.stop_reason}")

    # ------------------------------------------------------------------ training progress

    def train_event(self, event: dict[str, Any]) -> None:
        kind = event.get("event")
        if kind == "start":
            self._progress = Progress(TextColumn("  training"), BarColumn(),
                                      TextColumn("{task.completed}/{task.total} steps"),
                                      TextColumn("loss {task.fields[loss]}"), TimeElapsedColumn(),
                                      console=self.console, transient=True)
            self._progress.start()
            self._task = self._progress.add_task("train", total=int(event.get("max_steps") or 0), loss="…")
        elif kind == "log" and self._progress is not None:
            self._progress.update(self._task, completed=event["step"], total=event.get("max_steps"),
                                  loss=f"{event['loss']:.3f}")
        elif kind == "done" and self._progress is not None:
            self._progress.stop()
            self._progress = None

    # ------------------------------------------------------------------ the end

    def summary(self, ctx, report: Path) -> None:
        """One row per attempt; scores carry their split, sample count and seed in the title."""
        n = ctx.records[-1].eval.samples if ctx.records and ctx.records[-1].eval else 0
        table = Table(title=f"attempts · held-out {ctx.data.heldout_split}, n={n}, seed {ctx.spec.seed}")
        metrics = summary_metrics(ctx.scenario.primary_metric, ctx.spec.gates,
                                  {k for r in ctx.records if r.eval for k in r.eval.metrics})
        table.add_column("#")
        table.add_column("config")
        table.add_column("status")
        table.add_column("loss")
        for m in metrics:  # spaces let rich wrap long metric names instead of truncating them
            table.add_column(m.replace("_", " ").replace("/", "/ "), justify="right")
        table.add_column("time s (est)", justify="right")
        table.add_column("tok/s · MFU", justify="right")
        table.add_column("diagnosis → decision")
        for r in ctx.records:
            c, t = r.config, r.result
            steps = f"{t.steps} steps" if c.max_steps > 0 else f"ep {c.epochs:g}"
            config = f"{c.method} r{c.lora_rank} lr {c.learning_rate:g} {steps} b{c.effective_batch}"
            table.add_row(
                str(r.attempt), config, t.status,
                f"{t.train_loss:.3f}" if t.train_loss is not None else "-",
                *[f"{r.eval.metrics[m]:.1%}" if r.eval and m in r.eval.metrics else "-" for m in metrics],
                f"{t.wall_seconds:.0f}" + (f" ({t.estimated_seconds:.0f})" if t.estimated_seconds else ""),
                (f"{t.tokens_per_second:.0f}" if t.tokens_per_second else "-")
                + (f" · {t.model_flops_utilization:.0%}" if t.model_flops_utilization is not None else ""),
                f"{r.diagnosis.label if r.diagnosis else '-'} → {r.decision.action if r.decision else '-'}",
            )
        self.out.print(table)
        self.out.print(f"provider: {provider_line(ctx.spec, ctx.records)}")
        self.out.print(outcome_sentence(ctx.spec, ctx.records))
        self.out.print(f"report: {report}")
        best = ctx.best
        if best is not None and best.result.adapter_path:
            self.out.print(f"best adapter: {best.result.adapter_path} (attempt {best.attempt})")


def summary_metrics(primary: str, gates: dict[str, float], present: set[str]) -> list[str]:
    """The columns a terminal has room for: the target's metric, the same metric on the other
    groups (e.g. trained vs novel phrasings), and the gates; report.md has every metric."""
    group, _, name = primary.rpartition("/")
    same = sorted(m for m in present if group and m != primary and m.rpartition("/")[2] == name and "/" in m)
    return [m for m in [primary, *same, *gates] if m in present]
