"""Dataset I/O and profiling for any dataset: load rows, tell their layout, turn them into chat
messages, split them without leaks, and describe them for the agents.

Everything here is plain functions over ``list[dict]``; files and the hub are touched only by
:func:`load_rows` and :func:`write_jsonl`. Bad input raises :class:`DataError`, whose message
names the file, line or column and says what to do, because the reader is often an agent that
has to fix its own call.
"""

from __future__ import annotations

import collections
import hashlib
import io
import json
import math
import random
import re
import unicodedata
from pathlib import Path
from typing import Any, Callable, Iterable

from tunecrew.tools.contracts import DatasetProfile, LeakCheck, TokenStats

SUPPORTED_SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")
_HUB_ID_RE = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


class DataError(ValueError):
    """Bad dataset input; the message names the source (file, line or field) and the fix."""


# --------------------------------------------------------------------------- loading


def load_rows(source: str | Path, split: str = "train", config: str | None = None) -> list[dict]:
    """Rows of a local .jsonl/.json/.csv/.parquet file, or of a hub dataset `owner/name`
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
    elif suffix in (".jsonl", ".json", ".csv"):
        text = _read_utf8(path)
        if not text.strip():
            raise DataError(f"{path}: file is empty; it needs at least one row")
        if suffix == ".jsonl":
            rows = _parse_jsonl(text, path)
        elif suffix == ".json":
            rows = _parse_json(text, path, split)
        else:
            rows = _parse_csv(text, path)
    else:
        raise DataError(f"{path}: unsupported file type {suffix or '(none)'}; use one of {', '.join(SUPPORTED_SUFFIXES)}")
    if not rows:
        raise DataError(f"{path}: no rows; the file needs at least one row")
    return rows


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
        raise DataError(f"{path}:{exc.lineno}: invalid JSON ({exc.msg} at column {exc.colno})") from None
    if isinstance(data, dict):
        # {"train": [...], "test": [...]} or {"data": [...]}: take the requested split, else the
        # only list in the object.
        lists = {k: v for k, v in data.items() if isinstance(v, list)}
        if split in lists:
            data = lists[split]
        elif len(lists) == 1:
            data = next(iter(lists.values()))
        else:
            raise DataError(
                f"{path}: a JSON object must hold the rows as a list under {split!r} (or a single list); "
                f"found keys {sorted(data)}"
            )
    if not isinstance(data, list):
        raise DataError(f"{path}: expected a JSON list of row objects, got {type(data).__name__}")
    for i, row in enumerate(data):
        if not isinstance(row, dict):
            raise DataError(f"{path}: row {i} must be a JSON object, got {type(row).__name__}")
    return data


def _parse_csv(text: str, path: Path) -> list[dict]:
    import pandas as pd

    try:
        frame = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: CSV has no header or rows") from None
    except pd.errors.ParserError as exc:
        raise DataError(f"{path}: malformed CSV ({exc}); check quoting and column counts") from None
    if frame.empty:
        raise DataError(f"{path}: CSV has a header ({', '.join(map(str, frame.columns))}) but no rows")
    return frame.to_dict(orient="records")


def _load_parquet(path: Path) -> list[dict]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataError(f"{path}: not a readable parquet file ({exc}); re-export it") from None
    return table.to_pylist()  # native lists and dicts, not numpy arrays


def _load_hub(source: str, split: str, config: str | None = None) -> list[dict]:
    try:
        import datasets

        dataset = datasets.load_dataset(source, config, split=split) if config else \
            datasets.load_dataset(source, split=split)
    except Exception as exc:  # offline, gated, wrong split, missing config: all end the same way
        raise DataError(
            f"{source}: could not load hub dataset split {split!r} ({type(exc).__name__}: {str(exc)[:300]}); "
            "without network, download it first and pass a local .jsonl/.parquet file"
        ) from None
    return [dict(row) for row in dataset]


def write_jsonl(rows: Iterable[dict], path: str | Path) -> Path:
    """Write rows as UTF-8 JSONL (one object a line); creates parent folders."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path


# --------------------------------------------------------------------------- layout


_CHAT_COLUMNS = ("messages", "conversations", "conversation", "chat")
_PROMPT_COLUMNS = ("question", "query", "problem", "prompt")
_RESPONSE_COLUMNS = ("answer", "response", "output", "solution", "completion")
_REASONING_HINTS = ("cot", "reasoning", "rationale", "thoughts", "think", "thinking", "explanation")
_TEXT_COLUMNS = ("text", "content", "document", "body")


