"""Two links in one process: distinct LinkIDs, command paths and PABXs, isolated from each other."""
import asyncio
import threading

from aiohttp import web

from .support import Peers, RunningGateway, free_port, simulated_config, wait_for

PATH2 = "/link2/services/SmartCTIWSCommand"
ENDPOINT2 = PATH2 + ".SmartCTIWSCommandHttpSoap11Endpoint/"


def two_links(sim2_port: int, own_port: int | None = None) -> dict:
    cfg = simulated_config()
    link2 = {"link_id": 7, "name": "second NGC", "command_path": PATH2,
             "pabx": {"url": f"http://127.0.0.1:{sim2_port}/RPC2", "timeout": 3, "grace": 0}}
    if own_port:
        link2["listen"] = f"127.0.0.1:{own_port}"
    cfg["links"].append(link2)
    return cfg


def test_two_links_keep_their_link_ids_and_survive_each_others_pabx():
    second = Peers()                       # the second NGC, up before the gateway starts
    sim2_port = second.sim_port
    gw = RunningGateway(two_links(sim2_port))
    try:
        # both links serve the same device number on different PABXs
        assert gw.code("AgentInService", device="2001", ipaddress=gw.events_url) == 0
        assert gw.call("AgentInService", path=ENDPOINT2, device="2001", ipaddress=gw.events_url) == "0"
        assert gw.code("Logon", device="2001", agentID="1111", groupID="701") == 0
        assert gw.call("Logon", path=ENDPOINT2, device="2001", agentID="2222", groupID="702") == "0"
        got = gw.wait_events(4)
        by_link = {(e["method"], e["params"]["ILINKID"], e["params"].get("CAGENTID")) for e in got}
        assert by_link == {("INSERVICE", "1", None), ("INSERVICE", "7", None),
                           ("LOGGEDON", "1", "1111"), ("LOGGEDON", "7", "2222")}
        assert gw.sim_state()["devices"]["2001"]["agent"] == "1111"
        assert second.sim_call(lambda s: s.state())["devices"]["2001"]["agent"] == "2222"

        # the second NGC hangs: while a link-7 command waits for it, link 1 keeps answering
        second.run(second.sim_runner.cleanup())
        hung = gw.run(hung_server(sim2_port))
        answers = {}
        # (a command that asks the PABX: SystemStatus is answered from the link's health)
        waiting = threading.Thread(target=lambda: answers.setdefault("7", gw.call(
            "MakeCall", path=ENDPOINT2, device="2001", telephoneNumber="4830000000")))
        waiting.start()
        wait_for(lambda: hung.requests, what="link 7 waiting on its hung PABX")
        assert gw.code("SystemStatus") == 0
        assert gw.code("queryAgentState", cDevice="2001") == 26
        assert gw.code("Ready", device="2001", agentID="", groupID="") == 0
        assert waiting.is_alive()          # link 1 was served while link 7 was still waiting
        waiting.join(10)
        assert answers["7"] == "24"        # and link 7 gave up after its own timeout
        # ...then is gone: link 7 is down (no grace on it) and says so; link 1 does not notice
        gw.run(hung.runner.cleanup())
        assert gw.call("SystemStatus", path=ENDPOINT2) == "22"
        assert gw.call("queryAgentState", path=ENDPOINT2, cDevice="2001") == "16"
        assert gw.code("SystemStatus") == 0
        since = got[-1]["seq"]
        _, body = gw.sim("/sim/inbound", {"ani": "4832810000", "dnis": "7001", "group": "701"})
        events = wait_for(lambda: [e for e in gw.events(since) if e["method"] == "RINGING"] or None,
                          what="link 1 still pops")
        assert events[0]["params"]["ILINKID"] == "1" and events[0]["params"]["CALLID"] == body["call_id"]
    finally:
        gw.close()
        second.close()


async def hung_server(port: int):
    """A PABX that accepts requests and never answers."""
    state = type("Hung", (), {})()
    state.requests = 0
    never = asyncio.Event()

    async def handler(request):
        state.requests += 1
        await never.wait()

    app = web.Application()
    app.router.add_post("/RPC2", handler)
    state.runner = web.AppRunner(app, handler_cancellation=True)
    await state.runner.setup()
    await web.TCPSite(state.runner, "127.0.0.1", port).start()
    return state


def test_a_link_on_its_own_port():
    second, own = Peers(), free_port()
    gw = RunningGateway(two_links(second.sim_port, own_port=own))
    try:
        status, body, _ = gw.http("POST", ENDPOINT2, b"", port=own)
        assert status == 500   # served there (an empty body is a Fault)...
        status, _, _ = gw.http("GET", PATH2 + "?wsdl")
        assert status == 404   # ...and not on the main listener
        assert gw.gateway.ports[f"127.0.0.1:{own}"] == own
    finally:
        gw.close()
        second.close()
