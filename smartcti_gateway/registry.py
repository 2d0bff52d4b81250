"""What Protheus told the gateway, kept in SQLite so that a restart or a crash loses none of it.

Per link and device in service: the spelling of the device of each Protheus session and its eventing
URL, how many AgentInService came, whether the PABX monitors it yet, the agent and groups logged on
it, when its wrap-up ends. Written before the SOAP answer that changed it; a device released by
Protheus is deleted. The calls Protheus was told of are written once a second for the devices whose
calls changed (``save_calls``): a restart's resync clears those the PABX no longer has.
Passwords are never stored. At start the links are rebuilt from it, then checked against the PABX
(resync).

One gateway owns a state file at a time: a second one started with the same file (two configs in one
folder, or the same config twice) is refused with a message naming the owner, instead of both
restoring each other's devices.
"""
from __future__ import annotations

import json
import logging
import os
import sqlite3
import time
from pathlib import Path

from .core.model import Device, Switch
from .core.pabx import AgentState, ConnectionState, Direction

log = logging.getLogger("smartcti_gateway.registry")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS devices (
    link_id INTEGER NOT NULL,
    name TEXT NOT NULL,
    wire_name TEXT NOT NULL,
    event_urls TEXT NOT NULL,
    in_service INTEGER NOT NULL,
    agent_id TEXT,
    agent_groups TEXT,
    agent_state TEXT,
    monitored INTEGER NOT NULL DEFAULT 1,
    wrap_up_at REAL,
    PRIMARY KEY (link_id, name)
)
"""


_CALLS = """
CREATE TABLE IF NOT EXISTS calls (
    link_id INTEGER NOT NULL,
    device TEXT NOT NULL,
    call_id TEXT NOT NULL,
    state TEXT NOT NULL,
    calling TEXT NOT NULL DEFAULT '',
    called TEXT NOT NULL DEFAULT '',
    grp TEXT NOT NULL DEFAULT '',
    direction TEXT NOT NULL DEFAULT 'unknown',
    PRIMARY KEY (link_id, device, call_id)
)
"""


class RegistryInUse(RuntimeError):
    """Another gateway process holds the state file."""


class _Lock:
    """An exclusive lock on ``<state file>.lock``, released by the OS when the process dies (kill -9)."""

    def __init__(self, path: Path, owner: str):
        self.path = path
        self.file = open(path, "a+", encoding="utf-8")
        try:
            if os.name == "nt":  # pragma: no cover - Windows
                import msvcrt
                self.file.seek(0)
                msvcrt.locking(self.file.fileno(), msvcrt.LK_NBLCK, 1)
            else:
                import fcntl
                fcntl.flock(self.file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self.file.seek(0)
            holder = self.file.read(300).strip() or "another process"
            self.file.close()
            raise RegistryInUse(holder) from None
        self.file.seek(0)
        self.file.truncate()
        self.file.write(f"pid {os.getpid()}, config {owner or '(none)'}\n")
        self.file.flush()

    def release(self) -> None:
        self.file.close()


class Registry:
    def __init__(self, path: str | Path, owner: str = ""):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._lock = _Lock(self.path.with_name(self.path.name + ".lock"), owner)
        except RegistryInUse as e:
            raise RegistryInUse(
                f"the state file {self.path} is in use by another smartcti-gateway ({e}). Two gateways "
                f"must not share it: each would restore the other's devices. Stop the other one, or give "
                f"this config its own state_file") from None
        # isolation_level=None: every statement commits at once; WAL makes that cheap and crash-safe
        self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute(_SCHEMA)
        self.db.execute(_CALLS)
        columns = {row[1] for row in self.db.execute("PRAGMA table_info(devices)")}
        if "monitored" not in columns:   # a state file of an earlier version
            self.db.execute("ALTER TABLE devices ADD COLUMN monitored INTEGER NOT NULL DEFAULT 1")
        if "wrap_up_at" not in columns:
            self.db.execute("ALTER TABLE devices ADD COLUMN wrap_up_at REAL")
        self.writes = 0

    def save(self, link_id: int, dev: Device, wrap_up_at: float | None = None) -> None:
        """Store ``dev`` as it is now; ``wrap_up_at``: when its wrap-up ends (time.time()), if it has one."""
        agent = dev.agent if dev.agent is not None and dev.agent.state is not AgentState.LOGGED_OFF else None
        self.db.execute(
            "INSERT OR REPLACE INTO devices (link_id, name, wire_name, event_urls, in_service, agent_id, "
            "agent_groups, agent_state, monitored, wrap_up_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (link_id, dev.name, dev.wire_name, json.dumps(list(dev.sessions)), dev.in_service,
             agent.agent_id if agent else None, ",".join(agent.groups) if agent else None,
             agent.state.value if agent else None, 1 if dev.monitored else 0, wrap_up_at if agent else None))
        self.writes += 1

    def forget(self, link_id: int, name: str) -> None:
        """Protheus released the device: nothing of it is restored any more."""
        self.db.execute("DELETE FROM devices WHERE link_id = ? AND name = ?", (link_id, name))
        self.db.execute("DELETE FROM calls WHERE link_id = ? AND device = ?", (link_id, name))
        self.writes += 1

    def save_calls(self, link_id: int, switch: Switch, devices: set[str]) -> None:
        """The calls these devices are in now, as Protheus was told of them, in one transaction: after a
        kill -9, the resync clears those the PABX no longer has (their CONNECTIONCLEARED was owed)."""
        rows = []
        for name in devices:
            for call in switch.calls_of(name):
                state = call.connections.get(name)
                if state is not None:
                    rows.append((link_id, name, call.call_id, state.value, call.calling, call.called, call.group,
                                 call.direction.value))
        with self.db:
            self.db.execute("BEGIN")
            self.db.executemany("DELETE FROM calls WHERE link_id = ? AND device = ?",
                                [(link_id, name) for name in devices])
            self.db.executemany("INSERT OR REPLACE INTO calls VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
        self.writes += 1

    def restore(self, link_id: int, switch: Switch) -> list[Device]:
        """Put the link's stored devices back into ``switch``; returns them."""
        rows = self.db.execute(
            "SELECT name, wire_name, event_urls, in_service, agent_id, agent_groups, agent_state, monitored, "
            "wrap_up_at FROM devices WHERE link_id = ? AND in_service > 0 ORDER BY name", (link_id,)).fetchall()
        restored = []
        now = time.time()
        for name, wire, urls, in_service, agent_id, groups, state, monitored, wrap_up_at in rows:
            dev = switch.put_in_service(name, wire, "")
            dev.sessions = dict.fromkeys(_sessions(json.loads(urls), wire))
            dev.in_service = int(in_service)
            dev.monitored = bool(monitored)
            if agent_id is not None:
                dev.agent = switch.new_agent(agent_id, tuple(g for g in (groups or "").split(",") if g),
                                             AgentState(state) if state else AgentState.LOGGED_ON)
                if wrap_up_at is not None and dev.agent.state is AgentState.WORK_AFTER_CALL:
                    # the timer goes on where it was: an agent is never left paused by a restart
                    dev.wrap_up_until = switch.clock() + max(0.0, wrap_up_at - now)
                    dev.wrap_up_started = switch.clock() - 3600
            restored.append(dev)
        names = {d.name for d in restored}
        for device, call_id, state, calling, called, grp, direction in self.db.execute(
                "SELECT device, call_id, state, calling, called, grp, direction FROM calls WHERE link_id = ? "
                "ORDER BY rowid", (link_id,)):
            if device in names:
                switch.restore_call(device, call_id, ConnectionState(state), calling, called, grp,
                                    Direction(direction))
        return restored

    def close(self) -> None:
        self.db.close()
        self._lock.release()


def _sessions(stored: object, wire: str) -> list[tuple[str, str]]:
    """[(url, spelling)] from what was stored: pairs, or (an earlier version) bare URLs of one spelling."""
    out = []
    for item in stored if isinstance(stored, list) else []:
        if isinstance(item, str):
            out.append((item, wire))
        elif isinstance(item, list) and len(item) == 2 and all(isinstance(x, str) for x in item):
            out.append((item[0], item[1]))
    return out
