"""The data layouts users bring (issue 15, item 2): one real-format fixture per layout under
tests/fixtures/data/, each checked for its detected layout, its role -> column mapping and the
first row's messages. docs/data-formats.md has one row per test here."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import pytest

from tunecrew.app.cli import main
from tunecrew.scenarios.dataset import parse_columns, with_data
from tunecrew.scenarios.registry import load_scenario
from tunecrew.tools.data_layouts import (
    AmbiguousColumns,
    Layout,
    cell_text,
    columns_of,
    detect_layout,
    format_from_mapping,
    row_extras,
    to_messages,
)
from tunecrew.tools.profile import profile_rows
from tunecrew.tools.rows import DataError, load_rows, sniff_delimiter, write_jsonl

FIXTURES = Path(__file__).parent / "fixtures" / "data"
MAX_ERROR = 300  # no error message is longer than this (issue 15: a 12 KB one-line key list)


def read(name: str) -> tuple[Layout, list[dict], list[dict]]:
    """(layout, rows, first row's messages) of a fixture file."""
    rows = load_rows(FIXTURES / name)
    layout = detect_layout(columns_of(rows), rows[0])
    return layout, rows, to_messages(rows[0], layout.format, layout.columns, where=name)


def user(text: str) -> dict:
    return {"role": "user", "content": text}


def assistant(text: str) -> dict:
    return {"role": "assistant", "content": text}


def system(text: str) -> dict:
    return {"role": "system", "content": text}


# --------------------------------------------------------------------------- chat layouts


def test_openai_chat_jsonl() -> None:
    layout, rows, messages = read("openai_chat.jsonl")
    assert (layout.name, layout.format, layout.columns) == ("openai-chat", "chat", {"messages": "messages"})
    assert messages == rows[0]["messages"]
    assert messages[0] == system("You solve grade-school math word problems.")


def test_openai_chat_with_tools_keeps_tools_and_tool_calls() -> None:
    layout, rows, messages = read("openai_tools.jsonl")
    assert (layout.name, layout.columns) == ("openai-chat", {"messages": "messages", "tools": "tools"})
    call = rows[0]["messages"][1]["tool_calls"]
    assert messages == [
        user("What is the weather in Lisbon right now?"),
        {"role": "assistant", "tool_calls": call, "content": '<tool_call>\n{"name": "get_current_weather", '
                                                             '"arguments": {"location": "Lisbon", "unit": "celsius"}}'
                                                             "\n</tool_call>"}]
    assert row_extras(rows[0], layout.columns) == {"tools": rows[0]["tools"]}
    # A tool result follows its call and keeps its call id; the conversation ends with the answer.
    second = to_messages(rows[1], layout.format, layout.columns)
    assert [m["role"] for m in second] == ["user", "assistant", "tool", "assistant"]
    assert second[2]["tool_call_id"] == "call_2" and second[3] == assistant("Yes, it is raining in Oslo, 7 °C.")
    # Converted rows read back unchanged (the training file goes through the same code).
    assert to_messages({"messages": second}, "chat", {"messages": "messages"}) == second


def test_sharegpt_json() -> None:
    layout, rows, messages = read("sharegpt.json")
    assert (layout.name, layout.format, layout.columns) == ("sharegpt", "chat", {"messages": "conversations"})
    assert messages == [user("What does a capacitor do in a circuit?"),
                        assistant("It stores electric charge and releases it, smoothing voltage changes."),
                        user("And a resistor?"), assistant("It limits the current that flows through it.")]
    assert rows[0]["id"] == "conv_0001"


def test_sharegpt_with_function_call_and_observation() -> None:
    layout, rows, messages = read("sharegpt_tools.json")
    assert (layout.name, layout.columns) == ("sharegpt", {"messages": "conversations", "tools": "tools",
                                                         "system": "system"})
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "tool", "assistant"]
    assert messages[2]["content"] == ('<tool_call>\n{"name": "convert_currency", "arguments": '
                                      '{"amount": 100, "from": "USD", "to": "EUR"}}\n</tool_call>')
    assert messages[2]["tool_calls"][0]["function"]["name"] == "convert_currency"
    assert row_extras(rows[0], layout.columns)["tools"][0]["name"] == "convert_currency"  # JSON string parsed


