"""One run's folder, `runs/<id>/`: every file name in it, and the only code that writes run.json.

    runs/<id>/run.json                 RunSpec: what was asked (written here, and only here)
             config.yaml               the resolved RunConfig (`tunecrew run -c` repeats the run)
             data/train.jsonl          the rows every attempt trains on (before its recipe)
             data/heldout.jsonl        the rows every attempt is scored on
             data/rephrased.jsonl      data.synthetic_source=llm: the LLM's rewrites of training requests
             domain.json               the Domain Expert's card (persona)
             baseline_eval.json        the base model on the held-out split
             judge_baseline.json       the LLM judge's verdicts on the base model
             ledger.jsonl              one AttemptRecord per finished attempt (the source of truth)
             transcript.jsonl          the agents' messages
             report.md                 the report (tools/report.py)
             base_model/               `--base-model tiny`, built from the data
             rate_probe/               timed steps that measure the training rate (removed after)
             .lock                     held (flock) by the one process running the crew on this run
             contract.json             task-agent --data: the reply contract its rows were scored under
             attempts/<n>/config.json  the accepted TrainConfig
                          result.json  the TrainResult (written by the training worker, then enriched)
                          eval.json    the EvalReport
                          judge.json   the LLM judge's verdicts
                          adapter/     the trained adapter
                          tb/          TensorBoard event files (`tensorboard --logdir runs/<id>/attempts`)
                          train_log.jsonl, stderr.log   the worker's progress lines and its stderr
                          trials/<k>/  --parallel: a sibling config of the round, same files as above;
                                       config/result/eval.json above are the chosen trial's

Readers elsewhere (the task agent's server, `tunecrew memory`) take these names from here too.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel

from .contracts import RunSpec

try:
    import fcntl
except ImportError:  # Windows: no flock; one process per run is then the user's to keep
    fcntl = None  # type: ignore[assignment]

__all__ = ["AttemptDir", "RunDir", "RunInUse", "write_model"]

RESULT_FILE = "result.json"  # the training worker writes it into its output folder (an attempt's)


class RunInUse(ValueError):
    """Another process is running the crew on this run: two would train the same attempt."""


def write_model(path: Path, model: BaseModel) -> None:
    """Every file that describes a run is written beside and renamed into place: a kill mid-write
    leaves the old file (or none), never half a new one that `resume` would fail to read."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(model.model_dump_json(indent=2), encoding="utf-8")
    os.replace(tmp, path)


@dataclass(frozen=True)
class AttemptDir:
    """`attempts/<n>/`: one attempt's files."""

    path: Path

    @property
    def config(self) -> Path:
        return self.path / "config.json"

    @property
    def result(self) -> Path:
        return self.path / RESULT_FILE

    @property
    def eval(self) -> Path:
        return self.path / "eval.json"

    @property
    def judge(self) -> Path:
        return self.path / "judge.json"

    @property
    def adapter(self) -> Path:
        return self.path / "adapter"

    def recipe_file(self, name: str) -> Path:
        """A training file made for this attempt by its data recipe (NAT rows, DPO pairs, synthetic)."""
        return self.path / f"{name}.jsonl"

    def trial(self, number: int) -> AttemptDir:
        """`attempts/<n>/trials/<k>/`: a sibling config of a parallel round (`--parallel`); trial 0 is
        the attempt's own folder, so a round of one is laid out as before."""
        return self if number == 0 else AttemptDir(self.path / "trials" / str(number))


@dataclass(frozen=True)
class RunDir:
    """`runs/<id>/`: where each of a run's files lives."""

    path: Path

    @property
    def spec(self) -> Path:
        return self.path / "run.json"

    @property
    def train_data(self) -> Path:
        return self.path / "data" / "train.jsonl"

    @property
    def heldout_data(self) -> Path:
        return self.path / "data" / "heldout.jsonl"

    @property
    def rephrased_data(self) -> Path:
        return self.path / "data" / "rephrased.jsonl"

    @property
    def domain(self) -> Path:
        return self.path / "domain.json"

    @property
    def baseline(self) -> Path:
        return self.path / "baseline_eval.json"

    @property
    def judge_baseline(self) -> Path:
        return self.path / "judge_baseline.json"

    @property
    def ledger(self) -> Path:
        return self.path / "ledger.jsonl"

    @property
    def transcript(self) -> Path:
        return self.path / "transcript.jsonl"

    @property
    def report(self) -> Path:
        return self.path / "report.md"

    @property
    def tiny_base_model(self) -> Path:
        return self.path / "base_model"

    @property
    def rate_probe(self) -> Path:
        return self.path / "rate_probe"

    @property
    def contract(self) -> Path:
        """The task agent's reply contract for a run on the user's data: resume scores and serve parses with it."""
        return self.path / "contract.json"

    def attempt(self, number: int) -> AttemptDir:
        return AttemptDir(self.path / "attempts" / str(number))

    def is_run(self) -> bool:
        return self.spec.is_file()

    def read_spec(self) -> RunSpec:
        return RunSpec.model_validate_json(self.spec.read_text(encoding="utf-8"))

    def write_spec(self, spec: RunSpec) -> None:
        """run.json: at the start, and when a person or `--add-attempts` extends the attempt budget."""
        write_model(self.spec, spec)

    @contextmanager
    def hold(self) -> Iterator[None]:
        """Exclusive use of this run by this process, for as long as the block runs.

        An `flock` on `.lock`: the kernel drops it when the process dies, however it dies, so a
        killed run never leaves a stale lock behind and `resume` needs no clean-up.
        """
        self.path.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path / ".lock", os.O_RDWR | os.O_CREAT, 0o644)  # not inherited by the trainer
        try:
            if fcntl is not None:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
                    raise RunInUse(f"{self.path} is in use by another tunecrew process (pid {holder}); wait for it "
                                   "to end or stop it (Ctrl-C), then `tunecrew resume` this run") from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode(), 0)
            yield
        finally:
            os.close(fd)  # closing the only descriptor releases the lock


class NoSuchRun(FileNotFoundError):
    """A run reference that names no run folder; the message says where it looked."""


def find_run(ref: str | Path, runs_dir: str | Path) -> RunDir:
    """`ref` as a folder holding run.json, else `runs_dir/ref` (a run id): what `agent`, `serve` and
    `export` accept."""
    direct, named = RunDir(Path(ref)), RunDir(Path(runs_dir) / str(ref))
    for candidate in (direct, named):
        if candidate.is_run():
            return candidate
    looked = (f"{direct.spec} does not exist" if direct.spec == named.spec
              else f"neither {direct.spec} nor {named.spec} exists")
    raise NoSuchRun(f"no run {str(ref)!r}: {looked} (give a run id under --runs-dir, or a run directory)")
