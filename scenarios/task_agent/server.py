"""HTTP API of the trained task agent (FastAPI; `tunecrew serve <run-id>` runs it under uvicorn).

    GET  /health                      {status, run_id, base_model, adapter}    (no token needed)
    POST /chat   {message[, user]}    {reply, kind, action, result, notes}
    GET  /tasks?status=open[&user=U]  {tasks: [...]}: the caller's tasks, without the model

Who a request acts for comes from its credentials, never from the body: each bearer token of
`tokens` ({user: token}) is that user; the single shared `token` is `token_user`; with no token at
all (loopback only, the CLI refuses otherwise) every request is `token_user`. A `user` in the body
or the query is only a check: one that differs from the authenticated user is a 403.

Guards, in the order a request meets them:

1. body size: a request whose Content-Length (or streamed body) is over `max_body_bytes` gets 413
   before anything parses it (:class:`BodyLimit`, pure ASGI, so nothing upstream buffers more);
2. bearer token, when any is configured: 401 otherwise (constant-time compare against each);
3. schema: `user` must match ``^[A-Za-z0-9_.-]{1,64}$`` and `message` be 1..2000 characters,
   unknown fields are refused: 422; a `user` other than the token's: 403;
4. the generation queue: at most `max_queue` chats wait or run; one more gets 503 with
   Retry-After at once instead of piling up (:class:`GenerationQueue`).

Generation runs on the queue's own threads, and /health is async: it never waits behind a chat.
Chat-template control tokens in the message are escaped before the model sees it (a note says so).
The model's reply then goes through the executor (parse, whitelist, grounding of writes in the
message, typed store call), never eval. Tasks live in one SQLite file under `store_dir`, keyed by
user (see store.py for why).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import hmac
import logging
import math
import re
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any, Literal

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from tunecrew.tools.control_tokens import control_tokens, neutralise

from .executor import ExecutionResult, chat_payload, execute
from .store import USER_PATTERN, TaskError, TaskStore

log = logging.getLogger("tunecrew.serve")

MAX_MESSAGE_CHARS = 2000
DEFAULT_MAX_BODY_BYTES = 16384
DEFAULT_MAX_QUEUE = 16
DEFAULT_USER = "me"
"""Who the shared token, or no token, acts for: the terminal agent's default user, so both see one list."""

ReplyFn = Callable[[str], str]


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user: str | None = Field(default=None, pattern=USER_PATTERN,
                             description="Optional check: must be the authenticated user (else 403).")
    message: str = Field(min_length=1, max_length=MAX_MESSAGE_CHARS)


class ChatResponse(BaseModel):
    reply: str = Field(description="The model's raw reply.")
    kind: Literal["action", "final", "error", "confirm"]
    action: dict[str, Any] | None = Field(description="{tool, args} when the reply was a valid action that ran.")
    result: dict[str, Any] = Field(description="Tool output, {ok, final}, {ok: false, error} or {ok: false, confirm}.")
    notes: list[str] = Field(default_factory=list, description="What the server changed, e.g. escaped control tokens.")


class QueueFull(Exception):
    def __init__(self, retry_after: int) -> None:
        super().__init__(f"retry after {retry_after} s")
        self.retry_after = retry_after


class GenerationQueue:
    """At most `limit` jobs admitted (running or waiting), run on `workers` threads of their own.

    Why: a chat holds a thread for the whole generation. In the server's shared thread pool, 200
    chats queued behind the model's lock took every thread, and /health waited 49 s. Here chats
    wait on this pool only, a full queue answers at once (the caller retries after `retry_after`
    seconds, estimated from recent generation times), and the event loop stays free.
    Admission is counted on the event loop; a job is released when its thread finishes, even if
    the request that submitted it was cancelled, so the bound holds for threads, not requests.
    """

    def __init__(self, limit: int = DEFAULT_MAX_QUEUE, workers: int = 1) -> None:
        if limit < 1 or workers < 1:
            raise ValueError(f"GenerationQueue: limit ({limit}) and workers ({workers}) must be >= 1")
        self.limit = limit
        self.workers = workers
        self.pending = 0
        self._seconds = 1.0  # moving average of one job's duration, for Retry-After
        self._pool = concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="tunecrew-generate")

    def retry_after(self) -> int:
        return max(1, math.ceil(self.pending * self._seconds / self.workers))

    async def run(self, fn: Callable[[], Any]) -> Any:
        """`fn()` on a worker thread; QueueFull when `limit` jobs are already admitted."""
        if self.pending >= self.limit:
            raise QueueFull(self.retry_after())
        loop = asyncio.get_running_loop()
        self.pending += 1
        job = self._pool.submit(self._timed, fn)
        job.add_done_callback(lambda _job: _call_soon(loop, self._release))
        return await asyncio.wrap_future(job)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _timed(self, fn: Callable[[], Any]) -> Any:
        started = time.monotonic()
        try:
            return fn()
        finally:
            self._seconds = 0.8 * self._seconds + 0.2 * (time.monotonic() - started)

    def _release(self) -> None:
        self.pending -= 1


def _call_soon(loop: asyncio.AbstractEventLoop, fn: Callable[[], None]) -> None:
    with contextlib.suppress(RuntimeError):  # the loop already closed at shutdown: nothing to count
        loop.call_soon_threadsafe(fn)


