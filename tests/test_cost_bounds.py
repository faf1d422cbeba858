"""Cost bounds stated before they are spent (issue 16): a sequence length from the p99 of the rows,
not from one outlier; a held-out evaluation capped to what its time allows, with a note; an
attempt's wall cap that covers tokenising, not only the training steps. Real components throughout:
the tests' tiny model and its tokenizer, the dataset scenario's own split, the train tool's worker.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import time

import pytest

from tunecrew.agents import policy
from tunecrew.agents.answers import TuningBrief
from tunecrew.tools.contracts import Hardware
from tunecrew.tools.rows import DataError

WORDS = ["alpha", "beta", "gamma", "delta", "kappa", "sigma", "omega", "river", "stone", "cloud", "light", "paper",
         "table", "green", "blue", "red"]
CPU = Hardware(device="cpu", device_name="test cpu", ram_gb=16, cpu_count=2)


def short_rows(n: int, seed: int = 0) -> list[dict]:
    """n prompt/response rows of a few words each, every prompt distinct."""
    rng = random.Random(seed)
    return [{"prompt": " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 7))) + f" item {i}?",
             "response": " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 3)))} for i in range(n)]


# --------------------------------------------------------------------------- sequence length from the p99


@pytest.fixture(scope="module")
def outlier_profile(tiny_model):
    """The profile of 5,000 short rows and one 5 MB row, in the tiny model's tokens."""
    from transformers import AutoTokenizer

    from tunecrew.tools.profile import profile_rows

    rows = short_rows(4_999)
    rows.insert(1234, {"prompt": ("river stone " * 420_000)[:5_000_000], "response": "blue"})
    return profile_rows(rows, "outlier.jsonl", tokenizer=AutoTokenizer.from_pretrained(tiny_model))


def test_one_5mb_row_does_not_size_every_sequence_and_is_counted_as_truncated(outlier_profile, tiny_model):
    from tunecrew.tools.feasibility import check_feasibility
    from tunecrew.tools.model_info import describe_base_model

    stats = outlier_profile.total_tokens
    assert stats.max > 1_000_000 and stats.p99 < 64  # the outlier is in the profile, and does not move the p99
    assert any("1 of 5,000 rows are over" in w for w in outlier_profile.extra["warnings"])
    base = describe_base_model(tiny_model)
    brief = TuningBrief(attempt=1, max_attempts=3, target=0.9, primary_metric="answer_f1", profile=outlier_profile,
                        system_prompt_tokens=12, base_model=base, hardware=CPU)
    config, why = policy.initial_config(brief)
    # The next power of two over the p99 + persona + markup (with 10% headroom), not the model's whole
    # context (512 here before, 1,024 on SmolLM2's).
    need = stats.p99 + 12 + 8
    assert need <= config.max_seq_length <= 2 * policy.SEQ_HEADROOM * need
    assert base.max_positions is not None and config.max_seq_length < base.max_positions
    assert f"rows_truncated: 1 of 5,000 over {config.max_seq_length} tokens" in why
    # The Tuner's proposal answer says the same, counted with the tokens every row carries.
    feas = check_feasibility(config, CPU, base.params, outlier_profile, extra_tokens_per_row=12 + 8)
    assert feas.fits and f"rows_truncated: 1 of 5,000 over {config.max_seq_length} tokens" in feas.reason


def test_a_length_that_truncates_many_rows_says_at_least(outlier_profile):
    from tunecrew.tools.profile import truncation_note

    # 16 tokens cuts most rows: more than the profile keeps lengths of, so the count is a lower bound.
    assert truncation_note(outlier_profile.total_tokens, 16).startswith("rows_truncated: at least 32 of 5,000 over 16")


# --------------------------------------------------------------------------- held-out evaluation capped by its time


@pytest.fixture(scope="module")
def half_heldout(tmp_path_factory):
    """`tunecrew run --data 50k.jsonl --heldout 0.5`'s split, built by the dataset scenario itself."""
    from tunecrew.scenarios.dataset import with_data
    from tunecrew.scenarios.registry import load_scenario

    path = tmp_path_factory.mktemp("cost") / "d50k.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in short_rows(50_000)))
    scenario = with_data(load_scenario("custom"), str(path), None, 0.5)
    assert scenario.build_data is not None
    return scenario, scenario.build_data(0)


