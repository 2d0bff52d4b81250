"""Access: address lists on the command and events endpoints, HTTPS in and out, URLs without passwords."""
import asyncio
import http.client
import ipaddress
import logging
import socket
import ssl
import textwrap
import xmlrpc.client

import pytest
from aiohttp import web

from smartcti_gateway import access, config, tls
from smartcti_gateway.access import AccessGuard, Policy
from smartcti_gateway.config import ConfigError, load
from smartcti_gateway.networks import parse_network, parse_networks, peer_address
from smartcti_gateway.pabx import DRIVERS
from smartcti_gateway.pabx.base import Common
from smartcti_gateway.urls import redact_url
from smartcti_gateway.core.pabx import PabxUnavailable, QueryVersion
from smartcti_gateway.pabx.digitro.driver import DigitroDriver
from smartcti_gateway.sim.digitro import Simulator
from smartcti_gateway.sim.digitro import server as simulator_http
from smartcti_gateway.sim.protheus import eventing as eventing_simulator

from .support import (CMD_PATH, ENDPOINT, RunningGateway, protheus_envelope, self_signed_certificate, simulated_config,
                      wait_for)

SOAP_HEADERS = {"Content-Type": "text/xml; charset=UTF-8", "SOAPAction": '"urn:SystemStatus"'}
ACCESS_LOG = "smartcti_gateway.access"


# ------------------------------------------------------------------ helpers
@pytest.fixture(scope="module")
def cert(tmp_path_factory):
    """A self-signed certificate for 127.0.0.1 / localhost: (cert.pem, key.pem)."""
    return self_signed_certificate(tmp_path_factory.mktemp("tls"))


def server_ctx(cert) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(*cert)
    return ctx


def write(tmp_path, text: str):
    f = tmp_path / "gw.yaml"
    f.write_text(textwrap.dedent(text), encoding="utf-8")
    return f


def error_of(tmp_path, text: str) -> str:
    with pytest.raises(ConfigError) as e:
        load(write(tmp_path, text))
    return str(e.value)


def post(port: int, path: str, body: bytes, headers: dict | None = None, conn=None):
    c = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request("POST", path, body=body, headers=headers or {})
    r = c.getresponse()
    return r.status, r.read()


def refusals(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == ACCESS_LOG and "refused" in r.getMessage()]


def event_body(device: str = "2001") -> bytes:
    return xmlrpc.client.dumps(({"EVENTO": "AGENTE_LOGADO", "DISPOSITIVO": device, "AGENTE": "1234",
                                 "GRUPO_DAC": "701"},), "cti.evento").encode()


# ---------------------------------------------------------------- redaction
@pytest.mark.parametrize("url, shown", [
    ("http://user:pass@ngc:2551/RPC2", "http://user:***@ngc:2551/RPC2"),
    ("https://cti:p%40ss:w0rd@10.0.0.5/RPC2?x=1", "https://cti:***@10.0.0.5/RPC2?x=1"),
    ("http://user@ngc/RPC2", "http://user@ngc/RPC2"),                 # no password, nothing to hide
    ("http://ngc:2551/RPC2", "http://ngc:2551/RPC2"),
    ("http://ngc/RPC2?user=a&password=s3cret&x=1", "http://ngc/RPC2?user=a&password=***&x=1"),
    ("http://ngc/RPC2?token=abc", "http://ngc/RPC2?token=***"),
    ("http://ngc/path/with@sign", "http://ngc/path/with@sign"),      # '@' after the host is not user info
    ("user:pass@ngc:2551", "user:***@ngc:2551"),                     # not even a URL
    ("http://[::1:2551/RPC2", "http://[::1:2551/RPC2"),               # unparsable: returned, never raises
    ("", ""),
])
def test_redact_url(url, shown):
    assert redact_url(url) == shown


def test_config_url_error_does_not_show_the_password(tmp_path, monkeypatch):
    monkeypatch.setenv("NGC_PASSWORD", "hunter2")
    msg = error_of(tmp_path, "links: [{link_id: 1, pabx: {url: 'ftp://cti:${NGC_PASSWORD}@ngc/RPC2'}}]\n")
    assert "links[0].pabx.url" in msg and "hunter2" not in msg and "cti:***@ngc" in msg


