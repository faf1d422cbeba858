"""`tunecrew run task-agent --data FILE [--contract FILE]`: another project's task-agent rows, trained
and scored by tool and argument under their reply contract.

The file is read like any dataset (`scenarios/dataset.py`: every layout of docs/data-formats.md, a
split that never leaks), plus llama-task-agent's own rows (`instruction`, `analysis`, `action` or
`final`), rendered the way its training script renders them. Then each reference reply is parsed
under the contract: the one `--contract FILE` declares, or else the one the references show
(`declared.infer_contract`, with the counts noted). References that break it are counted and left
out of training and scoring, in one note; none left is a one-line error. The scorer is the task
agent's (format compliance, tool accuracy, action exact match), reading both replies under that
contract, so `due_date=` in the data and `due=` from the model are the same argument.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace

from tunecrew.scenarios.dataset import DatasetBuilder, split_hub_config
from tunecrew.tools.data_layouts import columns_of
from tunecrew.tools.evaluate import SampleScore
from tunecrew.tools.rows import DataError, short_repr
from tunecrew.tools.scenario import Scenario

from . import metrics
from .contract import DEFAULT_CONTRACT, ReplyContract, could_still_parse, parse_reply
from .declared import declaration, infer_contract, load_contract, prompt_line
from .grammar import reply_grammar

__all__ = ["USER_MAX_NEW_TOKENS", "ContractedData", "read_llama_task_agent", "with_user_data"]

USER_MAX_NEW_TOKENS = 128
"""Generation budget per held-out prompt for user data: llama-task-agent's replies (analysis sentence,
newlines, the call) run to about 50 tokens in SmolLM2's tokenizer, over the generated data's 64."""

_SEED_ANSWERS = frozenset({"action", "final"})
_OTHER_ANSWERS = frozenset({"messages", "conversations", "output", "response", "completion", "chosen"})


def read_llama_task_agent(rows: list[dict], label: str, notes: list[str]) -> list[dict]:
    """llama-task-agent's rows (`instruction` with `analysis` and `action`, or `final`) as chat rows.

    Rendered as its training/finetune_lora.py `format_sample` does: an action as
    `<analysis>\\n…\\n</analysis>\\n\\n<action>\\n…\\n</action>`, a final as `<final>\\n…\\n</final>` (its
    analysis dropped, as there); an action without an analysis gets none (there, empty tags). Rows of
    any other layout are returned unchanged.
    """
    columns = set(columns_of(rows))
    if "instruction" not in columns or not columns & _SEED_ANSWERS or columns & _OTHER_ANSWERS:
        return rows
    out = []
    for i, row in enumerate(rows):
        prompt, analysis, action, final = (row.get(k) for k in ("instruction", "analysis", "action", "final"))
        where = f"{label} row {i}"
        for name, value in (("instruction", prompt), ("analysis", analysis), ("action", action), ("final", final)):
            if value is not None and not isinstance(value, str):
                raise DataError(f"{where}: {name} must be text, got {short_repr(value)}")
        if not prompt or not prompt.strip():
            raise DataError(f"{where}: empty instruction; every llama-task-agent row needs one")
        if action and action.strip():
            head = f"<analysis>\n{analysis.strip()}\n</analysis>\n\n" if analysis and analysis.strip() else ""
            reply = f"{head}<action>\n{action.strip()}\n</action>"
        elif final and final.strip():
            reply = f"<final>\n{final.strip()}\n</final>"
        else:
            raise DataError(f"{where}: needs an action or a final answer (llama-task-agent rows have one of them)")
        out.append({"messages": [{"role": "user", "content": prompt}, {"role": "assistant", "content": reply}]})
    notes.append(f"data: llama-task-agent rows (instruction, analysis, action, final) rendered as its training "
                 f"script renders them, {len(out)} rows")
    return out


@dataclass
class ContractedData:
    """The reply contract of one run's data, shared by its data builder and its scorer.

    Mutable on purpose, and only here: the contract is known once the rows are read (declared, or
    inferred from them), and the scorer, built before that, must read replies under the same one.
    """

    declared: ReplyContract | None = None  # from --contract; None: inferred from the references
    declared_from: str | None = None  # the --contract file, for the note
    contract: ReplyContract | None = None  # set by check(): what the references are parsed and scored under

    def check(self, rows: list[dict], label: str, notes: list[str]) -> list[dict]:
        """The rows whose reference keeps the contract; notes the contract, its evidence and what was left out.

        The first call (the training data's rows) declares or infers the contract; a later one (the
        --heldout-data rows) is held to it, so a held-out file cannot change what training was scored by.
        """
        references = [row["messages"][-1]["content"] for row in rows]
        n = len(references)
        if self.declared is not None:
            contract = self.declared
            notes.append(f"contract: declared in {self.declared_from}")
        elif self.contract is not None:  # --heldout-data's rows, after the training rows: read under their contract
            contract = self.contract
            notes.append(f"contract: {label} checked under the contract inferred from the training data")
        else:
            found = infer_contract(references)
            contract = found.contract
            if found.variants:
                notes.append(f"contract: inferred from the data: {found.evidence}; pin it (or declare what else "
                             f"your data uses) with --contract FILE holding {declaration(contract)} "
                             "(docs/data-formats.md)")
            else:
                notes.append(f"contract: the task agent's default ({found.evidence})")
        parsed = [parse_reply(text, contract) for text in references]
        off = [(i, p.error) for i, p in enumerate(parsed) if p.kind == "invalid"]
        if len(off) == n:
            i, error = off[0]
            raise DataError(f"{label}: none of the {n} references keeps the task agent's reply contract (row {i}: "
                            f"{_clip(error)}); declare yours with --contract FILE (docs/data-formats.md)")
        if off:
            i, error = off[0]
            notes.append(f"contract: {len(off)} of {n} references are off-contract, left out of training and scoring "
                         f"(first, row {i}: {_clip(error)}); if your replies follow another contract, declare it "
                         "with --contract FILE")
        kinds = Counter(p.tool if p.kind == "action" else p.kind for p in parsed if p.kind != "invalid")
        notes.append("contract: scored by tool and argument; references by kind: "
                     + ", ".join(f"{k} {c}" for k, c in kinds.most_common()))
        self.contract = contract
        dropped = {i for i, _ in off}
        return [row for i, row in enumerate(rows) if i not in dropped]

    def score(self, expected: str, got: str) -> SampleScore:
        """The task agent's scores under this data's contract; an off-contract reference is not scored."""
        contract = self.contract or self.declared or DEFAULT_CONTRACT
        try:
            s = metrics.score_sample(expected, got, contract)
        except metrics.OffContractReference as exc:
            return SampleScore(values={}, reason=f"not scored: {exc}")
        return SampleScore(values=metrics.values(s), reason=s.reason)

    def viable(self, prefix: str) -> bool:
        """Whether a partial reply can still parse under this data's contract (see could_still_parse)."""
        return could_still_parse(prefix, self.contract or self.declared or DEFAULT_CONTRACT)

    def grammar(self) -> str:
        """The grammar of this data's contract, for constrained decoding (grammar.py)."""
        return reply_grammar(self.contract or self.declared or DEFAULT_CONTRACT)

    def instruction(self) -> str:
        """This data's contract with its tools spelled out: the system prompt's instruction for the
        tuned model and the baseline, as the task agent's own CONTRACT is for the generated data."""
        contract = self.contract or self.declared
        if contract is None:  # a caller's ordering bug, not a user's input: never prompt with a guess
            raise RuntimeError("the data's reply contract is known once its rows are read: build the data first")
        return prompt_line(contract)