def test_heldout_half_of_50k_rows_is_capped_to_a_seeded_sample_that_fits(half_heldout):
    from tunecrew.tools.feasibility import EVAL_SECONDS_WITHOUT_BUDGET, cap_evaluation, estimate_eval_seconds

    scenario, data = half_heldout
    assert len(data.heldout) == 25_000  # what the split itself still holds: every attempt would generate for it
    params = 134_520_000  # SmolLM2-135M, the default base model
    kw = dict(max_new_tokens=scenario.max_new_tokens, model_params=params, hardware=CPU, threads=2)
    rows, note = cap_evaluation(data.heldout, seed=0, **kw)
    assert note is not None and 4 <= len(rows) < 1_000
    n = int(re.search(r"n=([\d,]+) of the 25,000 held-out rows", note)[1].replace(",", ""))
    assert n == len(rows) and "seed 0" in note and "cap of 15 min" in note and "--heldout" in note
    assert estimate_eval_seconds(n, scenario.max_new_tokens, params, CPU, threads=2) <= EVAL_SECONDS_WITHOUT_BUDGET
    assert estimate_eval_seconds(n + 32, scenario.max_new_tokens, params, CPU, threads=2) > EVAL_SECONDS_WITHOUT_BUDGET
    heldout_ids = {id(r) for r in data.heldout}
    assert all(id(r) in heldout_ids for r in rows)  # a sample of the held-out split, in its order
    assert [data.heldout.index(r) for r in rows[:5]] == sorted(data.heldout.index(r) for r in rows[:5])
    again, _ = cap_evaluation(data.heldout, seed=0, **kw)
    other, _ = cap_evaluation(data.heldout, seed=1, **kw)
    assert again == rows and other != rows  # deterministic by seed
    # A --budget sets the cap: 12% of one hour is about 7 min, so fewer rows.
    budgeted, budget_note = cap_evaluation(data.heldout, seed=0, run_budget_s=3600, **kw)
    assert len(budgeted) < len(rows) and "--budget 60 min" in (budget_note or "")


def test_heldout_that_fits_is_kept_whole_and_one_that_cannot_is_refused_naming_heldout(half_heldout):
    from tunecrew.tools.feasibility import cap_evaluation

    scenario, data = half_heldout
    small = data.heldout[:64]
    rows, note = cap_evaluation(small, seed=0, max_new_tokens=64, model_params=2_000_000, hardware=CPU, threads=2)
    assert rows == small and note is None
    with pytest.raises(DataError, match=r"^--heldout: evaluating even 4 held-out rows takes"):
        cap_evaluation(data.heldout, seed=0, max_new_tokens=scenario.max_new_tokens, model_params=70_000_000_000,
                       hardware=CPU, threads=2, run_budget_s=600)


# --------------------------------------------------------------------------- the wall cap covers tokenising


@pytest.mark.slow
def test_attempt_cap_covers_tokenising_50k_rows(tmp_path, tiny_model, make_config):
    """50,000 rows under a 25 s cap: tokenising all of them took ~35-90 s on this 2-core machine
    before the first step could check the cap (57.6 s for a 20 s cap, measured before the fix)."""
    from tunecrew.tools.train import TrainJob, run_training

    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps({"messages": [{"role": "user", "content": r["prompt"]},
                                                     {"role": "assistant", "content": r["response"]}]}) + "\n"
                            for r in short_rows(50_000)))
    cap = 25.0  # importing torch/transformers/TRL alone took 12 s of it on this machine under load
    config = make_config(max_steps=0, epochs=1.0, max_seq_length=64)
    job = TrainJob(config=config, base_model=tiny_model, train_file=str(path), output_dir=str(tmp_path / "run"),
                   threads=1, max_wall_seconds=cap)
    events: list[dict] = []
    started = time.monotonic()
    result = run_training(job, on_event=events.append, timeout_s=300)
    wall = time.monotonic() - started
    start = next(e for e in events if e["event"] == "start")
    assert result.status == "ok" and result.steps > 0, result.error
    assert start["rows"] == 50_000 and start["tokenised_rows"] < 50_000
    # Generous: interpreter start and a noisy shared machine ride on top of the cap, never 50k rows' tokenising.
    assert wall < 1.6 * cap, f"{wall:.1f} s for a {cap:.0f} s cap ({start})"
    assert result.loss_curve and result.loss_curve[-1].epoch is not None and result.loss_curve[-1].epoch < 1.0


def test_an_explicit_heldout_is_capped_when_the_run_is_prepared(tmp_path, tiny_model):
    """Through `prepare`, as `tunecrew run --data F --heldout 0.5 --budget 10` does it: the held-out
    file every attempt is scored on holds the capped sample, and the run says so."""
    from tunecrew.app.console import CrewConsole
    from tunecrew.app.runner import RunOptions, prepare
    from tunecrew.scenarios.registry import load_scenario
    from tunecrew.tools.rows import load_rows, write_jsonl

    rows = [{"prompt": f"What is {i} plus {i}?", "response": f"{2 * i}"} for i in range(3000)]
    data = write_jsonl(rows, tmp_path / "sums.jsonl")
    notes: list[str] = []
    console = CrewConsole(quiet=True)
    console.note = notes.append  # type: ignore[method-assign]
    ctx = prepare(RunOptions(scenario=load_scenario("custom"), data=str(data), heldout=0.5, base_model=tiny_model,
                             budget_minutes=10, runs_dir=tmp_path / "runs", use_memory=False, quiet=True), console)
    kept = load_rows(ctx.run.heldout_data)
    assert 4 <= len(kept) < 1500 and len(kept) == len(ctx.data.heldout)
    assert any(f"n={len(kept):,} of the 1,500 held-out rows" in n and "--heldout" in n for n in notes), notes


