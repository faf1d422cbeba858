"""Attempt-memory speed: insert N records, then time recall at that size.

    python bench/memory_recall.py [--records 1000] [--queries 50] [--batch 100]

Prints insert time (batched remember_many, and one-by-one remember for a slice) and recall
p50/p95 latency. Uses a temporary directory; nothing is downloaded.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from tunecrew.memory.store import AttemptMemory, recall_query
from tunecrew.tools.contracts import AttemptRecord, DomainCard

from _common import DOMAINS, make_domain_record, make_hardware, make_profile

OUTCOMES = [("ok", "good", 0.9), ("ok", "underfit", 0.3), ("ok", "overfit", 0.5), ("oom", "oom", None)]


def records(n: int, rng: random.Random) -> list[AttemptRecord]:
    kinds = list(DOMAINS)
    out = []
    for i in range(n):
        kind = kinds[i % len(kinds)]
        status, diagnosis, score = rng.choice(OUTCOMES)
        vocab = rng.sample(DOMAINS[kind]["vocab"], k=10)
        out.append(make_domain_record(
            kind, run_id=f"run{i // 5}", attempt=i % 5 + 1, status=status, diagnosis=diagnosis, score=score,
            lr=rng.choice([1e-4, 2e-4, 1e-3, 3e-3]), rank=rng.choice([8, 16, 32, 64]), vocab=vocab,
            rows=rng.randint(200, 20000),
        ))
    return out


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1000)
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--batch", type=int, default=100)
    args = parser.parse_args()
    rng = random.Random(0)
    batch = records(args.records, rng)
    with tempfile.TemporaryDirectory() as tmp:
        memory = AttemptMemory(Path(tmp) / "memory")
        start = time.perf_counter()
        for i in range(0, len(batch), args.batch):
            memory.remember_many(batch[i : i + args.batch])
        insert_s = time.perf_counter() - start
        print(f"insert {len(batch)} records (remember_many, batch {args.batch}): {insert_s:.2f} s "
              f"({1000 * insert_s / len(batch):.2f} ms/record); count={memory.count()}")

        single = AttemptMemory(Path(tmp) / "single")
        start = time.perf_counter()
        for record in batch[:100]:
            single.remember(record)
        print(f"insert 100 records one by one (remember): {1000 * (time.perf_counter() - start) / 100:.2f} ms/record")

        latencies = []
        for _ in range(args.queries):
            kind = rng.choice(list(DOMAINS))
            d = DOMAINS[kind]
            query = recall_query(
                d["scenario"], make_profile(rng.sample(d["vocab"], k=8), rows=rng.randint(200, 5000), fmt=d["format"]),
                DomainCard(domain=d["domain"], persona=d["persona"], confidence=0.7),
                "Qwen/Qwen2.5-0.5B-Instruct", "qwen2", 494_000_000, make_hardware("cpu"),
            )
            start = time.perf_counter()
            hits = memory.recall(query, k=5)
            latencies.append(1000 * (time.perf_counter() - start))
            assert hits and all(h.record.scenario == d["scenario"] for h in hits), (kind, [h.id for h in hits])
        print(f"recall k=5 at {memory.count()} records over {len(latencies)} queries: "
              f"p50 {statistics.median(latencies):.1f} ms, p95 {percentile(latencies, 0.95):.1f} ms, "
              f"max {max(latencies):.1f} ms")


if __name__ == "__main__":
    main()
