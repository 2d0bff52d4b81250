"""Queue statistics of one link, without I/O: who waits in each ACD group, and today's answered and
abandoned calls with their waits.

Fed with the neutral ``QueueEvent``s of core/pabx.py — from the PABX's own queue events (Asterisk's
QueueCallerJoin, AgentConnect...), or, for a switch that has none (Dígitro), from ``PolledQueues``,
which diffs the waiting lists the link polls (QueryGroupCalls). The clock is injected (epoch seconds,
``time.time``): "today" is the calendar day in the site's time zone, and the counts start again at its
midnight. Memory is bounded: waiting calls per group, groups, and answered waits kept as a histogram of
whole seconds (exact for any whole-second service-level threshold)::

    stats = QueueStats()
    stats.on_event(QueueEvent(QueueEventKind.JOINED, "701", "c1", "4832810000"))
    stats.snapshot(20)["701"].waiting[0].since      # epoch seconds
"""
from __future__ import annotations

import math
import time
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone, tzinfo
from typing import Callable, Container

from .pabx import ConnectionState as CS, GroupCall, QueueEvent, QueueEventKind as K

DEFAULT_TIMEZONE = "America/Sao_Paulo"
BRASILIA = timezone(timedelta(hours=-3), "BRT")     # no daylight saving time since 2019
MAX_WAITING = 10_000       # waiting calls kept per group; more are counted as dropped
MAX_GROUPS = 1_000         # groups kept per link (a PABX naming a new queue in every event cannot grow it)
MAX_LEFT = 1_000           # calls that left the queue, kept per group until the PABX says how
MAX_WAIT_BUCKET = 86_400   # longer waits share the last histogram bucket


def site_zone(name: str = DEFAULT_TIMEZONE) -> tzinfo:
    """The zone whose midnight starts a new day; without tzdata, Brasília's fixed UTC−3 (exact since 2019)."""
    try:
        from zoneinfo import ZoneInfo
        return ZoneInfo(name)
    except Exception:  # noqa: BLE001 - ZoneInfoNotFoundError, ValueError, no tzdata at all
        return BRASILIA


@dataclass(frozen=True)
class WaitingCall:
    call_id: str
    calling: str
    since: float               # epoch seconds it began to wait


@dataclass(frozen=True)
class GroupQueue:
    """One group as the supervisor's board reads it."""

    group: str
    waiting: list[WaitingCall]         # oldest first
    answered: int                      # today
    abandoned: int                     # today
    service_level: float | None        # answered within the threshold / answered today; None: none answered
    dropped: int = 0                   # waiting calls not kept (over MAX_WAITING) since start


@dataclass
class _Group:
    waiting: OrderedDict[str, WaitingCall] = field(default_factory=OrderedDict)
    left: OrderedDict[str, WaitingCall] = field(default_factory=OrderedDict)   # left, outcome not said yet
    answered: int = 0
    abandoned: int = 0
    waits: Counter[int] = field(default_factory=Counter)      # whole seconds (rounded up) -> answered calls
    dropped: int = 0


class QueueStats:
    def __init__(self, clock: Callable[[], float] = time.time, zone: tzinfo | str = DEFAULT_TIMEZONE):
        self.clock = clock
        self.zone = site_zone(zone) if isinstance(zone, str) else zone
        self._groups: dict[str, _Group] = {}
        self._day: date | None = None
        # since start, for /metrics (counters never go back; today's counts do at midnight)
        self.answered_total: Counter[str] = Counter()
        self.abandoned_total: Counter[str] = Counter()
        self.groups_dropped = 0
        self.events = 0

    # ----------------------------------------------------------- events in
    def on_event(self, ev: QueueEvent) -> None:
        """Never raises for what a PABX may send: a missing id, a wait that is not a number."""
        if not isinstance(ev, QueueEvent) or not ev.group:
            return
        now = self.clock()
        self._roll(now)
        g = self._group(ev.group)
        if g is None:
            return
        self.events += 1
        waited = _seconds(ev.waited)
        if ev.kind is K.JOINED:
            self._joined(g, ev, now, waited)
        elif ev.kind is K.LEFT:
            call = g.waiting.pop(ev.call_id, None)
            if call is not None:
                g.left[ev.call_id] = call
                while len(g.left) > MAX_LEFT:
                    g.left.popitem(last=False)
        elif ev.kind in (K.ANSWERED, K.ABANDONED):
            call = g.waiting.pop(ev.call_id, None) or g.left.pop(ev.call_id, None)
            if waited is None:
                waited = max(0.0, now - call.since) if call is not None else 0.0
            if ev.kind is K.ANSWERED:
                g.answered += 1
                g.waits[min(MAX_WAIT_BUCKET, math.ceil(waited))] += 1
                self.answered_total[ev.group] += 1
            else:
                g.abandoned += 1
                self.abandoned_total[ev.group] += 1

    def _joined(self, g: _Group, ev: QueueEvent, now: float, waited: float | None) -> None:
        if not ev.call_id:
            return
        known = g.waiting.get(ev.call_id) or g.left.pop(ev.call_id, None)
        since = now - waited if waited is not None else (known.since if known is not None else now)
        if ev.call_id not in g.waiting and len(g.waiting) >= MAX_WAITING:
            g.dropped += 1
            return
        g.waiting[ev.call_id] = WaitingCall(ev.call_id, ev.calling or (known.calling if known else ""), since)

    def _group(self, name: str) -> _Group | None:
        g = self._groups.get(name)
        if g is None:
            if len(self._groups) >= MAX_GROUPS:
                self.groups_dropped += 1
                return None
            g = self._groups[name] = _Group()
        return g

    def _roll(self, now: float) -> None:
        """A new day in the site's zone: today's counts start again; who waits still waits."""
        day = datetime.fromtimestamp(now, self.zone).date()
        if day != self._day:
            if self._day is not None:
                for g in self._groups.values():
                    g.answered = g.abandoned = 0
                    g.waits.clear()
                    g.left.clear()
                for name in [n for n, g in self._groups.items() if not g.waiting]:
                    del self._groups[name]
            self._day = day

    # ------------------------------------------------------------ reading
    def snapshot(self, service_level_seconds: float) -> dict[str, GroupQueue]:
        """Every group with a caller waiting or a call today, by name."""
        self._roll(self.clock())
        out = {}
        for name, g in sorted(self._groups.items()):
            within = sum(n for wait, n in g.waits.items() if wait <= service_level_seconds)
            level = within / g.answered if g.answered else None
            waiting = sorted(g.waiting.values(), key=lambda c: c.since)
            out[name] = GroupQueue(name, waiting, g.answered, g.abandoned, level, g.dropped)
        return out

    def waiting_counts(self) -> dict[str, int]:
        return {name: len(g.waiting) for name, g in sorted(self._groups.items())}


