"""ANS protocols end to end on the simulated NGC: issued as an inbound call rings, carried to Protheus' screen
pop through the ASSOCIATEDDATA template, followed to its end in the record; the HTTP API of the other
channels; the external generator and the beneficiary hook against real HTTP servers on loopback."""
from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from urllib.parse import quote

import pytest
from aiohttp import web

from smartcti_gateway.ans.options import ProtocolConfig
from smartcti_gateway.ans.service import Protocols
from smartcti_gateway.ans.store import ProtocolError

from .support import RunningGateway, agent_ready, in_service, mark, params, simulated_config, wait_device, wait_for

ANI, DNIS = "4832810000", "7001"
NUMBER = re.compile(r"^123456\d{8}\d{6}$")


def protocol_config(tmp_path: Path, **protocol) -> dict:
    cfg = simulated_config()
    cfg["protocol"] = {"registro_ans": "123456", "database": str(tmp_path / "protocols.sqlite"), **protocol}
    cfg["logging"] = {"dir": str(tmp_path / "logs"), "per_extension": True}
    return cfg


@pytest.fixture
def gw(tmp_path):
    g = RunningGateway(protocol_config(tmp_path, associated_data="5|{protocolo};{ani}"))
    yield g
    g.close()


def api(gw, method: str, path: str, body=None, headers=None) -> tuple[int, dict | str, dict]:
    raw = json.dumps(body).encode() if body is not None and not isinstance(body, bytes) else body
    status, data, h = gw.http(method, path, raw, {"Content-Type": "application/json", **(headers or {})})
    text = data.decode("utf-8")
    try:
        return status, json.loads(text), h
    except ValueError:
        return status, text, h


# ------------------------------------------------------------------ the call
def test_an_inbound_call_gets_its_number_as_it_rings_and_the_pop_carries_it(gw, tmp_path):
    in_service(gw, "2001")
    since = agent_ready(gw)
    _, body = gw.sim("/sim/inbound", {"ani": ANI, "dnis": DNIS, "group": "701"})
    call_id = body["call_id"]
    ringing, = wait_device(gw, "2001", ["RINGING"], since)
    data = params(ringing)["ASSOCIATEDDATA"]
    kind, _, rest = data.partition("|")
    number, _, ani = rest.partition(";")
    assert kind == "5" and ani == ANI and NUMBER.match(number), data
    # Protheus customisations find it by the CALLID the pop carried
    status, found, _ = api(gw, "GET", f"/protocols?call_id={quote(call_id)}")
    assert status == 200 and [p["protocol"] for p in found["protocols"]] == [number]
    record = found["protocols"][0]
    assert (record["channel"], record["link_id"], record["device"], record["status"], record["ani"]) == (
        "phone", 1, "2001", "ringing", ANI)
    assert gw.code("Answer", device="2001") == 0
    wait_device(gw, "2001", ["RINGING", "ANSWERED"], since)
    gw.sim("/sim/hangup", {"device": "2001"})
    wait_device(gw, "2001", ["RINGING", "ANSWERED", "CONNECTIONCLEARED"], since)
    record = wait_for(lambda: (r := api(gw, "GET", f"/protocols/{number}")[1]) and r["status"] == "ended" and r,
                      what="the record ended")
    assert record["agent"] == "1234" and call_id in record["call_ids"]
    assert [h["status"] for h in record["history"]] == ["issued", "ringing", "answered", "ended"]
    # the extension's own log names the number
    log = "".join(p.read_text() for p in (tmp_path / "logs").glob("2001-1-*.log"))
    assert f"PROTOCOLO ANS {number} (call {call_id})" in log


def test_the_same_call_ringing_again_keeps_its_number(gw):
    in_service(gw, "2001", "2002")
    agent_ready(gw)
    agent_ready(gw, device="2002", agent="1235")
    since = mark(gw)
    _, body = gw.sim("/sim/inbound", {"ani": ANI, "dnis": DNIS, "group": "701"})
    first, = wait_device(gw, "2001", ["RINGING"], since)
    number = params(first)["ASSOCIATEDDATA"][2:].split(";")[0]
    assert gw.code("Answer", device="2001") == 0
    wait_device(gw, "2001", ["RINGING", "ANSWERED"], since)
    assert gw.code("OneStepCallTransfer", device="2001", deviceTo="2002") == 0
    again, = wait_device(gw, "2002", ["RINGING"], since)
    assert params(again)["ASSOCIATEDDATA"] == f"5|{number};{ANI}"
    status, found, _ = api(gw, "GET", f"/protocols?call_id={quote(body['call_id'])}")
    assert [p["protocol"] for p in found["protocols"]] == [number]


