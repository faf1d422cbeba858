"""/health latency while 200 /chat requests hit the task-agent server at once (issue 16: 49 s before).

    python bench/health_under_load.py [--chats 200] [--generate-seconds 0.2] [--max-queue 16]
                                      [--probe-interval 0.02] [--timeout 120]

Three processes, so that no client's own work delays another's measurement:

- the server: the real app (`create_app` under uvicorn, on 127.0.0.1, an OS-picked port, a bearer
  token, a temporary task store) over a stub model whose `reply` holds a lock and sleeps
  `--generate-seconds`: like `TaskAgent.reply`, it occupies a generation thread and lets one
  generation run at a time, but costs no CPU (the machine is shared);
- the load: `--chats` concurrent /chat requests (asyncio + httpx), counted by status;
- this process: probes /health every `--probe-interval` seconds on a fixed schedule (a probe does
  not wait for the one before), each on a fresh connection as a load balancer's would, from the
  moment the load fires until every chat has answered.

It prints the chat outcomes (200 / 503 with Retry-After), /health p50/p99/max and the machine's
load. Everything is bounded: loopback only, at most 1000 chats, `--timeout` seconds in all.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common  # noqa: F401  (offline environment defaults)

TOKEN = "bench-token"
REPLY = "<analysis>List.</analysis><action>list_tasks()</action>"
MAX_CHATS = 1000


class SleepyModel:
    """A stand-in for TaskAgent: one generation at a time, each holding its thread for `seconds`."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._lock = threading.Lock()

    def reply(self, message: str) -> str:
        with self._lock:
            time.sleep(self.seconds)
        return REPLY

    def describe(self) -> dict:
        return {"run_id": "bench-stub", "base_model": "sleepy-stub", "adapter": None}


def serve_child(args: argparse.Namespace) -> None:
    """Child process: serve until stdin closes; print the port first."""
    from tunecrew.scenarios.task_agent.server import BackgroundServer, create_app

    with tempfile.TemporaryDirectory(prefix="tunecrew-bench-health-") as store:
        app = create_app(SleepyModel(args.generate_seconds), store, token=TOKEN, max_queue=args.max_queue)
        with BackgroundServer(app, host="127.0.0.1") as srv:
            print(srv.port, flush=True)
            sys.stdin.read()  # the parent closes our stdin when it is done


def load_child(url: str, args: argparse.Namespace) -> None:
    """Load process: say "firing" (imports done), fire the chats at once, then print one JSON line of
    outcomes when all have answered."""
    import httpx  # noqa: F401  (imported before "firing": the probes must not time our start-up)

    print("firing", flush=True)
    print(json.dumps(asyncio.run(fire_chats(url, args))), flush=True)


async def fire_chats(url: str, args: argparse.Namespace) -> dict:
    import httpx

    headers = {"Authorization": f"Bearer {TOKEN}"}
    limits = httpx.Limits(max_connections=args.chats + 10, max_keepalive_connections=args.chats + 10)
    started = time.monotonic()
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=args.timeout) as client:
        responses = await asyncio.gather(
            *(client.post("/chat", json={"message": f"list my tasks {i}"}, headers=headers) for i in range(args.chats)),
            return_exceptions=True)
    codes: dict[str, int] = {}
    retry_after = set()
    for r in responses:
        key = type(r).__name__ if isinstance(r, BaseException) else str(r.status_code)
        codes[key] = codes.get(key, 0) + 1
        if not isinstance(r, BaseException) and r.status_code == 503:
            retry_after.add(r.headers.get("retry-after"))
    return {"codes": codes, "retry_after": sorted(retry_after), "wall": time.monotonic() - started}


async def probe_while(url: str, load: subprocess.Popen, args: argparse.Namespace) -> list[float]:
    """/health latencies (s) until `load` exits: a probe every `--probe-interval` on a fixed
    schedule, each on a fresh connection, without waiting for the previous one, so that a stalled
    /health shows up in every probe it delays rather than in one (no coordinated omission)."""
    import httpx

    async def probe(client: httpx.AsyncClient) -> float:
        t0 = time.perf_counter()
        r = await client.get(url + "/health")
        if r.status_code != 200:
            raise SystemExit(f"/health answered {r.status_code}: {r.text[:200]}")
        return time.perf_counter() - t0

    deadline = time.monotonic() + args.timeout
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=0)
    async with httpx.AsyncClient(timeout=args.timeout, limits=limits) as client:
        probes = []
        while load.poll() is None and time.monotonic() < deadline:
            probes.append(asyncio.create_task(probe(client)))
            await asyncio.sleep(args.probe_interval)
        return list(await asyncio.gather(*probes))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--chats", type=int, default=200)
    p.add_argument("--generate-seconds", type=float, default=0.2)
    p.add_argument("--max-queue", type=int, default=16, help="the server's --max-queue")
    p.add_argument("--probe-interval", type=float, default=0.02)
    p.add_argument("--timeout", type=float, default=120.0)
    p.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)  # the server child
    p.add_argument("--load", metavar="URL", help=argparse.SUPPRESS)  # the load child
    args = p.parse_args()
    if not 1 <= args.chats <= MAX_CHATS:
        p.error(f"--chats must be between 1 and {MAX_CHATS}")
    if args.serve:
        serve_child(args)
        return
    if args.load:
        load_child(args.load, args)
        return

    common = ["--generate-seconds", str(args.generate_seconds), "--max-queue", str(args.max_queue),
              "--chats", str(args.chats), "--timeout", str(args.timeout)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    server = subprocess.Popen([sys.executable, __file__, "--serve", *common], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, env=env)
    try:
        url = f"http://127.0.0.1:{int(server.stdout.readline())}"  # type: ignore[union-attr]
        load = subprocess.Popen([sys.executable, __file__, "--load", url, *common], stdout=subprocess.PIPE,
                                text=True, env=env)
        if load.stdout.readline().strip() != "firing":  # type: ignore[union-attr]
            raise SystemExit("the load process did not start")
        latencies = asyncio.run(probe_while(url, load, args))
        out, _ = load.communicate(timeout=args.timeout)
        result = json.loads(out.strip().splitlines()[-1])
    finally:
        server.stdin.close()  # type: ignore[union-attr]
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
    lat = [x * 1000 for x in latencies]
    load1, load5, _ = os.getloadavg()
    print(f"machine: {os.cpu_count()} cores, load average {load1:.2f} (1 min) {load5:.2f} (5 min)")
    print(f"{args.chats} concurrent /chat, stub generation {args.generate_seconds:.2f} s each, one at a time, "
          f"server --max-queue {args.max_queue}: answered in {result['wall']:.1f} s, status counts {result['codes']}, "
          f"Retry-After values {result['retry_after']}")
    print(f"/health under that load: {len(lat)} probes, p50 {statistics.median(lat):.1f} ms, "
          f"p99 {percentile(lat, 99):.1f} ms, max {max(lat):.1f} ms")


if __name__ == "__main__":
    main()
