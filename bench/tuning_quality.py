"""Tuning quality: with the same number of training runs, how good a model does the crew find,
compared with the default config, random search and Optuna TPE?

    python bench/tuning_quality.py --quick                  # smoke: 1 seed, 2 runs, 120 rows (~2 min)
    python bench/tuning_quality.py [--seeds 0,1,2] [--runs 3] [--n-train 240] [--n-heldout 64]
    python bench/tuning_quality.py --base-model smollm2-135m --attempt-seconds 120 ...   # a real model

Per seed, on the task-agent scenario (data from `generate(seed)`, cut to --n-train/--n-heldout),
one base model for every method (the tests' tiny Llama, ~0.1M params, random init; --demo-model
for the demo's 2M one; --base-model NAME for a `tunecrew models` name or folder such as
smollm2-135m), the same held-out split, the same scoring (the scenario's primary metric):

- crew:    the offline crew (rule-based policy), max_attempts=N, memory off, target 1.0 so that it
           keeps going; if its Planner stops early, the runs it used are reported as they are.
- default: `TrainConfig()` as it comes (lr 2e-4, r16, 1 epoch, frozen embeddings), trained once:
           a 1-run reference. The crew's own first config is not this default: it is sized from
           the data and the model (see agents/policy.py).
- random:  N configs drawn by `tools/search.suggest_next(sampler="random")`.
- tpe:     N trials of `suggest_next(sampler="tpe")`, each told the scores of the trials before
           (Optuna TPE; its first trial is random search's first).

random and tpe search the same bounded space (tools/search.py): learning rate, LoRA rank (alpha =
2 x rank) and epochs around the crew's own first config, whose other fields (embeddings, batch,
sequence length) they keep; so they start from the policy's sizing but not from its choices.

Every baseline trial goes through the crew's own tools (`Toolkit.propose_config` -> `train` ->
`evaluate`: the same validation, training subprocess, persona and scoring) without the agents.
The score of a method is the best held-out score over its runs (what a person would ship).

--attempt-seconds caps every training run of every method at the same wall time (the train tool
stops there and keeps what it learned): on a CPU a pretrained model's planned runs are far longer
than a bench can wait for. The crew also has the scenario's --budget (10 min for the whole run)
unless --crew-budget-minutes says otherwise; the baselines have no run budget, so to compare at
equal runs give the crew a budget that the per-run cap, not the budget, binds.

--search-scheduler cosine gives every random/TPE trial a learning rate that decays within its own
planned steps. By default the trials keep the crew's first config's schedule, which under a cap is
`constant_with_warmup` (held, for a crew retry to continue and decay): a searcher never continues a
run, so a held rate that the cap stops at its peak is a handicap of the baseline, not of the search.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common

METHODS = ("crew", "default", "random", "tpe")
CREW_TARGET = 1.0  # out of reach for these models (they top out near 0.8): the crew spends its runs


@dataclass
class Outcome:
    method: str
    seed: int
    scores: list[float | None] = field(default_factory=list)  # per run, in order
    configs: list[str] = field(default_factory=list)
    wall: float = 0.0
    split: str = ""
    samples: int = 0  # held-out samples behind the primary metric

    @property
    def best(self) -> float | None:
        scored = [s for s in self.scores if s is not None]
        return max(scored) if scored else None


def make_scenario(n_train: int, n_heldout: int, runs: int):
    from tunecrew.scenarios.task_agent.data import generate
    from tunecrew.scenarios.task_agent.scenario import SCENARIO
    from tunecrew.tools.scenario import ScenarioData

    def build(seed: int) -> ScenarioData:
        d = generate(seed=seed, n_train=n_train, n_heldout=n_heldout)
        return ScenarioData(train=d.train, heldout=d.heldout,
                            heldout_split=f"task-agent-heldout(seed={seed},n={n_heldout})")

    return replace(SCENARIO, build_data=build, max_attempts=runs)


def run_crew(scenario, base_model: str, seed: int, runs: int, out: Path, threads: int,
             attempt_seconds: float | None = None, budget_minutes: float | None = None) -> Outcome:
    from tunecrew.app.runner import RunOptions, run

    t0 = time.monotonic()
    outcome = run(RunOptions(scenario=scenario, base_model=base_model, seed=seed, use_memory=False, runs_dir=out,
                             run_id=f"crew-s{seed}", quiet=True, threads=threads, max_attempts=runs,
                             target=CREW_TARGET, attempt_seconds=attempt_seconds, budget_minutes=budget_minutes))
    result = Outcome("crew", seed, wall=time.monotonic() - t0)
    for r in outcome.records:
        result.scores.append(r.score)
        result.configs.append(_short(r.config))
        if r.eval is not None:
            result.split, result.samples = r.eval.split, r.eval.samples_of(r.eval.primary_metric)
    return result


class Trials:
    """One seed's baseline trials through the crew's tools, without the agents: same data, base
    model, persona (the offline Domain Expert's choice), validation, training and scoring."""

    def __init__(self, scenario, base_model: str, seed: int, out: Path, run_id: str, threads: int,
                 attempt_seconds: float | None = None):
        from tunecrew.agents import policy
        from tunecrew.agents.answers import DomainCandidates
        from tunecrew.agents.toolkit import Toolkit
        from tunecrew.app.console import CrewConsole
        from tunecrew.app.runner import RunOptions, prepare
        from tunecrew.tools.contracts import TrainConfig

        self.ctx = prepare(RunOptions(scenario=scenario, base_model=base_model, seed=seed, use_memory=False,
                                      runs_dir=out, run_id=run_id, quiet=True, threads=threads,
                                      attempt_seconds=attempt_seconds),
                           CrewConsole(quiet=True))
        self.tk = Toolkit(self.ctx)
        self.tk.profile_dataset()
        found = self.tk.detect_domain()
        assert isinstance(found, DomainCandidates), found
        top = found.candidates[0]
        self.tk.write_domain_card(top.domain, top.persona, top.evidence, min(1.0, top.score))
        # The crew's first config (what the offline Tuner proposes): the centre of the search space.
        self.crew_first: TrainConfig
        self.crew_first, _ = policy.initial_config(self.tk.brief())

    def score(self, config, attempt: int) -> tuple[float | None, object]:
        """Propose, train and evaluate one config as attempt `attempt`; (score, report or refusal)."""
        from tunecrew.agents.state import Attempt

        ctx = self.ctx
        ctx.current = Attempt(attempt)
        ctx.rejections = 0  # a refusal is reported as such, never replaced by the policy's fallback config
        answer = self.tk.propose_config(config)
        if not answer.accepted:
            return None, answer.model_dump(exclude_none=True)
        asyncio.run(self.tk.train())
        asyncio.run(self.tk.evaluate())
        report = ctx.current.report
        return (report.score if report else None), report


def run_default(scenario, base_model: str, seed: int, out: Path, threads: int,
                attempt_seconds: float | None = None) -> Outcome:
    from tunecrew.tools.contracts import TrainConfig

    t0 = time.monotonic()
    trials = Trials(scenario, base_model, seed, out, f"default-s{seed}", threads, attempt_seconds)
    config = TrainConfig()
    score, report = trials.score(config, 1)
    return _outcome("default", seed, [(config, score, report)], time.monotonic() - t0)


def run_search(sampler: str, scenario, base_model: str, seed: int, runs: int, out: Path, threads: int,
               attempt_seconds: float | None = None, scheduler: str | None = None) -> Outcome:
    from tunecrew.tools.search import suggest_next

    t0 = time.monotonic()
    trials = Trials(scenario, base_model, seed, out, f"{sampler}-s{seed}", threads, attempt_seconds)
    # The space's centre: the crew's first config, with the searchers' own schedule if one was asked for.
    base = trials.crew_first.model_copy(update={"lr_scheduler": scheduler}) if scheduler else trials.crew_first
    done = []
    for attempt in range(1, runs + 1):
        config = suggest_next([(c, s) for c, s, _ in done], base, seed, sampler)
        score, report = trials.score(config, attempt)
        done.append((config, score, report))
    return _outcome(sampler, seed, done, time.monotonic() - t0)


def _outcome(method: str, seed: int, done: list, wall: float) -> Outcome:
    from tunecrew.tools.contracts import EvalReport

    result = Outcome(method, seed, wall=wall)
    for config, score, report in done:
        result.scores.append(score)
        result.configs.append(_short(config) + ("" if isinstance(report, EvalReport) else f" (refused: {report})"))
        if isinstance(report, EvalReport):
            result.split, result.samples = report.split, report.samples_of(report.primary_metric)
    return result


def _short(config) -> str:
    # max_steps > 0 decides the length (the cap-sized first config and the search around it): say steps then.
    length = f"{config.max_steps} steps" if config.max_steps > 0 else f"ep {config.epochs:g}"
    more = " cont" if config.continue_training else ""
    return (f"lr {config.learning_rate:.3g} r{config.lora_rank} {length}{more} bs {config.effective_batch} "
            f"emb {'on' if config.train_embeddings else 'off'}")


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def _mean_std(values: list[float]) -> str:
    if not values:
        return "n/a"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values) if len(values) > 1 else 0.0:.3f}"


