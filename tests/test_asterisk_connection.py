"""The AMI session and the Asterisk link against a fake Asterisk on loopback that misbehaves on request:
a refused login, a dropped connection, bytes that are not AMI, an event the tracker chokes on.
(The real Asterisk is tests/test_asterisk_lab.py; this one can be made to break in exact ways.)
"""
from __future__ import annotations

import asyncio
import logging
import threading

import pytest

from smartcti_gateway.core.pabx import PabxUnavailable
from smartcti_gateway.pabx.asterisk.ami import Message, Parser
from smartcti_gateway.pabx.asterisk.connection import AmiConnection

from .support import BackgroundLoop, RunningGateway, in_service, mark, names, device_events, wait_device, wait_for

SECRET = "s3cr3t-ami-41"


class FakeAsterisk:
    """Speaks enough AMI for the gateway: login, Filter, Ping, the list actions, every other action
    answered Success. ``silent`` actions get no answer; ``logins`` counts the attempts."""

    def __init__(self, secret: str = SECRET):
        self.secret = secret
        self.logins = 0
        self.actions: list[Message] = []
        self.silent: set[str] = set()
        self.dialplan: set[tuple[str, str, str]] = set()
        self.writers: list[asyncio.StreamWriter] = []
        self.server: asyncio.base_events.Server | None = None
        self._arrived = asyncio.Event()

    async def action_seen(self, name: str) -> Message:
        """Wait until an action called ``name`` has arrived."""
        while True:
            for m in self.actions:
                if m.get("Action") == name:
                    return m
            self._arrived.clear()
            await self._arrived.wait()

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        self.drop()
        self.server.close()
        await self.server.wait_closed()

    def drop(self) -> None:
        for w in self.writers:
            w.close()
        self.writers.clear()

    def send(self, data: bytes) -> None:
        for w in self.writers:
            w.write(data)

    def event(self, **fields: str) -> None:
        self.send(("".join(f"{k}: {v}\r\n" for k, v in fields.items()) + "\r\n").encode())

    async def _client(self, reader, writer) -> None:
        self.writers.append(writer)
        writer.write(b"Asterisk Call Manager/11.0.0\r\n")
        parser = Parser()
        parser.feed(b"Asterisk Call Manager/client\r\n")      # what the client sends has no banner
        try:
            while data := await reader.read(65536):
                for m in parser.feed(data):
                    self.actions.append(m)
                    self._arrived.set()
                    self._answer(writer, m)
        except (ConnectionError, OSError):
            pass

    def _answer(self, writer, m: Message) -> None:
        name, aid = m.get("Action"), m.get("ActionID")
        if name in self.silent:
            return
        if name == "Login":
            self.logins += 1
            ok = m.get("Secret") == self.secret
            writer.write(f"Response: {'Success' if ok else 'Error'}\r\nActionID: {aid}\r\nMessage: "
                         f"{'Authentication accepted' if ok else 'Authentication failed'}\r\n\r\n".encode())
            if not ok:
                writer.close()
            return
        if name in ("CoreShowChannels", "QueueStatus"):
            done = "CoreShowChannelsComplete" if name == "CoreShowChannels" else "QueueStatusComplete"
            writer.write(f"Response: Success\r\nActionID: {aid}\r\nEventList: start\r\n\r\n"
                         f"Event: {done}\r\nActionID: {aid}\r\nEventList: Complete\r\nListItems: 0\r\n\r\n".encode())
            return
        if name == "DialplanExtensionAdd":
            key = (m.get("Context"), m.get("Extension"), m.get("Priority"))
            ok = key not in self.dialplan or m.get("Replace") == "yes"
            self.dialplan.add(key)
            writer.write(f"Response: {'Success' if ok else 'Error'}\r\nActionID: {aid}\r\nMessage: "
                         f"{'Added requested extension' if ok else 'Failed to add extension'}\r\n\r\n".encode())
            return
        if name == "CoreSettings":
            writer.write(f"Response: Success\r\nActionID: {aid}\r\nAsteriskVersion: 22.0.0-fake\r\n"
                         f"AMIversion: 11.0.0\r\n\r\n".encode())
            return
        writer.write(f"Response: Success\r\nActionID: {aid}\r\n\r\n".encode())


