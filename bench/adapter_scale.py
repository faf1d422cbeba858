"""Weight-space interpolation toward the base model (WiSE-FT on a LoRA adapter), side by side.

    python bench/adapter_scale.py --seed 0                       # the crew's first config, 104 steps
    python bench/adapter_scale.py --scales 0.5,0.75 --steps 52
    python bench/adapter_scale.py --base-model tiny --n-train 120 --n-heldout 16 --steps 4 --scales 0.5   # smoke run

Fine-tuning fits the phrasings it saw; the base model knows more words than the training rows use.
Wortsman et al. (2022, "Robust fine-tuning of zero-shot models") found that interpolating the
fine-tuned weights back toward the pretrained ones keeps most of the in-distribution gain and
recovers robustness off the training distribution. For a LoRA adapter that interpolation is its
scale: the update is (lora_alpha / r) * B A, so an adapter saved with lora_alpha * s is the base
weights plus s times the update (PEFT reads lora_alpha from adapter_config.json; no weight is
touched). The scenario's gap is exactly that kind of shift: trained phrasings ~0.9, novel ~0.5.

One attempt of the crew's first config is trained from the base model through the crew's own tools
(as `bench/lever_ab.py` does), then the same adapter is scored by the crew's evaluation at each
scale, on the same split and seed (scale 1 is the attempt as trained).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from tuning_quality import Trials, make_scenario

import _common


def scaled_copy(adapter: Path, scale: float, out: Path) -> Path:
    """A copy of `adapter` whose update is `scale` times the original: lora_alpha * scale."""
    shutil.copytree(adapter, out)
    config_path = out / "adapter_config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    if config.get("modules_to_save"):  # trained copies of whole modules (embeddings) have no scale
        raise SystemExit(f"{adapter}: modules_to_save {config['modules_to_save']} are whole copies, not a "
                         "low-rank update; the scale would not reach them (train with embeddings frozen)")
    config["lora_alpha"] = config["lora_alpha"] * scale
    config_path.write_text(json.dumps(config, indent=2), encoding="utf-8")
    return out


def main(argv: list[str] | None = None) -> dict[float, dict[str, float]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scales", default="0.5,0.625,0.75,0.875",
                        help="comma-separated adapter scales to score beside 1 (the attempt as trained)")
    parser.add_argument("--steps", type=int, default=104, help="optimizer steps of the one attempt")
    parser.add_argument("--change", default="", help="config changes for the attempt, e.g. learning_rate=2e-3")
    parser.add_argument("--base-model", default="smollm2-135m")
    parser.add_argument("--n-train", type=int, default=416)
    parser.add_argument("--n-heldout", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    from lever_ab import parse_change

    scales = [float(s) for s in args.scales.split(",") if s.strip()]
    print(f"machine: {_common.machine()}; load before {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    out: dict[float, dict[str, float]] = {}
    rows = []
    with tempfile.TemporaryDirectory(prefix="adapter-scale-") as tmp:
        trials = Trials(make_scenario(args.n_train, args.n_heldout, runs=2), args.base_model, args.seed,
                        Path(tmp), "scale", args.threads)
        config = trials.crew_first.with_changes({"max_steps": args.steps, **parse_change(args.change)})
        started = time.monotonic()
        score, report = trials.score(config, 1)
        result = trials.ctx.current.result
        if score is None or result is None or not result.adapter_path:
            print(f"not trained: {report}")
            return out
        print(f"trained {result.steps} steps, {result.tokens} tokens, {time.monotonic() - started:.0f} s train+eval; "
              f"config lr {config.learning_rate:g} r{config.lora_rank} alpha {config.lora_alpha}", flush=True)
        adapter = Path(result.adapter_path)
        reports = {1.0: report}
        for scale in scales:
            started = time.monotonic()
            reports[scale], _ = trials.tk._score(str(scaled_copy(adapter, scale, Path(tmp) / f"scale-{scale:g}")))
            print(f"scale {scale:g} scored in {time.monotonic() - started:.0f} s", flush=True)
        for scale in sorted(reports, reverse=True):
            metrics = reports[scale].metrics
            out[scale] = {k: round(v, 4) for k, v in metrics.items()}
            rows.append([f"{scale:g}", f"{metrics.get('novel_phrasing/action_exact_match', 0):.3f}",
                         f"{metrics.get('trained_phrasing/action_exact_match', 0):.3f}",
                         f"{metrics.get('format_compliance', 0):.3f}"])
    n_novel = sum(1 for r in trials.ctx.data.heldout if r.get("group") == "novel_phrasing")
    print(f"{args.base_model}, {trials.ctx.data.heldout_split}, seed {args.seed}, threads {args.threads}; "
          f"load after {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(_common.table(["adapter scale", "novel action EM", "trained action EM", "format"], rows))
    print(f"n = {n_novel} novel-phrasing prompts: one prompt is {100 / max(1, n_novel):.1f} points")
    return out


if __name__ == "__main__":
    main()
