"""The Protheus SmartCTIWSEventing simulator over real HTTP on loopback.

zeep (built from the served ?WSDL, run in a thread because it is blocking)
plays the gateway for the happy path; raw aiohttp POSTs cover what a strict
ADVPL server refuses.
"""
from __future__ import annotations

import asyncio
import logging
from xml.sax.saxutils import escape

import aiohttp
import pytest
import pytest_asyncio
import zeep
from lxml import etree

from smartcti_gateway.sim.protheus.eventing import (OPERATIONS, parse_associated_data,
                                                          start_protheus_simulator)

SIM_LOGGER = "smartcti_gateway.protheus_sim"
WSDL = "http://schemas.xmlsoap.org/wsdl/"
XSD = "http://www.w3.org/2001/XMLSchema"
WSOAP = "http://schemas.xmlsoap.org/wsdl/soap/"
ENV = "http://schemas.xmlsoap.org/soap/envelope/"

SAMPLE = {
    "CDEVICE": "2001", "ILINKID": "1", "CALLID": "08/07/24 10:46:19 010A 0001/00", "ANI": "4832810000",
    "DNIS": "7001", "ASSOCIATEDDATA": "3|4832810000", "CALLTYPE": "1", "CAUSE": "10",
    "CAGENTID": "1234", "CGROUPID": "500",
}


def args_for(method: str, **override: str) -> dict[str, str]:
    return {p: override.get(p, SAMPLE[p]) for p in OPERATIONS[method]}


def envelope(method: str, ns: str, params: dict[str, str]) -> bytes:
    children = "".join(f"<{k}>{escape(v)}</{k}>" for k, v in params.items())
    return (f'<?xml version="1.0" encoding="utf-8"?><soap:Envelope xmlns:soap="{ENV}"><soap:Body>'
            f'<{method} xmlns="{ns}">{children}</{method}></soap:Body></soap:Envelope>').encode()


@pytest_asyncio.fixture
async def sim():
    sim, runner = await start_protheus_simulator("127.0.0.1", 0)
    try:
        yield sim
    finally:
        await runner.cleanup()


@pytest_asyncio.fixture
async def http():
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        yield session


async def post(http, sim, method: str, params: dict[str, str], *, ns: str | None = None,
               path: str = "SMARTCTIWSEVENTING.apw", body: bytes | None = None):
    ns = sim.base_url if ns is None else ns
    data = envelope(method, ns, params) if body is None else body
    headers = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": f'"{ns}{method}"'}
    async with http.post(sim.base_url + path, data=data, headers=headers) as resp:
        return resp.status, await resp.text()


def result_of(xml: str, method: str) -> int:
    root = etree.fromstring(xml.encode())
    return int(root.findtext(f".//{{*}}{method}RESPONSE/{{*}}{method}RESULT"))


def faultstring(xml: str) -> str:
    root = etree.fromstring(xml.encode())
    fault = root.find(f".//{{{ENV}}}Fault")
    assert fault is not None, xml
    return fault.findtext("faultstring")


# --------------------------------------------------------------------------
# WSDL and zeep

async def test_wsdl_has_the_advpl_shape(sim, http):
    async with http.get(sim.base_url + "ws/SMARTCTIWSEVENTING.apw?wsdl") as resp:
        assert resp.status == 200
        assert resp.content_type == "text/xml"
        root = etree.fromstring(await resp.read())
    ns = sim.base_url
    assert ns.endswith("/") and root.get("targetNamespace") == ns
    assert root.nsmap["s0"] == ns and root.nsmap["s"] == XSD
    schema = root.find(f"{{{WSDL}}}types/{{{XSD}}}schema")
    assert schema.get("targetNamespace") == ns and schema.get("elementFormDefault") == "qualified"
    for method, params in OPERATIONS.items():
        seq = schema.find(f"{{{XSD}}}element[@name='{method}']/{{{XSD}}}complexType/{{{XSD}}}sequence")
        elems = list(seq)
        assert [e.get("name") for e in elems] == list(params)
        for e in elems:
            expected = "s:integer" if e.get("name") in ("ILINKID", "CALLTYPE", "CAUSE") else "s:string"
            assert (e.get("type"), e.get("minOccurs"), e.get("maxOccurs")) == (expected, "1", "1")
        result = schema.find(f"{{{XSD}}}element[@name='{method}RESPONSE']//{{{XSD}}}element")
        assert (result.get("name"), result.get("type")) == (f"{method}RESULT", "s:integer")
        action = root.find(f"{{{WSDL}}}binding/{{{WSDL}}}operation[@name='{method}']/{{{WSOAP}}}operation")
        assert action.get("soapAction") == ns + method
    assert len(root.findall(f"{{{WSDL}}}portType/{{{WSDL}}}operation")) == 13
    binding = root.find(f"{{{WSDL}}}binding")
    assert binding.get("name") == "SMARTCTIWSEVENTINGSOAP"
    assert binding.find(f"{{{WSOAP}}}binding").get("style") == "document"
    port = root.find(f"{{{WSDL}}}service[@name='SMARTCTIWSEVENTING']/{{{WSDL}}}port")
    assert port.get("name") == "SMARTCTIWSEVENTINGSOAP"
    assert port.find(f"{{{WSOAP}}}address").get("location") == ns + "ws/SMARTCTIWSEVENTING.apw"


