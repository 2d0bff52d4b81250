"""The SmartCTIWSEventing client: schema from the site's WSDL, ADVPL conventions, envelopes, answers.

The running Protheus simulator plays the site; zeep, reading the same WSDL,
is the reference for what a message must look like.
"""
from __future__ import annotations

import asyncio
import socket
import threading

import pytest
import pytest_asyncio
import zeep
from aiohttp import web
from lxml import etree

from smartcti_gateway.core.notify import EVENT_PARAMS, Notification
from smartcti_gateway.protheus import eventing as ev_mod
from smartcti_gateway.protheus.eventing import (
    DeliveryError,
    EventingClient,
    EventingSchema,
    OperationShape,
    conventions,
    envelope,
    parse_result,
    schema_from_wsdl,
    service_url,
)
from smartcti_gateway.sim.protheus.eventing import start_protheus_simulator, wsdl

ENV = "http://schemas.xmlsoap.org/soap/envelope/"
LINK = 7

# Values exercising escaping, non-ASCII text, blanks kept as written and empty parameters.
VALUES = {
    "CALLID": "08/07/24 10:46:19 010A <0001>&00",
    "ANI": "4832810000",
    "DNIS": "",
    "ASSOCIATEDDATA": "4|ADE_CHAVE=São José|ADE_CODCON=>1",
    "CALLTYPE": 3,
    "CAUSE": 10,
    "CAGENTID": "1234",
    "CGROUPID": "500,501",
}


def note_for(name: str, cdevice: str = " 2001 ", url: str = "http://x/SMARTCTIWSEVENTING.apw") -> Notification:
    return Notification(name, cdevice.strip(), cdevice, tuple(VALUES[p] for p in EVENT_PARAMS[name]), (url,))


def tree(el) -> tuple:
    """Namespace-aware structure of an element: (QName, text, children), prefixes ignored."""
    return (el.tag, (el.text or "").strip() if len(el) else (el.text or ""),
            tuple(tree(c) for c in el if isinstance(c.tag, str)))


def body_child(xml: bytes):
    root = etree.fromstring(xml)
    assert root.tag == f"{{{ENV}}}Envelope"
    body = root.find(f"{{{ENV}}}Body")
    assert body is not None
    (child,) = list(body)
    return root, child


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest_asyncio.fixture
async def sim():
    sim, runner = await start_protheus_simulator("127.0.0.1", 0, quiet=True)
    try:
        yield sim
    finally:
        sim.set_mode("normal")
        await runner.cleanup()


@pytest_asyncio.fixture
async def client():
    c = EventingClient(timeout=2.0, wsdl_timeout=2.0)
    await c.start()
    try:
        yield c
    finally:
        await c.close()


@pytest_asyncio.fixture
async def serve():
    """Start tiny aiohttp apps: ``base = await serve(app)``; cleaned up after the test."""
    runners = []

    async def start(app: web.Application) -> str:
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        return f"http://127.0.0.1:{runner.addresses[0][1]}/"

    yield start
    for r in runners:
        await r.cleanup()


def wsdl_app(text_for, sim=None) -> web.Application:
    """GET ?WSDL -> text_for(base, location) (None: 404); POST -> forwarded to ``sim``."""

    async def handler(request: web.Request) -> web.Response:
        if request.method == "GET":
            text = text_for(f"http://{request.host}/", f"http://{request.host}{request.path}")
            if text is None:
                return web.Response(status=404, text="not found")
            return web.Response(text=text, content_type="text/xml")
        status, xml = sim.handle_post(await request.read(), host=request.host, path=request.path,
                                      soapaction=request.headers.get("SOAPAction"))
        return web.Response(status=status, text=xml, content_type="text/xml")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    return app