def test_password_from_the_environment_inside_a_url(tmp_path, monkeypatch):
    monkeypatch.setenv("NGC_PASSWORD", "hunter2")
    cfg = load(write(tmp_path, "links: [{link_id: 1, pabx: {url: 'http://cti:${NGC_PASSWORD}@10.0.0.5:2551/RPC2'}}]\n"))
    assert cfg.links[0].pabx.options.url == "http://cti:hunter2@10.0.0.5:2551/RPC2"
    monkeypatch.delenv("NGC_PASSWORD")
    assert "environment variable NGC_PASSWORD is not set" in error_of(
        tmp_path, "links: [{link_id: 1, pabx: {url: 'http://cti:${NGC_PASSWORD}@10.0.0.5:2551/RPC2'}}]\n")


# ----------------------------------------------------------------- networks
def test_networks_and_addresses():
    assert parse_networks(["10.0.0.0/8, 192.168.10.5", "::1", "10.0.0.0/8"]) == (
        ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("192.168.10.5/32"), ipaddress.ip_network("::1/128"))
    # an IPv4-mapped rule is the IPv4 rule; an IPv4-mapped peer is the IPv4 peer
    assert parse_network("::ffff:10.0.0.0/104") == ipaddress.ip_network("10.0.0.0/8")
    assert peer_address("::ffff:10.1.2.3") == ipaddress.ip_address("10.1.2.3")
    assert peer_address("fe80::1%eth0") == ipaddress.ip_address("fe80::1")
    assert peer_address("not an address") is None and peer_address(None) is None
    with pytest.raises(ValueError, match="write 192.168.10.0/24 for the network, or 192.168.10.5 alone"):
        parse_network("192.168.10.5/24")
    with pytest.raises(ValueError, match="not an IP address or network"):
        parse_network("protheus.example.com")


def test_policy_decisions():
    p = Policy(parse_networks(["10.0.0.0/8", "2001:db8::/32"]), link_id=1, endpoint="command",
               setting="links[0].allow")
    assert p.allows("10.9.8.7") and p.allows("::ffff:10.9.8.7") and p.allows("2001:db8::5")
    assert not p.allows("11.0.0.1") and not p.allows("::ffff:11.0.0.1") and not p.allows("::1")
    assert not p.allows(None) and not p.allows("garbage")
    assert p.allows("10.9.8.7")       # from the cache now
    everyone = Policy(None, link_id=1, endpoint="command", setting="links[0].allow")
    assert everyone.open and everyone.allows("203.0.113.9")
    v6_all = Policy(parse_networks(["::/0"]), link_id=1, endpoint="command", setting="x")
    assert not v6_all.allows("10.0.0.1")    # an IPv6 rule never matches an IPv4 peer


def test_refusals_are_logged_once_per_address_per_minute(caplog):
    now = [1000.0]
    guard = AccessGuard(clock=lambda: now[0])
    policy = Policy(parse_networks(["10.0.0.0/8"]), link_id=3, endpoint="command", setting="links[2].allow")
    caplog.set_level(logging.WARNING, logger=ACCESS_LOG)
    for _ in range(5):
        guard._log("203.0.113.9", policy, "/p")
    guard._log("203.0.113.10", policy, "/p")
    assert len(refusals(caplog)) == 2
    now[0] += 61
    guard._log("203.0.113.9", policy, "/p")
    msgs = refusals(caplog)
    assert len(msgs) == 3
    assert "link 3: refused 203.0.113.9 to its command endpoint /p: not in links[2].allow" in msgs[2]
    assert "4 more refusal(s) of this address" in msgs[2]


