"""Attempt-memory scale: insert time and recall latency at 1k, 10k and 100k stored attempts.

    python bench/memory_scale.py [--sizes 1000,10000,100000] [--queries 200] [--batch 500] [--dir DIR]
        [--build-budget-s SECONDS] [--extrapolate 1000000] [--json PATH] [--bulk-from LEDGER]
        [--server http://HOST:PORT [--server-path DIR]]

One local store grows through the sizes (synthetic AttemptRecords over four domains and four model
families, inserted with `remember_many` in batches); at each size it times, per query:

- embed: the hashing embedder on the query text alone;
- recall: `AttemptMemory.recall(query, k=5)`, end to end (embed + HNSW search + parsing records);
- tuner recall: the Tuner's call, filtered on model family and excluding the current run.

and prints p50/p95/max, the growth between sizes, and whether every hit had the query's domain.
Nothing is downloaded; the store is a temporary directory unless --dir is given.

Sizes too large to build here (1M attempts on two shared cores) are reached on paper:
--build-budget-s stops growing the store once the inserts have taken that long (the sizes not
reached are listed as skipped), and --extrapolate N fits p = a + b*log10(n) to the measured
p50/p95 (an HNSW search visits ~log n nodes) and, as a pessimistic bound, a power law, and prints
their values at N, labelled as an extrapolation, next to the store's bytes per attempt times N.
--json writes every figure.

The synthetic records are ~3 kB of JSON; a real attempt's is ~13 kB (its eval failures and
examples, loss curves, data samples). --bulk-from LEDGER copies that bulk from the first attempt
of a real run's ledger into every synthetic record (scores, configs and task words stay
synthetic, so the vectors still differ), which gives real bytes per attempt and the recall cost of
parsing real-sized records.

--server URL grows the store on a Chroma server (`chroma run --path DIR --port PORT`) instead of a
local directory, so recall includes the HTTP round trip; --server-path DIR (the server's --path)
lets the bench report the server's store size. Use an empty server: the sizes count its records.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import random
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from tunecrew.memory.ledger import Ledger, LedgerError  # noqa: E402
from tunecrew.memory.store import AttemptMemory, MemoryStoreError, recall_query  # noqa: E402
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


def with_bulk(record: AttemptRecord, template: AttemptRecord) -> AttemptRecord:
    """`record` carrying `template`'s bulky parts: eval failures/examples, loss curves, data samples."""
    update: dict[str, Any] = {
        "result": record.result.model_copy(update={"loss_curve": template.result.loss_curve,
                                                   "eval_curve": template.result.eval_curve}),
        "profile": record.profile.model_copy(update={"samples": template.profile.samples}),
    }
    if record.eval is not None and template.eval is not None:
        update["eval"] = record.eval.model_copy(update={"failures": template.eval.failures,
                                                        "examples": template.eval.examples})
    return record.model_copy(update=update)


def bulk_template(ledger: Path) -> AttemptRecord:
    """The first evaluated attempt of a run's ledger; one clear line if there is none."""
    if not ledger.is_file():
        raise SystemExit(f"--bulk-from {ledger}: no such file; give a runs/<id>/ledger.jsonl")
    try:
        records = Ledger(ledger).read()
    except (OSError, LedgerError) as exc:
        raise SystemExit(f"--bulk-from {ledger}: cannot read it ({exc}); give a runs/<id>/ledger.jsonl") from None
    for record in records:
        if record.eval is not None and record.eval.failures + record.eval.examples:
            return record
    raise SystemExit(f"--bulk-from {ledger}: no attempt with eval examples; give the ledger of a run that evaluated")


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


def measure(memory: AttemptMemory, qs: list[tuple[str, str, str]]) -> dict[str, Any]:
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


def log_fit(sizes: list[int], values: list[float]) -> tuple[float, float]:
    """(a, b) of the least-squares line value = a + b*log10(size); needs two distinct sizes."""
    fit = statistics.linear_regression([math.log10(n) for n in sizes], values)
    return fit.intercept, fit.slope


