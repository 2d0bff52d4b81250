"""Event delivery to Protheus: in order per device and URL, concurrent across them, bounded in time and space.

Each (device, eventing URL) pair has its own queue and, while it has work,
its own task: a slow or absent Protheus delays only the devices it serves.
Transport errors are retried with capped exponential backoff and jitter; an
event older than its time-to-live is dropped and counted (a RINGING ten
minutes late helps nobody); a queue that overflows drops its oldest event and
counts it; RETURNCODE 99 (no Protheus session for the device) is counted and,
after ``release_after_99`` in a row for one session (URL and spelling of the
device), that session is released. After a device's
AgentOutOfService nothing more is sent or retried for it (``forget``).

Trouble with one URL is logged once when it starts, then summarised at most
once per ``report_every`` seconds (attempts failed, events dropped, the last
error), and once more when the URL answers again: a Protheus down for a minute
writes a handful of lines, not one per event.
"""
from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Callable

from ..core.notify import Notification
from ..extlog import NO_TRACE, Trace
from .eventing import DeliveryError, EventingClient

log = logging.getLogger("smartcti_gateway.delivery")

NO_SESSION = 99
# what a listener's Pausa/Disponível button shows: when one of these goes stale, the current state is
# sent again once that URL's queue drains (a stale READY would otherwise leave the agent "paused" on screen)
AGENT_EVENTS = frozenset({"LOGGEDON", "LOGGEDOFF", "READY", "NOTREADY"})
# a call's end that goes stale is sent again the same way: the agent's screen would show the call for good
CLEARED = "CONNECTIONCLEARED"
MAX_CLEARS_OWED = 100          # per stream: more calls than that ended unheard is an outage, not a screen


@dataclass
class DeliveryOptions:
    ttl: float = 120.0              # seconds an event may wait before it is useless
    queue_size: int = 1000          # events waiting per device and URL
    retry_initial: float = 0.5      # first backoff, seconds
    retry_max: float = 10.0         # backoff cap, seconds
    release_after_99: int = 20      # consecutive "no session" answers before the pair is released
    report_every: float = 60.0      # seconds between two summary lines about one failing URL


@dataclass
class _Item:
    note: Notification
    created: float


@dataclass
class _Stream:
    device: str
    url: str
    # what went stale that a screen depends on, queued again when the stream drains (_owe_again): the
    # sessions (CDEVICE) whose last agent event it was, and the calls' ends
    agents_owed: set[str] = field(default_factory=set)
    clears_owed: list[Notification] = field(default_factory=list)
    queue: deque = field(default_factory=deque)
    task: asyncio.Task | None = None


@dataclass
class _Trouble:
    """What went wrong with one URL since its trouble started, and since the last line about it."""

    since: float
    next_report: float
    error: str = ""
    total: Counter = field(default_factory=Counter)     # failed, stale, refused since it started
    recent: Counter = field(default_factory=Counter)    # the same since the last line