# ------------------------------------------------------------ config errors
@pytest.mark.parametrize("text, expected", [
    ("""
     links:
       - link_id: 1
         allow: [10.0.0.0/8, 10.0.0.300]
     """, "gw.yaml:4: links[0].allow[1]: '10.0.0.300' is not an IP address or network"),
    ("""
     links:
       - link_id: 1
         allow: [192.168.10.5/24]
     """, "gw.yaml:4: links[0].allow[0]: '192.168.10.5/24' has bits set after the /24 prefix: write 192.168.10.0/24"),
    ("""
     links:
       - link_id: 1
         allow: 10.0.0.0/8, ngc.local
     """, "gw.yaml:4: links[0].allow: 'ngc.local' is not an IP address or network"),
    ("""
     links:
       - link_id: 1
         allow: [10]
     """, "gw.yaml:4: links[0].allow[0]: must be an address or network written as text, got 10"),
    ("""
     links:
       - link_id: 1
         allow: {a: b}
     """, "gw.yaml:4: links[0].allow: must be a list of addresses or networks"),
    ("""
     links:
       - link_id: 1
         pabx:
           url: http://10.0.0.5:2551/RPC2
           allow: [10.0.0.5, 10.0.0.6/33]
     """, "gw.yaml:6: links[0].pabx.allow[1]: '10.0.0.6/33' is not an IP address or network"),
    ("""
     links:
       - link_id: 1
         pabx: {ca_file: /nonexistent/ca.pem}
     """, "gw.yaml:4: links[0].pabx.ca_file: cannot read '/nonexistent/ca.pem'"),
    ("""
     links:
       - link_id: 1
         events:
           ca_file: /nonexistent/ca.pem
     """, "gw.yaml:5: links[0].events.ca_file: cannot read '/nonexistent/ca.pem'"),
    ("""
     tls:
       cert: /nonexistent/cert.pem
       key: /nonexistent/key.pem
     links: [{link_id: 1}]
     """, "gw.yaml:3: tls.cert: cannot read '/nonexistent/cert.pem'"),
    ("""
     tls: {cert: /etc/hostname}
     links: [{link_id: 1}]
     """, "gw.yaml:2: tls.key: is required"),
])
def test_config_errors(tmp_path, text, expected):
    assert expected in error_of(tmp_path, text)


def test_tls_config(tmp_path, cert):
    crt, key = cert
    cfg = load(write(tmp_path, f"""
        tls: {{cert: {crt}, key: {key}}}
        links:
          - link_id: 1
          - link_id: 2
            listen: 127.0.0.1:9443
          - link_id: 3
            listen: 127.0.0.1:9444
            tls: {{cert: {crt}, key: {key}}}
    """))
    assert config.tls_of(cfg, cfg.links[0]) == cfg.tls and config.tls_of(cfg, cfg.links[1]) == cfg.tls
    assert config.scheme(cfg, cfg.links[2]) == "https"
    assert "password" not in repr(cfg.tls)
    # a certificate that is not one, a key that does not match, a link tls without its own listener
    (tmp_path / "bad.pem").write_text("not a certificate\n")
    msg = error_of(tmp_path, f"tls: {{cert: {tmp_path / 'bad.pem'}, key: {key}}}\nlinks: [{{link_id: 1}}]\n")
    assert "gw.yaml:1: tls: " in msg and "cannot be used" in msg
    msg = error_of(tmp_path, f"links: [{{link_id: 1, tls: {{cert: {crt}, key: {key}}}}}]\n")
    assert "gw.yaml:1: links[0].tls: needs the link's own listen" in msg
    msg = error_of(tmp_path, f"""
        links:
          - link_id: 1
            listen: 127.0.0.1:9443
          - link_id: 2
            command_path: /other/SmartCTIWSCommand
            listen: 127.0.0.1:9443
            tls: {{cert: {crt}, key: {key}}}
    """)
    assert "links[1].tls: 127.0.0.1:9443 is also the listener of links[0], with another tls" in msg


# ------------------------------------------------- command endpoint (real HTTP)
def test_allowed_network_is_served(caplog):
    cfg = simulated_config()
    cfg["links"][0]["allow"] = ["127.0.0.0/8"]
    caplog.set_level(logging.INFO, logger=ACCESS_LOG)
    gw = RunningGateway(cfg)
    try:
        assert gw.code("SystemStatus") == 0
        status, body, _ = gw.http("GET", CMD_PATH + "?wsdl")
        assert status == 200 and b"definitions" in body
        assert not [r for r in caplog.records if r.name == ACCESS_LOG and r.levelno >= logging.WARNING]
    finally:
        gw.close()


def test_open_command_endpoint_is_warned_at_start(caplog):
    caplog.set_level(logging.WARNING, logger=ACCESS_LOG)
    gw = RunningGateway(simulated_config())
    try:
        assert gw.code("SystemStatus") == 0
        (msg,) = [r.getMessage() for r in caplog.records if r.name == ACCESS_LOG]
        assert msg.startswith(f"link 1: its command endpoint {CMD_PATH} accepts commands from any address; "
                              "set links[0].allow in <test> to the Protheus servers' addresses")
    finally:
        gw.close()