async def test_zeep_calls_all_13_operations(sim):
    wsdl_url = sim.base_url + "ws/SMARTCTIWSEVENTING.apw?WSDL"

    def run() -> dict[str, int]:
        client = zeep.Client(wsdl_url)
        results = {}
        for method in OPERATIONS:
            kwargs = {k: int(v) if k in ("ILINKID", "CALLTYPE", "CAUSE") else v
                      for k, v in args_for(method).items()}
            results[method] = getattr(client.service, method)(**kwargs)
        return results

    assert await asyncio.to_thread(run) == {m: 0 for m in OPERATIONS}
    events = sim.events_since(0)
    assert [e["method"] for e in events] == list(OPERATIONS)
    for e in events:
        assert e["namespace"] == sim.base_url
        assert e["soapaction"] == sim.base_url + e["method"] and e["soapaction_ok"]
        assert e["order"] == list(OPERATIONS[e["method"]])
        assert e["params"] == args_for(e["method"])
        assert e["path"] == "/ws/SMARTCTIWSEVENTING.apw"
        assert e["result"] == 0 and e["breaks_protheus"] is False


async def test_service_path_and_wsdl_query_are_case_insensitive(sim, http):
    async with http.get(sim.base_url + "x/y/smartctiwseventing.APW?WsDl") as resp:
        assert resp.status == 200 and b"SMARTCTIWSEVENTINGSOAP" in await resp.read()
    status, xml = await post(http, sim, "READY", args_for("READY"), path="smartctiwseventing.apw")
    assert status == 200 and result_of(xml, "READY") == 0
    async with http.get(sim.base_url + "OTHER.apw?WSDL") as resp:
        assert resp.status == 404


# --------------------------------------------------------------------------
# Sessions and results

async def test_closed_session_answers_99(sim, http):
    async with http.post(sim.base_url + "sim/sessions", json={"device": "2001", "link_id": 1, "open": False}) as r:
        assert r.status == 200
    status, xml = await post(http, sim, "RINGING", args_for("RINGING"))
    assert status == 200 and result_of(xml, "RINGING") == 99
    status, xml = await post(http, sim, "RINGING", args_for("RINGING", ILINKID="2"))
    assert result_of(xml, "RINGING") == 0  # same device, other middleware
    status, xml = await post(http, sim, "RINGING", args_for("RINGING", CDEVICE="2001 "))
    assert result_of(xml, "RINGING") == 0  # the device is matched as received

    async with http.post(sim.base_url + "sim/sessions", json={"default_open": False}) as r:
        state = await r.json()
    assert state["default_open"] is False
    status, xml = await post(http, sim, "INSERVICE", args_for("INSERVICE", CDEVICE="3001"))
    assert result_of(xml, "INSERVICE") == 99
    async with http.post(sim.base_url + "sim/sessions", json={"device": "3001", "link_id": "1"}) as r:
        assert r.status == 200
    status, xml = await post(http, sim, "INSERVICE", args_for("INSERVICE", CDEVICE="3001"))
    assert result_of(xml, "INSERVICE") == 0
    assert [e["result"] for e in sim.events_since(0)] == [99, 0, 0, 99, 0]


# --------------------------------------------------------------------------
# Faults

async def test_missing_parameter_is_a_fault_naming_it(sim, http):
    params = args_for("RINGING")
    del params["CALLTYPE"]
    status, xml = await post(http, sim, "RINGING", params)
    assert status == 500
    assert "CALLTYPE" in faultstring(xml)
    (event,) = sim.events_since(0)
    assert event["result"] == "fault" and "CALLTYPE" in event["fault"]
    assert event["order"] == list(OPERATIONS["RINGING"][:-1])