class EventDelivery:
    def __init__(self, link_id: int, client: EventingClient, options: DeliveryOptions | None = None, *,
                 on_release: Callable[[str, str, str], None] = lambda device, url, cdevice: None,
                 on_agent_owed: Callable[[str, str, str], None] = lambda device, url, cdevice: None,
                 clock: Callable[[], float] = time.monotonic):
        self.link_id = link_id
        self.client = client
        self.o = options or DeliveryOptions()
        self.on_release = on_release
        self.on_agent_owed = on_agent_owed   # (device, url, cdevice): tell that session the agent's state again
        self.clock = clock
        self.streams: dict[tuple[str, str], _Stream] = {}
        self.counts: Counter[str] = Counter()      # sent, no_session, stale, overflow, failed, released, retries
        self.sent_by_event: Counter[tuple[str, str]] = Counter()   # (event, result) -> n
        # 99 streaks per session (device, URL, CDEVICE): they outlive a stream, which is dropped when it drains
        self._no_session: dict[tuple[str, str, str], int] = {}
        self._closing = False
        self._trouble: dict[str, _Trouble] = {}    # URL -> its ongoing trouble
        self.trace: Trace = NO_TRACE   # per-extension log

    # ---------------------------------------------------------------- API
    def submit(self, notes: list[Notification]) -> None:
        """Queue ``notes``; never blocks, never raises."""
        if self._closing:
            return
        now = self.clock()
        for note in notes:
            for url in note.urls:
                key = (note.device, url)
                stream = self.streams.get(key)
                if stream is None:
                    stream = self.streams[key] = _Stream(note.device, url)
                if len(stream.queue) >= self.o.queue_size:
                    # the oldest may be on the wire right now: drop the next oldest
                    dropped = stream.queue[1] if len(stream.queue) > 1 else None
                    if dropped is not None:
                        del stream.queue[1]
                    self.counts["overflow"] += 1
                    if self.counts["overflow"] % 100 == 1:
                        log.warning("link %d: event queue of %s -> %s is full (%d); dropped %s. "
                                    "Protheus is not keeping up or is unreachable; dropped so far: %d",
                                    self.link_id, note.device, url, self.o.queue_size,
                                    dropped.note.name if dropped else note.name, self.counts["overflow"])
                    if dropped is None:
                        continue
                stream.queue.append(_Item(note, now))
                if stream.task is None or stream.task.done():
                    stream.task = asyncio.get_running_loop().create_task(self._run(stream))

    def forget(self, device: str) -> int:
        """Protheus holds ``device`` no more: drop what waits for it and stop its retries at once.
        Returns how many events were dropped."""
        dropped = 0
        for key in [k for k in self.streams if k[0] == device]:
            stream = self.streams.pop(key)
            dropped += len(stream.queue)
            stream.queue.clear()
            if stream.task is not None and not stream.task.done():
                stream.task.cancel()
        for key in [k for k in self._no_session if k[0] == device]:
            del self._no_session[key]
        if dropped:
            self.counts["forgotten"] += dropped
        return dropped

    def depth(self) -> int:
        return sum(len(s.queue) for s in self.streams.values())

    async def drain(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s for the queues to empty; True when they did."""
        deadline = time.monotonic() + timeout
        while True:
            tasks = [s.task for s in self.streams.values() if s.task is not None and not s.task.done()]
            if not tasks:
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            await asyncio.wait(tasks, timeout=left)

    async def close(self, timeout: float = 5.0) -> None:
        await self.drain(timeout)
        self._closing = True
        for s in self.streams.values():
            if s.task is not None and not s.task.done():
                s.task.cancel()
        remaining = self.depth()
        if remaining:
            log.warning("link %d: %d event(s) not delivered at shutdown", self.link_id, remaining)

    # ------------------------------------------------------------- worker
    async def _run(self, stream: _Stream) -> None:
        while stream.queue:
            item = stream.queue[0]
            try:
                await self._deliver(stream, item)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - one bad event must not stop the stream
                self.counts["failed"] += 1
                log.exception("link %d: delivering %s to %s failed", self.link_id, item.note.name, stream.url)
            if stream.queue and stream.queue[0] is item:
                stream.queue.popleft()
            if not stream.queue:
                self._owe_again(stream)
        if not stream.queue and self.streams.get((stream.device, stream.url)) is stream:
            del self.streams[(stream.device, stream.url)]

    def _owe_again(self, stream: _Stream) -> None:
        """The stream drained with events of it gone stale that a screen depends on: its calls' ends are
        queued again, and the host is asked for the agent's state now. Each is tried, and goes stale
        again, at most once per ttl while Protheus stays away."""
        clears, stream.clears_owed = stream.clears_owed, []
        if clears:
            self.submit([Notification(n.name, n.device, n.cdevice, n.values, (stream.url,)) for n in clears])
        agents, stream.agents_owed = stream.agents_owed, set()
        for cdevice in agents:
            try:
                self.on_agent_owed(stream.device, stream.url, cdevice)
            except Exception:  # noqa: BLE001 - the stream must not die of its host
                log.exception("link %d: could not queue %s's agent state again for %s", self.link_id, stream.device,
                              stream.url)

    async def _deliver(self, stream: _Stream, item: _Item) -> None:
        note, attempt, refreshed = item.note, 0, False
        while True:
            age = self.clock() - item.created
            if age > self.o.ttl:
                self.counts["stale"] += 1
                self.sent_by_event[(note.name, "stale")] += 1
                if self.trace.on:
                    self.trace(note.device, f"EVENT {note.name} to {stream.url} dropped: older than {self.o.ttl:g} s")
                self._trouble_with(stream.url, "stale", f"events older than {self.o.ttl:g} s (events.ttl) dropped")
                if note.name in AGENT_EVENTS:
                    stream.agents_owed.add(note.cdevice)
                elif note.name == CLEARED and len(stream.clears_owed) < MAX_CLEARS_OWED:
                    stream.clears_owed.append(note)
                return
            try:
                result = await self.client.send(stream.url, note, self.link_id)
            except DeliveryError as e:
                if e.schema and not refreshed:
                    refreshed = True
                    log.warning("link %d: %s refused by %s (%s); reading its WSDL again",
                                self.link_id, note.name, stream.url, e)
                    await self.client.schema(stream.url, refresh=True)
                    continue
                if not e.retry:
                    if self.trace.on:
                        self.trace(note.device, f"EVENT {note.name} to {stream.url} refused: {e}")
                    self.counts["failed"] += 1
                    self.sent_by_event[(note.name, "failed")] += 1
                    self._trouble_with(stream.url, "refused", str(e), logging.ERROR)
                    return
                delay = min(self.o.retry_max, self.o.retry_initial * 2 ** attempt) * random.uniform(0.5, 1.0)
                delay = min(delay, max(0.0, self.o.ttl - (self.clock() - item.created)) + 0.01)
                attempt += 1
                self.counts["retries"] += 1
                self._trouble_with(stream.url, "failed", str(e))
                await asyncio.sleep(delay)
                continue
            self._recovered(stream.url)
            self._result(stream, note, result)
            return

    # ------------------------------------------------------------- trouble
    _WHAT = {"failed": "attempts failed", "stale": "events dropped as stale", "refused": "events refused"}

    def _trouble_with(self, url: str, kind: str, error: str, level: int = logging.WARNING) -> None:
        """Count a problem with ``url``; one line when its trouble starts, then one per report_every."""
        now = self.clock()
        t = self._trouble.get(url)
        if t is None:
            t = self._trouble[url] = _Trouble(since=now, next_report=now + self.o.report_every, error=error)
            t.total[kind] += 1
            then = {"failed": f"each event is retried with backoff for up to events.ttl ({self.o.ttl:g} s)",
                    "stale": "Protheus answers too slowly, or not at all",
                    "refused": "refused events are not retried; check MV_TKCTIEV and that URL's WSDL"}[kind]
            log.log(level, "link %d: cannot deliver events to %s: %s; %s. A summary follows every %g s "
                    "while this lasts", self.link_id, url, error, then, self.o.report_every)
            return
        t.error = error if kind != "stale" else t.error
        t.total[kind] += 1
        t.recent[kind] += 1
        if now >= t.next_report:
            t.next_report = now + self.o.report_every
            log.log(level, "link %d: %s still failing after %.0f s (%s); in the last %g s: %s; %d event(s) "
                    "waiting for it", self.link_id, url, now - t.since, t.error, self.o.report_every,
                    self._counts_text(t.recent), self._waiting(url))
            t.recent.clear()

    def _recovered(self, url: str) -> None:
        t = self._trouble.pop(url, None)
        if t is not None:
            log.info("link %d: %s answers again after %.0f s; meanwhile %s", self.link_id, url,
                     self.clock() - t.since, self._counts_text(t.total))

    def _counts_text(self, counts: Counter) -> str:
        return ", ".join(f"{counts[k]} {self._WHAT[k]}" for k in self._WHAT if counts[k]) or "nothing lost"

    def _waiting(self, url: str) -> int:
        return sum(len(s.queue) for (_, u), s in self.streams.items() if u == url)

    def _result(self, stream: _Stream, note: Notification, result: int) -> None:
        if self.trace.on:
            values = ", ".join(f"{k}={v!r}" for k, v in note.params(self.link_id)[2:])
            self.trace(note.device, f"EVENT {note.name}({values}) to {stream.url} -> {result}")
        session = (note.device, stream.url, note.cdevice)
        if result == NO_SESSION:
            self.counts["no_session"] += 1
            self.sent_by_event[(note.name, "no_session")] += 1
            streak = self._no_session[session] = self._no_session.get(session, 0) + 1
            log.info("link %d: %s for %r: Protheus at %s has no session for this device (99), %d in a row",
                     self.link_id, note.name, note.cdevice, stream.url, streak)
            if streak >= self.o.release_after_99:
                self.counts["released"] += 1
                log.warning("link %d: %r released from %s after %d answers 99 in a row; "
                            "it will be served again on its next AgentInService",
                            self.link_id, note.cdevice, stream.url, streak)
                kept = [item for item in stream.queue if item.note.cdevice != note.cdevice]
                stream.queue.clear()
                stream.queue.extend(kept)
                del self._no_session[session]
                self.on_release(note.device, stream.url, note.cdevice)
            return
        self._no_session.pop(session, None)
        if note.name in AGENT_EVENTS:
            stream.agents_owed.discard(note.cdevice)   # a later agent event told it: nothing owed any more
        self.counts["sent"] += 1
        self.sent_by_event[(note.name, "ok" if result == 0 else str(result))] += 1
        if log.isEnabledFor(logging.DEBUG):
            log.debug("link %d: %s for %s -> %s: %d", self.link_id, note.name, note.device, stream.url, result)
