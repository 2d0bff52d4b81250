"""EventDelivery with a fake eventing client: order, independence, retries, TTL, overflow, 99, shutdown.

No sockets and no sleeps for synchronisation: tests wait on asyncio events
or poll a condition with a deadline; time-dependent rules use an injected clock.
"""
from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from smartcti_gateway.core.notify import Notification
from smartcti_gateway.protheus import delivery as delivery_mod
from smartcti_gateway.protheus.delivery import DeliveryOptions, EventDelivery
from smartcti_gateway.protheus.eventing import DeliveryError

URL = "http://protheus:8080/ws/SMARTCTIWSEVENTING.apw"
URL2 = "http://listener:8080/ws/SMARTCTIWSEVENTING.apw"
LINK = 3
FAST = dict(retry_initial=0.001, retry_max=0.002)


def note(device: str, n: int | str, urls=(URL,), name: str = "HELD") -> Notification:
    return Notification(name, device, device, (f"C{n}", "", ""), tuple(urls))


class Clock:
    def __init__(self, t: float = 1000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


class FakeClient:
    """Records every send; answers from ``script`` (in call order) or ``default``.

    A script entry is an int (RETURNCODE), an exception to raise, or a callable
    (url, note) -> either. ``gates[(device, url)]`` holds that stream's sends.
    """

    def __init__(self, default=0):
        self.default = default
        self.script: list = []
        self.gates: dict[tuple[str, str], asyncio.Event] = {}
        self.calls: list[tuple[str, str, str, int]] = []      # (device, url, call id, link) per attempt
        self.answered: list[tuple[str, str, str]] = []        # (device, url, call id) per RETURNCODE given
        self.schema_calls: list[tuple[str, bool]] = []
        self.in_flight: Counter = Counter()
        self.max_in_flight: Counter = Counter()
        self.cancelled: list[str] = []

    async def send(self, url: str, note: Notification, link_id: int) -> int:
        key = (note.device, url)
        self.calls.append((note.device, url, note.values[0], link_id))
        self.in_flight[key] += 1
        self.max_in_flight[key] = max(self.max_in_flight[key], self.in_flight[key])
        try:
            gate = self.gates.get(key)
            if gate is not None:
                await gate.wait()
            await asyncio.sleep(0)  # let other streams interleave
            action = self.script.pop(0) if self.script else self.default
            if callable(action):
                action = action(url, note)
            if isinstance(action, BaseException):
                raise action
            self.answered.append((note.device, url, note.values[0]))
            return action
        except asyncio.CancelledError:
            self.cancelled.append(note.values[0])
            raise
        finally:
            self.in_flight[key] -= 1

    async def schema(self, url: str, refresh: bool = False):
        self.schema_calls.append((url, refresh))

    def ids(self, device: str | None = None, url: str | None = None) -> list[str]:
        return [c for d, u, c in self.answered if (device is None or d == device) and (url is None or u == url)]


async def until(predicate, timeout: float = 2.0, what: str = "condition"):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0)


def make(client=None, **options) -> tuple[EventDelivery, FakeClient, list]:
    client = client or FakeClient()
    released: list[tuple[str, str]] = []
    clock = options.pop("clock", None)
    kw = {"clock": clock} if clock is not None else {}
    d = EventDelivery(LINK, client, DeliveryOptions(**options),
                      on_release=lambda dev, url, cdevice: released.append((dev, url)), **kw)
    return d, client, released


# ------------------------------------------------------------------ order
async def test_order_per_device_is_kept_and_devices_progress_independently():
    d, c, _ = make()
    c.gates[("2001", URL)] = gate = asyncio.Event()
    for i in range(10):  # interleaved submissions
        d.submit([note("2001", f"a{i}")])
        d.submit([note("2002", f"b{i}")])
    # 2001 is stuck on its first event; 2002 is not delayed by it
    await until(lambda: len(c.ids("2002")) == 10, what="2002 delivered")
    assert c.ids("2002") == [f"Cb{i}" for i in range(10)]
    assert c.ids("2001") == []
    assert [x[2] for x in c.calls if x[0] == "2001"] == ["Ca0"]   # one request at a time per stream
    assert d.depth() == 10 and list(d.streams) == [("2001", URL)]
    gate.set()
    assert await d.drain(2.0) is True
    assert c.ids("2001") == [f"Ca{i}" for i in range(10)]
    assert c.max_in_flight == Counter({("2001", URL): 1, ("2002", URL): 1})
    assert {x[3] for x in c.calls} == {LINK}
    assert d.counts["sent"] == 20 and d.sent_by_event[("HELD", "ok")] == 20
    assert d.streams == {} and d.depth() == 0


