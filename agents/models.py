"""One function that turns a provider name into an AutoGen ChatCompletionClient.

`offline` (the default) needs nothing; the others need a model name and usually a key, read from a
flag or the environment. Keys are never stored in run files: they live only in the client.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import cast

from autogen_core.models import ChatCompletionClient, ModelFamily, ModelInfo

from .fallback import FallbackClient, ProviderError, StepWatch
from .offline import OfflinePolicyClient

PROVIDERS = ("offline", "openai", "gemini", "ollama")
GEMINI_OPENAI_URL = "https://generativelanguage.googleapis.com/v1beta/openai/"


@dataclass(frozen=True)
class ProviderSpec:
    provider: str = "offline"
    model: str | None = None  # e.g. gpt-4.1-mini, gemini-2.5-flash, llama3.1
    base_url: str | None = None  # any OpenAI-compatible server: vLLM, Ollama, LM Studio, llama.cpp
    api_key: str | None = None  # else OPENAI_API_KEY / GEMINI_API_KEY; never written to run files
    timeout: float = 120.0  # seconds per LLM request
    max_retries: int = 3  # the OpenAI client retries 429/5xx/timeouts with exponential backoff
    fallback: bool = True  # a step whose LLM call still fails is answered by the offline policy;
    # False (--strict-provider): it is a ProviderError and the run ends

    def label(self) -> str:
        """What run.json records: provider and model, never the key."""
        return self.provider if self.provider == "offline" else f"{self.provider}:{self.model}"


def role_specs(default: ProviderSpec, overrides: list[str], roles: tuple[str, ...]) -> dict[str, ProviderSpec]:
    """Per-role providers from `ROLE=PROVIDER[:MODEL]` overrides, e.g. `Planner=openai:gpt-4.1`."""
    specs = {role: default for role in roles}
    for item in overrides:
        role, sep, value = item.partition("=")
        if not sep or role not in roles:
            raise ProviderError(f"--agent {item!r}: expected ROLE=PROVIDER[:MODEL] with ROLE one of {', '.join(roles)}")
        provider, _, model = value.partition(":")
        if provider not in PROVIDERS:
            raise ProviderError(f"--agent {item!r}: unknown provider {provider!r}; "
                                f"choose one of {', '.join(PROVIDERS)}")
        same = provider == default.provider
        specs[role] = replace(default, provider=provider, model=model or (default.model if same else None),
                              base_url=default.base_url if same else None, api_key=default.api_key if same else None)
    return specs


def make_client(spec: ProviderSpec, role: str, watch: StepWatch | None = None) -> ChatCompletionClient:
    if spec.provider == "offline":
        return OfflinePolicyClient(role)
    return FallbackClient(_llm_client(spec), role, watch, fallback=spec.fallback)


def _llm_client(spec: ProviderSpec) -> ChatCompletionClient:
    if spec.provider not in PROVIDERS:
        raise ProviderError(f"unknown provider {spec.provider!r}; choose one of {', '.join(PROVIDERS)}")
    if not spec.model:
        example = {"openai": "gpt-4.1-mini", "gemini": "gemini-2.5-flash", "ollama": "llama3.1"}[spec.provider]
        raise ProviderError(f"--provider {spec.provider} needs --model (e.g. {example})")
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
                                          model_info=_gemini_info(spec.model), timeout=spec.timeout,
                                          max_retries=spec.max_retries)
    key = spec.api_key or os.environ.get("OPENAI_API_KEY")
    if not key and not spec.base_url:
        raise ProviderError("--provider openai needs an API key (OPENAI_API_KEY or --api-key) or a --base-url "
                            "of a local OpenAI-compatible server")
    if spec.base_url:
        return OpenAIChatCompletionClient(model=spec.model, api_key=key or "not-needed", base_url=spec.base_url,
                                          model_info=_generic_info(), timeout=spec.timeout,
                                          max_retries=spec.max_retries)
    # base_url=None on purpose: present, it keeps autogen from choosing a base URL by the model's name
    # (gemini-, claude-, Llama-), and AsyncOpenAI reads None as its default. The TypedDict types it `str`.
    return OpenAIChatCompletionClient(model=spec.model, api_key=key or "not-needed", base_url=cast(str, None),
                                      timeout=spec.timeout, max_retries=spec.max_retries)


def _generic_info() -> ModelInfo:
    return ModelInfo(vision=False, function_calling=True, json_output=True, family=ModelFamily.UNKNOWN,
                     structured_output=False, multiple_system_messages=True)


def _gemini_info(model: str) -> ModelInfo:
    # Gemini refuses several non-consecutive system messages; the crew recalls memory through tools,
    # so it never needs to inject extra system messages.
    return ModelInfo(vision=True, function_calling=True, json_output=True, family=ModelFamily.UNKNOWN,
                     structured_output=True, multiple_system_messages=False)