@pytest.fixture
def loop():
    lp = asyncio.new_event_loop()
    yield lp
    lp.close()


def run(loop, coro, timeout=10):
    return loop.run_until_complete(asyncio.wait_for(coro, timeout))


def test_login_filter_events_and_lists(loop):
    async def scenario():
        fake = FakeAsterisk()
        port = await fake.start()
        got = []
        conn = AmiConnection("127.0.0.1", port, "smartcti", SECRET, timeout=2, on_event=got.append,
                             events=["Newchannel", "Hangup"])
        await conn.open()
        assert conn.version == "11.0.0" and conn.filtered
        login, flt = fake.actions[:2]
        assert (login.get("Action"), login.get("Events")) == ("Login", "call,agent")
        assert flt.get("Filter") == "^Event: (Hangup|Newchannel)[[:space:]]" and flt.get("Operation") == "Add"
        fake.event(Event="Newchannel", Channel="PJSIP/2001-1", Uniqueid="1.1")
        reply, rows = await conn.list("QueueStatus")
        assert reply.ok and rows == []
        await conn.close(goodbye=True)
        await fake.stop()
        return got
    got = run(loop, scenario())
    assert [m.event for m in got] == ["Newchannel"]


def test_a_refused_login_says_who_and_never_the_secret(loop, caplog):
    async def scenario():
        fake = FakeAsterisk()
        port = await fake.start()
        conn = AmiConnection("127.0.0.1", port, "smartcti", "wrong-" + SECRET, timeout=2, on_event=lambda m: None)
        with pytest.raises(PabxUnavailable) as e:
            await conn.open()
        await fake.stop()
        return e.value.detail
    detail = run(loop, scenario())
    assert "refused the login of user 'smartcti'" in detail and "check username and secret" in detail
    assert SECRET not in detail and SECRET not in caplog.text


def test_a_dropped_connection_fails_the_waiting_action_at_once_and_says_so(loop):
    async def scenario():
        fake = FakeAsterisk()
        port = await fake.start()
        lost = []
        conn = AmiConnection("127.0.0.1", port, "smartcti", SECRET, timeout=30, on_event=lambda m: None,
                             on_lost=lost.append)
        await conn.open()
        fake.silent.add("Ping")
        pending = asyncio.ensure_future(conn.send("Ping", {}))
        await fake.action_seen("Ping")             # the Ping is really waiting for its answer
        t0 = loop.time()
        fake.drop()
        with pytest.raises(PabxUnavailable):
            await pending
        waited = loop.time() - t0
        await fake.stop()
        return lost, waited, conn.connected
    lost, waited, connected = run(loop, scenario())
    assert waited < 5 and not connected          # not the 30 s of the timeout
    # a close, or a reset when our Ping was still unread: either way one reason, said once
    assert len(lost) == 1 and lost[0] in ("Asterisk closed the AMI connection",
                                          "the AMI connection broke ([Errno 104] Connection reset by peer)")


@pytest.mark.parametrize("garbage,what", [
    (b"Event: X\r\nK: " + b"v" * 10000 + b"\r\n\r\n", "longer than"),
    (b"Event: X\r\n" + b"K: v\r\n" * 600, "more than"),
])
def test_what_is_not_ami_drops_the_connection_with_a_reason(loop, garbage, what):
    async def scenario():
        fake = FakeAsterisk()
        port = await fake.start()
        lost, told = [], asyncio.Event()

        def on_lost(reason):
            lost.append(reason)
            told.set()
        conn = AmiConnection("127.0.0.1", port, "smartcti", SECRET, timeout=2, on_event=lambda m: None,
                             on_lost=on_lost)
        await conn.open()
        fake.send(garbage)
        await told.wait()
        await fake.stop()
        return lost, conn.rejected
    lost, rejected = run(loop, scenario())
    assert rejected == 1 and len(lost) == 1 and "not AMI" in lost[0] and what in lost[0]