@pytest.mark.parametrize("field,value", [("ILINKID", "abc"), ("ILINKID", ""), ("CAUSE", "1.5")])
async def test_non_integer_is_a_fault(sim, http, field, value):
    status, xml = await post(http, sim, "CALLFAILURE", args_for("CALLFAILURE", **{field: value}))
    assert status == 500 and field in faultstring(xml)


async def test_unknown_method_wrong_namespace_and_soap12_are_faults(sim, http):
    status, xml = await post(http, sim, "RINGIN", args_for("RINGING"))
    assert status == 500 and "RINGIN" in faultstring(xml)
    status, xml = await post(http, sim, "ringing", args_for("RINGING"))
    assert status == 500
    status, xml = await post(http, sim, "RINGING", args_for("RINGING"), ns="http://DefaultNamespace")
    assert status == 500 and "namespace" in faultstring(xml)
    soap12 = envelope("READY", sim.base_url, args_for("READY")).replace(
        ENV.encode(), b"http://www.w3.org/2003/05/soap-envelope")
    status, xml = await post(http, sim, "READY", {}, body=soap12)
    assert status == 500 and "SOAP 1.1" in faultstring(xml)
    # The base URL without its trailing slash is the same namespace.
    status, xml = await post(http, sim, "READY", args_for("READY"), ns=sim.base_url.rstrip("/"))
    assert status == 200 and result_of(xml, "READY") == 0


async def test_doctype_and_garbage_are_faults(sim, http):
    xxe = (b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
           b'<soap:Envelope xmlns:soap="' + ENV.encode() + b'"><soap:Body><READY xmlns="'
           + sim.base_url.encode() + b'"><CDEVICE>&e;</CDEVICE></READY></soap:Body></soap:Envelope>')
    status, xml = await post(http, sim, "READY", {}, body=xxe)
    assert status == 500 and "DOCTYPE" in faultstring(xml) and "root:" not in xml
    status, xml = await post(http, sim, "READY", {}, body=b"<not xml")
    assert status == 500 and faultstring(xml)
    status, xml = await post(http, sim, "READY", {}, body=b"")
    assert status == 500 and faultstring(xml)
    assert [e["result"] for e in sim.events_since(0)] == ["fault"] * 3


async def test_quote_or_line_break_is_flagged(sim, http, caplog):
    caplog.set_level(logging.INFO, logger=SIM_LOGGER)
    status, xml = await post(http, sim, "RINGING", args_for("RINGING", ANI="48'3281", CALLTYPE="1"))
    assert status == 200 and result_of(xml, "RINGING") == 0
    (event,) = sim.events_since(0)
    assert event["breaks_protheus"] is True
    assert any(r.levelno == logging.WARNING and "ANI" in r.getMessage() for r in caplog.records)
    assert not any("SCREEN POP" in r.getMessage() for r in caplog.records)


# --------------------------------------------------------------------------
# Modes

async def test_error_mode_answers_500(sim, http):
    async with http.post(sim.base_url + "sim/mode", json={"mode": "error"}) as r:
        assert r.status == 200 and (await r.json())["mode"] == "error"
    status, xml = await post(http, sim, "READY", args_for("READY"))
    assert status == 500 and "soap:Server" in xml
    async with http.post(sim.base_url + "sim/mode", json={"mode": "normal"}) as r:
        assert r.status == 200
    status, xml = await post(http, sim, "READY", args_for("READY"))
    assert status == 200
    assert [(e["method"], e["result"]) for e in sim.events_since(0)] == [("READY", "error"), ("READY", 0)]


async def test_hang_mode_holds_requests_until_released(sim, http):
    sim.set_mode("hang")
    task = asyncio.create_task(post(http, sim, "NOTREADY", args_for("NOTREADY")))
    await asyncio.sleep(0.15)
    assert not task.done() and sim.events_since(0) == []
    async with http.post(sim.base_url + "sim/mode", json={"mode": "normal"}) as r:
        assert r.status == 200
    status, xml = await asyncio.wait_for(task, 2)
    assert status == 200 and result_of(xml, "NOTREADY") == 0
    assert [e["method"] for e in sim.events_since(0)] == ["NOTREADY"]


async def test_hang_mode_client_giving_up_records_nothing(sim, http):
    sim.set_mode("hang")
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(post(http, sim, "READY", args_for("READY")), 0.1)
    deadline = asyncio.get_running_loop().time() + 5
    while sim.hanging and asyncio.get_running_loop().time() < deadline:   # the server notices the hang-up
        await asyncio.sleep(0.005)
    assert sim.hanging == 0
    sim.set_mode("normal")
    status, _ = await post(http, sim, "NOTREADY", args_for("NOTREADY"))
    assert status == 200
    assert [e["method"] for e in sim.events_since(0)] == ["NOTREADY"]


