"""TRL's fused LM head, scoring only the positions that carry a label on a CPU too.

TRL 1.16's SFTTrainer replaces the model's forward with a chunked, fused LM head (`trl.trainer.utils.
add_fused_lm_head`). On CUDA and XPU it scores only the positions with a label; everywhere else it
scores every position, prompt and padding included, because on Neuron a varying number of positions
would recompile the kernel on every batch (TRL's own comment). A CPU runs eagerly and recompiles
nothing, so there that rule only costs time. The head also runs in fp32 on a CPU (TRL's
`_addmm_fp32`), so bf16 autocast does not speed it up. Under half of a task-agent row's tokens are
its reply (43% with the persona alone as system prompt), and profiled, the head took 0.70 s of a
1.78 s step.

`score_labelled_positions_only` makes TRL take its CUDA path on a CPU. The loss and its gradients
are the same numbers: every scored position is computed as before, and the others were multiplied
by zero. It changes one private name, `trl.trainer.utils._use_triton`. If a TRL without that name is
installed, it does nothing and says so, and TRL's behaviour stands. tests/test_lm_head.py checks
both the equality and the work saved on the installed TRL, and `bench/lm_head.py` measures the speed.
"""

from __future__ import annotations

import os
from typing import Any

# Set to 1 to leave TRL's every-position head alone: what the bench compares against, and a way
# out should a TRL release change what that switch means.
SCORE_ALL_ENV = "TUNECREW_SCORE_ALL_POSITIONS"
_MARK = "_tunecrew_labelled_only"


def score_labelled_positions_only() -> str | None:
    """Make TRL's fused LM head score only labelled positions on a CPU. Returns None when applied
    (or already on), else one line saying why not, for the worker's log."""
    if os.environ.get(SCORE_ALL_ENV) == "1":
        return f"{SCORE_ALL_ENV}=1: the LM head scores every position, as TRL does off CUDA"
    try:
        from trl.trainer import utils
    except ImportError as exc:
        return f"TRL's trainer utilities are not importable ({exc}): the LM head is TRL's own"
    tri = getattr(utils, "_use_triton", None)
    if tri is None or not hasattr(utils, "add_fused_lm_head"):
        return ("this TRL has no fused-LM-head switch (trl.trainer.utils._use_triton): the LM head "
                "scores every position on a CPU, as TRL does")
    if getattr(tri, _MARK, False):
        return None

    def labelled_only(device: Any) -> bool:
        # Only the CPU is added: MPS, Neuron and the rest keep TRL's reasons, which were not measured here.
        return device.type == "cpu" or tri(device)

    setattr(labelled_only, _MARK, True)
    utils._use_triton = labelled_only
    return None