def build_base_model(out_dir: Path, scenario, demo: bool) -> str:
    """One tiny Llama for every method and seed, its tokenizer trained on seed 0's text."""
    from tunecrew.scenarios.task_agent.scenario import SCENARIO, TINY_SPEC
    from tunecrew.tools.domain import DOMAINS
    from tunecrew.tools.tinymodel import TinyModelSpec, create_tiny_model

    data = scenario.build_data(0)
    texts = [m["content"] for row in data.train for m in row["messages"]]
    texts += [d.persona for d in DOMAINS] + [SCENARIO.instruction]
    spec = TINY_SPEC if demo else TinyModelSpec(  # the tests' size (tests/conftest.py): ~0.1M params
        hidden_size=64, intermediate_size=128, num_layers=2, num_heads=2, num_kv_heads=1, vocab_size=600,
        added_tokens=TINY_SPEC.added_tokens)
    return str(create_tiny_model(out_dir, texts, spec))


def main(argv: list[str] | None = None) -> dict[str, list[Outcome]]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="smoke run: seed 0, 2 runs, 120 train rows, 16 held-out")
    p.add_argument("--seeds", help="comma-separated (default 0,1,2; --quick 0)")
    p.add_argument("--runs", type=int, help="training runs per method (default 3; --quick 2)")
    p.add_argument("--n-train", type=int, help="train rows (default 240; --quick 120)")
    p.add_argument("--n-heldout", type=int, help="held-out rows, half of them trained phrasings (default 64; "
                                                 "--quick 16)")
    p.add_argument("--methods", default=",".join(METHODS), help=f"subset of {','.join(METHODS)}")
    p.add_argument("--demo-model", action="store_true", help="the demo's 2M-param tiny model instead of ~0.1M")
    p.add_argument("--base-model", help="a `tunecrew models` name or model folder (e.g. smollm2-135m) for every "
                                        "method, instead of a tiny random-init Llama")
    p.add_argument("--attempt-seconds", type=float, help="wall cap on every training run of every method "
                                                         "(default: none)")
    p.add_argument("--crew-budget-minutes", type=float, help="the crew's --budget for its whole run (default: "
                                                             "the scenario's)")
    p.add_argument("--search-scheduler", choices=("cosine", "linear"),
                   help="lr schedule of every random/TPE trial (default: the crew's first config's)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, help="keep runs here (default: a temporary dir)")
    args = p.parse_args(argv)
    seeds = [int(s) for s in (args.seeds or ("0" if args.quick else "0,1,2")).split(",")]
    runs = args.runs or (2 if args.quick else 3)
    n_train = args.n_train or (120 if args.quick else 240)
    n_heldout = args.n_heldout or (16 if args.quick else 64)
    methods = [m for m in args.methods.split(",") if m]
    unknown = set(methods) - set(METHODS)
    if unknown:
        p.error(f"--methods: unknown {sorted(unknown)}; choose from {','.join(METHODS)}")

    from tunecrew.app.runner import _quiet_libraries

    _quiet_libraries()
    out = args.out or Path(tempfile.mkdtemp(prefix="tunecrew-tuning-quality-"))
    out.mkdir(parents=True, exist_ok=True)
    scenario = make_scenario(n_train, n_heldout, runs)
    base_model = args.base_model or build_base_model(out / "base_model", scenario, args.demo_model)
    print(f"machine: {_common.machine()}")
    print(f"tuning quality: task-agent, {n_train} train rows, {n_heldout} held-out, base model {base_model}, "
          f"{runs} training runs per method (default: 1), seeds {seeds}, threads {args.threads}, metric "
          f"{scenario.primary_metric} (best over a method's runs), cap per training run {args.attempt_seconds} s, "
          f"crew budget {args.crew_budget_minutes or scenario.budget_minutes} min, search schedule "
          f"{args.search_scheduler or 'as the crew first config'}", flush=True)

    results: dict[str, list[Outcome]] = {m: [] for m in methods}
    for seed in seeds:
        d = out / f"seed{seed}"
        for method in methods:
            if method == "crew":
                o = run_crew(scenario, base_model, seed, runs, d, args.threads, args.attempt_seconds,
                             args.crew_budget_minutes)
            elif method == "default":
                o = run_default(scenario, base_model, seed, d, args.threads, args.attempt_seconds)
            else:
                o = run_search(method, scenario, base_model, seed, runs, d, args.threads, args.attempt_seconds,
                               args.search_scheduler)
            results[method].append(o)
            tried = "; ".join(f"{c} -> {_fmt(s)}" for c, s in zip(o.configs, o.scores, strict=False))
            print(f"seed {seed} {method:7s} best {_fmt(o.best)} on {o.split} (n={o.samples}) in {len(o.scores)} "
                  f"run(s), {o.wall:.0f} s: {tried}", flush=True)

    rows = [[o.method, o.seed, _fmt(o.best), len(o.scores), f"{o.wall:.0f}"] for m in methods for o in results[m]]
    print()
    print(_common.table(["method", "seed", "best score", "runs used", "wall s"], rows))
    print()
    summary = []
    ref = {m: _bests(results[m]) for m in methods}
    for m in methods:
        bests = ref[m]
        summary.append([m, _mean_std(bests), f"{statistics.mean(len(o.scores) for o in results[m]):.1f}",
                        f"{statistics.mean(o.wall for o in results[m]):.0f}",
                        _ratio(bests, ref.get("crew")), _ratio(bests, ref.get("default"))])
    print(_common.table(["method", "best score mean ± std", "runs (mean)", "wall s (mean)", "score / crew",
                         "score / default"], summary))
    print(f"\nscores: {scenario.primary_metric} on the held-out split per seed; ratios of mean best scores; "
          f"runs in {out}")
    return results


def _bests(outcomes: list[Outcome]) -> list[float]:
    return [o.best if o.best is not None else 0.0 for o in outcomes]  # no scored run counts as 0


def _ratio(values: list[float], ref: list[float] | None) -> str:
    if not ref or not values or statistics.mean(ref) == 0:
        return "n/a"
    return f"{statistics.mean(values) / statistics.mean(ref):.2f}"


if __name__ == "__main__":
    main()