def detect_format(columns: list[str], first_row: dict) -> tuple[str, dict[str, str]]:
    """(format, role -> column) for a row layout; raises DataError listing the columns if unknown.

    Column names match case-insensitively. Roles: chat `messages`; prompt_completion `prompt`,
    `completion`; preference `prompt` (optional), `chosen`, `rejected`; instruction `prompt`,
    `response`, optional `input`, `reasoning`; text `text`; any format may add `system`.
    """
    lower = {str(c).lower(): str(c) for c in columns}

    def pick(*names: str) -> str | None:
        return next((lower[n] for n in names if n in lower), None)

    system = pick("system", "system_prompt")
    extra = {"system": system} if system else {}

    chat = pick(*_CHAT_COLUMNS)
    if chat and isinstance(first_row.get(chat), list):
        return "chat", {"messages": chat, **extra}

    chosen, rejected = pick("chosen"), pick("rejected")
    if chosen and rejected:
        prompt = pick("prompt", "question", "instruction")
        if prompt:
            return "preference", {"prompt": prompt, "chosen": chosen, "rejected": rejected, **extra}
        if isinstance(first_row.get(chosen), list):  # conversational pairs carry the prompt inside
            return "preference", {"chosen": chosen, "rejected": rejected, **extra}

    prompt, completion = pick("prompt"), pick("completion", "response")
    if prompt and completion:
        return "prompt_completion", {"prompt": prompt, "completion": completion, **extra}

    instruction = pick("instruction")
    response = pick("output", "response", "answer", "completion")
    if not instruction:
        instruction = pick(*_PROMPT_COLUMNS)
        response = pick(*_RESPONSE_COLUMNS)
    if instruction and response and instruction != response:
        cmap = {"prompt": instruction, "response": response, **extra}
        inp = pick("input", "context")
        if inp:
            cmap["input"] = inp
        reasoning = _reasoning_column(columns, used=set(cmap.values()))
        if reasoning:
            cmap["reasoning"] = reasoning
        return "instruction", cmap

    text = pick(*_TEXT_COLUMNS)
    if text is None:
        strings = [str(c) for c in columns if isinstance(first_row.get(c), str)]
        if len(columns) == 1 and len(strings) == 1:
            text = strings[0]
    if text:
        return "text", {"text": text}

    raise DataError(
        f"cannot tell the row layout from columns {list(columns)}; pass a column mapping such as "
        "{'prompt': '<question column>', 'response': '<answer column>'} "
        "(or rename columns to messages / prompt+completion / instruction+output / text)"
    )


def _reasoning_column(columns: list[str], used: set[str]) -> str | None:
    """A chain-of-thought column such as `Complex_CoT`, `reasoning` or `rationale`, if any."""
    for column in columns:
        name = str(column).lower()
        words = set(re.split(r"[^a-z]+", name))
        if str(column) not in used and (words & set(_REASONING_HINTS) or "reason" in name or "thought" in name):
            return str(column)
    return None


def format_from_mapping(mapping: dict[str, str], columns: list[str]) -> tuple[str, dict[str, str]]:
    """(format, mapping) for a user-given role -> column map; checks the columns exist.

    The escape hatch that :func:`detect_format`'s error points to.
    """
    missing = [c for c in mapping.values() if c not in columns]
    if missing:
        raise DataError(f"column mapping names {missing}, which are not among the columns {list(columns)}")
    roles = set(mapping) - {"system"}
    for fmt, needed in (
        ("chat", {"messages"}),
        ("preference", {"chosen", "rejected"}),
        ("prompt_completion", {"prompt", "completion"}),
        ("instruction", {"prompt", "response"}),
        ("text", {"text"}),
    ):
        if needed <= roles:
            return fmt, dict(mapping)
    raise DataError(
        f"column mapping roles {sorted(mapping)} fit no format; use messages, prompt+completion, "
        "prompt+response (+input, reasoning), prompt+chosen+rejected, or text"
    )


_ROLE_ALIASES = {
    "user": "user", "human": "user", "prompter": "user",
    "assistant": "assistant", "gpt": "assistant", "bot": "assistant", "model": "assistant",
    "system": "system",
}


