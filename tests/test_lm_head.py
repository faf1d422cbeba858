"""tools/lm_head.py on the installed TRL: TRL's fused LM head on a CPU, scoring only labelled positions,
gives the same loss and gradients as scoring every one, and hands the head fewer rows."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
utils = pytest.importorskip("trl.trainer.utils")

from tunecrew.tools import lm_head  # noqa: E402


@pytest.fixture
def trl_switch(monkeypatch):
    """TRL's own switch, put back after the test whatever the shim did to it."""
    monkeypatch.delenv(lm_head.SCORE_ALL_ENV, raising=False)
    monkeypatch.setattr(utils, "_use_triton", utils._use_triton)
    return monkeypatch


def _loss_and_grads(model, ids, labels, scored: list[int]):
    model.zero_grad()
    out = model(input_ids=ids, labels=labels, fused_lm_head=True)
    out.loss.backward()
    grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    return out.loss.detach(), out.log_probs.detach(), grads, scored.pop()


def test_labelled_only_gives_the_same_loss_and_gradients_from_fewer_rows(tiny_model, trl_switch):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    utils.add_fused_lm_head(model, outputs=("log_probs", "entropy", "is_top1"))
    scored: list[int] = []
    real_apply = utils._ChunkedLogProbFunction.apply
    trl_switch.setattr(utils._ChunkedLogProbFunction, "apply",
                       lambda hidden, *rest: scored.append(hidden.shape[0]) or real_apply(hidden, *rest))
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(4, model.config.vocab_size, (3, 12), generator=generator)
    labels = ids.clone()
    labels[:, :7] = -100  # the prompt
    labels[2, 9:] = -100  # padding at the end of a shorter row
    labelled = int((labels[:, 1:] != -100).sum())

    every = _loss_and_grads(model, ids, labels, scored)
    assert lm_head.score_labelled_positions_only() is None
    only = _loss_and_grads(model, ids, labels, scored)

    assert every[3] == 3 * 11 and only[3] == labelled == 12  # TRL's CPU rule scored all 33, the shim the 12
    torch.testing.assert_close(only[0], every[0], rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(only[1], every[1], rtol=1e-6, atol=1e-6)  # zero where unlabelled, in both
    assert only[2].keys() == every[2].keys() and only[2]
    for name, grad in every[2].items():
        torch.testing.assert_close(only[2][name], grad, rtol=1e-5, atol=1e-7)


def test_applying_twice_wraps_once_and_other_devices_keep_trls_rule(trl_switch):
    original = utils._use_triton
    assert lm_head.score_labelled_positions_only() is None
    wrapped = utils._use_triton
    assert lm_head.score_labelled_positions_only() is None
    assert utils._use_triton is wrapped is not original
    assert wrapped(torch.device("cpu")) is True
    assert wrapped(torch.device("meta")) == original(torch.device("meta"))


def test_the_escape_hatch_and_a_trl_without_the_switch_leave_trl_alone(trl_switch):
    original = utils._use_triton
    trl_switch.setenv(lm_head.SCORE_ALL_ENV, "1")
    note = lm_head.score_labelled_positions_only()
    assert note and lm_head.SCORE_ALL_ENV in note and utils._use_triton is original

    trl_switch.delenv(lm_head.SCORE_ALL_ENV)
    trl_switch.delattr(utils, "_use_triton")
    note = lm_head.score_labelled_positions_only()
    assert note and "_use_triton" in note and not hasattr(utils, "_use_triton")