def test_refused_address_gets_403_and_other_links_keep_working(caplog):
    cfg = simulated_config()
    cfg["links"][0]["allow"] = ["10.0.0.0/8"]
    cfg["links"].append({"link_id": 2, "command_path": "/link2/services/SmartCTIWSCommand", "allow": "127.0.0.1",
                         "pabx": cfg["links"][0]["pabx"]})
    caplog.set_level(logging.WARNING, logger=ACCESS_LOG)
    gw = RunningGateway(cfg)
    try:
        conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=10)
        # X-Forwarded-For is not believed: the TCP peer is 127.0.0.1
        status, body = post(gw.port, ENDPOINT, protheus_envelope("SystemStatus"),
                            {**SOAP_HEADERS, "X-Forwarded-For": "10.1.2.3"}, conn)
        assert status == 403
        assert b"<faultcode>soapenv:Client</faultcode>" in body
        assert b"<faultstring>address 127.0.0.1 is not allowed to call link 1</faultstring>" in body
        # the next request, on the same connection, to a link that allows us, is served
        status, body = post(gw.port, "/link2/services/SmartCTIWSCommand.SmartCTIWSCommandHttpSoap11Endpoint/",
                            protheus_envelope("SystemStatus"), SOAP_HEADERS, conn)
        assert status == 200 and b"<ns:return>0</ns:return>" in body
        conn.close()
        # every URL shape of link 1 is guarded, the WSDL too (a plain-text 403)
        status, body, _ = gw.http("GET", CMD_PATH + "?wsdl")
        assert status == 403 and body == b"address 127.0.0.1 is not allowed to call link 1\n"
        assert gw.http("POST", CMD_PATH + ".jws", protheus_envelope("SystemStatus"), SOAP_HEADERS)[0] == 403
        assert gw.http("POST", CMD_PATH + "/.SmartCTIWSCommandHttpSoap11Endpoint/", protheus_envelope("SystemStatus"),
                       SOAP_HEADERS)[0] == 403     # the loose shapes (doubled, trailing slashes) too
        # one warning for all of these refusals of one address, naming the setting to change
        (msg,) = refusals(caplog)
        assert msg.startswith(f"link 1: refused 127.0.0.1 to its command endpoint {ENDPOINT}: not in links[0].allow")
        # the console self-test says why it cannot call link 1 from here
        results = gw.run(gw.gateway.self_test())
        soap1 = next(r for r in results if r[0].startswith("link 1: SOAP"))
        assert soap1[1] is False and "HTTP 403 (address 127.0.0.1 is not allowed to call link 1)" in soap1[2]
        assert next(r for r in results if r[0].startswith("link 2: SOAP"))[1] is True
    finally:
        gw.close()


