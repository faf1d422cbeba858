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
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

__all__ = [
    "SUPPORTED_SUFFIXES", "DataError", "brief_list", "clip", "fingerprint", "load_rows", "sniff_delimiter", "truncate",
    "write_jsonl",
]

SUPPORTED_SUFFIXES = (".jsonl", ".json", ".csv", ".tsv", ".parquet")
_HUB_ID_RE = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")
_DELIMITERS = ",;\t|"
_SNIFF_CHARS = 64 * 1024  # csv.Sniffer reads a sample; a few dozen lines decide the delimiter
_KEY_COLUMNS = ("id", "key", "_key")  # where an id-keyed JSON object's keys go: the first name rows lack


class DataError(ValueError):
    """Bad dataset input; the message names the source (file, line or field) and the fix."""


def brief_list(items: Any, limit: int = 8, width: int = 40, budget: int = 120) -> str:
    """`['a', 'b', … (+N more)]`: a list for an error message, at most `limit` items and about
    `budget` characters whatever its size, each item cut at `width`."""
    items = list(items)
    shown: list[str] = []
    for x in items[:limit]:
        text = repr(str(x) if len(str(x)) <= width else str(x)[:width] + "…")
        if shown and sum(len(s) + 2 for s in shown) + len(text) > budget:
            break
        shown.append(text)
    more = f", … (+{len(items) - len(shown)} more)" if len(items) > len(shown) else ""
    return "[" + ", ".join(shown) + more + "]"


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
        if not isinstance(row, dict):
            raise DataError(f"{path}:{lineno}: a row must be a JSON object, got {type(row).__name__}")
        rows.append(row)
    return rows


def _parse_json(text: str, path: Path, split: str) -> list[dict]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        if exc.msg == "Extra data" and text.lstrip().startswith("{"):
            return _parse_jsonl(text, path)  # JSON Lines saved as .json, as many hub exports are
        raise DataError(f"{path}:{exc.lineno}: invalid JSON ({exc.msg} at column {exc.colno})") from None
    if isinstance(data, dict):
        data = _rows_of_object(data, path, split)
    if not isinstance(data, list):
        raise DataError(f"{path}: expected a JSON list of row objects, got {type(data).__name__}")
    for i, row in enumerate(data):
        if not isinstance(row, dict):
            raise DataError(f"{path}: row {i} must be a JSON object, got {type(row).__name__}")
    return data


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
    try:
        with warnings.catch_warnings():
            # pandas only warns when a row has more fields than the header, and drops them: refuse instead.
            warnings.simplefilter("error", pd.errors.ParserWarning)
            # index_col=False: an extra field must not turn the first column into a dropped index.
            frame = pd.read_csv(io.StringIO(text), sep=sep, dtype=str, keep_default_na=False, index_col=False,
                                quoting=_quoting(text, sep))
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


def _quoting(text: str, sep: str) -> int:
    """csv.QUOTE_NONE when the file's quotes are text (GLUE-style TSV), else standard CSV quoting."""
    for line in text[:_SNIFF_CHARS].splitlines():
        for cell in line.split(sep):
            if _RAW_QUOTE_RE.match(cell) and not cell.rstrip().endswith('"'):
                return csv.QUOTE_NONE
    return csv.QUOTE_MINIMAL


def _kind(sep: str) -> str:
    return "TSV" if sep == "\t" else "CSV" if sep == "," else f"CSV ({sep!r}-separated)"


def sniff_delimiter(text: str) -> str:
    """The delimiter of a CSV among `, ; TAB |`: csv.Sniffer on a sample, checked against the header.

    The header line has no prose in it, so a delimiter the sniffer picked that the header lacks
    (a comma inside quoted sentences, say) loses to the candidate the header uses most.
    """
    sample = text[:_SNIFF_CHARS]
    if len(text) > _SNIFF_CHARS and "\n" in sample:
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