def to_messages(
    row: dict, fmt: str, column_map: dict[str, str], *, where: str = "row", include_reasoning: bool = True
) -> list[dict]:
    """A row as chat messages: optional system, then user/assistant turns.

    Chat rows keep all their turns (multi-turn stays multi-turn); ShareGPT `from`/`value` keys
    and `human`/`gpt` roles are normalised. Instruction rows with a reasoning column put it
    before the answer inside `<think>…</think>` (set `include_reasoning=False` to drop it).
    Text rows have no prompt and become a single assistant message.
    """

    def field(role: str) -> Any:
        column = column_map.get(role)
        if column is None:
            raise DataError(f"{where}: column map has no {role!r} role for format {fmt!r}")
        if column not in row:
            raise DataError(f"{where}: missing column {column!r} (role {role!r}); columns are {list(row)}")
        return row[column]

    def text(role: str) -> str:
        value = field(role)
        if value is None:
            raise DataError(f"{where}: column {column_map[role]!r} is empty (null); drop or fill the row")
        if isinstance(value, (list, dict)):
            raise DataError(f"{where}: column {column_map[role]!r} holds a {type(value).__name__}, expected text")
        return str(value)

    def side(role: str, speaker: str) -> list[dict]:
        value = field(role)
        if isinstance(value, list):
            return _normalise_chat(value, where, require_pair=False)
        return [{"role": speaker, "content": text(role)}]

    system = [{"role": "system", "content": text("system")}] if "system" in column_map else []

    if fmt == "chat":
        messages = _normalise_chat(field("messages"), where)
        if system and not any(m["role"] == "system" for m in messages):
            messages = system + messages
        return messages
    if fmt == "text":
        return system + [{"role": "assistant", "content": text("text")}]
    if fmt == "preference":
        # The chosen answer is the SFT target; `rejected` only matters to DPO.
        prompt_msgs = side("prompt", "user") if "prompt" in column_map else []
        if isinstance(field("chosen"), list):  # conversational pair: the prompt may live inside `chosen`
            return system + prompt_msgs + _normalise_chat(field("chosen"), where, require_pair=not prompt_msgs)
        return system + prompt_msgs + [{"role": "assistant", "content": text("chosen")}]
    if fmt == "prompt_completion":
        # Either side may be a message list (TRL's conversational prompt-completion layout).
        return system + side("prompt", "user") + side("completion", "assistant")
    if fmt == "instruction":
        user = text("prompt")
        if "input" in column_map:
            extra = row.get(column_map["input"])
            if extra is not None and str(extra).strip():
                user = f"{user}\n\n{extra}"
        answer = text("response")
        if include_reasoning and "reasoning" in column_map:
            reasoning = row.get(column_map["reasoning"])
            if reasoning is not None and str(reasoning).strip():
                answer = f"<think>\n{str(reasoning).strip()}\n</think>\n{answer}"
        return system + [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]
    raise DataError(f"{where}: unknown format {fmt!r}; expected chat, prompt_completion, instruction, preference or text")


def _normalise_chat(messages: Any, where: str, require_pair: bool = True) -> list[dict]:
    if not isinstance(messages, list) or not messages:
        raise DataError(f"{where}: messages must be a non-empty list of {{role, content}} objects")
    out: list[dict] = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise DataError(f"{where}: message {i} must be an object, got {type(message).__name__}")
        raw_role = message.get("role", message.get("from"))
        content = message.get("content", message.get("value"))
        role = _ROLE_ALIASES.get(str(raw_role).lower()) if raw_role is not None else None
        if role is None:
            raise DataError(
                f"{where}: message {i} has role {raw_role!r}; use system, user or assistant (or human/gpt)"
            )
        if content is None or isinstance(content, (list, dict)):
            raise DataError(f"{where}: message {i} ({role}) needs text content")
        out.append({"role": role, "content": str(content)})
    if require_pair:
        roles = {m["role"] for m in out}
        if "user" not in roles or "assistant" not in roles:
            raise DataError(f"{where}: a conversation needs at least one user and one assistant message")
    return out


# --------------------------------------------------------------------------- identity and splits


