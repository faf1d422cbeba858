"""An LLM outage must not end a fine-tuning run: when an LLM call still fails after the client's own
retries (rate limits, 5xx, timeouts), this client answers that one step with the offline policy,
which reads the same conversation and tool results, and logs the fallback."""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, Callable, Sequence
from typing import Any

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


class FallbackClient(ChatCompletionClient):
    def __init__(self, primary: ChatCompletionClient, role: str, on_fallback: Callable[[str], None] | None = None):
        self.primary = primary
        self.role = role
        self.offline = OfflinePolicyClient(role)
        self.on_fallback = on_fallback
        self.fallbacks = 0

    async def create(self, messages: Sequence[LLMMessage], **kwargs: Any) -> CreateResult:
        try:
            return await self.primary.create(messages, **kwargs)
        except Exception as exc:  # any provider failure; the policy can always answer
            self.fallbacks += 1
            note = f"{self.role}: LLM call failed ({type(exc).__name__}: {str(exc)[:200]}); offline policy answered"
            log.warning(note)
            if self.on_fallback is not None:
                self.on_fallback(note)
            return await self.offline.create(messages, **kwargs)

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
