"""What `tunecrew run` is asked to do, as one model: each field is a command-line flag.

The flags are generated from the fields (name, type, bounds, help), so a flag cannot drift from
what the run reads; the same model validates a run configuration from any other source. Bounds
are checked by pydantic and reported as one line naming the flag.

    tunecrew run task-agent --seed 3 --budget 5      # RunConfig(scenario="task-agent", seed=3, budget=5)
    tunecrew run -c experiment.yaml --seed 3         # the file's keys, then the flags typed

A YAML file (`-c/--config`) holds the same fields as keys (`max-attempts` or `max_attempts`); a
flag typed on the command line overrides the file's key, a flag left out never does. An unknown
key, a bad value, a missing file or a YAML syntax error is one line naming the file (and the key).
Every run saves what it resolved to as `runs/<id>/config.yaml` (`config_yaml`), which `-c` repeats.
"""

from __future__ import annotations

import argparse
import difflib
import math
import os
import reprlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from tunecrew.scenarios.dataset import is_hub_id, parse_columns, split_hub_config
from tunecrew.tools.yaml_file import YamlFileError, load_yaml_file

__all__ = ["ConfigFile", "CrewConfig", "FlagError", "RunConfig", "add_flags", "config_from_args", "config_yaml",
           "load_config", "read_config_file"]


class FlagError(ValueError):
    """A flag's value is out of bounds: the message names the flag and what it accepts."""


class CrewConfig(BaseModel):
    """Who drives the agents and how the run uses this machine: `run`, `resume` and `chat` share it."""

    model_config = ConfigDict(extra="forbid")

    provider: Literal["offline", "openai", "gemini", "ollama", "llamacpp"] | None = Field(
        None, description="who drives the agents (default: offline, a deterministic policy; for resume and chat: "
        "the provider the run was started with)")
    strict_provider: bool = Field(False, description="a failed LLM call ends the run (exit 2) instead of being "
                                  "answered by the offline policy")
    model: str | None = Field(None, description="LLM name for the provider, e.g. gemini-2.5-flash; llamacpp: a GGUF "
                              "path or smollm2-135m")
    base_url: str | None = Field(None, description="OpenAI-compatible endpoint (vLLM, Ollama, LM Studio, llama.cpp)")
    api_key: str | None = Field(None, description="API key (prefer OPENAI_API_KEY / GEMINI_API_KEY in the environment)")
    agent: list[str] = Field(default_factory=list, description="ROLE=PROVIDER[:MODEL]: a different provider for one "
                             "agent, e.g. Planner=openai:gpt-4.1 (repeatable)")
    threads: int | None = Field(None, ge=1, le=256, description="CPU threads for torch (default: the free cores, "
                                "at most 4)")
    train_python: str | None = Field(None, description="PATH: interpreter that runs training, e.g. "
                                     ".venv-unsloth/bin/python for backend=unsloth (default: $TUNECREW_TRAIN_PYTHON, "
                                     "else this one)")
    processes: int = Field(1, ge=1, le=64, description="N: data-parallel training processes per attempt (DDP "
                           "through accelerate's launcher: one per GPU on CUDA, or CPU processes sharing --threads), "
                           "at the same global batch as one process")
    parallel: int = Field(1, ge=1, le=8, description="N: train N configs at once per attempt (the Tuner's and N-1 "
                          "from the Optuna search around it), the threads split between them; the Judge scores each "
                          "and the best stands for the attempt. On Ray when installed (tunecrew[parallel])")
    ray_address: str | None = Field(None, description="ADDRESS: the Ray cluster --parallel trials run on, e.g. "
                                    "ray://head:10001 or auto (default: a local cluster on this machine); the run "
                                    "folder must be on storage every node sees")
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
    heldout_data: str | None = Field(None, description="FILE_OR_HUB_ID: your own held-out rows (a hub id: its test "
                                     "split), scored instead of rows split off --data; training rows with the same "
                                     "prompt are left out of training")
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
                                          "learned); the first attempt is sized from a measured rate to end "
                                          "its schedule inside it")
    judge: list[str] = Field(default_factory=list, description="PROVIDER[:MODEL]: an LLM judge of held-out replies, "
                             "e.g. openai:gpt-4.1-mini (repeatable: agreement is reported); default: the Judge agent's "
                             "provider (offline: a heuristic judge, no LLM)")
    judge_samples: int = Field(30, ge=1, description="held-out samples each judge scores, chosen by --seed "
                               "(default 30; all when fewer)")
    task_type: Literal["multiple-choice", "numeric", "classification", "free-text"] | None = Field(
        None, description="how a dataset is scored: multiple-choice (letter accuracy), numeric (the final number), "
        "classification (accuracy beside the majority-class baseline), free-text (answer F1); default: detected "
        "from the data, with the evidence printed")
    contract: str | None = Field(None, description="FILE: task-agent --data: your reply contract as YAML or JSON "
                                 "(tools, argument names and aliases such as due_date: due, whether <analysis> is "
                                 "required); default: inferred from the data, the evidence printed "
                                 "(docs/data-formats.md)")
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

    @field_validator("contract")
    @classmethod
    def _contract_file(cls, value: str | None) -> str | None:
        """Read before any work, so a bad file is one line naming it and its key; made absolute, so the
        saved config.yaml repeats the run from any directory."""
        if value is None:
            return value
        from tunecrew.scenarios.task_agent.declared import load_contract

        try:
            load_contract(value)
        except ValueError as exc:
            raise ValueError(f"--contract {exc}") from None
        return os.path.abspath(Path(value).expanduser())

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

    @field_validator("heldout_data")
    @classmethod
    def _heldout_file(cls, value: str | None) -> str | None:
        """A local file is checked before any work; a hub id is left to the data loader."""
        if value is None or is_hub_id(split_hub_config(value)[0]):
            return value
        path = Path(value).expanduser()
        if not path.is_file():
            raise ValueError("is not a file; give a .jsonl/.json/.csv/.tsv/.parquet file of held-out rows "
                             "or a hub id owner/name[:config]")
        return os.path.abspath(path)

    @model_validator(mode="after")
    def _something_to_run(self) -> RunConfig:
        if self.scenario is None and self.data is None:
            raise ValueError("give a scenario name (tunecrew scenarios lists them) or --data FILE_OR_HUB_ID")
        if self.heldout is not None and self.heldout_data is not None:
            raise ValueError("--heldout and --heldout-data: give one (--heldout splits rows off --data, "
                             "--heldout-data scores on a file of its own)")
        return self


