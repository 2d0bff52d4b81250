"""Malformed HTTP requests (a 20 KB header, 200 headers, a negative or doubled Content-Length, TLS
sent to a plain port) are refused by aiohttp with 400, which logs each one at ERROR with a traceback.
This filter turns that into one WARNING line naming the client and the problem, at most once a minute
per client address: a scanner cannot flood the log, and an operator still hears of a misconfigured
client."""
from __future__ import annotations

import logging
import time
from typing import Callable

from aiohttp.http_exceptions import HttpProcessingError

from .extlog import clip
from .ratelimit import OncePer


class BadRequestLog(logging.Filter):
    EVERY = 60.0          # seconds between two lines about one client address

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        super().__init__()
        self.once = OncePer(self.EVERY, clock=clock)
        self.refused = 0

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if not isinstance(exc, HttpProcessingError) or not str(record.msg).startswith("Error handling request"):
            return True
        self.refused += 1
        remote = str(record.args[0]) if isinstance(record.args, tuple) and record.args else "(unknown)"
        more = self.once(remote)
        if more is None:
            return False
        problem = clip(" ".join(str(exc.message or type(exc).__name__).split()), 100)
        record.msg = "refused a malformed HTTP request from %s with %d: %s%s"
        record.args = (remote, exc.code or 400, problem,
                       f" ({more} more from this address since the last line)" if more else "")
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        record.exc_info = record.exc_text = None
        return True


_installed: list = []     # [the process's filter, gateways using it]


def install() -> BadRequestLog:
    """Put the filter on aiohttp's server logger: one per process (the logger is), shared by its gateways."""
    if not _installed:
        f = BadRequestLog()
        logging.getLogger("aiohttp.server").addFilter(f)
        _installed[:] = [f, 0]
    _installed[1] += 1
    return _installed[0]


def remove(f: BadRequestLog) -> None:
    if _installed and _installed[0] is f:
        _installed[1] -= 1
        if _installed[1] == 0:
            logging.getLogger("aiohttp.server").removeFilter(f)
            _installed.clear()
