"""PABX failures survived and state rebuilt: fail fast, grace period, reconnect and resync, quiet calls,
restarts and kill -9 of the gateway."""
import signal
import subprocess
import sys
from pathlib import Path

import yaml

from smartcti_gateway.sim.digitro import options_from_mapping, start_simulator

from .support import Peers, RunningGateway, Switchable, free_port, protheus_envelope, wait_for

ROOT = Path(__file__).resolve().parent.parent
ANI = "4832810000"


def fast_health(**extra) -> dict:
    return {"keepalive": 0.1, "grace": 0.6, "reconnect_max": 0.2, "quiet_call": 60, **extra}


def gateway_for(peers: Peers, pabx_url: str | None = None, callback_url: str | None = None, gw_port: int = 0,
                **pabx) -> dict:
    px = {"url": pabx_url or f"http://127.0.0.1:{peers.sim_port}/RPC2", "timeout": 1, **fast_health(), **pabx}
    if callback_url:
        px["callback_url"] = callback_url
    return {"listen": f"127.0.0.1:{gw_port}", "links": [{"link_id": 1, "pabx": px}]}


def names_for(peers: Peers, device: str, since: int = 0) -> list[str]:
    return [e["method"] for e in peers.events(since) if e["params"].get("CDEVICE") == device]


def last_seq(peers: Peers) -> int:
    ev = peers.events()
    return ev[-1]["seq"] if ev else 0


def agent_ready_with_a_call(gw: RunningGateway, peers: Peers, device: str = "2001") -> str:
    assert gw.code("AgentInService", device=device, ipaddress=peers.events_url) == 0
    assert gw.code("Logon", device=device, agentID="1234", groupID="701") == 0
    assert gw.code("Ready", device=device, agentID="", groupID="") == 0
    call_id = peers.sim_call(lambda s: s.inbound(ANI, "7001", group="701"))
    wait_for(lambda: gw.conn_state(device).get(call_id) == "alerting", what="ringing")
    assert gw.code("Answer", device=device) == 0
    wait_for(lambda: names_for(peers, device)[-1:] == ["ANSWERED"], what="answered in Protheus")
    return call_id


def test_down_link_fails_fast_tells_protheus_after_grace_then_reconnects_and_resyncs():
    peers = Peers()
    gw = RunningGateway(gateway_for(peers))
    try:
        link = gw.link()
        agent_ready_with_a_call(gw, peers)
        peers.run(peers.sim_runner.cleanup())                  # the NGC dies
        wait_for(lambda: not gw.in_loop(lambda: link.health.up), what="link declared down by the keep-alive")

        requests = []
        original = link.driver.execute

        async def counting(req):
            requests.append(req)
            return await original(req)
        gw.in_loop(lambda: setattr(link.driver, "execute", counting))
        # within the grace period: commands fail fast, the listener is not closed
        assert gw.code("MakeCall", device="2001", telephoneNumber="4833334444") == 22
        assert gw.code("Hold", device="2001") == 22
        assert requests == []                              # nobody waited for a dead PABX
        if not gw.in_loop(lambda: link.health.reported_down):
            assert gw.code("SystemStatus") == 0
            assert gw.code("queryAgentState", cDevice="2001") == 29   # what we knew: ready, on a call
        wait_for(lambda: gw.in_loop(lambda: link.health.reported_down), what="grace period over")
        assert gw.code("SystemStatus") == 22
        assert gw.code("queryAgentState", cDevice="2001") == 16

        # the NGC comes back, restarted: no agent, no call
        since = last_seq(peers)
        peers.sim, peers.sim_runner = peers.run(start_simulator("127.0.0.1", peers.sim_port,
                                                                options_from_mapping({"answer_after": 0.05})))
        wait_for(lambda: gw.in_loop(lambda: link.health.up), timeout=10, what="reconnected")
        assert gw.code("SystemStatus") == 0
        wait_for(lambda: sorted(names_for(peers, "2001", since)) == ["CONNECTIONCLEARED", "LOGGEDOFF"],
                 what="Protheus told what changed")
        assert gw.in_loop(lambda: (link.resyncs, link.health.reconnects))[1] >= 1
        assert gw.conn_state("2001") == {}
        # and the restarted NGC monitors the device again: new calls pop
        assert gw.code("Logon", device="2001", agentID="1234", groupID="701") == 0
        assert gw.code("Ready", device="2001", agentID="", groupID="") == 0
        peers.sim_call(lambda s: s.inbound(ANI, "7001", group="701"))
        wait_for(lambda: "RINGING" in names_for(peers, "2001", since), what="new call pops")
    finally:
        gw.close()
        peers.close()