async def test_each_url_of_a_device_is_its_own_stream():
    d, c, _ = make()
    c.gates[("2001", URL)] = gate = asyncio.Event()
    for i in range(5):
        d.submit([note("2001", i, urls=(URL, URL2))])
    await until(lambda: len(c.ids(url=URL2)) == 5, what="URL2 delivered")
    assert c.ids(url=URL2) == [f"C{i}" for i in range(5)] and c.ids(url=URL) == []
    gate.set()
    assert await d.drain(2.0)
    assert c.ids(url=URL) == [f"C{i}" for i in range(5)]
    assert d.counts["sent"] == 10


async def test_streams_run_concurrently():
    d, c, _ = make()
    for dev in ("2001", "2002", "2003"):
        c.gates[(dev, URL)] = asyncio.Event()
        d.submit([note(dev, 1)])
    # all three are on the wire at the same time
    await until(lambda: sum(c.in_flight.values()) == 3, what="three sends in flight")
    for g in c.gates.values():
        g.set()
    assert await d.drain(2.0)
    assert sorted(c.answered) == [("2001", URL, "C1"), ("2002", URL, "C1"), ("2003", URL, "C1")]


async def test_order_kept_while_submitting_during_delivery():
    d, c, _ = make()
    expected = []
    for burst in range(5):
        for i in range(4):
            d.submit([note("2001", f"{burst}.{i}")])
            expected.append(f"C{burst}.{i}")
        await asyncio.sleep(0)
    assert await d.drain(2.0)
    assert c.ids("2001") == expected


# ---------------------------------------------------------------- retries
async def test_retryable_errors_are_retried_then_delivered():
    d, c, _ = make(**FAST)
    c.script = [DeliveryError("refused", retry=True), DeliveryError("timeout", retry=True), 0]
    d.submit([note("2001", 1), note("2001", 2)])
    assert await d.drain(2.0)
    assert [x[2] for x in c.calls] == ["C1", "C1", "C1", "C2"]
    assert c.ids() == ["C1", "C2"]
    assert d.counts == Counter({"retries": 2, "sent": 2})
    assert c.schema_calls == []


async def test_backoff_is_exponential_capped_and_bounded_by_ttl(monkeypatch):
    clock = Clock()
    delays: list[float] = []
    real_sleep = asyncio.sleep

    async def fake_sleep(delay, result=None):
        if delay:
            delays.append(delay)
            clock.t += delay
        return await real_sleep(0, result)

    monkeypatch.setattr(delivery_mod.random, "uniform", lambda a, b: b)
    monkeypatch.setattr(delivery_mod.asyncio, "sleep", fake_sleep)
    d, c, _ = make(clock=clock, retry_initial=0.5, retry_max=2.0, ttl=5.0)
    c.default = DeliveryError("down", retry=True)
    d.submit([note("2001", 1)])
    assert await d.drain(2.0)
    # 0.5, 1, 2 (the cap), then what is left of the ttl (5 - 3.5) + 0.01, then stale
    assert delays == pytest.approx([0.5, 1.0, 2.0, 1.5 + 0.01])
    assert d.counts == Counter({"retries": 4, "stale": 1})
    assert len(c.calls) == 4
    assert d.sent_by_event[("HELD", "stale")] == 1


# -------------------------------------------------------------------- TTL
async def test_stale_event_is_dropped_and_the_next_delivered():
    clock = Clock()
    d, c, _ = make(clock=clock, ttl=120.0)
    d.submit([note("2001", "old")])
    clock.t += 120.5          # before the stream task even ran
    d.submit([note("2001", "new")])
    assert await d.drain(2.0)
    assert c.ids() == ["Cnew"] and [x[2] for x in c.calls] == ["Cnew"]
    assert d.counts == Counter({"stale": 1, "sent": 1})
    assert d.sent_by_event[("HELD", "stale")] == 1 and d.sent_by_event[("HELD", "ok")] == 1
    assert d.streams == {}