def test_an_event_the_tracker_chokes_on_loses_no_other(loop, caplog):
    async def scenario():
        fake = FakeAsterisk()
        port = await fake.start()
        got = []

        def on_event(m):
            if m.get("Channel") == "bad":
                raise ValueError("a shape never seen")
            got.append(m.get("Channel"))
        conn = AmiConnection("127.0.0.1", port, "smartcti", SECRET, timeout=2, on_event=on_event)
        await conn.open()
        for ch in ("PJSIP/2001-1", "bad", "PJSIP/2002-2"):
            fake.event(Event="Newchannel", Channel=ch)
        await conn.send("Ping", {})                 # answered after the three events: they are read
        await conn.close()
        await fake.stop()
        return got, conn.rejected
    with caplog.at_level(logging.ERROR):
        got, rejected = run(loop, scenario())
    assert got == ["PJSIP/2001-1", "PJSIP/2002-2"] and rejected == 1


# ------------------------------------------------------------------ through the gateway's link
def _config(port: int, secret: str = SECRET, **pabx) -> dict:
    return {"listen": "127.0.0.1:0", "links": [{"link_id": 2, "pabx": {
        "driver": "asterisk", "host": "127.0.0.1", "port": port, "username": "smartcti", "secret": secret,
        "timeout": 2, "keepalive": 0.2, "grace": 0, "reconnect_max": 1, **pabx}}]}


class Hosted:
    """A FakeAsterisk on a loop of its own (the gateway under test runs on another): ``in_loop`` to act on it."""

    def __init__(self):
        self.host = BackgroundLoop()
        self.fake = FakeAsterisk()
        self.port = self.host.run(self.fake.start())

    def in_loop(self, fn):
        return self.host.in_loop(fn)

    def close(self):
        self.host.run(self.fake.stop())
        self.host.stop_loop()


@pytest.fixture
def asterisk():
    a = Hosted()
    yield a
    a.close()


def test_the_link_notices_a_drop_at_once_and_comes_back(asterisk):
    fake, port = asterisk.fake, asterisk.port
    gw = RunningGateway(_config(port, keepalive=30))      # no keep-alive before the drop is seen
    try:
        assert gw.code("SystemStatus") == 0
        assert fake.logins == 1
        asterisk.in_loop(fake.drop)                    # Asterisk restarts
        wait_for(lambda: fake.logins >= 2 and gw.code("SystemStatus") == 0, 10, what="logged in again")
        assert gw.in_loop(lambda: gw.link(2).health.reconnects) >= 1
    finally:
        gw.close()


def test_keepalives_reinstall_nothing_while_the_dialplan_is_there(asterisk, caplog):
    fake, port = asterisk.fake, asterisk.port
    gw = RunningGateway(_config(port))
    try:
        wait_for(lambda: sum(1 for a in fake.actions if a.get("Action") == "DialplanExtensionAdd"
                             and a.get("Replace") != "yes") >= 3, 5, what="three keep-alives")
        assert fake.logins == 1 and "was gone" not in caplog.text
        asterisk.in_loop(fake.dialplan.clear)          # a 'dialplan reload' at the Asterisk console
        wait_for(lambda: "was gone from Asterisk" in caplog.text, 5, what="noticed")
        installs = [a for a in fake.actions if a.get("Action") == "DialplanExtensionAdd" and a.get("Replace") == "yes"]
        assert len(installs) == 2 * len({(a.get("Context"), a.get("Priority"), a.get("Extension")) for a in installs})
    finally:
        gw.close()


