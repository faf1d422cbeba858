"""An LLM outage must not end a fine-tuning run: when an LLM call still fails after the client's own
retries (rate limits, 5xx, timeouts), this client answers that one step with the offline policy,
which reads the same conversation and tool results, and logs the fallback.

Every step is counted (`on_answer` for the LLM's, `on_fallback` for the policy's) so a run can say
how many of its steps the named provider really answered. With `fallback=False`
(`--strict-provider`) a failed call is a `ProviderError` instead: the run ends rather than
quietly becoming an offline run under the provider's name."""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, Sequence
from typing import Any, Protocol

from autogen_core.models import (
    ChatCompletionClient,
    CreateResult,
    LLMMessage,
    ModelCapabilities,
    ModelInfo,
    RequestUsage,
)
from autogen_core.tools import Tool, ToolSchema

from .offline import OfflinePolicyClient

log = logging.getLogger("tunecrew")


class ProviderError(ValueError):
    """A provider cannot be used as asked (unknown name, missing key or model, a strict run's failed call)."""


class StepWatch(Protocol):
    """Who counts a run's LLM steps (the runner's ProviderLog)."""

    def answered(self) -> None: ...  # the LLM answered a step

    def fell_back(self, note: str) -> None: ...  # the offline policy answered it; why

    def failed(self, error: ProviderError) -> None: ...  # --strict-provider: the run must end with this


class FallbackClient(ChatCompletionClient):
    def __init__(self, primary: ChatCompletionClient, role: str, watch: StepWatch | None = None,
                 fallback: bool = True):
        self.primary = primary
        self.role = role
        self.offline = OfflinePolicyClient(role)
        self.watch = watch
        self.fallback = fallback
        self.fallbacks = 0

    async def create(self, messages: Sequence[LLMMessage], **kwargs: Any) -> CreateResult:
        try:
            result = await self.primary.create(messages, **kwargs)
        except Exception as exc:  # any provider failure; the policy can always answer
            failure = f"{self.role}: LLM call failed ({type(exc).__name__}: {' '.join(str(exc).split())[:200]})"
            if not self.fallback:
                error = ProviderError(f"--strict-provider: {failure}; nothing was answered in its place")
                if self.watch is not None:
                    self.watch.failed(error)
                raise error from exc
            self.fallbacks += 1
            note = f"{failure}; offline policy answered"
            log.warning(note)
            if self.watch is not None:
                self.watch.fell_back(note)
            return await self.offline.create(messages, **kwargs)
        if self.watch is not None:
            self.watch.answered()
        return result

    async def create_stream(self, messages: Sequence[LLMMessage],
                            **kwargs: Any) -> AsyncGenerator[str | CreateResult, None]:
        yield await self.create(messages, **kwargs)

    async def close(self) -> None:
        await self.primary.close()

    def actual_usage(self) -> RequestUsage:
        return self.primary.actual_usage()

    def total_usage(self) -> RequestUsage:
        return self.primary.total_usage()

    def count_tokens(self, messages: Sequence[LLMMessage], *, tools: Sequence[Tool | ToolSchema] = []) -> int:
        return self.primary.count_tokens(messages, tools=tools)

    def remaining_tokens(self, messages: Sequence[LLMMessage], *, tools: Sequence[Tool | ToolSchema] = []) -> int:
        return self.primary.remaining_tokens(messages, tools=tools)

    @property
    def capabilities(self) -> ModelCapabilities:
        return self.primary.capabilities

    @property
    def model_info(self) -> ModelInfo:
        return self.primary.model_info