POSITIONAL = {"scenario"}
TYPED = "typed_flags"  # on a parsed namespace: the fields whose flag was typed (set by the actions below)


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _typed(namespace: argparse.Namespace, dest: str) -> None:
    typed = getattr(namespace, TYPED, None)
    if typed is None:
        typed = set()
        setattr(namespace, TYPED, typed)
    typed.add(dest)


class _Store(argparse.Action):
    """argparse's store, remembering that the flag was typed (a positional left out passes None)."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        setattr(namespace, self.dest, values)
        if values is not None:
            _typed(namespace, self.dest)


class _StoreTrue(argparse.Action):
    """argparse's store_true, remembering that the flag was typed."""

    def __init__(self, option_strings: Sequence[str], dest: str, default: Any = False, required: bool = False,
                 help: str | None = None) -> None:
        super().__init__(option_strings, dest, nargs=0, default=default, required=required, help=help)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        setattr(namespace, self.dest, True)
        _typed(namespace, self.dest)


class _Append(argparse.Action):
    """argparse's append (onto a copy, never onto the shared default), remembering that it was typed."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        setattr(namespace, self.dest, [*(getattr(namespace, self.dest, None) or []), values])
        _typed(namespace, self.dest)


def add_flags(parser: argparse.ArgumentParser, model: type[BaseModel]) -> None:
    """One argparse argument per field: `--field-name`, typed, with the field's description as help;
    and `-c/--config FILE`, a YAML file of the same fields that the typed flags override."""
    for name, field_info in model.model_fields.items():
        annotation = field_info.annotation
        args = [a for a in get_args(annotation) if a is not type(None)]
        optional = get_origin(annotation) is not None and get_origin(annotation) not in (Literal, list)
        base = args[0] if optional and args else annotation
        help_text = field_info.description
        metavar = None
        if help_text and ":" in help_text.split(" ")[0]:  # "FILE_OR_HUB_ID: ..." names the value
            metavar, _, help_text = help_text.partition(": ")
        if name in POSITIONAL:
            parser.add_argument(name, nargs="?", action=_Store, help=help_text)
        elif annotation is bool:
            parser.add_argument(_flag(name), action=_StoreTrue, help=help_text)
        elif get_origin(annotation) is list:
            parser.add_argument(_flag(name), action=_Append, default=[], metavar=metavar, help=help_text)
        elif get_origin(base) is Literal:
            parser.add_argument(_flag(name), action=_Store, choices=get_args(base), default=field_info.default,
                                help=help_text)
        else:
            kinds: dict[Any, type] = {int: int, float: float, Path: Path}
            parser.add_argument(_flag(name), action=_Store, type=kinds.get(base, str), default=field_info.default,
                                metavar=metavar, help=help_text)
    parser.add_argument("-c", "--config", action=_Store, type=Path, metavar="FILE",
                        help="YAML file whose keys are these flags' names (max-attempts: 2 or max_attempts: 2); "
                        "flags typed here override it (configs/ has examples; every run saves its own as "
                        "runs/<id>/config.yaml)")


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


_BOUND_ERRORS = ("greater_than", "greater_than_equal", "less_than", "less_than_equal")


def config_from_args(model: type[BaseModel], args: argparse.Namespace) -> Any:
    """The fields of `model` from parsed arguments, validated: the keys of the `-c` file first, then
    the flags typed on the command line over them (a flag left at its default never overrides the
    file). FlagError names the first bad flag, or the file and its key."""
    given = {name: getattr(args, name) for name in model.model_fields if hasattr(args, name)}
    path = getattr(args, "config", None)
    if path is None:
        return _validated(model, given)
    file = read_config_file(path, model)
    typed = getattr(args, TYPED, None)  # None: a namespace built by hand; all its values count as typed
    flags = given if typed is None else {name: value for name, value in given.items() if name in typed}
    return _validated(model, {**file.values, **flags}, file, set(flags))


def load_config(path: str | Path, model: type[BaseModel] | None = None) -> Any:
    """A config file alone, validated into `model` (default RunConfig); FlagError names the file and key."""
    model = model or RunConfig
    file = read_config_file(path, model)
    return _validated(model, file.values, file)


def _validated(model: type[BaseModel], values: dict[str, Any], file: ConfigFile | None = None,
               from_flags: set[str] | None = None) -> Any:
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        message = err["msg"].removeprefix("Value error, ")
        if file is not None:
            if not where:  # a rule across fields: the file did not satisfy it either
                raise FlagError(f"{file.path}: {message}") from exc
            name = str(err["loc"][0])
            if name in file.values and name not in (from_flags or set()):
                raise FlagError(file.bad_value(model, name, err["type"], message, err.get("input"))) from exc
        if not where:  # a rule across fields: its message says what to do
            raise FlagError(message) from exc
        shown = where if where in POSITIONAL else _flag(where)
        if message.startswith(shown):  # the validator named the flag already
            raise FlagError(message) from exc
        if err["type"] in _BOUND_ERRORS:
            message = f"must be {_bounds(model, where)}"
        raise FlagError(f"{shown} {err.get('input')} {message}") from exc


# --------------------------------------------------------------------------- config files

_SHORT = reprlib.Repr()
_SHORT.maxstring = _SHORT.maxother = 60
_SHORT.maxlevel, _SHORT.maxlist, _SHORT.maxdict = 2, 4, 4


@dataclass(frozen=True)
class ConfigFile:
    """A YAML config file as read: each key under its field's name, and the key as it was written."""

    path: str
    values: dict[str, Any] = field(default_factory=dict)
    spelled: dict[str, str] = field(default_factory=dict)

    def bad_value(self, model: type[BaseModel], name: str, kind: str, message: str, value: Any) -> str:
        """One line naming the file, the key as written, the value and what it accepts."""
        key = self.spelled[name]
        if message.startswith(_flag(name)):  # a validator that names the flag: keep what follows it
            return f"{self.path}: {key}: {message.removeprefix(_flag(name)).lstrip(' :')}"
        if kind in _BOUND_ERRORS:
            message = f"must be {_bounds(model, name)}"
        return f"{self.path}: {key}: {_SHORT.repr(value)} {message.replace('Input should', 'should', 1)}"


