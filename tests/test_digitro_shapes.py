"""The dialect's shape sections (pabx.dialect: params, types, replies, returns, event_methods, event_params,
transport) against a stub NGC on real HTTP: an NGC that speaks otherwise than the default dialect is
driven with configuration only, and the default stays what it was."""
from __future__ import annotations

import asyncio
import xmlrpc.client

import pytest
from aiohttp import web

from smartcti_gateway.core import pabx as p
from smartcti_gateway.core.codes import Result
from smartcti_gateway.pabx.digitro.dialect import Dialect
from smartcti_gateway.pabx.digitro.driver import DigitroDriver

FOREIGN = {
    "methods": {"make_call": "pbx.discar", "answer": "pbx.atender", "agent_state": "pbx.estadoAgente",
                "poll_events": "pbx.eventos", "register_listener": "", "status": "pbx.ping"},
    "params": {"make_call": ["device", "number"], "answer": ["device", "call_id"]},
    "types": {"call_id": "int"},
    "replies": {"default": "fault", "status": "value"},
    "returns": {"make_call": "call_id"},
    "event_methods": {"pbx.tocando": "CHAMADA_TOCANDO", "pbx.atendida": "CHAMADA_ATENDIDA"},
    "event_params": {"default": ["device", "call_id", "calling", "called"]},
}


class StubNgc:
    """Answers each method from ``replies`` (a value, or an xmlrpc Fault); records what it was sent."""

    def __init__(self, replies: dict):
        self.replies = replies
        self.calls: list[tuple[str, tuple]] = []
        self.got = asyncio.Event()

    async def start(self) -> "StubNgc":
        async def rpc(request):
            params, method = xmlrpc.client.loads(await request.read())
            self.calls.append((method, params))
            self.got.set()
            reply = self.replies.get(method, xmlrpc.client.Fault(1, f"unknown method {method}"))
            if callable(reply):
                reply = reply()
            if isinstance(reply, xmlrpc.client.Fault):
                body = xmlrpc.client.dumps(reply, methodresponse=True)
            else:
                body = xmlrpc.client.dumps((reply,), methodresponse=True)
            return web.Response(text=body, content_type="text/xml")

        app = web.Application()
        app.router.add_post("/RPC2", rpc)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", 0).start()
        self.url = f"http://127.0.0.1:{self.runner.addresses[0][1]}/RPC2"
        return self


async def driver_for(stub: StubNgc, overrides: dict, events: list) -> DigitroDriver:
    drv = DigitroDriver(stub.url, dialect=Dialect.with_overrides(overrides), timeout=2, events_path="/ev")
    await drv.start(events.append)
    return drv


def test_positional_parameters_types_and_a_plain_answer(tmp_path):
    async def scenario():
        stub = await StubNgc({"pbx.discar": 4711, "pbx.atender": True,
                              "pbx.ping": "OK"}).start()
        drv = await driver_for(stub, FOREIGN, [])
        try:
            call_id = await drv.execute(p.MakeCall("2001", "4832810000"))
            assert stub.calls[-1] == ("pbx.discar", ("2001", "4832810000"))    # positional, in the order given
            assert call_id == "4711"                                           # the plain answer is the call id
            await drv.execute(p.AnswerCall("2001", "4711"))
            assert stub.calls[-1] == ("pbx.atender", ("2001", 4711))           # call_id as an int
            assert await drv.keepalive() is True                               # a 'value' reply: OK
        finally:
            await drv.close()
            await stub.runner.cleanup()
    asyncio.run(scenario())


