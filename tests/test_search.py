"""Bounded config search (tools/search.py) and the Tuner's search_config tool.

The sampler tests score configs with a pure function of the learning rate (no training), so they
check what the search itself does: stays in its space, repeats itself for a seed, and (TPE) learns
where the good region is better than random search does. Fast: no model, no subprocess.
"""

from __future__ import annotations

import math
import statistics
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from tunecrew.agents.state import RunContext
from tunecrew.agents.toolkit import Toolkit
from tunecrew.memory.ledger import Ledger
from tunecrew.scenarios.task_agent.data import generate
from tunecrew.scenarios.task_agent.scenario import SCENARIO
from tunecrew.tools.contracts import BaseModelInfo, RunSpec, TrainConfig
from tunecrew.tools.run_dir import RunDir
from tunecrew.tools.scenario import ScenarioData
from tunecrew.tools.search import RANKS, search_space, suggest, suggest_next

from factories import make_hardware, make_profile, make_record, seen

BASE = TrainConfig(method="lora", lora_rank=32, lora_alpha=64, train_embeddings=True, learning_rate=5e-4,
                   epochs=4.0, batch_size=16, max_seq_length=128)
BEST_LOG_LR = -2.5  # the synthetic objective's optimum: lr = 10**-2.5 ~ 3.2e-3, inside BASE's space


def objective(config: TrainConfig) -> float:
    return -(math.log10(config.learning_rate) - BEST_LOG_LR) ** 2


def search(sampler: str, seed: int, trials: int, base: TrainConfig = BASE) -> list[tuple[TrainConfig, float]]:
    history: list[tuple[TrainConfig, float]] = []
    for _ in range(trials):
        config = suggest_next(history, base, seed, sampler)  # type: ignore[arg-type]
        history.append((config, objective(config)))
    return history


@pytest.mark.parametrize("sampler", ["tpe", "random"])
def test_suggestions_are_valid_configs_inside_the_space(sampler):
    space = search_space(BASE)
    assert space.lr == pytest.approx((5e-5, 5e-3)) and space.length == (1.0, 16.0) and space.ranks == RANKS
    for seed in range(3):
        for config, _ in search(sampler, seed, 8):
            TrainConfig.model_validate(config.model_dump())  # every bound and the coherence rules
            # lr is rounded to 3 significant digits and epochs to 0.1: allow that much at the edges
            assert space.lr[0] * 0.995 <= config.learning_rate <= space.lr[1] * 1.005
            assert space.length[0] - 0.05 <= config.epochs <= space.length[1] + 0.05
            assert config.lora_rank in RANKS and config.lora_alpha == 2 * config.lora_rank
            # what the search does not touch comes from the base config
            same = {"method", "train_embeddings", "batch_size", "max_seq_length", "lr_scheduler", "max_steps", "data"}
            assert config.model_dump(include=same) == BASE.model_dump(include=same)


@pytest.mark.parametrize("sampler", ["tpe", "random"])
def test_same_seed_same_suggestions_other_seed_other_ones(sampler):
    assert search(sampler, 0, 6) == search(sampler, 0, 6)
    assert [c for c, _ in search(sampler, 0, 6)] != [c for c, _ in search(sampler, 1, 6)]
    # a rebuilt random sampler must not repeat its first point at every trial
    assert len({c.learning_rate for c, _ in search(sampler, 0, 6)}) == 6


def test_tpe_concentrates_near_the_good_region_better_than_random():
    """Over 20 trials, share of the last 10 within 0.25 decades of the best lr (score > -0.0625),
    averaged over 5 seeds. Measured: TPE 0.66, random 0.32."""
    def near(sampler: str) -> float:
        return statistics.mean(sum(1 for _, s in search(sampler, seed, 20)[10:] if s > -0.0625) / 10
                               for seed in range(5))

    tpe, rand = near("tpe"), near("random")
    assert tpe >= rand + 0.15, (tpe, rand)


def test_history_outside_the_space_and_failed_attempts_are_used_not_refused():
    """The Planner may have escalated past the space (rank 128, lr 8e-3); a failed run has no score."""
    outside = BASE.with_changes({"lora_rank": 128, "lora_alpha": 256, "learning_rate": 8e-3, "epochs": 20.0})
    failed = BASE.with_changes({"learning_rate": 1e-3})
    s = suggest([(BASE, 0.2), (outside, 0.5), (failed, None)], BASE, seed=0, sampler="tpe")
    assert s.trials_seen == 3 and s.best == (outside, 0.5)
    assert 128 in s.space.ranks and s.space.lr[1] >= 8e-3 and s.space.length[1] >= 20.0
    TrainConfig.model_validate(s.config.model_dump())


