"""Dataset rows in and out of files: read a file or hub dataset into rows, write rows as JSONL,
and name a set of rows by its content (:func:`fingerprint`).

Every error is a :class:`DataError`: one line that names the file (and line) and says what to
do, and never echoes an unbounded list: a 1,000-key JSON object is shown as its first keys and a
count (:func:`brief_list`).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import unicodedata
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

__all__ = [
    "MAX_NESTING", "MESSAGE_LIMIT", "SUPPORTED_SUFFIXES", "DataError", "brief_list", "clip", "fingerprint", "load_rows",
    "short_repr", "sniff_delimiter", "too_deep", "truncate", "write_jsonl",
]

SUPPORTED_SUFFIXES = (".jsonl", ".json", ".csv", ".tsv", ".parquet")
_HUB_ID_RE = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")
_DELIMITERS = ",;\t|"
_SNIFF_CHARS = 64 * 1024  # how much text decides how quotes are read
# csv.Sniffer's quote regex is quadratic in its sample (64 KB of `,"` took 26 s): a few dozen lines
# decide the delimiter, so it reads 8 KB (0.4 s at worst).
_SNIFFER_CHARS = 8 * 1024
# pandas renames repeated header names in quadratic time (30,000 `x` columns: 13 s); no dataset
# tunecrew trains on has this many columns.
MAX_COLUMNS = 10_000
_KEY_COLUMNS = ("id", "key", "_key")  # where an id-keyed JSON object's keys go: the first name rows lack


MAX_NESTING = 100  # lists and objects inside a row: real rows (messages, tool calls) nest under 20
MESSAGE_LIMIT = 300  # characters of a DataError's message after its `source:` prefix
# Shown as escapes in a message: controls (line breaks, ESC), invisible format characters (bidi
# overrides, zero-width spaces), lone surrogates (a terminal cannot print them) and line separators.
_UNPRINTED = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})


class DataError(ValueError):
    """Bad dataset input; the message names the source (file, line or field) and the fix.

    Always one line of bounded length, whatever a column name or cell put into it: line breaks and
    other unprintable characters are written as escapes (`\\n`, `\\u202e`), and a message whose
    text after the `source:` prefix is longer than :data:`MESSAGE_LIMIT` keeps its start and its end
    (the fix) around a `…`. Callers keep their messages short themselves; this is the guarantee.
    """

    def __init__(self, message: object = "", *args: object) -> None:
        super().__init__(_one_line(str(message)), *args)


def _one_line(message: str) -> str:
    message = "".join(c.encode("unicode_escape").decode("ascii") if unicodedata.category(c) in _UNPRINTED else c
                      for c in message)
    source, sep, body = message.partition(": ")
    if not sep or len(source) > MESSAGE_LIMIT:
        source, sep, body = "", "", message
    if len(body) <= MESSAGE_LIMIT:
        return message
    tail = MESSAGE_LIMIT // 3
    return f"{source}{sep}{body[: MESSAGE_LIMIT - tail - 1]}…{body[-tail:]}"


def brief_list(items: Any, limit: int = 8, width: int = 40, budget: int = 120) -> str:
    """`['a', 'b', … (+N more)]`: a list for an error message, at most `limit` items and about
    `budget` characters whatever its size, each item cut at `width`."""
    items = list(items)
    shown: list[str] = []
    for x in items[:limit]:
        text = short_repr(x, width)
        if shown and sum(len(s) + 2 for s in shown) + len(text) > budget:
            break
        shown.append(text)
    more = f", … (+{len(items) - len(shown)} more)" if len(items) > len(shown) else ""
    return "[" + ", ".join(shown) + more + "]"


def short_repr(value: object, width: int = 40) -> str:
    """`repr(str(value))` of at most about `width` characters plus its quotes: cut with `…`, and cut
    further when escapes (`\\x00`, `\\U0001f600`) make the repr longer than the text."""
    text = str(value)
    if len(text) <= width and len(shown := repr(text)) <= width + 3:
        return shown
    keep = min(len(text), width)
    while keep > 1 and len(repr(text[:keep] + "…")) > width + 3:
        keep -= 1
    return repr(text[:keep] + "…")


def too_deep(value: Any, limit: int = MAX_NESTING) -> bool:
    """Whether lists and dicts inside `value` nest more than `limit` levels. Iterative, so a value
    nested thousands deep is measured without a RecursionError (later steps recurse into rows)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Iterable[Any] = item.values()
        elif isinstance(item, (list, tuple)):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def clip(text: object, limit: int = 200) -> str:
    """One line of at most `limit` characters of `str(text)`, for echoing a library's error text."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit] + "…"


def truncate(text: str, limit: int = 300) -> str:
    """`text` cut at `limit` characters, saying how many were cut (for samples and examples)."""
    return text if len(text) <= limit else text[:limit] + f"… [+{len(text) - limit} chars]"


# --------------------------------------------------------------------------- entry point


def load_rows(source: str | Path, split: str = "train", config: str | None = None) -> list[dict]:
    """Rows of a local .jsonl/.json/.csv/.tsv/.parquet file, or of a hub dataset `owner/name`
    (`config` names the hub dataset's configuration, e.g. "en"; files ignore it).

    A string that is not an existing path and looks like `owner/name` is a hub id; everything
    else must be a file, so a typo in a local path is reported as a missing file, not as a hub
    lookup that fails for an unrelated reason.
    """
    path = Path(source)
    if not path.exists():
        text = str(source)
        if _HUB_ID_RE.fullmatch(text) and path.suffix.lower() not in SUPPORTED_SUFFIXES:
            return _load_hub(text, split, config)
        raise DataError(f"{source}: file not found; check the path (or pass a hub id as owner/name)")
    if path.is_dir():
        raise DataError(f"{source}: is a directory; pass one {'/'.join(SUPPORTED_SUFFIXES)} file")
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        rows = _load_parquet(path)
        _refuse_deep(rows, str(path))
    elif suffix in SUPPORTED_SUFFIXES:
        text = _read_utf8(path)
        if not text.strip():
            raise DataError(f"{path}: file is empty; it needs at least one row")
        if suffix == ".jsonl":
            rows = _parse_jsonl(text, path)
        elif suffix == ".json":
            rows = _parse_json(text, path, split)
        else:
            rows = _parse_delimited(text, path, "\t" if suffix == ".tsv" else None)
        if suffix != ".jsonl":  # JSON Lines rows were checked line by line
            _refuse_deep(rows, str(path))
    else:
        raise DataError(f"{path}: unsupported file type {suffix or '(none)'}; "
                        f"use one of {', '.join(SUPPORTED_SUFFIXES)}")
    if not rows:
        raise DataError(f"{path}: no rows; the file needs at least one row")
    return rows


# --------------------------------------------------------------------------- writing and identity


def write_jsonl(rows: Iterable[dict], path: str | Path) -> Path:
    """Write rows as UTF-8 JSONL (one object a line); creates parent folders."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path


def fingerprint(rows: list[dict]) -> str:
    """sha256 (hex) of the rows as canonical JSON: same rows, same fingerprint, any key order."""
    canonical = json.dumps(rows, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


# --------------------------------------------------------------------------- text files


def _read_utf8(path: Path) -> str:
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise DataError(
            f"{path}:{line}: not valid UTF-8 (byte {exc.start}: {data[exc.start:exc.start + 1]!r}); "
            "re-save the file as UTF-8"
        ) from None
    return text.removeprefix("\ufeff")


def _parse_jsonl(text: str, path: Path) -> list[dict]:
    rows: list[dict] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(
                f"{path}:{lineno}: invalid JSON ({exc.msg} at column {exc.colno}); fix or delete that line"
            ) from None
        except (RecursionError, ValueError) as exc:  # nested too deep, or an integer of 4,300+ digits
            raise DataError(f"{path}:{lineno}: unreadable JSON ({_json_limit(exc)}); fix or delete that line") from None
        if not isinstance(row, dict):
            raise DataError(f"{path}:{lineno}: a row must be a JSON object, got {type(row).__name__}")
        _refuse_surrogates(line, row, f"{path}:{lineno}")
        if too_deep(row):
            raise DataError(f"{path}:{lineno}: {_DEEP}")
        rows.append(row)
    return rows


_DEEP = f"lists or objects nested more than {MAX_NESTING} levels deep; flatten that value or drop the row"


def _refuse_deep(rows: list[dict], source: str) -> None:
    for i, row in enumerate(rows):
        if too_deep(row):
            raise DataError(f"{source}: row {i}: {_DEEP}")


_SURROGATE_ESCAPE_RE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


def _refuse_surrogates(text: str, parsed: Any, where: str) -> None:
    """JSON may spell half of a UTF-16 pair (`"\\ud800"`) alone: Python reads it, but it is not
    Unicode, and writing the row as UTF-8 (the run's data files) would fail later. Checked only
    when the text holds such an escape; a proper pair (an emoji) passes."""
    if "\\u" not in text or not _SURROGATE_ESCAPE_RE.search(text):
        return
    try:
        json.dumps(parsed, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError as exc:
        bad = exc.object[exc.start:exc.end]
        raise DataError(f"{where}: text holds {ascii(bad)[1:-1]}, half of a UTF-16 surrogate pair and not valid "
                        "Unicode; fix or delete that text") from None


def _parse_json(text: str, path: Path, split: str) -> list[dict]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        if exc.msg == "Extra data" and text.lstrip().startswith("{"):
            return _parse_jsonl(text, path)  # JSON Lines saved as .json, as many hub exports are
        raise DataError(f"{path}:{exc.lineno}: invalid JSON ({exc.msg} at column {exc.colno})") from None
    except (RecursionError, ValueError) as exc:
        raise DataError(f"{path}: unreadable JSON ({_json_limit(exc)})") from None
    _refuse_surrogates(text, data, str(path))
    if isinstance(data, dict):
        data = _rows_of_object(data, path, split)
    if not isinstance(data, list):
        raise DataError(f"{path}: expected a JSON list of row objects, got {type(data).__name__}")
    for i, row in enumerate(data):
        if not isinstance(row, dict):
            raise DataError(f"{path}: row {i} must be a JSON object, got {type(row).__name__}")
    return data


def _json_limit(exc: BaseException) -> str:
    """What a JSON parser limit says, short: Python's recursion limit or its 4,300-digit integer limit."""
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    return "a number with more than 4,300 digits" if "digits" in str(exc) else clip(exc, 100)


def _rows_of_object(data: dict, path: Path, split: str) -> list:
    """The rows a top-level JSON object holds, in the shapes exporters write.

    `{"train": [...], "test": [...]}` or `{"data": [...]}`: the requested split, else the only
    list; `{"id1": {...}, "id2": {...}}` (PubMedQA's files): one row per key, the key kept as
    `id`; pandas' column-oriented `{"col": {"0": v, ...}}` and `{"col": [v, ...]}`: transposed.
    """
    lists = {k: v for k, v in data.items() if isinstance(v, list)}
    if split in lists:
        return lists[split]
    if len(lists) == 1:
        return next(iter(lists.values()))
    if _columnar_lists(data):
        return _transpose({k: list(v) for k, v in data.items()})
    if data and all(isinstance(v, dict) for v in data.values()):
        if _columnar_dicts(data):
            return _transpose({k: list(v.values()) for k, v in data.items()})
        key_column = next((c for c in _KEY_COLUMNS if not any(c in v for v in data.values())), "_row_key")
        return [{key_column: key, **value} for key, value in data.items()]
    raise DataError(
        f"{path}: a JSON object must hold the rows as a list under {split!r} (or a single list), or one object "
        f"per id; found keys {brief_list(data)}"
    )


def _columnar_lists(data: dict) -> bool:
    """`{"question": [...], "answer": [...]}`: equal-length lists of plain values, not of row objects."""
    values = list(data.values())
    return len(values) > 1 and all(isinstance(v, list) for v in values) \
        and len({len(v) for v in values}) == 1 and not any(isinstance(x, dict) for v in values for x in v[:5])


def _columnar_dicts(data: dict) -> bool:
    """pandas `to_json()`'s default: `{"col": {"0": v, "1": v}}`, row indices as keys, column names outside."""
    inner = [list(v) for v in data.values()]
    return all(k == inner[0] for k in inner) and all(str(k).isdigit() for k in inner[0]) \
        and not all(str(k).isdigit() for k in data)


def _transpose(columns: dict[str, list]) -> list[dict]:
    n = len(next(iter(columns.values()), []))
    return [{name: values[i] for name, values in columns.items()} for i in range(n)]


def _parse_delimited(text: str, path: Path, delimiter: str | None) -> list[dict]:
    """CSV or TSV as text cells (numbers stay strings, empty cells stay ""); `None` sniffs the delimiter."""
    import pandas as pd

    sep = delimiter or sniff_delimiter(text)
    quoting = _quoting(text, sep)
    fields = _header_fields(text, sep, quoting)
    if fields > MAX_COLUMNS:
        raise DataError(f"{path}: the {_kind(sep)} header has {fields:,} fields, more than the {MAX_COLUMNS:,} "
                        "columns tunecrew reads; is this the right file (and delimiter)?")
    try:
        with warnings.catch_warnings():
            # pandas only warns when a row has more fields than the header, and drops them: refuse instead.
            warnings.simplefilter("error", pd.errors.ParserWarning)
            # index_col=False: an extra field must not turn the first column into a dropped index.
            frame = pd.read_csv(io.StringIO(text), sep=sep, dtype=str, keep_default_na=False, index_col=False,
                                quoting=quoting)
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: {_kind(sep)} has no header or rows") from None
    except (pd.errors.ParserError, pd.errors.ParserWarning) as exc:
        raise DataError(f"{path}: malformed {_kind(sep)} ({clip(exc)}); check quoting and column counts") from None
    if frame.empty:
        raise DataError(f"{path}: {_kind(sep)} has a header ({clip(', '.join(map(str, frame.columns)))}) but no rows")
    return frame.to_dict(orient="records")


# A field that opens with a quoted part and goes on after it (`"worth it" for the last scene`):
# written by hand or by a tool that does not quote, where a CSV writer would have closed the field.
_RAW_QUOTE_RE = re.compile(r'"(?:[^"]|"")*"[^"\r\n]')


def _quoting(text: str, sep: str) -> Literal[0, 3]:
    """csv.QUOTE_NONE when the file's quotes are text (GLUE-style TSV), else standard CSV quoting."""
    for line in text[:_SNIFF_CHARS].splitlines():
        for cell in line.split(sep):
            if _RAW_QUOTE_RE.match(cell) and not cell.rstrip().endswith('"'):
                return csv.QUOTE_NONE
    return csv.QUOTE_MINIMAL


def _header_fields(text: str, sep: str, quoting: Literal[0, 3]) -> int:
    """How many fields the header has: its delimiters counted, and the header parsed as CSV only
    when that count is over the limit (quoted delimiters are not fields)."""
    line = text.split("\n", 1)[0]
    if line.count(sep) < MAX_COLUMNS:
        return line.count(sep) + 1
    try:
        return len(next(csv.reader(io.StringIO(text), delimiter=sep, quoting=quoting), []))
    except csv.Error:  # a field over the csv module's size limit: the count stands
        return line.count(sep) + 1


def _kind(sep: str) -> str:
    return "TSV" if sep == "\t" else "CSV" if sep == "," else f"CSV ({sep!r}-separated)"


def sniff_delimiter(text: str) -> str:
    """The delimiter of a CSV among `, ; TAB |`: csv.Sniffer on a sample, checked against the header.

    The header line has no prose in it, so a delimiter the sniffer picked that the header lacks
    (a comma inside quoted sentences, say) loses to the candidate the header uses most.
    """
    sample = text[:_SNIFFER_CHARS]
    if len(text) > _SNIFFER_CHARS and "\n" in sample:
        sample = sample[: sample.rfind("\n") + 1]
    header = text.split("\n", 1)[0]
    try:
        sniffed = csv.Sniffer().sniff(sample, delimiters=_DELIMITERS).delimiter
    except csv.Error:  # one column, or too little text to tell
        sniffed = ""
    if sniffed and sniffed in header:
        return sniffed
    counts = {d: header.count(d) for d in _DELIMITERS}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


# --------------------------------------------------------------------------- parquet and the hub


def _load_parquet(path: Path) -> list[dict]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataError(f"{path}: not a readable parquet file ({clip(exc)}); re-export it") from None
    return table.to_pylist()  # native lists and dicts, not numpy arrays


def _load_hub(source: str, split: str, config: str | None = None) -> list[dict]:
    try:
        import datasets

        dataset = datasets.load_dataset(source, config, split=split) if config else \
            datasets.load_dataset(source, split=split)
    except Exception as exc:  # offline, gated, wrong split, missing config: all end the same way
        raise DataError(
            f"{source}: could not load hub dataset split {split!r} ({type(exc).__name__}: {clip(exc, 120)}); "
            "without network, download it first and pass a local .jsonl/.parquet file"
        ) from None
    rows = [dict(row) for row in dataset]
    _refuse_deep(rows, source)
    _name_class_labels(rows, getattr(dataset, "features", None))
    return rows


def _name_class_labels(rows: list[dict], features: Any) -> None:
    """Hub class labels arrive as integers; a model should learn `positive`, not `1`."""
    if not isinstance(features, dict):
        return
    for column, feature in features.items():
        if type(feature).__name__ != "ClassLabel" or not getattr(feature, "names", None):
            continue
        for row in rows:
            value = row.get(column)
            if isinstance(value, int) and 0 <= value < len(feature.names):
                row[column] = feature.names[value]
