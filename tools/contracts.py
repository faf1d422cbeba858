"""The nouns that cross a boundary in tunecrew: one pydantic model each, saved as JSON.

Every value an agent decides reaches the world through one of these models, so the bounds on the
fields are the product's guard rails: a hallucinated ``learning_rate=10`` fails validation with a
message that names the field, and the agent reads that message and corrects itself.
"""

from __future__ import annotations

import datetime as _dt
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

SCHEMA_VERSION = 1


class _Model(BaseModel):
    # Unknown fields are an error: a typo such as `learning_rat` must not be silently dropped.
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


def utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


# --------------------------------------------------------------------------- hardware


class Hardware(_Model):
    device: Literal["cpu", "cuda", "mps"] = Field(description="Where training runs.")
    device_name: str = Field(description="CPU model or GPU name, for the report and for memory recall.")
    accelerator_memory_gb: float = Field(0.0, ge=0, description="Free GPU memory; 0 on CPU.")
    ram_gb: float = Field(ge=0, description="Host memory: the CPU training budget.")
    cpu_count: int = Field(ge=1, description="Cores torch may use.")
    bf16: bool = Field(False, description="The device computes bf16 fast (CUDA cards with bf16; CPUs with AMX "
                       "or AVX512-BF16): what precision=auto trains in.")


class BaseModelInfo(_Model):
    name: str = Field(description="Local path or hub id as given.")
    family: str = Field(description="config.model_type, e.g. 'llama': memory recall filters on it.")
    params: int = Field(ge=0)
    vocab_size: int = Field(ge=0)
    max_positions: int | None = Field(None, description="Longest sequence the model was built for.")
    random_init: bool = Field(
        False, description="Never trained (a locally built tiny model): embeddings must be trained too."
    )


# --------------------------------------------------------------------------- data


class TokenStats(_Model):
    count: int = 0
    mean: float = 0.0
    p50: float = 0.0
    p95: float = 0.0
    p99: float = Field(0.0, description="What max_seq_length is sized from (0: not measured, older profiles).")
    max: int = 0
    longest: list[int] | None = Field(None, description="The longest lengths, longest first (at most 32): "
                                      "how many rows a max_seq_length truncates.")


class DatasetProfile(_Model):
    source: str = Field(description="Path or hub id the rows came from.")
    fingerprint: str = Field(description="sha256 of the normalised rows: same data, same fingerprint.")
    rows: int = Field(ge=0)
    columns: list[str]
    format: Literal["chat", "prompt_completion", "instruction", "preference", "text"] = Field(
        description="Detected row layout; decides how rows become training text."
    )
    column_map: dict[str, str] = Field(default_factory=dict, description="Role -> source column.")
    prompt_tokens: TokenStats = Field(default_factory=TokenStats)
    response_tokens: TokenStats = Field(default_factory=TokenStats)
    total_tokens: TokenStats = Field(default_factory=TokenStats)
    token_unit: Literal["tokenizer", "words"] = Field(
        "words", description="Whether lengths were counted with the base model's tokenizer or by words."
    )
    duplicates: int = Field(0, ge=0, description="Rows whose prompt+response appear earlier.")
    language: str = Field("unknown", description="Dominant script/language guess.")
    vocabulary: list[str] = Field(default_factory=list, description="Most frequent content words (domain evidence).")
    extra: dict[str, Any] = Field(default_factory=dict, description="Scenario statistics, e.g. tool distribution.")
    samples: list[dict[str, Any]] = Field(default_factory=list, description="A few rows, for agents to read.")


class LeakCheck(_Model):
    checked: int = Field(ge=0, description="Held-out prompts compared against training prompts.")
    exact_overlap: int = Field(ge=0, description="Held-out prompts that also occur in training.")
    near_overlap: int = Field(0, ge=0, description="Held-out prompts whose normalised text occurs in training.")
    examples: list[str] = Field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.exact_overlap == 0 and self.near_overlap == 0


