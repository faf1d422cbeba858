"""Scenarios backed by a dataset file or a hub id: load, map columns, split, score free-text answers.

`DatasetBuilder` is a scenario's `build_data`: it reads a local .jsonl/.json/.csv/.tsv/.parquet or a hub
dataset (`tools/rows.py`), detects (or takes) the column mapping (`tools/data_layouts.py`), turns rows
into chat messages, and splits them deterministically and leak-free (`tools/splits.py`). A scenario's
default hub dataset falls back to the sample shipped with the scenario when the hub cannot be reached,
at once rather than after a network timeout. `with_data` applies `tunecrew run --data/--columns/--heldout`;
a scenario that generates its own data may read a user's file its own way (`ReadsUserData`: the task
agent, under its reply contract, `--contract`).

Scoring compares the final answer of a reply (`extract_answer`) with the reference's: token F1
is the primary metric, because a reasoning model rarely repeats a reference answer word for word.
"""

from __future__ import annotations

import os
import random
import re
import socket
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol, runtime_checkable
from urllib.parse import urlparse

from tunecrew.tools.data_layouts import (
    AmbiguousColumns,
    Layout,
    columns_of,
    detect_layout,
    format_from_mapping,
    row_extras,
    to_messages,
)
from tunecrew.tools.evaluate import SampleScore
from tunecrew.tools.rows import SUPPORTED_SUFFIXES, DataError, brief_list, load_rows, short_repr
from tunecrew.tools.scenario import Scenario, ScenarioData
from tunecrew.tools.splits import check_heldout, drop_leaked, leak_check, split_rows
from tunecrew.tools.text_metrics import exact_match, extract_answer, rouge_l, token_f1, token_recall

# Roles a --columns mapping may name (see tools/data_layouts.py format_from_mapping).
ROLES = ("prompt", "response", "reasoning", "input", "system", "completion", "chosen", "rejected", "messages", "text",
         "tools")
_ROLE_ORDER = {r: i for i, r in enumerate(("messages", "prompt", "input", "reasoning", "response", "completion",
                                           "chosen", "rejected", "text", "system", "tools"))}
HELDOUT_FRACTION = 0.1
MAX_HELDOUT = 64  # every held-out row is generated for at every attempt: cap the cost on a 20k-row dataset
HUB_PROBE_SECONDS = 3.0  # how long to wait for the hub before using the shipped sample
_HUB_CONFIG_RE = re.compile(r"([A-Za-z0-9][\w.-]*/[\w.-]+):([\w.-]+)")
_TRUE = {"1", "true", "yes", "on"}

RUBRIC_METRICS = {"accuracy": "answer_f1", "reasoning": "rouge_l", "completeness": "answer_recall",
                  "clarity": "format_compliance"}


# --------------------------------------------------------------------------- options


def parse_columns(text: str) -> dict[str, str]:
    """`prompt=Question,response=Response` -> {"prompt": "Question", "response": "Response"}.

    Raises ValueError naming the bad pair, so the command line can answer in one line.
    """
    mapping: dict[str, str] = {}
    for pair in (p.strip() for p in text.split(",")):
        role, sep, column = (s.strip() for s in pair.partition("="))
        if not sep or not role or not column:
            raise ValueError(f"--columns {text!r}: {pair!r} is not ROLE=COLUMN; write e.g. "
                             "prompt=Question,response=Response,reasoning=Complex_CoT")
        if "=" in column:
            raise ValueError(f"--columns {text!r}: {pair!r} holds two '='; separate ROLE=COLUMN pairs with commas")
        if role not in ROLES:
            raise ValueError(f"--columns {text!r}: unknown role {role!r}; roles are {', '.join(ROLES)}")
        if role in mapping:
            raise ValueError(f"--columns {text!r}: role {role!r} is given twice")
        mapping[role] = column
    return mapping