def fingerprint(rows: list[dict]) -> str:
    """sha256 (hex) of the rows as canonical JSON: same rows, same fingerprint, any key order."""
    canonical = json.dumps(rows, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def normalize_prompt(text: str) -> str:
    """Text for near-duplicate checks: NFKC, lowercase, punctuation removed, whitespace collapsed."""
    text = unicodedata.normalize("NFKC", text).lower()
    text = "".join(" " if unicodedata.category(c).startswith("P") else c for c in text)
    return " ".join(text.split())


def _prompt_texts(rows: list[dict]) -> list[str]:
    """The user-side text of each row (system excluded), for leak checks and leak-free splits."""
    if not rows:
        return []
    columns = _columns(rows)
    fmt, cmap = detect_format(columns, rows[0])
    texts = []
    for i, row in enumerate(rows):
        messages = to_messages(row, fmt, cmap, where=f"row {i}")
        user = [m["content"] for m in messages if m["role"] == "user"]
        texts.append("\n".join(user) if user else "\n".join(m["content"] for m in messages))
    return texts


def split_rows(rows: list[dict], heldout_fraction: float, seed: int) -> tuple[list[dict], list[dict]]:
    """Deterministic (train, heldout) split that keeps rows with the same normalised prompt together.

    Grouping by prompt makes the split leak-free by construction: a prompt repeated in the data
    can never land on both sides. Rows keep their original order within each side.
    """
    if not 0.0 <= heldout_fraction < 1.0:
        raise DataError(f"heldout_fraction={heldout_fraction} must be in [0, 1)")
    if not rows or heldout_fraction == 0.0:
        return list(rows), []
    keys = [normalize_prompt(t) for t in _prompt_texts(rows)]
    groups: dict[str, list[int]] = collections.defaultdict(list)
    for i, key in enumerate(keys):
        groups[key].append(i)
    order = sorted(groups)
    random.Random(seed).shuffle(order)
    target = max(1, round(len(rows) * heldout_fraction)) if len(rows) > 1 else 0
    held: set[int] = set()
    for key in order:
        if len(held) >= target:
            break
        if len(held) + len(groups[key]) >= len(rows):  # never empty the training side
            continue
        held.update(groups[key])
    train = [r for i, r in enumerate(rows) if i not in held]
    heldout = [r for i, r in enumerate(rows) if i in held]
    return train, heldout


def leak_check(train_rows: list[dict], heldout_rows: list[dict], max_examples: int = 5) -> LeakCheck:
    """Held-out prompts that also occur in training: exactly, or after :func:`normalize_prompt`.

    A prompt counted as exact is not counted again as near, so the two numbers add up.
    """
    train_texts = _prompt_texts(train_rows)
    exact = set(train_texts)
    near = {normalize_prompt(t) for t in train_texts}
    n_exact = n_near = 0
    examples: list[str] = []
    for text in _prompt_texts(heldout_rows):
        if text in exact:
            n_exact += 1
            kind = "exact"
        elif normalize_prompt(text) in near:
            n_near += 1
            kind = "near"
        else:
            continue
        if len(examples) < max_examples:
            examples.append(f"{kind}: {_truncate(text, 120)}")
    return LeakCheck(checked=len(heldout_rows), exact_overlap=n_exact, near_overlap=n_near, examples=examples)


# --------------------------------------------------------------------------- profiling


_STOPWORDS = frozenset(
    """a about above after again against all am an and any are as at be because been before being below
    between both but by can could did do does doing down during each few for from further had has have
    having he her here hers herself him himself his how i if in into is it its itself just let me more most
    my myself no nor not now of off on once only or other our ours ourselves out over own same she should
    so some such than that the their theirs them themselves then there these they this those through to
    too under until up very was we were what when where which while who whom why will with would you your
    yours yourself yourselves also may might must shall get got one two use used using like well yes ok
    okay please thanks thank hi hello hey don doesn didn isn aren wasn weren won can't i'm it's that's
    there's what's let's you're i've i'll i'd""".split()
)

_LANG_STOPWORDS = {
    "en": {"the", "and", "is", "to", "of", "you", "my", "it", "for", "what", "a", "in", "that", "this"},
    "es": {"el", "la", "de", "que", "y", "en", "los", "es", "por", "para", "una", "con", "las"},
    "fr": {"le", "la", "les", "de", "et", "est", "un", "une", "pour", "que", "des", "dans", "pas"},
    "de": {"der", "die", "das", "und", "ist", "nicht", "ein", "eine", "zu", "mit", "den", "ich", "sie"},
    "pt": {"o", "a", "de", "que", "e", "do", "da", "em", "um", "uma", "para", "não", "com", "os"},
    "it": {"il", "la", "di", "che", "e", "un", "una", "per", "non", "sono", "con", "gli", "del"},
}

_PROFILE_TEXT_ROWS = 5000  # language and vocabulary read at most this many rows: evidence, not census
_MARKUP_RE = re.compile(r"</?[a-z_][\w-]*>")  # <think>, <analysis>: format, not domain
_WORD_RE = re.compile(r"[^\W\d_][^\W\d_'-]*[^\W\d_]|[^\W\d_]", re.UNICODE)


def profile_rows(
    rows: list[dict],
    source: str,
    tokenizer: Any = None,
    n_samples: int = 3,
    column_map: dict[str, str] | None = None,
) -> DatasetProfile:
    """Describe rows for the agents: layout, lengths, duplicates, language, vocabulary, samples.

    Lengths are counted with `tokenizer` (a Hugging Face tokenizer) when given, else in
    whitespace words; `token_unit` says which. Pass `column_map` to override layout detection.
    """
    if not rows:
        raise DataError(f"{source}: no rows to profile")
    columns = _columns(rows)
    if column_map:
        fmt, cmap = format_from_mapping(column_map, columns)
    else:
        fmt, cmap = detect_format(columns, rows[0])

    prompts, responses = [], []
    seen: set[str] = set()
    duplicates = multi_turn = system_rows = 0
    for i, row in enumerate(rows):
        messages = to_messages(row, fmt, cmap, where=f"{source} row {i}")
        prompt = "\n".join(m["content"] for m in messages if m["role"] != "assistant")
        response = "\n".join(m["content"] for m in messages if m["role"] == "assistant")
        prompts.append(prompt)
        responses.append(response)
        key = json.dumps(messages, sort_keys=True, ensure_ascii=False)
        duplicates += key in seen
        seen.add(key)
        multi_turn += sum(m["role"] == "assistant" for m in messages) > 1
        system_rows += any(m["role"] == "system" for m in messages)

    count: Callable[[list[str]], list[int]] = (
        (lambda texts: _count_tokens(tokenizer, texts)) if tokenizer is not None else
        (lambda texts: [len(t.split()) for t in texts])
    )
    prompt_lengths, response_lengths = count(prompts), count(responses)
    total_lengths = [p + r for p, r in zip(prompt_lengths, response_lengths)]

    texts = [p + "\n" + r for p, r in zip(prompts[:_PROFILE_TEXT_ROWS], responses[:_PROFILE_TEXT_ROWS])]
    return DatasetProfile(
        source=str(source),
        fingerprint=fingerprint(rows),
        rows=len(rows),
        columns=columns,
        format=fmt,  # type: ignore[arg-type]
        column_map=cmap,
        prompt_tokens=token_stats(prompt_lengths),
        response_tokens=token_stats(response_lengths),
        total_tokens=token_stats(total_lengths),
        token_unit="tokenizer" if tokenizer is not None else "words",
        duplicates=duplicates,
        language=guess_language(texts),
        vocabulary=top_words(texts),
        extra={"multi_turn_rows": multi_turn, "system_prompt_rows": system_rows,
               "empty_responses": sum(not r.strip() for r in responses),
               **_response_balance(responses)},
        samples=[_truncate_value(r) for r in rows[:n_samples]],
    )


DOMINANT_RESPONSE_SHARE = 0.9  # one answer this common: the model learns to say it whatever it is asked
MIN_HELDOUT_ROWS = 4  # fewer held-out rows cannot tell one attempt's score from the next


def _response_balance(responses: list[str]) -> dict[str, Any]:
    """`warnings` when one response dominates the data (an all-one-class dataset)."""
    if len(responses) < 2:
        return {}
    top, count = collections.Counter(r.strip() for r in responses).most_common(1)[0]
    if count == len(responses):
        return {"warnings": [f"all {count} rows have the same response ({_truncate(top, 60)!r}): the data is one "
                             "class, a model trained on it answers that whatever it is asked; add other examples"]}
    if count >= DOMINANT_RESPONSE_SHARE * len(responses) and len(responses) >= 10:
        return {"warnings": [f"{count} of {len(responses)} rows ({count / len(responses):.0%}) have the same "
                             f"response ({_truncate(top, 60)!r}): the classes are badly unbalanced"]}
    return {}


def check_heldout(heldout: list[dict], source: str, minimum: int = MIN_HELDOUT_ROWS) -> None:
    """Refuse a held-out split too small to score an attempt on (DataError naming the sizes)."""
    if len(heldout) < minimum:
        raise DataError(f"{source}: the held-out split has {len(heldout)} rows; at least {minimum} are needed to "
                        "score an attempt. Give more data or a larger held-out fraction")


def _columns(rows: list[dict]) -> list[str]:
    seen: dict[str, None] = {}
    for row in rows[:1000]:
        for key in row:
            seen.setdefault(str(key), None)
    return list(seen)


def _count_tokens(tokenizer: Any, texts: list[str]) -> list[int]:
    try:
        ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
        return [len(x) for x in ids]
    except TypeError:  # tokenizers without batch __call__
        return [len(tokenizer.encode(t, add_special_tokens=False)) for t in texts]


def token_stats(lengths: list[int]) -> TokenStats:
    """count/mean/p50/p95/max of lengths (linear-interpolated percentiles)."""
    if not lengths:
        return TokenStats()
    ordered = sorted(lengths)

    def pct(q: float) -> float:
        pos = (len(ordered) - 1) * q
        lo, hi = math.floor(pos), math.ceil(pos)
        return float(ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo))

    return TokenStats(
        count=len(ordered), mean=round(sum(ordered) / len(ordered), 2),
        p50=round(pct(0.5), 2), p95=round(pct(0.95), 2), max=int(ordered[-1]),
    )