class DomainCard(_Model):
    domain: str = Field(min_length=2, max_length=60, description="Short label, e.g. 'task-management agent'.")
    persona: str = Field(
        min_length=10, max_length=400,
        description="One sentence that becomes the system prompt in training, evaluation and judging.",
    )
    evidence: list[str] = Field(default_factory=list, max_length=20)
    confidence: float = Field(ge=0.0, le=1.0)


# --------------------------------------------------------------------------- training


class DataRecipe(_Model):
    dedup: bool = Field(True, description="Drop repeated prompt+response rows: repeats overweight a few examples.")
    max_rows: int | None = Field(None, ge=1, description="Cap on training rows, for a quick probe attempt.")
    negatives: Literal["none", "nat", "dpo"] = Field(
        "none", description="Negative samples are marked in the prompt (nat) or paired (dpo), never mixed in unmarked."
    )
    negative_ratio: float = Field(0.0, ge=0.0, le=4.0, description="Negatives per positive (NAT uses 2).")
    synthetic_ratio: float = Field(
        0.0, ge=0.0, le=2.0,
        description="Rephrased requests added per row (the reply kept); each passes dedup against train and "
                    "held-out prompts and the length filter, so none leaks into training.",
    )
    synthetic_source: Literal["template", "llm"] = Field(
        "template",
        description="Who rephrases: template wraps a request in fixed words (offline; adds no new verbs); llm has "
                    "the run's LLM rewrite it in other words, keeping every value the reply uses (needs --provider).",
    )


