"""Filtered recall (memory/search.py): the unfiltered-then-filter shortcut answers exactly what
Chroma's filtered query answers, and falls back to it when it cannot be sure."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from tunecrew.memory.search import Unsupported, _query, matches, nearest
from tunecrew.memory.store import AttemptMemory

from factories import DOMAINS, make_domain_record

FAMILIES = [("Qwen/Qwen2.5-0.5B-Instruct", "qwen2"), ("meta-llama/Llama-3.2-1B", "llama"),
            ("mistralai/Mistral-7B-v0.3", "mistral")]


@pytest.fixture(scope="module")
def memory(tmp_path_factory: pytest.TempPathFactory) -> AttemptMemory:
    rng = random.Random(0)
    records = []
    for i in range(240):
        kind = list(DOMAINS)[i % 3]
        base, family = FAMILIES[i % 3] if i % 40 else ("google/gemma-2-2b", "gemma2")  # 6 rare gemma2 attempts
        records.append(make_domain_record(kind, run_id=f"run{i // 4}", attempt=i % 4 + 1, base_model=base,
                                          model_family=family, vocab=rng.sample(DOMAINS[kind]["vocab"], 8),
                                          lr=rng.choice([1e-4, 3e-4, 1e-3]), rank=rng.choice([8, 16, 32])))
    memory = AttemptMemory(tmp_path_factory.mktemp("search") / "memory")
    memory.remember_many(records)
    return memory


@pytest.mark.parametrize("where", [
    {"model_family": "qwen2"},
    {"$and": [{"model_family": "llama"}, {"run_id": {"$ne": "run1"}}]},
    {"model_family": "gemma2"},  # few near attempts pass: falls back to Chroma's filtered query
    {"run_id": {"$in": ["run3", "run7"]}},
    {"run_id": {"$ne": "run1"}},  # nearly all pass: answered from the unfiltered search
])
@pytest.mark.parametrize("kind", list(DOMAINS))
def test_same_answer_as_chromas_filtered_query(memory: AttemptMemory, where: dict, kind: str) -> None:
    d = DOMAINS[kind]
    embedding = memory._ef([f"{d['scenario']} {d['domain']} " + " ".join(d["vocab"][:8]) + " qwen2 llama"])
    for want, floor in ((16, 0.0), (8, 0.3)):
        ids, metas, dists = nearest(memory._col, embedding, want, where, floor)
        ref_ids, _, ref_dists = _query(memory._col, embedding, want, where)
        kept = [(i, round(x, 5)) for i, x in zip(ref_ids, ref_dists, strict=True) if 1 - x >= floor]
        assert [(i, round(x, 5)) for i, x in zip(ids, dists, strict=True) if 1 - x >= floor] == kept
        assert all(matches(m, where) for m in metas)


def test_operators_it_cannot_decide_go_to_chroma(memory: AttemptMemory) -> None:
    with pytest.raises(Unsupported):
        matches({"score": 0.9}, {"score": {"$gte": 0.5}})
    with pytest.raises(Unsupported):
        matches({}, {"run_id": {"$ne": "x"}})  # Chroma decides what $ne means for a missing key
    embedding = memory._ef(["task-agent task due"])
    ids, metas, _ = nearest(memory._col, embedding, 5, {"score": {"$gte": 0.5}}, 0.0)
    assert len(ids) == 5 and all(m["score"] >= 0.5 for m in metas)


def test_recall_excludes_the_run_and_filters_family(memory: AttemptMemory, tmp_path: Path) -> None:
    hits = memory.recall("task-agent task-management agent task due priority qwen2", k=4,
                         where={"model_family": "qwen2"}, exclude_run="run0", min_similarity=0.0)
    assert len(hits) == 4
    assert all(h.record.model_family == "qwen2" and h.record.run_id != "run0" for h in hits)


def test_a_filter_most_attempts_pass_needs_no_filtered_query(memory: AttemptMemory, monkeypatch) -> None:
    import tunecrew.memory.search as search

    seen: list = []
    real = search._query
    monkeypatch.setattr(search, "_query", lambda col, emb, n, where: seen.append(where) or real(col, emb, n, where))
    memory.recall("legal-qa legal reasoning contract court", k=4, where={"model_family": {"$in": ["qwen2", "llama"]}},
                  exclude_run="run2", min_similarity=0.0)
    assert seen == [None]  # one unfiltered search, no whole-store pre-filter


def test_a_related_task_clears_the_warm_start_trust_and_an_unrelated_one_does_not(tmp_path: Path) -> None:
    """Vectors are of the task text: the outcome lines no longer dilute a related task's similarity."""
    from tunecrew.agents.policy import RECALL_TRUST
    from tunecrew.memory.store import DEFAULT_MIN_SIMILARITY, recall_query
    from tunecrew.tools.contracts import DomainCard

    from factories import TASK_VOCAB, make_hardware, make_profile, make_record

    memory = AttemptMemory(tmp_path / "memory")
    memory.remember_many([make_record(run_id="task", vocab=TASK_VOCAB[:14], rows=480),
                          make_domain_record("legal", run_id="legal")])
    related = recall_query(  # another dataset of the same kind: fewer rows, half the top words differ
        "task-agent", make_profile([*TASK_VOCAB[7:], "calendar", "invite", "label"], rows=160),
        DomainCard(domain="task-management agent", persona="You are an assistant for task-management agent.",
                   confidence=0.6),
        "Qwen/Qwen2.5-0.5B-Instruct", "qwen2", 494_000_000, make_hardware("cpu"))
    hits = {h.id: h.similarity for h in memory.recall(related, k=5, min_similarity=0.0)}
    assert hits["task:1"] >= RECALL_TRUST
    assert hits["legal:1"] < DEFAULT_MIN_SIMILARITY


def test_a_schema_1_store_is_re_embedded_once_on_open(tmp_path: Path) -> None:
    from tunecrew.memory.store import SCHEMA, attempt_document, task_text

    location = tmp_path / "memory"
    old = AttemptMemory(location)
    records = [make_domain_record("task-agent", run_id="a"), make_domain_record("legal", run_id="b")]
    old.remember_many(records)
    col = old._col  # make it look like a store written before schema 2: whole-document vectors
    col.update(ids=["a:1", "b:1"], embeddings=old._ef([attempt_document(r) for r in records]))
    col.modify(metadata={**col.metadata, "tunecrew_schema": 1})

    with pytest.warns(RuntimeWarning, match="re-embedded 2 attempts"):
        again = AttemptMemory(location)
    assert again._col.metadata["tunecrew_schema"] == SCHEMA
    got = again._col.get(ids=["a:1"], include=["embeddings"])["embeddings"][0]
    assert abs(float(got @ again._ef([task_text(records[0])])[0]) - 1.0) < 1e-5
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        AttemptMemory(location)  # once