def test_an_agents_own_outbound_call_gets_no_number(gw):
    since = in_service(gw, "2001")
    assert gw.code("MakeCall", device="2001", telephoneNumber="4899990000") == 0
    ringing = wait_device(gw, "2001", ["SERVICEINITIATED", "ORIGINATED", "RINGING"], since)[-1]
    assert params(ringing)["CALLTYPE"] == "2" and params(ringing)["ASSOCIATEDDATA"] == "3|2001"
    assert api(gw, "GET", "/status-of-nothing")[0] == 404
    html = gw.http("GET", "/")[1].decode()
    assert "ANS protocols: 0 today" in html


def test_without_a_template_the_pop_is_unchanged_and_the_number_still_issued(tmp_path):
    g = RunningGateway(protocol_config(tmp_path))
    try:
        in_service(g, "2001")
        since = agent_ready(g)
        _, body = g.sim("/sim/inbound", {"ani": ANI, "dnis": DNIS, "group": "701"})
        ringing, = wait_device(g, "2001", ["RINGING"], since)
        assert params(ringing)["ASSOCIATEDDATA"] == f"3|{ANI}"
        _, found, _ = api(g, "GET", f"/protocols?call_id={quote(body['call_id'])}")
        number = found["protocols"][0]["protocol"]
        assert NUMBER.match(number)
        html = g.http("GET", "/")[1].decode()
        assert "ANS protocols: 1 today" in html and number in html
        metrics = g.http("GET", "/metrics")[1].decode()
        assert 'smartcti_protocols_issued_total{channel="phone"} 1.0' in metrics
        assert "smartcti_protocols_today 1.0" in metrics
    finally:
        g.close()


def test_on_a_dialect_that_attaches_data_the_number_rides_on_the_call_at_the_ngc(tmp_path):
    cfg = protocol_config(tmp_path)
    cfg["links"][0]["pabx"]["dialect"] = {"methods": {"attach_data": "cti.associa_dados"}}
    g = RunningGateway(cfg)
    try:
        in_service(g, "2001")
        since = agent_ready(g)
        _, body = g.sim("/sim/inbound", {"ani": ANI, "dnis": DNIS, "group": "701"})
        wait_device(g, "2001", ["RINGING"], since)
        _, found, _ = api(g, "GET", f"/protocols?call_id={quote(body['call_id'])}")
        number = found["protocols"][0]["protocol"]
        call = wait_for(lambda: next((c for c in g.sim_state()["calls"] if c["call_id"] == body["call_id"] and
                                      c["data"]), None), what="the data on the call at the NGC")
        assert call["data"] == f"PROTOCOLO_ANS={number}"
    finally:
        g.close()


def test_issue_at_ringing_off_leaves_calls_without_a_number(tmp_path):
    g = RunningGateway(protocol_config(tmp_path, issue_at_ringing=False, associated_data="5|{protocolo};{ani}"))
    try:
        in_service(g, "2001")
        since = agent_ready(g)
        g.sim("/sim/inbound", {"ani": ANI, "dnis": DNIS, "group": "701"})
        ringing, = wait_device(g, "2001", ["RINGING"], since)
        assert params(ringing)["ASSOCIATEDDATA"] == f"3|{ANI}"     # the template wants a number: unchanged
    finally:
        g.close()


def test_a_number_the_api_issued_after_the_call_rang_follows_it_from_then_on(tmp_path):
    """Protheus' own customisation (or the agent's screen) asks for the call's number by its CALLID once it
    rang: the record then follows the call — who answered, when it ended."""
    g = RunningGateway(protocol_config(tmp_path, issue_at_ringing=False))
    try:
        in_service(g, "2001")
        since = agent_ready(g)
        _, body = g.sim("/sim/inbound", {"ani": ANI, "dnis": DNIS, "group": "701"})
        wait_device(g, "2001", ["RINGING"], since)
        assert api(g, "GET", f"/protocols?call_id={quote(body['call_id'])}")[1] == {"protocols": []}
        status, made, _ = api(g, "POST", "/protocols", {"channel": "phone", "ani": ANI, "call_id": body["call_id"]})
        assert status == 201
        assert g.code("Answer", device="2001") == 0
        g.sim("/sim/hangup", {"device": "2001"})
        wait_device(g, "2001", ["RINGING", "ANSWERED", "CONNECTIONCLEARED"], since)
        record = wait_for(lambda: (r := api(g, "GET", f"/protocols/{made['protocol']}")[1])["status"] == "ended"
                          and r, what="the record ended")
        assert (record["device"], record["agent"], record["link_id"]) == ("2001", "1234", 1)
    finally:
        g.close()


