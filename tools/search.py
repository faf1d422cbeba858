"""Bounded hyperparameter search over finished attempts: Optuna's TPE or random sampler, ask/tell.

Nothing here trains. `suggest_next` rebuilds an Optuna study from the attempts already finished
(`create_trial` + `add_trial`), asks it for one more point and returns it as a validated
`TrainConfig`, so a suggestion costs no training run and every attempt of the crew stays one
recorded attempt (ledger, memory) whoever chose its config.

The space is small on purpose (learning rate, LoRA rank with alpha = 2 * rank, training length)
and centred on a config that is already sane for this data, model and machine (the run's first
attempt): the other fields (method, embeddings, batch, sequence length, ...) are kept from it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from tunecrew.tools.contracts import TrainConfig
from tunecrew.tools.diagnose import ADAPTER_LR_CAP, ADAPTER_METHODS, FULL_LR_CAP, MAX_EPOCHS, MIN_EPOCHS

Sampler = Literal["tpe", "random"]
History = Sequence[tuple[TrainConfig, float | None]]  # (config, primary metric); None: no score (failed)

# Learning rates outside these are not worth a run: too small to move an adapter / weights in a
# few hundred steps. The caps are the diagnosis' (past them training tends to diverge).
ADAPTER_LR_FLOOR = 1e-5
FULL_LR_FLOOR = 1e-6
LR_SPAN = 10.0  # the space covers base lr / 10 .. base lr * 10, within the floor and cap
LENGTH_SPAN = 4.0  # epochs (or max_steps) from base / 4 to base * 4, within MIN_EPOCHS..max_epochs
RANKS = (8, 16, 32, 64)  # LoRA capacity: 8-64 covers most tasks (TrainConfig's advice)
# TPE samples at random until it has this many scored trials; with a budget of a few runs the
# library default (10) would make TPE the same as random search. One: the first trial is drawn
# from the same stream as random search's, so the two differ only where TPE learns.
TPE_STARTUP_TRIALS = 1


@dataclass(frozen=True)
class SearchSpace:
    """What the search may change, and its bounds. Everything else comes from `base`."""

    base: TrainConfig  # the centre: a config already sized for this data, model and machine
    lr: tuple[float, float]  # log-uniform
    ranks: tuple[int, ...]  # categorical; empty for method=full (no adapter)
    length_field: Literal["epochs", "max_steps"]  # base.max_steps > 0 means steps decide the length
    length: tuple[float, float]  # log-uniform; rounded to 0.1 epochs or whole steps

    def distributions(self) -> dict[str, Any]:
        from optuna.distributions import CategoricalDistribution, FloatDistribution

        dists: dict[str, Any] = {"learning_rate": FloatDistribution(*self.lr, log=True),
                                 self.length_field: FloatDistribution(*self.length, log=True)}
        if self.ranks:
            dists["lora_rank"] = CategoricalDistribution(list(self.ranks))
        return dists

    def params_of(self, config: TrainConfig) -> dict[str, Any]:
        """A config's point in this space (the searched fields only)."""
        params: dict[str, Any] = {"learning_rate": config.learning_rate,
                                  self.length_field: float(getattr(config, self.length_field))}
        if self.ranks:
            params["lora_rank"] = config.lora_rank
        return params

    def config_of(self, params: dict[str, Any]) -> TrainConfig:
        """The base config with a point's values; validated by TrainConfig (its bounds and coherence)."""
        length = params[self.length_field]
        changes: dict[str, Any] = {"learning_rate": float(f"{params['learning_rate']:.3g}"),
                                   self.length_field: round(length, 1) if self.length_field == "epochs"
                                   else max(1, round(length))}
        if self.ranks:
            rank = int(params["lora_rank"])
            changes.update(lora_rank=rank, lora_alpha=2 * rank)
        return self.base.with_changes(changes)

    def covering(self, configs: Sequence[TrainConfig]) -> SearchSpace:
        """This space widened to contain `configs` (attempts chosen by someone else, e.g. the
        Planner's escalations), so every finished attempt is evidence for the sampler."""
        if not configs:
            return self
        lrs = [c.learning_rate for c in configs]
        lengths = [float(getattr(c, self.length_field)) for c in configs if getattr(c, self.length_field) > 0]
        ranks = self.ranks
        if ranks:
            ranks = tuple(sorted(set(ranks) | {c.lora_rank for c in configs}))
        return SearchSpace(base=self.base, lr=(min(self.lr[0], *lrs), max(self.lr[1], *lrs)), ranks=ranks,
                           length_field=self.length_field,
                           length=(min(self.length[0], *lengths), max(self.length[1], *lengths)))

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"learning_rate": [f"{self.lr[0]:.3g}", f"{self.lr[1]:.3g}", "log"],
                               self.length_field: [round(self.length[0], 2), round(self.length[1], 2), "log"]}
        if self.ranks:
            out["lora_rank"] = list(self.ranks)
            out["lora_alpha"] = "2 * lora_rank"
        return out


