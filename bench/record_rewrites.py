"""Record a local model's rewrites of training requests, for `bench/lever_ab.py --rewrites`.

    python bench/record_rewrites.py --requests bench/data/rewrites_seed0.jsonl --out /tmp/smol_seed0.jsonl
    python bench/lever_ab.py --n-train 416 --n-heldout 128 --steps 104 --seed 0 \
        --change data.synthetic_ratio=0.5,data.synthetic_source=llm --rewrites /tmp/smol_seed0.jsonl

The question: can the offline crew rewrite its own requests? The LLM-rewrite lever
(`data.synthetic_source=llm`) moved the novel-phrasing group on every seed with a capable LLM's
rewrites (docs/benchmarks.md), and the offline demo has no LLM, but it does have a pretrained
model: the base model itself. This asks that model (default: the demo's SmolLM2-135M-Instruct,
through the crew's own loader and batched greedy generation) the crew's own question
(`tools/recipes.PARAPHRASE_INSTRUCTION`, 4 rewrites a request) for the same requests a recorded
file holds (the requests the crew's sampling asks for seed S), and writes its answers in that
file's format. Lines are split as the crew splits an LLM's answer; the value check, the filter
and the ratio stay the crew's, in lever_ab.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common

PER_REQUEST = 4  # what llm_paraphrase_rows asks for (per_call)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=Path, required=True, help="a recorded rewrites file (JSON lines with "
                                                                      "\"request\"): the requests to rewrite")
    parser.add_argument("--out", type=Path, required=True, help="where to write this model's rewrites")
    parser.add_argument("--model", default="smollm2-135m", help="a `tunecrew models` name or a model folder")
    parser.add_argument("--max-new-tokens", type=int, default=96)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)

    from tunecrew.tools.base_models import resolve
    from tunecrew.tools.evaluate import generate, load_model
    from tunecrew.tools.recipes import PARAPHRASE_INSTRUCTION, _rewrites

    requests = [json.loads(line)["request"] for line in args.requests.read_text(encoding="utf-8").splitlines()
                if line.strip()]
    print(f"machine: {_common.machine()}; load before {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    loaded = load_model(resolve(args.model), threads=args.threads)
    system = PARAPHRASE_INSTRUCTION.format(k=PER_REQUEST)
    started = time.monotonic()
    answers = generate(loaded, [[{"role": "system", "content": system}, {"role": "user", "content": r}]
                                for r in requests], max_new_tokens=args.max_new_tokens, batch_size=16)
    seconds = time.monotonic() - started
    out = [{"request": r, "rewrites": _rewrites(a)[:PER_REQUEST]} for r, a in zip(requests, answers, strict=True)]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("".join(json.dumps(o, ensure_ascii=False) + "\n" for o in out), encoding="utf-8")

    lines = [w for o in out for w in o["rewrites"]]
    same = sum(w.strip().lower() == o["request"].strip().lower() for o in out for w in o["rewrites"])
    print(f"{args.model}: {len(requests)} requests -> {len(lines)} lines ({same} repeat the request) in "
          f"{seconds:.0f} s; load after {' '.join(f'{x:.2f}' for x in os.getloadavg())}; wrote {args.out}")
    for o in out[:6]:
        print(f"  {o['request']!r}\n    -> {o['rewrites']}")
    return out


if __name__ == "__main__":
    main()