def contract_of(scenario: Scenario) -> ReplyContract | None:
    """The contract a `--data` task-agent scenario's rows were checked under (None for any other
    scenario): the runner saves it so `resume` scores, and `serve` parses, as the run did."""
    owner = getattr(scenario.scorer, "__self__", None)
    return owner.contract if isinstance(owner, ContractedData) else None


def under_contract(scenario: Scenario, contract: ReplyContract) -> Scenario:
    """`scenario` scored under a saved contract (resume: the rows are already in the run folder)."""
    state = ContractedData(declared=contract, contract=contract)
    return replace(scenario, primary_metric="action_exact_match", scorer=state.score, reply_viable=state.viable,
                   reply_grammar=state.grammar, data_instruction=state.instruction,
                   max_new_tokens=max(scenario.max_new_tokens, USER_MAX_NEW_TOKENS))


def _clip(text: str | None, limit: int = 160) -> str:
    text = text or ""
    return text if len(text) <= limit else text[:limit] + "…"


def with_user_data(scenario: Scenario, *, data: str | None, columns: dict[str, str] | None,
                   heldout: float | None, contract: str | None, heldout_data: str | None = None) -> Scenario:
    """The task agent trained and scored on `data` (a file or hub id) under its reply contract."""
    if data is None:
        raise DataError(f"scenario {scenario.name} generates its own data; --columns, --heldout, --heldout-data and "
                        "--contract describe a file you give: add --data FILE")
    declared = load_contract(contract) if contract is not None else None
    state = ContractedData(declared=declared, declared_from=contract)
    source, config = split_hub_config(data)
    builder = DatasetBuilder(name=scenario.name, source=source, config=config, columns=columns,
                             columns_origin="from --columns", heldout=heldout, heldout_source=heldout_data,
                             read=read_llama_task_agent,
                             check=state.check)
    return replace(
        scenario,
        description=f"{scenario.description} Trained and scored on {data} under its reply contract.",
        # No phrasing groups in a user's rows: the target is on every held-out row's action.
        primary_metric="action_exact_match",
        # The scenario's own instruction lists its default tools; these rows may have others, so the
        # tuned model and the baseline are told this data's contract, spelled out once it is known.
        data_instruction=state.instruction,
        max_new_tokens=max(scenario.max_new_tokens, USER_MAX_NEW_TOKENS),
        build_data=builder,
        scorer=state.score,
        reply_viable=state.viable,
        reply_grammar=state.grammar,
    )