def test_a_quick_pabx_restart_between_keepalives_is_noticed():
    """The NGC restarts so fast that no keep-alive fails: it no longer knows our listener, so we register again."""
    peers = Peers()
    gw = RunningGateway(gateway_for(peers, keepalive=0.3))
    try:
        assert gw.code("AgentInService", device="2001", ipaddress=peers.events_url) == 0

        async def restart():
            await peers.sim_runner.cleanup()
            return await start_simulator("127.0.0.1", peers.sim_port, options_from_mapping({}))
        peers.sim, peers.sim_runner = peers.run(restart())
        # registered again, and the device monitored again (the monitor follows the registration)
        # a keep-alive that fell in the restart's gap takes the link down: up to three retries (backoff
        # 0.5-1, 1-2, 2-4 s) may pass before it is back on a loaded machine
        wait_for(lambda: any("2001" in ch["devices"] for ch in peers.sim_call(lambda s: s.state())["channels"].values()),
                 timeout=10, what="listener registered and 2001 monitored again")
        since = last_seq(peers)
        assert gw.code("Logon", device="2001", agentID="1234", groupID="701") == 0
        wait_for(lambda: names_for(peers, "2001", since) == ["LOGGEDON"], what="events flow again")
    finally:
        gw.close()
        peers.close()


def test_an_ngc_without_listener_that_restarts_is_noticed_by_the_polls_that_fail():
    """A polled NGC has no listener channel to forget, so keep-alive cannot tell a restart; the polls that
    fail while it is down take the link down, and on its return every device is monitored again and the
    agent's loss is told. (A restart quicker than one poll interval is not seen: docs/digitro-xmlrpc.md.)"""
    from smartcti_gateway.pabx.digitro.dialect import Dialect

    from .test_foreign_ngc import FOREIGN
    dialect = Dialect.with_overrides(FOREIGN)
    peers = Peers()

    async def foreign_ngc():
        await peers.sim_runner.cleanup()
        return await start_simulator("127.0.0.1", peers.sim_port, options_from_mapping({"answer_after": 0.05}),
                                     dialect)
    peers.sim, peers.sim_runner = peers.run(foreign_ngc())
    gw = RunningGateway(gateway_for(peers, dialect=FOREIGN, keepalive=5))    # no keep-alive in the window
    try:
        link = gw.link()
        assert gw.code("AgentInService", device="2001", ipaddress=peers.events_url) == 0
        assert gw.code("Logon", device="2001", agentID="1234", groupID="701") == 0
        wait_for(lambda: names_for(peers, "2001")[-1:] == ["LOGGEDON"], what="logged on")
        since = last_seq(peers)
        peers.run(peers.sim_runner.cleanup())                          # the NGC goes down ...
        wait_for(lambda: not gw.in_loop(lambda: link.health.up), what="a failed poll takes the link down")
        peers.sim, peers.sim_runner = peers.run(start_simulator(       # ... and comes back knowing nothing
            "127.0.0.1", peers.sim_port, options_from_mapping({"answer_after": 0.05}), dialect))
        wait_for(lambda: gw.in_loop(lambda: link.health.up), timeout=10, what="reconnected")
        monitored = wait_for(
            lambda: [p for m, p, _ in peers.sim_call(lambda s: list(s.recent)) if m == "ura.monitorarRamal"],
            what="2001 monitored again")
        assert monitored == [("2001",)]
        wait_for(lambda: names_for(peers, "2001", since) == ["LOGGEDOFF"], what="the agent's loss told")
        peers.sim_call(lambda s: s.inbound(ANI, "2001", device="2001"))
        wait_for(lambda: names_for(peers, "2001", since) == ["LOGGEDOFF", "RINGING"], what="calls pop again")
    finally:
        gw.close()
        peers.close()


