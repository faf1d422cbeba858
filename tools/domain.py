"""Offline domain detection: score a dataset profile against small domain lexicons.

This is the evidence the Domain Expert reads (an LLM expert may overrule it); offline, the top
candidate becomes the DomainCard. Scores are the share of the profile's frequent words and sample
text that hit each lexicon, so a new domain is one more entry in DOMAINS, not new code.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .contracts import DatasetProfile


@dataclass(frozen=True)
class Domain:
    label: str
    persona: str
    keywords: frozenset[str]
    markers: tuple[str, ...] = ()  # substrings that are strong evidence on their own (e.g. a reply format)


DOMAINS: tuple[Domain, ...] = (
    Domain(
        "task-management agent",
        "You are a precise task-management assistant: one tool call or one short reply per request.",
        frozenset(["task", "tasks", "todo", "to-do", "remind", "reminder", "due", "deadline", "list", "complete",
                   "completed", "finish", "finished", "done", "mark", "add", "schedule", "priority", "summarize",
                   "summary", "pending", "open", "agenda"]),
        markers=("<action>", "add_task(", "list_tasks(", "complete_task("),
    ),
    Domain(
        "medical reasoning",
        "You are a careful physician who reasons step by step from symptoms, history and findings to a "
        "diagnosis and treatment, and states uncertainty plainly.",
        frozenset(["patient", "patients", "diagnosis", "symptom", "symptoms", "treatment", "clinical", "disease",
                   "dose", "mg", "blood", "pain", "fever", "infection", "therapy", "chronic", "acute", "medication",
                   "syndrome", "physician", "lesion", "mri", "ct"]),
    ),
    Domain(
        "legal reasoning",
        "You are a meticulous lawyer who identifies the issue, the governing rule, applies it to the facts "
        "and reaches a reasoned conclusion.",
        frozenset(["court", "law", "legal", "statute", "contract", "plaintiff", "defendant", "liability", "judge",
                   "ruling", "appeal", "jurisdiction", "clause", "breach", "tort", "evidence", "counsel", "precedent",
                   "section", "act", "rights"]),
    ),
    Domain(
        "software engineering",
        "You are a senior software engineer who writes correct, idiomatic code and explains it briefly.",
        frozenset(["code", "function", "python", "class", "variable", "error", "bug", "compile", "test", "def",
                   "return", "import", "api", "javascript", "sql", "loop", "array", "string"]),
        markers=("```", "def ", "return "),
    ),
    Domain(
        "mathematics",
        "You are a mathematician who solves problems step by step and states the final answer clearly.",
        frozenset(["solve", "equation", "integer", "sum", "prove", "number", "probability", "triangle", "derivative",
                   "integral", "answer", "calculate", "fraction", "prime"]),
    ),
    Domain(
        "customer support",
        "You are a friendly, efficient customer-support agent who resolves the customer's issue.",
        frozenset(["order", "refund", "account", "password", "shipping", "delivery", "customer", "support",
                   "subscription", "billing", "cancel", "help", "issue"]),
    ),
)

GENERAL = Domain(
    "general assistant",
    "You are a helpful, accurate assistant.",
    frozenset(),
)

_WORD = re.compile(r"[a-z][a-z\-]+")


@dataclass(frozen=True)
class Candidate:
    domain: str
    score: float
    persona: str
    evidence: list[str]


def detect_domain(profile: DatasetProfile, top: int = 3) -> list[Candidate]:
    """Candidates best first; always at least one (the general assistant)."""
    sample_text = " ".join(str(v) for row in profile.samples for v in row.values()).lower()
    words = set(profile.vocabulary) | set(_WORD.findall(sample_text))
    candidates = []
    for domain in DOMAINS:
        hits = sorted(words & domain.keywords)
        marker_hits = [m for m in domain.markers if m in sample_text]
        score = min(1.0, len(hits) / 6) * 0.7 + (0.3 if marker_hits else 0.0)
        if score > 0:
            evidence = [f"frequent words: {', '.join(hits[:8])}"] if hits else []
            evidence += [f"replies contain {m!r}" for m in marker_hits[:2]]
            candidates.append(Candidate(domain.label, round(score, 3), domain.persona, evidence))
    candidates.sort(key=lambda c: -c.score)
    if not candidates or candidates[0].score < 0.2:
        candidates.append(Candidate(GENERAL.label, 0.2, GENERAL.persona, ["no domain lexicon matched well"]))
        candidates.sort(key=lambda c: -c.score)
    return candidates[:top]
