"""Training methods beyond LoRA SFT: DPO (TRL DPOTrainer + LoRA), QLoRA on CPU (bitsandbytes
4-bit), NAT-marked negatives through the Tuner's train tool, and another interpreter for the worker
(`--train-python`, the Unsloth environment), with Unsloth's refusal where it cannot run.

The slow tests really train the tiny model a few steps in the train tool's subprocess and load
the result with the evaluation's `load_model`, so an adapter the Judge cannot read fails here."""

from __future__ import annotations

import asyncio
import json
import math
import stat
import sys
from dataclasses import replace
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from tunecrew.tools.evaluate import generate, load_model, prompt_of
from tunecrew.tools.recipes import NEGATIVE_MARKER, dpo_pairs
from tunecrew.tools.rows import write_jsonl
from tunecrew.tools.train import PYTHON_ENV, TrainJob, TrainSetupError, resolve_python, run_training

from conftest import THREADS, lora_config
from factories import make_hardware, make_profile, seen


def _run(job: TrainJob, **kw):
    events: list[dict] = []
    result = run_training(job, on_event=events.append, timeout_s=400, **kw)
    return result, events


def _loads_and_generates(base: str, adapter: str, rows: list[dict]) -> list[str]:
    loaded = load_model(base, adapter, threads=THREADS)
    return generate(loaded, [prompt_of(r, "") for r in rows[:2]], max_new_tokens=8)


# --------------------------------------------------------------------------- DPO


@pytest.mark.slow
def test_dpo_trains_a_lora_adapter_from_pairs(tiny_model, task_data, tmp_path):
    pairs = write_jsonl(dpo_pairs(task_data.train, seed=0), tmp_path / "pairs.jsonl")
    job = TrainJob(config=lora_config(method="dpo", max_steps=6), base_model=tiny_model, train_file=str(pairs),
                   output_dir=str(tmp_path / "attempt"), threads=THREADS)
    result, events = _run(job)
    assert result.status == "ok", result.error
    assert result.steps == 6
    assert events[0]["event"] == "start" and events[-1] == {"event": "done", "status": "ok"}
    # The reference is the adapter-disabled base: at step 1 policy == reference, so loss = ln 2.
    assert result.loss_curve[0].loss == pytest.approx(math.log(2), abs=0.02)
    assert min(p.loss for p in result.loss_curve) < math.log(2)  # it learns to prefer the chosen reply
    assert (Path(result.adapter_path) / "adapter_config.json").exists()
    assert len(_loads_and_generates(tiny_model, result.adapter_path, task_data.heldout)) == 2


@pytest.mark.slow
def test_dpo_on_a_messages_file_names_the_missing_keys(tiny_model, task_data, tmp_path):
    job = TrainJob(config=lora_config(method="dpo", max_steps=2), base_model=tiny_model,
                   train_file=str(task_data.train_file), output_dir=str(tmp_path), threads=THREADS)
    result, _ = _run(job)
    assert result.status == "error" and "'prompt', 'chosen', 'rejected'" in result.error


# --------------------------------------------------------------------------- QLoRA on CPU


@pytest.mark.slow
def test_qlora_trains_4bit_on_cpu_and_evaluation_loads_it(tiny_model, task_data, tmp_path):
    pytest.importorskip("bitsandbytes", reason="method=qlora needs the qlora extra: pip install -e '.[qlora]'")
    from transformers import AutoModelForCausalLM

    job = TrainJob(config=lora_config(method="qlora", train_embeddings=False, max_steps=4), base_model=tiny_model,
                   train_file=str(task_data.train_file), output_dir=str(tmp_path), threads=THREADS)
    result, _ = _run(job)
    assert result.status == "ok", result.error
    assert result.steps == 4 and len(result.loss_curve) == 4
    # 4-bit weights pack two values per byte: the trained model counts fewer parameters than the
    # full-precision base, even with the LoRA matrices added.
    base_params = sum(p.numel() for p in AutoModelForCausalLM.from_pretrained(tiny_model).parameters())
    assert result.total_params < base_params
    assert len(_loads_and_generates(tiny_model, result.adapter_path, task_data.heldout)) == 2


