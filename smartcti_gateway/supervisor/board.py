"""What the board shows, as one plain dict: links -> groups and agents, no I/O.

Read from each link: ``switch`` (devices, agents, calls: core/model.py), and, when the link has them,
``queues`` (queue statistics: ``snapshot(service_level_seconds)`` -> group -> waiting, answered,
abandoned, service_level), ``pause_reasons`` (``name_of(raw)``, ``reasons``) and ``spy`` (with an
optional ``spy_supported`` flag). Every attribute that another module adds is read with a default, so
that the board works with the links as they are.

Times are whole seconds elapsed (time in state, call duration, waiting time), counted from the switch's
clock (monotonic) or, for queue waits, from ``now`` (epoch). ``signature`` leaves them out: the stream
sends a snapshot when something else changed, and the page counts the seconds on by itself.
"""
from __future__ import annotations

import json
import logging
import time
from typing import Any, Iterable

from ..ratelimit import OncePer

log = logging.getLogger("smartcti_gateway.supervisor")

STATE_ORDER = ("busy", "work_after_call", "ready", "not_ready", "logged_on", "logged_off")
CALL_ORDER = ("connected", "alerting", "initiated", "held", "queued")   # which call of a device is shown
PAUSED = ("not_ready", "work_after_call")
TIMES = frozenset({"seconds", "generated"})
_complaints = OncePer(60.0)


def build(links: Iterable[Any], *, service_level_seconds: float, now: float | None = None) -> dict:
    now = time.time() if now is None else now
    return {"generated": int(now), "service_level_seconds": service_level_seconds,
            "links": [link_view(link, service_level_seconds, now) for link in links]}


def signature(board: dict) -> str:
    """The board without its elapsed times: equal signatures, nothing new to send."""
    def strip(v):
        if isinstance(v, dict):
            return {k: strip(x) for k, x in v.items() if k not in TIMES}
        if isinstance(v, list):
            return [strip(x) for x in v]
        return v
    return json.dumps(strip(board), sort_keys=True, separators=(",", ":"))


def natural(name: str) -> tuple:
    return (0, int(name), name) if name.isdigit() else (1, 0, name)


def _value(x: Any) -> str:
    return str(getattr(x, "value", x) or "")


def _seconds(later: float, earlier: float) -> int | None:
    """Whole seconds from ``earlier`` to ``later``; None when ``earlier`` is 0 (not known: a call's
    ``started`` and a waiting call's ``since`` are 0 when nobody said)."""
    return max(0, int(later - earlier)) if earlier else None


# ------------------------------------------------------------------ one link
def link_view(link: Any, service_level_seconds: float, now: float) -> dict:
    switch = link.switch
    mono = switch.clock()
    reasons = getattr(link, "pause_reasons", None)
    agents = [agent_view(switch, dev, mono, reasons)
              for dev in sorted(switch.devices.values(), key=lambda d: natural(d.name))]
    stats = queue_stats(link, service_level_seconds)
    health = getattr(link, "health", None)
    names = {a["device"]: a for a in agents}
    groups = {g for a in agents for g in a["groups"]} | set(stats or {})
    groups |= {c.group for c in switch.calls.values() if c.group and any(p in names for p in c.connections)}
    return {
        "link": link.link_id, "name": getattr(link, "name", "") or f"link {link.link_id}",
        "up": bool(getattr(health, "up", True)), "down_reason": str(getattr(health, "reason", "") or ""),
        "queues": stats is not None, "spy": spy_offered(link),
        "pause_reasons": [{"code": str(r.code), "name": str(r.name)} for r in getattr(reasons, "reasons", ()) or ()],
        "groups": [group_view(g, agents, (stats or {}).get(g), stats is not None, now)
                   for g in sorted(groups, key=natural)],
        "agents": agents,
    }


def spy_offered(link: Any) -> bool:
    """Listen, whisper and barge buttons: the link has ``spy``, and does not say its PABX cannot."""
    return callable(getattr(link, "spy", None)) and getattr(link, "spy_supported", True) is not False


