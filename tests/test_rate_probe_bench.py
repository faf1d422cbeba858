"""bench/rate_probe.py's arithmetic, and the train log it reads: every logged step carries the time,
the tokens and the eval seconds so far, so any stretch of a run can be timed after the fact."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from factories import load_bench

rate_probe = load_bench("rate_probe", "rate_probe_bench")


def test_a_stretch_predicts_from_its_own_rate_and_leaves_the_rest_to_the_fixed_cost() -> None:
    # 8 steps of 100 tokens: the first three take 3 s each (warm-up), then 2 s each; 10 s before step 1.
    points, elapsed = [], 10.0
    for step in range(1, 9):
        elapsed += 3.0 if step <= 3 else 2.0
        points.append((elapsed, 100.0 * step, 0.0))
    probe_wall = elapsed + 5.0  # saving after the last step

    rate, estimate = rate_probe.predict(probe_wall, points, None, True, attempt_tokens=10_000)
    assert rate == pytest.approx(50.0)  # steps 4-8: 400 tokens in 8 s
    # fixed = the probe's wall less its tokens at the rate (34 - 800 / 50), then 10,000 tokens at 50/s
    assert estimate == pytest.approx(34.0 - 16.0 + 200.0)

    rate, estimate = rate_probe.predict(probe_wall, points, 4, False, attempt_tokens=10_000)
    assert rate == pytest.approx(300 / 8)  # steps 1-4: the warm-up's rate
    cut_wall = probe_wall - (points[-1][0] - points[3][0])  # as if the probe had stopped at step 4
    assert estimate == pytest.approx(cut_wall - 400 / rate + 10_000 / rate)

    # Eval passes inside the stretch are not training time.
    with_eval = [(e + (4.0 if i >= 5 else 0.0), t, 4.0 if i >= 5 else 0.0) for i, (e, t, _) in enumerate(points)]
    assert rate_probe.predict(probe_wall + 4, with_eval, None, True, 10_000)[0] == pytest.approx(50.0)
    assert rate_probe.predict(probe_wall, points[:1], None, True, 10_000) is None  # one point times nothing


def test_the_train_log_carries_time_tokens_and_eval_seconds_at_every_logged_step(lora_run) -> None:
    from tunecrew.tools.train import LOG_FILE

    assert lora_run.result.status == "ok", lora_run.result.error
    points = rate_probe.points_of(Path(lora_run.job.output_dir) / LOG_FILE)
    assert len(points) >= 5
    assert all(b[0] > a[0] and b[1] > a[1] and b[2] >= a[2] for a, b in itertools.pairwise(points))
    assert points[-1][1] == lora_run.result.tokens  # the last point's tokens are the run's
    found = rate_probe.predict(lora_run.result.wall_seconds, points, None, True, attempt_tokens=lora_run.result.tokens)
    assert found is not None and found[0] > 0 and found[1] > 0