def test_events_lost_in_a_network_cut_are_recovered_by_the_resync():
    peers = Peers()
    gw_port = free_port()
    requests = peers.run(Switchable(peers, f"http://127.0.0.1:{peers.sim_port}/RPC2").start())
    callbacks = peers.run(Switchable(peers, f"http://127.0.0.1:{gw_port}/pabx/digitro/1/RPC2").start())
    gw = RunningGateway(gateway_for(peers, requests.url, callbacks.url, gw_port))
    try:
        link = gw.link()
        call_id = agent_ready_with_a_call(gw, peers)
        since = last_seq(peers)
        requests.up = callbacks.up = False                     # the cable is cut
        peers.sim_call(lambda s: s.handle(s.dialect.methods["agent_not_ready"], ({"DISPOSITIVO": "2001"},)))
        peers.sim_call(lambda s: s.hangup(device="2001"))      # the customer hangs up: that event is lost
        wait_for(lambda: not gw.in_loop(lambda: link.health.up), what="link down")
        wait_for(lambda: dropped_by_ngc(peers) >= 2, what="the NGC gave up sending both events")
        requests.up = callbacks.up = True                      # repaired
        wait_for(lambda: gw.in_loop(lambda: link.health.up), timeout=10, what="reconnected")
        got = wait_for(lambda: (lambda n: n if len(n) >= 2 else None)(names_for(peers, "2001", since)),
                       what="catch-up events")
        assert sorted(got) == ["CONNECTIONCLEARED", "NOTREADY"]
        cleared = [e for e in peers.events(since) if e["method"] == "CONNECTIONCLEARED"][0]
        assert cleared["params"]["CALLID"] == call_id and cleared["params"]["ANI"] == ANI
        assert gw.code("queryAgentState", cDevice="2001") == 30
    finally:
        gw.close()
        peers.close()


def test_a_call_whose_end_was_never_reported_is_closed():
    peers = Peers()
    gw_port = free_port()
    callbacks = peers.run(Switchable(peers, f"http://127.0.0.1:{gw_port}/pabx/digitro/1/RPC2").start())
    gw = RunningGateway(gateway_for(peers, callback_url=callbacks.url, gw_port=gw_port, quiet_call=0.5))
    try:
        link = gw.link()
        agent_ready_with_a_call(gw, peers, "2001")
        # 2002 has a call that goes on, without news, for longer than quiet_call
        assert gw.code("AgentInService", device="2002", ipaddress=peers.events_url) == 0
        other = peers.sim_call(lambda s: s.inbound("4830001111", "2002", device="2002"))
        wait_for(lambda: gw.conn_state("2002").get(other) == "alerting", what="2002 ringing")
        assert gw.code("Answer", device="2002") == 0
        wait_for(lambda: gw.conn_state("2002").get(other) == "connected", what="2002 talking")
        wait_for(lambda: names_for(peers, "2002")[-1:] == ["ANSWERED"], what="2002's ANSWERED delivered")
        since = last_seq(peers)
        callbacks.up = False                                   # the hang-up report is lost
        peers.sim_call(lambda s: s.hangup(device="2001"))
        wait_for(lambda: dropped_by_ngc(peers) >= 1, what="the NGC gave up sending it")
        callbacks.up = True
        wait_for(lambda: names_for(peers, "2001", since) == ["CONNECTIONCLEARED"], timeout=10,
                 what="the quiet call closed")
        assert gw.conn_state("2001") == {}
        assert gw.conn_state("2002") == {other: "connected"}      # still there: checked and kept
        assert names_for(peers, "2002", since) == []
        assert gw.in_loop(lambda: link.quiet_calls_closed) == 1
    finally:
        gw.close()
        peers.close()


def dropped_by_ngc(peers: Peers) -> int:
    import http.client
    import json
    c = http.client.HTTPConnection("127.0.0.1", peers.sim_port, timeout=5)
    c.request("GET", "/sim/state")
    state = json.loads(c.getresponse().read())
    c.close()
    return sum(ch.get("dropped", 0) for ch in state["channels"].values())


