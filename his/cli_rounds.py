"""The wait between two rounds of a background command run with ``--loop`` (the senders,
the export worker), which ends with the process that started it under ``--with-parent``
(how ``make run`` starts them)."""

from __future__ import annotations

import os
import time


def next_round(wait: float, interval: float, with_parent: bool, parent: int) -> bool:
    """Sleeps ``wait`` seconds, looking every half second (at most ``interval``) whether the
    parent is gone; False when it is: the command should stop."""
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if with_parent and os.getppid() != parent:
            return False
        time.sleep(min(0.5, interval))
    return not (with_parent and os.getppid() != parent)
