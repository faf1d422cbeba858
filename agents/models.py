"""One function that turns a provider name into an AutoGen ChatCompletionClient.

`offline` (the default) needs nothing; the others need a model name and usually a key, read from a
flag or the environment. Keys are never stored in run files: they live only in the client.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from autogen_core.models import ChatCompletionClient, ModelFamily, ModelInfo

from .offline import OfflinePolicyClient

PROVIDERS = ("offline", "openai", "gemini", "ollama")
GEMINI_OPENAI_URL = "https://generativelanguage.googleapis.com/v1beta/openai/"


class ProviderError(ValueError):
    pass


@dataclass(frozen=True)
class ProviderSpec:
    provider: str = "offline"
    model: str | None = None  # e.g. gpt-4.1-mini, gemini-2.5-flash, llama3.1
    base_url: str | None = None  # any OpenAI-compatible server: vLLM, Ollama, LM Studio, llama.cpp
    api_key: str | None = None  # else OPENAI_API_KEY / GEMINI_API_KEY


def make_client(spec: ProviderSpec, role: str) -> ChatCompletionClient:
    if spec.provider == "offline":
        return OfflinePolicyClient(role)
    if spec.provider not in PROVIDERS:
        raise ProviderError(f"unknown provider {spec.provider!r}; choose one of {', '.join(PROVIDERS)}")
    if not spec.model:
        raise ProviderError(f"--provider {spec.provider} needs --model (e.g. "
                            f"{ {'openai': 'gpt-4.1-mini', 'gemini': 'gemini-2.5-flash', 'ollama': 'llama3.1'}[spec.provider] })")
    if spec.provider == "ollama":
        try:
            from autogen_ext.models.ollama import OllamaChatCompletionClient
        except ImportError as exc:
            raise ProviderError("--provider ollama needs `pip install 'autogen-ext[ollama]'`") from exc
        return OllamaChatCompletionClient(model=spec.model, host=spec.base_url, model_info=_generic_info())

    from autogen_ext.models.openai import OpenAIChatCompletionClient

    if spec.provider == "gemini":
        key = spec.api_key or os.environ.get("GEMINI_API_KEY")
        if not key:
            raise ProviderError("--provider gemini needs an API key: set GEMINI_API_KEY or pass --api-key")
        return OpenAIChatCompletionClient(model=spec.model, api_key=key, base_url=spec.base_url or GEMINI_OPENAI_URL,
                                          model_info=_gemini_info(spec.model))
    key = spec.api_key or os.environ.get("OPENAI_API_KEY")
    if not key and not spec.base_url:
        raise ProviderError("--provider openai needs an API key (OPENAI_API_KEY or --api-key) or a --base-url "
                            "of a local OpenAI-compatible server")
    kwargs = {"model_info": _generic_info()} if spec.base_url else {}
    return OpenAIChatCompletionClient(model=spec.model, api_key=key or "not-needed", base_url=spec.base_url, **kwargs)


def _generic_info() -> ModelInfo:
    return ModelInfo(vision=False, function_calling=True, json_output=True, family=ModelFamily.UNKNOWN,
                     structured_output=False, multiple_system_messages=True)


def _gemini_info(model: str) -> ModelInfo:
    # Gemini refuses several non-consecutive system messages; the crew recalls memory through tools,
    # so it never needs to inject extra system messages.
    return ModelInfo(vision=True, function_calling=True, json_output=True, family=ModelFamily.UNKNOWN,
                     structured_output=True, multiple_system_messages=False)