def test_restart_keeps_what_protheus_said(tmp_path):
    peers = Peers()
    state = str(tmp_path / "state.sqlite")
    try:
        gw = RunningGateway(gateway_for(peers), state_file=state)
        for _ in range(2):     # the main session and the call listener
            assert gw.code("AgentInService", device=" 2001", ipaddress=peers.events_url) == 0
        assert gw.code("LogonPass", device="2001", agentID="1234", groupID="701,702", agentPass="s3cret") == 0
        assert gw.code("Ready", device="2001", agentID="", groupID="") == 0
        gw.close()
        assert "s3cret" not in Path(state).read_bytes().decode("latin-1")

        gw = RunningGateway(gateway_for(peers), state_file=state)
        try:
            dev = gw.in_loop(lambda: gw.link().switch.device("2001"))
            assert (dev.wire_name, dev.in_service, dev.event_urls) == (" 2001", 2, [peers.events_url])
            assert (dev.agent.agent_id, dev.agent.groups) == ("1234", ("701", "702"))
            since = last_seq(peers)
            call_id = peers.sim_call(lambda s: s.inbound(ANI, "7001", group="701"))
            # the resync may first confirm the agent's state (READY: the registry keeps who is logged on,
            # the PABX says whether ready or paused); then the call pops
            wait_for(lambda: names_for(peers, " 2001", since)[-1:] == ["RINGING"], what="pop after restart")
            assert set(names_for(peers, " 2001", since)) <= {"READY", "RINGING"}
            assert gw.code("queryAgentState", cDevice="2001") == 29   # ringing: busy
            assert gw.code("AgentOutOfService", device="2001") == 0
            assert gw.code("Logoff", device="2001", agentID="", groupID="") == 0
            assert gw.code("AgentOutOfService", device="2001") == 0
            assert call_id
        finally:
            gw.close()
        gw = RunningGateway(gateway_for(peers), state_file=state)
        try:
            assert gw.in_loop(lambda: gw.link().switch.devices) == {}   # nothing left to restore
        finally:
            gw.close()
    finally:
        peers.close()


def soap_code(port: int, op: str, **args) -> int:
    import http.client
    import re
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request("POST", "/axis2/services/SmartCTIWSCommand.SmartCTIWSCommandHttpSoap11Endpoint/",
              protheus_envelope(op, **args), {"Content-Type": "text/xml"})
    body = c.getresponse().read()
    c.close()
    return int(re.search(rb"<ns:return>(\d+)</ns:return>", body).group(1))


def start_gateway_process(config: Path, port: int) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "smartcti_gateway", "run", "--config", str(config)], cwd=ROOT,
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def answering():
        try:
            return soap_code(port, "SystemStatus") == 0
        except OSError:
            return False
    wait_for(answering, timeout=20, what="gateway process answering")
    return proc


def gateway_process_config(peers: Peers, tmp: Path) -> tuple[Path, int]:
    """A config file for a gateway process on a free port, with its registry in ``tmp``."""
    port = free_port()
    cfg = gateway_for(peers, gw_port=port)
    cfg["state_file"] = str(tmp / "state.sqlite")
    path = tmp / "gw.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path, port


def test_kill_9_loses_nothing_protheus_said(tmp_path):
    peers = Peers()
    path, port = gateway_process_config(peers, tmp_path)
    proc = start_gateway_process(path, port)
    try:
        for device in ("2001", "2002", "2003"):
            assert soap_code(port, "AgentInService", device=device, ipaddress=peers.events_url) == 0
        assert soap_code(port, "Logon", device="2001", agentID="1234", groupID="701") == 0
        assert soap_code(port, "Ready", device="2001", agentID="", groupID="") == 0
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        since = last_seq(peers)
        proc = start_gateway_process(path, port)
        assert soap_code(port, "queryAgentState", cDevice="2001") == 28
        peers.sim_call(lambda s: s.inbound(ANI, "7001", group="701"))
        wait_for(lambda: names_for(peers, "2001", since)[-1:] == ["RINGING"], what="pop after kill -9")
        assert set(names_for(peers, "2001", since)) <= {"READY", "RINGING"}
        for device in ("2002", "2003"):     # still in service: their events still flow
            peers.sim_call(lambda s, d=device: s.handle(s.dialect.methods["agent_login"],
                                                         ({"DISPOSITIVO": d, "AGENTE": "9" + d, "GRUPO_DAC": "702"},)))
            wait_for(lambda d=device: names_for(peers, d, since) == ["LOGGEDON"], what=f"{device} served")
    finally:
        proc.kill()
        proc.wait(10)
        peers.close()


