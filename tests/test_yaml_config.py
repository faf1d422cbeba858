"""`tunecrew run -c experiment.yaml [flags]`: a YAML file of RunConfig's fields, the flags typed
over it, one line for every bad file, and `runs/<id>/config.yaml` that repeats a run (issue 17)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tunecrew.app import runner
from tunecrew.app.cli import main, parser
from tunecrew.app.config import CrewConfig, FlagError, RunConfig, config_from_args, config_yaml, load_config
from tunecrew.scenarios.registry import SCENARIOS

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "configs").glob("*.yaml"))


def _write(tmp_path: Path, text: str, name: str = "experiment.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _config(*argv: str, model: type = RunConfig):
    return config_from_args(model, parser().parse_args(list(argv)))


class Tripwire(Exception):
    pass


@pytest.fixture
def captured(monkeypatch):
    """`runner.run` replaced: the options a command line would have run with, and no run."""
    seen: list[runner.RunOptions] = []

    def fake_run(options):
        seen.append(options)
        raise Tripwire("the run would start here")

    monkeypatch.setattr(runner, "run", fake_run)
    monkeypatch.setattr(runner, "resume", fake_run)
    return seen


# --------------------------------------------------------------------------- the shipped examples


def test_one_example_per_scenario_is_shipped():
    assert [p.stem for p in EXAMPLES] == ["custom-data", "legal-reasoning", "medical-reasoning", "task-agent"]
    assert {p.stem for p in EXAMPLES} - {"custom-data"} == set(SCENARIOS) - {"custom"}


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_shipped_example_validates_into_a_run_config(path, monkeypatch):
    monkeypatch.chdir(ROOT)  # the examples' relative paths are read from where tunecrew runs: the repo root
    config = load_config(path)
    assert isinstance(config, RunConfig)
    assert config.scenario is None or config.scenario in SCENARIOS
    if config.data is not None:
        assert Path(config.data).is_file(), config.data
    text = path.read_text(encoding="utf-8")
    assert text.startswith(f"# tunecrew run -c configs/{path.name}\n")
    assert "api_key" not in text and "api-key" not in text  # a key belongs in the environment
    # The same file through the command line: nothing typed, nothing overridden.
    assert _config("run", "-c", str(path)) == config


# --------------------------------------------------------------------------- file, then the flags typed


def test_typed_flags_override_the_file_and_defaults_never_do(tmp_path):
    path = _write(tmp_path, "scenario: medical-reasoning\nseed: 5\nmax-attempts: 2\nno_memory: true\n"
                            "judge: [openai:m]\nprovider: ollama\nembedder: hashing:512\n")
    config = _config("run", "-c", str(path))
    assert (config.scenario, config.seed, config.max_attempts, config.no_memory, config.judge, config.provider,
            config.embedder) == ("medical-reasoning", 5, 2, True, ["openai:m"], "ollama", "hashing:512")
    # Typed flags win, even one typed at its default value (--seed 0); a list flag replaces the list.
    config = _config("run", "legal-reasoning", "-c", str(path), "--seed", "0", "--judge", "gemini:g",
                     "--provider", "offline", "--max-attempts", "4")
    assert (config.scenario, config.seed, config.max_attempts, config.no_memory, config.judge, config.provider,
            config.embedder) == ("legal-reasoning", 0, 4, True, ["gemini:g"], "offline", "hashing:512")


def test_a_bad_value_in_the_file_that_a_flag_overrides_is_not_an_error(tmp_path):
    path = _write(tmp_path, "scenario: task-agent\nmax_attempts: 0\n")
    with pytest.raises(FlagError, match="max_attempts: 0 must be between 1 and 50"):
        _config("run", "-c", str(path))
    assert _config("run", "-c", str(path), "--max-attempts", "2").max_attempts == 2


def test_keys_may_be_written_with_dashes_or_underscores(tmp_path):
    dashes = _write(tmp_path, "scenario: task-agent\nmax-attempts: 2\nattempt-seconds: 5\nno-memory: true\n"
                              "judge-samples: 4\n", "dashes.yaml")
    underscores = _write(tmp_path, "scenario: task-agent\nmax_attempts: 2\nattempt_seconds: 5\nno_memory: true\n"
                                   "judge_samples: 4\n", "underscores.yaml")
    assert load_config(dashes) == load_config(underscores) == RunConfig(
        scenario="task-agent", max_attempts=2, attempt_seconds=5, no_memory=True, judge_samples=4)


def test_an_empty_file_is_no_settings(tmp_path):
    path = _write(tmp_path, "# nothing set yet\n")
    assert _config("run", "task-agent", "-c", str(path)) == RunConfig(scenario="task-agent")


def test_resume_and_chat_read_the_crew_settings_from_a_file(tmp_path):
    path = _write(tmp_path, "provider: ollama\nmodel: qwen3\nthreads: 2\nquiet: true\n")
    for command in ("resume", "chat"):
        config = _config(command, "some-run", "-c", str(path), "--threads", "1", model=CrewConfig)
        assert (config.provider, config.model, config.threads, config.quiet) == ("ollama", "qwen3", 1, True)


# --------------------------------------------------------------------------- one line for a bad file


@pytest.mark.parametrize(("text", "message"), [
    ("scenario: task-agent\nlearning_rat: 0.001\n",
     "experiment.yaml: unknown key 'learning_rat' (known: scenario, data, columns, heldout, heldout_data, "
     f"... {len(RunConfig.model_fields) - 5} more: the flags of `tunecrew run --help`)"),
    ("scenario: task-agent\nmax_attemps: 2\n", "experiment.yaml: unknown key 'max_attemps' (known: max_attempts, "),
    ("scenario: task-agent\nlearning_rate: 0.001\n",
     "experiment.yaml: unknown key 'learning_rate'; training hyperparameters are the Tuner's to choose"),
    ("scenario: task-agent\nmax-attempts: 0\n", "experiment.yaml: max-attempts: 0 must be between 1 and 50"),
    ("scenario: task-agent\ntarget: 1.5\n", "experiment.yaml: target: 1.5 must be in (0, 1]"),
    ("scenario: task-agent\nbudget: .nan\n", "experiment.yaml: budget: nan must be a finite number"),
    ("scenario: task-agent\nseed: three\n", "experiment.yaml: seed: 'three' should be a valid integer"),
    ("scenario: task-agent\nprovider: gpt5\n",
     "experiment.yaml: provider: 'gpt5' should be 'offline', 'openai', 'gemini', 'ollama' or 'llamacpp'"),
    ("scenario: task-agent\nagent: Nobody=openai\n", "experiment.yaml: agent: 'Nobody=openai': expected ROLE="),
    ("scenario: task-agent\ncolumns: prompt\n", "experiment.yaml: columns: 'prompt': 'prompt' is not ROLE=COLUMN"),
    ("seed: 3\n", "experiment.yaml: give a scenario name (tunecrew scenarios lists them) or --data"),
    ("scenario: task-agent\nmax_attempts: 2\nmax-attempts: 3\n",
     "experiment.yaml: keys 'max_attempts' and 'max-attempts' are the same setting; keep one"),
    ("scenario: task-agent\nseed: 3\n  budget: 5\n",
     "experiment.yaml: YAML syntax error at line 3, column 9: mapping values are not allowed here"),
    ("scenario: [task-agent\n", "experiment.yaml: YAML syntax error at line 2, column 1: expected ',' or ']'"),
    ("- scenario: task-agent\n",
     "experiment.yaml: the top level must be a mapping of keys (seed: 3, max-attempts: 2, ...), not a list"),
    ("task-agent\n", "experiment.yaml: the top level must be a mapping of keys"),
    ("scenario: task-agent\nseed: 2026-13-45\n", "experiment.yaml: YAML value cannot be read: month must be in"),
])
def test_a_bad_file_is_one_line_naming_it_and_nothing_is_written(text, message, tmp_path, monkeypatch, capsys,
                                                                 captured):
    monkeypatch.chdir(tmp_path)
    _write(tmp_path, text)
    assert main(["run", "-c", "experiment.yaml", "--runs-dir", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"tunecrew: {message}") and err.count("\n") == 1 and "Traceback" not in err, err
    assert not captured and not (tmp_path / "runs").exists()


def test_a_missing_file_or_a_folder_is_one_line(tmp_path, capsys, captured):
    for given, message in ((tmp_path / "nope.yaml", "no such config file"),
                           (tmp_path, "is a folder; -c takes a YAML file")):
        assert main(["run", "task-agent", "-c", str(given), "--runs-dir", str(tmp_path / "runs")]) == 2
        assert capsys.readouterr().err == f"tunecrew: {given}: {message}\n"
    (tmp_path / "latin1.yaml").write_bytes(b"scenario: caf\xe9\n")
    assert main(["run", "-c", str(tmp_path / "latin1.yaml")]) == 2
    assert capsys.readouterr().err == f"tunecrew: {tmp_path / 'latin1.yaml'}: not UTF-8 text; -c takes a YAML file\n"
    assert not captured and not (tmp_path / "runs").exists()


def test_resume_refuses_a_key_that_only_a_new_run_can_set(tmp_path, capsys, captured):
    path = _write(tmp_path, "provider: offline\nseed: 3\n")
    assert main(["resume", "some-run", "-c", str(path), "--runs-dir", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"tunecrew: {path}: key 'seed' is set when a run starts (run.json keeps it); this command "
                          "takes: provider, ") and err.count("\n") == 1
    assert not captured


def test_a_bad_flag_after_a_good_file_still_names_the_flag(tmp_path, capsys, captured):
    path = _write(tmp_path, "scenario: task-agent\nmax-attempts: 2\n")
    assert main(["run", "-c", str(path), "--max-attempts", "0"]) == 2
    assert capsys.readouterr().err == "tunecrew: --max-attempts 0 must be between 1 and 50\n"


# --------------------------------------------------------------------------- runs/<id>/config.yaml


def test_the_saved_config_has_every_field_but_the_api_key_and_absolute_paths(tmp_path, monkeypatch, captured):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "rows.jsonl").write_text('{"prompt": "a", "completion": "b"}\n')
    (tmp_path / "model").mkdir()
    path = _write(tmp_path, "data: rows.jsonl\nbase_model: model\nmemory: mem\nseed: 4\n")
    with pytest.raises(Tripwire):
        main(["run", "-c", str(path), "--api-key", "sk-secret-123", "--runs-dir", "out", "--provider", "openai",
              "--model", "m", "--quiet"])
    saved = captured[0].saved_config
    assert saved is not None and "sk-secret" not in saved and "\napi_key:" not in saved
    values = yaml.safe_load(saved)
    assert set(values) == set(RunConfig.model_fields) - {"api_key"}
    assert values["data"] == str(tmp_path / "rows.jsonl") and values["base_model"] == str(tmp_path / "model")
    assert values["memory"] == str(tmp_path / "mem") and values["runs_dir"] == str(tmp_path / "out")
    # The scenario's defaults are written in, so a changed default cannot change a repeat.
    assert (values["scenario"], values["seed"], values["max_attempts"], values["target"], values["provider"]) == \
        ("custom", 4, 3, 0.6, "openai")
    # Read back from another directory, it is the same configuration.
    monkeypatch.chdir(tmp_path.parent)
    again = tmp_path / "again.yaml"
    again.write_text(saved)
    assert load_config(again) == RunConfig.model_validate(values)


def test_the_saved_config_repeats_the_task_agent_defaults(tmp_path, captured):
    with pytest.raises(Tripwire):
        main(["run", "task-agent", "--runs-dir", str(tmp_path / "runs")])
    values = yaml.safe_load(captured[0].saved_config)
    assert (values["scenario"], values["base_model"], values["budget"], values["target"], values["seed"]) == \
        ("task-agent", "smollm2-135m", 10, 0.9, 0)
    assert values["provider"] is None and values["judge"] == [] and values["no_memory"] is False


def test_a_registry_name_or_hub_id_is_not_made_a_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    values = yaml.safe_load(config_yaml(RunConfig(data="owner/name:en", base_model="tiny", embedder="st:nowhere")))
    assert (values["data"], values["base_model"], values["embedder"]) == ("owner/name:en", "tiny", "st:nowhere")


def test_prepare_writes_config_yaml_into_the_run_folder(tmp_path, tiny_model):
    from dataclasses import replace

    from tunecrew.app.console import CrewConsole
    from tunecrew.scenarios.task_agent.data import generate
    from tunecrew.scenarios.task_agent.scenario import SCENARIO
    from tunecrew.tools.scenario import ScenarioData

    def small(seed: int) -> ScenarioData:
        d = generate(seed=seed, n_train=40, n_heldout=8)
        return ScenarioData(train=d.train, heldout=d.heldout, heldout_split="h")

    text = config_yaml(RunConfig(scenario="task-agent", base_model=tiny_model, seed=2, runs_dir=tmp_path / "runs"))
    options = runner.RunOptions(scenario=replace(SCENARIO, build_data=small), base_model=tiny_model, seed=2,
                                use_memory=False, runs_dir=tmp_path / "runs", run_id="r", quiet=True, threads=1,
                                budget_minutes=None, saved_config=text)
    ctx = runner.prepare(options, CrewConsole(quiet=True))
    assert (ctx.run.path / "config.yaml").read_text(encoding="utf-8") == text
    assert load_config(ctx.run.path / "config.yaml").seed == 2


@pytest.mark.slow
def test_a_run_repeats_from_its_saved_config(tmp_path, tiny_model, tunecrew_home, monkeypatch):
    """The whole loop: a run from a config file, then `tunecrew run -c runs/<id>/config.yaml` into
    another runs folder asks for the same run (scenario, seed, base model, target). The task agent's
    data is cut to the tests' small split (40 rows, 16 held out), so each run takes seconds."""
    from dataclasses import replace

    from tunecrew.app import cli

    from factories import small_task_agent_data

    real_load = cli._load
    monkeypatch.setattr(cli, "_load", lambda name: replace(real_load(name), build_data=small_task_agent_data))
    first_runs, second_runs = tmp_path / "first", tmp_path / "second"
    config = _write(tmp_path, f"scenario: task-agent\nbase_model: {tiny_model}\nmax-attempts: 1\n"
                              f"attempt_seconds: 5\nno_memory: true\nquiet: true\nthreads: 1\nseed: 3\n"
                              f"runs_dir: {first_runs}\n", "tiny.yaml")
    assert main(["run", "-c", str(config)]) in (0, 1)  # 1: five seconds may train nothing worth scoring
    (first,) = list(first_runs.iterdir())
    saved = first / "config.yaml"
    assert load_config(saved).runs_dir == first_runs
    assert main(["run", "-c", str(saved), "--runs-dir", str(second_runs)]) in (0, 1)
    (second,) = list(second_runs.iterdir())
    one, two = (json.loads((run / "run.json").read_text()) for run in (first, second))
    for key in ("scenario", "seed", "base_model", "target", "max_attempts", "attempt_budget_s", "memory"):
        assert one[key] == two[key], key
    assert (one["scenario"], one["seed"], one["max_attempts"]) == ("task-agent", 3, 1)
    assert yaml.safe_load(saved.read_text()) | {"runs_dir": str(second_runs)} == \
        yaml.safe_load((second / "config.yaml").read_text())