async def test_a_stale_agent_event_has_the_agents_state_sent_again_once_the_stream_drains():
    """A listener's Pausa/Disponível button moves only on agent events: one dropped as stale would leave it
    wrong until the agent's next change. Once the stream has drained, the host is asked for the state now;
    a later agent event that got through owes nothing."""
    clock = Clock()
    owed: list[tuple[str, str, str]] = []
    d = EventDelivery(LINK, FakeClient(), DeliveryOptions(ttl=10.0), clock=clock,
                      on_agent_owed=lambda dev, url, cdevice: owed.append((dev, url, cdevice)))
    d.submit([note("2001", "a", name="READY")])
    clock.t += 10.5                                    # stale before it was tried
    d.submit([note("2001", "b")])
    assert await d.drain(2.0)
    assert owed == [("2001", URL, "2001")]
    owed.clear()
    d.submit([note("2002", "a", name="NOTREADY")])
    clock.t += 10.5
    d.submit([note("2002", "b", name="READY")])        # the newer state got through: nothing owed
    assert await d.drain(2.0)
    assert owed == [] and d.counts["stale"] == 2
    d.submit([note("2003", "a", name="HELD")])          # a call event going stale owes no agent state
    clock.t += 10.5
    d.submit([note("2003", "b")])
    assert await d.drain(2.0)
    assert owed == []


async def test_a_stale_call_end_is_sent_again_once_the_stream_drains():
    """A CONNECTIONCLEARED dropped as stale would leave the agent's screen in the call: it is queued
    again when the stream drains (scripts/soak counted 80 such calls in a 60 s Protheus outage)."""
    clock = Clock()
    d, c, _ = make(clock=clock, ttl=10.0)
    d.submit([note("2001", "x", name="CONNECTIONCLEARED"), note("2001", "y", name="HELD")])
    clock.t += 10.5                                    # both stale before they were tried
    d.submit([note("2001", "z")])
    assert await d.drain(2.0)
    assert c.ids() == ["Cz", "Cx"]                     # the call's end again, after what was waiting; HELD not
    assert d.sent_by_event[("CONNECTIONCLEARED", "stale")] == 1 and d.sent_by_event[("CONNECTIONCLEARED", "ok")] == 1


async def test_events_that_waited_behind_a_slow_send_go_stale():
    clock = Clock()
    d, c, _ = make(clock=clock, ttl=10.0)
    c.gates[("2001", URL)] = gate = asyncio.Event()
    d.submit([note("2001", 1), note("2001", 2), note("2001", 3)])
    await until(lambda: len(c.calls) == 1, what="first send")
    clock.t += 10.5
    d.submit([note("2001", 4)])
    gate.set()
    assert await d.drain(2.0)
    assert c.ids() == ["C1", "C4"]       # the one on the wire completes; 2 and 3 are too old
    assert d.counts == Counter({"sent": 2, "stale": 2})


async def test_event_exactly_at_ttl_is_still_sent():
    clock = Clock()
    d, c, _ = make(clock=clock, ttl=10.0)
    d.submit([note("2001", 1)])
    clock.t += 10.0
    assert await d.drain(2.0)
    assert c.ids() == ["C1"] and d.counts["stale"] == 0


# --------------------------------------------------------------- overflow
async def test_overflow_drops_the_next_oldest_not_the_one_in_flight():
    d, c, _ = make(queue_size=3)
    c.gates[("2001", URL)] = gate = asyncio.Event()
    d.submit([note("2001", 1)])
    await until(lambda: len(c.calls) == 1, what="first send in flight")
    d.submit([note("2001", 2), note("2001", 3)])
    assert d.counts["overflow"] == 0 and d.depth() == 3
    d.submit([note("2001", 4)])
    assert d.counts["overflow"] == 1 and d.depth() == 3
    assert [i.note.values[0] for i in d.streams[("2001", URL)].queue] == ["C1", "C3", "C4"]
    d.submit([note("2001", 5)])
    assert d.counts["overflow"] == 2
    assert [i.note.values[0] for i in d.streams[("2001", URL)].queue] == ["C1", "C4", "C5"]
    d.submit([note("2002", 1)])            # another device has its own room
    assert d.counts["overflow"] == 2
    gate.set()
    assert await d.drain(2.0)
    assert c.ids("2001") == ["C1", "C4", "C5"] and c.ids("2002") == ["C1"]
    assert d.counts == Counter({"overflow": 2, "sent": 4})