# ----------------------------------------------------------- (a) vs zeep
async def test_envelopes_are_what_zeep_would_send_for_all_13_operations(sim):
    schema = await asyncio.to_thread(schema_from_wsdl, sim.wsdl_url, 5.0)
    zc = await asyncio.to_thread(zeep.Client, sim.wsdl_url)
    zops = zc.service._binding._operations
    assert schema.source == "wsdl" and schema.url == sim.url
    assert set(schema.operations) == set(EVENT_PARAMS)
    for name in EVENT_PARAMS:
        note = note_for(name)
        params = note.params(LINK)
        ours_root, ours = body_child(envelope(schema.operations[name], params))
        theirs_root, theirs = body_child(etree.tostring(zc.create_message(zc.service, name, **dict(params))))
        assert ours.tag == theirs.tag == f"{{{sim.base_url}}}{name}", name
        assert tree(ours) == tree(theirs), name
        assert tree(ours_root) == tree(theirs_root), name
        assert [c.tag.rpartition("}")[2] for c in ours] == ["CDEVICE", "ILINKID", *EVENT_PARAMS[name]]
        assert ours[0].text == " 2001 " and ours[1].text == str(LINK)
        assert schema.operations[name].soapaction == zops[name].soapaction == sim.base_url + name


async def test_unqualified_children_are_written_like_zeep(serve):
    # elementFormDefault="unqualified": children carry no namespace (the m: prefixed branch)
    def text(base, location):
        return wsdl("urn:totvs:cti/", location).replace('elementFormDefault="qualified"',
                                                        'elementFormDefault="unqualified"')

    base = await serve(wsdl_app(text))
    url = base + "ws/SMARTCTIWSEVENTING.apw"
    schema = await asyncio.to_thread(schema_from_wsdl, url, 5.0)
    zc = await asyncio.to_thread(zeep.Client, url + "?WSDL")
    for name in EVENT_PARAMS:
        shape = schema.operations[name]
        assert shape.namespace == "urn:totvs:cti/" and shape.soapaction == "urn:totvs:cti/" + name
        assert all(q is False for _, q in shape.children)
        params = note_for(name).params(LINK)
        _, ours = body_child(envelope(shape, params))
        _, theirs = body_child(etree.tostring(zc.create_message(zc.service, name, **dict(params))))
        assert tree(ours) == tree(theirs), name
        assert ours.tag == "{urn:totvs:cti/}" + name
        assert [c.tag for c in ours] == ["CDEVICE", "ILINKID", *EVENT_PARAMS[name]]


async def test_wsdl_namespace_wins_over_the_host(serve):
    # a service with a NAMESPACE clause: namespace and SOAPAction come from the WSDL, POST goes to MV_TKCTIEV
    base = await serve(wsdl_app(lambda b, loc: wsdl("http://www.totvs.com.br/", "http://elsewhere/x.apw")))
    url = base + "ws/SMARTCTIWSEVENTING.apw?WSDL"
    schema = await asyncio.to_thread(schema_from_wsdl, url, 5.0)
    assert schema.url == base + "ws/SMARTCTIWSEVENTING.apw"
    assert schema.operations["READY"] == OperationShape(
        "http://www.totvs.com.br/", "READY",
        (("CDEVICE", True), ("ILINKID", True), ("CAGENTID", True), ("CGROUPID", True)),
        "http://www.totvs.com.br/READY")


async def test_wsdl_with_wrong_parameter_order_or_missing_operation_is_refused(serve):
    def swapped(base, location):
        text = wsdl(base, location)
        a = '<s:element minOccurs="1" maxOccurs="1" name="ANI" type="s:string" />'
        d = '<s:element minOccurs="1" maxOccurs="1" name="DNIS" type="s:string" />'
        head, sep, tail = text.partition('<s:element name="RINGING">')
        tail = tail.replace(a + "\n" + d, d + "\n" + a, 1)
        assert d + "\n" + a in tail
        return head + sep + tail

    def missing(base, location):
        text = wsdl(base, location)
        start = text.index('<operation name="READY">\n<soap:operation')
        end = text.index("</operation>", start) + len("</operation>")
        return text[:start] + text[end:]

    for text_for, message in ((swapped, "RINGING in the WSDL"), (missing, "no binding")):
        base = await serve(wsdl_app(text_for))
        with pytest.raises(ValueError, match=message):
            await asyncio.to_thread(schema_from_wsdl, base + "SMARTCTIWSEVENTING.apw", 5.0)