def test_chat_column_pasted_as_python_repr_in_csv() -> None:
    layout, _, messages = read("chat_cells.csv")
    assert (layout.name, layout.columns) == ("openai-chat", {"messages": "messages"})
    assert messages == [user("Add a task: call the plumber tomorrow."),
                        assistant("Added 'call the plumber', due tomorrow.")]


def test_a_tool_message_without_a_call_before_it_is_refused() -> None:
    with pytest.raises(DataError, match="message 1 has role 'tool' but no assistant tool call comes before it"):
        to_messages({"messages": [user("hi"), {"role": "tool", "content": "{}"}, assistant("ok")]}, "chat",
                    {"messages": "messages"})


# --------------------------------------------------------------------------- prompt/answer layouts


def test_alpaca_json_array() -> None:
    layout, _, messages = read("alpaca.json")
    assert (layout.name, layout.format, layout.columns) == (
        "alpaca", "instruction", {"prompt": "instruction", "response": "output", "input": "input"})
    assert messages == [user("Give three tips for keeping a houseplant alive."),
                        assistant("1. Water it only when the top of the soil is dry.\n2. Give it bright, indirect "
                                  "light.\n3. Repot it when the roots fill the pot.")]


def test_prompt_completion_jsonl() -> None:
    layout, _, messages = read("prompt_completion.jsonl")
    assert (layout.name, layout.format, layout.columns) == (
        "prompt-completion", "prompt_completion", {"prompt": "prompt", "completion": "completion"})
    assert messages == [user("Q: What colour is a ripe banana?\nA:"), assistant(" Yellow.")]


def test_question_cot_response_jsonl() -> None:
    layout, _, messages = read("medical_o1.jsonl")
    assert (layout.name, layout.columns) == (
        "question-reasoning-answer", {"prompt": "Question", "response": "Response", "reasoning": "Complex_CoT"})
    assert messages[1]["content"] == ("<think>\nLow MCV points to a microcytic anaemia; in a young adult iron "
                                      "deficiency is most common, so check iron stores.\n</think>\nSerum ferritin.")


def test_id_keyed_json_with_upper_case_columns_pubmedqa() -> None:
    layout, rows, messages = read("pubmedqa.json")
    assert [r["id"] for r in rows] == ["90000001", "90000002"]  # the key is kept as a column
    assert (layout.name, layout.columns) == ("question-reasoning-answer", {
        "prompt": "QUESTION", "response": "final_decision", "input": "CONTEXTS", "reasoning": "LONG_ANSWER"})
    # reasoning_required_pred ("yes") is named like reasoning but is a flag, so it is not the chain of thought.
    assert messages == [
        user("Does morning light exposure shorten sleep onset in shift workers?\n\nShift workers often report delayed "
             "sleep onset.\nForty workers received 30 minutes of bright light after their shift; sleep onset was "
             "logged for two weeks."),
        assistant("<think>\nBright light after a night shift did not shorten sleep onset compared with dim light."
                  "\n</think>\nno")]


def test_list_cells_pasted_as_python_reprs_are_joined() -> None:
    layout, _, messages = read("list_cells.csv")
    assert (layout.name, layout.columns) == ("question-answer", {"prompt": "question", "response": "answer",
                                                                 "input": "context"})
    assert messages[0] == user("Which symptoms suggest migraine rather than tension headache?\n\nMigraine is often "
                               "one-sided and pulsating.\nNausea and light sensitivity are common.")