def split_hub_config(source: str) -> tuple[str, str | None]:
    """`owner/name:config` -> (`owner/name`, `config`); anything else (a file, a plain id) unchanged."""
    match = _HUB_CONFIG_RE.fullmatch(source)
    if match and not Path(source).exists():
        return match.group(1), match.group(2)
    return source, None


def is_hub_id(source: str) -> bool:
    return not Path(source).exists() and bool(re.fullmatch(r"[A-Za-z0-9][\w.-]*/[\w.-]+", source)) \
        and Path(source).suffix.lower() not in SUPPORTED_SUFFIXES


def hub_offline() -> bool:
    """True when the user told Hugging Face libraries not to touch the network."""
    return any(os.environ.get(v, "").strip().lower() in _TRUE for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))


def hub_reachable(timeout: float = HUB_PROBE_SECONDS) -> bool:
    """Can a TCP connection to the hub endpoint be opened within `timeout` seconds?

    Much cheaper than letting `datasets` retry an unreachable host for minutes.
    """
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    host, port = url.hostname or "huggingface.co", url.port or (80 if url.scheme == "http" else 443)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


# --------------------------------------------------------------------------- data


@dataclass(frozen=True)
class DatasetBuilder:
    """A scenario's `build_data`: seed -> ScenarioData from a dataset file or hub id."""

    name: str  # the scenario's name, used in the held-out split's name
    source: str | None  # local file or hub id; None: the user must give --data
    config: str | None = None  # hub configuration, e.g. "en"
    split: str = "train"  # the hub split (or JSON key) the rows come from
    columns: dict[str, str] | None = None  # role -> column; None: detect from the column names
    columns_origin: str = "the scenario's mapping"  # shown beside the columns: who chose them
    fallback: Path | None = None  # shipped sample used when the hub cannot be reached
    heldout: float | None = None  # >= 1: that many rows; < 1: that fraction; None: 10%, at most MAX_HELDOUT
    # --heldout-data: a file or hub id scored as the held-out split instead of rows split from `source`
    # (a user's own test set, as LLaMA-Factory's eval_dataset); read with the same columns and checks.
    heldout_source: str | None = None
    max_rows: int | None = None  # use at most this many rows (a seeded sample), e.g. to keep a test short
    # The scenario's own reading of rows (rows, label, notes) -> rows, before layout detection; not with
    # --columns. The task agent renders llama-task-agent's instruction/analysis/action/final rows.
    read: Callable[[list[dict], str, list[str]], list[dict]] | None = None
    # The scenario's test of the converted rows (rows, label, notes) -> the rows it keeps, before the split;
    # it notes what it left out. The task agent keeps the rows whose reference keeps its reply contract.
    check: Callable[[list[dict], str, list[str]], list[dict]] | None = None

    def __call__(self, seed: int) -> ScenarioData:
        if self.source is None:
            raise DataError(f"scenario {self.name} needs a dataset: tunecrew run --data FILE_OR_HUB_ID "
                            "[--columns prompt=COL,response=COL]")
        rows, label, notes = self._load()
        if self.max_rows is not None and len(rows) > self.max_rows:
            keep = sorted(random.Random(seed).sample(range(len(rows)), self.max_rows))
            notes.append(f"using {self.max_rows} of {len(rows)} rows (sampled with seed {seed})")
            rows = [rows[i] for i in keep]
        converted = self._convert(rows, label, notes)
        if self.heldout_source is not None:
            return self._with_heldout_file(converted, label, notes)
        n_heldout = self._heldout_rows(len(converted), label)
        train, heldout = split_rows(converted, n_heldout / len(converted), seed)
        self._check_heldout(heldout, label, notes)
        leak = leak_check(train, heldout)
        if not leak.passed:  # split_rows groups equal prompts, so this is a bug, not a data problem
            raise DataError(f"{label}: held-out prompts also in training: {leak.examples}")
        split = f"{self.name}:{_short(label)}-heldout(seed={seed})"
        return ScenarioData(train=train, heldout=heldout, heldout_split=split, notes=notes, source=label)

    @staticmethod
    def _check_heldout(heldout: list[dict], label: str, notes: list[str]) -> None:
        """check_heldout, its refusal naming what the scenario's check left out: a held-out split too
        small because the rows were dropped needs another fix than more rows."""
        try:
            check_heldout(heldout, label)
        except DataError as exc:
            left_out = [note for note in notes if "left out" in note]
            if not left_out:
                raise
            raise DataError(f"{exc}. Rows were left out: {'; '.join(left_out)}") from None

    def _convert(self, rows: list[dict], label: str, notes: list[str]) -> list[dict]:
        """Rows as chat messages (plus the extras a row carries), read the scenario's way, mapped by the
        given or detected columns and kept by the scenario's check; what was decided goes to `notes`."""
        if self.read is not None and not self.columns:
            rows = self.read(rows, label, notes)
        columns = columns_of(rows)
        try:
            layout: Layout | None = None
            if self.columns:
                fmt, cmap = format_from_mapping(self.columns, columns)
            else:
                layout = detect_layout(columns, rows[0])
                fmt, cmap = layout.format, dict(layout.columns)
        except AmbiguousColumns as exc:  # already names the --columns mapping to pass
            raise AmbiguousColumns(f"{label}: {exc}") from None
        except DataError as exc:
            raise DataError(f"{label}: {exc}; pass --columns prompt=COL,response=COL") from None
        if fmt == "text":
            raise DataError(f"{label}: only a text column ({short_repr(cmap['text'])}) among {brief_list(columns)}; "
                            "scoring needs a prompt and a reference answer: pass --columns prompt=COL,response=COL")
        ordered = sorted(cmap.items(), key=lambda kv: _ROLE_ORDER.get(kv[0], 99))
        shown = ", ".join(f"{role}={col}" for role, col in ordered)
        notes.append(f"columns: {fmt} ({shown}), {self.columns_origin if self.columns else 'detected'}")
        if layout is not None:
            notes.append(f"layout: {layout.name} (docs/data-formats.md)")
        converted = [{"messages": _checked(to_messages(row, fmt, cmap, where=f"{label} row {i}"), f"{label} row {i}"),
                      **row_extras(row, cmap)}  # a chat row's `tools` ride along with its messages
                     for i, row in enumerate(rows)]
        return self.check(converted, label, notes) if self.check is not None else converted

    def _with_heldout_file(self, train: list[dict], source_label: str, notes: list[str]) -> ScenarioData:
        """Train on every row of the data and score on `heldout_source`'s rows; a training row whose prompt
        the held-out file also has is left out of training (noted), so no score is on a trained prompt."""
        assert self.heldout_source is not None
        source, config = split_hub_config(self.heldout_source)
        label = f"--heldout-data {self.heldout_source}"
        rows = load_rows(source, split=self.split if Path(source).exists() else "test", config=config)
        notes.append(f"held-out data: {self.heldout_source}, {len(rows)} rows, scored as they are (not split "
                     "from --data)")
        heldout_notes: list[str] = []
        heldout = self._convert(rows, label, heldout_notes)
        notes.extend(f"held-out data: {note}" for note in heldout_notes)  # told apart from the training file's
        self._check_heldout(heldout, label, heldout_notes)
        kept, dropped = drop_leaked(train, heldout)
        if dropped:
            notes.append(f"left {dropped} training rows out: their prompts are also in the held-out data")
        if not kept:
            raise DataError(f"{label}: every training row's prompt is also in the held-out data; nothing is left "
                            "to train on: give held-out rows the training data does not have")
        split = f"{self.name}:{_short(self.heldout_source)}(heldout-data)"
        return ScenarioData(train=kept, heldout=heldout, heldout_split=split, notes=notes, source=source_label)

    def _heldout_rows(self, n: int, label: str) -> int:
        if self.heldout is None:
            count = min(MAX_HELDOUT, round(n * HELDOUT_FRACTION))
        elif self.heldout >= 1:
            count = int(self.heldout)
        else:
            count = round(n * self.heldout)
        if count >= n:
            raise DataError(f"{label}: a held-out split of {count} rows leaves no training rows out of {n}; "
                            "lower --heldout")
        return count

    def _load(self) -> tuple[list[dict], str, list[str]]:
        """(rows, label, notes): the source's rows, or the shipped sample when its hub is out of reach."""
        assert self.source is not None
        label = self.source + (f":{self.config}" if self.config else "")
        if self.fallback is None or not is_hub_id(self.source):
            rows = load_rows(self.source, split=self.split, config=self.config)
            return rows, label, [f"data: {label}, {len(rows)} rows"]
        why = "HF_HUB_OFFLINE is set" if hub_offline() else None
        if why is None and not hub_reachable():
            why = "the Hugging Face Hub cannot be reached"
        if why is None or hub_offline():  # offline, a dataset already in the local cache still loads, quickly
            try:
                rows = load_rows(self.source, split=self.split, config=self.config)
                return rows, label, [f"data: {label}, {len(rows)} rows"]
            except DataError as exc:
                why = why or f"loading it failed ({str(exc)[:200].replace('[', '(').replace(']', ')')})"
        rows = load_rows(self.fallback)
        sample = f"{self.fallback.parent.parent.name}/{self.fallback.parent.name}/{self.fallback.name}"
        return rows, str(self.fallback), [f"data: {why}, so the shipped sample {sample} ({len(rows)} rows) stands in "
                                          f"for {label}; pass --data FILE_OR_HUB_ID to use other data"]