# --------------------------------------------------------------------------
# Control API

async def test_events_since_and_clear(sim, http):
    for method in ("LOGGEDON", "READY", "NOTREADY"):
        await post(http, sim, method, args_for(method))
    async with http.get(sim.base_url + "events") as r:
        events = await r.json()
    assert [e["seq"] for e in events] == [1, 2, 3]
    assert list(events[0]["params"]) == ["CDEVICE", "ILINKID", "CAGENTID", "CGROUPID"]
    async with http.get(sim.base_url + "events?since=2") as r:
        assert [e["method"] for e in await r.json()] == ["NOTREADY"]
    async with http.delete(sim.base_url + "events") as r:
        assert (await r.json()) == {"cleared": 3}
    await post(http, sim, "LOGGEDOFF", args_for("LOGGEDOFF"))
    async with http.get(sim.base_url + "events") as r:
        assert [(e["seq"], e["method"]) for e in await r.json()] == [(4, "LOGGEDOFF")]


@pytest.mark.parametrize("path,body", [
    ("sim/sessions", b"{not json"),
    ("sim/sessions", b"[1]"),
    ("sim/sessions", b"{}"),
    ("sim/sessions", b'{"device": "2001"}'),
    ("sim/sessions", b'{"device": "2001", "link_id": "x"}'),
    ("sim/sessions", b'{"device": "2001", "link_id": 1, "open": "no"}'),
    ("sim/sessions", b'{"default_open": 0}'),
    ("sim/sessions", b'{"devise": "2001"}'),
    ("sim/mode", b'{"mode": "broken"}'),
    ("sim/mode", b"{}"),
])
async def test_bad_control_requests_are_400(sim, http, path, body):
    async with http.post(sim.base_url + path, data=body, headers={"Content-Type": "application/json"}) as r:
        assert r.status == 400
        assert "error" in await r.json()


async def test_bad_since_and_unknown_path(sim, http):
    async with http.get(sim.base_url + "events?since=abc") as r:
        assert r.status == 400 and "error" in await r.json()
    async with http.get(sim.base_url + "nothing/here") as r:
        assert r.status == 404 and "error" in await r.json()


# --------------------------------------------------------------------------
# Log lines

async def test_log_lines_and_screen_pop(sim, http, caplog):
    caplog.set_level(logging.INFO, logger=SIM_LOGGER)

    async def lines(method: str, **override: str) -> list[str]:
        caplog.clear()
        await post(http, sim, method, args_for(method, **override))
        return [r.getMessage() for r in caplog.records if r.name == SIM_LOGGER]

    assert await lines("RINGING") == [
        "2001@1 RINGING call=08/07/24 10:46:19 010A 0001/00 ANI=4832810000 DNIS=7001 data=3|4832810000 "
        "type=1 -> 0",
        "  >>> SCREEN POP on 2001 (link 1): receptive call from 4832810000 to 7001, "
        "identified by phone: 4832810000",
    ]
    out = await lines("RINGING", CALLTYPE="3", ASSOCIATEDDATA="2|12345678000199")
    assert out[1] == ("  >>> SCREEN POP on 2001 (link 1): dialler call (active layout) from 4832810000 "
                      "to 7001, identified by CNPJ/CPF: 12345678000199")
    out = await lines("RINGING", CALLTYPE="2")
    assert len(out) == 1 and "type=2 -> 0" in out[0]
    out = await lines("RINGING", ASSOCIATEDDATA="")
    assert out[1].endswith("identified by phone: 4832810000")
    out = await lines("RINGING", ASSOCIATEDDATA="000123")
    assert out[1].endswith("not identified")
    out = await lines("CALLFAILURE", CAUSE="11")
    assert out == ["2001@1 CALLFAILURE call=08/07/24 10:46:19 010A 0001/00 ANI=4832810000 DNIS=7001 "
                   "cause=11 (Telefone não atende) -> 0"]
    assert await lines("LOGGEDON") == ["2001@1 LOGGEDON agent=1234 group=500 -> 0"]


def test_parse_associated_data():
    assert parse_associated_data("", "4832810000") == (3, "4832810000")
    assert parse_associated_data("1|000001|01", "x") == (1, "000001|01")
    assert parse_associated_data("4|ADE_CODCON=000001|ADE_ENTIDA=SA1", "x") == (4, "ADE_CODCON=000001|ADE_ENTIDA=SA1")
    assert parse_associated_data("abc", "x") == (0, "")
    assert parse_associated_data("x|y", "x") == (0, "y")