def test_list_cells_join_only_lists_of_plain_values() -> None:
    assert cell_text(["a", "b"], "c", "row") == "a\nb"
    assert cell_text('["a", "b"]', "c", "row") == "a\nb"  # JSON repr
    assert cell_text("[1, 2, 3]", "c", "row") == "[1, 2, 3]"  # an answer that is a list of numbers stays
    assert cell_text("[see above]", "c", "row") == "[see above]"  # brackets that are not a list
    with pytest.raises(DataError, match="column 'c' holds a list of objects"):
        cell_text([{"a": 1}], "c", "row 3")


# --------------------------------------------------------------------------- classification


def test_text_label_csv_is_classification() -> None:
    layout, _, messages = read("text_label.csv")
    assert (layout.name, layout.format, layout.columns) == (
        "text-label", "instruction", {"prompt": "text", "response": "label"})
    assert messages == [user("The battery lasts two days, and the screen is sharp."), assistant("positive")]


def test_tsv_sentence_label() -> None:
    layout, rows, messages = read("sst2.tsv")
    assert len(rows) == 3 and rows[2]["sentence"] == '"worth it" for the last scene alone'
    assert (layout.name, layout.columns) == ("text-label", {"prompt": "sentence", "response": "label"})
    assert messages == [user("a warm , funny film with a big heart "), assistant("1")]


def test_text_label_runs_as_a_scenario(tmp_path: Path) -> None:
    rows = [{"text": f"review number {i} {'great' if i % 2 else 'bad'}", "label": "pos" if i % 2 else "neg"}
            for i in range(40)]
    path = tmp_path / "reviews.jsonl"
    write_jsonl(rows, path)
    data = with_data(load_scenario("custom"), data=str(path)).build_data(0)
    assert data.notes[1:3] == ["columns: instruction (prompt=text, response=label), detected",
                               "layout: text-label (docs/data-formats.md)"]
    assert data.train[0]["messages"][-1]["content"] in {"pos", "neg"}