def _checked(messages: list[dict], where: str) -> list[dict]:
    """A scored row needs a prompt and ends with the reference answer."""
    if messages[-1]["role"] != "assistant" or not any(m["role"] == "user" for m in messages[:-1]):
        raise DataError(f"{where}: needs a user prompt followed by an assistant answer to be scored; "
                        f"got roles {brief_list(m['role'] for m in messages)}")
    return messages


def _short(label: str) -> str:
    path = Path(label)
    return "sample" if path.name == "sample.jsonl" else (path.stem if path.suffix else label)


@runtime_checkable
class ReadsUserData(Protocol):
    """A `build_data` that generates its own rows and also reads a user's file its own way."""

    def with_user_data(self, scenario: Scenario, *, data: str | None, columns: dict[str, str] | None,
                       heldout: float | None, contract: str | None, heldout_data: str | None) -> Scenario: ...


def with_data(scenario: Scenario, data: str | None = None, columns: dict[str, str] | None = None,
              heldout: float | None = None, contract: str | None = None,
              heldout_data: str | None = None) -> Scenario:
    """The scenario with `tunecrew run --data/--columns/--heldout/--contract/--heldout-data` applied (unchanged
    when all are None).

    A new `--data` drops the scenario's column mapping (it was written for its own dataset) unless
    `--columns` gives one, and never falls back to the shipped sample: the user asked for that data.
    `--contract` (a file declaring the task agent's reply contract) goes to a scenario that reads it.
    `--heldout-data` scores on the user's own held-out rows instead of a split of the training data.
    """
    if data is None and columns is None and heldout is None and contract is None and heldout_data is None:
        return scenario
    if heldout is not None and heldout_data is not None:
        raise DataError(f"--heldout {heldout:g} and --heldout-data {heldout_data}: give one: --heldout splits "
                        "held-out rows off the training data, --heldout-data scores on a file of its own")
    builder = scenario.build_data
    if isinstance(builder, ReadsUserData):
        return builder.with_user_data(scenario, data=data, columns=columns, heldout=heldout, contract=contract,
                                      heldout_data=heldout_data)
    if contract is not None:
        raise DataError(f"--contract {contract}: declares the task agent's reply contract; it works with "
                        "tunecrew run task-agent --data FILE --contract FILE, not with scenario "
                        f"{scenario.name}")
    if not isinstance(builder, DatasetBuilder):
        raise DataError(f"scenario {scenario.name} generates its own data; --data, --columns, --heldout and "
                        "--heldout-data work with "
                        "dataset scenarios (medical-reasoning, legal-reasoning), task-agent, or --data and no "
                        "scenario name")
    changes: dict = {}
    if data is not None:
        source, config = split_hub_config(data)
        changes.update(source=source, config=config, fallback=None, columns=None)
    if columns is not None:
        changes.update(columns=columns, columns_origin="from --columns")
    if heldout is not None:
        changes["heldout"] = heldout
    if heldout_data is not None:
        changes["heldout_source"] = heldout_data
    return replace(scenario, build_data=replace(builder, **changes))


