"""The protocol numbers and their records, in SQLite: allocated atomically, durably, never twice.

A number is taken inside one ``BEGIN IMMEDIATE`` transaction that bumps the day's counter and writes the
record, committed with ``synchronous=FULL`` before anyone hears the number: a crash, a kill -9 or a power
cut after the caller heard it cannot give it to someone else. Several gateway processes (or links, or
channels) may share one file: SQLite's write lock makes them take turns. The day's counters are kept for
good, so a clock set back, or records purged by the retention, never hand out a number again; and the
number is the primary key, so even a changed layout cannot repeat one.

The same call asking twice (an IVR that runs again after a transfer, the API asked with the CALLID the
screen pop carried) gets the same number: call ids are remembered with the number for ``call_window``
seconds (a PABX's call ids may come round again after a restart).
"""
from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import functools
import sqlite3
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone, tzinfo
from pathlib import Path
from typing import Callable, Iterator

from .layout import Layout, day_of

log = logging.getLogger("smartcti_gateway.ans.store")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS days (day TEXT PRIMARY KEY, last INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS protocols (
    number TEXT PRIMARY KEY,
    day TEXT NOT NULL,
    created REAL NOT NULL,
    updated REAL NOT NULL,
    channel TEXT NOT NULL,
    source TEXT NOT NULL,
    status TEXT NOT NULL,
    ani TEXT NOT NULL DEFAULT '',
    dnis TEXT NOT NULL DEFAULT '',
    beneficiary TEXT NOT NULL DEFAULT '',
    reference TEXT NOT NULL DEFAULT '',
    link_id INTEGER,
    device TEXT NOT NULL DEFAULT '',
    agent TEXT NOT NULL DEFAULT '',
    recording TEXT NOT NULL DEFAULT '',
    history TEXT NOT NULL DEFAULT '[]'
);
CREATE INDEX IF NOT EXISTS protocols_created ON protocols (created);
CREATE INDEX IF NOT EXISTS protocols_beneficiary ON protocols (beneficiary) WHERE beneficiary <> '';
CREATE TABLE IF NOT EXISTS protocol_calls (
    call_id TEXT NOT NULL,
    number TEXT NOT NULL,
    created REAL NOT NULL,
    PRIMARY KEY (call_id, number)
);
CREATE INDEX IF NOT EXISTS protocol_calls_number ON protocol_calls (number);
"""

CSV_COLUMNS = ("number", "created", "channel", "source", "status", "ani", "dnis", "beneficiary", "reference",
               "call_ids", "link_id", "device", "agent", "recording", "updated")


class ProtocolError(RuntimeError):
    """No number could be issued; ``str()`` says why and what to do."""


class DayExhausted(ProtocolError):
    """Every sequence number of the day is taken."""


class StoreFailed(ProtocolError):
    """The database could not be written (disk full, file locked too long, read-only)."""


@dataclass
class Record:
    number: str
    created: float
    updated: float
    channel: str
    source: str                      # gateway | external | fallback (the external generator failed)
    status: str                      # issued, announced, caller_hung_up, ringing, answered, ended
    ani: str = ""
    dnis: str = ""
    beneficiary: str = ""
    reference: str = ""
    link_id: int | None = None
    device: str = ""
    agent: str = ""
    recording: str = ""
    call_ids: list[str] = field(default_factory=list)
    history: list[list] = field(default_factory=list)   # [unix time, status, note]

    def public(self, tz: tzinfo = timezone.utc) -> dict:
        """The record as the API returns it: times in ISO 8601 in the numbers' time zone."""
        fields = asdict(self)
        out = {"protocol": fields.pop("number"), **fields}
        for key in ("created", "updated"):
            out[key] = _iso(out[key], tz)
        out["history"] = [{"at": _iso(t, tz), "status": s, **({"note": n} if n else {})} for t, s, n in self.history]
        return out


def _iso(t: float, tz: tzinfo) -> str:
    return datetime.fromtimestamp(t, tz).isoformat(timespec="seconds")


def _locked(method):
    @functools.wraps(method)
    def locked(self, *args, **kwargs):
        with self._lock:
            return method(self, *args, **kwargs)
    return locked


class ProtocolStore:
    def __init__(self, path: str | Path, layout: Layout, tz: tzinfo, *,
                 clock: Callable[[], float] = time.time, call_window: float = 12 * 3600):
        self.path = Path(path) if str(path) != ":memory:" else None
        self.layout, self.tz, self.clock, self.call_window = layout, tz, clock, call_window
        self._lock = threading.RLock()     # one connection: its transactions one at a time (threads)
        try:
            if self.path is not None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            # isolation_level=None: transactions are ours (BEGIN IMMEDIATE), not the module's guesses
            self.db = sqlite3.connect(str(path), isolation_level=None, timeout=5.0, check_same_thread=False)
            self.db.execute("PRAGMA journal_mode=WAL")
            # what a record becomes later (rang, answered) may wait for the next checkpoint; a number issued
            # may not: issue() commits with synchronous=FULL, an fsync before the caller hears it
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.executescript(_SCHEMA)
        except (sqlite3.Error, OSError) as e:
            raise StoreFailed(f"cannot open the protocol database {path} ({e}); check protocol.database, the "
                              f"folder's permissions and the disk") from None

    def close(self) -> None:
        self.db.close()

    @contextlib.contextmanager
    def _transaction(self, durable: bool = False):
        """One write transaction, taken at once (BEGIN IMMEDIATE: processes sharing the file take turns);
        ``durable``: its commit is on the disk before this returns (synchronous=FULL)."""
        if durable:
            self.db.execute("PRAGMA synchronous=FULL")
        try:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                yield
                self.db.execute("COMMIT")
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
        finally:
            if durable:
                self.db.execute("PRAGMA synchronous=NORMAL")

    # --------------------------------------------------------------- issue
    @_locked
    def issue(self, channel: str, *, call_id: str = "", ani: str = "", dnis: str = "", beneficiary: str = "",
              reference: str = "", link_id: int | None = None, device: str = "", number: str = "",
              source: str = "gateway") -> tuple[Record, bool]:
        """A new number for an attendance, or the one this call already has: (record, new?).
        ``number`` given: store a number an external generator made."""
        now = self.clock()
        known = None
        try:
            with self._transaction(durable=True):
                if call_id:
                    known = self.db.execute(
                        "SELECT number FROM protocol_calls WHERE call_id = ? AND created >= ? "
                        "ORDER BY created DESC LIMIT 1", (call_id, now - self.call_window)).fetchone()
                if known is None:
                    number = self._insert(channel, now, number, source, call_id=call_id, ani=ani, dnis=dnis,
                                          beneficiary=beneficiary, reference=reference, link_id=link_id,
                                          device=device)
        except sqlite3.Error as e:
            raise StoreFailed(f"the protocol database {self.path or ':memory:'} could not be written ({e}); "
                              f"check the disk and the file's permissions") from None
        if known is not None:
            return self.get(known[0]), False
        return self.get(number), True

    def _insert(self, channel: str, now: float, number: str, source: str, *, call_id: str, **values) -> str:
        day = day_of(datetime.fromtimestamp(now, timezone.utc), self.tz)
        if not number:
            number = self._next(day.isoformat(), day)
        elif self.db.execute("SELECT 1 FROM protocols WHERE number = ?", (number,)).fetchone():
            raise ProtocolError(f"the external generator returned {number}, which was already issued: "
                                f"it must never give a number twice")
        self.db.execute(
            "INSERT INTO protocols (number, day, created, updated, channel, source, status, ani, dnis, "
            "beneficiary, reference, link_id, device, history) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (number, day.isoformat(), now, now, channel, source, "issued", values["ani"], values["dnis"],
             values["beneficiary"], values["reference"], values["link_id"], values["device"],
             json.dumps([[now, "issued", channel]])))
        if call_id:
            self.db.execute("INSERT OR IGNORE INTO protocol_calls VALUES (?,?,?)", (call_id, number, now))
        return number

    def _next(self, key: str, day) -> str:
        row = self.db.execute("SELECT last FROM days WHERE day = ?", (key,)).fetchone()
        seq = row[0] if row else 0
        while True:
            seq += 1
            if seq > self.layout.capacity:
                raise DayExhausted(f"all {self.layout.capacity} protocol numbers of {key} are taken; none can be "
                                   f"issued until midnight ({self.tz}). Widen {{seq}} in protocol.layout")
            number = self.layout.render(day, seq)
            if not self.db.execute("SELECT 1 FROM protocols WHERE number = ?", (number,)).fetchone():
                break
        self.db.execute("INSERT INTO days (day, last) VALUES (?, ?) ON CONFLICT(day) DO UPDATE SET last = ?",
                        (key, seq, seq))
        return number

    # -------------------------------------------------------------- update
    @_locked
    def update(self, number: str, *, status: str = "", note: str = "", call_id: str = "",
               link_id: int | None = None, device: str = "", agent: str = "", recording: str = "") -> Record | None:
        """What happened to the attendance since: a call id it travelled with, who took it, a recording."""
        now = self.clock()
        try:
            with self._transaction():
                row = self.db.execute("SELECT history, status FROM protocols WHERE number = ?", (number,)).fetchone()
                if row is None:
                    return None
                history = json.loads(row[0])
                if status and status != row[1]:
                    history.append([now, status, note])
                    history = history[-50:]
                sets = {"updated": now, "history": json.dumps(history)}
                if status:
                    sets["status"] = status
                for key, value in (("link_id", link_id), ("device", device), ("agent", agent),
                                   ("recording", recording)):
                    if value not in (None, ""):
                        sets[key] = value
                self.db.execute(f"UPDATE protocols SET {', '.join(k + ' = ?' for k in sets)} WHERE number = ?",
                                (*sets.values(), number))
                if call_id:
                    self.db.execute("INSERT OR IGNORE INTO protocol_calls VALUES (?,?,?)", (call_id, number, now))
        except sqlite3.Error as e:
            log.error("protocol %s: could not record %s in %s (%s)", number, status or "an update",
                      self.path or ":memory:", e)
            return None
        return self.get(number)

    # --------------------------------------------------------------- read
    @_locked
    def get(self, number: str) -> Record | None:
        row = self.db.execute(f"SELECT {_COLUMNS} FROM protocols WHERE number = ?", (number,)).fetchone()
        return self._record(row) if row else None

    @_locked
    def by_call(self, call_id: str) -> list[Record]:
        rows = self.db.execute(f"SELECT {_COLUMNS} FROM protocols WHERE number IN "
                               f"(SELECT number FROM protocol_calls WHERE call_id = ?) ORDER BY created DESC",
                               (call_id,)).fetchall()
        return [self._record(r) for r in rows]

    @_locked
    def recent_for_call(self, call_id: str) -> str:
        """The number a call (still) carries, within the call window; "" when none."""
        row = self.db.execute("SELECT number FROM protocol_calls WHERE call_id = ? AND created >= ? "
                              "ORDER BY created DESC LIMIT 1", (call_id, self.clock() - self.call_window)).fetchone()
        return row[0] if row else ""

    @_locked
    def by_beneficiary(self, beneficiary: str, limit: int = 100) -> list[Record]:
        rows = self.db.execute(f"SELECT {_COLUMNS} FROM protocols WHERE beneficiary = ? ORDER BY created DESC "
                               f"LIMIT ?", (beneficiary, limit)).fetchall()
        return [self._record(r) for r in rows]

    @_locked
    def latest(self, limit: int = 10) -> list[Record]:
        rows = self.db.execute(f"SELECT {_COLUMNS} FROM protocols ORDER BY created DESC, number DESC LIMIT ?",
                               (limit,)).fetchall()
        return [self._record(r) for r in rows]

    @_locked
    def count_day(self, day: str) -> int:
        return self.db.execute("SELECT COUNT(*) FROM protocols WHERE day = ?", (day,)).fetchone()[0]

    def today(self) -> str:
        return day_of(datetime.fromtimestamp(self.clock(), timezone.utc), self.tz).isoformat()

    def _record(self, row) -> Record:
        values = dict(zip(_FIELDS, row))
        values["history"] = json.loads(values["history"])
        calls = self.db.execute("SELECT call_id FROM protocol_calls WHERE number = ? ORDER BY created",
                                (values["number"],)).fetchall()
        return Record(**values, call_ids=[c[0] for c in calls])

    # ---------------------------------------------------- audit and retention
    def export_csv(self, since: float = 0.0, until: float | None = None) -> Iterator[str]:
        """The records created in [since, until) as CSV lines (a header first), oldest first."""
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\r\n")
        writer.writerow(CSV_COLUMNS)
        yield buf.getvalue()
        for r in self.export_rows(since, until):
            buf.seek(0)
            buf.truncate()
            public = r.public(self.tz)
            public["call_ids"] = " ".join(r.call_ids)
            public["number"] = public.pop("protocol")
            writer.writerow(["" if public[c] is None else _csv_safe(str(public[c])) for c in CSV_COLUMNS])
            yield buf.getvalue()

    @_locked
    def export_rows(self, since: float, until: float | None) -> list[Record]:
        rows = self.db.execute(f"SELECT {_COLUMNS} FROM protocols WHERE created >= ? AND created < ? "
                               f"ORDER BY created, number", (since, until if until is not None else 1e18)).fetchall()
        return [self._record(row) for row in rows]

    @_locked
    def purge(self, older_than: float) -> int:
        """Records created before ``older_than`` (unix time) are deleted; the day counters stay."""
        try:
            with self._transaction():
                numbers = [r[0] for r in self.db.execute("SELECT number FROM protocols WHERE created < ?",
                                                         (older_than,))]
                for i in range(0, len(numbers), 500):
                    chunk = numbers[i:i + 500]
                    marks = ",".join("?" * len(chunk))
                    self.db.execute(f"DELETE FROM protocol_calls WHERE number IN ({marks})", chunk)
                    self.db.execute(f"DELETE FROM protocols WHERE number IN ({marks})", chunk)
        except sqlite3.Error as e:
            log.error("protocol records: the retention purge failed (%s); it is tried again in a day", e)
            return 0
        return len(numbers)


_FIELDS = ("number", "created", "updated", "channel", "source", "status", "ani", "dnis", "beneficiary",
           "reference", "link_id", "device", "agent", "recording", "history")
_COLUMNS = ", ".join(_FIELDS)


def _csv_safe(value: str) -> str:
    """A cell a spreadsheet will not run as a formula (=, +, -, @ first: CSV injection)."""
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value