def agent_view(switch: Any, dev: Any, mono: float, reasons: Any) -> dict:
    agent = dev.agent
    state = _value(switch.agent_state(dev.name))
    calls = [c for c in switch.calls_of(dev.name) if dev.name in c.connections]
    active = [c for c in calls if _value(c.connections[dev.name]) in CALL_ORDER]
    since = getattr(agent, "since", 0.0) if agent is not None else 0.0
    if state == "busy" and active and all(c.started for c in active):
        since = min(c.started for c in active)     # busy since its call began, whatever it pressed meanwhile
    reason = agent.reason if agent is not None and state in PAUSED else ""
    shown = min(calls, key=lambda c: CALL_ORDER.index(_value(c.connections[dev.name]))
                if _value(c.connections[dev.name]) in CALL_ORDER else len(CALL_ORDER), default=None)
    return {
        "device": dev.name,
        "agent": agent.agent_id if agent is not None else "",
        "name": str(getattr(agent, "name", "") or "") if agent is not None else "",
        "groups": list(agent.groups) if agent is not None and state != "logged_off" else [],
        "state": state,
        "seconds": max(0, int(mono - since)) if agent is not None else None,
        "reason": reason,
        "reason_name": reason_name(reasons, reason),
        **reason_ids(reasons, reason),
        "call": call_view(shown, dev.name, mono) if shown is not None else None,
        "calls": len(calls),
    }


def call_view(call: Any, device: str, mono: float) -> dict:
    state = _value(call.connections.get(device))
    answered = getattr(call, "answered", 0.0)
    start = answered if answered and state in ("connected", "held") else getattr(call, "started", 0.0)
    return {"call_id": call.call_id, "calling": call.calling, "called": call.called, "group": call.group,
            "direction": _value(call.direction), "state": state, "seconds": _seconds(mono, start)}


def reason_name(reasons: Any, raw: str) -> str:
    if not raw or reasons is None:
        return raw
    try:
        return str(reasons.name_of(raw))
    except Exception as e:  # noqa: BLE001 - another module's table: the raw reason will do
        _complain(f"pause reason {raw!r}", e)
        return raw


def reason_ids(reasons: Any, raw: str) -> dict:
    """The configured code and the dialler's "ID Status" of the reason the PABX reported ("" when unknown)."""
    known = reasons.by_pabx(raw) if raw and reasons is not None and hasattr(reasons, "by_pabx") else None
    return {"reason_code": getattr(known, "code", "") or "",
            "dialler_status_id": getattr(known, "dialler_status_id", "") or ""}


# -------------------------------------------------------------------- groups
def queue_stats(link: Any, service_level_seconds: float) -> dict | None:
    """group -> statistics from the link's queue statistics, or None when it has none (or they failed)."""
    queues = getattr(link, "queues", None)
    if queues is None:
        return None
    try:
        return dict(queues.snapshot(service_level_seconds))
    except Exception as e:  # noqa: BLE001 - the board goes on without the numbers
        _complain(f"queue statistics of link {link.link_id}", e)
        return None


def group_view(group: str, agents: list[dict], stats: Any, with_stats: bool, now: float) -> dict:
    members = sorted((a for a in agents if group in a["groups"]),
                     key=lambda a: (STATE_ORDER.index(a["state"]) if a["state"] in STATE_ORDER else 99,
                                    -(a["seconds"] or 0), natural(a["device"])))
    counts = {s: sum(1 for a in members if a["state"] == s) for s in STATE_ORDER}
    view: dict[str, Any] = {
        "group": group,
        "counts": {s: n for s, n in counts.items() if n},
        "agents": [{"device": a["device"], "agent": a["agent"], "name": a["name"], "state": a["state"],
                    "seconds": a["seconds"]} for a in members],
        "waiting": None, "answered": None, "abandoned": None, "service_level": None,
    }
    if not with_stats:
        return view
    waiting = sorted(getattr(stats, "waiting", None) or [], key=lambda w: getattr(w, "since", 0) or now)
    view["waiting"] = [{"call_id": str(getattr(w, "call_id", "")), "calling": str(getattr(w, "calling", "")),
                        "seconds": _seconds(now, getattr(w, "since", 0))} for w in waiting]
    for key in ("answered", "abandoned"):
        value = getattr(stats, key, None)
        view[key] = int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else (
            0 if stats is None else None)
    level = getattr(stats, "service_level", None)
    view["service_level"] = round(float(level), 4) if isinstance(level, (int, float)) and \
        not isinstance(level, bool) else None
    return view


def _complain(what: str, e: Exception) -> None:
    more = _complaints(what)
    if more is not None:
        log.warning("supervisor board: %s failed (%s: %s); shown without it", what, type(e).__name__, e)
