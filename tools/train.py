"""The train tool: run one attempt in a child process and turn whatever happens into a TrainResult.

Training runs in a subprocess with a JSON job in and a JSON result out, so an OOM kill, a segfault
in a kernel or a NaN never takes the crew down with it, and swapping the launcher (another
interpreter for Unsloth, `accelerate launch`, a cluster job) is a change in this one file.

`TrainJob.processes` > 1 trains data-parallel (DDP) under accelerate's own launcher (torchrun
underneath: one rank per process, gloo on CPU, NCCL on CUDA). The contract stays one child: rank 0
alone prints progress and writes `result.json`; a rank that raises leaves `rank<N>.failed.json`, and
the earliest of those is the result, since the other ranks only fail because it went first.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from .contracts import TrainConfig, TrainResult

RESULT_FILE = "result.json"
LOG_FILE = "train_log.jsonl"
JOB_FILE = "job.json"
# Under DDP a rank that raises writes its failure here (TrainResult + when + which rank), rank 0
# included: rank 0 cannot tell a failure of its own from the one another rank's death caused.
RANK_FAILURE_FILE = "rank{rank}.failed.json"


class TrainJob(BaseModel):
    """Everything the child process needs; written to `<attempt>/job.json`."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    config: TrainConfig
    base_model: str = Field(description="Local path or hub id, loaded with from_pretrained.")
    train_file: str = Field(description="JSONL of {'messages': [user, assistant]} rows; for method=dpo, "
                            "{'prompt', 'chosen', 'rejected'} pairs (tools/recipes.py writes both).")
    output_dir: str = Field(description="The attempt directory; the adapter goes to <output_dir>/adapter.")
    system_prompt: str = Field("", description="The system message of every row: the Domain Expert's persona and "
                               "the scenario's instruction (serving and export read it back from job.json).")
    threads: int = Field(2, ge=1, le=256, description="torch threads: these machines are shared, 2 cores.")
    max_wall_seconds: float | None = Field(None, gt=0, description="Stop training (keeping what was learned) "
                                           "after this.")
    init_adapter: str | None = Field(None, description="config.continue_training: the adapter folder to keep "
                                     "training, instead of a fresh adapter on the base model.")
    data_offset: int = Field(0, ge=0, description="Rows of the seeded shuffle of the training rows that "
                             "init_adapter already drew from (TrainResult.data_end of the run it continues): "
                             "this run starts after them, so a continued attempt learns from new rows instead "
                             "of replaying the ones the adapter was trained on.")
    python: str | None = Field(None, description="Interpreter that runs the worker, e.g. an Unsloth venv's; "
                               "default: $TUNECREW_TRAIN_PYTHON, else this one.")
    processes: int = Field(1, ge=1, le=64, description="Data-parallel training processes (DDP through `accelerate "
                           "launch`): one per GPU on CUDA, or CPU processes sharing `threads`. The global "
                           "effective batch stays config.effective_batch (see per_process_batch).")

    @model_validator(mode="after")
    def _launchable(self) -> TrainJob:
        if self.processes > 1 and self.config.backend == "unsloth":
            raise ValueError(f"processes={self.processes}: backend=unsloth trains in one process here; "
                             "set processes=1 or backend='hf'")
        return self

    @property
    def threads_per_process(self) -> int:
        """torch threads each process gets: the job's threads shared out, at least one each."""
        return max(1, self.threads // self.processes)


def per_process_batch(config: TrainConfig, processes: int) -> tuple[int, int]:
    """(per-device batch, gradient accumulation) for each of `processes` DDP ranks.

    TrainConfig's batch_size x grad_accum is the effective batch of the single-process run, and
    with N processes it stays the *global* effective batch (per-device batch x grad_accum x N), so
    an attempt's step count, learning-rate schedule and loss curve do not depend on how many
    processes ran it. Gradient accumulation is divided first (each device keeps the micro-batch, and
    with it the memory, that the config was estimated at), else the batch; when N divides neither,
    the per-device batch is rounded up and the global batch grows to ceil(batch/N) x N x grad_accum.
    """
    if processes <= 1:
        return config.batch_size, config.grad_accum
    if config.grad_accum % processes == 0:
        return config.batch_size, config.grad_accum // processes
    if config.batch_size % processes == 0:
        return config.batch_size // processes, config.grad_accum
    return -(-config.batch_size // processes), config.grad_accum


ProgressFn = Callable[[dict[str, Any]], None]

# The eval-loss curve (for the overfit diagnosis) is a side measurement: a few points on a capped
# split. Measured on SmolLM2-135M, 21 steps of batch 4: 8 evals of 96 rows cost 3x the training.
EVAL_POINTS = 4
MAX_EVAL_ROWS = 64
MIN_EVAL_ROWS = 8
EVAL_COST_SHARE = 0.1  # the eval passes may cost this share of the training's own work
FORWARD_SHARE = 1 / 3  # a forward pass is about a third of a training step's work per token


def eval_rows(rows: int, config: TrainConfig) -> int:
    """Train rows held back for the eval loss: `eval_fraction` of them, at most MAX_EVAL_ROWS, and
    few enough that EVAL_POINTS passes over them cost about EVAL_COST_SHARE of the training."""
    wanted = min(int(rows * config.eval_fraction), MAX_EVAL_ROWS)
    if wanted == 0:
        return 0
    trained = rows * config.epochs if config.max_steps <= 0 else config.max_steps * config.effective_batch
    affordable = int(EVAL_COST_SHARE * min(trained, rows * config.epochs) / (EVAL_POINTS * FORWARD_SHARE))
    return min(wanted, max(MIN_EVAL_ROWS, affordable))

# Children still training. The crew runs `run_training` in a worker thread, so a Ctrl-C reaches the
# event loop, not this function: the CLI calls `kill_active()` so no orphan trainer is left behind.
_ACTIVE: set[subprocess.Popen] = set()


def kill_active() -> int:
    """Kill every training child of this process; returns how many were running."""
    procs = list(_ACTIVE)
    for proc in procs:
        _kill(proc)
    return len(procs)


def run_training(
    job: TrainJob,
    *,
    on_event: ProgressFn | None = None,
    python: str | None = None,
    timeout_s: float | None = None,
    memory_limit_mb: int | None = None,
) -> TrainResult:
    """Train in a child process; never raises for a failure of the training itself.

    `on_event` receives each JSON progress event the child prints (`{"event": "log", ...}`), for
    a progress bar. `python` picks the interpreter (e.g. an Unsloth venv's). `memory_limit_mb`
    caps the child's address space, which turns a runaway allocation into a clean `oom` result.
    """
    out = Path(job.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / RESULT_FILE).unlink(missing_ok=True)
    (out / JOB_FILE).write_text(job.model_dump_json(indent=2))
    try:
        interpreter = resolve_python(python or job.python)
    except TrainSetupError as exc:  # the config cannot fix this: say so without starting a child
        return TrainResult(status="error", error=str(exc))
    for stale in out.glob(RANK_FAILURE_FILE.format(rank="*")):
        stale.unlink()
    cmd = worker_command(interpreter, out / JOB_FILE, job.processes)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false"}
    if job.processes > 1:  # torchrun would otherwise set 1; the worker's torch.set_num_threads agrees
        env["OMP_NUM_THREADS"] = str(job.threads_per_process)
    else:
        env.setdefault("OMP_NUM_THREADS", str(job.threads))
    started = time.monotonic()
    stderr_tail: deque[str] = deque(maxlen=40)
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        preexec_fn=_child_setup(memory_limit_mb),
        start_new_session=True,  # a Ctrl-C in the terminal is the crew's to handle, not the child's
    )
    _ACTIVE.add(proc)
    err_thread = threading.Thread(target=_drain, args=(proc.stderr, stderr_tail, out / "stderr.log"), daemon=True)
    err_thread.start()
    timer = threading.Timer(timeout_s, _kill, args=(proc,)) if timeout_s else None
    if timer:
        timer.start()
    try:
        with open(out / LOG_FILE, "a", encoding="utf-8") as log:
            assert proc.stdout is not None
            for line in proc.stdout:
                event = _parse_event(line)
                if event is None:
                    continue
                log.write(json.dumps(event) + "\n")
                log.flush()
                if on_event is not None:
                    on_event(event)
        code = proc.wait()
    except BaseException:
        _kill(proc)  # the crew is going down (Ctrl-C): do not leave an orphan trainer behind
        raise
    finally:
        _ACTIVE.discard(proc)
        if timer:
            timer.cancel()
        err_thread.join(timeout=5)
    wall = time.monotonic() - started
    return _collect(out, code, list(stderr_tail), wall, memory_capped=bool(memory_limit_mb))


def worker_command(interpreter: str, job_file: Path, processes: int = 1) -> list[str]:
    """The worker's command line: the worker itself, or N ranks of it under accelerate's launcher.

    `--multi_gpu` is accelerate's name for its torchrun launcher, on CPU too: its `--cpu` launcher
    starts a single process unless MPI is set up. On a machine without CUDA the ranks find no GPU
    and the worker picks gloo. Every setting a user's accelerate config could change is explicit,
    and port 0 lets accelerate pick a free port, so two trainings never race for 29500.
    """
    worker = ["-m", "tunecrew.tools.train_worker", str(job_file)]
    if processes <= 1:
        return [interpreter, *worker]
    return [interpreter, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(processes),
            "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
            "--main_process_port", "0", *worker]


class TrainSetupError(ValueError):
    """The training interpreter cannot run the worker: a setup problem, not a config one."""


PYTHON_ENV = "TUNECREW_TRAIN_PYTHON"


def resolve_python(python: str | None = None) -> str:
    """The interpreter for the worker: `python`, else $TUNECREW_TRAIN_PYTHON, else this one.

    Another interpreter (an Unsloth venv's) is checked before use: it must exist, be executable
    and import tunecrew's worker, or the error says how to set it up.
    """
    chosen = python or os.environ.get(PYTHON_ENV) or None
    if not chosen:
        return sys.executable
    where = f"--train-python / ${PYTHON_ENV} {chosen!r}"
    path = Path(chosen).expanduser()
    if not path.is_file() or not os.access(path, os.X_OK):
        raise TrainSetupError(f"{where}: not an executable file; give the path of a Python interpreter, "
                              "e.g. .venv-unsloth/bin/python")
    try:
        probe = subprocess.run([str(path), "-c", "import tunecrew.tools.train_worker"], capture_output=True,
                               text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise TrainSetupError(f"{where}: could not be run ({exc})") from None
    if probe.returncode != 0:
        last = (probe.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise TrainSetupError(f"{where} cannot import tunecrew ({last}); install it into that environment "
                              f"with `{path} -m pip install --no-deps -e <tunecrew checkout>` (plus pydantic)")
    return str(path)


# How running out of memory reads, from Python and from native code (glibc, libstdc++, OpenBLAS, CUDA).
OOM_SIGNS = ("memoryerror", "out of memory", "cannot allocate memory", "memory allocation", "bad_alloc")
# Under an address-space cap (RLIMIT_AS) the dynamic loader fails too: its mmap of a library gets ENOMEM.
CAPPED_OOM_SIGNS = ("failed to map segment",)


def looks_like_oom(text: str | None, memory_capped: bool = False) -> bool:
    low = (text or "").lower()
    return any(s in low for s in OOM_SIGNS) or (memory_capped and any(s in low for s in CAPPED_OOM_SIGNS))


def _collect(out: Path, code: int, stderr_tail: list[str], wall: float, memory_capped: bool = False) -> TrainResult:
    tail = "\n".join(stderr_tail[-12:])
    # A DDP rank killed by signal 9 (the OOM killer) leaves no file of its own, while the ranks that
    # lose it raise and leave theirs: torchrun's root cause is the only witness.
    if ROOT_CAUSE_KILLED.search("\n".join(stderr_tail)):
        return TrainResult(status="oom", wall_seconds=wall,
                           error=f"a training process was killed (signal 9), most likely out of memory.\n{tail}")
    failed = first_rank_failure(out)
    if failed is not None:  # under DDP a raising rank outranks rank 0's result: it is why the others stopped
        return failed.model_copy(update={"wall_seconds": wall})
    result_path = out / RESULT_FILE
    if result_path.exists():
        try:
            # The wall time is the parent's: the child cannot see its own interpreter start and imports.
            return TrainResult.model_validate_json(result_path.read_text()).model_copy(update={"wall_seconds": wall})
        except ValueError as exc:  # a child killed mid-write leaves half a file
            return TrainResult(status="error", wall_seconds=wall, error=f"unreadable {result_path}: {exc}")
    if code in (-signal.SIGKILL, 137):
        return TrainResult(
            status="oom", wall_seconds=wall,
            error=f"training process was killed (signal 9), most likely out of memory.\n{tail}",
        )
    if looks_like_oom(tail, memory_capped):
        return TrainResult(status="oom", wall_seconds=wall,
                           error=f"training process ran out of memory (exit code {code}).\n{tail}")
    return TrainResult(status="error", wall_seconds=wall, error=f"training process exited with code {code}.\n{tail}")


# torchrun's failure summary (`Root Cause (first observed failure): ... exitcode : -9 (pid: N)`)
ROOT_CAUSE_KILLED = re.compile(r"Root Cause.*?exitcode\s*:\s*-9\b", re.DOTALL)


class RankFailure(BaseModel):
    """What a DDP rank that raised leaves in `<output_dir>/rank<N>.failed.json`."""

    model_config = ConfigDict(extra="forbid")

    rank: int = Field(ge=0, description="Which rank raised: the error names it.")
    at: float = Field(description="time.time() when it raised: the earliest failure is the cause.")
    result: TrainResult = Field(description="Its error as the TrainResult the parent reports.")


def first_rank_failure(out: Path) -> TrainResult | None:
    """The result of the rank that failed first, or None when no rank left a failure file."""
    failures: list[RankFailure] = []
    for path in out.glob(RANK_FAILURE_FILE.format(rank="*")):
        with contextlib.suppress(ValueError, OSError):  # a rank killed mid-write: the others still count
            failures.append(RankFailure.model_validate_json(path.read_text()))
    return min(failures, key=lambda f: f.at).result if failures else None


def _parse_event(line: str) -> dict[str, Any] | None:
    line = line.strip()
    if not line.startswith("{"):
        return None
    try:
        event = json.loads(line)
    except json.JSONDecodeError:
        return None
    return event if isinstance(event, dict) and "event" in event else None


def _drain(stream, tail: deque[str], path: Path) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for line in stream:
            f.write(line)
            tail.append(line.rstrip())


def _kill(proc: subprocess.Popen) -> None:
    """SIGKILL the child's process group and every process below it: torchrun starts each DDP rank
    in a session of its own, so killing the launcher's group alone would leave the ranks running
    until their PDEATHSIG fires (train_worker sets one; this does not wait for it)."""
    if proc.poll() is not None:
        return
    groups = {proc.pid} | _descendant_groups(proc.pid)
    groups.discard(os.getpgid(0))  # never our own group (a child cannot be in it: it started a session)
    for group in groups:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(group, signal.SIGKILL)


def _descendant_groups(pid: int) -> set[int]:
    """Process groups of every process below `pid` (empty without psutil or once `pid` is gone)."""
    try:
        import psutil  # accelerate's dependency: present wherever a launcher can run
    except ImportError:
        return set()
    groups: set[int] = set()
    try:
        children = psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return groups
    for child in children:
        with contextlib.suppress(ProcessLookupError):  # it exited while being listed
            groups.add(os.getpgid(child.pid))
    return groups


def _child_setup(limit_mb: int | None) -> Callable[[], None]:
    """Runs in the child before exec: die with the parent, and cap memory if asked."""

    def apply() -> None:
        if sys.platform.startswith("linux"):
            import ctypes

            # PR_SET_PDEATHSIG = 1: if the crew is killed (kill -9), its trainer goes too, so a
            # resumed run never races an orphan writing into the same attempt directory.
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)
        if limit_mb:
            import resource

            limit = limit_mb * 1024 * 1024
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    return apply