def test_max_steps_base_searches_steps_and_full_method_has_no_rank():
    steps_base = BASE.with_changes({"max_steps": 40})
    for config, _ in search("random", 0, 5, base=steps_base):
        assert 10 <= config.max_steps <= 160 and config.epochs == steps_base.epochs
    full = TrainConfig(method="full", learning_rate=2e-5, epochs=2.0)
    space = search_space(full)
    assert space.ranks == () and space.lr == pytest.approx((2e-6, 2e-4))
    for config, _ in search("tpe", 0, 4, base=full):
        assert config.lora_rank == full.lora_rank and 2e-6 * 0.995 <= config.learning_rate <= 2e-4 * 1.005


def test_time_cap_bounds_the_epochs():
    space = search_space(BASE, max_epochs=6.0)
    assert space.length == (1.0, 6.0)
    with pytest.raises(ValueError, match="sampler"):
        suggest_next([], BASE, 0, "grid")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- the Tuner's tool


def _ctx(tmp_path: Path, budget_s: float | None = None) -> RunContext:
    """A run's state without a model or a subprocess: enough for search_config and propose_config."""
    data = generate(seed=0, n_train=40, n_heldout=8)
    run_dir = tmp_path / "runs" / "r1"
    run_dir.mkdir(parents=True)
    spec = RunSpec(run_id="r1", scenario="task-agent", base_model="tiny", provider="offline", max_attempts=4,
                   target=0.95, seed=0, dataset_fingerprint="x", memory="off", attempt_budget_s=budget_s)
    base = BaseModelInfo(name="tiny", family="llama", params=2_000_000, vocab_size=2048, max_positions=512,
                         random_init=True)
    ctx = RunContext(run=RunDir(run_dir), spec=spec, scenario=SCENARIO,
                     data=ScenarioData(train=data.train, heldout=data.heldout, heldout_split="h"),
                     base=base, hardware=make_hardware(), ledger=Ledger(run_dir / "ledger.jsonl"), memory=None)
    ctx.profile = make_profile(rows=len(ctx.data.train))
    return ctx


def test_search_config_refuses_before_any_attempt_then_feeds_propose_config(tmp_path):
    ctx = _ctx(tmp_path)
    toolkit = Toolkit(ctx)
    assert "search_config" in [t.name for t in toolkit.tools_for("Tuner")]
    first = seen(toolkit.search_config("tpe"))
    assert "no finished attempt" in first["error"] and ctx.current.config is None

    ctx.records = [make_record(attempt=1, lr=3e-3, rank=32, epochs=4.0, score=0.4, diagnosis="underfit"),
                   make_record(attempt=2, lr=3e-3, rank=32, epochs=8.0, score=0.6, diagnosis="underfit")]
    ctx.current.number = 3
    answer = seen(toolkit.search_config("tpe"))
    assert answer["trials_seen"] == 2 and answer["best_so_far"]["attempt"] == 2
    assert answer["best_so_far"]["score"] == 0.6 and "lora_rank" in answer["space"]
    args = answer["suggested"]
    assert args["lora_alpha"] == 2 * args["lora_rank"]
    accepted = seen(toolkit.propose(args))
    assert accepted["accepted"] is True, accepted
    assert ctx.current.config is not None and ctx.current.config.learning_rate == args["learning_rate"]
    assert seen(toolkit.search_config("tpe")) == answer  # same history, same seed: same answer
    assert "sampler" in seen(toolkit.search_config("grid"))["error"]  # type: ignore[arg-type]


def test_search_config_keeps_training_length_inside_the_time_budget(tmp_path):
    from tunecrew.tools.feasibility import check_feasibility

    ctx = _ctx(tmp_path)
    assert ctx.profile is not None
    first = make_record(attempt=1, lr=3e-3, rank=32, epochs=4.0, score=0.4, diagnosis="underfit")
    est = check_feasibility(first.config, ctx.hardware, ctx.base.params, ctx.profile).est_seconds
    ctx = _ctx(tmp_path / "budget", budget_s=est)  # the first attempt's length just fits
    ctx.records, ctx.current.number = [first], 2
    toolkit = Toolkit(ctx)
    for _ in range(3):
        answer = seen(toolkit.search_config("random"))
        assert answer["space"]["epochs"][1] == pytest.approx(4.0)
        assert answer["suggested"]["epochs"] <= 4.05
        ctx.records.append(make_record(attempt=len(ctx.records) + 1, lr=answer["suggested"]["learning_rate"],
                                       rank=answer["suggested"]["lora_rank"], epochs=answer["suggested"]["epochs"],
                                       score=0.3, diagnosis="underfit"))
        ctx.current.number += 1