def test_before_any_evaluation_a_first_attempt_reserves_the_base_models_and_one_more(tmp_path, tiny_model):
    """The time a first attempt leaves for evaluations: its own and the base model's (each at the
    decode-time bound of the held-out rows, under the budget share) plus one retry's, not four."""
    from tunecrew.agents.toolkit import EVAL_RESERVE_SHARE, EVAL_TIME_NOISE, Toolkit
    from tunecrew.app.console import CrewConsole
    from tunecrew.app.runner import RunOptions, prepare
    from tunecrew.scenarios.registry import load_scenario
    from tunecrew.tools.feasibility import estimate_eval_seconds

    ctx = prepare(RunOptions(scenario=load_scenario("task-agent"), base_model=tiny_model, budget_minutes=10,
                             runs_dir=tmp_path / "runs", use_memory=False, quiet=True), CrewConsole(quiet=True))
    tk = Toolkit(ctx)
    bound = estimate_eval_seconds(len(ctx.data.heldout), ctx.scenario.max_new_tokens, ctx.base.params, ctx.hardware,
                                  threads=ctx.wiring.threads)
    assert 0 < bound < EVAL_RESERVE_SHARE * 600
    assert tk._next_eval_reserve() == bound
    assert tk._eval_reserve() == 2 * bound  # the base model is scored at the first evaluation
    ctx.eval_seconds = 5.0  # once one evaluation ran, its time (and its noise) is what every later one reserves
    assert tk._next_eval_reserve() == tk._eval_reserve() == 5.0 * (1 + EVAL_TIME_NOISE)


def test_under_a_budget_the_base_model_is_scored_before_the_first_attempt_is_sized(tmp_path, tiny_model):
    """Measured, not reserved: the first brief under --budget scores the base model, so the first
    attempt keeps back one evaluation (the decode bound plus the base model's measured load and
    prefill, under the budget share), not two at the bound."""
    from tunecrew.agents.toolkit import EVAL_RESERVE_SHARE, Toolkit
    from tunecrew.app.console import CrewConsole
    from tunecrew.app.runner import RunOptions, make_panel, prepare
    from tunecrew.scenarios.registry import load_scenario
    from tunecrew.tools.feasibility import estimate_eval_seconds
    from tunecrew.tools.throughput import MeasuredRate

    options = RunOptions(scenario=load_scenario("task-agent"), base_model=tiny_model, budget_minutes=10,
                         runs_dir=tmp_path / "runs", use_memory=False, quiet=True)
    ctx = prepare(options, CrewConsole(quiet=True))
    tk = Toolkit(ctx)
    scorings: list[str | None] = []
    score = tk._score
    tk._score = lambda adapter, *a: scorings.append(adapter) or score(adapter, *a)  # type: ignore[method-assign]
    tk.profile_dataset()
    ctx.rate = MeasuredRate(tokens_per_second=1000.0, startup_seconds=5.0, source="test")  # no timed steps
    ctx.deadline = time.monotonic() + 600  # what the runner sets from --budget as the crew starts
    assert ctx.baseline is None
    brief = tk.brief()
    assert ctx.baseline is not None and ctx.baseline.wall_seconds > 0
    assert ctx.run.baseline.exists() and scorings == [None]
    bound = estimate_eval_seconds(len(ctx.data.heldout), ctx.scenario.max_new_tokens, ctx.base.params, ctx.hardware,
                                  threads=ctx.wiring.threads)
    expected = min(EVAL_RESERVE_SHARE * 600, bound + ctx.baseline.wall_seconds)
    assert brief.eval_reserve_s == round(expected, 1)
    tk.brief()
    assert scorings == [None]  # once per run
    # The judge reads those replies at the first evaluation; the base model is not generated for again.
    ctx.judge_panel = make_panel(options, ctx.spec.judges, ctx.spec.judge_samples)
    judged = asyncio.run(tk._scored_baseline())
    assert scorings == [None] and ctx.judge_baseline is not None and ctx.run.judge_baseline.exists()
    assert judged.rubric is not None and judged.metrics == ctx.baseline.metrics
