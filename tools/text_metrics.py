"""Reference metrics for free-text answers: SQuAD-style exact match and token F1, ROUGE-L, and the
final answer of a reasoning reply.

Pure functions over strings. ROUGE-L is a small LCS implementation rather than the `rouge-score`
package: that package ships only as an sdist and pulls in nltk and absl for a dozen lines of
arithmetic. Its tokenisation and F-measure are reproduced exactly (lowercase, runs of characters
other than a-z0-9 split tokens, no stemming, F = 2PR/(P+R)), so scores match `rouge_score`'s
`RougeScorer(["rougeL"]).score(target, prediction)["rougeL"].fmeasure`.
"""

from __future__ import annotations

import collections
import re
import string
import unicodedata

_ARTICLES_RE = re.compile(r"\b(a|an|the)\b")
_PUNCT = set(string.punctuation)
_ROUGE_TOKEN_RE = re.compile(r"[^a-z0-9]+")


def normalize_answer(text: str) -> str:
    """SQuAD normalisation: lowercase, drop punctuation, drop articles, collapse whitespace.

    Unicode punctuation (curly quotes, en dashes) is dropped too, since model replies use it freely.
    """
    text = text.lower()
    text = "".join(c for c in text if c not in _PUNCT and not unicodedata.category(c).startswith("P"))
    text = _ARTICLES_RE.sub(" ", text)
    return " ".join(text.split())


def exact_match(prediction: str, reference: str) -> float:
    """1.0 when the two normalised strings are equal, else 0.0."""
    return float(normalize_answer(prediction) == normalize_answer(reference))


def _overlap(prediction: str, reference: str) -> tuple[int, int, int]:
    pred, ref = normalize_answer(prediction).split(), normalize_answer(reference).split()
    common = collections.Counter(pred) & collections.Counter(ref)
    return sum(common.values()), len(pred), len(ref)


def token_f1(prediction: str, reference: str) -> float:
    """SQuAD token F1 over normalised tokens (multiset overlap). Two empty strings score 1.0."""
    same, n_pred, n_ref = _overlap(prediction, reference)
    if n_pred == 0 or n_ref == 0:
        return float(n_pred == n_ref)
    if same == 0:
        return 0.0
    precision, recall = same / n_pred, same / n_ref
    return 2 * precision * recall / (precision + recall)


def token_recall(prediction: str, reference: str) -> float:
    """Share of the reference's normalised tokens the prediction contains (multiset). Empty reference: 1.0."""
    same, _, n_ref = _overlap(prediction, reference)
    return same / n_ref if n_ref else 1.0


def rouge_tokens(text: str) -> list[str]:
    """`rouge_score`'s default tokenisation: lowercase, split on anything other than a-z and 0-9."""
    return [t for t in _ROUGE_TOKEN_RE.split(text.lower()) if t]


def lcs_length(a: list[str], b: list[str]) -> int:
    """Length of the longest common subsequence of two token lists.

    Bit-parallel (Hyyro 2004): one big-integer update per token of `b`, so a 1,000 x 1,000 token
    pair costs a thousand integer operations instead of a million Python steps.
    """
    if not a or not b:
        return 0
    masks: dict[str, int] = {}
    for i, token in enumerate(a):
        masks[token] = masks.get(token, 0) | (1 << i)
    full = (1 << len(a)) - 1
    v = full
    for token in b:
        u = v & masks.get(token, 0)
        v = ((v + u) | (v - u)) & full
    return len(a) - bin(v).count("1")


def rouge_l(prediction: str, reference: str) -> float:
    """ROUGE-L F-measure (beta = 1) over `rouge_tokens`; 0.0 when either side has no tokens."""
    pred, ref = rouge_tokens(prediction), rouge_tokens(reference)
    lcs = lcs_length(ref, pred)
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(pred), lcs / len(ref)
    return 2 * precision * recall / (precision + recall)


_THINK_END = "</think>"
_ANSWER_RE = re.compile(r"\b(?:final\s+answer|answer)\s*(?:is\s*)?[:：]\s*|\b(?:final\s+answer|answer)\s+is\s+",
                        re.IGNORECASE)
_OPTION_RE = re.compile(r"^\(?([A-E])\)?[.:)]?$")


def _boxed(text: str) -> str | None:
    """Content of the last `\\boxed{...}`, braces balanced; None if there is none (or it never closes)."""
    start = text.rfind("\\boxed{")
    if start < 0:
        return None
    depth, i = 1, start + len("\\boxed{")
    for j in range(i, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return text[i:j].strip()
    return None


def extract_answer(text: str) -> str:
    """The final answer of a reasoning reply.

    In order: the text after the last `</think>` (an empty answer there stays empty: the model
    closed its reasoning and said nothing), then inside it the last `\\boxed{...}`, else what
    follows the last "Final answer:" / "Answer:" / "the answer is"; a lone option letter such as
    "(B)." becomes "B". Without any of these markers the reply itself is the answer.
    """
    rest = text
    if _THINK_END in text:
        rest = text.rsplit(_THINK_END, 1)[1]
    rest = rest.strip()
    boxed = _boxed(rest)
    if boxed is not None:
        rest = boxed
    else:
        matches = list(_ANSWER_RE.finditer(rest))
        if matches and rest[matches[-1].end():].strip():
            rest = rest[matches[-1].end():].strip()
    option = _OPTION_RE.match(rest.strip())
    return option.group(1) if option else rest.strip()
