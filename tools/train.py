"""The train tool: run one attempt in a child process and turn whatever happens into a TrainResult.

Training runs in a subprocess with a JSON job in and a JSON result out, so an OOM kill, a segfault
in a kernel or a NaN never takes the crew down with it, and swapping the launcher (another
interpreter for Unsloth, `accelerate launch`, a cluster job) is a change in this one file.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from .contracts import TrainConfig, TrainResult

RESULT_FILE = "result.json"
LOG_FILE = "train_log.jsonl"
JOB_FILE = "job.json"


class TrainJob(BaseModel):
    """Everything the child process needs; written to `<attempt>/job.json`."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    config: TrainConfig
    base_model: str = Field(description="Local path or hub id, loaded with from_pretrained.")
    train_file: str = Field(description="JSONL of {'messages': [user, assistant]} rows; for method=dpo, "
                            "{'prompt', 'chosen', 'rejected'} pairs (tools/recipes.py writes both).")
    output_dir: str = Field(description="The attempt directory; the adapter goes to <output_dir>/adapter.")
    system_prompt: str = Field("", description="The Domain Expert's persona, prepended to every prompt.")
    threads: int = Field(2, ge=1, le=256, description="torch threads: these machines are shared, 2 cores.")
    max_wall_seconds: float | None = Field(None, gt=0, description="Stop training (keeping what was learned) "
                                           "after this.")
    init_adapter: str | None = Field(None, description="config.continue_training: the adapter folder to keep "
                                     "training, instead of a fresh adapter on the base model.")
    python: str | None = Field(None, description="Interpreter that runs the worker, e.g. an Unsloth venv's; "
                               "default: $TUNECREW_TRAIN_PYTHON, else this one.")


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
    cmd = [interpreter, "-m", "tunecrew.tools.train_worker", str(out / JOB_FILE)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false"}
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
    result_path = out / RESULT_FILE
    if result_path.exists():
        try:
            # The wall time is the parent's: the child cannot see its own interpreter start and imports.
            return TrainResult.model_validate_json(result_path.read_text()).model_copy(update={"wall_seconds": wall})
        except ValueError as exc:  # a child killed mid-write leaves half a file
            return TrainResult(status="error", wall_seconds=wall, error=f"unreadable {result_path}: {exc}")
    tail = "\n".join(stderr_tail[-12:])
    if code in (-signal.SIGKILL, 137):
        return TrainResult(
            status="oom", wall_seconds=wall,
            error=f"training process was killed (signal 9), most likely out of memory.\n{tail}",
        )
    if looks_like_oom(tail, memory_capped):
        return TrainResult(status="oom", wall_seconds=wall,
                           error=f"training process ran out of memory (exit code {code}).\n{tail}")
    return TrainResult(status="error", wall_seconds=wall, error=f"training process exited with code {code}.\n{tail}")


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
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)


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
