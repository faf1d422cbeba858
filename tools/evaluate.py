"""The evaluate tool: batched greedy generation on a held-out split, scored by the scenario.

Generation is batched with left padding and the KV cache on, which is what makes evaluating every
attempt affordable on a CPU (see bench/). Scoring is the scenario's: it gets the expected reply and
the generated one and returns per-sample values in [0, 1]; this module only averages them, per
held-out group too, and keeps a few failures for the Judge to explain.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, cast

from .contracts import EvalReport, Failure, GroupMetrics, LeakCheck

if TYPE_CHECKING:  # the model libraries load when a model does, not with this module
    import torch
    from transformers import PreTrainedTokenizerBase


@dataclass(frozen=True)
class SampleScore:
    values: dict[str, float]  # metric name -> value in [0, 1] for this sample
    reason: str = ""  # why it failed, empty when every value is 1


Scorer = Callable[[str, str], SampleScore]  # (expected, generated) -> score


class CausalLM(Protocol):
    """What generation needs of a model: a transformers causal LM, or a PEFT model around one."""

    def parameters(self) -> Iterator[torch.nn.Parameter]: ...

    def generate(self, *args: Any, **kwargs: Any) -> Any: ...

    def to(self, *args: Any, **kwargs: Any) -> Any: ...


@dataclass
class LoadedModel:
    model: CausalLM
    tokenizer: PreTrainedTokenizerBase
    description: str
    extra: dict = field(default_factory=dict)


def load_model(base_model: str, adapter_path: str | None = None, threads: int = 2) -> LoadedModel:
    """Base model, plus a PEFT adapter if given, ready for generation on the best local device."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(threads)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    source = adapter_path or base_model
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
    except Exception as exc:  # a broken adapter dir must say which dir, not a library trace
        if not adapter_path:
            raise
        raise _bad_adapter(adapter_path, exc) from exc
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    base = AutoModelForCausalLM.from_pretrained(base_model,
                                                dtype=torch.float32 if device == "cpu" else torch.bfloat16)
    model: CausalLM = base
    if adapter_path and _is_peft_adapter(adapter_path):
        from peft import PeftModel

        try:
            model = PeftModel.from_pretrained(base, adapter_path)
        except Exception as exc:  # see above
            raise _bad_adapter(adapter_path, exc) from exc
    elif adapter_path:  # a full fine-tune saved a whole model
        try:
            model = AutoModelForCausalLM.from_pretrained(adapter_path, dtype=base.dtype)
        except Exception as exc:  # see above
            raise _bad_adapter(adapter_path, exc) from exc
    model.to(device).eval()
    return LoadedModel(model=model, tokenizer=tokenizer, description=f"{base_model} + {adapter_path or 'no adapter'}")


def _bad_adapter(path: str, exc: Exception) -> ValueError:
    return ValueError(f"{path}: not a loadable adapter ({type(exc).__name__}: {str(exc)[:300]}); "
                      "the folder is incomplete or corrupt: retrain that attempt")


def _is_peft_adapter(path: str) -> bool:
    from pathlib import Path

    return (Path(path) / "adapter_config.json").exists()


def generate(
    loaded: LoadedModel,
    prompts: Sequence[list[dict]],
    *,
    max_new_tokens: int = 96,
    batch_size: int = 32,
    grammar: str | None = None,
) -> list[str]:
    """Greedy replies to chat prompts, `batch_size` at a time, longest first to waste less padding;
    given a Lark `grammar`, every reply keeps to it (see generate_cut)."""
    return generate_cut(loaded, prompts, max_new_tokens=max_new_tokens, batch_size=batch_size, grammar=grammar)[0]


