"""Held-out splits: split rows into train and held-out without leaks, check that a held-out split
shares no prompt with training, refuse one too small to score an attempt on, and cap the rows an
evaluation generates for to what its time allows.

Prompts are compared after :func:`normalize_prompt`, so a prompt that differs only in case,
punctuation or spacing counts as the same prompt.
"""

from __future__ import annotations

import collections
import random
import unicodedata
from collections.abc import Callable

from tunecrew.tools.contracts import LeakCheck
from tunecrew.tools.data_layouts import columns_of, detect_format, to_messages
from tunecrew.tools.rows import DataError, truncate

__all__ = ["MIN_HELDOUT_ROWS", "cap_heldout", "check_heldout", "drop_leaked", "leak_check", "normalize_prompt",
           "split_rows"]

MIN_HELDOUT_ROWS = 4  # fewer held-out rows cannot tell one attempt's score from the next


def normalize_prompt(text: str) -> str:
    """Text for near-duplicate checks: NFKC, lowercase, punctuation removed, whitespace collapsed."""
    text = unicodedata.normalize("NFKC", text).lower()
    text = "".join(" " if unicodedata.category(c).startswith("P") else c for c in text)
    return " ".join(text.split())


def _prompt_texts(rows: list[dict]) -> list[str]:
    """The user-side text of each row (system excluded), for leak checks and leak-free splits."""
    if not rows:
        return []
    columns = columns_of(rows)
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
            examples.append(f"{kind}: {truncate(text, 120)}")
    return LeakCheck(checked=len(heldout_rows), exact_overlap=n_exact, near_overlap=n_near, examples=examples)


def drop_leaked(train_rows: list[dict], heldout_rows: list[dict]) -> tuple[list[dict], int]:
    """(training rows whose prompt is not a held-out prompt, how many were left out), compared after
    :func:`normalize_prompt`: for a held-out split given as its own file, which split_rows did not make."""
    held = {normalize_prompt(t) for t in _prompt_texts(heldout_rows)}
    keys = [normalize_prompt(t) for t in _prompt_texts(train_rows)]
    kept = [row for row, key in zip(train_rows, keys, strict=True) if key not in held]
    return kept, len(train_rows) - len(kept)


def check_heldout(heldout: list[dict], source: str, minimum: int = MIN_HELDOUT_ROWS) -> None:
    """Refuse a held-out split too small to score an attempt on (DataError naming the sizes)."""
    if len(heldout) < minimum:
        raise DataError(f"{source}: the held-out split has {len(heldout)} rows; at least {minimum} are needed to "
                        "score an attempt. Give more data or a larger held-out fraction")


def _duration(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 60:.0f} min" if seconds >= 120 else f"{seconds:.0f} s"


def cap_heldout(heldout: list[dict], *, seed: int, seconds_for: Callable[[int], float], cap_s: float,
                cap_name: str, minimum: int = MIN_HELDOUT_ROWS) -> tuple[list[dict], str | None]:
    """The held-out rows an evaluation generates for, and a note when they were capped.

    Every attempt (and the base model) generates a reply for every held-out row, so a split whose
    estimated evaluation (`seconds_for(n)`, increasing in n) is over `cap_s` is cut to the largest
    seeded sample that fits, in the split's order; the rows left out still stay out of training.
    When not even `minimum` rows fit, a DataError naming --heldout: nothing could be scored in time.
    """
    total = len(heldout)
    if total == 0 or seconds_for(total) <= cap_s:
        return list(heldout), None
    lo, hi = 0, total  # the largest n with seconds_for(n) <= cap_s: seconds_for(lo) fits, seconds_for(hi) does not
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if seconds_for(mid) <= cap_s else (lo, mid)
    if lo < minimum:
        raise DataError(f"--heldout: evaluating even {minimum} held-out rows takes ~{_duration(seconds_for(minimum))}, "
                        f"over the {_duration(cap_s)} {cap_name}; a held-out split cannot be scored in time: raise "
                        "--budget, or use a smaller model or shorter replies")
    keep = sorted(random.Random(seed).sample(range(total), lo))
    note = (f"held-out: evaluating a seeded sample (seed {seed}) of n={lo:,} of the {total:,} held-out rows: all of "
            f"them would take ~{_duration(seconds_for(total))} an evaluation, over the cap of {_duration(cap_s)} "
            f"({cap_name}); the other {total - lo:,} stay out of training. A smaller --heldout avoids the cap")
    return [heldout[i] for i in keep], note