def read_config_file(path: str | Path, model: type[BaseModel]) -> ConfigFile:
    """The keys of a YAML mapping, as `model`'s field names (`max-attempts` or `max_attempts`).

    Not validated here (the flags typed are merged first); refused in one line: a file that cannot
    be read, YAML that does not parse (line and column), a top level that is not a mapping, an
    unknown key, or one setting given twice.
    """
    where = str(path)
    try:
        data = load_yaml_file(path, "config file", "-c takes a YAML file")
    except YamlFileError as exc:
        raise FlagError(str(exc)) from None
    if data is None:  # empty, or only comments
        data = {}
    if not isinstance(data, dict):
        raise FlagError(f"{where}: the top level must be a mapping of keys (seed: 3, max-attempts: 2, ...), "
                        f"not a {type(data).__name__}")
    fields = model.model_fields
    values: dict[str, Any] = {}
    spelled: dict[str, str] = {}
    for key, value in data.items():
        name = key.replace("-", "_") if isinstance(key, str) else None
        if name is None or name not in fields:
            raise FlagError(_unknown_key(where, key, model))
        if name in spelled:
            raise FlagError(f"{where}: keys {spelled[name]!r} and {key!r} are the same setting; keep one")
        if get_origin(fields[name].annotation) is list and isinstance(value, str):
            value = [value]  # judge: openai:gpt-4.1-mini, one item without the list brackets
        values[name], spelled[name] = value, key
    return ConfigFile(path=where, values=values, spelled=spelled)