def generate_cut(
    loaded: LoadedModel,
    prompts: Sequence[list[dict]],
    *,
    max_new_tokens: int = 96,
    batch_size: int = 32,
    viable: Callable[[str], bool] | None = None,
    grammar: str | None = None,
) -> tuple[list[str], set[int]]:
    """`generate`, where a reply that `viable` rejects stops there (its sequence is done; the batch
    goes on while any other runs), and, given a Lark `grammar`, every token is one the grammar allows
    (tools/constrained.py). Returns the replies and the indices of those cut."""
    import torch
    from transformers import LogitsProcessorList, StoppingCriteriaList

    from .constrained import grammar_processor

    tokenizer, model = loaded.tokenizer, loaded.model
    texts = [tokenizer.apply_chat_template(list(p), tokenize=False, add_generation_prompt=True) for p in prompts]
    order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
    replies: list[str] = [""] * len(texts)
    cut: set[int] = set()
    device = next(model.parameters()).device
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        batch = tokenizer([texts[i] for i in idx], return_tensors="pt", padding=True,
                          add_special_tokens=False).to(device)
        prompt_len = batch["input_ids"].shape[1]
        stop = _Cutter(tokenizer, prompt_len, viable) if viable is not None else None
        extra: dict[str, Any] = {"stopping_criteria": StoppingCriteriaList([stop.criterion()])} if stop else {}
        if grammar is not None:
            extra["logits_processor"] = LogitsProcessorList([grammar_processor(tokenizer, grammar)])
        with torch.inference_mode():
            out = model.generate(
                **batch,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                use_cache=True,
                pad_token_id=tokenizer.pad_token_id,
                eos_token_id=tokenizer.eos_token_id,
                **extra,
            )
        new_tokens = out[:, prompt_len:]
        for row, (i, tokens) in enumerate(zip(idx, new_tokens, strict=True)):
            # One sequence decodes to one str; decode's annotation (str | list[str]) also covers a batch.
            replies[i] = cast(str, tokenizer.decode(tokens, skip_special_tokens=True)).strip()
            if stop is not None and row in stop.cut:
                cut.add(i)
    return replies, cut