async def test_overflow_with_room_for_one_drops_the_newcomer():
    d, c, _ = make(queue_size=1)
    c.gates[("2001", URL)] = gate = asyncio.Event()
    d.submit([note("2001", 1)])
    await until(lambda: len(c.calls) == 1, what="first send in flight")
    d.submit([note("2001", 2)])
    assert d.counts["overflow"] == 1 and d.depth() == 1
    gate.set()
    assert await d.drain(2.0)
    assert c.ids() == ["C1"]


# -------------------------------------------------------------- 99 answers
async def test_99_in_a_row_releases_the_pair_once_and_clears_its_queue():
    d, c, released = make(release_after_99=3)
    c.default = 99
    c.gates[("2001", URL)] = gate = asyncio.Event()
    d.submit([note("2001", i, urls=(URL, URL2)) for i in range(6)])
    d.submit([note("2002", 1)])
    await until(lambda: len(c.ids(url=URL2)) == 3, what="URL2 released")
    gate.set()
    assert await d.drain(2.0)
    assert sorted(released) == sorted([("2001", URL), ("2001", URL2)]) and len(released) == 2
    # after three 99s the rest of each queue is dropped: 3 per URL, not 6
    assert c.ids("2001", URL) == ["C0", "C1", "C2"] and c.ids("2001", URL2) == ["C0", "C1", "C2"]
    assert d.counts == Counter({"no_session": 7, "released": 2})
    assert d.sent_by_event[("HELD", "no_session")] == 7
    assert d.streams == {} and d.depth() == 0


async def test_a_success_resets_the_99_streak():
    d, c, released = make(release_after_99=3)
    c.script = [99, 99, 0, 99, 99, 0, 99, 99]
    d.submit([note("2001", i) for i in range(8)])
    assert await d.drain(2.0)
    assert released == []
    assert len(c.ids()) == 8
    assert d.counts == Counter({"no_session": 6, "sent": 2})


async def test_99_streak_counts_across_bursts():
    # events usually arrive one at a time: the queue drains between them
    d, c, released = make(release_after_99=3)
    c.default = 99
    for i in range(3):
        d.submit([note("2001", i)])
        assert await d.drain(2.0)
    assert released == [("2001", URL)]
    assert d.counts["released"] == 1 and d.counts["no_session"] == 3
    assert d.streams == {}
    # the release restarts the count
    for i in range(3, 5):
        d.submit([note("2001", i)])
        assert await d.drain(2.0)
    assert released == [("2001", URL)]
    d.submit([note("2001", 5)])
    assert await d.drain(2.0)
    assert released == [("2001", URL), ("2001", URL)]
    assert d.counts["released"] == 2 and d.counts["no_session"] == 6
    # a success between bursts resets it
    d2, c2, released2 = make(release_after_99=2)
    c2.script = [99, 0, 99, 0, 99]
    for i in range(5):
        d2.submit([note("2001", i)])
        assert await d2.drain(2.0)
    assert released2 == []


async def test_99_streak_is_per_url():
    d, c, released = make(release_after_99=2)

    def answer(url, n):
        return 99 if url == URL else 0

    c.default = answer
    d.submit([note("2001", i, urls=(URL, URL2)) for i in range(3)])
    assert await d.drain(2.0)
    assert released == [("2001", URL)]
    assert c.ids(url=URL) == ["C0", "C1"] and c.ids(url=URL2) == ["C0", "C1", "C2"]


# ---------------------------------------------------------------- errors
async def test_schema_error_refreshes_the_wsdl_once_then_retries():
    d, c, _ = make(**FAST)
    c.script = [DeliveryError("Client fault", retry=False, schema=True), 0, 0]
    d.submit([note("2001", 1), note("2001", 2)])
    assert await d.drain(2.0)
    assert c.schema_calls == [(URL, True)]
    assert [x[2] for x in c.calls] == ["C1", "C1", "C2"]
    assert d.counts == Counter({"sent": 2})


