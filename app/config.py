"""What `tunecrew run` is asked to do, as one model: each field is a command-line flag.

The flags are generated from the fields (name, type, bounds, help), so a flag cannot drift from
what the run reads; the same model validates a run configuration from any other source. Bounds
are checked by pydantic and reported as one line naming the flag.

    tunecrew run task-agent --seed 3 --budget 5      # RunConfig(scenario="task-agent", seed=3, budget=5)
"""

from __future__ import annotations

import argparse
import math
import os
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from tunecrew.scenarios.dataset import parse_columns

__all__ = ["CrewConfig", "FlagError", "RunConfig", "add_flags", "config_from_args"]


class FlagError(ValueError):
    """A flag's value is out of bounds: the message names the flag and what it accepts."""


class CrewConfig(BaseModel):
    """Who drives the agents and how the run uses this machine: `run`, `resume` and `chat` share it."""

    model_config = ConfigDict(extra="forbid")

    provider: Literal["offline", "openai", "gemini", "ollama"] | None = Field(
        None, description="who drives the agents (default: offline, a deterministic policy; for resume and chat: "
        "the provider the run was started with)")
    strict_provider: bool = Field(False, description="a failed LLM call ends the run (exit 2) instead of being "
                                  "answered by the offline policy")
    model: str | None = Field(None, description="LLM name for the provider, e.g. gemini-2.5-flash")
    base_url: str | None = Field(None, description="OpenAI-compatible endpoint (vLLM, Ollama, LM Studio, llama.cpp)")
    api_key: str | None = Field(None, description="API key (prefer OPENAI_API_KEY / GEMINI_API_KEY in the environment)")
    agent: list[str] = Field(default_factory=list, description="ROLE=PROVIDER[:MODEL]: a different provider for one "
                             "agent, e.g. Planner=openai:gpt-4.1 (repeatable)")
    threads: int | None = Field(None, ge=1, le=256, description="CPU threads for torch (default: the free cores, "
                                "at most 4)")
    train_python: str | None = Field(None, description="PATH: interpreter that runs training, e.g. "
                                     ".venv-unsloth/bin/python for backend=unsloth (default: $TUNECREW_TRAIN_PYTHON, "
                                     "else this one)")
    interactive: bool = Field(False, description="review each Planner decision: approve, edit ('lr 1e-4, rank 8'), "
                              "+N attempts, stop, or guide")
    quiet: bool = Field(False, description="no conversation in the terminal, only the summary")

    @field_validator("agent")
    @classmethod
    def _role_overrides(cls, value: list[str]) -> list[str]:
        """Checked with the other flags, before any work (the run's clients are built from it later)."""
        if value:
            from tunecrew.agents.models import ProviderSpec, role_specs
            from tunecrew.agents.roles import ROLES

            role_specs(ProviderSpec(), value, ROLES)  # its ProviderError names the flag and what it accepts
        return value


class RunConfig(CrewConfig):
    """`tunecrew run`: a scenario (or your data), the base model, the target and the budget."""

    scenario: str | None = Field(None, description="a name from `tunecrew scenarios`; leave out with --data: your own "
                                 "dataset")
    data: str | None = Field(None, description="FILE_OR_HUB_ID: a .jsonl/.csv/.parquet file or hub id "
                             "(owner/name[:config]) instead of the scenario's data")
    columns: str | None = Field(None, description="ROLE=COLUMN,...: column mapping when detection fails, e.g. "
                                "prompt=Question,response=Response,reasoning=Complex_CoT")
    heldout: float | None = Field(None, description="held-out rows to score on (N >= 1) or a fraction (< 1); "
                                  "default 10%%, at most 64")
    base_model: str | None = Field(None, description="NAME_PATH_OR_HUB_ID: a name from `tunecrew models` (default "
                                   "smollm2-135m, a pretrained model that resolves offline; tiny: a random-init model "
                                   "built from the data, for tests), a local model folder or a hub id")
    max_attempts: int | None = Field(None, ge=1, le=50, description="training attempts at most (default: the "
                                     "scenario's, 3)")
    target: float | None = Field(None, gt=0, le=1, description="stop when the primary metric reaches this (0-1)")
    seed: int = Field(0, ge=0, description="data split, sampling and training seed")
    budget: float | None = Field(None, ge=1, le=10_000, description="MINUTES: wall-clock minutes for the whole run: "
                                 "each attempt is sized from the measured training rate to fit (default: the "
                                 "scenario's, 10 for task-agent)")
    attempt_seconds: float | None = Field(None, gt=0, description="wall-clock cap per training run (keeps what it "
                                          "learned)")
    judge: list[str] = Field(default_factory=list, description="PROVIDER[:MODEL]: an LLM judge of held-out replies, "
                             "e.g. openai:gpt-4.1-mini (repeatable: agreement is reported); default: the Judge agent's "
                             "provider (offline: a heuristic judge, no LLM)")
    judge_samples: int = Field(30, ge=1, description="held-out samples each judge scores, chosen by --seed "
                               "(default 30; all when fewer)")
    memory: str | None = Field(None, description="memory store dir or Chroma server URL (default ~/.tunecrew/memory)")
    no_memory: bool = Field(False, description="neither recall nor remember attempts")
    embedder: str = Field("hashing", description="memory embedder: hashing[:DIM] (default, offline), "
                          "st:/path/to/model, openai:MODEL or gemini:MODEL; must match the store's")
    runs_dir: Path = Field(Path("runs"), description="where runs/<id>/ is written (default ./runs)")

    @field_validator("heldout", "budget", "attempt_seconds", "target", mode="before")
    @classmethod
    def _finite(cls, value: float | None) -> float | None:
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError("must be a finite number")
        return value

    @field_validator("heldout")
    @classmethod
    def _rows_or_fraction(cls, value: float | None) -> float | None:
        if value is not None and (value <= 0 or (value >= 1 and value != int(value))):
            raise ValueError("must be a row count (1, 2, ...) or a fraction in (0, 1)")
        return value

    @field_validator("columns")
    @classmethod
    def _columns(cls, value: str | None) -> str | None:
        if value is not None:
            parse_columns(value)  # its ValueError names the bad role or pair
        return value

    @field_validator("runs_dir")
    @classmethod
    def _writable_folder(cls, value: Path) -> Path:
        """Checked before any work: the run's folder is created under it."""
        existing = next((p for p in (value, *value.parents) if p.exists()), None)
        if existing is not None and not existing.is_dir():
            raise ValueError(f"must be a folder to hold runs/<id>/, but {existing} is a file")
        if existing is not None and not os.access(existing, os.W_OK | os.X_OK):
            raise ValueError(f"must be a folder you can write to, but {existing} is not writable")
        return value

    @model_validator(mode="after")
    def _something_to_run(self) -> RunConfig:
        if self.scenario is None and self.data is None:
            raise ValueError("give a scenario name (tunecrew scenarios lists them) or --data FILE_OR_HUB_ID")
        return self


