"""Generic dataset I/O, layout detection, splitting, leak checks and profiling."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from tunecrew.scenarios.task_agent.data import generate
from tunecrew.tools.contracts import DatasetProfile
from tunecrew.tools.data_layouts import detect_format, format_from_mapping, to_messages
from tunecrew.tools.profile import profile_rows, token_stats
from tunecrew.tools.rows import DataError, fingerprint, load_rows, write_jsonl
from tunecrew.tools.splits import leak_check, normalize_prompt, split_rows

ROWS = [
    {"prompt": "What is 2+2?", "completion": "4"},
    {"prompt": "Capital of France?", "completion": "Paris"},
    {"prompt": "Ünïcödé 文字?", "completion": "yes"},
]


# --------------------------------------------------------------------------- loading


def test_jsonl_round_trip(tmp_path: Path) -> None:
    path = write_jsonl(ROWS, tmp_path / "sub" / "d.jsonl")
    assert load_rows(path) == ROWS
    assert load_rows(str(path)) == ROWS


def test_jsonl_skips_blank_lines_and_bom(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text("\ufeff" + json.dumps(ROWS[0]) + "\n\n" + json.dumps(ROWS[1]) + "\n", encoding="utf-8")
    assert load_rows(path) == ROWS[:2]


def test_json_list_and_split_object(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text(json.dumps(ROWS), encoding="utf-8")
    assert load_rows(tmp_path / "a.json") == ROWS
    (tmp_path / "b.json").write_text(json.dumps({"train": ROWS[:2], "test": ROWS[2:]}), encoding="utf-8")
    assert load_rows(tmp_path / "b.json", split="test") == ROWS[2:]
    (tmp_path / "c.json").write_text(json.dumps({"a": [], "b": []}), encoding="utf-8")
    with pytest.raises(DataError, match=r"c\.json"):
        load_rows(tmp_path / "c.json")


def test_csv_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    pd.DataFrame(ROWS).to_csv(path, index=False)
    assert load_rows(path) == ROWS


def test_csv_keeps_empty_strings_and_numbers_as_text(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text("instruction,input,output\nAdd,,3\n", encoding="utf-8")
    assert load_rows(path) == [{"instruction": "Add", "input": "", "output": "3"}]


def test_parquet_round_trip_with_nested_messages(tmp_path: Path) -> None:
    rows = generate(seed=0, n_train=20, n_heldout=4).train
    path = tmp_path / "d.parquet"
    pd.DataFrame(rows).to_parquet(path)
    loaded = load_rows(path)
    assert loaded == rows
    assert isinstance(loaded[0]["messages"], list)  # native lists, not numpy arrays


def test_malformed_jsonl_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(ROWS[0]) + "\n" + json.dumps(ROWS[1]) + "\n{not json\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"bad\.jsonl:3: invalid JSON"):
        load_rows(path)


def test_jsonl_row_must_be_object(tmp_path: Path) -> None:
    path = tmp_path / "list.jsonl"
    path.write_text('{"a": 1}\n[1, 2]\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"list\.jsonl:2: .*JSON object"):
        load_rows(path)


@pytest.mark.parametrize("name", ["empty.jsonl", "empty.csv", "empty.json"])
def test_empty_file(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_text("  \n", encoding="utf-8")
    with pytest.raises(DataError, match=f"{name}: file is empty"):
        load_rows(path)


def test_csv_header_only(tmp_path: Path) -> None:
    path = tmp_path / "h.csv"
    path.write_text("prompt,completion\n", encoding="utf-8")
    with pytest.raises(DataError, match="no rows"):
        load_rows(path)


def test_non_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(b'{"text": "ok"}\n{"text": "caf\xe9"}\n')
    with pytest.raises(DataError, match=r"latin1\.jsonl:2: not valid UTF-8.*re-save"):
        load_rows(path)


def test_missing_file_and_directory_and_suffix(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="file not found"):
        load_rows(tmp_path / "nope.jsonl")
    with pytest.raises(DataError, match="file not found"):
        load_rows("data/missing.jsonl")  # looks like owner/name but has a file suffix
    with pytest.raises(DataError, match="is a directory"):
        load_rows(tmp_path)
    (tmp_path / "d.txt").write_text("x", encoding="utf-8")
    with pytest.raises(DataError, match=r"unsupported file type \.txt"):
        load_rows(tmp_path / "d.txt")


def test_corrupt_parquet(tmp_path: Path) -> None:
    path = tmp_path / "bad.parquet"
    path.write_bytes(b"not parquet at all")
    with pytest.raises(DataError, match=r"bad\.parquet: not a readable parquet"):
        load_rows(path)


def test_hub_id_goes_to_datasets(monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets

    calls = []

    def fake_load(source: str, split: str):
        calls.append((source, split))
        return [{"text": "a"}, {"text": "b"}]

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    assert load_rows("someone/some-data", split="validation") == [{"text": "a"}, {"text": "b"}]
    assert calls == [("someone/some-data", "validation")]


def test_hub_failure_is_a_data_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets

    def offline(source: str, split: str):
        raise ConnectionError("no network")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(DataError, match=r"someone/some-data: could not load hub dataset .*ConnectionError.*local"):
        load_rows("someone/some-data")


# --------------------------------------------------------------------------- layouts


@pytest.mark.parametrize(
    ("row", "fmt", "cmap"),
    [
        ({"messages": [{"role": "user", "content": "hi"}]}, "chat", {"messages": "messages"}),
        ({"conversations": [{"from": "human", "value": "hi"}]}, "chat", {"messages": "conversations"}),
        ({"prompt": "p", "completion": "c"}, "prompt_completion", {"prompt": "prompt", "completion": "completion"}),
        ({"prompt": "p", "chosen": "a", "rejected": "b"}, "preference",
         {"prompt": "prompt", "chosen": "chosen", "rejected": "rejected"}),
        ({"instruction": "i", "input": "x", "output": "o"}, "instruction",
         {"prompt": "instruction", "response": "output", "input": "input"}),
        ({"instruction": "i", "output": "o"}, "instruction", {"prompt": "instruction", "response": "output"}),
        ({"question": "q", "answer": "a"}, "instruction", {"prompt": "question", "response": "answer"}),
        ({"Question": "q", "Complex_CoT": "because", "Response": "a"}, "instruction",
         {"prompt": "Question", "response": "Response", "reasoning": "Complex_CoT"}),
        # text + label is a classification row (issue 15): the label is the answer to learn.
        ({"text": "hello world", "label": 1}, "instruction", {"prompt": "text", "response": "label"}),
        ({"text": "hello world", "source": "web"}, "text", {"text": "text"}),
        ({"sentence": "hello world"}, "text", {"text": "sentence"}),
        ({"system": "be nice", "prompt": "p", "completion": "c"}, "prompt_completion",
         {"prompt": "prompt", "completion": "completion", "system": "system"}),
    ],
)
def test_detect_format(row: dict, fmt: str, cmap: dict) -> None:
    assert detect_format(list(row), row) == (fmt, cmap)


def test_unknown_layout_lists_columns() -> None:
    with pytest.raises(DataError, match=r"\['foo', 'bar'\].*column mapping"):
        detect_format(["foo", "bar"], {"foo": "x", "bar": "y"})


def test_csv_with_unknown_columns_lists_them(tmp_path: Path) -> None:
    path = tmp_path / "odd.csv"
    path.write_text("foo,bar,baz\n1,2,3\n", encoding="utf-8")
    rows = load_rows(path)
    with pytest.raises(DataError, match=r"\['foo', 'bar', 'baz'\]"):
        profile_rows(rows, str(path))
    # ...and the suggested fix works.
    profile = profile_rows(rows, str(path), column_map={"prompt": "foo", "response": "baz"})
    assert profile.format == "instruction"


def test_format_from_mapping_checks_columns() -> None:
    with pytest.raises(DataError, match="not among the columns"):
        format_from_mapping({"prompt": "q"}, ["a"])
    with pytest.raises(DataError, match="fit no format"):
        format_from_mapping({"prompt": "a"}, ["a"])


def test_to_messages_for_each_layout() -> None:
    user_assistant = [{"role": "user", "content": "p"}, {"role": "assistant", "content": "c"}]
    assert to_messages({"prompt": "p", "completion": "c"}, "prompt_completion",
                       {"prompt": "prompt", "completion": "completion"}) == user_assistant
    assert to_messages({"prompt": "p", "chosen": "c", "rejected": "r"}, "preference",
                       {"prompt": "prompt", "chosen": "chosen", "rejected": "rejected"}) == user_assistant
    assert to_messages({"instruction": "p", "input": "", "output": "c"}, "instruction",
                       {"prompt": "instruction", "input": "input", "response": "output"}) == user_assistant
    with_input = to_messages({"instruction": "p", "input": "ctx", "output": "c"}, "instruction",
                             {"prompt": "instruction", "input": "input", "response": "output"})
    assert with_input[0]["content"] == "p\n\nctx"
    cot = to_messages({"Question": "p", "Complex_CoT": "think hard", "Response": "c"}, "instruction",
                      {"prompt": "Question", "response": "Response", "reasoning": "Complex_CoT"})
    assert cot[1]["content"] == "<think>\nthink hard\n</think>\nc"
    assert to_messages({"text": "t"}, "text", {"text": "text"}) == [{"role": "assistant", "content": "t"}]


def test_to_messages_chat_keeps_system_and_normalises_sharegpt() -> None:
    row = {"conversations": [{"from": "system", "value": "s"}, {"from": "human", "value": "p"},
                             {"from": "gpt", "value": "c"}]}
    assert to_messages(row, "chat", {"messages": "conversations"}) == [
        {"role": "system", "content": "s"}, {"role": "user", "content": "p"}, {"role": "assistant", "content": "c"}]


def test_to_messages_errors_name_the_row() -> None:
    with pytest.raises(DataError, match="row 7: missing column 'completion'"):
        to_messages({"prompt": "p"}, "prompt_completion", {"prompt": "prompt", "completion": "completion"},
                    where="row 7")
    with pytest.raises(DataError, match="role 'tool'"):
        to_messages({"messages": [{"role": "tool", "content": "x"}]}, "chat", {"messages": "messages"})
    with pytest.raises(DataError, match="at least one user and one assistant"):
        to_messages({"messages": [{"role": "user", "content": "x"}]}, "chat", {"messages": "messages"})
    with pytest.raises(DataError, match="is empty"):
        to_messages({"prompt": None, "completion": "c"}, "prompt_completion",
                    {"prompt": "prompt", "completion": "completion"})


# --------------------------------------------------------------------------- identity, splits, leaks


def test_fingerprint_is_stable_and_key_order_free() -> None:
    a = fingerprint([{"x": 1, "y": "é"}])
    assert a == fingerprint([{"y": "é", "x": 1}])
    assert a != fingerprint([{"x": 2, "y": "é"}])
    assert len(a) == 64


def test_split_rows_is_deterministic_and_keeps_duplicates_together() -> None:
    rows = [{"prompt": f"q{i % 30}", "completion": str(i)} for i in range(90)]
    train, held = split_rows(rows, 0.2, seed=1)
    assert (train, held) == split_rows(rows, 0.2, seed=1)
    assert split_rows(rows, 0.2, seed=2) != (train, held)
    assert len(train) + len(held) == 90 and 12 <= len(held) <= 24
    assert leak_check(train, held).passed
    assert split_rows(rows, 0.0, seed=0) == (rows, [])
    with pytest.raises(DataError, match="heldout_fraction"):
        split_rows(rows, 1.0, seed=0)


def test_leak_check_exact_and_near() -> None:
    train = [{"prompt": "Add milk, please!", "completion": "x"}, {"prompt": "b", "completion": "y"}]
    held = [{"prompt": "Add milk, please!", "completion": "z"},
            {"prompt": "  add   MILK please ", "completion": "z"},
            {"prompt": "something new", "completion": "z"}]
    check = leak_check(train, held)
    assert (check.checked, check.exact_overlap, check.near_overlap, check.passed) == (3, 1, 1, False)
    assert check.examples[0].startswith("exact:") and check.examples[1].startswith("near:")
    assert normalize_prompt("  Add   MILK,  please! ") == "add milk please"


# --------------------------------------------------------------------------- profiling


def test_token_stats() -> None:
    stats = token_stats([1, 2, 3, 4, 100])
    assert (stats.count, stats.mean, stats.p50, stats.max) == (5, 22.0, 3.0, 100)
    assert 4 < stats.p95 <= 100
    assert token_stats([]).count == 0


def test_profile_of_generated_data() -> None:
    rows = generate(seed=0).train
    profile = profile_rows(rows, "task_agent:train")
    assert isinstance(profile, DatasetProfile)
    assert (profile.rows, profile.format, profile.column_map) == (480, "chat", {"messages": "messages"})
    assert profile.token_unit == "words" and profile.language == "en"
    assert profile.duplicates == 0
    assert 3 <= profile.prompt_tokens.mean <= 20 and profile.prompt_tokens.count == 480
    assert 3 <= profile.response_tokens.mean <= 20
    assert profile.prompt_tokens.p50 <= profile.prompt_tokens.p95 <= profile.prompt_tokens.max
    assert profile.total_tokens.mean == pytest.approx(profile.prompt_tokens.mean + profile.response_tokens.mean,
                                                      abs=0.02)
    assert {"tasks", "task"} & set(profile.vocabulary) and "the" not in profile.vocabulary
    assert "analysis" not in profile.vocabulary  # markup is format, not domain
    assert len(profile.samples) == 3 and profile.samples[0] == rows[0]
    assert profile.fingerprint == fingerprint(rows)
    DatasetProfile.model_validate_json(profile.model_dump_json())


def test_profile_counts_duplicates_truncates_samples_and_uses_tokenizer() -> None:
    long = "word " * 200
    rows = [{"instruction": long, "output": "a b"}, {"instruction": long, "output": "a b"},
            {"instruction": "x", "output": "y"}]

    class CharTokenizer:
        def __call__(self, texts, add_special_tokens=False):
            return {"input_ids": [list(t) for t in texts]}

    profile = profile_rows(rows, "mem", tokenizer=CharTokenizer(), n_samples=2)
    assert profile.duplicates == 1 and profile.token_unit == "tokenizer"
    assert profile.response_tokens.max == 3  # "a b" in characters
    assert len(profile.samples) == 2 and len(profile.samples[0]["instruction"]) < 350


@pytest.mark.parametrize(
    ("text", "lang"),
    [("¿Qué es la vida? Es una pregunta de los filósofos para todos.", "es"),
     ("Wie geht es dir? Ich bin nicht müde und das ist gut.", "de"),
     ("Привет, как дела? Это тест.", "ru"), ("今天天气很好，我们去公园吧。", "zh"), ("12345 !!!", "unknown")],
)
def test_language_guess(text: str, lang: str) -> None:
    assert profile_rows([{"text": text}], "mem").language == lang


def test_profile_empty_rows() -> None:
    with pytest.raises(DataError, match="mem: no rows"):
        profile_rows([], "mem")