async def test_second_schema_error_fails_the_event_and_the_stream_moves_on():
    d, c, _ = make(**FAST)
    c.script = [DeliveryError("Client fault", retry=False, schema=True),
                DeliveryError("Client fault", retry=False, schema=True), 0]
    d.submit([note("2001", 1), note("2001", 2)])
    assert await d.drain(2.0)
    assert c.schema_calls == [(URL, True)]
    assert [x[2] for x in c.calls] == ["C1", "C1", "C2"]
    assert c.ids() == ["C2"]
    assert d.counts == Counter({"failed": 1, "sent": 1})
    assert d.sent_by_event[("HELD", "failed")] == 1


async def test_non_retryable_error_fails_once():
    d, c, _ = make(**FAST)
    c.script = [DeliveryError("not started", retry=False), 0]
    d.submit([note("2001", 1), note("2001", 2)])
    assert await d.drain(2.0)
    assert [x[2] for x in c.calls] == ["C1", "C2"]
    assert c.schema_calls == []
    assert d.counts == Counter({"failed": 1, "sent": 1})


async def test_unexpected_exception_does_not_kill_the_stream():
    d, c, _ = make(**FAST)
    c.script = [RuntimeError("bug"), KeyError("RINGING"), 0]
    d.submit([note("2001", 1), note("2001", 2), note("2001", 3)])
    assert await d.drain(2.0)
    assert [x[2] for x in c.calls] == ["C1", "C2", "C3"] and c.ids() == ["C3"]
    assert d.counts == Counter({"failed": 2, "sent": 1})
    assert d.streams == {}
    d.submit([note("2001", 4)])           # and the pair is served again later
    assert await d.drain(2.0)
    assert c.ids() == ["C3", "C4"]


async def test_failing_release_callback_does_not_kill_the_stream():
    client = FakeClient(default=99)

    def boom(dev, url):
        raise RuntimeError("release failed")

    d = EventDelivery(LINK, client, DeliveryOptions(release_after_99=1), on_release=boom)
    d.submit([note("2001", 1), note("2001", 2)])
    assert await d.drain(2.0)
    assert d.counts["released"] == 1 and d.streams == {}


# ------------------------------------------------------- drain and close
async def test_drain_true_when_empty_false_when_stuck():
    d, c, _ = make()
    assert await d.drain(0.0) is True
    c.gates[("2001", URL)] = gate = asyncio.Event()
    d.submit([note("2001", 1)])
    assert await d.drain(0.05) is False
    assert d.depth() == 1
    gate.set()
    assert await d.drain(2.0) is True
    assert c.ids() == ["C1"] and d.depth() == 0


async def test_close_cancels_stuck_streams_and_ignores_later_submits():
    d, c, _ = make()
    c.gates[("2001", URL)] = asyncio.Event()
    d.submit([note("2001", 1), note("2001", 2)])
    d.submit([note("2002", 1)])
    await until(lambda: len(c.calls) == 2, what="both sends started")
    task = d.streams[("2001", URL)].task
    await d.close(timeout=0.05)
    await until(lambda: task.done(), what="stuck task cancelled")
    assert task.cancelled()
    assert c.cancelled == ["C1"]
    assert c.ids("2001") == [] and c.ids("2002") == ["C1"]
    calls = list(c.calls)
    d.submit([note("2003", 1), note("2001", 3)])
    assert ("2003", URL) not in d.streams
    assert d.depth() == 2             # what was left of 2001 only
    await asyncio.sleep(0)
    assert c.calls == calls


async def test_close_when_idle_returns_at_once():
    d, c, _ = make()
    d.submit([note("2001", 1)])
    await d.close(timeout=2.0)
    assert c.ids() == ["C1"] and d.streams == {}
    d.submit([note("2001", 2)])
    assert d.streams == {} and c.calls == [("2001", URL, "C1", LINK)]


# ------------------------------------------------------------- memory
async def test_streams_are_forgotten_when_their_queues_drain():
    clock = Clock()
    d, c, _ = make(clock=clock, ttl=5.0, release_after_99=1, **FAST)
    answers = {"2001": 0, "2002": 99, "2003": DeliveryError("x", retry=False), "2004": RuntimeError("y")}
    c.default = lambda url, n: answers[n.device]
    d.submit([note("2005", 1)])
    clock.t += 6.0                        # 2005 goes stale
    for dev in ("2001", "2002", "2003", "2004"):
        d.submit([note(dev, 1)])
    assert len(d.streams) == 5
    assert await d.drain(2.0)
    assert d.streams == {}
    assert d.counts == Counter({"sent": 1, "no_session": 1, "released": 1, "failed": 2, "stale": 1})


