"""The supervisor's board over real HTTP on loopback, on a gateway with its embedded Dígitro simulator:
login, sessions, CSRF, the reverse proxy's header, the board's JSON and event stream, the actions and
their audit lines."""
from __future__ import annotations

import http.client
import json
import logging
import re
import time
from types import SimpleNamespace as NS
from urllib.parse import urlencode

import pytest

from smartcti_gateway.core.pabx import AgentState
from smartcti_gateway.supervisor.passwords import hash_password

from .support import RunningGateway, agent_ready, in_service, mark, simulated_config, wait_device, wait_for

PASSWORD = "maria-secret-1"
HASH = hash_password(PASSWORD)
ANI = "4832810000"


def supervised(tmp_path, **section) -> dict:
    cfg = simulated_config()
    cfg["supervisor"] = {"users": {"maria": HASH}, "audit_log": str(tmp_path / "audit.log"), **section}
    return cfg


@pytest.fixture
def gw(tmp_path):
    g = RunningGateway(supervised(tmp_path))
    yield g
    g.close()


class Client:
    """A browser's part of HTTP: cookies kept per name, every Set-Cookie read."""

    def __init__(self, gw, headers: dict | None = None):
        self.gw, self.headers, self.cookies = gw, headers or {}, {}

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
        h = {**self.headers, **(headers or {})}
        if self.cookies:
            h["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        conn = http.client.HTTPConnection("127.0.0.1", self.gw.port, timeout=30)
        try:
            conn.request(method, path, body=body, headers=h)
            resp = conn.getresponse()
            data = resp.read()
        finally:
            conn.close()
        for cookie in resp.headers.get_all("Set-Cookie") or []:
            name, _, rest = cookie.partition("=")
            value = rest.split(";", 1)[0]
            if value in ("", '""') or "Max-Age=0" in cookie:
                self.cookies.pop(name, None)
            else:
                self.cookies[name] = value
        return NS(status=resp.status, body=data, text=data.decode("utf-8", "replace"), headers=resp.headers,
                  cookies=resp.headers.get_all("Set-Cookie") or [])

    def login(self, user: str = "maria", password: str = PASSWORD, headers: dict | None = None):
        return self.request("POST", "/supervisor/login", urlencode({"user": user, "password": password}).encode(),
                            {"Content-Type": "application/x-www-form-urlencoded", **(headers or {})})

    def board(self) -> dict:
        r = self.request("GET", "/supervisor/api/board")
        assert r.status == 200, r.text
        self.csrf = r.headers["X-CSRF-Token"]
        return json.loads(r.body)

    def act(self, headers: dict | None = None, raw: bytes | None = None, **body):
        if not hasattr(self, "csrf"):
            self.board()
        r = self.request("POST", "/supervisor/api/actions", raw if raw is not None else json.dumps(body).encode(),
                         {"Content-Type": "application/json", "X-CSRF-Token": self.csrf, **(headers or {})})
        return r.status, json.loads(r.body)


def signed_in(gw, **kw) -> Client:
    c = Client(gw, **kw)
    r = c.login()
    assert r.status == 303 and r.headers["Location"] == "/supervisor", r.text
    return c


def audit_lines(tmp_path) -> list[dict]:
    path = tmp_path / "audit.log"
    if not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        stamp, _, rest = line.partition(" ")
        fields = {"time": stamp}
        for key, value in re.findall(r'(\w+)=("(?:[^"\\]|\\.)*"|\S*)', rest):
            fields[key] = json.loads(value) if value.startswith('"') else value
        out.append(fields)
    return out


def agent_of(board: dict, device: str, link: int = 1) -> dict | None:
    view = next(l for l in board["links"] if l["link"] == link)
    return next((a for a in view["agents"] if a["device"] == device), None)


def group_of(board: dict, group: str, link: int = 1) -> dict | None:
    view = next(l for l in board["links"] if l["link"] == link)
    return next((g for g in view["groups"] if g["group"] == group), None)


def having(predicate, value):
    """``value`` when ``predicate(value)``, else None: for wait_for on a part of the board."""
    return value if value is not None and predicate(value) else None


def in_loop_set(gw, obj, name, value):
    gw.in_loop(lambda: setattr(obj, name, value))


class FakeClock:
    def __init__(self):
        self.t = time.monotonic()

    def __call__(self):
        return self.t


# ----------------------------------------------------------------- login
def test_the_board_asks_for_a_login_first(gw):
    c = Client(gw)
    r = c.request("GET", "/supervisor")
    assert r.status == 303 and r.headers["Location"] == "/supervisor/login"
    r = c.request("GET", "/supervisor/login")
    assert r.status == 200 and "Entrar na supervisão" in r.text and 'name="password"' in r.text
    assert "default-src 'none'" in r.headers["Content-Security-Policy"] and r.headers["X-Frame-Options"] == "DENY"
    r = c.request("GET", "/supervisor/login?lang=en")
    assert "Sign in to the supervisor" in r.text
    assert "Sign in to" in c.request("GET", "/supervisor/login").text      # the choice is remembered
    for path in ("/supervisor/api/board", "/supervisor/events"):
        r = c.request("GET", path)
        assert r.status == 401 and json.loads(r.body)["ok"] is False
    assert c.request("GET", "/supervisor/static/board.js").status == 200
    assert c.request("GET", "/supervisor/static/../../config.py").status == 404


def test_a_login_gives_a_strict_httponly_session_cookie(gw, tmp_path):
    c = Client(gw)
    r = c.login()
    assert r.status == 303 and r.headers["Location"] == "/supervisor"
    session = next(s for s in r.cookies if s.startswith("smartcti_supervisor="))
    assert "HttpOnly" in session and "SameSite=Strict" in session and "Path=/supervisor" in session
    assert len(c.cookies["smartcti_supervisor"]) >= 40
    page = c.request("GET", "/supervisor")
    assert page.status == 200 and "Supervisão" in page.text and ">maria</b>" in page.text
    assert PASSWORD not in page.text and HASH not in page.text
    csrf = re.search(r'<meta name="csrf-token" content="([^"]+)">', page.text).group(1)
    assert csrf != c.cookies["smartcti_supervisor"]
    assert "Supervisor" in c.request("GET", "/supervisor?lang=en").text
    assert [(a["user"], a["action"], a["result"]) for a in audit_lines(tmp_path)] == [("maria", "login", "0")]
    # logout: the session ends at the server, not only in the browser
    old = dict(c.cookies)
    r = c.request("POST", "/supervisor/logout", urlencode({"csrf": csrf}).encode(),
                  {"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status == 303 and r.headers["Location"] == "/supervisor/login"
    again = Client(gw)
    again.cookies = old
    assert again.request("GET", "/supervisor/api/board").status == 401
    assert audit_lines(tmp_path)[-1]["action"] == "logout"


def test_a_wrong_password_is_logged_without_the_password(gw, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    for user, password in (("maria", "wrong-password"), ("nobody", "whatever-it-is")):
        r = Client(gw).login(user, password)
        assert r.status == 401 and "Usuário ou senha inválidos." in r.text
        assert "smartcti_supervisor=" not in " ".join(r.cookies)
    assert "failed login for user 'maria' from 127.0.0.1" in caplog.text
    assert "failed login for user 'nobody' from 127.0.0.1" in caplog.text
    everything = caplog.text + (tmp_path / "audit.log").read_text()
    for secret in ("wrong-password", "whatever-it-is", PASSWORD, HASH):
        assert secret not in everything
    assert [(a["user"], a["result"]) for a in audit_lines(tmp_path)] == [("maria", "1"), ("nobody", "1")]


def test_failed_logins_are_rate_limited_per_address(gw, caplog):
    clock = FakeClock()
    in_loop_set(gw, gw.gateway.supervisor.limiter, "clock", clock)
    for _ in range(5):
        assert Client(gw).login(password="not-the-password").status == 401
    r = Client(gw).login()                     # the right password, too late
    assert r.status == 429 and int(r.headers["Retry-After"]) > 0 and "Muitas tentativas" in r.text
    assert "login attempts from 127.0.0.1 refused" in caplog.text
    clock.t += 301
    assert Client(gw).login().status == 303
    assert gw.code("SystemStatus") == 0          # the daemon went on


def test_the_session_expires_after_session_minutes_of_idleness(tmp_path):
    g = RunningGateway(supervised(tmp_path, session_minutes=10))
    try:
        clock = FakeClock()
        in_loop_set(g, g.gateway.supervisor.sessions, "clock", clock)
        c = signed_in(g)
        for _ in range(3):                      # each request slides it
            clock.t += 9 * 60
            assert c.request("GET", "/supervisor/api/board").status == 200
        clock.t += 10 * 60 + 1
        assert c.request("GET", "/supervisor/api/board").status == 401
        assert c.request("GET", "/supervisor").headers["Location"] == "/supervisor/login"
    finally:
        g.close()


# ------------------------------------------------------------------- CSRF
def test_posts_need_the_sessions_csrf_token_and_our_origin(gw, tmp_path):
    c = signed_in(gw)
    c.board()
    body = json.dumps({"link": 1, "action": "ready", "device": "2001"}).encode()
    for headers in ({}, {"X-CSRF-Token": "forged"}, {"X-CSRF-Token": c.csrf[:-1]}):
        r = c.request("POST", "/supervisor/api/actions", body, {"Content-Type": "application/json", **headers})
        assert r.status == 403 and "CSRF" in json.loads(r.body)["message"]
    other = signed_in(gw)
    other.board()
    assert other.csrf != c.csrf
    status, answer = c.act(headers={"X-CSRF-Token": other.csrf}, link=1, action="ready", device="2001")
    assert status == 403                          # another session's token is no good here
    status, answer = c.act(headers={"Origin": "http://evil.example"}, link=1, action="ready", device="2001")
    assert status == 403 and "Origin" in answer["message"]
    assert c.act(headers={"Sec-Fetch-Site": "cross-site"}, link=1, action="ready", device="2001")[0] == 403
    status, answer = c.act(headers={"Origin": f"http://{gw.host}"}, link=1, action="ready", device="9999")
    assert status == 400 and answer["result"] == 18          # past the checks: the device is unknown
    # the logout form and the login form too
    r = c.request("POST", "/supervisor/logout", b"csrf=forged", {"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status == 403 and c.request("GET", "/supervisor/api/board").status == 200
    r = Client(gw).login(headers={"Origin": "http://evil.example"})
    assert r.status == 403 and "smartcti_supervisor=" not in " ".join(r.cookies)
    assert [a["action"] for a in audit_lines(tmp_path)].count("ready") == 1    # only the one that got through


# ------------------------------------------------------------ reverse proxy
def test_the_trusted_header_is_believed_from_trusted_proxies_only(tmp_path):
    g = RunningGateway(supervised(tmp_path, trusted_header="X-Remote-User", trusted_proxies=["127.0.0.1"],
                                  users={"maria": HASH, "joao": "proxy"}))
    try:
        c = Client(g, headers={"X-Remote-User": "joao", "X-Forwarded-For": "10.1.2.3"})
        board = c.board()
        assert board["links"][0]["link"] == 1 and "smartcti_supervisor" in c.cookies
        assert ">joao</b>" in c.request("GET", "/supervisor").text
        assert c.act(link=1, action="ready", device="9999")[0] == 400
        line = audit_lines(tmp_path)[-1]
        assert (line["user"], line["address"]) == ("joao", "10.1.2.3")     # the client behind the proxy
        r = Client(g, headers={"X-Remote-User": "mallory"}).request("GET", "/supervisor/api/board")
        assert r.status == 403 and "not one of supervisor.users" in json.loads(r.body)["message"]
        assert Client(g).login("joao", "proxy").status == 401        # proxy-only: no password works
        assert Client(g).login().status == 303                       # the form still works for the others
    finally:
        g.close()
    g = RunningGateway(supervised(tmp_path, trusted_header="X-Remote-User", trusted_proxies=["10.9.9.9"]))
    try:
        r = Client(g, headers={"X-Remote-User": "maria"}).request("GET", "/supervisor/api/board")
        assert r.status == 401                        # loopback is not the proxy: the header counts for nothing
    finally:
        g.close()


def test_allow_limits_who_reaches_the_board(tmp_path):
    g = RunningGateway(supervised(tmp_path, allow=["10.0.0.0/8"]))
    try:
        for path in ("/supervisor", "/supervisor/login", "/supervisor/api/board"):
            r = Client(g).request("GET", path)
            assert r.status == 403 and b"supervisor.allow" in r.body
        assert Client(g).login().status == 403
        assert g.http("GET", "/")[0] == 200           # the status page keeps its own status_allow
    finally:
        g.close()


def test_no_section_no_board():
    g = RunningGateway(simulated_config())
    try:
        assert g.http("GET", "/supervisor")[0] == 404 and g.gateway.supervisor is None
    finally:
        g.close()


# ------------------------------------------------------------------- board
class SimQueues:
    """A stand-in for the link's queue statistics (another module's work, read as ``link.queues``): the
    simulator's own queues, so that the board's use of that contract is tried end to end."""

    def __init__(self, sim):
        self.sim, self.seen = sim, {}

    def snapshot(self, service_level_seconds):
        out = {}
        for group, ids in self.sim.queues.items():
            waiting = [NS(call_id=c, calling=self.sim.calls[c].ani, since=self.seen.setdefault(c, time.time()))
                       for c in ids if c in self.sim.calls]
            out[group] = NS(waiting=waiting, answered=0, abandoned=0, service_level=None)
        return out


def test_the_board_while_a_call_waits_rings_and_is_answered(gw):
    """With the link's own queue statistics when it has them (a Dígitro link polls the group's calls),
    else with SimQueues in their place."""
    c = signed_in(gw)
    in_service(gw, "2001")
    assert gw.code("Logon", device="2001", agentID="1234", groupID="701") == 0
    assert gw.code("NotReady", device="2001", agentID="", groupID="") == 0
    real = getattr(gw.link(), "queues", None) is not None
    if not real:
        in_loop_set(gw, gw.link(), "queues", SimQueues(gw.gateway.simulator))
    _, body = gw.sim("/sim/inbound", {"ani": ANI, "dnis": "7001", "group": "701"})
    call_id = body["call_id"]

    def waiting():
        g = group_of(c.board(), "701")
        return g if g and [w["call_id"] for w in g["waiting"] or ()] == [call_id] else None
    g = wait_for(waiting, timeout=10, what="the call waiting in group 701")
    assert g["waiting"][0]["calling"] == ANI and g["waiting"][0]["seconds"] >= 0
    assert g["counts"] == {"not_ready": 1} and g["answered"] == 0
    a = agent_of(c.board(), "2001")
    assert (a["agent"], a["state"], a["call"]) == ("1234", "not_ready", None)

    assert gw.code("Ready", device="2001", agentID="", groupID="") == 0     # the agent is free: it rings
    a = wait_for(lambda: having(lambda a: a["call"], agent_of(c.board(), "2001")), what="ringing")
    assert a["state"] == "busy" and a["call"]["call_id"] == call_id
    assert (a["call"]["calling"], a["call"]["state"]) == (ANI, "alerting")

    assert gw.code("Answer", device="2001") == 0
    a = wait_for(lambda: having(lambda a: a["call"] and a["call"]["state"] == "connected",
                                agent_of(c.board(), "2001")), what="answered")
    assert a["state"] == "busy"
    g = wait_for(lambda: having(lambda g: g["waiting"] == [], group_of(c.board(), "701")), timeout=10,
                 what="nobody waiting any more")
    assert g["counts"] == {"busy": 1}
    if real:
        g = wait_for(lambda: having(lambda g: g["answered"] == 1, group_of(c.board(), "701")),
                     timeout=10, what="one answered today")
        assert g["abandoned"] == 0 and g["service_level"] == 1.0
    gw.sim("/sim/hangup", {"device": "2001"})
    a = wait_for(lambda: having(lambda a: a["call"] is None, agent_of(c.board(), "2001")), what="ended")
    assert a["state"] == "ready"


def test_without_queue_statistics_the_numbers_are_unknown(gw):
    c = signed_in(gw)
    in_service(gw, "2001")
    agent_ready(gw)
    class WithoutQueues:
        """The link as it was before it had queue statistics (the link itself is left alone)."""

        def __init__(self, link):
            self._link = link

        def __getattr__(self, name):
            if name == "queues":
                raise AttributeError(name)
            return getattr(self._link, name)

    in_loop_set(gw, gw.gateway.supervisor, "source", NS(links=[WithoutQueues(l) for l in gw.gateway.links]))
    g = group_of(c.board(), "701")
    assert (g["waiting"], g["answered"], g["abandoned"], g["service_level"]) == (None, None, None, None)
    assert c.board()["links"][0]["queues"] is False and agent_of(c.board(), "2001")["state"] == "ready"


# ------------------------------------------------------------------ stream
class Stream:
    """One server-sent events connection: ``next()`` is the next block (event name, data, comment)."""

    def __init__(self, client: Client, timeout: float = 10.0):
        self.conn = http.client.HTTPConnection("127.0.0.1", client.gw.port, timeout=timeout)
        self.conn.request("GET", "/supervisor/events",
                          headers={"Cookie": "; ".join(f"{k}={v}" for k, v in client.cookies.items())})
        self.resp = self.conn.getresponse()

    def next(self):
        name, data, comments = "message", [], []
        while True:
            line = self.resp.readline()
            if not line:
                return None                      # the server ended the stream
            line = line.decode("utf-8").rstrip("\n")
            if line == "":
                if data or comments or name != "message":
                    return NS(name=name, data="\n".join(data), comments=comments)
                continue
            field, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if field == "":
                comments.append(value)
            elif field == "event":
                name = value
            elif field == "data":
                data.append(value)

    def until(self, predicate, timeout: float = 10.0, what: str = "an event"):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ev = self.next()
            if ev is None:
                raise AssertionError(f"the stream ended while waiting for {what}")
            if predicate(ev):
                return ev
        raise AssertionError(f"no {what} within {timeout} s")

    def close(self):
        self.conn.close()


def test_the_event_stream_sends_each_change(gw):
    in_service(gw, "2001")
    agent_ready(gw)
    c = signed_in(gw)
    s = Stream(c)
    try:
        assert s.resp.status == 200 and s.resp.getheader("Content-Type").startswith("text/event-stream")
        first = json.loads(s.until(lambda e: e.data).data)
        assert agent_of(first, "2001")["state"] == "ready"
        _, body = gw.sim("/sim/inbound", {"ani": ANI, "dnis": "7001", "device": "2001"})

        def rings(ev):
            a = ev.data and agent_of(json.loads(ev.data), "2001")
            return bool(a and a["call"] and a["call"]["calling"] == ANI)
        ev = s.until(rings, what="the ringing call")
        assert agent_of(json.loads(ev.data), "2001")["call"]["call_id"] == body["call_id"]
    finally:
        s.close()


def test_the_stream_beats_and_ends_with_the_session(gw):
    in_loop_set(gw, gw.gateway.supervisor, "heartbeat", 0.2)
    clock = FakeClock()
    in_loop_set(gw, gw.gateway.supervisor.sessions, "clock", clock)
    c = signed_in(gw)
    s = Stream(c)
    try:
        s.until(lambda e: e.data, what="the first snapshot")
        s.until(lambda e: "keep-alive" in e.comments, what="a heartbeat")
        clock.t += 480 * 60 + 1
        assert s.until(lambda e: e.name == "expired", what="the end of the session").name == "expired"
        assert s.next() is None
    finally:
        s.close()
    assert Client(gw).request("GET", "/supervisor/api/board").status == 401


def test_the_gateway_stops_at_once_with_a_board_open(tmp_path):
    g = RunningGateway(supervised(tmp_path))
    c = signed_in(g)
    s = Stream(c)
    s.until(lambda e: e.data)
    started = time.monotonic()
    g.close()
    assert time.monotonic() - started < 10
    s.close()


# ----------------------------------------------------------------- actions
def test_each_action_through_the_simulator_with_its_audit_line(gw, tmp_path):
    in_service(gw, "2001")
    agent_ready(gw)
    c = signed_in(gw)
    def model():
        return gw.in_loop(lambda: gw.link().switch.agent_state("2001"))
    since = mark(gw)

    status, answer = c.act(link=1, action="pause", device="2001", reason="")
    assert (status, answer) == (200, {"ok": True, "result": 0, "message": "done"})
    assert model() is AgentState.NOT_READY
    wait_device(gw, "2001", ["NOTREADY"], since)              # Protheus heard it like any other
    assert agent_of(c.board(), "2001")["state"] == "not_ready"

    since = mark(gw)
    assert c.act(link=1, action="ready", device="2001")[1]["ok"]
    assert model() is AgentState.READY
    wait_device(gw, "2001", ["READY"], since)

    _, body = gw.sim("/sim/inbound", {"ani": ANI, "dnis": "7001", "device": "2001"})
    wait_for(lambda: gw.conn_state("2001").get(body["call_id"]) == "alerting", what="ringing")
    assert gw.code("Answer", device="2001") == 0
    wait_for(lambda: gw.conn_state("2001").get(body["call_id"]) == "connected", what="answered")
    status, answer = c.act(link=1, action="hangup", device="2001", call_id=body["call_id"])
    assert (status, answer["ok"]) == (200, True), answer
    wait_for(lambda: not gw.conn_state("2001"), what="the call cleared")
    assert not gw.sim_state()["calls"]

    status, answer = c.act(link=1, action="logoff", device="2001")
    assert answer["ok"] and model() is AgentState.LOGGED_OFF
    assert gw.sim_state()["devices"]["2001"]["agent"] == ""

    status, answer = c.act(link=1, action="listen", device="2001", phone="2099")
    assert (status, answer["ok"], answer["result"]) == (200, False, 21) and "Asterisk" in answer["message"]

    lines = [l for l in audit_lines(tmp_path) if l["action"] != "login"]
    assert [(l["action"], l["device"], l["result"]) for l in lines] == [
        ("pause", "2001", "0"), ("ready", "2001", "0"), ("hangup", "2001", "0"), ("logoff", "2001", "0"),
        ("listen", "2001", "21")]
    hangup = lines[2]
    assert (hangup["user"], hangup["address"], hangup["link"], hangup["call_id"]) == \
        ("maria", "127.0.0.1", "1", body["call_id"])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d", hangup["time"])
    assert oct((tmp_path / "audit.log").stat().st_mode & 0o777) == "0o640"
    assert PASSWORD not in (tmp_path / "audit.log").read_text()


def test_bad_input_is_400_with_a_reason_and_the_daemon_goes_on(gw, tmp_path):
    in_service(gw, "2001")
    c = signed_in(gw)
    cases = [
        ({"link": 1, "action": "ready", "device": "9999"}, 18, "not in service"),
        ({"link": 1, "action": "reboot", "device": "2001"}, 3, "unknown action"),
        ({"link": 7, "action": "ready", "device": "2001"}, 3, "no link 7"),
        ({"link": 1, "action": "hangup", "device": "2001"}, 19, "no call"),
    ]
    for body, code, why in cases:
        status, answer = c.act(**body)
        assert status == 400 and answer["ok"] is False and answer["result"] == code and why in answer["message"]
    status, answer = c.act(raw=b'{"link": 1, "action": ')
    assert status == 400 and "not JSON" in answer["message"]
    r = c.request("POST", "/supervisor/api/actions", b"link=1", {"Content-Type": "application/x-www-form-urlencoded",
                                                                  "X-CSRF-Token": c.csrf})
    assert r.status == 400 and "Content-Type" in json.loads(r.body)["message"]
    assert gw.code("SystemStatus") == 0 and c.board()["links"][0]["up"] is True
    assert [l["result"] for l in audit_lines(tmp_path) if l["action"] != "login"] == ["18", "3", "3", "19", "3", "3"]


def test_secrets_never_reach_a_page_or_the_metrics(gw):
    c = signed_in(gw)
    texts = [c.request("GET", p).text for p in ("/supervisor", "/supervisor/api/board", "/supervisor/login")]
    texts += [gw.http("GET", p)[1].decode() for p in ("/", "/metrics")]
    for text in texts:
        assert HASH not in text and PASSWORD not in text and "scrypt$" not in text