def parse_tokens(text: str, source: str) -> dict[str, str]:
    """{user: token} from lines ``user:token`` (a line may hold several, comma-separated: the
    one-line form of an environment variable); blank lines and ``#`` comments are skipped.
    ValueError naming `source` and the line for a malformed entry, a user given twice, or one token
    given to two users (it could not say who the caller is)."""
    users: dict[str, str] = {}
    owners: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip().startswith("#"):
            continue
        for entry in filter(None, (e.strip() for e in line.split(","))):
            user, token = _token_entry(entry, f"{source}: line {number}")
            if user in users:
                raise ValueError(f"{source}: line {number}: user {user!r} is listed twice; give each user one token")
            if token in owners:
                raise ValueError(f"{source}: line {number}: user {user!r} has the same token as {owners[token]!r}; "
                                 "tokens must differ")
            users[user], owners[token] = token, user
    return users


def _token_entry(entry: str, where: str) -> tuple[str, str]:
    user, sep, token = (part.strip() for part in entry.partition(":"))
    if not sep or not token:
        raise ValueError(f"{where}: expected user:token, got {user[:40]!r} without a token")
    if not re.fullmatch(USER_PATTERN, user):
        raise ValueError(f"{where}: user {user[:40]!r} must match {USER_PATTERN}")
    return user, token


def credentials(tokens: Mapping[str, str] | None, token: str | None, token_user: str) -> dict[bytes, str]:
    """{token bytes: user}: each per-user token, plus the shared `token` as `token_user`."""
    pairs = list((tokens or {}).items()) + ([(token_user, token)] if token else [])
    found: dict[bytes, str] = {}
    for user, secret in pairs:
        if not secret:
            raise ValueError(f"user {user!r} has an empty token")
        key = secret.encode("utf-8")
        if found.get(key, user) != user:
            raise ValueError(f"users {found[key]!r} and {user!r} have the same token; tokens must differ")
        found[key] = user
    return found


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
    *,
    tokens: Mapping[str, str] | None = None,
    token_user: str = DEFAULT_USER,
    max_queue: int = DEFAULT_MAX_QUEUE,
    workers: int = 1,
) -> FastAPI:
    """The API over `agent`: a TaskAgent (anything with `.reply(message)` and optionally
    `.describe()` and `.control_tokens()`), or a plain callable `message -> reply` (tests, other
    backends). `tokens` maps users to their bearer tokens; `token` is one shared token that acts as
    `token_user`; with neither, every request acts as `token_user` (see the module doc)."""
    reply_fn: ReplyFn = agent.reply if hasattr(agent, "reply") else agent
    if not callable(reply_fn):
        raise TypeError("create_app: agent must be a TaskAgent or a callable message -> reply")
    info = agent.describe() if hasattr(agent, "describe") else {}
    controls = agent.control_tokens() if hasattr(agent, "control_tokens") else control_tokens()
    known = credentials(tokens, token, token_user)
    store = TaskStore(Path(store_dir))
    queue = GenerationQueue(max_queue, workers)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        queue.close()
        store.close()

    app = FastAPI(title="tunecrew task agent", lifespan=lifespan)
    app.state.store = store
    app.state.queue = queue
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)  # outermost but for starlette's error handler

    async def caller(request: Request) -> str:  # async: no thread-pool hop for a header check
        """The authenticated user: the owner of the bearer token, or `token_user` without tokens."""
        if not known:
            return token_user
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        presented = given.strip().encode("utf-8")
        owner = None
        for secret, user in known.items():  # every comparison runs: the time says nothing about which
            if hmac.compare_digest(presented, secret) and scheme.lower() == "bearer":
                owner = user
        if owner is None:
            raise HTTPException(status_code=401, detail="missing or wrong bearer token",
                                headers={"WWW-Authenticate": "Bearer"})
        return owner

    def same_user(claimed: str | None, user: str) -> str:
        if claimed is not None and claimed != user:
            raise HTTPException(status_code=403, detail=f"user {claimed!r} is not the user this token acts for; "
                                "omit 'user' or use that user's own token")
        return user

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "run_id": info.get("run_id"), "base_model": info.get("base_model"),
                "adapter": info.get("adapter")}

    @app.post("/chat", response_model=ChatResponse)
    async def chat(request: ChatRequest, authenticated: str = Depends(caller)) -> Any:
        user = same_user(request.user, authenticated)
        cleaned = neutralise(request.message, controls)
        notes = [cleaned.note()] if cleaned.changed else []
        if notes:
            log.warning("chat user=%s: %s", user, notes[0])

        def generate_and_execute() -> tuple[str, ExecutionResult]:
            reply = reply_fn(cleaned.text)
            return reply, execute(reply, store, user, message=cleaned.text)

        started = time.monotonic()
        try:
            reply, execution = await queue.run(generate_and_execute)
        except QueueFull as full:
            return JSONResponse({"detail": f"the model is busy ({queue.limit} chats queued); retry later"},
                                status_code=503, headers={"Retry-After": str(full.retry_after)})
        except Exception:  # a model failure is a 500 with a message, not a dead server
            log.exception("generation failed")
            raise HTTPException(status_code=500, detail="the model failed to reply") from None
        log.info("chat user=%s kind=%s tool=%s %.2fs", user, execution.kind, execution.tool,
                 time.monotonic() - started)
        return {**chat_payload(reply, execution), "notes": notes}

    @app.get("/tasks")
    def tasks(user: str | None = Query(default=None, pattern=USER_PATTERN),
              status: Literal["open", "done", "all"] = "open",
              authenticated: str = Depends(caller)) -> dict[str, Any]:
        try:
            return {"tasks": store.list(same_user(user, authenticated), status)}
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

    def start(self, timeout: float = 20.0) -> BackgroundServer:
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

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

