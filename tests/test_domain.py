"""Domain detection that can say "general" (issue 15 item 3).

The labelled set is tests/fixtures/domains/ (look-alikes of public datasets, written by make.py
there); docs/domains.md reports the accuracy these tests hold the detector to."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from tunecrew.agents import policy
from tunecrew.agents.state import RunContext
from tunecrew.agents.toolkit import Toolkit
from tunecrew.memory.ledger import Ledger
from tunecrew.memory.store import AttemptMemory
from tunecrew.scenarios.task_agent.scenario import SCENARIO
from tunecrew.tools import domain as domain_module
from tunecrew.tools.contracts import BaseModelInfo, DomainCard, RunSpec
from tunecrew.tools.data_layouts import columns_of, detect_layout, to_messages
from tunecrew.tools.domain import GENERAL, GENERAL_BELOW, detect_domain, is_unsure, shared_system_prompt
from tunecrew.tools.profile import profile_rows
from tunecrew.tools.run_dir import RunDir
from tunecrew.tools.scenario import ScenarioData

from factories import make_hardware, make_profile, make_record

FIXTURES = Path(__file__).parent / "fixtures" / "domains"
LABELS = json.loads((FIXTURES / "labels.json").read_text())
GENERAL_LABEL = GENERAL.label

# Measured (docs/domains.md): top-1 correct sets out of each split after the change; before it,
# 23 of 28 and 7 of 10.
MEASURED = {"dev": 28, "heldout": 9}


def _rows(name: str) -> list[dict]:
    return [json.loads(line) for line in (FIXTURES / f"{name}.jsonl").read_text().splitlines() if line.strip()]


def _profile(name: str):
    return profile_rows(_rows(name), source=name)


@pytest.fixture(scope="module")
def profiles() -> dict:
    return {name: _profile(name) for name in LABELS}


def test_the_labelled_set_is_what_make_py_writes():
    assert len(LABELS) >= 20
    assert all(10 <= meta["rows"] <= 30 and len(_rows(name)) == meta["rows"] for name, meta in LABELS.items())
    assert sum(meta["label"] == GENERAL_LABEL for meta in LABELS.values()) >= 10


@pytest.mark.parametrize("split", sorted(MEASURED))
def test_accuracy_on_the_labelled_set_is_at_least_what_docs_report(profiles, split):
    names = [n for n, meta in LABELS.items() if meta["split"] == split]
    got = {n: detect_domain(profiles[n])[0].domain for n in names}
    right = sum(got[n] == LABELS[n]["label"] for n in names)
    assert right >= MEASURED[split], {n: got[n] for n in names if got[n] != LABELS[n]["label"]}
    # The harmful error is a wrong domain persona: when unsure the detector says general instead.
    assert not [n for n in names if got[n] not in (LABELS[n]["label"], GENERAL_LABEL)]
    general = [n for n in names if LABELS[n]["label"] == GENERAL_LABEL]
    assert all(got[n] == GENERAL_LABEL for n in general)


def test_the_threshold_sits_in_the_gap_the_dev_set_measured(profiles):
    """GENERAL_BELOW is above every general set's best domain score and under every domain set's."""
    dev = [n for n, meta in LABELS.items() if meta["split"] == "dev"]
    general_best = max(max((c.score for c in detect_domain(profiles[n], top=10, general_below=0.0)
                            if c.domain != GENERAL_LABEL), default=0.0)
                       for n in dev if LABELS[n]["label"] == GENERAL_LABEL)
    domain_worst = min(detect_domain(profiles[n], general_below=0.0)[0].score
                       for n in dev if LABELS[n]["label"] != GENERAL_LABEL)
    assert general_best < GENERAL_BELOW < domain_worst
    midway = (general_best + domain_worst) / 2
    assert abs(GENERAL_BELOW - midway) <= 0.01


@pytest.mark.parametrize("name", ["alpaca", "orca_dpo", "ultrafeedback", "dolly"])
def test_the_reported_failures_are_now_general(profiles, name):
    """Alpaca and a preference set were a task-management agent at 0.23/0.35: their persona ("one tool
    call or one short reply per request") trained, evaluated and judged a general model."""
    top = detect_domain(profiles[name])[0]
    assert top.domain == GENERAL_LABEL and top.persona == GENERAL.persona
    assert "tool call" not in top.persona
    assert is_unsure(top.domain, top.score)


@pytest.mark.parametrize(("scenario", "label"), [("task_agent", "task-management agent"),
                                                  ("medical_reasoning", "medical reasoning"),
                                                  ("legal_reasoning", "legal reasoning")])
def test_the_project_scenarios_keep_their_domain(scenario, label):
    import importlib

    module = importlib.import_module(f"tunecrew.scenarios.{scenario}.scenario")
    data = module.SCENARIO.build_data(0)
    top = detect_domain(profile_rows(data.train, source=scenario))[0]
    assert top.domain == label and not is_unsure(top.domain, top.score)


# --------------------------------------------------------------------------- the rows' own system prompts


def _as_messages(name: str) -> list[dict]:
    rows = _rows(name)
    layout = detect_layout(columns_of(rows), rows[0])
    return [{"messages": to_messages(r, layout.format, dict(layout.columns), where=name)} for r in rows]


def test_one_shared_system_prompt_is_kept_as_the_persona(profiles):
    own = shared_system_prompt(_as_messages("openai_chat_system"))
    assert own is not None and own.startswith("You are Pip")
    top = detect_domain(profiles["openai_chat_system"], own_system_prompt=own)[0]
    assert top.domain == GENERAL_LABEL and top.persona == own
    assert "all 12 rows carry the same system prompt: kept as the persona" in top.evidence


def test_rows_with_their_own_system_prompts_are_named_when_the_persona_replaces_them(profiles):
    rows = _as_messages("orca_dpo")
    assert shared_system_prompt(rows) is None  # three different system prompts
    top = detect_domain(profiles["orca_dpo"])[0]
    assert any("12 of 12 rows carry their own system prompt" in e and "replace" in e for e in top.evidence)


def test_the_domain_card_names_the_replaced_system_prompts(tmp_path):
    rows = _as_messages("support_chat")
    ctx = _ctx(tmp_path, rows=rows)
    toolkit = Toolkit(ctx)
    top = toolkit.detect_domain().candidates[0]  # type: ignore[union-attr]
    assert top.domain == "customer support" and top.persona == "You are a helpful support agent for ShopCo."
    answer = toolkit.write_domain_card(top.domain, top.persona, top.evidence, top.score)
    assert answer.accepted and "all 12 rows carry the same system prompt: kept as the persona" in ctx.domain.evidence

    # An expert who writes another persona gets the replacement recorded, on the card and in the attempt's notes.
    toolkit.write_domain_card("customer support", "You are a friendly support agent.", [], 0.7)
    note = "12 of 12 rows carry their own system prompt; training and evaluation replace it with this persona"
    assert note in ctx.domain.evidence and f"domain card: {note}" in ctx.current.notes


# --------------------------------------------------------------------------- memory recall


def _ctx(tmp_path: Path, rows: list[dict] | None = None, memory: AttemptMemory | None = None) -> RunContext:
    record = make_record()
    run_dir = tmp_path / "runs" / "new-run"
    run_dir.mkdir(parents=True)
    spec = RunSpec(run_id="new-run", scenario="task-agent", base_model=record.base_model, provider="offline",
                   max_attempts=3, target=0.9, seed=0, dataset_fingerprint="x", memory=str(tmp_path / "memory"))
    base = BaseModelInfo(name=record.base_model, family=record.model_family, params=record.model_params,
                         vocab_size=32000, max_positions=2048, random_init=False)
    rows = rows or [{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}] * 4
    ctx = RunContext(run=RunDir(run_dir), spec=spec, scenario=SCENARIO,
                     data=ScenarioData(train=rows, heldout=rows[:2], heldout_split="h"), base=base,
                     hardware=make_hardware(), ledger=Ledger(run_dir / "ledger.jsonl"), memory=memory)
    ctx.profile = profile_rows(rows, source="train.jsonl") if rows else make_profile()
    return ctx


@pytest.fixture
def remembered_task_agent(tmp_path) -> AttemptMemory:
    memory = AttemptMemory(str(tmp_path / "memory"))
    memory.remember(make_record(run_id="task-agent-run"))  # a task-agent success, score 0.9, diagnosed good
    return memory


def _recall(tmp_path: Path, memory: AttemptMemory, card: DomainCard) -> tuple[RunContext, object, list[str]]:
    ctx = _ctx(tmp_path, memory=memory)
    ctx.profile = make_profile()  # the same data profile as the remembered attempt: only the domain differs
    ctx.domain = card
    queries: list[str] = []
    recall = memory.recall

    def spy(query, *args, **kwargs):
        queries.append(query)
        return recall(query, *args, **kwargs)

    memory.recall = spy  # type: ignore[method-assign]
    return ctx, Toolkit(ctx).brief(), queries


def test_a_general_dataset_does_not_warm_start_from_a_remembered_task_agent_success(tmp_path, remembered_task_agent):
    card = DomainCard(domain=GENERAL.label, persona=GENERAL.persona, evidence=[], confidence=GENERAL_BELOW)
    ctx, brief, queries = _recall(tmp_path, remembered_task_agent, card)
    assert "task-management agent" not in queries[0] and "Domain:" not in queries[0]
    assert not brief.recalled
    _, why = policy.initial_config(brief)
    assert "warm start" not in why
    assert any("task-agent-run" in n and "left out of recall" in n for n in ctx.current.notes)


def test_a_low_confidence_domain_does_not_steer_recall_either(tmp_path, remembered_task_agent):
    card = DomainCard(domain="task-management agent", persona=domain_module.DOMAINS[0].persona, evidence=[],
                      confidence=GENERAL_BELOW / 2)
    _, brief, queries = _recall(tmp_path, remembered_task_agent, card)
    assert "task-management agent" not in queries[0] and not brief.recalled


def test_a_confident_domain_still_warm_starts_from_its_own_success(tmp_path, remembered_task_agent):
    """The control: the same memory and data, with a domain held with confidence, warm-starts."""
    card = DomainCard(domain="task-management agent", persona=domain_module.DOMAINS[0].persona, evidence=[],
                      confidence=0.8)
    _, brief, queries = _recall(tmp_path, remembered_task_agent, card)
    assert "Domain: task-management agent" in queries[0]
    assert brief.recalled and brief.recalled[0].similarity >= policy.RECALL_TRUST
    _, why = policy.initial_config(brief)
    assert why.startswith("warm start")


def test_a_general_dataset_still_recalls_a_general_success(tmp_path):
    memory = AttemptMemory(str(tmp_path / "memory"))
    memory.remember(make_record(run_id="general-run", domain=GENERAL.label, persona=GENERAL.persona))
    card = DomainCard(domain=GENERAL.label, persona=GENERAL.persona, evidence=[], confidence=GENERAL_BELOW)
    _, brief, _ = _recall(tmp_path, memory, card)
    assert [r.worked for r in brief.recalled] == [True]