class TrainConfig(_Model):
    """One attempt's hyperparameters. Bounds are wide enough for real models, tight enough to
    reject nonsense; the message of a violated bound names the field to change."""

    method: Literal["lora", "qlora", "full", "dpo"] = Field("lora", description="lora: adapters; full: all weights.")
    backend: Literal["hf", "unsloth"] = Field(
        "hf", description="hf runs everywhere; unsloth needs CUDA and its own environment (--train-python)."
    )
    dpo_beta: float = Field(
        0.1, gt=0.0, le=10.0, description="method=dpo: higher keeps the model nearer the reference."
    )
    lora_rank: int = Field(16, ge=1, le=512, description="Adapter capacity; 8-64 for most tasks.")
    lora_alpha: int = Field(32, ge=1, le=2048, description="Usually alpha = 2 * rank.")
    lora_dropout: float = Field(0.0, ge=0.0, le=0.5)
    target_modules: str | list[str] = Field("all-linear", description="PEFT target modules.")
    train_embeddings: bool = Field(
        False, description="Also train embeddings and lm_head: needed when the tokenizer has untrained tokens."
    )
    learning_rate: float = Field(2e-4, gt=0.0, le=5e-2, description="Peak lr; LoRA ~1e-4..3e-3, full ~1e-5..2e-3.")
    lr_scheduler: Literal["linear", "cosine", "constant", "constant_with_warmup"] = "cosine"
    warmup_ratio: float = Field(0.05, ge=0.0, le=0.5)
    weight_decay: float = Field(0.0, ge=0.0, le=1.0)
    neftune_noise_alpha: float = Field(
        0.0, ge=0.0, le=20.0,
        description="NEFTune: uniform noise on the input embeddings while training (5 in the paper), a "
                    "regulariser against fitting the exact wording seen; 0 is off. SFT only (lora/qlora/full).")
    epochs: float = Field(1.0, gt=0.0, le=100.0)
    max_steps: int = Field(-1, ge=-1, le=1_000_000, description="-1: run `epochs`; otherwise stop at this step.")
    batch_size: int = Field(8, ge=1, le=1024, description="Rows per optimizer micro-step in one process; with "
                            "--processes N, split between the processes (tools/train.py per_process_batch).")
    grad_accum: int = Field(1, ge=1, le=512, description="Effective batch = batch_size * grad_accum: the global "
                            "batch at any --processes (accumulation is divided by N first).")
    max_seq_length: int = Field(512, ge=16, le=131072, description="Longer rows are truncated.")
    packing: bool = Field(False, description="Pack short rows together: faster on variable-length data.")
    pad_to_multiple_of: int | None = Field(
        None, ge=1, le=4096, description="Pad each batch to a multiple of this many tokens. None: on a CPU a quarter "
        "of max_seq_length (at most 4 padded lengths: each new one costs oneDNN 2-6 s of kernel building, and "
        "SmolLM2-135M trained 1.22x the tokens/s at 64 of 256), on a GPU 8. 1: to the longest row of the batch.")
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto", description="Matmuls in bf16 (autocast, fp32 master weights) or fp32. auto: bf16 where the device "
        "runs it fast (CUDA cards with bf16; CPUs with AMX or AVX512-BF16, 1.09-1.37x the tokens/s on "
        "SmolLM2-135M), else fp32.")
    completion_only_loss: bool = Field(True, description="Loss on the response only, not on the prompt.")
    eval_fraction: float = Field(0.1, ge=0.0, le=0.5, description="Share of train rows held back for eval loss.")
    continue_training: bool = Field(
        False, description="Start from the previous attempt's adapter instead of the base model (same method, "
        "rank, alpha, targets and embeddings): a retry keeps what was learned and max_steps counts the new steps.")
    seed: int = Field(0, ge=0)
    data: DataRecipe = Field(default_factory=DataRecipe)

    @model_validator(mode="after")
    def _coherent(self) -> TrainConfig:
        if self.method == "qlora" and self.backend == "hf" and self.train_embeddings:
            raise ValueError("method=qlora cannot train 4-bit embeddings: set train_embeddings=false or method=lora")
        if self.lora_alpha > 16 * self.lora_rank:
            raise ValueError(
                f"lora_alpha={self.lora_alpha} is over 16x lora_rank={self.lora_rank}: the update scale would "
                "explode; use alpha about 2 * rank"
            )
        # Negatives: DPO trains on chosen/rejected pairs, NAT on marked rows; neither is mixed in unmarked.
        if self.method == "dpo":
            if self.data.negatives == "nat":
                raise ValueError("method=dpo trains on chosen/rejected pairs, not NAT-marked rows: set "
                                 "data.negatives='dpo' (or method=lora to keep data.negatives='nat')")
            if self.data.negatives == "none":  # dpo implies pairs: fill it in rather than refuse
                self.data = self.data.model_copy(update={"negatives": "dpo"})
        elif self.data.negatives == "dpo":
            raise ValueError(f"data.negatives='dpo' makes preference pairs, which only method=dpo trains on "
                             f"(method={self.method}): set method='dpo', or data.negatives='nat' for marked negatives")
        if self.data.negatives == "nat" and self.data.negative_ratio == 0:
            self.data = self.data.model_copy(update={"negative_ratio": 2.0})  # the NAT paper's 1:2
        if self.neftune_noise_alpha and self.method == "dpo":
            raise ValueError("neftune_noise_alpha adds noise to supervised fine-tuning; method=dpo does not use "
                             "it: set neftune_noise_alpha=0")
        if self.continue_training and (self.method == "full" or self.backend != "hf"):
            raise ValueError("continue_training keeps a LoRA adapter training with backend=hf: set "
                             "continue_training=false")
        if self.backend == "unsloth" and self.method not in ("lora", "qlora"):
            raise ValueError(f"backend=unsloth trains method=lora or qlora here, not method={self.method}: "
                             "set backend='hf' for full fine-tuning or DPO")
        return self

    @property
    def effective_batch(self) -> int:
        return self.batch_size * self.grad_accum

    # What an adapter's weights are shaped by: continuing one needs these unchanged.
    ADAPTER_SHAPE: ClassVar[tuple[str, ...]] = ("method", "lora_rank", "lora_alpha", "target_modules",
                                                "train_embeddings", "backend")

    def adapter_shape_changes(self, other: TrainConfig) -> list[str]:
        """The adapter-shaping fields where `other` differs: `field a -> b` each."""
        return [f"{k} {getattr(other, k)} -> {getattr(self, k)}" for k in self.ADAPTER_SHAPE
                if getattr(self, k) != getattr(other, k)]

    # Short names a person may type when editing a config (`lr 1e-4, rank 8`); every field's own
    # name and path (`epochs`, `data.max_rows`, or `max_rows` alone) is accepted as well.
    SHORT_NAMES: ClassVar[dict[str, str]] = {
        "lr": "learning_rate", "rank": "lora_rank", "r": "lora_rank", "alpha": "lora_alpha", "epoch": "epochs",
        "ep": "epochs", "batch": "batch_size", "bs": "batch_size", "accum": "grad_accum", "seq": "max_seq_length",
        "dropout": "lora_dropout", "warmup": "warmup_ratio", "embeddings": "train_embeddings", "steps": "max_steps",
        "wd": "weight_decay", "rows": "data.max_rows", "scheduler": "lr_scheduler", "neftune": "neftune_noise_alpha",
    }

    @classmethod
    def change_keys(cls) -> dict[str, str]:
        """Every name a change may use -> the field's path: what the Planner's `decide`, a person's
        edit and the diagnosis' suggestions all resolve through."""
        keys = {name: name for name in cls.model_fields if name != "data"}
        for name in DataRecipe.model_fields:
            keys[f"data.{name}"] = keys[name] = f"data.{name}"
        return {**keys, **cls.SHORT_NAMES}

    def with_changes(self, changes: dict[str, Any]) -> TrainConfig:
        """A validated copy with `changes` applied. Keys are field names, paths (`data.max_rows`) or
        short names (`lr`); an unknown key raises KeyError naming it and the known ones."""
        known = self.change_keys()
        merged = self.model_dump()
        for key, value in changes.items():
            if key not in known:
                raise KeyError(f"{key!r} is not a config field; "
                               f"known: {', '.join(sorted(k for k in known if '.' not in k))}")
            target = merged
            *parents, leaf = known[key].split(".")
            for parent in parents:
                target = target[parent]
            target[leaf] = value
        return TrainConfig.model_validate(merged)


