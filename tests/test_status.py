"""Health endpoints, Prometheus metrics after a scripted call, and the status page in a real browser."""
import shutil
from pathlib import Path

import pytest

from smartcti_gateway.sim.digitro import options_from_mapping, start_simulator

from .support import RunningGateway, simulated_config, wait_for

ARTIFACTS = Path(__file__).resolve().parent / "_artifacts"


@pytest.fixture
def gw():
    cfg = simulated_config()
    cfg["links"][0]["pabx"].update({"keepalive": 0.1, "reconnect_max": 0.2})
    g = RunningGateway(cfg)
    yield g
    g.close()


def metric(text: str, name: str, **labels) -> float:
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    for line in text.splitlines():
        if line.startswith(name + ("{" if labels else " ")) and (not labels or all(
                f'{k}="{v}"' in line for k, v in labels.items())):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name}{{{want}}} not in /metrics")


def test_healthz_and_readyz_follow_the_pabx(gw):
    assert gw.http("GET", "/healthz")[:2] == (200, b"ok\n")
    assert gw.http("GET", "/readyz")[:2] == (200, b"ready\n")
    port = gw.sim_port
    gw.run(gw.gateway._sim_runner.cleanup())
    status, body = wait_for(lambda: (lambda r: r[:2] if r[0] == 503 else None)(gw.http("GET", "/readyz")),
                            what="readyz 503")
    assert body.startswith(b"not ready\nlink 1: PABX link down for ") and b"unreachable" in body
    assert gw.http("GET", "/healthz")[0] == 200      # alive all the same
    sim, gw.gateway._sim_runner = gw.run(start_simulator("127.0.0.1", port, options_from_mapping({})))
    gw.gateway.simulator = sim
    wait_for(lambda: gw.http("GET", "/readyz")[0] == 200, timeout=10, what="readyz back to 200")


def test_metrics_after_a_scripted_call(gw):
    assert gw.code("AgentInService", device="2001", ipaddress=gw.events_url) == 0
    assert gw.code("Logon", device="2001", agentID="1234", groupID="701") == 0
    assert gw.code("Ready", device="2001", agentID="", groupID="") == 0
    _, body = gw.sim("/sim/inbound", {"ani": "4832810000", "dnis": "7001", "group": "701"})
    wait_for(lambda: gw.conn_state("2001"), what="ringing")
    assert gw.code("Answer", device="2001") == 0
    assert gw.code("Hold", device="9999") == 18
    gw.sim("/sim/hangup", {"device": "2001"})
    gw.wait_events(6)        # INSERVICE LOGGEDON READY RINGING ANSWERED CONNECTIONCLEARED
    wait_for(lambda: gw.in_loop(lambda: gw.link().delivery.depth()) == 0, what="queue empty")
    status, text, headers = gw.http("GET", "/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain; version=")
    text = text.decode()
    assert metric(text, "smartcti_commands_total", link=1, operation="Answer", result=0) == 1
    assert metric(text, "smartcti_commands_total", link=1, operation="Hold", result=18) == 1
    assert metric(text, "smartcti_commands_total", link=1, operation="AgentInService", result=0) == 1
    for event in ("INSERVICE", "LOGGEDON", "READY", "RINGING", "ANSWERED", "CONNECTIONCLEARED"):
        assert metric(text, "smartcti_events_total", link=1, event=event, result="ok") == 1, event
    assert metric(text, "smartcti_devices_in_service", link=1) == 1
    assert metric(text, "smartcti_agents", link=1, state="ready") == 1
    assert metric(text, "smartcti_pabx_up", link=1) == 1
    assert metric(text, "smartcti_event_queue_depth", link=1) == 0
    assert metric(text, "smartcti_events_dropped_total", link=1, reason="stale") == 0
    assert metric(text, "smartcti_pabx_request_seconds_count", link=1) >= 5
    assert metric(text, "smartcti_pabx_events_received_total", link=1) >= 5
    assert metric(text, "smartcti_calls", link=1) == 0
    assert "s3cret" not in text and "agentPass" not in text


