"""`tunecrew export`: a real merge of a trained adapter that plain transformers loads and that answers
token for token as base + adapter does; the Ollama Modelfile; and every bad input as one line, exit 2."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import pytest

from tunecrew.app import export_cmd
from tunecrew.tools.export import (
    GGUF_CONVERTER_ENV,
    OLLAMA_CHATML,
    ExportError,
    chatml_template,
    modelfile,
)

from task_agent_runs import PERSONA, fake_adapter, make_run

RUN_ID = "20260101-000000-task-agent-test"


def export(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="tunecrew")
    export_cmd.add_parser(parser.add_subparsers(dest="command"))
    return export_cmd.main(parser.parse_args(["export", *argv]))


def refused(capsys, *argv: str) -> str:
    """Run the command, check it is refused with exit 2 and one line on stderr; return that line."""
    assert export(*argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("tunecrew: ") and "\n" not in err, err
    return err


# --------------------------------------------------------------------------- Modelfile


class ChatmlTokenizer:
    def apply_chat_template(self, messages, tokenize, add_generation_prompt):
        text = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
        return text + ("<|im_start|>assistant\n" if add_generation_prompt else "")


class LlamaTokenizer:
    def apply_chat_template(self, messages, tokenize, add_generation_prompt):
        return "".join(f"[INST] {m['content']} [/INST]" for m in messages)


class NoTemplateTokenizer:
    def apply_chat_template(self, messages, tokenize, add_generation_prompt):
        raise ValueError("Cannot use chat template functions because tokenizer.chat_template is not set")


def test_chatml_is_recognised_by_what_the_template_renders():
    assert chatml_template(ChatmlTokenizer()) == OLLAMA_CHATML
    assert chatml_template(LlamaTokenizer()) is None
    assert chatml_template(NoTemplateTokenizer()) is None


def test_modelfile_points_at_the_model_and_carries_system_prompt_and_template(tmp_path):
    text = modelfile(tmp_path / "merged", "You are a task agent.\nUse <action>.", OLLAMA_CHATML,
                     note="run r, attempt 2")
    lines = text.splitlines()
    assert lines[0] == "# run r, attempt 2"
    assert lines[1] == f"FROM {(tmp_path / 'merged').resolve()}"  # absolute: a bare name is a library model
    assert f'TEMPLATE """{OLLAMA_CHATML}"""' in text
    assert 'PARAMETER stop "<|im_end|>"' in text
    assert 'SYSTEM """You are a task agent.\nUse <action>."""' in text
    assert "PARAMETER temperature 0" in text

    other = modelfile(tmp_path / "model.gguf", "", None)
    assert "TEMPLATE" not in other.replace("# TEMPLATE", "") and "SYSTEM" not in other
    assert other.splitlines()[0] == f"FROM {(tmp_path / 'model.gguf').resolve()}"
    with pytest.raises(ExportError, match='"""'):
        modelfile(tmp_path, 'say """hi"""', None)


# --------------------------------------------------------------------------- bad input: one line, exit 2


def test_unknown_run_is_one_line(tmp_path, capsys):
    err = refused(capsys, "nope", "--runs-dir", str(tmp_path), "--merged", str(tmp_path / "out"))
    assert "no run 'nope'" in err
    assert not (tmp_path / "out").exists()


def test_attempt_without_adapter_and_unknown_attempt_are_one_line(tmp_path, capsys):
    runs = tmp_path / "runs"
    make_run(runs, "base", [{"status": "oom"}, {"status": "ok", "score": 0.5,
                                                 "adapter": fake_adapter(tmp_path / "a2")}])
    out = str(tmp_path / "out")
    err = refused(capsys, RUN_ID, "--runs-dir", str(runs), "--attempt", "1", "--merged", out)
    assert "attempt 1" in err and "left no adapter" in err and "oom" in err
    err = refused(capsys, RUN_ID, "--runs-dir", str(runs), "--attempt", "7", "--merged", out)
    assert "no attempt 7" in err and "attempts: 1, 2" in err

    make_run(runs, "base", [{"status": "nan"}], run_id="r-none")
    err = refused(capsys, "r-none", "--runs-dir", str(runs), "--merged", out)
    assert "no trained adapter" in err and "attempt 1: nan" in err
    assert not Path(out).exists()


def test_full_fine_tune_is_one_line(tmp_path, capsys):
    runs = tmp_path / "runs"
    run = make_run(runs, "base", [{"status": "ok", "score": 0.5}])
    full = run / "attempts" / "1" / "adapter"
    full.mkdir(parents=True)
    (full / "config.json").write_text("{}")
    err = refused(capsys, str(run), "--merged", str(tmp_path / "out"))
    assert "full fine-tune" in err and "nothing to merge" in err