def _dual_stack() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            s.bind(("::", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _dual_stack(), reason="no dual-stack IPv6 here")
def test_ipv4_mapped_peer_matches_ipv4_rules():
    """An IPv4 client of a dual-stack IPv6 socket is seen as ::ffff:127.0.0.1: IPv4 rules apply to it."""
    async def scenario():
        app = web.Application()
        guard = access.install(app)

        async def ok(request):
            return web.Response(text=request.remote)

        app.router.add_get("/mine", guard.guarded(ok))
        app.router.add_get("/theirs", guard.guarded(ok))
        guard.protect(["/mine"], Policy(parse_networks(["127.0.0.1"]), link_id=1, endpoint="command", setting="a"))
        guard.protect(["/theirs"], Policy(parse_networks(["10.0.0.0/8"]), link_id=2, endpoint="command",
                                          setting="b"))
        sock = socket.socket(socket.AF_INET6)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind(("::", 0))
        runner = web.AppRunner(app)
        await runner.setup()
        await web.SockSite(runner, sock).start()
        port = sock.getsockname()[1]

        def get(path):
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            c.request("GET", path)
            r = c.getresponse()
            return r.status, r.read()

        try:
            assert await asyncio.to_thread(get, "/mine") == (200, b"::ffff:127.0.0.1")
            assert (await asyncio.to_thread(get, "/theirs"))[0] == 403
        finally:
            await runner.cleanup()

    asyncio.run(scenario())


# --------------------------------------------------- PABX events endpoint
def test_events_from_an_address_not_in_pabx_allow_are_refused(caplog):
    cfg = simulated_config()
    cfg["links"][0]["pabx"]["allow"] = ["10.1.1.1"]
    caplog.set_level(logging.WARNING, logger=ACCESS_LOG)
    gw = RunningGateway(cfg)
    try:
        path = gw.gateway.cfg.links[0].pabx.options.events_path
        status, body, _ = gw.http("POST", path, event_body(), {"Content-Type": "text/xml"})
        assert status == 403 and body == b"address 127.0.0.1 is not allowed to post PABX events to link 1\n"
        assert gw.in_loop(lambda: gw.link().driver.events_received) == 0
        (msg,) = refusals(caplog)
        assert f"link 1: refused 127.0.0.1 to its PABX events endpoint {path}: not in links[0].pabx.allow" in msg
        # the command endpoint (open here) is not affected
        assert gw.code("SystemStatus") == 0
    finally:
        gw.close()


def test_by_default_only_the_pabx_host_posts_events():
    gw = RunningGateway(simulated_config())      # pabx.url is http://127.0.0.1:...: the simulator's address
    try:
        assert gw.code("AgentInService", device="2001", ipaddress=gw.events_url) == 0
        assert gw.code("Logon", device="2001", agentID="1234", groupID="701") == 0
        wait_for(lambda: gw.in_loop(lambda: gw.link().driver.events_received) > 0, what="a PABX event")
        got = gw.wait_events(2)
        assert [e["method"] for e in got] == ["INSERVICE", "LOGGEDON"]
    finally:
        gw.close()


def test_default_events_policy_follows_the_pabx_host(caplog):
    """A name is resolved at start; an unresolvable one leaves the endpoint open, with a warning."""
    from smartcti_gateway.config import parse
    caplog.set_level(logging.WARNING, logger=ACCESS_LOG)

    async def policies():
        cfg = parse({"links": [{"link_id": 1, "pabx": {"url": "http://localhost:2551/RPC2"}},
                               {"link_id": 2, "command_path": "/b/SmartCTIWSCommand",
                                "pabx": {"url": "http://ngc.invalid:2551/RPC2"}},
                               {"link_id": 3, "command_path": "/c/SmartCTIWSCommand",
                                "pabx": {"url": "http://10.0.0.5:2551/RPC2", "allow": []}}]}, "gw.yaml")
        return [await access.events_policy(cfg, lc, DRIVERS[lc.pabx.driver].create(
            lc.pabx.options, Common(lc.link_id, f"link {lc.link_id}", 1, 1))) for lc in cfg.links]

    by_name, unresolved, emptied = asyncio.run(policies())
    assert by_name.allows("127.0.0.1") and not by_name.allows("10.0.0.5") and by_name.hostname == "localhost"
    assert unresolved.open and emptied.open
    msgs = [r.getMessage() for r in caplog.records if r.name == ACCESS_LOG]
    assert any("cannot resolve 'ngc.invalid', the host of links[1].pabx.url" in m and
               "set links[1].pabx.allow in gw.yaml to the NGC's addresses" in m for m in msgs)
    assert any("links[2].pabx.allow is empty" in m for m in msgs)


# -------------------------------------------------------------------- HTTPS
def test_https_listener(cert):
    crt, key = cert
    cfg = simulated_config()
    cfg["tls"] = {"cert": crt, "key": key}
    cfg["links"][0]["allow"] = ["127.0.0.1"]
    gw = RunningGateway(cfg)
    try:
        trusting = http.client.HTTPSConnection("127.0.0.1", gw.port, timeout=10,
                                               context=ssl.create_default_context(cafile=crt))
        status, body = post(gw.port, ENDPOINT, protheus_envelope("SystemStatus"), SOAP_HEADERS, trusting)
        assert status == 200 and b"<ns:return>0</ns:return>" in body
        trusting.close()
        stranger = http.client.HTTPSConnection("127.0.0.1", gw.port, timeout=10,
                                               context=ssl.create_default_context())
        with pytest.raises(ssl.SSLCertVerificationError):
            post(gw.port, ENDPOINT, protheus_envelope("SystemStatus"), SOAP_HEADERS, stranger)
        with pytest.raises((ConnectionError, http.client.HTTPException, ssl.SSLError)):
            gw.http("POST", ENDPOINT, protheus_envelope("SystemStatus"), SOAP_HEADERS)   # plain HTTP: no
        # the PABX is told an https callback; the console reports name https URLs and work
        assert gw.link().driver.callback_url.startswith(f"https://127.0.0.1:{gw.port}/pabx/digitro/1/")
        results = gw.run(gw.gateway.self_test())
        soap = next(r for r in results if "SOAP SystemStatus" in r[0])
        assert soap[0].startswith(f"link 1: SOAP SystemStatus at https://127.0.0.1:{gw.port}/") and soap[1], soap
    finally:
        gw.close()


async def _https_protheus(cert):
    sim = eventing_simulator.ProtheusSimulator(quiet=True)
    runner = web.AppRunner(eventing_simulator.build_app(sim), access_log=None, handler_cancellation=True)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_ctx(cert)).start()
    sim.port = runner.addresses[0][1]
    sim.base_url = f"https://127.0.0.1:{sim.port}/"
    return sim, runner


