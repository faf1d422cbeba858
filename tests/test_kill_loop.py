"""Kill the crew at random moments (SIGKILL and Ctrl-C), resume, and check the run's invariants
after every kill (tests/kill_loop.py says which). `python tests/kill_loop.py --kills 25` is the
long version; this one keeps CI short."""

from __future__ import annotations

import pytest
from kill_loop import kill_loop


@pytest.mark.slow
def test_random_kills_never_break_the_ledger_memory_or_attempt_folders(tmp_path, tiny_model):
    lines: list[str] = []
    report = kill_loop(kills=6, seed=3, work=tmp_path, base_model=tiny_model, say=lines.append)
    assert report.violations == [], "\n".join(lines + report.violations)
    assert report.kills == 6 and report.resumes >= 3
    assert report.attempts >= 2  # the crew made progress between kills, so later kills hit later phases