def test_outputs_that_exist_and_missing_choices_are_one_line(tmp_path, capsys, monkeypatch):
    runs = tmp_path / "runs"
    run = make_run(runs, "base", [{"status": "ok", "score": 0.5, "adapter": fake_adapter(tmp_path / "a1")}])
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "x").write_text("keep me")
    err = refused(capsys, str(run), "--merged", str(taken))
    assert "--merged" in err and "not empty" in err
    err = refused(capsys, str(run), "--merged", str(tmp_path / "m"), "--ollama", str(taken))
    assert "--ollama" in err and "not empty" in err
    err = refused(capsys, str(run), "--gguf", str(taken / "x"))
    assert "--gguf" in err and "exists" in err
    assert (taken / "x").read_text() == "keep me"
    assert "at least one of" in refused(capsys, str(run))
    assert "--ollama needs --merged" in refused(capsys, str(run), "--ollama", str(tmp_path / "o"))

    monkeypatch.delenv(GGUF_CONVERTER_ENV, raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "empty-path"))
    err = refused(capsys, str(run), "--gguf", str(tmp_path / "m.gguf"))
    assert "no HF-to-GGUF converter found" in err and GGUF_CONVERTER_ENV in err
    monkeypatch.setenv(GGUF_CONVERTER_ENV, str(tmp_path / "missing.py"))
    assert "no such file" in refused(capsys, str(run), "--gguf", str(tmp_path / "m.gguf"))
    assert not (tmp_path / "m").exists() and not (tmp_path / "o").exists()


def test_a_system_prompt_a_modelfile_cannot_quote_is_refused_before_the_merge(tmp_path, capsys):
    (tmp_path / "base").mkdir()
    run = make_run(tmp_path / "runs", str(tmp_path / "base"),
                   [{"status": "ok", "score": 0.5, "adapter": fake_adapter(tmp_path / "a")}],
                   persona='You answer in """triple quotes""".')
    err = refused(capsys, str(run), "--merged", str(tmp_path / "m"), "--ollama", str(tmp_path / "m"))
    assert "system prompt" in err and not (tmp_path / "m").exists()


def test_missing_base_model_is_one_line(tmp_path, capsys):
    runs = tmp_path / "runs"
    run = make_run(runs, str(tmp_path / "gone"), [{"status": "ok", "score": 0.5,
                                                    "adapter": fake_adapter(tmp_path / "a1")}])
    err = refused(capsys, str(run), "--merged", str(tmp_path / "out"))
    assert "base model" in err and "missing" in err


# --------------------------------------------------------------------------- a real merge


def _greedy(model, tokenizer, messages, max_new_tokens=24):
    import torch

    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=max_new_tokens, do_sample=False,
                             pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id)
        logits = model(**ids).logits
    return out[0, ids["input_ids"].shape[1]:].tolist(), logits


@pytest.mark.slow
def test_merged_model_loads_in_plain_transformers_and_answers_as_base_plus_adapter(tmp_path, capsys, tiny_model,
                                                                                   trained_adapter):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tunecrew.scenarios.task_agent.scenario import SCENARIO

    runs = tmp_path / "runs"
    run = make_run(runs, tiny_model, [{"status": "ok", "score": 0.2}, {"status": "ok", "score": 0.4},
                                      {"status": "oom"}])
    for n in (1, 2):  # attempt 2 is the best scored: the default choice
        shutil.copytree(trained_adapter, run / "attempts" / str(n) / "adapter")
    merged = tmp_path / "export" / "merged"
    assert export(RUN_ID, "--runs-dir", str(runs), "--merged", str(merged), "--ollama", str(merged)) == 0
    printed = capsys.readouterr().out
    assert "attempt 2 of run" in printed and str(merged) in printed
    assert not list(merged.parent.glob(".*partial"))

    system_prompt = SCENARIO.system_prompt(PERSONA)
    messages = [{"role": "system", "content": system_prompt},
                {"role": "user", "content": 'Add a task "water the plants" due 2026-12-01.'}]
    plain = AutoModelForCausalLM.from_pretrained(str(merged))
    plain_tok = AutoTokenizer.from_pretrained(str(merged))
    assert plain_tok.chat_template and "<|im_start|>" in plain_tok.chat_template
    assert not any(k.startswith("base_model.") or "lora" in k for k in plain.state_dict())

    base = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    peft = PeftModel.from_pretrained(base, trained_adapter).eval()
    adapter_tok = AutoTokenizer.from_pretrained(trained_adapter)
    want, want_logits = _greedy(peft, adapter_tok, messages)
    got, got_logits = _greedy(plain.eval(), plain_tok, messages)
    assert got == want
    assert torch.allclose(got_logits, want_logits, atol=1e-4)
    untrained, _ = _greedy(AutoModelForCausalLM.from_pretrained(tiny_model).eval(), adapter_tok, messages)
    assert untrained != want  # the check can tell a merged adapter from none

    text = (merged / "Modelfile").read_text()
    assert f"FROM {merged.resolve()}" in text
    assert f'TEMPLATE """{OLLAMA_CHATML}"""' in text  # the tiny tokenizer's template is ChatML
    assert f'SYSTEM """{system_prompt}"""' in text and PERSONA in text
    assert "attempt 2" in text.splitlines()[0]
    config = json.loads((merged / "config.json").read_text())
    assert config.get("dtype", config.get("torch_dtype")) == "float32"