def test_hub_class_labels_become_their_names(monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets

    class FakeDataset(list):
        features: ClassVar[dict[str, Any]] = {"text": datasets.Value("string"),
                                              "label": datasets.ClassLabel(names=["neg", "pos"])}

    monkeypatch.setattr(datasets, "load_dataset", lambda source, split: FakeDataset([{"text": "good", "label": 1}]))
    assert load_rows("someone/reviews") == [{"text": "good", "label": "pos"}]


# --------------------------------------------------------------------------- preference layouts


def test_prompt_chosen_rejected_jsonl() -> None:
    layout, _, messages = read("preference.jsonl")
    assert (layout.name, layout.format, layout.columns) == (
        "preference", "preference", {"prompt": "prompt", "chosen": "chosen", "rejected": "rejected"})
    assert messages == [user("Summarise: The meeting moved from Monday to Wednesday because the room was booked."),
                        assistant("The meeting is now on Wednesday; the room was taken on Monday.")]


def test_orca_style_pairs_parquet_with_system() -> None:
    layout, _, messages = read("orca_dpo.parquet")
    assert (layout.name, layout.columns) == (
        "preference", {"prompt": "question", "chosen": "chosen", "rejected": "rejected", "system": "system"})
    assert messages == [system("You are an AI assistant. Answer briefly."), user("Which planet is closest to the sun?"),
                        assistant("Mercury is the closest planet to the sun.")]


def test_openai_azure_dpo_jsonl() -> None:
    layout, rows, messages = read("openai_dpo.jsonl")
    assert (layout.name, layout.format, layout.columns) == (
        "openai-dpo", "preference", {"prompt": "input", "chosen": "preferred_output",
                                     "rejected": "non_preferred_output"})
    assert messages == [user("Hello, can you tell me how cold San Francisco is today?"),
                        assistant(rows[0]["preferred_output"][0]["content"])]
    second = to_messages(rows[1], layout.format, layout.columns)
    assert [m["role"] for m in second] == ["system", "user", "assistant"]


# --------------------------------------------------------------------------- delimiters


def test_semicolon_csv_with_decimal_commas() -> None:
    layout, rows, messages = read("semicolon.csv")
    assert list(rows[0]) == ["question", "answer"] and len(rows) == 3
    assert (layout.name, layout.columns) == ("question-answer", {"prompt": "question", "response": "answer"})
    assert messages == [user("Wie viel ist 2,5 plus 1,25?"), assistant("3,75")]
    assert rows[1]["question"] == "Was kostet ein Brot, wenn zwei 5,00 € kosten?"


def test_pipe_csv_with_upper_case_alpaca_columns() -> None:
    layout, _, messages = read("pipe.csv")
    assert (layout.name, layout.columns) == ("alpaca", {"prompt": "INSTRUCTION", "response": "OUTPUT",
                                                        "input": "INPUT"})
    assert messages == [user("Convert the temperature to Fahrenheit.\n\n25 °C"), assistant("77 °F")]


@pytest.mark.parametrize("sep", [",", ";", "\t", "|"])
def test_delimiter_is_sniffed(tmp_path: Path, sep: str) -> None:
    lines = ["question" + sep + "answer", '"What is 1,5 + 1; roughly?"' + sep + '"2,5"', "Name a colour." + sep + "red"]
    path = tmp_path / "d.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert sniff_delimiter(path.read_text()) == sep
    assert load_rows(path) == [{"question": "What is 1,5 + 1; roughly?", "answer": "2,5"},
                               {"question": "Name a colour.", "answer": "red"}]


def test_single_column_csv_needs_no_delimiter(tmp_path: Path) -> None:
    path = tmp_path / "one.csv"
    path.write_text("text\nhello there\nsecond line\n", encoding="utf-8")
    assert load_rows(path) == [{"text": "hello there"}, {"text": "second line"}]


# --------------------------------------------------------------------------- JSON shapes


def test_json_lines_saved_as_json(tmp_path: Path) -> None:
    path = tmp_path / "rows.json"
    path.write_text('{"question": "a?", "answer": "b"}\n{"question": "c?", "answer": "d"}\n', encoding="utf-8")
    assert load_rows(path) == [{"question": "a?", "answer": "b"}, {"question": "c?", "answer": "d"}]


def test_column_oriented_json_from_pandas(tmp_path: Path) -> None:
    import pandas as pd

    frame = pd.DataFrame([{"question": "a?", "answer": "b"}, {"question": "c?", "answer": "d"}])
    frame.to_json(tmp_path / "columns.json")  # pandas' default: {"question": {"0": ...}, ...}
    (tmp_path / "lists.json").write_text(json.dumps({"question": ["a?", "c?"], "answer": ["b", "d"]}))
    for name in ("columns.json", "lists.json"):
        assert load_rows(tmp_path / name) == frame.to_dict(orient="records")


def test_id_keyed_json_keeps_a_row_id_column_that_exists(tmp_path: Path) -> None:
    path = tmp_path / "keyed.json"
    path.write_text(json.dumps({"k1": {"id": 7, "text": "a"}, "k2": {"id": 8, "text": "b"}}), encoding="utf-8")
    assert load_rows(path) == [{"key": "k1", "id": 7, "text": "a"}, {"key": "k2", "id": 8, "text": "b"}]


def test_object_with_1000_keys_is_a_short_error(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    path.write_text(json.dumps({f"pmid-{i:06d}": f"text {i}" for i in range(1000)}), encoding="utf-8")
    with pytest.raises(DataError) as info:
        load_rows(path)
    message = str(info.value)
    assert len(message) - len(str(path)) <= MAX_ERROR and "… (+992 more)" in message and "\n" not in message


# --------------------------------------------------------------------------- ambiguity and short errors


def test_question_and_Question_stop_with_candidates_and_flag() -> None:
    with pytest.raises(AmbiguousColumns) as info:
        read("ambiguous_case.csv")
    assert str(info.value) == ("ambiguous columns: prompt could be 'question' or 'Question'; "
                               "choose with --columns prompt=question,response=answer")


def test_two_answer_columns_stop(tmp_path: Path) -> None:
    with pytest.raises(AmbiguousColumns, match="response could be 'answer' or 'response'; choose with --columns "
                                               "prompt=question,response=answer"):
        read("ambiguous_answers.jsonl")


def test_ambiguity_through_the_cli_is_one_line_and_the_suggested_flag_works(tmp_path: Path, capsys,
                                                                              tunecrew_home) -> None:
    rows = [{"question": f"what is {i}+{i}?", "Question": f"What is {i} + {i}?", "answer": str(2 * i)}
            for i in range(40)]
    path = write_jsonl(rows, tmp_path / "dup.jsonl")
    code = main(["run", "--data", str(path), "--runs-dir", str(tmp_path / "runs"), "--no-memory", "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(f"tunecrew: {path}: ambiguous columns: prompt could be 'question' or 'Question'")
    flag = err.rsplit("--columns ", 1)[1].strip()
    data = with_data(load_scenario("custom"), data=str(path), columns=parse_columns(flag)).build_data(0)
    assert data.notes[1] == "columns: instruction (prompt=question, response=answer), from --columns"


def test_errors_over_wide_data_stay_short() -> None:
    columns = [f"feature_{i:04d}_with_a_long_name" for i in range(500)]
    row = dict.fromkeys(columns, "x")
    for call in (lambda: detect_layout(columns, row),
                 lambda: format_from_mapping({"prompt": "missing"}, columns),
                 lambda: to_messages(row, "instruction", {"prompt": "q", "response": "a"}, where="wide.csv row 0")):
        with pytest.raises(DataError) as info:
            call()
        assert len(str(info.value)) <= MAX_ERROR and "(+" in str(info.value), str(info.value)


def test_profile_names_the_layout() -> None:
    rows = load_rows(FIXTURES / "pubmedqa.json")
    assert profile_rows(rows, "pubmedqa.json").extra["layout"] == "question-reasoning-answer"


@pytest.mark.parametrize(("row", "name", "columns"), [
    ({"instruction": "Summarise.", "context": "A long text.", "response": "Short.", "category": "summarization"},
     "alpaca", {"prompt": "instruction", "input": "context", "response": "response"}),  # Dolly
    ({"chosen": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}],
      "rejected": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "go away"}]},
     "preference-chat", {"chosen": "chosen", "rejected": "rejected"}),
    ({"Final Decision": "yes", "Question": "Is it?"}, "question-answer",
     {"prompt": "Question", "response": "Final Decision"}),  # spaces read as underscores
])
def test_more_layouts_by_row(row: dict, name: str, columns: dict) -> None:
    layout = detect_layout(list(row), row)
    assert (layout.name, layout.columns) == (name, columns)
    assert to_messages(row, layout.format, layout.columns)[-1]["role"] == "assistant"


def test_csv_row_with_more_fields_than_the_header_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "extra.csv"
    path.write_text("question,answer\nWhat is 2,5 plus 1?,3,5\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"extra\.csv: malformed CSV .*check quoting and column counts"):
        load_rows(path)


def test_a_json_line_read_as_a_tsv_header_keeps_the_fix_in_the_message(tmp_path: Path) -> None:
    """One 'column' named by a whole JSON line: quoted short, so the --columns hint is not cut off."""
    header = json.dumps({f"key_{i}": "a fairly long value " * 3 for i in range(8)})
    data = tmp_path / "odd.tsv"
    data.write_text(f"{header}\n" + "".join(f"row {i}\n" for i in range(20)), encoding="utf-8")
    scenario = with_data(load_scenario("custom"), str(data))
    with pytest.raises(DataError) as info:
        scenario.build_data(0)
    message = str(info.value)
    assert "\n" not in message and message.endswith("pass --columns prompt=COL,response=COL"), message