def test_a_call_that_ends_while_the_gateway_is_dead_is_cleared_after_the_restart(tmp_path):
    """scripts/soak found screens stuck in a call: the call ended while the gateway was dead (kill -9),
    and the restarted gateway did not know it had been there. The calls go to the state file once a
    second; the resync after the restart finds the NGC without them and tells Protheus."""
    peers = Peers()
    path, port = gateway_process_config(peers, tmp_path)
    proc = start_gateway_process(path, port)
    try:
        assert soap_code(port, "AgentInService", device="2001", ipaddress=peers.events_url) == 0
        assert soap_code(port, "Logon", device="2001", agentID="1234", groupID="701") == 0
        assert soap_code(port, "Ready", device="2001", agentID="", groupID="") == 0
        since = last_seq(peers)
        call_id = peers.sim_call(lambda s: s.inbound(ANI, "7001", group="701"))
        wait_for(lambda: names_for(peers, "2001", since)[-1:] == ["RINGING"], what="ringing")
        assert soap_code(port, "Answer", device="2001") == 0
        wait_for(lambda: names_for(peers, "2001", since)[-1:] == ["ANSWERED"], what="answered")
        state = tmp_path / "state.sqlite"
        import sqlite3
        wait_for(lambda: sqlite3.connect(state).execute("SELECT call_id, state FROM calls").fetchall() ==
                 [(call_id, "connected")], what="the call in the state file")
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        peers.sim_call(lambda s: s.hangup(device="2001"))     # the customer hangs up: nobody hears it
        since = last_seq(peers)
        proc = start_gateway_process(path, port)
        cleared = wait_for(lambda: [e for e in peers.events(since) if e["method"] == "CONNECTIONCLEARED"],
                           what="the call cleared after the restart")
        assert [(e["params"]["CDEVICE"], e["params"]["CALLID"], e["params"]["ANI"]) for e in cleared] == \
            [("2001", call_id, ANI)]
        assert soap_code(port, "queryAgentState", cDevice="2001") == 28
    finally:
        proc.kill()
        proc.wait(10)
        peers.close()


# ----------------------------------------------------- polls, first contact, devices taken while down
def test_the_poll_that_finds_the_fault_does_not_close_protheus_listeners():
    """Seen: the PABX dies, the first SystemStatus answers 22 (24 after a timeout), which closes every
    Protheus call listener (smartcti.md §10.3); within the grace period every poll must say 0 / the state."""
    peers = Peers()
    # keep-alives rare: the polls would be the first to meet the fault
    gw = RunningGateway(gateway_for(peers, keepalive=3600, grace=30))
    try:
        link = gw.link()
        assert gw.code("AgentInService", device="2001", ipaddress=peers.events_url) == 0
        assert gw.code("Logon", device="2001", agentID="1234", groupID="701") == 0
        assert gw.code("Ready", device="2001", agentID="", groupID="") == 0
        peers.run(peers.sim_runner.cleanup())                  # the NGC dies
        for _ in range(3):
            assert gw.code("SystemStatus") == 0
            assert gw.code("queryAgentState", cDevice="2001") == 28    # this poll met the fault: what we knew
        # the poll had the link's own keep-alive run at once: that judged the link down, within the grace
        wait_for(lambda: gw.in_loop(lambda: not link.health.up), what="the keep-alive woken by the poll")
        assert gw.in_loop(lambda: link.health.reported_down) is False
        assert gw.code("SystemStatus") == 0 and gw.code("queryAgentState", cDevice="2001") == 28
        assert gw.code("Hold", device="2001") == 22               # other commands fail fast, as before
    finally:
        gw.close()
        peers.close()


def test_a_hung_pabx_met_by_a_poll_is_kept_from_protheus_too():
    from .test_multilink import hung_server
    peers = Peers()
    gw = RunningGateway(gateway_for(peers, keepalive=3600, grace=30, timeout=0.3))
    hung = None
    try:
        assert gw.code("AgentInService", device="2001", ipaddress=peers.events_url) == 0
        assert gw.code("Logon", device="2001", agentID="1234", groupID="701") == 0
        peers.run(peers.sim_runner.cleanup())
        hung = peers.run(hung_server(peers.sim_port))
        assert gw.code("queryAgentState", cDevice="2001") == 26      # timed out: not 24, not 16
        assert gw.code("SystemStatus") == 0
    finally:
        gw.close()                 # the gateway first: it holds connections to the hung PABX
        if hung is not None:
            peers.run(hung.runner.cleanup())
        peers.close()