# --------------------------------------------------------------------------- NAT through the Tuner's tools


def _tuner_context(tiny_model: str, task_data, run_dir: Path):
    """A run's state as the Tuner sees it after profiling: enough for propose_config and train."""
    from tunecrew.agents.state import RunContext, Wiring
    from tunecrew.memory.ledger import Ledger
    from tunecrew.scenarios.task_agent.scenario import SCENARIO
    from tunecrew.tools.contracts import RunSpec
    from tunecrew.tools.model_info import describe_base_model
    from tunecrew.tools.run_dir import RunDir
    from tunecrew.tools.scenario import ScenarioData

    (run_dir / "data").mkdir(parents=True, exist_ok=True)
    write_jsonl(task_data.train, run_dir / "data" / "train.jsonl")
    spec = RunSpec(run_id="r", scenario="task-agent", base_model=tiny_model, provider="offline", max_attempts=2,
                   target=0.95, seed=0, dataset_fingerprint="x", memory="off")
    ctx = RunContext(run=RunDir(run_dir), spec=spec, scenario=SCENARIO,
                     data=ScenarioData(train=task_data.train, heldout=task_data.heldout, heldout_split="h"),
                     base=describe_base_model(tiny_model), hardware=make_hardware(),
                     ledger=Ledger(run_dir / "ledger.jsonl"), memory=None, wiring=Wiring(threads=THREADS))
    ctx.profile = make_profile(rows=len(task_data.train))
    return ctx



@pytest.mark.slow
def test_train_tool_applies_the_nat_recipe_into_the_attempt_dir(tiny_model, task_data, tmp_path):
    from tunecrew.agents.toolkit import Toolkit

    run_dir = tmp_path / "run"
    ctx = _tuner_context(tiny_model, task_data, run_dir)
    toolkit = Toolkit(ctx)
    answer = seen(toolkit.propose(dict(method="lora", learning_rate=3e-3, epochs=1, batch_size=8, max_seq_length=256,
                                           train_embeddings=True, max_rows=20, negatives="nat")))
    assert answer["accepted"], answer
    assert ctx.current.config.data.negative_ratio == 2.0
    ctx.current.config = ctx.current.config.with_changes({"max_steps": 3})
    out = seen(asyncio.run(toolkit.train()))
    assert out["status"] == "ok", out
    job = json.loads((ctx.attempt_dir.path / "job.json").read_text())
    nat_file = Path(job["train_file"])
    assert nat_file == ctx.attempt_dir.recipe_file("train_nat")
    rows = [json.loads(line) for line in nat_file.read_text().splitlines()]
    positives = [r for r in rows if not r.get("negative")]
    assert len(positives) == 20 and len(rows) - 20 >= 36
    assert all(NEGATIVE_MARKER in r["messages"][-2]["content"] for r in rows if r.get("negative"))
    assert not any(NEGATIVE_MARKER in json.dumps(r) for r in positives)


# --------------------------------------------------------------------------- NEFTune


@pytest.mark.slow
def test_neftune_noise_reaches_the_training_forward_pass(tiny_model, task_data, tmp_path):
    train = write_jsonl(task_data.train[:40], tmp_path / "train.jsonl")

    def first_losses(alpha: float, name: str) -> list[float]:
        job = TrainJob(config=lora_config(max_steps=2, neftune_noise_alpha=alpha), base_model=tiny_model,
                       train_file=str(train), output_dir=str(tmp_path / name), threads=THREADS)
        result, _ = _run(job)
        assert result.status == "ok", result.error
        return [p.loss for p in result.loss_curve]

    plain, again, noisy = first_losses(0, "plain"), first_losses(0, "again"), first_losses(5, "noisy")
    assert plain == again  # same seed, same rows: only the noise can move the loss
    assert noisy[0] != plain[0]


def test_neftune_is_refused_for_dpo_in_one_line():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="neftune_noise_alpha=0"):
        lora_config(method="dpo", neftune_noise_alpha=5)


