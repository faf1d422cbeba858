"""HTTP API of the trained task agent (FastAPI; `tunecrew serve <run-id>` runs it under uvicorn).

    GET  /health                      {status, run_id, base_model, adapter}    (no token needed)
    POST /chat   {user, message}      {reply, kind, action, result}
    GET  /tasks?user=U&status=open    {tasks: [...]}: a user's tasks, without the model

Guards, in the order a request meets them:

1. body size: a request whose Content-Length (or streamed body) is over `max_body_bytes` gets 413
   before anything parses it (:class:`BodyLimit`, pure ASGI, so nothing upstream buffers more);
2. bearer token, when one is configured: 401 otherwise (constant-time compare);
3. schema: `user` must match ``^[A-Za-z0-9_.-]{1,64}$`` and `message` be 1..2000 characters,
   unknown fields are refused: 422.

The model's reply then goes through the executor (parse, whitelist, typed store call), never eval.
Tasks live in one SQLite file under `store_dir`, keyed by user (see store.py for why).
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import socket
import threading
import time
from pathlib import Path
from typing import Any, Callable, Literal

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from .executor import chat_payload, execute
from .store import USER_PATTERN, TaskError, TaskStore

log = logging.getLogger("tunecrew.serve")

MAX_MESSAGE_CHARS = 2000
DEFAULT_MAX_BODY_BYTES = 16384

ReplyFn = Callable[[str], str]


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user: str = Field(pattern=USER_PATTERN, description="Whose tasks: letters, digits, _ . - (1-64).")
    message: str = Field(min_length=1, max_length=MAX_MESSAGE_CHARS)


class ChatResponse(BaseModel):
    reply: str = Field(description="The model's raw reply.")
    kind: Literal["action", "final", "error"]
    action: dict[str, Any] | None = Field(description="{tool, args} when the reply was a valid action.")
    result: dict[str, Any] = Field(description="Tool output, {ok, final} or {ok: false, error}.")


class BodyLimit:
    """ASGI middleware: 413 for a request body over `max_bytes`, checked on Content-Length first
    and while streaming (chunked uploads), before the app or any parser sees the body."""

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None:
            try:
                size = int(declared)
            except ValueError:
                await _send_json(send, 400, {"detail": "invalid Content-Length"})
                return
            if size > self.max_bytes:
                await self._too_large(send)
                return
        chunks: list[bytes] = []
        received = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body = message.get("body", b"")
            received += len(body)
            if received > self.max_bytes:
                await self._too_large(send)
                return
            chunks.append(body)
            more = message.get("more_body", False)
        replayed = False

        async def replay() -> dict:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _too_large(self, send: Callable) -> None:
        await _send_json(send, 413, {"detail": f"request body over {self.max_bytes} bytes"})


async def _send_json(send: Callable, status: int, payload: dict) -> None:
    body = JSONResponse(payload).body
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


def create_app(
    agent: Any,
    store_dir: Path | str,
    token: str | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
) -> FastAPI:
    """The API over `agent`: a TaskAgent (anything with `.reply(message)` and optionally
    `.describe()`), or a plain callable `message -> reply` (tests, other backends)."""
    reply_fn: ReplyFn = agent.reply if hasattr(agent, "reply") else agent
    if not callable(reply_fn):
        raise TypeError("create_app: agent must be a TaskAgent or a callable message -> reply")
    info = agent.describe() if hasattr(agent, "describe") else {}
    store = TaskStore(Path(store_dir))
    expected = token.encode("utf-8") if token else None

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI):  # type: ignore[no-untyped-def]
        yield
        store.close()

    app = FastAPI(title="tunecrew task agent", lifespan=lifespan)
    app.state.store = store
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)  # outermost but for starlette's error handler

    def check_token(request: Request) -> None:
        if expected is None:
            return
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode("utf-8"), expected):
            raise HTTPException(status_code=401, detail="missing or wrong bearer token",
                                headers={"WWW-Authenticate": "Bearer"})

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"status": "ok", "run_id": info.get("run_id"), "base_model": info.get("base_model"),
                "adapter": info.get("adapter")}

    @app.post("/chat", response_model=ChatResponse, dependencies=[Depends(check_token)])
    def chat(request: ChatRequest) -> dict[str, Any]:
        started = time.monotonic()
        try:
            reply = reply_fn(request.message)
        except Exception:  # noqa: BLE001 - a model failure is a 500 with a message, not a dead server
            log.exception("generation failed")
            raise HTTPException(status_code=500, detail="the model failed to reply") from None
        execution = execute(reply, store, request.user)
        log.info("chat user=%s kind=%s tool=%s %.2fs", request.user, execution.kind, execution.tool,
                 time.monotonic() - started)
        return chat_payload(reply, execution)

    @app.get("/tasks", dependencies=[Depends(check_token)])
    def tasks(user: str = Query(pattern=USER_PATTERN),
              status: Literal["open", "done", "all"] = "open") -> dict[str, Any]:
        try:
            return {"tasks": store.list(user, status)}
        except TaskError as exc:  # unreachable after validation; keep it a 422, not a 500
            raise HTTPException(status_code=422, detail=str(exc)) from None

    return app


# --------------------------------------------------------------------------- running


def serve(app: Any, host: str = "127.0.0.1", port: int = 8000, log_level: str = "info") -> None:
    """Run `app` under uvicorn until interrupted."""
    import uvicorn

    uvicorn.run(app, host=host, port=port, log_level=log_level)


class BackgroundServer:
    """A real uvicorn server on `host` in a thread, on a port the OS picks (tests, notebooks).

        with BackgroundServer(app) as srv:
            httpx.get(srv.url + "/health")
    """

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0, log_level: str = "warning") -> None:
        import uvicorn

        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, port))
        self.host, self.port = self._sock.getsockname()[:2]
        self.server = uvicorn.Server(uvicorn.Config(app, log_level=log_level, lifespan="on"))
        self._thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self._sock]}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 20.0) -> "BackgroundServer":
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"uvicorn did not start on {self.url}")
            time.sleep(0.02)
        return self

    def stop(self, timeout: float = 20.0) -> None:
        self.server.should_exit = True
        self._thread.join(timeout)
        self._sock.close()

    def __enter__(self) -> "BackgroundServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