def _unknown_key(where: str, key: Any, model: type[BaseModel]) -> str:
    from tunecrew.tools.contracts import TrainConfig

    shown_key = _SHORT.repr(key)
    name = key.replace("-", "_") if isinstance(key, str) else ""
    if name in RunConfig.model_fields:  # a run's own setting given to resume or chat
        return (f"{where}: key {shown_key} is set when a run starts (run.json keeps it); this command takes: "
                f"{', '.join(model.model_fields)}")
    # The subclass's own fields first (scenario, data, ...), then the shared ones (provider, ...).
    own = [n for n in model.model_fields if model is CrewConfig or n not in CrewConfig.model_fields]
    names = own + [n for n in model.model_fields if n not in own]
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.6)
    shown = close + [n for n in names if n not in close][:max(0, 5 - len(close))]
    more = len(names) - len(shown)
    command = "run" if model is RunConfig else "resume"
    known = ", ".join(shown) + (f", ... {more} more: the flags of `tunecrew {command} --help`" if more else "")
    hint = ("; training hyperparameters are the Tuner's to choose each attempt, not a run setting"
            if name in TrainConfig.model_fields else "")
    return f"{where}: unknown key {shown_key}{hint} (known: {known})"


def config_yaml(config: RunConfig) -> str:
    """`runs/<id>/config.yaml`: every field but `api_key` (a key is never written to a run's files),
    with local paths made absolute, so `tunecrew run -c runs/<id>/config.yaml` repeats the run from
    any directory."""
    import yaml

    from tunecrew.tools.base_models import REGISTRY

    def absolute(path: str) -> str:  # not resolve(): a venv's python is a symlink that must stay one
        return os.path.abspath(Path(path).expanduser())

    def local(path: str) -> bool:
        return Path(path).expanduser().exists()

    values = config.model_dump(mode="json", exclude={"api_key"})
    values["runs_dir"] = absolute(values["runs_dir"])
    if config.data and local(config.data):  # a hub id (owner/name[:config]) is left as it is
        values["data"] = absolute(config.data)
    if config.base_model and config.base_model not in REGISTRY and local(config.base_model):
        values["base_model"] = absolute(config.base_model)
    if config.memory and not config.memory.startswith(("http://", "https://")):
        values["memory"] = absolute(config.memory)
    if config.train_python:
        values["train_python"] = absolute(config.train_python)
    if config.embedder.startswith("st:") and local(config.embedder[3:]):
        values["embedder"] = "st:" + absolute(config.embedder[3:])
    own = [n for n in values if n not in CrewConfig.model_fields]
    ordered = {n: values[n] for n in [*own, *(n for n in values if n not in own)]}
    return ("# The configuration this run resolved to: its config file, the flags typed and the scenario's\n"
            "# defaults. `tunecrew run -c config.yaml` repeats it; a flag typed after it overrides its key.\n"
            "# api_key is never saved: give it in the environment (OPENAI_API_KEY, GEMINI_API_KEY).\n"
            + yaml.safe_dump(ordered, sort_keys=False, allow_unicode=True, default_flow_style=False))