# ------------------------------------------------------- (b) conventions
def test_conventions_of_an_advpl_service():
    s = conventions("http://host:8080/ws/SMARTCTIWSEVENTING.apw?WSDL")
    assert s.source == "conventions"
    assert s.url == "http://host:8080/ws/SMARTCTIWSEVENTING.apw"
    assert set(s.operations) == set(EVENT_PARAMS)
    for name, params in EVENT_PARAMS.items():
        shape = s.operations[name]
        assert shape == OperationShape("http://host:8080/", name,
                                       tuple((p, True) for p in ("CDEVICE", "ILINKID", *params)),
                                       "http://host:8080/" + name)
    s = conventions("https://10.171.67.162:2251/SMARTCTIWSEVENTING.apw?wsdl ")
    assert s.url == "https://10.171.67.162:2251/SMARTCTIWSEVENTING.apw"
    assert s.operations["RINGING"].namespace == "https://10.171.67.162:2251/"
    assert conventions("http://h/x/SMARTCTIWSEVENTING.apw").operations["HELD"].soapaction == "http://h/HELD"


def test_conventions_envelope_is_the_wire_sample():
    s = conventions("http://protheus-host:8080/ws/SMARTCTIWSEVENTING.apw?WSDL")
    note = Notification("RINGING", "2001", "2001", ("A1B2", "4832810000", "7001", "3|4832810000", 1), ("u",))
    assert envelope(s.operations["RINGING"], note.params(1)) == (
        b'<?xml version="1.0" encoding="utf-8"?><soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/'
        b'envelope/"><soap:Body><RINGING xmlns="http://protheus-host:8080/"><CDEVICE>2001</CDEVICE>'
        b'<ILINKID>1</ILINKID><CALLID>A1B2</CALLID><ANI>4832810000</ANI><DNIS>7001</DNIS>'
        b'<ASSOCIATEDDATA>3|4832810000</ASSOCIATEDDATA><CALLTYPE>1</CALLTYPE></RINGING></soap:Body>'
        b'</soap:Envelope>')


def test_envelope_escapes_values_and_namespace():
    shape = OperationShape('http://h/?a=1&b=2', "READY",
                           (("CDEVICE", True), ("ILINKID", True), ("CAGENTID", True), ("CGROUPID", True)), "x")
    xml = envelope(shape, [("CDEVICE", "a<b"), ("ILINKID", 1), ("CAGENTID", "x&y>z"), ("CGROUPID", "ç")])
    _, el = body_child(xml)
    assert el.tag == '{http://h/?a=1&b=2}READY'
    assert [(c.tag.rpartition("}")[2], c.text) for c in el] == [
        ("CDEVICE", "a<b"), ("ILINKID", "1"), ("CAGENTID", "x&y>z"), ("CGROUPID", "ç")]


@pytest.mark.parametrize("raw,expected", [
    ("http://h:8080/ws/SMARTCTIWSEVENTING.apw?WSDL", "http://h:8080/ws/SMARTCTIWSEVENTING.apw"),
    ("  http://h:8080/SMARTCTIWSEVENTING.apw?wsdl\n", "http://h:8080/SMARTCTIWSEVENTING.apw"),
    ("http://h:8080/SMARTCTIWSEVENTING.apw", "http://h:8080/SMARTCTIWSEVENTING.apw"),
    ("http://h/S.apw?x=1", "http://h/S.apw?x=1"),
    ("http://h/S.apw?WSDL#frag", "http://h/S.apw"),
])
def test_service_url(raw, expected):
    assert service_url(raw) == expected


