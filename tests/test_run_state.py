"""The run's state as data: --seed reaches the trainer, attempts cannot leak into each other, and
every noun that used to be declared several times now comes from one definition."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from tunecrew.agents import policy
from tunecrew.agents.answers import ProposalAnswer, TuningBrief
from tunecrew.agents.review import ALIASES, parse_review
from tunecrew.agents.roles import CREW, ROLES
from tunecrew.agents.state import Attempt
from tunecrew.agents.toolkit import Toolkit
from tunecrew.app.cli import parser
from tunecrew.app.console import CrewConsole
from tunecrew.app.runner import RunOptions, prepare
from tunecrew.scenarios.task_agent.data import generate
from tunecrew.scenarios.task_agent.scenario import SCENARIO
from tunecrew.tools.contracts import DataRecipe, Decision, TrainConfig, TrainResult
from tunecrew.tools.run_dir import RunDir
from tunecrew.tools.scenario import ScenarioData


def _small(seed: int) -> ScenarioData:
    d = generate(seed=seed, n_train=40, n_heldout=8)
    return ScenarioData(train=d.train, heldout=d.heldout, heldout_split="h")


def _prepared(tmp_path: Path, tiny_model: str, argv: list[str]):
    """A run prepared from a real command line, as `tunecrew run` does before the crew starts."""
    from dataclasses import replace

    args = parser().parse_args(["run", "task-agent", "--base-model", tiny_model, "--no-memory", *argv])
    options = RunOptions(scenario=replace(SCENARIO, build_data=_small), base_model=args.base_model, seed=args.seed,
                         use_memory=False, runs_dir=tmp_path / "runs", run_id="r", quiet=True, threads=1,
                         budget_minutes=None)
    ctx = prepare(options, CrewConsole(quiet=True))
    Toolkit(ctx).profile_dataset()
    return ctx


def test_the_seed_on_the_command_line_reaches_the_training_job(tmp_path, tiny_model, monkeypatch):
    """The seed bug (issue 14): --seed was lost between the brief and the policy, so every run
    trained with seed 0. Followed here from argv to the job the training worker receives."""
    jobs = []
    monkeypatch.setattr("tunecrew.agents.toolkit.run_training",
                        lambda job, **kw: jobs.append(job) or TrainResult(status="error", error="not run"))
    ctx = _prepared(tmp_path, tiny_model, ["--seed", "7"])
    assert ctx.spec.seed == 7 and RunDir(ctx.run.path).read_spec().seed == 7
    toolkit = Toolkit(ctx)
    brief = toolkit.brief()
    assert brief.seed == 7
    config, _ = policy.initial_config(brief)
    assert toolkit.propose(config.model_dump()).accepted
    asyncio.run(toolkit.train())
    assert jobs[0].config.seed == 7


def test_a_new_attempt_starts_empty(tmp_path, tiny_model):
    ctx = _prepared(tmp_path, tiny_model, [])
    first = ctx.current
    first.config, first.result, first.notes = TrainConfig(), TrainResult(status="ok"), ["a note"]
    ctx.next_attempt({"epochs": 2})
    assert ctx.current is not first and ctx.current == Attempt(2, changes={"epochs": 2})
    assert ctx.attempt_dir.path == ctx.run.path / "attempts" / "2"


def test_propose_config_takes_train_configs_own_fields(tmp_path, tiny_model):
    """One definition of the hyperparameters: the tool's schema is TrainConfig's, every field of it
    (recipe included) can be proposed, and a flat recipe field is read as the recipe's."""
    ctx = _prepared(tmp_path, tiny_model, [])
    tool = next(t for t in Toolkit(ctx).tools_for("Tuner") if t.name == "propose_config")
    schema = tool.schema["parameters"]["properties"]
    assert set(schema) == set(TrainConfig.model_fields)
    assert set(schema["data"]["properties"]) == set(DataRecipe.model_fields)
    answer = Toolkit(ctx).propose({"lr": 1e-3, "max_rows": 20, "dpo_beta": 0.2, "max_seq_length": 256})
    assert isinstance(answer, ProposalAnswer) and answer.accepted, answer
    assert ctx.current.config is not None
    assert (ctx.current.config.learning_rate, ctx.current.config.data.max_rows, ctx.current.config.dpo_beta) == \
        (1e-3, 20, 0.2)


def test_unknown_proposal_field_is_refused_by_name(tmp_path, tiny_model):
    ctx = _prepared(tmp_path, tiny_model, [])
    answer = Toolkit(ctx).propose({"learning_rat": 1e-3})
    assert not answer.accepted and "'learning_rat' is not a config field" in answer.errors[0]


def test_every_config_field_can_be_changed_by_the_planner_and_by_a_person():
    keys = TrainConfig.change_keys()
    for name in TrainConfig.model_fields:
        if name != "data":
            assert keys[name] == name and ALIASES[name] == name
    for name in DataRecipe.model_fields:
        assert keys[name] == keys[f"data.{name}"] == f"data.{name}"
    review = parse_review("dpo_beta 0.3, rows 50, lr 1e-4", TrainConfig())
    assert review.kind == "edit" and review.changes == {"dpo_beta": 0.3, "data.max_rows": 50, "learning_rate": 1e-4}
    assert TrainConfig().with_changes(review.changes).dpo_beta == 0.3


def test_one_role_registry():
    assert ROLES == tuple(r.name for r in CREW) == ("DomainExpert", "Tuner", "Judge", "Planner")
    for role in CREW:
        assert role.system_prompt.strip()  # prompts/<name>.md exists
        for tool in role.tools:
            assert callable(getattr(Toolkit, tool))


def test_the_brief_an_agent_reads_is_the_brief_the_policy_reads(tmp_path, tiny_model):
    ctx = _prepared(tmp_path, tiny_model, [])
    answer = Toolkit(ctx).recall_attempts()
    assert isinstance(answer, TuningBrief)
    as_read = TuningBrief.model_validate_json(answer.model_dump_json(exclude_none=True))
    assert policy.initial_config(as_read) == policy.initial_config(answer)


def test_run_json_is_written_by_the_run_dir_only(tmp_path, tiny_model):
    ctx = _prepared(tmp_path, tiny_model, [])
    spec_file = ctx.run.spec
    assert json.loads(spec_file.read_text())["run_id"] == "r"
    ctx.current.config, ctx.current.result = TrainConfig(), TrainResult(status="ok")
    ctx.wiring = ctx.wiring.__class__(threads=1, interactive=True)
    toolkit = Toolkit(ctx)
    ctx.proposed = Decision(action="stop", reason="r")
    toolkit.apply_review(parse_review("+2", None))
    assert RunDir(ctx.run.path).read_spec().max_attempts == SCENARIO.max_attempts + 2
    assert not list(ctx.run.path.glob("*.tmp"))