def test_an_offline_run_refuses_llm_rewrites_in_one_line(tiny_model, task_data, tmp_path):
    from tunecrew.agents.toolkit import Toolkit

    ctx = _tuner_context(tiny_model, task_data, tmp_path / "run")
    args = dict(method="lora", learning_rate=3e-3, epochs=1, batch_size=8, max_seq_length=256, synthetic_ratio=0.5)
    refused = seen(Toolkit(ctx).propose({**args, "synthetic_source": "llm"}))
    assert refused["accepted"] is False
    assert refused["errors"] == ["data.synthetic_source=llm needs an LLM to rewrite requests and this run has none "
                                 "(offline provider): use data.synthetic_source=template, or run with --provider"]
    assert seen(Toolkit(ctx).propose(args))["accepted"] is True


def test_an_llm_that_fails_to_rewrite_is_an_attempt_error_naming_the_recipe(tiny_model, task_data, tmp_path):
    from autogen_ext.models.replay import ReplayChatCompletionClient

    from tunecrew.agents.toolkit import Toolkit

    ctx = _tuner_context(tiny_model, task_data, tmp_path / "run")
    ctx.rephraser = ReplayChatCompletionClient([])  # answers nothing: every request raises
    toolkit = Toolkit(ctx)
    assert seen(toolkit.propose(dict(method="lora", learning_rate=3e-3, epochs=1, batch_size=8, max_seq_length=256,
                                     synthetic_ratio=0.5, synthetic_source="llm")))["accepted"]
    out = seen(asyncio.run(toolkit.train()))
    assert out["status"] == "error" and out["error"].startswith("data.synthetic_source=llm: the LLM failed to rewrite")
    assert out["error"].endswith("use data.synthetic_source=template")
    assert ctx.current.result is not None and ctx.current.result.status == "error"  # recorded, not lost
    assert not ctx.run.rephrased_data.exists()


@pytest.mark.slow
def test_train_tool_trains_an_llms_rewrites_made_once_per_run(tiny_model, task_data, tmp_path):
    from autogen_ext.models.replay import ReplayChatCompletionClient

    from tunecrew.agents.toolkit import Toolkit
    from tunecrew.tools.recipes import reply_of

    # Rows whose replies take no value from the request, so any rewrite keeps what they answer.
    rows = [r for r in task_data.train if '"' not in reply_of(r)]
    ctx = _tuner_context(tiny_model, replace(task_data, train=rows), tmp_path / "run")
    calls = math.ceil(len(rows) / 4)  # the most any ratio asks for (1.0 x rows), 4 rewrites a call
    ctx.rephraser = ReplayChatCompletionClient([f"variant {i} a\nvariant {i} b\n\nvariant {i} c" for i in range(calls)])
    toolkit = Toolkit(ctx)
    for attempt in (1, 2):  # the second attempt trains the same rewrites: the LLM is asked once per run
        assert ctx.current.number == attempt
        answer = seen(toolkit.propose(dict(method="lora", learning_rate=3e-3, epochs=1, batch_size=8,
                                           max_seq_length=256, synthetic_ratio=0.5, synthetic_source="llm")))
        assert answer["accepted"], answer
        ctx.current.config = ctx.current.config.with_changes({"max_steps": 2})
        out = seen(asyncio.run(toolkit.train()))
        assert out["status"] == "ok", out
        trained = [json.loads(line) for line in ctx.attempt_dir.recipe_file("train_synthetic").read_text().splitlines()]
        rewritten = [r for r in trained if r.get("synthetic") == "llm"]
        assert len(rewritten) == round(0.5 * len(rows)) and len(trained) == len(rows) + len(rewritten)
        assert {reply_of(r) for r in rewritten} <= {reply_of(r) for r in rows}
        assert all(r["messages"][-2]["content"].startswith("variant ") for r in rewritten)
        ctx.next_attempt({})
    made = ctx.run.rephrased_data.read_text().splitlines()
    assert len(made) == 3 * calls  # every line of every answer, before the filter and the ratio


# --------------------------------------------------------------------------- another interpreter


def _script(path: Path, body: str) -> str:
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