def test_page_metrics_and_query_agent_state_say_the_same(gw):
    """Seen: an agent on a connected call shown ready while /metrics said busy and queryAgentState 29."""
    def views():
        page = gw.http("GET", "/")[1].decode()
        text = gw.http("GET", "/metrics")[1].decode()
        states = {s for s in ("ready", "busy", "not_ready", "logged_on") if metric(text, "smartcti_agents", link=1,
                                                                                 state=s) == 1}
        return page, states, gw.code("queryAgentState", cDevice="2001")

    assert gw.code("AgentInService", device="2001", ipaddress=gw.events_url) == 0
    assert gw.code("Logon", device="2001", agentID="1234", groupID="701") == 0
    assert gw.code("Ready", device="2001", agentID="", groupID="") == 0
    page, states, code = views()
    assert "<td>ready (28)</td>" in page and states == {"ready"} and code == 28
    gw.sim("/sim/inbound", {"ani": "4832810000", "dnis": "7001", "group": "701"})
    wait_for(lambda: gw.conn_state("2001"), what="ringing")
    assert gw.code("Answer", device="2001") == 0
    wait_for(lambda: "connected" in gw.conn_state("2001").values(), what="answered")
    page, states, code = views()
    assert "<td>busy (29)</td>" in page and states == {"busy"} and code == 29
    gw.sim("/sim/hangup", {"device": "2001"})
    wait_for(lambda: not gw.conn_state("2001"), what="hung up")
    page, states, code = views()
    assert "<td>ready (28)</td>" in page and states == {"ready"} and code == 28


def test_status_page_and_metrics_only_for_status_allow():
    cfg = simulated_config()
    cfg["status_allow"] = ["10.0.0.0/8"]
    g = RunningGateway(cfg)
    try:
        for path in ("/", "/metrics"):
            status, body, _ = g.http("GET", path)
            assert status == 403 and b"not in status_allow" in body
        assert g.http("GET", "/healthz")[0] == 200 and g.http("GET", "/readyz")[0] == 200
    finally:
        g.close()


def chromium_missing():
    if not shutil.which("chromium") or not shutil.which("chromedriver"):
        return "Debian's chromium and chromium-driver are not installed (scripts/test installs them)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e .[test])"
    return None


def test_status_page_in_a_real_browser_shows_a_ringing_call(gw):
    if chromium_missing():
        pytest.skip(chromium_missing())
    from selenium import webdriver
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.chrome.service import Service

    assert gw.code("AgentInService", device="2001", ipaddress=gw.events_url) == 0
    assert gw.code("Logon", device="2001", agentID="1234", groupID="701") == 0
    assert gw.code("Ready", device="2001", agentID="", groupID="") == 0
    _, body = gw.sim("/sim/inbound", {"ani": "4832810000", "dnis": "7001", "group": "701"})
    call_id = body["call_id"]
    wait_for(lambda: gw.conn_state("2001").get(call_id) == "alerting", what="ringing")

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=412,915"):   # a phone's viewport
        options.add_argument(flag)
    browser = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    try:
        browser.get(f"http://{gw.host}/")
        assert browser.title == "smartcti-gateway status"
        page = browser.find_element("tag name", "body").text
        assert "Ready" in page
        assert call_id in page and "4832810000" in page and "2001 alerting" in page
        assert "1234" in page                               # the agent on the device
        viewport = browser.execute_script("return document.querySelector('meta[name=viewport]').content")
        assert viewport == "width=device-width, initial-scale=1"
        ARTIFACTS.mkdir(exist_ok=True)
        browser.save_screenshot(str(ARTIFACTS / "status-page.png"))
        assert (ARTIFACTS / "status-page.png").stat().st_size > 1000
        # it refreshes itself: the answered call shows up without any action
        assert gw.code("Answer", device="2001") == 0
        def page_text():
            try:   # the page may be reloading right now: read it in one go, or try again
                return browser.execute_script("return document.body ? document.body.innerText : ''")
            except WebDriverException:
                return ""
        wait_for(lambda: "2001 connected" in page_text(), timeout=10, what="the page refreshed")
    finally:
        browser.quit()
