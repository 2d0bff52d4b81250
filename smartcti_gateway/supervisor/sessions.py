"""Signed-in supervisors: server-side sessions with a sliding expiry, and the failed-login limiter.

A session id is a random token (the cookie), never derived from the user; its CSRF token is another.
Everything is in memory: a restart signs everybody out, which is what one expects of a restart.
"""
from __future__ import annotations

import secrets
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable


@dataclass
class Session:
    id: str = field(repr=False)
    user: str
    csrf: str = field(repr=False)
    expires: float
    via: str = "password"        # "password" (the login form) or "proxy" (trusted_header)
    lang: str = ""
    ended: bool = False


class Sessions:
    def __init__(self, minutes: float, *, clock: Callable[[], float] = time.monotonic, limit: int = 2000):
        self.lifetime = minutes * 60.0
        self.clock = clock
        self.limit = limit
        self._by_id: dict[str, Session] = {}

    def create(self, user: str, *, via: str = "password", lang: str = "") -> Session:
        self._prune()
        if len(self._by_id) >= self.limit:      # bounded: the one idle longest goes
            oldest = min(self._by_id.values(), key=lambda s: s.expires)
            self.end(oldest.id)
        s = Session(secrets.token_urlsafe(32), user, secrets.token_urlsafe(32), self.clock() + self.lifetime,
                    via, lang)
        self._by_id[s.id] = s
        return s

    def get(self, sid: str | None, *, touch: bool = True) -> Session | None:
        """The live session of this id, its expiry slid forward when ``touch``; None when unknown or expired."""
        s = self._by_id.get(sid or "")
        if s is None:
            return None
        if not self.alive(s):
            self.end(s.id)
            return None
        if touch:
            s.expires = self.clock() + self.lifetime
        return s

    def alive(self, s: Session) -> bool:
        return not s.ended and self.clock() < s.expires

    def end(self, sid: str) -> None:
        s = self._by_id.pop(sid, None)
        if s is not None:
            s.ended = True

    def end_all(self) -> None:
        for sid in list(self._by_id):
            self.end(sid)

    def __len__(self) -> int:
        return len(self._by_id)

    def _prune(self) -> None:
        now = self.clock()
        for sid in [sid for sid, s in self._by_id.items() if s.expires <= now]:
            self.end(sid)


class LoginLimiter:
    """At most ``failures`` failed logins per address within ``window`` seconds; then that address waits
    until the oldest of them is ``window`` old. A successful login clears the address."""

    def __init__(self, failures: int = 5, window: float = 300.0, *, clock: Callable[[], float] = time.monotonic,
                 max_addresses: int = 10_000):
        self.failures = failures
        self.window = window
        self.clock = clock
        self.max_addresses = max_addresses
        self._seen: dict[str, deque[float]] = {}

    def wait(self, address: str) -> float:
        """Seconds before ``address`` may try again; 0 when it may now."""
        times = self._recent(address)
        if times is None or len(times) < self.failures:
            return 0.0
        return max(0.0, times[0] + self.window - self.clock())

    def failed(self, address: str) -> int:
        """Count one failure; the failures of this address within the window, this one included."""
        if address not in self._seen and len(self._seen) >= self.max_addresses:
            for a in list(self._seen):
                self._recent(a)
            if len(self._seen) >= self.max_addresses:
                self._seen.clear()
        times = self._seen.setdefault(address, deque(maxlen=self.failures))
        times.append(self.clock())
        return len(self._recent(address) or ())

    def succeeded(self, address: str) -> None:
        self._seen.pop(address, None)

    def _recent(self, address: str) -> deque[float] | None:
        times = self._seen.get(address)
        if times is None:
            return None
        limit = self.clock() - self.window
        while times and times[0] <= limit:
            times.popleft()
        if not times:
            del self._seen[address]
            return None
        return times
