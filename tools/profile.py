"""Profiling: describe a dataset for the agents (layout, token lengths, duplicates, language,
vocabulary, balance of answers, samples) as a :class:`DatasetProfile`.
"""

from __future__ import annotations

import collections
import json
import math
import re
from collections.abc import Callable
from typing import Any

from tunecrew.tools.contracts import DatasetProfile, TokenStats
from tunecrew.tools.data_layouts import columns_of, detect_layout, format_from_mapping, to_messages
from tunecrew.tools.rows import DataError, fingerprint, truncate

__all__ = ["DOMINANT_RESPONSE_SHARE", "LONGEST_KEPT", "guess_language", "profile_rows", "rows_over", "token_stats",
           "top_words", "truncation_note"]

_STOPWORDS = frozenset(
    ["a", "about", "above", "after", "again", "against", "all", "am", "an", "and", "any", "are", "as", "at", "be",
     "because", "been", "before", "being", "below", "between", "both", "but", "by", "can", "could", "did", "do", "does",
     "doing", "down", "during", "each", "few", "for", "from", "further", "had", "has", "have", "having", "he", "her",
     "here", "hers", "herself", "him", "himself", "his", "how", "i", "if", "in", "into", "is", "it", "its", "itself",
     "just", "let", "me", "more", "most", "my", "myself", "no", "nor", "not", "now", "of", "off", "on", "once", "only",
     "or", "other", "our", "ours", "ourselves", "out", "over", "own", "same", "she", "should", "so", "some", "such",
     "than", "that", "the", "their", "theirs", "them", "themselves", "then", "there", "these", "they", "this", "those",
     "through", "to", "too", "under", "until", "up", "very", "was", "we", "were", "what", "when", "where", "which",
     "while", "who", "whom", "why", "will", "with", "would", "you", "your", "yours", "yourself", "yourselves", "also",
     "may", "might", "must", "shall", "get", "got", "one", "two", "use", "used", "using", "like", "well", "yes", "ok",
     "okay", "please", "thanks", "thank", "hi", "hello", "hey", "don", "doesn", "didn", "isn", "aren", "wasn", "weren",
     "won", "can't", "i'm", "it's", "that's", "there's", "what's", "let's", "you're", "i've", "i'll", "i'd"]
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
    columns = columns_of(rows)
    if column_map:
        fmt, cmap = format_from_mapping(column_map, columns)
        layout_name = "mapped"
    else:
        layout = detect_layout(columns, rows[0])
        fmt, cmap, layout_name = layout.format, dict(layout.columns), layout.name

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
    total_lengths = [p + r for p, r in zip(prompt_lengths, response_lengths, strict=True)]

    texts = [p + "\n" + r for p, r in zip(prompts[:_PROFILE_TEXT_ROWS], responses[:_PROFILE_TEXT_ROWS], strict=True)]
    return DatasetProfile(
        source=str(source),
        fingerprint=fingerprint(rows),
        rows=len(rows),
        columns=columns,
        format=fmt,
        column_map=cmap,
        prompt_tokens=token_stats(prompt_lengths),
        response_tokens=token_stats(response_lengths),
        total_tokens=token_stats(total_lengths, keep_longest=LONGEST_KEPT),
        token_unit="tokenizer" if tokenizer is not None else "words",
        duplicates=duplicates,
        language=guess_language(texts),
        vocabulary=top_words(texts),
        extra={"layout": layout_name, "multi_turn_rows": multi_turn, "system_prompt_rows": system_rows,
               "empty_responses": sum(not r.strip() for r in responses),
               # rows that carry the user's own rejected reply: pairs DPO can train on as they are
               "preference_pairs": sum(bool(isinstance(r, dict) and r.get("rejected")) for r in rows),
               **_warnings(_response_balance(responses), _outliers(total_lengths))},
        samples=[_truncate_value(r) for r in rows[:n_samples]],
    )


DOMINANT_RESPONSE_SHARE = 0.9  # one answer this common: the model learns to say it whatever it is asked


def _response_balance(responses: list[str]) -> dict[str, Any]:
    """`warnings` when one response dominates the data (an all-one-class dataset)."""
    if len(responses) < 2:
        return {}
    top, count = collections.Counter(r.strip() for r in responses).most_common(1)[0]
    if count == len(responses):
        return {"warnings": [f"all {count} rows have the same response ({truncate(top, 60)!r}): the data is one "
                             "class, a model trained on it answers that whatever it is asked; add other examples"]}
    if count >= DOMINANT_RESPONSE_SHARE * len(responses) and len(responses) >= 10:
        return {"warnings": [f"{count} of {len(responses)} rows ({count / len(responses):.0%}) have the same "
                             f"response ({truncate(top, 60)!r}): the classes are badly unbalanced"]}
    return {}


OUTLIER_FACTOR = 8  # a row this many times the p99 is an outlier: it must not size every row's sequence


def _outliers(lengths: list[int]) -> list[str]:
    """A warning when a few rows are far longer than the rest (one 5 MB row among short ones)."""
    stats = token_stats(lengths)
    over = sum(n > OUTLIER_FACTOR * max(stats.p99, 1.0) for n in lengths)
    if not over:
        return []
    return [f"{over} of {len(lengths):,} rows are over {OUTLIER_FACTOR}x the p99 of {stats.p99:g} tokens (longest "
            f"{stats.max:,}): max_seq_length is sized from the p99, so they are truncated (counted as rows_truncated)"]


def _warnings(*parts: dict[str, Any] | list[str]) -> dict[str, Any]:
    found = [w for part in parts for w in (part.get("warnings", []) if isinstance(part, dict) else part)]
    return {"warnings": found} if found else {}


def _count_tokens(tokenizer: Any, texts: list[str]) -> list[int]:
    try:
        ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
        return [len(x) for x in ids]
    except TypeError:  # tokenizers without batch __call__
        return [len(tokenizer.encode(t, add_special_tokens=False)) for t in texts]


LONGEST_KEPT = 32  # the profile keeps this many of the longest rows' lengths, to count what a length truncates


def token_stats(lengths: list[int], keep_longest: int = 0) -> TokenStats:
    """count/mean/p50/p95/p99/max of lengths (linear-interpolated percentiles), and with
    `keep_longest` the longest lengths, longest first."""
    if not lengths:
        return TokenStats()
    ordered = sorted(lengths)

    def pct(q: float) -> float:
        pos = (len(ordered) - 1) * q
        lo, hi = math.floor(pos), math.ceil(pos)
        return float(ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo))

    return TokenStats(
        count=len(ordered), mean=round(sum(ordered) / len(ordered), 2),
        p50=round(pct(0.5), 2), p95=round(pct(0.95), 2), p99=round(pct(0.99), 2), max=int(ordered[-1]),
        longest=[int(n) for n in ordered[::-1][:keep_longest]] if keep_longest else None,
    )