def test_a_fault_is_the_refusal_and_its_code_maps_through_results():
    async def scenario():
        stub = await StubNgc({"pbx.discar": xmlrpc.client.Fault(17, "numero ocupado"), "pbx.ping": "E9"}).start()
        drv = await driver_for(stub, {**FOREIGN, "results": {"17": 10, "E9": 22}}, [])
        try:
            with pytest.raises(p.PabxError) as e:
                await drv.execute(p.MakeCall("2001", "4832810000"))
            assert e.value.code is Result.BUSY and "numero ocupado" in e.value.detail
            with pytest.raises(p.PabxError) as e:
                await drv.keepalive()
            assert e.value.code == 22
        finally:
            await drv.close()
            await stub.runner.cleanup()
    asyncio.run(scenario())


def test_one_method_per_event_with_positional_parameters():
    async def scenario():
        stub = await StubNgc({}).start()
        events: list = []
        drv = await driver_for(stub, FOREIGN, events)
        app = web.Application()
        for route in drv.routes():
            app.router.add_route(route.method, route.path, route.handler)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        url = f"http://127.0.0.1:{runner.addresses[0][1]}/ev"
        try:
            async with __import__("aiohttp").ClientSession() as http:
                body = xmlrpc.client.dumps(("2001", 4711, "4832810000", "7001"), "pbx.tocando")
                async with http.post(url, data=body) as r:
                    xmlrpc.client.loads(await r.read())
                body = xmlrpc.client.dumps(("2001", 4711), "pbx.desconhecido")
                async with http.post(url, data=body) as r:
                    with pytest.raises(xmlrpc.client.Fault, match="unknown method 'pbx.desconhecido'"):
                        xmlrpc.client.loads(await r.read())
            ev, = events
            assert (ev.type, ev.device, ev.call_id, ev.calling, ev.called) == (
                p.CallEventType.DELIVERED, "2001", "4711", "4832810000", "7001")
            assert drv.events_rejected == 1
        finally:
            await runner.cleanup()
            await drv.close()
            await stub.runner.cleanup()
    asyncio.run(scenario())


def test_events_by_polling_a_method():
    async def scenario():
        batches = [[["pbx.tocando", "2001", 9, "4832810000", "7001"]],
                   [["pbx.atendida", "2001", 9, "4832810000", "7001"], 42]]
        stub = await StubNgc({"pbx.eventos": lambda: batches.pop(0) if batches else []}).start()
        events: list = []
        drv = await driver_for(stub, {**FOREIGN, "transport": {"events": "poll", "poll_interval": 0.05}}, events)
        try:
            async with asyncio.timeout(5):
                while len(events) < 2:
                    await asyncio.sleep(0.02)
            assert [e.type for e in events] == [p.CallEventType.DELIVERED, p.CallEventType.ESTABLISHED]
            assert {c[0] for c in stub.calls} == {"pbx.eventos"}        # no listener to register
            assert drv.events_rejected == 1                              # the 42 is no event
            assert drv.callback_url == ""
        finally:
            await drv.close()
            await stub.runner.cleanup()
    asyncio.run(scenario())


@pytest.mark.parametrize("overrides, message", [
    ({"params": {"make_call": "device"}}, "must be a list of field names"),
    ({"params": {"make_call": ["device", "telefone"]}}, "unknown field(s) telefone"),
    ({"params": {"discar": ["device"]}}, "unknown method 'discar'"),
    ({"types": {"call_id": "float"}}, "one of str, int, bool"),
    ({"replies": {"default": "xml"}}, "one of struct, value, fault"),
    ({"event_methods": {"pbx.x": "TOCANDO"}}, "no EVENTO name"),
    ({"transport": {"events": "poll"}}, "needs methods.poll_events"),
    ({"transport": {"events": "websocket"}}, "events is one of callback, poll"),
])
def test_a_shape_that_cannot_work_is_refused_saying_why(overrides, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Dialect.with_overrides(overrides)


def test_the_default_dialect_is_one_struct_a_struct_answer_and_one_event_method():
    d = Dialect()
    assert (d.params, d.types, d.replies, d.returns, d.event_methods, d.event_params) == ({}, {}, {}, {}, {}, {})
    assert d.reply_style("make_call") == "struct" and not d.polled