# ------------------------------------------------------------------- the API
def test_the_api_issues_finds_and_changes_records(gw):
    status, made, headers = api(gw, "POST", "/protocols", {"channel": "chat", "ani": "4899990000",
                                                         "beneficiary": "0001234500012345", "reference": "chat-77"})
    assert status == 201 and NUMBER.match(made["protocol"]) and len(made["protocol"]) == 20
    assert headers["Location"] == f"/protocols/{made['protocol']}"
    assert (made["channel"], made["beneficiary"], made["reference"], made["status"], made["source"]) == (
        "chat", "0001234500012345", "chat-77", "issued", "gateway")
    assert made["created"].endswith("-03:00")
    again, second, _ = api(gw, "POST", "/protocols", {"channel": "web", "beneficiary": "0001234500012345"})
    assert again == 201 and int(second["protocol"]) == int(made["protocol"]) + 1
    status, found, _ = api(gw, "GET", "/protocols?beneficiary=0001234500012345")
    assert status == 200 and [p["protocol"] for p in found["protocols"]] == [second["protocol"], made["protocol"]]
    status, one, _ = api(gw, "GET", f"/protocols/{made['protocol']}")
    assert status == 200 and one["protocol"] == made["protocol"]
    status, changed, _ = api(gw, "PATCH", f"/protocols/{made['protocol']}", {"status": "closed", "note": "resolvido"})
    assert status == 200 and changed["status"] == "closed"
    assert changed["history"][-1]["status"] == "closed" and changed["history"][-1]["note"] == "resolvido"
    # idempotent by call id
    a = api(gw, "POST", "/protocols", {"channel": "app", "ani": "1", "call_id": "app-session-9"})
    b = api(gw, "POST", "/protocols", {"channel": "app", "ani": "1", "call_id": "app-session-9"})
    assert (a[0], b[0]) == (201, 200) and a[1]["protocol"] == b[1]["protocol"]
    metrics = gw.http("GET", "/metrics")[1].decode()
    assert 'smartcti_protocols_issued_total{channel="chat"} 1.0' in metrics
    assert 'smartcti_protocol_failures_total{kind="exhausted"} 0.0' in metrics


@pytest.mark.parametrize("body, message", [
    (b"not json", "must be a JSON object"),
    ([1, 2], "must be a JSON object"),
    ({"channel": "fax", "ani": "1"}, "channel must be one of"),
    ({"channel": "chat"}, "say who the attendance is for"),
    ({"channel": "chat", "ani": {"x": 1}}, "ani must be text"),
    ({"channel": "chat", "ani": "1" * 201}, "at most 200 characters"),
    ({"channel": "chat", "ani": "1\n2"}, "without control characters"),
    ({"channel": "chat", "ani": "1", "senha": "x"}, "unknown field(s) senha"),
])
def test_bad_input_gets_400_saying_what_is_wrong(gw, body, message):
    status, answer, _ = api(gw, "POST", "/protocols", body)
    assert status == 400 and message in answer["error"], answer
    assert api(gw, "GET", "/protocols")[0] == 400
    assert api(gw, "GET", "/protocols/12;DROP")[0] == 400
    assert api(gw, "GET", "/protocols/12345620991231000001")[0] == 404
    assert api(gw, "PATCH", "/protocols/12345620991231000001", {"status": "closed"})[0] == 404
    assert api(gw, "PATCH", "/protocols/12345620991231000001", {"status": "whatever"})[0] == 400
    assert gw.code("SystemStatus") == 0       # and the gateway goes on serving


def test_the_csv_export(gw):
    made = api(gw, "POST", "/protocols", {"channel": "chat", "ani": "4899990000"})[1]
    status, raw, headers = gw.http("GET", "/protocols.csv?from=2000-01-01")
    text = raw.decode("utf-8-sig")
    assert status == 200 and headers["Content-Type"].startswith("text/csv")
    assert 'filename="protocolos-20000101.csv"' in headers["Content-Disposition"]
    lines = text.splitlines()
    assert lines[0].startswith("number,created,channel") and lines[1].startswith(made["protocol"] + ",")
    assert gw.http("GET", "/protocols.csv?from=ontem")[0] == 400


