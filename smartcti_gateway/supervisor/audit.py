"""The supervisor's audit log: one line per action (and sign-in), appended to its own file.

A line is ``key=value`` pairs (logfmt), a value in double quotes (JSON escapes) when it holds blanks,
quotes, ``=`` or control characters, so that nothing sent by a browser or the PABX can forge a line::

    2025-01-31T10:02:03-03:00 user=maria address=10.0.0.7 link=1 action=pause device=2001 reason=1 call_id= result=0 message=done

The file is created with mode 0640. Nothing secret is ever written: a password is never passed here.
"""
from __future__ import annotations

import json
import logging
import os
import re
import threading
from datetime import datetime
from pathlib import Path

log = logging.getLogger("smartcti_gateway.supervisor")

FIELDS = ("user", "address", "link", "action", "device", "reason", "call_id", "result", "message")
_BARE = re.compile(r"[^\s\"=\\\x00-\x1f\x7f]*")
MAX_VALUE = 300


def quote(value: object) -> str:
    text = "" if value is None else str(value)
    text = text[:MAX_VALUE]
    return text if _BARE.fullmatch(text) else json.dumps(text, ensure_ascii=False)


def line(**fields: object) -> str:
    stamp = datetime.now().astimezone().isoformat(timespec="seconds")
    return stamp + "".join(f" {k}={quote(fields.get(k, ''))}" for k in FIELDS) + "\n"


class AuditLog:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.failures = 0
        self._lock = threading.Lock()

    def write(self, **fields: object) -> None:
        """Append one line; a disk problem is logged, never raised: the action has been done already."""
        text = line(**fields).encode("utf-8")
        try:
            with self._lock:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
                try:
                    if os.fstat(fd).st_size == 0 and hasattr(os, "fchmod"):
                        os.fchmod(fd, 0o640)     # whatever the umask: the audit is not for everybody
                    os.write(fd, text)
                finally:
                    os.close(fd)
        except OSError as e:
            self.failures += 1
            log.error("supervisor: cannot write the audit log %s (%s); the action was: %s", self.path, e,
                      text.decode().strip())