def guess_language(texts: list[str]) -> str:
    """Dominant script, and for Latin script the language whose stopwords fit best.

    Returns an ISO-ish code (en, es, fr, de, pt, it, zh, ja, ko, ru, ar, he, el, hi, th), `latin`
    when Latin text matches no known stopword list, or `unknown` for no letters at all.
    """
    scripts: collections.Counter[str] = collections.Counter()
    for text in texts:
        for ch in text:
            if ch.isalpha():
                scripts[_script(ch)] += 1
    if not scripts:
        return "unknown"
    script = scripts.most_common(1)[0][0]
    if script != "latin":
        if script == "cjk" and (scripts["kana"] > 0.1 * scripts["cjk"]):
            return "ja"
        return {"cjk": "zh", "kana": "ja", "hangul": "ko", "cyrillic": "ru", "arabic": "ar", "hebrew": "he",
                "greek": "el", "devanagari": "hi", "thai": "th"}.get(script, script)
    words = collections.Counter(w.lower() for t in texts for w in _WORD_RE.findall(t))
    scores = {lang: sum(words[w] for w in stop) for lang, stop in _LANG_STOPWORDS.items()}
    best = max(scores, key=scores.__getitem__)
    return best if scores[best] > 0 else "latin"


def _script(ch: str) -> str:
    cp = ord(ch)
    if cp < 0x250:
        return "latin"
    if 0x370 <= cp < 0x400:
        return "greek"
    if 0x400 <= cp < 0x530:
        return "cyrillic"
    if 0x590 <= cp < 0x600:
        return "hebrew"
    if 0x600 <= cp < 0x780:
        return "arabic"
    if 0x900 <= cp < 0x980:
        return "devanagari"
    if 0xE00 <= cp < 0xE80:
        return "thai"
    if 0x3040 <= cp < 0x3100:
        return "kana"
    if 0xAC00 <= cp < 0xD7B0 or 0x1100 <= cp < 0x1200:
        return "hangul"
    if 0x4E00 <= cp < 0xA000 or 0x3400 <= cp < 0x4DC0:
        return "cjk"
    if 0x1E00 <= cp < 0x1F00:
        return "latin"
    return "other"


def top_words(texts: list[str], k: int = 20) -> list[str]:
    """The k most frequent content words (lowercase, 3+ letters; stopwords and <tags> dropped)."""
    counts: collections.Counter[str] = collections.Counter()
    for text in texts:
        for word in _WORD_RE.findall(_MARKUP_RE.sub(" ", text.lower())):
            if len(word) >= 3 and word not in _STOPWORDS:
                counts[word] += 1
    return [w for w, _ in counts.most_common(k)]


def _truncate(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[:limit] + f"… [+{len(text) - limit} chars]"


def _truncate_value(value: Any, limit: int = 300) -> Any:
    if isinstance(value, str):
        return _truncate(value, limit)
    if isinstance(value, dict):
        return {str(k): _truncate_value(v, limit) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_truncate_value(v, limit) for v in value[:20]]
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return _truncate(str(value), limit)
