"""One log line per key (a client address) per interval, and how many were held back meanwhile."""
from __future__ import annotations

import time
from typing import Callable


class OncePer:
    def __init__(self, every: float, *, max_keys: int = 10_000, clock: Callable[[], float] = time.monotonic):
        self.every = every
        self.max_keys = max_keys
        self.clock = clock
        self._keys: dict[str, list] = {}   # key -> [time the next line may be written, lines held back]

    def __call__(self, key: str) -> int | None:
        """None: hold this line back. Otherwise write it, saying how many were held back before it."""
        now = self.clock()
        entry = self._keys.get(key)
        if entry is not None and now < entry[0]:
            entry[1] += 1
            return None
        if len(self._keys) >= self.max_keys:      # bounded, whatever a scan of many addresses does
            self._keys = {k: e for k, e in self._keys.items() if now < e[0]}
            if len(self._keys) >= self.max_keys:
                self._keys.clear()
        self._keys[key] = [now + self.every, 0]
        return entry[1] if entry is not None else 0
