"""Is the PABX link up? Decided from keep-alives and request outcomes, with a grace period.

While the link is down, commands fail fast (22) instead of waiting for a
timeout each. Protheus is told only after ``grace`` seconds: SystemStatus
non-zero or queryAgentState 16 closes every operator's call listener, which a
short PABX blip should not do.
"""
from __future__ import annotations

import random
from typing import Callable


class LinkHealth:
    def __init__(self, *, grace: float = 30.0, backoff_initial: float = 1.0, backoff_max: float = 30.0,
                 clock: Callable[[], float]):
        self.grace = grace
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.clock = clock
        self.up = True
        self.down_since: float | None = None
        self.reason = ""
        self.failures = 0          # consecutive failed reconnect attempts
        self.reconnects = 0        # successful reconnects since start
        self.last_ok: float | None = None

    def ok(self) -> bool:
        """A request got an answer. True when this brings the link back up."""
        self.last_ok = self.clock()
        if self.up:
            return False
        self.up, self.down_since, self.reason, self.failures = True, None, "", 0
        self.reconnects += 1
        return True

    def failed(self, reason: str) -> bool:
        """A request could not reach the PABX. True when this takes the link down."""
        if not self.up:
            self.failures += 1
            self.reason = reason
            return False
        self.up, self.down_since, self.reason, self.failures = False, self.clock(), reason, 0
        return True

    @property
    def reported_down(self) -> bool:
        """Down for longer than the grace period: Protheus must be told."""
        return not self.up and self.down_since is not None and self.clock() - self.down_since >= self.grace

    def next_retry(self) -> float:
        """Seconds before the next reconnect attempt: exponential, capped, with jitter."""
        delay = min(self.backoff_max, self.backoff_initial * 2 ** min(self.failures, 20))
        return delay * random.uniform(0.5, 1.0)