async def test_conventions_equal_the_wsdl_when_the_host_is_the_same(sim):
    schema = await asyncio.to_thread(schema_from_wsdl, sim.wsdl_url, 5.0)
    conv = conventions(sim.wsdl_url)
    assert conv.url == schema.url == sim.url
    assert conv.operations == schema.operations
    for name in EVENT_PARAMS:
        params = note_for(name).params(LINK)
        assert envelope(conv.operations[name], params) == envelope(schema.operations[name], params), name


# ---------------------------------------------------------- (c) answers
def answer(method: str, result: str) -> bytes:
    return (f'<?xml version="1.0" encoding="utf-8"?><soap:Envelope xmlns:soap="{ENV}"><soap:Body>'
            f'<{method}RESPONSE xmlns="http://h:8080/"><{method}RESULT>{result}</{method}RESULT>'
            f'</{method}RESPONSE></soap:Body></soap:Envelope>').encode()


def fault(code: str, text: str = "boom") -> bytes:
    return (f'<soap:Envelope xmlns:soap="{ENV}"><soap:Body><soap:Fault><faultcode>{code}</faultcode>'
            f'<faultstring>{text}</faultstring></soap:Fault></soap:Body></soap:Envelope>').encode()


def test_parse_result_values():
    assert parse_result(answer("RINGING", "0"), 200) == 0
    assert parse_result(answer("HELD", "99"), 200) == 99
    assert parse_result(answer("READY", " 0\n"), 200) == 0
    # prefixed response, other namespace
    assert parse_result(
        f'<e:Envelope xmlns:e="{ENV}"><e:Body><x:INSERVICERESPONSE xmlns:x="urn:a"><x:INSERVICERESULT>99'
        f'</x:INSERVICERESULT></x:INSERVICERESPONSE></e:Body></e:Envelope>'.encode(), 200) == 99


@pytest.mark.parametrize("code", ["soap:Client", "Client", "SOAP-ENV:Client.Validation"])
def test_client_fault_means_schema_problem(code):
    with pytest.raises(DeliveryError) as e:
        parse_result(fault(code, "missing CALLTYPE"), 500)
    assert (e.value.retry, e.value.schema) == (False, True)
    assert "missing CALLTYPE" in str(e.value)


@pytest.mark.parametrize("code,status", [("soap:Server", 500), ("Server", 200), ("soap:VersionMismatch", 500)])
def test_other_faults_are_retried(code, status):
    with pytest.raises(DeliveryError) as e:
        parse_result(fault(code), status)
    assert (e.value.retry, e.value.schema) == (True, False)


@pytest.mark.parametrize("body,status", [
    (b"Internal Server Error", 500),
    (b"", 502),
    (b"<html><body>Bad gateway", 502),
    (b"", 200),
])
def test_non_xml_answers_are_retried(body, status):
    with pytest.raises(DeliveryError) as e:
        parse_result(body, status)
    assert (e.value.retry, e.value.schema) == (True, False)
    assert f"HTTP {status}" in str(e.value)


def test_xml_error_page_with_error_status_is_retried():
    with pytest.raises(DeliveryError) as e:
        parse_result(b"<html><body>Service Unavailable</body></html>", 503)
    assert (e.value.retry, e.value.schema) == (True, False) and "503" in str(e.value)
    with pytest.raises(DeliveryError) as e:
        parse_result(answer("RINGING", "0"), 500)
    assert e.value.retry is True


@pytest.mark.parametrize("body", [
    f'<soap:Envelope xmlns:soap="{ENV}"><soap:Body><RINGINGRESPONSE/></soap:Body></soap:Envelope>'.encode(),
    answer("RINGING", "abc"),
    answer("RINGING", ""),
    b"<ok/>",
])
def test_200_without_an_integer_result_is_a_schema_problem(body):
    with pytest.raises(DeliveryError) as e:
        parse_result(body, 200)
    assert (e.value.retry, e.value.schema) == (False, True)