def search_space(base: TrainConfig, max_epochs: float = MAX_EPOCHS) -> SearchSpace:
    """The bounded space around `base`. `max_epochs` caps training length (e.g. from a time
    budget); with base.max_steps > 0 the cap is on steps instead, at the same ratio to base."""
    adapter = base.method in ADAPTER_METHODS
    floor, cap = (ADAPTER_LR_FLOOR, ADAPTER_LR_CAP) if adapter else (FULL_LR_FLOOR, FULL_LR_CAP)
    lr_low = min(max(base.learning_rate / LR_SPAN, floor), base.learning_rate)
    lr_high = max(min(base.learning_rate * LR_SPAN, cap), base.learning_rate)
    if base.max_steps > 0:
        steps = float(base.max_steps)
        step_cap = steps * max_epochs / max(base.epochs, MIN_EPOCHS)
        length = (max(1.0, steps / LENGTH_SPAN), max(steps, min(steps * LENGTH_SPAN, step_cap)))
        field: Literal["epochs", "max_steps"] = "max_steps"
    else:
        top = max(min(base.epochs * LENGTH_SPAN, max_epochs), base.epochs)
        length = (min(max(base.epochs / LENGTH_SPAN, MIN_EPOCHS), base.epochs), top)
        field = "epochs"
    return SearchSpace(base=base, lr=(lr_low, lr_high), ranks=RANKS if adapter else (), length_field=field,
                       length=length)


@dataclass(frozen=True)
class Suggestion:
    config: TrainConfig
    trials_seen: int  # finished attempts the sampler learned from (scored or failed)
    best: tuple[TrainConfig, float] | None  # best scored attempt so far
    space: SearchSpace
    sampler: Sampler


def suggest_next(history: History, base: TrainConfig, seed: int, sampler: Sampler = "tpe", *,
                 max_epochs: float = MAX_EPOCHS, startup_trials: int = TPE_STARTUP_TRIALS) -> TrainConfig:
    """The next config to train, given the finished attempts. Deterministic for the same history,
    base and seed. See `suggest` for the reasons that come with it."""
    return suggest(history, base, seed, sampler, max_epochs=max_epochs, startup_trials=startup_trials).config


def suggest(history: History, base: TrainConfig, seed: int, sampler: Sampler = "tpe", *,
            max_epochs: float = MAX_EPOCHS, startup_trials: int = TPE_STARTUP_TRIALS) -> Suggestion:
    """Rebuild a study from `history` (maximising the score) and ask it for one more point."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "Trial N finished" lines in the crew's terminal
    if sampler not in ("tpe", "random"):
        raise ValueError(f"sampler={sampler!r}: use 'tpe' or 'random'")
    space = search_space(base, max_epochs).covering([c for c, _ in history])
    dists = space.distributions()
    # A fresh study per call: seed it with (seed, trials seen), or a random sampler rebuilt from
    # the same seed would suggest the same first point every time.
    rng_seed = int(np.random.SeedSequence([seed, len(history)]).generate_state(1)[0])
    chosen = (optuna.samplers.TPESampler(seed=rng_seed, n_startup_trials=startup_trials) if sampler == "tpe"
              else optuna.samplers.RandomSampler(seed=rng_seed))
    study = optuna.create_study(direction="maximize", sampler=chosen)
    for config, score in history:
        ok = score is not None and math.isfinite(score)
        study.add_trial(optuna.trial.create_trial(
            params=space.params_of(config), distributions=dists, value=score if ok else None,
            state=optuna.trial.TrialState.COMPLETE if ok else optuna.trial.TrialState.FAIL))
    trial = study.ask(dists)
    config = space.config_of(trial.params)
    scored = [(c, s) for c, s in history if s is not None and math.isfinite(s)]
    best = max(scored, key=lambda cs: cs[1]) if scored else None
    return Suggestion(config=config, trials_seen=len(history), best=best, space=space, sampler=sampler)


def suggest_siblings(history: History, base: TrainConfig, seed: int, count: int, *,
                     keep_length: bool = True) -> list[TrainConfig]:
    """`count` more configs to train beside `base` in one parallel round (`--parallel`): asked from
    one study, TPE with the constant liar (Optuna's own answer to batches: a pending trial counts as
    a bad result, so the next ask looks elsewhere). With `keep_length` every sibling trains as long
    as `base`, so a round's trials cost the same time and compare on learning rate and rank alone.
    Distinct from `base` and from each other; fewer than `count` when the space has no more."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = search_space(base).covering([c for c, _ in history])
    dists = space.distributions()
    rng_seed = int(np.random.SeedSequence([seed, len(history), count]).generate_state(1)[0])
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(
        seed=rng_seed, n_startup_trials=TPE_STARTUP_TRIALS, constant_liar=True))
    for config, score in history:
        ok = score is not None and math.isfinite(score)
        study.add_trial(optuna.trial.create_trial(
            params=space.params_of(config), distributions=dists, value=score if ok else None,
            state=optuna.trial.TrialState.COMPLETE if ok else optuna.trial.TrialState.FAIL))
    chosen: list[TrainConfig] = []
    seen = {_point(base)}
    for _ in range(4 * count):  # a few spare asks: two can round to the same point
        if len(chosen) == count:
            break
        trial = study.ask(dists)  # left running: the constant liar treats it as pending
        params = dict(trial.params)
        if keep_length:
            params[space.length_field] = float(getattr(base, space.length_field))
        config = space.config_of(params)
        if _point(config) not in seen:
            seen.add(_point(config))
            chosen.append(config)
    return chosen


def _point(config: TrainConfig) -> tuple[float, int, float, int]:
    return (config.learning_rate, config.lora_rank, config.epochs, config.max_steps)
