"""How many cores a run takes: what is busy now, not the trailing load average."""

from __future__ import annotations

import subprocess
import sys

from tunecrew.tools import hardware


def test_a_core_spinning_right_now_is_counted_busy():
    spinner = subprocess.Popen([sys.executable, "-c",
                                "import time\nend = time.time() + 3\nwhile time.time() < end: pass"])
    try:
        busy = hardware.busy_cores(0.5)
    finally:
        spinner.kill()
    assert busy is not None and busy >= 0.7  # one spinning process is at least most of a core


def test_free_cores_stays_within_one_and_the_limit():
    assert 1 <= hardware.free_cores(limit=4, window_s=0.1) <= min(4, hardware.cpu_count())
    assert hardware.free_cores(limit=1, window_s=0.1) == 1
