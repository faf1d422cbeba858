"""The task agent's HTTP API over a real uvicorn server on 127.0.0.1 (an OS-picked free port).

Most tests serve a deterministic reply function (the message *is* the model's reply), so they test
the server, the guards and the executor without a model; two serve a real TaskAgent.
"""

from __future__ import annotations

import httpx
import pytest
from task_agent_runs import make_run

from tunecrew.scenarios.task_agent.agent import TaskAgent
from tunecrew.scenarios.task_agent.server import BackgroundServer, create_app

from conftest import THREADS

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
ADD_MILK = '<analysis>Add milk.</analysis><action>add_task(title="buy milk", due="2026-12-01")</action>'
LIST_ALL = '<analysis>List.</analysis><action>list_tasks(status="all")</action>'


def echo(message: str) -> str:
    return message


@pytest.fixture
def serve(tmp_path):
    """`serve(reply_fn_or_agent, token=None, store=tmp/tasks)`: a started server, stopped at teardown."""
    started: list[BackgroundServer] = []

    def start(agent=echo, token=None, store=None, **kw) -> BackgroundServer:
        srv = BackgroundServer(create_app(agent, store or tmp_path / "tasks", token=token, **kw)).start()
        started.append(srv)
        return srv

    yield start
    for srv in started:
        srv.stop()


def chat(srv, user, message, headers=None, **kw) -> httpx.Response:
    return httpx.post(f"{srv.url}/chat", json={"user": user, "message": message}, headers=headers, timeout=30, **kw)


def test_health_and_chat_round_trip(serve):
    srv = serve()
    assert srv.host == "127.0.0.1" and srv.port > 0
    health = httpx.get(f"{srv.url}/health").json()
    assert health == {"status": "ok", "run_id": None, "base_model": None, "adapter": None}

    added = chat(srv, "alice", ADD_MILK)
    assert added.status_code == 200
    body = added.json()
    assert body["reply"] == ADD_MILK and body["kind"] == "action"
    assert body["action"] == {"tool": "add_task", "args": {"title": "buy milk", "due": "2026-12-01"}}
    assert body["result"]["ok"] is True and body["result"]["task"]["title"] == "buy milk"

    listed = chat(srv, "alice", LIST_ALL).json()
    assert [t["title"] for t in listed["result"]["tasks"]] == ["buy milk"]
    assert chat(srv, "bob", LIST_ALL).json()["result"]["tasks"] == []  # per-user store
    assert [t["title"] for t in httpx.get(f"{srv.url}/tasks", params={"user": "alice"}).json()["tasks"]] == ["buy milk"]

    final = chat(srv, "alice", "<analysis>Greeting.</analysis><final>Hi!</final>").json()
    assert final == {"reply": "<analysis>Greeting.</analysis><final>Hi!</final>", "kind": "final", "action": None,
                     "result": {"ok": True, "final": "Hi!"}}


@pytest.mark.parametrize("reply", [
    "__import__('os').system('id')",
    '<analysis>x</analysis><action>eval("1")</action>',
    '<analysis><action>add_task(title="nested")</action></analysis>',
    "<analysis>x</analysis><final>a</final>" * 3,
])
def test_off_contract_replies_are_error_results(serve, reply):
    srv = serve()
    body = chat(srv, "eve", reply).json()
    assert body["kind"] == "error" and body["action"] is None
    assert body["result"]["ok"] is False and body["result"]["error"].startswith("invalid reply: ")
    assert httpx.get(f"{srv.url}/tasks", params={"user": "eve", "status": "all"}).json()["tasks"] == []