class LossPoint(_Model):
    step: int
    loss: float
    epoch: float | None = None
    lr: float | None = None


class TrainResult(_Model):
    # interrupted: stopped by Ctrl-C/SIGTERM; recorded so the ledger says what ran, never remembered
    status: Literal["ok", "oom", "nan", "diverged", "error", "interrupted"]
    loss_curve: list[LossPoint] = Field(default_factory=list)
    eval_curve: list[LossPoint] = Field(default_factory=list)
    train_loss: float | None = Field(None, description="Mean loss over the last 10% of logged steps.")
    eval_loss: float | None = None
    steps: int = 0
    tokens_per_second: float | None = Field(None, description="Tokens trained on (padding excluded) per second of "
                                            "the training loop; loading and tokenising excluded.")
    tokens: int | None = Field(None, description="Tokens trained on: with train_seconds, what the next estimate uses.")
    steady_tokens_per_second: float | None = Field(
        None, description="Tokens/s from the first logged optimizer step to the last (eval-loss passes left out): "
        "the loop's start and first step excluded, the per-token cost a longer run pays. None: under 2 logged steps.")
    train_seconds: float | None = Field(None, description="The training loop alone; wall_seconds - this = start-up.")
    eval_loss_seconds: float = Field(0.0, ge=0, description="Of train_seconds, the eval-loss passes.")
    steps_from_base: int | None = Field(
        None, description="Optimizer steps from the base model, continued attempts included: what memory replays.")
    continued_from: int | None = Field(None, description="The attempt whose adapter this training continued.")
    data_end: int | None = Field(None, description="Where this run's window of the seeded shuffle of the training "
                                 "rows ended (TrainJob.data_offset + rows it drew from): a run continuing its "
                                 "adapter starts there. None: from before windows, or a failed run.")
    threads: int | None = Field(None, description="torch threads it trained with: a rate is reused only at the same.")
    precision: Literal["fp32", "bf16"] | None = Field(
        None, description="What its matmuls ran in (precision=auto resolved): MFU is against that precision's peak, "
        "and a rate is reused only at the same. None: a run from before this was recorded.")
    processes: int = Field(1, ge=1, description="Data-parallel processes it trained with (--processes): a rate "
                           "measured with DDP is not one process's.")
    model_flops_utilization: float | None = Field(
        None, description="Model FLOPs/s over the device's peak (tools/throughput.py says how both are counted).")
    estimated_seconds: float | None = Field(None, description="What the Tuner's estimate said before training.")
    peak_memory_mb: float | None = None
    wall_seconds: float = 0.0
    trainable_params: int | None = None
    total_params: int | None = None
    adapter_path: str | None = Field(None, description="PEFT adapter dir (lora) or model dir (full).")
    error: str | None = Field(None, description="Last lines of the error, for the Planner.")