@pytest.mark.parametrize("body", [
    b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x "99">]><RINGINGRESULT>&x;</RINGINGRESULT>',
    b'<!DOCTYPE r SYSTEM "http://127.0.0.1:1/evil.dtd"><RINGINGRESULT>0</RINGINGRESULT>',
    b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "0"><!ENTITY b "&a;&a;&a;&a;">]>'
    b'<RINGINGRESULT>&b;</RINGINGRESULT>',
])
def test_doctype_is_refused(body):
    with pytest.raises(DeliveryError) as e:
        parse_result(body, 200)
    assert "DTD" in str(e.value)


def test_entities_after_a_long_prologue_are_never_expanded():
    # the DOCTYPE sniff looks at 2 KiB; past that the parser itself must not expand anything
    body = (b'<?xml version="1.0"?>' + b"<!--" + b"x" * 4000 + b"-->"
            + b'<!DOCTYPE r [<!ENTITY x "0">]><RINGINGRESULT>&x;</RINGINGRESULT>')
    with pytest.raises(DeliveryError) as e:
        parse_result(body, 200)
    assert "DTD" in str(e.value) and e.value.retry is True


# ------------------------------------------------- (d) client vs simulator
async def test_send_returns_0_or_99_per_session(sim, client):
    sim.set_session(" 2001 ", LINK, False)
    assert await client.send(sim.url, note_for("RINGING"), LINK) == 99
    assert await client.send(sim.url, note_for("RINGING"), LINK + 1) == 0
    assert await client.send(sim.url, note_for("RINGING", cdevice="2001"), LINK) == 0
    sim.set_session(" 2001 ", LINK, True)
    assert await client.send(sim.url, note_for("HELD"), LINK) == 0
    assert [(e["method"], e["params"]["CDEVICE"], e["params"]["ILINKID"], e["result"])
            for e in sim.events_since(0)] == [
        ("RINGING", " 2001 ", "7", 99), ("RINGING", " 2001 ", "8", 0), ("RINGING", "2001", "7", 0),
        ("HELD", " 2001 ", "7", 0)]


async def test_all_13_operations_reach_the_simulator_intact(sim, client):
    url = sim.wsdl_url  # as MV_TKCTIEV may be written, with ?WSDL
    for name in EVENT_PARAMS:
        assert await client.send(url, note_for(name, url=url), LINK) == 0, name
    events = sim.events_since(0)
    assert [e["method"] for e in events] == list(EVENT_PARAMS)
    for e in events:
        name = e["method"]
        expected = {"CDEVICE": " 2001 ", "ILINKID": str(LINK),
                    **{p: str(VALUES[p]) for p in EVENT_PARAMS[name]}}
        assert e["params"] == expected, name
        assert e["order"] == ["CDEVICE", "ILINKID", *EVENT_PARAMS[name]]
        assert e["soapaction"] == sim.base_url + name and e["soapaction_ok"] is True
        assert e["namespace"] == sim.base_url and e["path"] == "/SMARTCTIWSEVENTING.apw"
        assert e["fault"] is None and e["result"] == 0
    assert sim.wsdl_requests == 1


async def test_wsdl_is_loaded_once_per_url_under_concurrency(sim, client, monkeypatch):
    calls = []
    real = ev_mod.schema_from_wsdl

    def counting(url, timeout, ssl_context=None):
        calls.append(url)
        return real(url, timeout, ssl_context)

    monkeypatch.setattr(ev_mod, "schema_from_wsdl", counting)
    other = sim.base_url + "other/SMARTCTIWSEVENTING.apw"
    sends = [client.send(sim.url, note_for("READY"), LINK) for _ in range(20)]
    sends += [client.send(other, note_for("NOTREADY"), LINK) for _ in range(20)]
    assert await asyncio.gather(*sends) == [0] * 40
    assert sorted(calls) == sorted([sim.url, other])
    assert sim.wsdl_requests == 2
    assert len(sim.events_since(0)) == 40
    assert (await client.schema(sim.url)).source == "wsdl"
    assert sim.wsdl_requests == 2 and len(calls) == 2