def test_a_wrong_secret_is_one_log_line_and_retried_with_backoff(asterisk, caplog):
    fake, port = asterisk.fake, asterisk.port
    wrong = "not-" + SECRET
    gw = RunningGateway(_config(port, secret=wrong, reconnect_max=30), starting=True)
    try:
        wait_for(lambda: gw.code("SystemStatus") == 22, 10, what="the link down")
        wait_for(lambda: fake.logins >= 3, 15, what="three attempts")   # 0.5-1 s, then 1-2 s: backoff
        lines = [r.getMessage() for r in caplog.records if "refused the login" in r.getMessage()]
        assert len(lines) == 1, lines
        assert not [r for r in caplog.records if "dialplan" in r.getMessage()]
        _, page, _ = gw.http("GET", "/status")
        _, metrics, _ = gw.http("GET", "/metrics")
        assert wrong not in caplog.text and wrong.encode() not in page + metrics
    finally:
        gw.close()


def test_a_logon_is_answered_once_asterisk_has_told_the_member_in(asterisk):
    """Asterisk replies to QueueAdd before its QueueMemberAdded is out (a stasis message; under load, after
    the reply to the next action too). Answered at the reply, Protheus' Ready right after got its READY
    before the LOGGEDON, and the bar showed the agent logged on but not ready (CI saw READY, LOGGEDON)."""
    fake, port = asterisk.fake, asterisk.port
    gw = RunningGateway(_config(port, keepalive=30, queues={"701": "vendas"}))
    try:
        in_service(gw, "2001")
        since = mark(gw)
        answered = []
        logon = threading.Thread(target=lambda: answered.append(
            gw.code("Logon", device="2001", agentID="1234", groupID="701")))
        logon.start()
        asterisk.host.run(fake.action_seen("QueueAdd"))
        logon.join(0.3)
        assert answered == [], "the Logon was answered before Asterisk told the member in"
        asterisk.in_loop(lambda: fake.event(Event="QueueMemberAdded", Queue="vendas", MemberName="1234",
                                            Interface="PJSIP/2001", StateInterface="PJSIP/2001", Paused="1",
                                            PausedReason="smartcti-logon"))
        logon.join(5)
        assert answered == [0]
        # Ready likewise: queryAgentState right after it reads the member's pause, which the event sets
        ready = threading.Thread(target=lambda: answered.append(
            gw.code("Ready", device="2001", agentID="", groupID="")))
        ready.start()
        asterisk.host.run(fake.action_seen("QueuePause"))
        ready.join(0.3)
        assert answered == [0], "the Ready was answered before Asterisk told the pause off"
        asterisk.in_loop(lambda: fake.event(Event="QueueMemberPause", Queue="vendas", MemberName="1234",
                                            Interface="PJSIP/2001", Paused="0", PausedReason=""))
        ready.join(5)
        assert answered == [0, 0] and gw.code("queryAgentState", cDevice="2001") == 28
        assert names(wait_device(gw, "2001", ["LOGGEDON", "READY"], since)) == ["LOGGEDON", "READY"]
    finally:
        gw.close()


def test_a_logon_whose_member_event_never_comes_is_answered_anyway(asterisk):
    """An Asterisk that never sends QueueMemberAdded nor QueueMemberPause (filtered out by its manager.conf) costs a Logon a moment
    (a quarter of the PABX timeout at most), never a refusal nor the link."""
    fake, port = asterisk.fake, asterisk.port
    gw = RunningGateway(_config(port, keepalive=30, queues={"701": "vendas"}))
    try:
        in_service(gw, "2001")
        assert gw.code("Logon", device="2001", agentID="1234", groupID="701") == 0
        assert gw.in_loop(lambda: gw.link(2).driver.tracker.joining) == set()
        assert gw.code("Ready", device="2001", agentID="", groupID="") == 0 and gw.code("SystemStatus") == 0
    finally:
        gw.close()