@pytest.mark.slow
def test_merge_keeps_a_trained_head_apart_from_a_tied_embedding(tmp_path, tiny_model):
    """SmolLM2 ties lm_head to embed_tokens; train_embeddings trains both as separate copies. The
    merged config must untie them, or save_pretrained drops the trained head."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from tunecrew.tools.export import merge_adapter

    tied = tmp_path / "tied"
    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    model.config.tie_word_embeddings = True
    model.tie_weights()
    model.save_pretrained(tied)
    shutil.copy(Path(tiny_model) / "tokenizer.json", tied)
    shutil.copy(Path(tiny_model) / "tokenizer_config.json", tied)

    peft = get_peft_model(AutoModelForCausalLM.from_pretrained(tied),
                          LoraConfig(r=4, target_modules=["q_proj"], modules_to_save=["embed_tokens", "lm_head"],
                                     task_type="CAUSAL_LM"))
    torch.manual_seed(0)
    with torch.no_grad():
        for name, param in peft.named_parameters():
            if "modules_to_save" in name:
                param.add_(0.5 * torch.randn_like(param))
    peft.save_pretrained(tmp_path / "adapter")
    ids = torch.tensor([[5, 17, 42, 99]])
    want = peft.eval()(ids).logits

    merge_adapter(str(tied), tmp_path / "adapter", tmp_path / "merged")
    plain = AutoModelForCausalLM.from_pretrained(tmp_path / "merged").eval()
    assert torch.allclose(plain(ids).logits, want, atol=1e-4)


FAKE_CONVERTER = '''
import json, sys
from pathlib import Path
merged, out = Path(sys.argv[1]), Path(sys.argv[sys.argv.index("--outfile") + 1])
if "fail" in out.name:
    print("INFO: loading model", file=sys.stderr)
    print("NotImplementedError: BPE pre-tokenizer was not recognized", file=sys.stderr)
    sys.exit(1)
assert (merged / "config.json").is_file() and (merged / "model.safetensors").is_file()
out.write_text(json.dumps({"argv": sys.argv[1:], "files": sorted(p.name for p in merged.iterdir())}))
'''


@pytest.mark.slow
def test_gguf_goes_through_the_named_converter_and_the_modelfile_points_at_it(tmp_path, capsys, monkeypatch,
                                                                              tiny_model, trained_adapter):
    """The converter itself is llama.cpp's (not installed here; docs/export.md): a stand-in checks
    what it is handed, a merged folder, and that a failure is one line with the converter's last words."""
    runs = tmp_path / "runs"
    run = make_run(runs, tiny_model, [{"status": "ok", "score": 0.3}])
    shutil.copytree(trained_adapter, run / "attempts" / "1" / "adapter")
    converter = tmp_path / "convert_hf_to_gguf.py"
    converter.write_text(FAKE_CONVERTER)
    monkeypatch.setenv(GGUF_CONVERTER_ENV, str(converter))
    out = tmp_path / "out"
    gguf = out / "model.gguf"
    assert export(str(run), "--gguf", str(gguf), "--gguf-type", "f32", "--ollama", str(out / "ollama")) == 0
    handed = json.loads(gguf.read_text())
    assert handed["argv"][1:] == ["--outfile", str(gguf), "--outtype", "f32"]
    assert "tokenizer.json" in handed["files"] and "chat_template.jinja" in handed["files"]
    assert sorted(p.name for p in out.iterdir()) == ["model.gguf", "ollama"]  # the scratch merge is gone
    text = (out / "ollama" / "Modelfile").read_text()
    assert f"FROM {gguf.resolve()}" in text and 'SYSTEM """' in text and "TEMPLATE" in text
    capsys.readouterr()

    err = refused(capsys, str(run), "--gguf", str(out / "fail.gguf"))
    assert "GGUF conversion failed (exit 1)" in err and "BPE pre-tokenizer was not recognized" in err
    assert sorted(p.name for p in out.iterdir()) == ["model.gguf", "ollama"]