def _seconds(value) -> float | None:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


# ------------------------------------------------- a switch without queue events
@dataclass(frozen=True)
class Seen:
    """A call of a polled waiting list: since when it waits; when it vanished from the list, if it did."""

    since: float
    calling: str = ""
    left_at: float | None = None


REACHED = (CS.ALERTING, CS.CONNECTED, CS.HELD)


def diff_waiting(group: str, previous: dict[str, Seen], calls: list[GroupCall], reached: Container[str],
                 now: float, grace: float, counted: Container[str] = ()) -> tuple[list[QueueEvent], dict[str, Seen]]:
    """One poll of ``group``'s calls (QueryGroupCalls) against the previous one: the events it means, and
    the state for the next.

    A QUEUED call not seen before JOINED; one no longer listed LEFT, then ANSWERED with its wait once it is
    seen at an agent (listed with an agent's device, or its id in ``reached``: the call ids agents got,
    from the model), or ABANDONED when ``grace`` seconds pass without that (the event that it rang may
    come after the poll). A call first seen already at an agent waited less than a poll: ANSWERED with
    no wait known (counted as 0), unless ``counted`` says it was already.
    """
    events: list[QueueEvent] = []
    queued: dict[str, GroupCall] = {}
    at_agent: dict[str, GroupCall] = {}
    for c in calls:
        if not isinstance(c, GroupCall) or not c.call_id:
            continue
        if c.state is CS.QUEUED and len(queued) < MAX_WAITING:
            queued.setdefault(c.call_id, c)
        elif c.state in REACHED and c.device:
            at_agent.setdefault(c.call_id, c)
    nxt: dict[str, Seen] = {}
    for cid, c in queued.items():
        seen = previous.get(cid)
        if seen is None or seen.left_at is not None:      # new, or back in the queue after leaving it
            since = seen.since if seen is not None else now
            events.append(QueueEvent(K.JOINED, group, cid, c.calling, waited=now - since))
            nxt[cid] = Seen(since, c.calling or (seen.calling if seen else ""))
        else:
            nxt[cid] = seen
    for cid, seen in previous.items():
        if cid in queued:
            continue
        left_at = seen.left_at if seen.left_at is not None else now
        if seen.left_at is None:
            events.append(QueueEvent(K.LEFT, group, cid, seen.calling))
        if cid in at_agent or cid in reached:
            agent = at_agent[cid].device if cid in at_agent else ""
            events.append(QueueEvent(K.ANSWERED, group, cid, seen.calling, waited=max(0.0, left_at - seen.since),
                                     agent=agent))
        elif now - left_at >= grace:
            events.append(QueueEvent(K.ABANDONED, group, cid, seen.calling, waited=max(0.0, left_at - seen.since)))
        elif len(nxt) < 2 * MAX_WAITING:
            nxt[cid] = Seen(seen.since, seen.calling, left_at)
    for cid, c in at_agent.items():
        if cid not in previous and cid not in counted:
            events.append(QueueEvent(K.ANSWERED, group, cid, c.calling, waited=0.0, agent=c.device))
    return events, nxt


class PolledQueues:
    """The waiting lists of the groups a link polls, kept between polls (``diff_waiting`` per group)."""

    def __init__(self, grace: float = 5.0):
        self.grace = grace
        self._seen: dict[str, dict[str, Seen]] = {}
        self._counted: dict[str, set[str]] = {}     # answered calls still listed at an agent: not twice

    def poll(self, group: str, calls: list[GroupCall], reached: Container[str], now: float) -> list[QueueEvent]:
        counted = self._counted.get(group, set())
        events, self._seen[group] = diff_waiting(group, self._seen.get(group, {}), calls, reached, now,
                                                 self.grace, counted)
        listed = {c.call_id for c in calls if isinstance(c, GroupCall)}
        answered = {e.call_id for e in events if e.kind is K.ANSWERED}
        # forgotten once no longer listed; answered now, kept at least until the next poll
        self._counted[group] = {cid for cid in counted if cid in listed} | answered
        return events

    def keep_only(self, groups: set[str]) -> list[QueueEvent]:
        """Groups no longer polled (no agent of theirs logged on): their callers are no longer followed."""
        events = []
        for group in [g for g in self._seen if g not in groups]:
            for cid, seen in self._seen.pop(group).items():
                if seen.left_at is None:
                    events.append(QueueEvent(K.LEFT, group, cid, seen.calling))
            self._counted.pop(group, None)
        return events

    @property
    def groups(self) -> list[str]:
        return sorted(self._seen)