def test_a_bearer_token_and_the_allow_list_guard_the_api(tmp_path):
    g = RunningGateway(protocol_config(tmp_path, api_token="s3cret-token"))
    try:
        status, answer, headers = api(g, "POST", "/protocols", {"channel": "chat", "ani": "1"})
        assert status == 401 and headers["WWW-Authenticate"].startswith("Bearer")
        assert api(g, "POST", "/protocols", {"channel": "chat", "ani": "1"},
                   {"Authorization": "Bearer wrong"})[0] == 401
        assert api(g, "POST", "/protocols", {"channel": "chat", "ani": "1"},
                   {"Authorization": "Bearer s3cret-token"})[0] == 201
        assert "s3cret-token" not in g.http("GET", "/metrics")[1].decode()
    finally:
        g.close()
    g = RunningGateway(protocol_config(tmp_path, api_allow=["10.0.0.0/8"]))
    try:
        status, answer, _ = api(g, "POST", "/protocols", {"channel": "chat", "ani": "1"})
        assert status == 403 and "protocol.api_allow" in answer["error"]
    finally:
        g.close()


# ------------------------------------------------- external generator, hook
class Stub:
    """A real HTTP server on loopback playing the site's protocol generator or beneficiary hook."""

    def __init__(self):
        self.requests: list[dict] = []
        self.reply = (200, {"protocol": "EXT-000001"})
        self.delay = 0.0

    async def start(self):
        app = web.Application()

        async def handle(request):
            self.requests.append({"body": await request.json(), "auth": request.headers.get("Authorization")})
            await asyncio.sleep(self.delay)
            status, body = self.reply
            return web.json_response(body, status=status)

        app.router.add_post("/{tail:.*}", handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self.runner.addresses[0][1]}"
        return self


def service(tmp_path, **kw) -> Protocols:
    cfg = ProtocolConfig(registro_ans="123456", database=str(tmp_path / "p.sqlite"), **kw)
    return Protocols(cfg)


def test_an_external_generator_makes_the_numbers_and_the_gateway_keeps_them(tmp_path):
    async def scenario():
        stub = await Stub().start()
        p = service(tmp_path, mode="external")
        p.cfg.external.url, p.cfg.external.token, p.cfg.external.timeout = stub.url + "/gerar", "tk", 0.5
        await p.start()
        try:
            made = await p.issue("phone", call_id="c1", ani=ANI)
            assert (made.number, made.source) == ("EXT-000001", "external")
            assert stub.requests[0]["body"]["call_id"] == "c1" and stub.requests[0]["auth"] == "Bearer tk"
            assert (await p.issue("phone", call_id="c1")).number == "EXT-000001"     # asked once per call
            assert len(stub.requests) == 1
            stub.reply = (500, {})
            fallback = await p.issue("phone", call_id="c2")
            assert fallback.source == "fallback" and NUMBER.match(fallback.number)
            stub.reply, stub.delay = (200, {"protocol": "EXT-2"}), 2.0
            slow = await asyncio.wait_for(p.issue("phone", call_id="c3"), 1.5)    # the hard timeout holds
            assert slow.source == "fallback"
            stub.delay = 0.0
            p.cfg.external.fallback = False
            stub.reply = (200, {"protocol": "no spaces allowed"})
            with pytest.raises(ProtocolError, match="gave no number"):
                await p.issue("phone", call_id="c4")
            assert p.counts["external_failed"] == 3
        finally:
            await p.close()
            await stub.runner.cleanup()
    asyncio.run(scenario())


def test_the_beneficiary_hook_answers_within_its_timeout(tmp_path):
    async def scenario():
        stub = await Stub().start()
        p = service(tmp_path)
        p.cfg.beneficiary_hook.url, p.cfg.beneficiary_hook.timeout = stub.url + "/valida", 0.3
        await p.start()
        try:
            stub.reply = (200, {"valid": True, "name": "Maria"})
            assert await p.check_beneficiary("0001234500012345", ANI) is True
            assert stub.requests[-1]["body"] == {"beneficiary": "0001234500012345", "ani": ANI}
            stub.reply = (200, {"valid": False})
            assert await p.check_beneficiary("1", ANI) is False
            stub.reply = (404, {})
            assert await p.check_beneficiary("2", ANI) is False
            stub.reply = (503, {})
            assert await p.check_beneficiary("3", ANI) is None
            stub.reply, stub.delay = (200, {"valid": True}), 2.0
            assert await asyncio.wait_for(p.check_beneficiary("4", ANI), 1.0) is None
            assert (p.counts["hook_valid"], p.counts["hook_invalid"], p.counts["hook_failed"]) == (1, 2, 2)
            p.cfg.beneficiary_hook.url = ""
            assert await p.check_beneficiary("5", ANI) is None
        finally:
            await p.close()
            await stub.runner.cleanup()
    asyncio.run(scenario())


def test_mode_off_issues_nothing(tmp_path):
    async def scenario():
        p = service(tmp_path, mode="off")
        with pytest.raises(ProtocolError, match="off"):
            await p.issue("chat", ani="1")
        p.store.close()
    asyncio.run(scenario())