# --------------------------------------------------------------------------- evaluation


class RubricScores(_Model):
    # Floats: the LLM judge's scores are means over samples; one overall opinion is a whole number.
    accuracy: float = Field(ge=1, le=10)
    reasoning: float = Field(ge=1, le=10)
    completeness: float = Field(ge=1, le=10)
    clarity: float = Field(ge=1, le=10)
    explanation: str = Field("", max_length=2000)
    judge: str = Field("offline-rules", description="Which judge produced the scores.")
    samples: int = Field(0, ge=0, description="Held-out samples judged (per judge); 0: one overall opinion.")

    @property
    def mean(self) -> float:
        return (self.accuracy + self.reasoning + self.completeness + self.clarity) / 4


class GroupMetrics(_Model):
    samples: int = Field(ge=0)
    metrics: dict[str, float]


class Failure(_Model):
    prompt: str
    expected: str
    got: str
    reason: str
    group: str = ""


class EvalReport(_Model):
    split: str = Field(description="Name of the held-out split scored.")
    samples: int = Field(ge=0, description="Held-out rows scored (excluded ones not counted).")
    excluded: int = Field(0, ge=0, description="Held-out rows not scored: an empty reference scores nothing.")
    seed: int
    metrics: dict[str, float] = Field(description="Scenario metrics over all samples, each in [0, 1].")
    groups: dict[str, GroupMetrics] = Field(default_factory=dict, description="Metrics per held-out group.")
    primary_metric: str = Field(description="The metric the target is set on.")
    rubric: RubricScores | None = Field(None, description="The LLM judge's means over judged samples (judge.json).")
    agent_rubric: RubricScores | None = Field(
        None, description="The Judge agent's own overall scores from the metrics and failures (score_rubric)."
    )
    failures: list[Failure] = Field(default_factory=list)
    examples: list[Failure] = Field(
        default_factory=list, description="The first held-out rows, pass or fail (reason ''), for side-by-side views."
    )
    leak_check: LeakCheck | None = None
    wall_seconds: float = 0.0
    generated_tokens_per_second: float | None = None
    cut_replies: int = Field(0, ge=0, description="Replies whose generation stopped early because no continuation "
                             "could score (Scenario.reply_viable): they score as they would have at full length.")
    constrained: bool = Field(False, description="Replies were decoded under the scenario's reply grammar "
                              "(Scenario.reply_grammar): no token the contract rules out. The base model's baseline "
                              "is decoded the same way, so the two compare.")

    @property
    def score(self) -> float | None:
        return self.metrics.get(self.primary_metric)

    def samples_of(self, metric: str) -> int:
        """How many samples a metric was computed on: its group's size for `group/metric` names."""
        group = metric.split("/", 1)[0] if "/" in metric else None
        return self.groups[group].samples if group in self.groups else self.samples