def _https_protheus_gateway(cert, ca_file: str | None):
    cfg = simulated_config()
    cfg["links"][0]["events"] = {"ttl": 1.5, "retry_initial": 0.05, "retry_max": 0.2}
    if ca_file:
        cfg["links"][0]["events"]["ca_file"] = ca_file
    gw = RunningGateway(cfg)
    sim, runner = gw.run(_https_protheus(cert))
    return gw, sim, runner


def test_events_reach_an_https_protheus_whose_ca_is_in_ca_file(cert):
    gw, sim, runner = _https_protheus_gateway(cert, cert[0])
    try:
        assert gw.code("AgentInService", device="2001", ipaddress=sim.url) == 0
        (ev,) = gw.run(sim.wait_events(1, timeout=5), 10)
        assert ev["method"] == "INSERVICE" and ev["params"] == {"CDEVICE": "2001", "ILINKID": "1"}
        assert sim.wsdl_requests >= 1     # zeep read the WSDL over verified https as well
        schema = gw.run(gw.link().eventing.schema(sim.url))
        assert schema.source == "wsdl"
    finally:
        gw.run(runner.cleanup())
        gw.close()


def test_events_are_never_sent_to_an_untrusted_https_protheus(cert, caplog):
    caplog.set_level(logging.WARNING)
    gw, sim, runner = _https_protheus_gateway(cert, None)
    try:
        assert gw.code("AgentInService", device="2001", ipaddress=sim.url) == 0
        counts = lambda: dict(gw.in_loop(lambda: gw.link().delivery.counts))  # noqa: E731
        wait_for(lambda: counts().get("stale"), timeout=8, what="the event to expire undelivered")
        assert counts().get("retries", 0) >= 1 and not counts().get("sent")
        assert gw.in_loop(lambda: sim.events_since(0)) == [] and sim.wsdl_requests == 0
        assert any("is not trusted" in r.getMessage() and "events.ca_file" in r.getMessage()
                   for r in caplog.records)
    finally:
        gw.run(runner.cleanup())
        gw.close()


def test_driver_verifies_an_https_pabx(cert):
    async def scenario():
        sim = Simulator(None, None)
        runner = web.AppRunner(simulator_http.build_app(sim), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_ctx(cert)).start()
        url = f"https://cti:s3cret@127.0.0.1:{runner.addresses[0][1]}/RPC2"
        trusting = DigitroDriver(url, ssl_context=tls.client_context(cert[0]))
        stranger = DigitroDriver(url)
        try:
            await trusting.start(lambda ev: None)
            await stranger.start(lambda ev: None)
            assert await trusting.execute(QueryVersion())
            with pytest.raises(PabxUnavailable) as e:
                await stranger.execute(QueryVersion())
            assert "certificate verify failed" in e.value.detail
            assert "s3cret" not in e.value.detail and "cti:***@127.0.0.1" in e.value.detail
        finally:
            await trusting.close()
            await stranger.close()
            await runner.cleanup()

    asyncio.run(scenario())