@pytest.mark.slow
def test_train_python_runs_the_worker_with_that_interpreter(tiny_model, task_data, tmp_path):
    ran = tmp_path / "ran.txt"
    wrapper = _script(tmp_path / "python-wrapper", f'echo "$@" >> {ran}\nexec {sys.executable} "$@"')
    job = TrainJob(config=lora_config(max_steps=2), base_model=tiny_model, train_file=str(task_data.train_file),
                   output_dir=str(tmp_path / "attempt"), threads=THREADS, python=wrapper)
    result, _ = _run(job)
    assert result.status == "ok", result.error
    assert "-m tunecrew.tools.train_worker" in ran.read_text()


def test_a_bad_train_python_is_a_clear_error_before_any_training(tmp_path, monkeypatch):
    with pytest.raises(TrainSetupError, match="not an executable file"):
        resolve_python(str(tmp_path / "missing-python"))
    plain = tmp_path / "not-executable"
    plain.write_text("hello")
    with pytest.raises(TrainSetupError, match="not an executable file"):
        resolve_python(str(plain))
    # -S: no site-packages, so tunecrew cannot be imported, as in a fresh venv it was not installed into
    bare = _script(tmp_path / "bare-python", f'exec {sys.executable} -S "$@"')
    with pytest.raises(TrainSetupError, match=r"cannot import tunecrew.*pip install --no-deps -e"):
        resolve_python(bare)
    monkeypatch.setenv(PYTHON_ENV, bare)  # the environment variable is used when no path is given
    job = TrainJob(config=lora_config(), base_model="unused", train_file="unused", output_dir=str(tmp_path / "a"))
    result = run_training(job)
    assert result.status == "error" and PYTHON_ENV in result.error and "cannot import tunecrew" in result.error
    assert not (tmp_path / "a" / "stderr.log").exists()  # no worker was started
    monkeypatch.delenv(PYTHON_ENV)
    assert resolve_python() == sys.executable


@pytest.mark.parametrize("command", [["run", "task-agent"], ["resume", "some-run"], ["chat", "some-run"]])
def test_cli_refuses_a_bad_train_python_at_once(tmp_path, capsys, command):
    from tunecrew.app.cli import main

    code = main([*command, "--train-python", str(tmp_path / "nope"), "--runs-dir", str(tmp_path)])
    assert code == 2
    assert "--train-python" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())  # refused before a run directory was made


# --------------------------------------------------------------------------- Unsloth


@pytest.mark.slow
def test_unsloth_without_cuda_says_how_to_set_up_its_environment(tiny_model, task_data, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the refusal is for CPU-only machines")
    job = TrainJob(config=lora_config(backend="unsloth", max_steps=2), base_model=tiny_model,
                   train_file=str(task_data.train_file), output_dir=str(tmp_path), threads=THREADS)
    result, events = _run(job)
    assert result.status == "error"
    assert "CUDA" in result.error and ".venv-unsloth" in result.error and "--train-python" in result.error
    assert events[-1] == {"event": "done", "status": "error"}


# --------------------------------------------------------------------------- choosing the backend


def test_tuner_can_choose_unsloth_but_only_where_cuda_is(tiny_model, task_data, tmp_path):
    from tunecrew.agents.toolkit import Toolkit
    from tunecrew.tools.contracts import TrainConfig

    ctx = _tuner_context(tiny_model, task_data, tmp_path)
    args = dict(method="lora", learning_rate=3e-3, epochs=1, batch_size=8, max_seq_length=256)
    refused = seen(Toolkit(ctx).propose({**args, "backend": "unsloth"}))
    assert refused["accepted"] is False and "backend=unsloth needs a CUDA GPU" in " ".join(refused["errors"])
    assert seen(Toolkit(ctx).propose({**args, "backend": "hf"}))["accepted"] is True
    # a backend chosen once (by the Planner or a person) survives the policy's next proposal
    from tunecrew.agents.offline import _proposal

    assert _proposal(TrainConfig(backend="unsloth"))["backend"] == "unsloth"
    assert _proposal(TrainConfig())["backend"] == "hf"
