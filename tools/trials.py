"""Parallel trials: train several configs of one attempt at once, on Ray or on this machine.

`--parallel N` makes one attempt a round of N trials: the Tuner's config and N-1 from the Optuna
search around it. Each trial is an ordinary `TrainJob` run by `run_training` (the same child
process, the same `TrainResult`), so a crash in one trial is that trial's result and never the
round's. What schedules them is an existing engine, not ours:

- **Ray** when it is installed (`pip install 'tunecrew[parallel]'`) or `--ray-address` names a
  cluster. Locally `ray.init()` starts a one-machine cluster; with an address the trials go to
  whichever node has the CPUs (or GPUs) a trial asks for, which is how Ray Tune, LLaMA-Factory
  and Axolotl users already scale. Ray's resource accounting places trials; tunecrew only says
  what one trial needs (`num_cpus = threads`, `num_gpus = 1` on CUDA).
- **A thread pool** otherwise: each thread waits on its trial's child process, which is all a
  one-machine round needs; the note says Ray was not used.

A cluster needs the run folder on storage every node sees (NFS, a shared volume): the job file,
the training data and the adapter are paths, as for one machine.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal

from .contracts import TrainResult
from .train import TrainJob, run_training

EngineName = Literal["ray", "local"]
# Ray's own environment variables keep a local cluster quiet and small: no dashboard, no usage
# report (there is no network), and workers that start with the driver's imports only.
_RAY_ENV = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_DISABLE_DOCKER_CPU_WARNING": "1"}


class EngineError(ValueError):
    """The engine asked for cannot run here (Ray missing for --ray-address, a cluster unreachable)."""


@dataclass(frozen=True)
class RoundTiming:
    """How long a round took and how much of it was the engine's, not training."""

    wall_seconds: float  # submit to the last result
    trial_seconds: list[float]  # each trial's own wall time (its child process, as run_training measured it)

    @property
    def overhead_seconds(self) -> float:
        """The engine's share: the round's wall time past its longest trial (scheduling, worker start-up,
        results coming back). Per trial it is this over the trial count."""
        return max(0.0, self.wall_seconds - max(self.trial_seconds, default=0.0))


def ray_available() -> bool:
    try:
        import ray  # noqa: F401
    except ImportError:
        return False
    return True


def choose_engine(address: str | None) -> EngineName:
    """Ray when installed (or required by an address); the local pool otherwise."""
    if address and not ray_available():
        raise EngineError(f"--ray-address {address}: Ray is not installed here; "
                          "pip install 'tunecrew[parallel]' (or pip install ray), or leave --ray-address out")
    return "ray" if ray_available() else "local"


def _unreachable(address: str, timeout_s: float = 5.0) -> str | None:
    """Why a host:port address (ray://host:port too) cannot be reached, or None; `auto` and other
    forms are Ray's to resolve."""
    import socket

    hostport = address.split("://", 1)[-1]
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        return None
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as exc:
        return f"nothing answers at {host}:{port} ({exc.strerror or exc}); start the head with `ray start --head`"
    return None


def _train_remote(job_json: str) -> str:
    """What a Ray worker runs: the same child-process training as on one machine, JSON in and out
    (plain strings cross Ray's object store without pickling pydantic classes)."""
    result = run_training(TrainJob.model_validate_json(job_json))
    return result.model_dump_json()


def connect(address: str | None, cpus: int = 1) -> Any:
    """Start (or join, with an address) the Ray cluster; EngineError in one line when it cannot."""
    import ray

    for key, value in _RAY_ENV.items():
        os.environ.setdefault(key, value)
    if not ray.is_initialized():
        if address and (problem := _unreachable(address)):  # Ray itself retries a dead address for minutes
            raise EngineError(f"--ray-address {address}: {problem}")
        try:
            if address:
                ray.init(address=address, include_dashboard=False, log_to_driver=False)
            else:
                ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False)
        except Exception as exc:  # a wrong address is the user's to fix: one line, not Ray's traceback
            raise EngineError(f"--ray-address {address or '(local)'}: Ray could not start or connect "
                              f"({type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''})") from None
    return ray


def run_round(jobs: Sequence[TrainJob], engine: EngineName, *, address: str | None = None,
              on_event: Callable[[dict[str, Any]], None] | None = None,
              gpus_per_trial: float = 0.0) -> tuple[list[TrainResult], RoundTiming]:
    """Train `jobs` concurrently; results in the order of `jobs`. Never raises for a trial's failure:
    a trial the engine itself lost becomes a TrainResult with status error."""
    started = time.monotonic()
    if engine == "ray":
        results = _ray_round(jobs, address, gpus_per_trial)
    else:
        # The first trial's progress goes to the terminal; all of them write their own train_log.jsonl.
        with ThreadPoolExecutor(max_workers=len(jobs), thread_name_prefix="trial") as pool:
            futures = [pool.submit(run_training, job, on_event=on_event if i == 0 else None)
                       for i, job in enumerate(jobs)]
            results = [f.result() for f in futures]
    timing = RoundTiming(wall_seconds=time.monotonic() - started, trial_seconds=[r.wall_seconds for r in results])
    return results, timing


def _ray_round(jobs: Sequence[TrainJob], address: str | None, gpus_per_trial: float) -> list[TrainResult]:
    ray = connect(address, cpus=sum(job.threads for job in jobs))
    remote = ray.remote(_train_remote)
    refs = [remote.options(num_cpus=job.threads, num_gpus=gpus_per_trial, max_retries=0).remote(job.model_dump_json())
            for job in jobs]
    _IN_FLIGHT.update(refs)
    results: list[TrainResult] = []
    try:
        for ref in refs:
            try:
                results.append(TrainResult.model_validate_json(ray.get(ref)))
            except Exception as exc:  # the worker died (node lost, Ray error): this trial's result, not the round's
                results.append(TrainResult(status="error", error=f"Ray lost this trial: {type(exc).__name__}: "
                                           f"{str(exc)[:300]}"))
    finally:
        _IN_FLIGHT.difference_update(refs)
    return results


# Ray trials still training. A Ctrl-C exits with os._exit (no atexit hooks), so the signal handler calls
# `stop_all()`: the trials' worker processes are killed, and their training children die with them
# (PR_SET_PDEATHSIG, tools/train.py), as `kill_active()` does for local children.
_IN_FLIGHT: set[Any] = set()


def stop_all() -> int:
    """Cancel every Ray trial in flight and stop the local cluster; returns how many were running."""
    if not _IN_FLIGHT:
        return 0
    import ray

    running = list(_IN_FLIGHT)
    for ref in running:
        with contextlib.suppress(Exception):  # already finished, or its worker already gone
            ray.cancel(ref, force=True)
    shutdown()
    return len(running)


def shutdown() -> None:
    """Stop the local Ray cluster this process started, if any (the CLI calls it once at the end)."""
    try:
        import ray
    except ImportError:
        return
    if ray.is_initialized():
        ray.shutdown()