# --------------------------------------------------------------------------- scoring


def score_reply(expected: str, got: str) -> SampleScore:
    """Score a reply against the reference reply: its final answer, its whole text, its format.

    answer_f1 (primary), answer_exact_match and answer_recall compare `extract_answer` of both;
    exact_match and rouge_l compare the whole replies (reasoning included); format_compliance says the
    reply gave a non-empty final answer, after a closed `</think>` when the reference has one.
    """
    if not expected.strip():  # nothing to compare with: an empty reply would score 1.0 against it
        return SampleScore(values={}, reason="empty reference: not scored")
    reference, answer = extract_answer(expected), extract_answer(got)
    wants_think = "</think>" in expected
    closed = not wants_think or "</think>" in got
    format_ok = closed and bool(answer.strip())
    f1, em = token_f1(answer, reference), exact_match(answer, reference)
    values = {"answer_f1": f1, "answer_exact_match": em, "answer_recall": token_recall(answer, reference),
              "exact_match": exact_match(got, expected), "rouge_l": rouge_l(got, expected),
              "format_compliance": float(format_ok)}
    if em and format_ok:
        reason = ""
    elif not closed:
        reason = "no final answer: the reply never closed </think>"
    elif not answer.strip():
        reason = "no final answer: nothing after the reasoning"
    elif f1 == 0:
        reason = f"wrong answer: expected {_clip(reference)!r}, got {_clip(answer)!r}"
    else:
        reason = f"partial answer: F1 {f1:.2f}, expected {_clip(reference)!r}, got {_clip(answer)!r}"
    return SampleScore(values=values, reason=reason)