def rows_over(stats: TokenStats, limit: float) -> tuple[int, bool]:
    """(rows longer than `limit`, exact): exact when the kept longest lengths decide it; otherwise
    at least that many (every kept length is over the limit, and more rows may be)."""
    if stats.max <= limit:
        return 0, True
    kept = stats.longest or [stats.max]
    over = sum(n > limit for n in kept)
    return over, over < len(kept) or len(kept) >= stats.count


def truncation_note(stats: TokenStats, max_seq_length: int, extra_tokens: int = 0) -> str:
    """`rows_truncated: 1 of 50,000 over 64 tokens`: the rows a max_seq_length cuts short, counting
    the `extra_tokens` every row carries (persona, chat markup)."""
    over, exact = rows_over(stats, max_seq_length - extra_tokens)
    return (f"rows_truncated: {'' if exact else 'at least '}{over:,} of {stats.count:,} over {max_seq_length} tokens"
            + (f" (longest {stats.max + extra_tokens:,})" if over else ""))


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


def _truncate_value(value: Any, limit: int = 300) -> Any:
    if isinstance(value, str):
        return truncate(value, limit)
    if isinstance(value, dict):
        return {str(k): _truncate_value(v, limit) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_truncate_value(v, limit) for v in value[:20]]
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return truncate(str(value), limit)