class SampleVerdict(_Model):
    sample: int = Field(ge=0, description="Row index in the held-out split, so judges and models line up.")
    judge: str
    scores: dict[str, int] | None = Field(
        None, description="Criterion -> 1..10; None: no valid verdict after the retries (counted as unparsed)."
    )
    rationale: str = ""
    tries: int = Field(1, ge=1, description="Requests made: more than one means a reply was retried.")
    error: str | None = Field(None, description="Why the last try failed, when the verdict is unparsed.")


class JudgeSummary(_Model):
    judge: str = Field(description="Provider:model, or offline-heuristic for the no-LLM judge.")
    means: dict[str, float] = Field(description="Criterion -> mean over parsed samples only.")
    judged: int = Field(ge=0, description="Samples with a valid verdict.")
    unparsed: int = Field(ge=0, description="Samples left out of the means: never scored 0.")


class JudgeAgreement(_Model):
    judges: list[str] = Field(description="The pair compared.")
    criterion: str = Field(description="A criterion, or 'all' for the four pooled.")
    samples: int = Field(ge=0, description="Samples both judges scored.")
    mean_abs_diff: float | None = None
    within_one: float | None = Field(None, description="Share of samples whose scores differ by at most 1.")
    spearman: float | None = Field(None, description="Rank correlation; None when a judge gave one constant score.")


class JudgeReport(_Model):
    """attempts/N/judge.json and judge_baseline.json: every verdict, the means and the agreement."""

    subject: str = Field(description="What was judged, e.g. 'base model' or 'attempt 2'.")
    split: str
    seed: int = Field(description="Seed of the sample selection.")
    samples: int = Field(ge=0, description="Samples selected for judging.")
    available: int = Field(ge=0, description="Held-out rows there were to choose from.")
    selection: str = Field(description="How the samples were chosen, in words (e.g. all, when fewer than asked).")
    persona: str = ""
    criteria: list[str]
    judges: list[JudgeSummary]
    verdicts: list[SampleVerdict] = Field(default_factory=list)
    agreement: list[JudgeAgreement] = Field(default_factory=list, description="Per judge pair; empty with one judge.")
    agreement_summary: str = ""
    calibration: str = Field("", description="Each judge's AUROC right vs wrong on calibration replies of the run's "
                             "task type, shown beside its means; empty: not calibrated (no LLM judge on the panel).")
    wall_seconds: float = 0.0


# --------------------------------------------------------------------------- decisions


DiagnosisLabel = Literal["underfit", "overfit", "generalize", "format", "oom", "unstable", "data", "error", "good"]


class Diagnosis(_Model):
    label: DiagnosisLabel
    evidence: list[str] = Field(default_factory=list)
    suggested_changes: dict[str, Any] = Field(default_factory=dict, description="TrainConfig field -> new value.")
    accepted: bool | None = Field(
        None, description="The verdict: True when the attempt beats the base model and is within noise of the best "
        "attempt so far, so it may be handed back; False: never the run's best, and a retry starts from the best "
        "accepted config; None: no score to judge (oom, error), or a record from before verdicts.")
    verdict: str = Field("", description="Why accepted or rejected: the scores, n and the noise band used.")


class Decision(_Model):
    action: Literal["retry", "stop"]
    changes: dict[str, Any] = Field(default_factory=dict)
    reason: str = Field(min_length=1, max_length=2000)
    by: str = Field("Planner", description="Agent or person who decided.")