# ------------------------------------------------- where Protheus' events may be posted
@pytest.mark.parametrize("bad", ["file:///etc/passwd", "file://{secret}", "not a url", "{secret}",
                                 "gopher://127.0.0.1:70/x", "http:///etc/passwd"])
def test_agent_in_service_refuses_an_ipaddress_that_is_not_http(tmp_path, caplog, bad):
    """Seen: file:///etc/passwd made the gateway read the file; 'not a url' opened a local path."""
    secret = tmp_path / "secret.txt"
    secret.write_text("root:x:0:0")
    url = bad.format(secret=secret)
    gw = RunningGateway(simulated_config())
    try:
        caplog.set_level(logging.WARNING, "smartcti_gateway.link")
        assert gw.code("AgentInService", device="2001", ipaddress=url) == 16
        assert gw.in_loop(lambda: (gw.link().switch.device("2001"), dict(gw.link().eventing._schemas),
                                   gw.link().delivery.depth())) == (None, {}, 0)
        (line,) = [r.getMessage() for r in caplog.records if "AgentInService" in r.getMessage()]
        assert "is not an http:// or https:// URL" in line and "MV_TKCTIEV" in line
        assert gw.code("SystemStatus") == 0         # and it keeps serving
    finally:
        gw.close()


def test_eventing_allow_pins_protheus_eventing_servers(caplog):
    cfg = simulated_config()
    cfg["eventing_allow"] = ["10.20.0.0/16", "protheus.example.com"]
    cfg["links"][0]["eventing_allow"] = ["127.0.0.0/8"]          # the link's own list wins
    gw = RunningGateway(cfg)
    try:
        caplog.set_level(logging.WARNING, "smartcti_gateway.link")
        assert gw.code("AgentInService", device="2001", ipaddress=gw.events_url) == 0
        wait_for(lambda: [e for e in gw.events() if e["method"] == "INSERVICE"], what="INSERVICE")
        # a host name that resolves inside the allowed network is allowed too
        assert gw.code("AgentInService", device="2002",
                       ipaddress=gw.events_url.replace("127.0.0.1", "localhost")) == 0
    finally:
        gw.close()
    cfg["links"][0].pop("eventing_allow")
    gw = RunningGateway(cfg)
    try:
        for url in (gw.events_url, "http://192.168.7.7/SMARTCTIWSEVENTING.apw", "http://localhost:1/x.apw"):
            assert gw.code("AgentInService", device="2001", ipaddress=url) == 16
        lines = [r.getMessage() for r in caplog.records if "is not in eventing_allow" in r.getMessage()]
        assert len(lines) == 3 and "'127.0.0.1' of ipaddress" in lines[0]
        assert gw.in_loop(lambda: gw.link().switch.device("2001")) is None
    finally:
        gw.close()


def test_eventing_allow_in_the_config_is_checked(tmp_path):
    path = tmp_path / "gw.yaml"
    path.write_text("links:\n  - link_id: 1\n    eventing_allow: [10.0.0.1/8]\n")
    with pytest.raises(ConfigError, match=r"gw.yaml:3: links\[0\].eventing_allow\[0\]: '10.0.0.1/8' has bits set"):
        load(path)
    path.write_text("eventing_allow: ['protheus_server!']\nlinks:\n  - link_id: 1\n")
    with pytest.raises(ConfigError, match="neither a network"):
        load(path)


def test_a_protected_path_served_by_an_unguarded_handler_refuses_to_start():
    """The access lists are checked by the wrapper of each protected handler: a route registered without
    it would be open to anyone, so the listener does not start and says which route it is."""
    async def scenario():
        app = web.Application()
        guard = access.install(app)

        async def ok(request):
            return web.Response(text="ok")

        app.router.add_post("/guarded", guard.guarded(ok))
        app.router.add_post("/forgotten", ok)
        policy = Policy(parse_networks(["10.0.0.0/8"]), link_id=1, endpoint="command", setting="links[0].allow")
        guard.protect(["/guarded", "/forgotten"], policy)
        runner = web.AppRunner(app)
        try:
            with pytest.raises(RuntimeError, match="POST /forgotten is protected"):
                await runner.setup()
        finally:
            await runner.cleanup()

    asyncio.run(scenario())
