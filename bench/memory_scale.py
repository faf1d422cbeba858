"""Attempt-memory scale: insert time and recall latency at 1k, 10k and 100k stored attempts.

    python bench/memory_scale.py [--sizes 1000,10000,100000] [--queries 200] [--batch 500] [--dir DIR]

One local store grows through the sizes (synthetic AttemptRecords over four domains and four model
families, inserted with `remember_many` in batches); at each size it times, per query:

- embed: the hashing embedder on the query text alone;
- recall: `AttemptMemory.recall(query, k=5)`, end to end (embed + HNSW search + parsing records);
- tuner recall: the Tuner's call, filtered on model family and excluding the current run.

and prints p50/p95/max, the growth between sizes, and whether every hit had the query's domain.
Nothing is downloaded; the store is a temporary directory unless --dir is given.
"""

from __future__ import annotations

import argparse
import itertools
import random
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from tunecrew.memory.store import AttemptMemory, recall_query  # noqa: E402
from tunecrew.tools.contracts import AttemptRecord, DomainCard  # noqa: E402

from _common import DOMAINS, make_domain_record, make_hardware, make_profile, table  # noqa: E402

OUTCOMES = [("ok", "good", 0.9), ("ok", "underfit", 0.3), ("ok", "overfit", 0.5), ("ok", "format", 0.2),
            ("oom", "oom", None), ("nan", "unstable", None)]
MODELS = [("Qwen/Qwen2.5-0.5B-Instruct", "qwen2", 494_000_000), ("meta-llama/Llama-3.2-1B", "llama", 1_240_000_000),
          ("mistralai/Mistral-7B-v0.3", "mistral", 7_250_000_000), ("google/gemma-2-2b", "gemma2", 2_610_000_000)]
EXTRA_WORDS = ("invoice", "calendar", "triage", "contract", "ticket", "refund", "shipping", "allergy", "python",
               "sql", "summary", "translation", "sentiment", "citation", "schedule", "budget")


def synthetic(n: int, start: int, rng: random.Random) -> list[AttemptRecord]:
    """n distinct attempts (ids run{i//5}:{i%5+1} from index `start`), varied in domain, model, outcome."""
    kinds = list(DOMAINS)
    out = []
    for i in range(start, start + n):
        kind = kinds[i % len(kinds)]
        status, diagnosis, score = rng.choice(OUTCOMES)
        base, family, params = rng.choice(MODELS)
        vocab = rng.sample(DOMAINS[kind]["vocab"], k=10) + rng.sample(EXTRA_WORDS, k=3)
        out.append(make_domain_record(
            kind, run_id=f"run{i // 5}", attempt=i % 5 + 1, status=status, diagnosis=diagnosis,
            score=score if score is None else round(min(1.0, max(0.0, score + rng.uniform(-0.15, 0.15))), 3),
            lr=rng.choice([5e-5, 1e-4, 2e-4, 5e-4, 1e-3, 3e-3]), rank=rng.choice([4, 8, 16, 32, 64]),
            epochs=rng.choice([1.0, 2.0, 3.0, 5.0]), vocab=vocab, rows=rng.randint(200, 50_000),
            base_model=base, model_family=family, model_params=params, device=rng.choice(["cpu", "cuda"]),
        ))
    return out


def queries(n: int, rng: random.Random) -> list[tuple[str, str, str]]:
    """(domain kind, model family, query text) for a new task, worded like the Tuner's recall query."""
    out = []
    for _ in range(n):
        kind = rng.choice(list(DOMAINS))
        d = DOMAINS[kind]
        base, family, params = rng.choice(MODELS)
        text = recall_query(
            d["scenario"], make_profile(rng.sample(d["vocab"], k=8), rows=rng.randint(200, 5000), fmt=d["format"]),
            DomainCard(domain=d["domain"], persona=d["persona"], confidence=0.7), base, family, params,
            make_hardware(rng.choice(["cpu", "cuda"])),
        )
        out.append((kind, family, text))
    return out


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def measure(memory: AttemptMemory, qs: list[tuple[str, str, str]]) -> dict[str, object]:
    for _, _, text in qs[:5]:  # warm caches (the first query after a write applies the log tail)
        memory.recall(text, k=5)
    embed, plain, tuner, wrong = [], [], [], 0
    for kind, family, text in qs:
        t0 = time.perf_counter()
        memory._ef([text])
        t1 = time.perf_counter()
        hits = memory.recall(text, k=5)
        t2 = time.perf_counter()
        memory.recall(text, k=4, where={"model_family": family}, exclude_run="run-new")
        t3 = time.perf_counter()
        embed.append(1000 * (t1 - t0))
        plain.append(1000 * (t2 - t1))
        tuner.append(1000 * (t3 - t2))
        wrong += sum(h.record.scenario != DOMAINS[kind]["scenario"] for h in hits)
    return {"embed": embed, "recall": plain, "tuner": tuner, "wrong": wrong}


def dir_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000", help="comma-separated store sizes, increasing")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--batch", type=int, default=500, help="records per remember_many call")
    parser.add_argument("--dir", type=Path, help="store directory (default: a temporary one, removed at the end)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    rng = random.Random(args.seed)
    qs = queries(args.queries, random.Random(args.seed + 1))
    tmp = None if args.dir else tempfile.mkdtemp(prefix="memory-scale-")
    location = args.dir or Path(tmp) / "memory"  # type: ignore[arg-type]
    rows, stats = [], {}
    try:
        memory = AttemptMemory(location)
        have = memory.count()
        for size in sizes:
            insert_s = 0.0
            while have < size:
                batch = synthetic(min(args.batch, size - have), have, rng)
                t0 = time.perf_counter()
                memory.remember_many(batch)
                insert_s += time.perf_counter() - t0
                have += len(batch)
            assert memory.count() == size, (memory.count(), size)
            m = measure(memory, qs)
            stats[size] = m
            added = max(1, size - ((rows and rows[-1][0]) or 0))
            rows.append([size, f"{insert_s:.1f}", f"{1000 * insert_s / added:.2f}",
                         statistics.median(m["embed"]), statistics.median(m["recall"]), pct(m["recall"], 0.95),
                         max(m["recall"]), statistics.median(m["tuner"]), pct(m["tuner"], 0.95),
                         f"{m['wrong']}/{5 * len(qs)}", f"{dir_mb(Path(location)):.0f}",
                         f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f}"])
            print(f"... {size} records measured", file=sys.stderr, flush=True)
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"memory scale: {len(qs)} queries per size, k=5, hashing embedder (dim 1024), batch {args.batch}")
    print(table(["records", "insert s (stage)", "ms/record", "embed p50 ms", "recall p50 ms", "recall p95 ms",
                 "recall max ms", "tuner p50 ms", "tuner p95 ms", "off-domain hits", "store MB", "max RSS MB"],
                rows))
    print("\ngrowth (p50 / p95 of recall, tuner recall) between sizes:")
    for small, big in itertools.pairwise(sizes):
        a, b = stats[small], stats[big]
        p50 = statistics.median(b["recall"]) / statistics.median(a["recall"])
        print(f"  {small} -> {big} ({big / small:g}x records): recall p50 x{p50:.2f}, "
              f"p95 x{pct(b['recall'], 0.95) / pct(a['recall'], 0.95):.2f}; tuner p50 "
              f"x{statistics.median(b['tuner']) / statistics.median(a['tuner']):.2f}, "
              f"p95 x{pct(b['tuner'], 0.95) / pct(a['tuner'], 0.95):.2f}")


if __name__ == "__main__":
    main()