async def test_submit_with_no_urls_keeps_nothing():
    d, c, _ = make()
    d.submit([Notification("HELD", "2001", "2001", ("C1", "", ""), ())])
    d.submit([])
    assert d.streams == {} and d.depth() == 0
    assert await d.drain(0.0)


# ----------------------------------------- after AgentOutOfService, and trouble in the log
async def test_forget_drops_what_waits_and_stops_the_retries_at_once():
    """docs/events.md promises nothing after the last AgentOutOfService; seen: retries up to attempt 20."""
    d, c, _ = make(**FAST)
    c.default = DeliveryError("refused", retry=True)
    for i in range(5):
        d.submit([note("2001", i, urls=(URL, URL2)), note("2002", i)])
    await until(lambda: len([x for x in c.calls if x[0] == "2001"]) >= 6, what="2001 retrying")
    assert d.forget("2001") == 10            # all ten waiting, the two on the wire included
    attempts = len([x for x in c.calls if x[0] == "2001"])
    assert all(k[0] != "2001" for k in d.streams) and d.counts["forgotten"] == 10
    c.default = 0
    assert await d.drain(2.0)                 # 2002 goes on and is delivered
    assert c.ids("2002") == [f"C{i}" for i in range(5)]
    assert len([x for x in c.calls if x[0] == "2001"]) == attempts    # not one more attempt for 2001
    # a new AgentInService takes it again: its events flow
    d.submit([note("2001", "new")])
    assert await d.drain(2.0) and c.ids("2001") == ["Cnew"]


async def test_a_failing_url_is_summarised_not_logged_per_event(monkeypatch, caplog):
    """Seen: a 60 s Protheus outage wrote about 1,100 lines."""
    clock = Clock()
    real_sleep = asyncio.sleep

    async def fake_sleep(delay, result=None):
        clock.t += delay
        return await real_sleep(0, result)

    monkeypatch.setattr(delivery_mod.asyncio, "sleep", fake_sleep)
    caplog.set_level("INFO", "smartcti_gateway.delivery")
    d, c, _ = make(clock=clock, retry_initial=0.5, retry_max=1.0, ttl=20.0, report_every=30.0)
    c.default = DeliveryError("cannot reach it: connection refused", retry=True)
    for second in range(60):                  # one event a second for a minute, Protheus down
        d.submit([note(f"20{second % 10:02d}", second)])
        clock.t += 1.0
        await real_sleep(0)
    c.default = 0
    d.submit([note("2001", "after")])
    assert await d.drain(5.0)
    lines = [r.getMessage() for r in caplog.records if r.name == "smartcti_gateway.delivery"]
    assert len(lines) <= 8, lines             # one at the start, about one per 30 s, one at the end
    assert lines[0].startswith(f"link 3: cannot deliver events to {URL}: cannot reach it")
    assert any("still failing after" in x and "attempts failed" in x and "dropped as stale" in x for x in lines)
    assert lines[-1].startswith(f"link 3: {URL} answers again after") and "attempts failed" in lines[-1]
    assert d.counts["stale"] > 0 and d.counts["retries"] > 100   # counted, all the same


async def test_99_releases_one_session_and_keeps_the_other_spelling_on_the_same_url():
    """Two sessions of one device on one Protheus server, spelled '2001' and '2001 ': 99 for one only."""
    d, c, _ = make(release_after_99=2)
    released: list = []
    d.on_release = lambda dev, url, cdevice: released.append((dev, url, cdevice))
    c.default = lambda url, n: 99 if n.cdevice == "2001 " else 0
    for i in range(4):
        d.submit([Notification("HELD", "2001", "2001", (f"C{i}", "", ""), (URL,)),
                  Notification("HELD", "2001", "2001 ", (f"C{i}", "", ""), (URL,))])
    assert await d.drain(2.0)
    assert released == [("2001", URL, "2001 ")]
    # in order, both sessions interleaved, until the release; then nothing more for the dead spelling
    assert c.ids("2001") == ["C0", "C0", "C1", "C1", "C2", "C3"]
