"""The scorer each judge-calibration task type is measured with: the one a run of that type uses.

`tools/judge_calibration.py` builds the set and runs any judge over it; it cannot import the
scenarios' scorers (tools sit below scenarios), so the map lives here, for the bench and the tests.
"""

from __future__ import annotations

from tunecrew.scenarios.dataset import score_reply
from tunecrew.scenarios.task_agent.scenario import score as task_agent_score
from tunecrew.scenarios.task_types import label_scorer, score_choice, score_number
from tunecrew.tools.evaluate import Scorer
from tunecrew.tools.judge_calibration import CLASSIFICATION_LABELS

SCORERS: dict[str, Scorer] = {
    "task-agent": task_agent_score, "multiple-choice": score_choice, "numeric": score_number,
    "classification": label_scorer(CLASSIFICATION_LABELS, None), "free-text": score_reply}