async def test_refresh_reloads_the_wsdl(sim, client):
    first = await client.schema(sim.url)
    assert await client.schema(sim.url) is first
    assert sim.wsdl_requests == 1
    second = await client.schema(sim.url, refresh=True)
    assert sim.wsdl_requests == 2 and second is not first and second.source == "wsdl"
    assert await client.schema(sim.url) is second
    # concurrent refreshes share one load
    await asyncio.gather(*(client.schema(sim.url, refresh=True) for _ in range(5)))
    assert sim.wsdl_requests == 3


async def test_unreadable_wsdl_falls_back_to_conventions_and_delivers(sim, client, serve):
    base = await serve(wsdl_app(lambda b, loc: None, sim))   # GET ?WSDL -> 404, POST -> the simulator
    url = base + "ws/SMARTCTIWSEVENTING.apw"
    assert await client.send(url, note_for("RINGING", url=url), LINK) == 0
    schema = await client.schema(url)
    assert schema.source == "conventions" and schema.url == url
    assert schema.operations["RINGING"].namespace == base
    (event,) = sim.events_since(0)
    assert event["method"] == "RINGING" and event["result"] == 0 and event["soapaction_ok"] is True
    assert event["namespace"] == base and event["path"] == "/ws/SMARTCTIWSEVENTING.apw"


async def test_failing_schema_load_falls_back_and_is_retried_later(sim, monkeypatch):
    loads = []

    def broken(url, timeout, ssl_context=None):
        loads.append(url)
        raise OSError("connection reset")

    monkeypatch.setattr(ev_mod, "schema_from_wsdl", broken)
    c = EventingClient(timeout=2.0, wsdl_retry=300.0)
    await c.start()
    try:
        assert await c.send(sim.url, note_for("LOGGEDON"), LINK) == 0
        assert await c.send(sim.url, note_for("LOGGEDOFF"), LINK) == 0
        assert loads == [sim.url]          # conventions cached for wsdl_retry seconds
        c.wsdl_retry = 0.0
        assert await c.send(sim.url, note_for("READY"), LINK) == 0
        assert loads == [sim.url, sim.url]  # past wsdl_retry: the WSDL is tried again
    finally:
        await c.close()
    assert [e["method"] for e in sim.events_since(0)] == ["LOGGEDON", "LOGGEDOFF", "READY"]
    assert sim.wsdl_requests == 0


async def test_wsdl_schema_is_not_reloaded_after_wsdl_retry(sim):
    c = EventingClient(timeout=2.0, wsdl_retry=0.0)
    await c.start()
    try:
        s = await c.schema(sim.url)
        assert await c.schema(sim.url) is s and sim.wsdl_requests == 1
    finally:
        await c.close()


async def test_schema_is_loaded_in_a_thread(monkeypatch):
    loop_thread = threading.get_ident()
    ticked = threading.Event()
    seen = {}

    def slow(url, timeout, ssl_context=None):
        seen["thread"] = threading.get_ident()
        # blocks until the event loop has ticked: deadlocks (and times out) if run on the loop
        seen["ticked"] = ticked.wait(2.0)
        return conventions(url)

    monkeypatch.setattr(ev_mod, "schema_from_wsdl", slow)
    ticks = 0

    async def ticker():
        nonlocal ticks
        while True:
            await asyncio.sleep(0)
            ticks += 1
            if ticks == 50:
                ticked.set()

    c = EventingClient()
    task = asyncio.create_task(ticker())
    try:
        schema = await c.schema("http://h:1/SMARTCTIWSEVENTING.apw")
    finally:
        task.cancel()
        await c.close()
    assert seen["ticked"] is True and ticks >= 50
    assert seen["thread"] != loop_thread
    # conventions() itself (returned by the patched loader) is what was cached
    assert schema.operations["RINGING"].namespace == "http://h:1/"


async def test_send_before_start_is_not_retryable():
    c = EventingClient()
    with pytest.raises(DeliveryError) as e:
        await c.send("http://h/SMARTCTIWSEVENTING.apw", note_for("HELD"), 1)
    assert e.value.retry is False