def _clip(text: str, limit: int = 120) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "…"


# --------------------------------------------------------------------------- base model and scenario


def tiny_model_builder(instruction: str) -> Callable[[Path, ScenarioData], str]:
    """`build_base_model` for the offline default: a tiny Llama whose tokenizer is trained on this data."""

    def build(out_dir: Path, data: ScenarioData) -> str:
        from tunecrew.tools.domain import DOMAINS
        from tunecrew.tools.tinymodel import TinyModelSpec, create_tiny_model

        # The tokenizer needs the vocabulary, not every row: 5,000 rows keep a 20k-row dataset quick.
        texts = [m["content"] for row in data.train[:5000] for m in row["messages"]]
        texts += [d.persona for d in DOMAINS] + [instruction]
        spec = TinyModelSpec(added_tokens=("<think>", "</think>"), max_positions=1024)
        return str(create_tiny_model(out_dir, texts, spec))

    return build


def dataset_scenario(*, name: str, description: str, instruction: str, builder: DatasetBuilder,
                     target: float = 0.6, max_new_tokens: int = 512, domain_hint: str | None = None,
                     max_attempts: int = 3) -> Scenario:
    """A Scenario scored on the final answer (answer_f1), with the offline tiny model as default base."""
    return Scenario(
        name=name, description=description, instruction=instruction, primary_metric="answer_f1", target=target,
        gates={}, max_attempts=max_attempts, max_new_tokens=max_new_tokens, rubric_metrics=dict(RUBRIC_METRICS),
        build_data=builder, build_base_model=tiny_model_builder(instruction), scorer=score_reply,
        domain_hint=domain_hint,
    )