def test_right_after_a_start_the_teste_button_hears_the_truth():
    """Nobody in service yet (a migration's first start): the first SystemStatus waits for the first
    contact with the PABX instead of a hopeful 0, and says 22 when it failed."""
    import time
    peers = Peers()
    peers.run(peers.sim_runner.cleanup())
    from .test_multilink import hung_server
    hung = peers.run(hung_server(peers.sim_port))     # the PABX accepts and never answers
    gw = RunningGateway(gateway_for(peers, timeout=1.0), starting=True)
    try:
        assert not gw.starting.done()                  # the first contact is still under way
        started = time.monotonic()
        assert gw.code("SystemStatus") == 22
        assert time.monotonic() - started < 5          # bounded by the link's timeout
    finally:
        gw.close()                                     # the gateway first: it holds connections to the hung PABX
        peers.run(hung.runner.cleanup())
        peers.close()


def test_a_restart_with_listeners_in_service_keeps_them_open_for_the_grace_period(tmp_path):
    """Devices restored from the registry mean Protheus listeners exist: a restart while the PABX is away
    does not close them at once."""
    peers = Peers()
    state = str(tmp_path / "state.sqlite")
    try:
        gw = RunningGateway(gateway_for(peers), state_file=state)
        assert gw.code("AgentInService", device="2001", ipaddress=peers.events_url) == 0
        gw.close()
        peers.run(peers.sim_runner.cleanup())
        gw = RunningGateway(gateway_for(peers, grace=0.8), state_file=state)
        try:
            assert gw.in_loop(lambda: gw.link().health.up) is False
            assert gw.code("SystemStatus") == 0
            wait_for(lambda: gw.in_loop(lambda: gw.link().health.reported_down), what="grace over")
            assert gw.code("SystemStatus") == 22
        finally:
            gw.close()
    finally:
        peers.close()


def test_agent_in_service_while_the_pabx_is_down_is_served_when_it_is_back():
    """Protheus' Connect() never retries (smartcti.md §10.4): a refusal left the user without CTI."""
    peers = Peers()
    gw = RunningGateway(gateway_for(peers))
    try:
        link = gw.link()
        peers.run(peers.sim_runner.cleanup())
        wait_for(lambda: not gw.in_loop(lambda: link.health.up), what="link down")
        assert gw.code("AgentInService", device="2001", ipaddress=peers.events_url) == 0
        assert gw.code("AgentInService", device="2001", ipaddress=peers.events_url) == 0   # its listener
        assert names_for(peers, "2001") == []                         # INSERVICE only once monitored
        page = gw.http("GET", "/")[1].decode()
        assert "2001 (waiting for the PABX)" in page
        peers.sim, peers.sim_runner = peers.run(start_simulator("127.0.0.1", peers.sim_port,
                                                                options_from_mapping({"answer_after": 0.05})))
        wait_for(lambda: names_for(peers, "2001") == ["INSERVICE"], timeout=10, what="INSERVICE once back")
        assert gw.in_loop(lambda: link.switch.device("2001").monitored) is True
        assert "2001" in [d for ch in peers.sim_call(lambda s: s.state())["channels"].values() for d in ch["devices"]]
        assert gw.code("Logon", device="2001", agentID="1234", groupID="701") == 0
        assert gw.code("Ready", device="2001", agentID="", groupID="") == 0
        peers.sim_call(lambda s: s.inbound(ANI, "7001", group="701"))
        wait_for(lambda: "RINGING" in names_for(peers, "2001"), what="its calls pop")
    finally:
        gw.close()
        peers.close()


def test_one_agent_out_of_service_is_forgotten_by_the_registry(tmp_path):
    peers = Peers()
    state = str(tmp_path / "state.sqlite")
    try:
        gw = RunningGateway(gateway_for(peers), state_file=state)
        for _ in range(2):     # the main session and the call listener
            assert gw.code("AgentInService", device="2001", ipaddress=peers.events_url) == 0
        assert gw.code("Logon", device="2001", agentID="1234", groupID="701") == 0
        assert gw.code("AgentOutOfService", device="2001") == 0        # one, from OnLostConnection
        gw.close()
        gw = RunningGateway(gateway_for(peers), state_file=state)
        try:
            assert gw.in_loop(lambda: gw.link().switch.devices) == {}
        finally:
            gw.close()
    finally:
        peers.close()