async def test_unreachable_protheus_is_retryable(client):
    url = f"http://127.0.0.1:{free_port()}/SMARTCTIWSEVENTING.apw"
    with pytest.raises(DeliveryError) as e:
        await client.send(url, note_for("HELD"), 1)
    assert (e.value.retry, e.value.schema) == (True, False)
    assert (await client.schema(url)).source == "conventions"


async def test_server_error_is_retryable(sim, client):
    sim.set_mode("error")
    with pytest.raises(DeliveryError) as e:
        await client.send(sim.url, note_for("HELD"), 1)
    assert (e.value.retry, e.value.schema) == (True, False)


async def test_hanging_protheus_times_out_retryable(sim):
    c = EventingClient(timeout=0.3)
    await c.start()
    try:
        await c.schema(sim.url)
        sim.set_mode("hang")
        with pytest.raises(DeliveryError) as e:
            await c.send(sim.url, note_for("HELD"), 1)
        assert e.value.retry is True and "no answer" in str(e.value)
    finally:
        sim.set_mode("normal")
        await c.close()


async def test_refused_message_is_a_schema_error(sim, client, monkeypatch):
    # a stale schema (wrong namespace): the strict server answers a Client fault
    def stale(url, timeout, ssl_context=None):
        return EventingSchema(service_url(url), conventions("http://not-this-host:1/x").operations, "wsdl")

    monkeypatch.setattr(ev_mod, "schema_from_wsdl", stale)
    with pytest.raises(DeliveryError) as e:
        await client.send(sim.url, note_for("HELD"), 1)
    assert (e.value.retry, e.value.schema) == (False, True)
    assert "namespace" in str(e.value)
    (event,) = sim.events_since(0)
    assert event["result"] == "fault"


async def test_close_cancels_a_pending_wsdl_load(monkeypatch):
    started = asyncio.Event()
    release = threading.Event()
    loop = asyncio.get_running_loop()

    def blocked(url, timeout, ssl_context=None):
        loop.call_soon_threadsafe(started.set)
        release.wait(2.0)
        return conventions(url)

    monkeypatch.setattr(ev_mod, "schema_from_wsdl", blocked)
    c = EventingClient()
    await c.start()
    pending = asyncio.create_task(c.schema("http://h:1/SMARTCTIWSEVENTING.apw"))
    await started.wait()
    await c.close()
    with pytest.raises(asyncio.CancelledError):
        await pending
    release.set()


# ------------------------------------------- where events may go (issue: field fixes, item 9)
def redirecting_app(target: str, seen: list) -> web.Application:
    """Answers every GET and POST with a redirect to ``target``."""

    async def handler(request: web.Request) -> web.Response:
        seen.append((request.method, request.path_qs))
        raise web.HTTPFound(target)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    return app


@pytest.mark.parametrize("target", ["file:///etc/passwd", "https://127.0.0.1:9/ws/SMARTCTIWSEVENTING.apw",
                                    "http://127.0.0.1:9/elsewhere"])
async def test_redirects_are_never_followed(client, serve, tmp_path, target):
    seen: list = []
    base = await serve(redirecting_app(target, seen))
    url = base + "ws/SMARTCTIWSEVENTING.apw"
    with pytest.raises(DeliveryError) as e:
        await client.send(url, note_for("RINGING", url=url), LINK)
    assert e.value.retry is False and "redirect" in str(e.value) and "not followed" in str(e.value)
    # the WSDL read follows no redirect to another scheme; the POST follows none at all
    assert (await client.schema(url)).source == "conventions"
    assert [m for m, _ in seen].count("POST") == 1


async def test_a_wsdl_read_is_never_a_local_file(tmp_path):
    secret = tmp_path / "passwd"
    secret.write_text("root:x:0:0")
    for url in (str(secret), f"file://{secret}", "not a url"):
        with pytest.raises(ValueError, match="is not an http:// or https:// URL"):
            schema_from_wsdl(url, 1.0)
