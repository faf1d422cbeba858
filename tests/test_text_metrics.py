"""Reference metrics, checked against values worked out by hand (and, for ROUGE-L, against the
`rouge-score` package's definition: same tokens, LCS-based F-measure)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tunecrew.tools.text_metrics import (
    exact_match,
    extract_answer,
    lcs_length,
    normalize_answer,
    rouge_l,
    rouge_tokens,
    token_f1,
    token_recall,
)


def test_normalize_answer_drops_case_punctuation_and_articles():
    assert normalize_answer("The  Acute, appendicitis!") == "acute appendicitis"
    assert normalize_answer("An “apple” – a day") == "apple day"  # unicode punctuation too
    assert normalize_answer("theme anatomy") == "theme anatomy"  # articles only as whole words


def test_exact_match():
    assert exact_match("Acute appendicitis.", "acute appendicitis") == 1.0
    assert exact_match("appendicitis", "acute appendicitis") == 0.0


def test_token_f1_hand_computed():
    # pred {acute, cholecystitis}, ref {acute, appendicitis}: 1 shared; P = R = 1/2 -> F1 = 0.5
    assert token_f1("Acute cholecystitis", "acute appendicitis") == pytest.approx(0.5)
    # pred 3 tokens, ref 2 tokens, 2 shared: P = 2/3, R = 1 -> F1 = 2 * (2/3) / (5/3) = 0.8
    assert token_f1("the acute appendicitis again", "Acute appendicitis") == pytest.approx(0.8)
    # multiset overlap: "b b" vs "b": 1 shared; P = 1/2, R = 1 -> 2/3
    assert token_f1("b b", "b") == pytest.approx(2 / 3)
    assert token_f1("", "") == 1.0 and token_f1("x", "") == 0.0 and token_f1("x", "y") == 0.0


def test_token_recall():
    assert token_recall("appendicitis", "acute appendicitis") == pytest.approx(0.5)
    assert token_recall("anything", "") == 1.0


def test_rouge_l_hand_computed():
    # tokens: pred [the cat sat on the mat], ref [the cat was on a mat]; LCS = the cat on mat = 4
    # P = 4/6, R = 4/6 -> F = 2/3 (rouge-score's RougeScorer(["rougeL"]) gives 0.6667 too)
    assert rouge_l("The cat sat on the mat", "the cat was on a mat") == pytest.approx(2 / 3)
    # pred [a b c d], ref [b d]: LCS 2; P = 1/2, R = 1 -> F = 2/3
    assert rouge_l("a b c d", "b d") == pytest.approx(2 / 3)
    assert rouge_l("", "x") == 0.0 and rouge_l("x y", "x y") == 1.0
    assert rouge_tokens("X-ray, 12 mg!") == ["x", "ray", "12", "mg"]


def _lcs_dp(a: list[str], b: list[str]) -> int:
    table = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i, x in enumerate(a, 1):
        for j, y in enumerate(b, 1):
            table[i][j] = table[i - 1][j - 1] + 1 if x == y else max(table[i - 1][j], table[i][j - 1])
    return table[-1][-1]


@given(st.lists(st.sampled_from("abcde"), max_size=30), st.lists(st.sampled_from("abcde"), max_size=30))
def test_bit_parallel_lcs_equals_dynamic_programming(a, b):
    assert lcs_length(a, b) == _lcs_dp(a, b)


@pytest.mark.parametrize(("reply", "answer"), [
    ("<think>\nfever and RLQ pain\n</think>\nAcute appendicitis.", "Acute appendicitis."),
    ("<think>a</think> first </think> second", "second"),  # the last </think> ends the reasoning
    ("<think>all reasoning</think>\n", ""),  # closed reasoning, no answer: empty, not the reasoning
    ("Working... so x = 6. Final answer: \\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),  # nested braces
    ("We compute 2+2. Answer: 4", "4"),
    ("Step one. The answer is (C).", "C"),
    ("Reasoning here.\nFinal answer: b)", "b)"),  # lower-case letters are not option letters
    ("B.", "B"),
    ("Just a plain reply.", "Just a plain reply."),
    ("<think>never closed", "<think>never closed"),  # no marker: the reply itself
])
def test_extract_answer(reply, answer):
    assert extract_answer(reply) == answer