def extrapolate(sizes: list[int], values: list[float], target: int) -> float:
    """The log-n fit's value at `target`: a guess beyond the data, not a measurement.

    Never below the value at the largest measured size: a bigger index is not faster, and a fit
    over noisy small sizes can slope downwards.
    """
    a, b = log_fit(sizes, values)
    return max(a + b * math.log10(target), values[-1])


def extrapolate_power(sizes: list[int], values: list[float], target: int) -> float:
    """The power-law fit's value at `target` (log p against log n): the pessimistic guess.

    Used next to the log-n fit because latency measured on a shared machine can grow faster than
    an HNSW search's ~log n (an index that outgrows the CPU caches, load that rose during the run).
    """
    fit = statistics.linear_regression([math.log(n) for n in sizes], [math.log(v) for v in values])
    return max(math.exp(fit.intercept + fit.slope * math.log(target)), values[-1])


def positive_int(text: str) -> int:
    try:
        value = int(float(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number; give a count such as 1000000") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000", help="comma-separated store sizes, increasing")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--batch", type=int, default=500, help="records per remember_many call")
    parser.add_argument("--dir", type=Path, help="store directory (default: a temporary one, removed at the end)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--build-budget-s", type=float, default=None,
                        help="stop growing the store once inserts have taken this many seconds")
    parser.add_argument("--extrapolate", type=positive_int, default=None, metavar="N",
                        help="fit recall p50/p95 against log10(records) and print the value at N records")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")
    parser.add_argument("--bulk-from", type=Path, default=None, metavar="LEDGER",
                        help="give every record the eval examples, curves and samples of this ledger's first attempt")
    parser.add_argument("--server", default=None, metavar="URL",
                        help="grow the store on this Chroma server (http://host:port) instead of a local directory")
    parser.add_argument("--server-path", type=Path, default=None, metavar="DIR",
                        help="the server's --path, to report its store size")
    args = parser.parse_args()
    if args.server and args.dir:
        parser.error("--server and --dir name two stores; give one")
    if args.server and not args.server.startswith(("http://", "https://")):
        parser.error(f"--server {args.server!r}: give the server's URL, e.g. http://127.0.0.1:8000")
    template = bulk_template(args.bulk_from) if args.bulk_from else None
    try:
        sizes = [int(s) for s in args.sizes.split(",")]
    except ValueError:
        parser.error(f"--sizes {args.sizes!r}: give increasing whole numbers separated by commas, e.g. 1000,10000")
    if sizes != sorted(set(sizes)) or sizes[0] < 1:
        parser.error(f"--sizes {args.sizes!r}: the sizes must be positive and strictly increasing")
    rng = random.Random(args.seed)
    qs = queries(args.queries, random.Random(args.seed + 1))
    tmp = None if args.dir or args.server else tempfile.mkdtemp(prefix="memory-scale-")
    location: str | Path = args.server or args.dir or Path(tmp) / "memory"  # type: ignore[arg-type]
    sized = None if args.server and not args.server_path else Path(args.server_path or location)
    rows: list[list[Any]] = []
    stats: dict[int, dict[str, Any]] = {}
    store_mb: dict[int, float] = {}
    skipped: list[int] = []
    build_s = 0.0
    try:
        try:
            memory = AttemptMemory(location)
            have = memory.count()
        except MemoryStoreError as exc:
            raise SystemExit(f"memory_scale: {exc}") from None
        for size in sizes:
            if args.build_budget_s is not None and build_s >= args.build_budget_s:
                skipped.append(size)
                continue
            insert_s = 0.0
            while have < size:
                batch = synthetic(min(args.batch, size - have), have, rng)
                if template is not None:
                    batch = [with_bulk(r, template) for r in batch]
                t0 = time.perf_counter()
                memory.remember_many(batch)
                insert_s += time.perf_counter() - t0
                have += len(batch)
            build_s += insert_s
            assert memory.count() == size, (memory.count(), size)
            m = measure(memory, qs)
            stats[size] = m
            store_mb[size] = dir_mb(sized) if sized else math.nan
            added = max(1, size - ((rows and rows[-1][0]) or 0))
            rows.append([size, f"{insert_s:.1f}", f"{1000 * insert_s / added:.2f}",
                         statistics.median(m["embed"]), statistics.median(m["recall"]), pct(m["recall"], 0.95),
                         max(m["recall"]), statistics.median(m["tuner"]), pct(m["tuner"], 0.95),
                         f"{m['wrong']}/{5 * len(qs)}", f"{store_mb[size]:.0f}",
                         f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f}"])
            print(f"... {size} records measured: {rows[-1]}", file=sys.stderr, flush=True)  # a row, in case of a kill
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"memory scale: {len(qs)} queries per size, k=5, hashing embedder (dim 1024), batch {args.batch}, "
          f"records {'with the bulk of ' + str(args.bulk_from) if template else 'synthetic (~3 kB JSON)'}, "
          f"store {'on the Chroma server ' + args.server + ' (max RSS is this client)' if args.server else 'local'}")
    print(table(["records", "insert s (stage)", "ms/record", "embed p50 ms", "recall p50 ms", "recall p95 ms",
                 "recall max ms", "tuner p50 ms", "tuner p95 ms", "off-domain hits", "store MB", "max RSS MB"],
                rows))
    measured = sorted(stats)
    if skipped:
        print(f"\nnot built: {skipped} (the inserts had taken {build_s:.0f} s, budget {args.build_budget_s:g} s)")
    print("\ngrowth (p50 / p95 of recall, tuner recall) between sizes:")
    for small, big in itertools.pairwise(measured):
        a, b = stats[small], stats[big]
        p50 = statistics.median(b["recall"]) / statistics.median(a["recall"])
        print(f"  {small} -> {big} ({big / small:g}x records): recall p50 x{p50:.2f}, "
              f"p95 x{pct(b['recall'], 0.95) / pct(a['recall'], 0.95):.2f}; tuner p50 "
              f"x{statistics.median(b['tuner']) / statistics.median(a['tuner']):.2f}, "
              f"p95 x{pct(b['tuner'], 0.95) / pct(a['tuner'], 0.95):.2f}")
    guess: dict[str, float] = {}
    if args.extrapolate is not None and len(measured) >= 2:
        n = args.extrapolate
        for name in ("recall", "tuner"):
            for label, q in (("p50", 0.5), ("p95", 0.95)):
                values = [pct(stats[s][name], q) for s in measured]
                guess[f"{name} {label} ms (log n fit)"] = extrapolate(measured, values, n)
                guess[f"{name} {label} ms (power fit)"] = extrapolate_power(measured, values, n)
        per_attempt = store_mb[measured[-1]] * 1e6 / measured[-1]
        if not math.isnan(per_attempt):
            guess["store MB"] = per_attempt * n / 1e6
        print(f"\nEXTRAPOLATION to {n} records (not measured; least squares over {measured} of "
              f"p = a + b*log10(n) and of log p = c + d*log n, each floored at the largest size's value):")
        for key, value in guess.items():
            print(f"  {key}: {value:.1f}")
        print(f"  (store bytes per attempt at {measured[-1]}: {per_attempt:.0f})")
    if args.json:
        args.json.write_text(json.dumps({
            "queries": len(qs), "k": 5, "bulk_from": str(args.bulk_from) if args.bulk_from else None,
            "server": args.server,
            "batch": args.batch, "seed": args.seed, "build_s": build_s,
            "skipped": skipped, "extrapolate_to": args.extrapolate, "extrapolation": guess,
            "sizes": {str(s): {"store_mb": store_mb[s],
                               **{f"{name} {label} ms": pct(stats[s][name], q) for name in ("embed", "recall", "tuner")
                                  for label, q in (("p50", 0.5), ("p95", 0.95), ("max", 1.0))},
                               "off_domain_hits": stats[s]["wrong"]} for s in measured},
        }, indent=2) + "\n")


if __name__ == "__main__":
    main()