class TrialSummary(_Model):
    """One trial of a parallel round (`--parallel N`): the attempt record holds the chosen trial in
    full (config, result, eval) and every trial, chosen or not, as one of these, so the ledger says
    what the round tried and the search learns from all of it."""

    trial: int = Field(ge=0, description="0: the Tuner's config; 1..N-1: the search's siblings around it.")
    config: TrainConfig
    status: str = Field(description="The trial's TrainResult status (ok, oom, error, ...).")
    steps: int = Field(0, ge=0)
    train_loss: float | None = None
    tokens_per_second: float | None = None
    wall_seconds: float = Field(0.0, description="Its own training time; trials overlap, so these do not add up.")
    score: float | None = Field(None, description="Primary metric on the held-out split (same split and seed as "
                                "every trial); None: not trained or not scored.")
    adapter_path: str | None = None
    chosen: bool = Field(False, description="The trial the attempt record stands for: the best score.")
    error: str | None = None


class AttemptRecord(_Model):
    """One attempt, end to end: one ledger line and one memory document."""

    schema_version: int = SCHEMA_VERSION
    run_id: str
    attempt: int = Field(ge=1)
    created_at: str = Field(default_factory=utc_now)
    scenario: str
    base_model: str
    model_family: str
    model_params: int | None = None
    hardware: Hardware
    profile: DatasetProfile
    domain: DomainCard | None = None
    config: TrainConfig
    result: TrainResult
    eval: EvalReport | None = None
    diagnosis: Diagnosis | None = None
    decision: Decision | None = None
    notes: list[str] = Field(default_factory=list, description="Fallbacks and human edits during this attempt.")
    provider: str | None = Field(None, description="Who drove the agents in this attempt (a resume may change it).")
    llm_steps: int = Field(0, ge=0, description="Agent steps the provider's LLM answered in this attempt.")
    fallback_steps: int = Field(0, ge=0, description="Agent steps the offline policy answered because the LLM "
                                "call failed: a label alone would hide an offline run under an LLM's name.")
    trials: list[TrialSummary] = Field(default_factory=list, description="--parallel: every trial of this "
                                       "attempt's round; empty for an attempt that trained one config.")

    @property
    def score(self) -> float | None:
        return self.eval.score if self.eval is not None else None


class RunSpec(_Model):
    """runs/<id>/run.json: what was asked for."""

    schema_version: int = SCHEMA_VERSION
    run_id: str
    created_at: str = Field(default_factory=utc_now)
    scenario: str
    base_model: str
    provider: str
    base_url: str | None = Field(None, description="--base-url of the agents' provider: resume reuses it.")
    max_attempts: int = Field(ge=1, le=50)
    target: float = Field(ge=0.0, le=1.0, description="Stop once the primary metric reaches this.")
    gates: dict[str, float] = Field(
        default_factory=dict, description="Minimums on other metrics that must hold too, e.g. format_compliance."
    )
    seed: int
    dataset_fingerprint: str
    memory: str
    memory_embedder: str = Field("hashing", description="--embedder of the memory store; resume reopens it with this.")
    heldout_split: str = Field("", description="Name of the held-out split every score is reported under.")
    data_source: str | None = Field(None, description="Where the training rows came from (--data, the "
                                    "scenario's dataset, or 'generated by scenario X'): the report names it, as "
                                    "runs/<id>/train.jsonl is only its converted copy. None in runs from before it.")
    task_type: str | None = Field(None, description="How a dataset scenario is scored (multiple-choice, numeric, "
                                  "classification, free-text); resume scores the same way. None: the scenario's own.")
    task_evidence: str | None = Field(None, description="Why that task type: detection's evidence, or 'given'.")
    budget_s: float | None = Field(
        None, gt=0, description="--budget: wall-clock seconds for the whole run; attempts are sized to fit it."
    )
    attempt_budget_s: float | None = Field(
        None, gt=0, description="Wall-clock cap per training run; training stops there and keeps what it learned."
    )
    judges: list[str] = Field(
        default_factory=list, description="--judge PROVIDER[:MODEL] as given; empty: the Judge agent's own provider."
    )
    judge_samples: int = Field(30, ge=1, description="Held-out samples each judge scores (all when fewer).")
