"""What Protheus told the gateway, kept in SQLite so that a restart or a crash loses none of it.

Per link and device: the device string as Protheus wrote it, its eventing
URLs, how many Protheus processes hold it in service, the agent and groups
logged on it. Written before the SOAP answer that changed it. Passwords are
never stored. At start the links are rebuilt from it, then checked against
the PABX (resync).
"""
from __future__ import annotations

import json
import logging
import sqlite3
from pathlib import Path

from .core.model import Agent, Device, Switch
from .core.pabx import AgentState

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
    PRIMARY KEY (link_id, name)
)
"""


class Registry:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: every statement commits at once; WAL makes that cheap and crash-safe
        self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute(_SCHEMA)
        self.writes = 0

    def save(self, link_id: int, dev: Device) -> None:
        """Store ``dev`` as it is now, or forget it once no Protheus process holds it and no agent is on it."""
        agent = dev.agent if dev.agent is not None and dev.agent.state is not AgentState.LOGGED_OFF else None
        if dev.in_service == 0 and agent is None:
            self.db.execute("DELETE FROM devices WHERE link_id = ? AND name = ?", (link_id, dev.name))
        else:
            self.db.execute(
                "INSERT OR REPLACE INTO devices VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (link_id, dev.name, dev.wire_name, json.dumps(dev.event_urls), dev.in_service,
                 agent.agent_id if agent else None, ",".join(agent.groups) if agent else None,
                 agent.state.value if agent else None))
        self.writes += 1

    def restore(self, link_id: int, switch: Switch) -> list[Device]:
        """Put the link's stored devices back into ``switch``; returns them."""
        rows = self.db.execute(
            "SELECT name, wire_name, event_urls, in_service, agent_id, agent_groups, agent_state "
            "FROM devices WHERE link_id = ? ORDER BY name", (link_id,)).fetchall()
        restored = []
        for name, wire, urls, in_service, agent_id, groups, state in rows:
            dev = switch.ensure_device(name, wire)
            dev.event_urls = [u for u in json.loads(urls) if isinstance(u, str)]
            dev.in_service = int(in_service)
            if agent_id is not None:
                dev.agent = Agent(agent_id, tuple(g for g in (groups or "").split(",") if g),
                                  AgentState(state) if state else AgentState.LOGGED_ON)
            restored.append(dev)
        return restored

    def close(self) -> None:
        self.db.close()