POSITIONAL = {"scenario"}


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_flags(parser: argparse.ArgumentParser, model: type[BaseModel]) -> None:
    """One argparse argument per field: `--field-name`, typed, with the field's description as help."""
    for name, field in model.model_fields.items():
        annotation = field.annotation
        args = [a for a in get_args(annotation) if a is not type(None)]
        optional = get_origin(annotation) is not None and get_origin(annotation) not in (Literal, list)
        base = args[0] if optional and args else annotation
        help_text = field.description
        metavar = None
        if help_text and ":" in help_text.split(" ")[0]:  # "FILE_OR_HUB_ID: ..." names the value
            metavar, _, help_text = help_text.partition(": ")
        if name in POSITIONAL:
            parser.add_argument(name, nargs="?", help=help_text)
        elif annotation is bool:
            parser.add_argument(_flag(name), action="store_true", help=help_text)
        elif get_origin(annotation) is list:
            parser.add_argument(_flag(name), action="append", default=[], metavar=metavar, help=help_text)
        elif get_origin(base) is Literal:
            parser.add_argument(_flag(name), choices=get_args(base), default=field.default, help=help_text)
        else:
            kinds: dict[Any, type] = {int: int, float: float, Path: Path}
            parser.add_argument(_flag(name), type=kinds.get(base, str), default=field.default, metavar=metavar,
                                help=help_text)


def _bounds(model: type[BaseModel], name: str) -> str:
    """A field's numeric bounds in words: 'between 1 and 50', 'in (0, 1]', 'at least 1'."""
    limits: dict[str, Any] = {}
    for meta in model.model_fields[name].metadata:
        for key in ("ge", "gt", "le", "lt"):
            if getattr(meta, key, None) is not None:
                limits[key] = getattr(meta, key)
    low = "ge" if "ge" in limits else "gt" if "gt" in limits else None
    high = "le" if "le" in limits else "lt" if "lt" in limits else None
    if low == "ge" and high == "le":
        return f"between {limits['ge']} and {limits['le']}"
    if low and high:
        return f"in {'[' if low == 'ge' else '('}{limits[low]}, {limits[high]}{']' if high == 'le' else ')'}"
    if low is not None:
        return f"at least {limits[low]}" if low == "ge" else f"above {limits[low]}"
    if high is not None:
        return f"at most {limits[high]}" if high == "le" else f"below {limits[high]}"
    return "in range"


def config_from_args(model: type[BaseModel], args: argparse.Namespace) -> Any:
    """The flags of `model` from parsed arguments, validated; FlagError names the first bad flag."""
    values = {name: getattr(args, name) for name in model.model_fields if hasattr(args, name)}
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        message = err["msg"].removeprefix("Value error, ")
        if not where:  # a rule across fields: its message says what to do
            raise FlagError(message) from exc
        shown = where if where in POSITIONAL else _flag(where)
        if message.startswith(shown):  # the validator named the flag already
            raise FlagError(message) from exc
        if err["type"] in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
            message = f"must be {_bounds(model, where)}"
        raise FlagError(f"{shown} {err.get('input')} {message}") from exc
