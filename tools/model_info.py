"""Describe a base model from its config alone: family, size, context length, whether it was ever
trained. Sizing uses a meta-device instance, so a 70B model is described without loading weights."""

from __future__ import annotations

import json
from pathlib import Path

from .contracts import BaseModelInfo
from .tinymodel import MARKER_FILE


class ModelNotFound(ValueError):
    pass


def describe_base_model(name: str) -> BaseModelInfo:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    path = Path(name)
    if not path.exists() and (name.startswith((".", "/", "~")) or name.count("/") != 1):
        raise ModelNotFound(
            f"base model {name!r}: no such directory, and it is not a hub id (owner/name). "
            "Pass --base-model with a local model folder or a hub id."
        )
    try:
        config = AutoConfig.from_pretrained(name)
    except (OSError, ValueError) as exc:
        raise ModelNotFound(
            f"base model {name!r} could not be loaded ({type(exc).__name__}: {str(exc).splitlines()[0]}). "
            "A hub id needs the network or a local cache; offline, pass a local model folder."
        ) from exc
    marker = path / MARKER_FILE
    meta = json.loads(marker.read_text()) if marker.exists() else {}
    with torch.device("meta"):
        params = sum(p.numel() for p in AutoModelForCausalLM.from_config(config).parameters())
    text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
    return BaseModelInfo(
        name=name,
        family=str(getattr(config, "model_type", "unknown")),
        params=int(params),
        vocab_size=int(getattr(text_config, "vocab_size", 0) or 0),
        max_positions=getattr(text_config, "max_position_embeddings", None),
        random_init=bool(meta.get("random_init", False)),
    )