class _Cutter:
    """Per sequence: done once its text so far can no longer become a reply that scores (the
    scenario's `reply_viable`). Wrapped in a transformers StoppingCriteria by `criterion`."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, prompt_len: int, viable: Callable[[str], bool]):
        self.tokenizer, self.prompt_len, self.viable = tokenizer, prompt_len, viable
        self.cut: set[int] = set()

    def __call__(self, input_ids: torch.Tensor) -> torch.Tensor:
        import torch

        done = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
        for row in range(input_ids.shape[0]):
            if row not in self.cut:
                text = cast(str, self.tokenizer.decode(input_ids[row, self.prompt_len:], skip_special_tokens=True))
                if self.viable(text):
                    continue
                self.cut.add(row)
            done[row] = True
        return done

    def criterion(self) -> Any:
        from transformers import StoppingCriteria  # here, not at import: the model libraries load with a model

        cutter = self

        class NotViable(StoppingCriteria):
            def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
                return cutter(input_ids)

        return NotViable()


def prompt_of(row: dict, system_prompt: str) -> list[dict]:
    """The chat prompt of a held-out row: the persona as system message, then all but the reply."""
    messages = [m for m in row["messages"][:-1] if m["role"] != "system"]
    return ([{"role": "system", "content": system_prompt}] if system_prompt else []) + messages


def score_replies(
    rows: Sequence[dict],
    replies: Sequence[str],
    scorer: Scorer,
    *,
    split: str,
    seed: int,
    primary_metric: str,
    leak_check: LeakCheck | None = None,
    max_failures: int = 8,
    max_examples: int = 6,
) -> EvalReport:
    """Pure: turn generations into an EvalReport (overall, per group, a few failures)."""
    if len(rows) != len(replies):
        raise ValueError(f"{len(rows)} held-out rows but {len(replies)} replies")
    totals: dict[str, float] = {}
    groups: dict[str, dict[str, float]] = {}
    group_sizes: dict[str, int] = {}
    excluded = 0  # rows the scorer returned no value for (an empty reference): never averaged in
    failures: list[Failure] = []
    examples: list[Failure] = []
    for row, reply in zip(rows, replies, strict=True):
        expected = row["messages"][-1]["content"]
        score = scorer(expected, reply)
        group = row.get("group", "all")
        if not score.values:
            excluded += 1
            continue
        group_sizes[group] = group_sizes.get(group, 0) + 1
        for name, value in score.values.items():
            totals[name] = totals.get(name, 0.0) + value
            groups.setdefault(group, {})[name] = groups.get(group, {}).get(name, 0.0) + value
        sample = Failure(prompt=row["messages"][-2]["content"], expected=expected, got=reply[:500],
                         reason=score.reason, group=group)
        if score.reason and len(failures) < max_failures:
            failures.append(sample)
        if len(examples) < max_examples:
            examples.append(sample)
    n = len(rows) - excluded
    metrics = {k: v / n for k, v in totals.items()} if n else {}
    if "/" in primary_metric and n:  # a group's metric, e.g. "novel_phrasing/action_exact_match"
        name = primary_metric.split("/", 1)[1]
        for group, size in group_sizes.items():  # every group's, so the gap between them is in view
            if name in groups.get(group, {}):
                metrics[f"{group}/{name}"] = groups[group][name] / size
    if primary_metric not in metrics and n:
        raise ValueError(f"primary metric {primary_metric!r} is not among the scorer's metrics {sorted(metrics)}")
    return EvalReport(
        split=split,
        samples=n,
        seed=seed,
        metrics=metrics,
        groups={g: GroupMetrics(samples=group_sizes[g], metrics={k: v / group_sizes[g] for k, v in m.items()})
                for g, m in groups.items()} if len(groups) > 1 else {},
        primary_metric=primary_metric,
        failures=failures,
        examples=examples,
        leak_check=leak_check,
        excluded=excluded,
    )


def evaluate(
    loaded: LoadedModel,
    rows: Sequence[dict],
    scorer: Scorer,
    *,
    system_prompt: str,
    split: str,
    seed: int,
    primary_metric: str,
    leak_check: LeakCheck | None = None,
    max_new_tokens: int = 96,
    batch_size: int = 32,
    viable: Callable[[str], bool] | None = None,
    grammar: str | None = None,
) -> EvalReport:
    """Generate for every held-out row and score it."""
    return evaluate_with_replies(loaded, rows, scorer, system_prompt=system_prompt, split=split, seed=seed,
                                 primary_metric=primary_metric, leak_check=leak_check,
                                 max_new_tokens=max_new_tokens, batch_size=batch_size, viable=viable,
                                 grammar=grammar)[0]


def evaluate_with_replies(
    loaded: LoadedModel,
    rows: Sequence[dict],
    scorer: Scorer,
    *,
    system_prompt: str,
    split: str,
    seed: int,
    primary_metric: str,
    leak_check: LeakCheck | None = None,
    max_new_tokens: int = 96,
    batch_size: int = 32,
    viable: Callable[[str], bool] | None = None,
    grammar: str | None = None,
) -> tuple[EvalReport, list[str]]:
    """`evaluate`, plus every reply in row order (the LLM judge reads them; the report keeps a few).
    `viable`: the scenario's test of a partial reply; a reply it rejects stops there (see generate_cut).
    `grammar`: the scenario's reply grammar; every reply is decoded under it (see generate_cut)."""
    import torch

    torch.manual_seed(seed)
    started = time.monotonic()
    replies, cut = generate_cut(loaded, [prompt_of(r, system_prompt) for r in rows],
                                max_new_tokens=max_new_tokens, batch_size=batch_size, viable=viable,
                                grammar=grammar)
    elapsed = time.monotonic() - started
    report = score_replies(rows, replies, scorer, split=split, seed=seed, primary_metric=primary_metric,
                           leak_check=leak_check)
    generated = sum(len(loaded.tokenizer(r, add_special_tokens=False)["input_ids"]) for r in replies)
    return report.model_copy(update={"wall_seconds": elapsed, "cut_replies": len(cut),
                                     "constrained": grammar is not None,
                                     "generated_tokens_per_second": generated / elapsed if elapsed else None}), replies