def test_bearer_token(serve):
    srv = serve(token=TOKEN)
    assert chat(srv, "alice", ADD_MILK).status_code == 401
    wrong = chat(srv, "alice", ADD_MILK, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and wrong.headers["www-authenticate"] == "Bearer"
    assert chat(srv, "alice", ADD_MILK, headers={"Authorization": f"Basic {TOKEN}"}).status_code == 401
    assert httpx.get(f"{srv.url}/tasks", params={"user": "alice"}).status_code == 401
    assert chat(srv, "alice", ADD_MILK, headers=AUTH).status_code == 200
    assert httpx.get(f"{srv.url}/tasks", params={"user": "alice"}, headers=AUTH).json()["tasks"][0]["title"] == "buy milk"
    assert httpx.get(f"{srv.url}/health").status_code == 200  # probes need no token


def test_request_size_limit(serve):
    srv = serve(token=TOKEN, max_body_bytes=4096)
    huge = b'{"user": "alice", "message": "' + b"x" * 100_000 + b'"}'
    r = httpx.post(f"{srv.url}/chat", content=huge, headers={**AUTH, "content-type": "application/json"})
    assert r.status_code == 413 and "4096" in r.json()["detail"]
    # no Content-Length (chunked): the limit holds while streaming too
    chunks = (b"x" * 1000 for _ in range(10))
    r = httpx.post(f"{srv.url}/chat", content=chunks, headers={**AUTH, "content-type": "application/json"})
    assert r.status_code == 413
    # just under the limit is parsed (and then refused for the long message: 422, not 413)
    near = b'{"user": "alice", "message": "' + b"x" * 3000 + b'"}'
    r = httpx.post(f"{srv.url}/chat", content=near, headers={**AUTH, "content-type": "application/json"})
    assert r.status_code == 422
    assert chat(srv, "alice", ADD_MILK, headers=AUTH).status_code == 200  # the server is fine afterwards


@pytest.mark.parametrize("payload", [
    {"user": "../../etc/passwd", "message": "hi"},
    {"user": "", "message": "hi"},
    {"user": "a" * 65, "message": "hi"},
    {"user": "al ice", "message": "hi"},
    {"user": "alice\n", "message": "hi"},
    {"user": "ålice", "message": "hi"},
    {"user": "alice' OR '1'='1", "message": "hi"},
    {"user": "alice", "message": ""},
    {"user": "alice", "message": "x" * 2001},
    {"user": "alice"},
    {"user": "alice", "message": "hi", "admin": True},
    {"user": 7, "message": "hi"},
])
def test_bad_requests_are_422(serve, payload):
    srv = serve()
    r = httpx.post(f"{srv.url}/chat", json=payload)
    assert r.status_code == 422, r.text


def test_malformed_bodies_and_bad_tasks_queries_are_refused(serve):
    srv = serve()
    r = httpx.post(f"{srv.url}/chat", content=b'{"user": "a", "message": ', headers={"content-type": "application/json"})
    assert r.status_code == 422
    r = httpx.post(f"{srv.url}/chat", content=b"\xff\xfe not utf-8", headers={"content-type": "application/json"})
    assert r.status_code in (400, 422)  # undecodable: a client error either way (FastAPI picks by content)
    assert httpx.get(f"{srv.url}/tasks", params={"user": "../x"}).status_code == 422
    assert httpx.get(f"{srv.url}/tasks", params={"user": "a", "status": "pending"}).status_code == 422


def test_model_failure_is_a_500_not_a_dead_server(serve):
    def broken(message: str) -> str:
        raise RuntimeError("CUDA error")

    srv = serve(broken)
    r = chat(srv, "alice", "hi")
    assert r.status_code == 500 and r.json() == {"detail": "the model failed to reply"}
    assert httpx.get(f"{srv.url}/health").status_code == 200


def test_tasks_survive_a_server_restart(tmp_path):
    store = tmp_path / "persistent"
    with BackgroundServer(create_app(echo, store, token=TOKEN)) as first:
        assert chat(first, "alice", ADD_MILK, headers=AUTH).json()["result"]["ok"] is True
        chat(first, "alice", '<analysis>Add.</analysis><action>add_task(title="call mom")</action>', headers=AUTH)
        chat(first, "alice", '<analysis>Done.</analysis><action>complete_task(title="Call Mom")</action>',
             headers=AUTH)
        old_port = first.port
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{old_port}/health", timeout=2)  # really stopped

    with BackgroundServer(create_app(echo, store, token=TOKEN)) as second:
        tasks = chat(second, "alice", LIST_ALL, headers=AUTH).json()["result"]["tasks"]
        assert {t["title"]: t["status"] for t in tasks} == {"buy milk": "open", "call mom": "done"}
        deleted = chat(second, "alice", '<analysis>Delete.</analysis><action>delete_task(title="buy milk")</action>',
                       headers=AUTH).json()
        assert deleted["result"]["deleted"]["title"] == "buy milk"


def test_real_task_agent_over_a_merged_model(serve, tmp_path, tiny_model):
    run_dir = make_run(tmp_path / "runs", tiny_model, [])
    agent = TaskAgent.from_run(run_dir, merged_model=tiny_model, threads=THREADS)
    srv = serve(agent, token=TOKEN)
    health = httpx.get(f"{srv.url}/health").json()
    assert health == {"status": "ok", "run_id": run_dir.name, "base_model": tiny_model, "adapter": None}
    body = chat(srv, "alice", "add a task buy milk due 2026-12-01", headers=AUTH).json()
    assert body["reply"] == agent.reply("add a task buy milk due 2026-12-01")
    assert body["kind"] in ("action", "final", "error") and "ok" in body["result"]


@pytest.mark.slow
def test_real_task_agent_with_the_trained_adapter(serve, tmp_path, tiny_model, trained_adapter):
    run_dir = make_run(tmp_path / "runs", tiny_model, [{"status": "oom"}, {"score": 0.3, "adapter": trained_adapter}])
    agent = TaskAgent.from_run(run_dir.name, tmp_path / "runs", threads=THREADS)
    srv = serve(agent)
    health = httpx.get(f"{srv.url}/health").json()
    assert health == {"status": "ok", "run_id": run_dir.name, "base_model": tiny_model, "adapter": trained_adapter}
    for message in ("add a task buy milk due 2026-12-01", "show my tasks", "hello"):
        r = chat(srv, "alice", message)
        assert r.status_code == 200
        body = r.json()
        assert body["reply"] == agent.reply(message)
        assert body["kind"] in ("action", "final", "error")
