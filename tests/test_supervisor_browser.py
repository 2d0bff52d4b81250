"""The supervisor's board in a real (headless) Chromium: log in, a ringing call appears without a reload,
an action from the board with its confirmation, nothing from the PABX becomes markup, and the layout at
1280 px and at a phone's 390 px (no horizontal scrolling). The screenshots go to tests/_artifacts/screenshots/;
with SMARTCTI_DOCS_IMAGES=1 also to docs/img/, the pictures docs/supervisor.md and the README show."""
import os
import shutil
from pathlib import Path

import pytest

from smartcti_gateway.core.pabx import AgentState
from smartcti_gateway.supervisor.passwords import hash_password

from .support import RunningGateway, in_service, simulated_config, wait_for
from .test_status import chromium_missing

ROOT = Path(__file__).resolve().parent.parent
SHOTS = ROOT / "tests" / "_artifacts" / "screenshots"
DOCS_IMG = ROOT / "docs" / "img"
PASSWORD = "maria-secret-1"
HOSTILE = "<img src=x onerror=window.pwned=1>"


@pytest.fixture
def gw(tmp_path):
    cfg = simulated_config()
    cfg["links"][0]["name"] = "Dígitro NGC (simulado)"
    cfg["supervisor"] = {"users": {"maria": hash_password(PASSWORD)}, "audit_log": str(tmp_path / "audit.log")}
    g = RunningGateway(cfg)
    yield g
    g.close()


@pytest.fixture
def browser():
    if chromium_missing():
        pytest.skip(chromium_missing())
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1280,900", "--lang=pt-BR"):
        options.add_argument(flag)
    b = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    yield b
    b.quit()


def viewport(browser, width: int, height: int, mobile: bool) -> None:
    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {"width": width, "height": height,
                                                                   "deviceScaleFactor": 1, "mobile": mobile})


def shot(browser, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(SHOTS / name))
    if os.environ.get("SMARTCTI_DOCS_IMAGES") == "1":
        DOCS_IMG.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(SHOTS / name, DOCS_IMG / name)


def js(browser, script: str):
    return browser.execute_script(script)


def card_text(browser, device: str) -> str:
    return js(browser, f"var c = document.querySelector('.card.agent[data-device=\"{device}\"]');"
                       "return c ? c.innerText : '';")


def test_the_board_in_a_browser(gw, browser):
    in_service(gw, "2001", "2002", "2003")
    for device, agent, groups in (("2001", "1234", "701"), ("2002", "5678", "701,702"), ("2003", "4321", "702")):
        assert gw.code("Logon", device=device, agentID=agent, groupID=groups) == 0
    assert gw.code("Ready", device="2001", agentID="", groupID="") == 0
    gw.sim("/sim/phone", {"device": "2002", "action": "pause", "reason": "almoço"})   # paused on the phone

    viewport(browser, 1280, 900, False)
    browser.get(f"http://{gw.host}/supervisor")
    assert browser.current_url.endswith("/supervisor/login")
    browser.find_element("id", "user").send_keys("maria")
    browser.find_element("id", "password").send_keys(PASSWORD)
    browser.find_element("id", "sign-in").click()
    wait_for(lambda: browser.title.startswith("Supervisão"), what="the board after the login")
    wait_for(lambda: "Em pausa" in card_text(browser, "2002") and "almoço" in card_text(browser, "2002"),
             what="the paused agent with its reason")
    wait_for(lambda: js(browser, "return document.getElementById('live').textContent") == "ao vivo",
             what="the event stream open")
    js(browser, "window.notReloaded = true;")

    # a customer calls group 701: it rings on 2001, and the board shows it by itself
    gw.sim("/sim/inbound", {"ani": "4832810000", "dnis": "7001", "group": "701"})
    wait_for(lambda: "4832810000" in card_text(browser, "2001") and "Tocando" in card_text(browser, "2001"),
             timeout=10, what="the ringing call on the board")
    assert js(browser, "return window.notReloaded === true")
    assert gw.code("Answer", device="2001") == 0
    wait_for(lambda: "Em conversa" in card_text(browser, "2001"), timeout=10, what="the answered call")
    gw.sim("/sim/inbound", {"ani": "4833334444", "dnis": "7001", "group": "701"})     # nobody free: it waits
    if getattr(gw.link(), "queues", None) is not None:
        wait_for(lambda: "4833334444" in js(browser, "var g = document.querySelector('[data-group=\"701\"]');"
                                                     "return g ? g.innerText : ''"),
                 timeout=10, what="the call waiting in group 701")

    shot(browser, "supervisor-desktop.png")

    # an action from the board, with its confirmation: 2002 is made ready (and takes the waiting call)
    browser.find_element("css selector", '.card.agent[data-device="2002"] button[data-action="ready"]').click()
    wait_for(lambda: js(browser, "return document.getElementById('confirm').open"), what="the confirmation")
    assert "Deixar 5678 (2002) disponível?" in browser.find_element("id", "confirm-text").text
    browser.find_element("id", "confirm-ok").click()
    wait_for(lambda: js(browser, "return document.getElementById('toast').textContent") ==
             "Feito: Disponível · 5678 (2002)", timeout=10, what="the action's answer")
    wait_for(lambda: gw.in_loop(lambda: gw.link().switch.agent_state("2002")) in (AgentState.READY, AgentState.BUSY),
             what="2002 ready at the gateway")
    wait_for(lambda: "Em pausa" not in card_text(browser, "2002"), timeout=10, what="the board after the action")
    assert js(browser, "return window.notReloaded === true")

    # a phone: cards stacked, nothing wider than the screen
    viewport(browser, 390, 844, True)
    wait_for(lambda: js(browser, "return window.innerWidth") == 390, what="the phone's viewport")
    assert js(browser, "return document.documentElement.scrollWidth") <= 390
    lefts = js(browser, "return Array.from(document.querySelectorAll('.card.agent')).map(c => c.offsetLeft)")
    assert len(lefts) == 3 and len(set(lefts)) == 1, lefts            # one column
    js(browser, "document.getElementById('toast').className = '';")
    tall = min(js(browser, "return document.documentElement.scrollHeight"), 2400)
    viewport(browser, 390, tall, True)                    # the whole page in one picture
    wait_for(lambda: js(browser, "return window.innerHeight") == tall, what="the tall viewport")
    assert js(browser, "return document.documentElement.scrollWidth") <= 390
    shot(browser, "supervisor-phone.png")
    for name in ("supervisor-desktop.png", "supervisor-phone.png"):
        assert (SHOTS / name).stat().st_size > 5000

    # nothing from the PABX becomes markup: an agent id that is HTML, logged on at 2003 from the phone
    viewport(browser, 1280, 900, False)
    assert gw.code("Logoff", device="2003", agentID="", groupID="") == 0
    assert gw.code("Logon", device="2003", agentID=HOSTILE, groupID="702") == 0
    wait_for(lambda: js(browser, "var n = document.querySelector('[data-device=\"2003\"] .name');"
                                 "return n ? n.textContent : ''") == HOSTILE, timeout=10, what="the hostile agent id")
    assert js(browser, "return document.querySelectorAll('#board img').length") == 0
    assert js(browser, "return window.pwned === undefined")

    # English, chosen on the page and kept in the session
    browser.find_element("css selector", 'nav.lang a[hreflang="en"]').click()
    wait_for(lambda: browser.title.startswith("Supervisor ·"), what="the English board")
    wait_for(lambda: "Ready" in card_text(browser, "2002") or "Busy" in card_text(browser, "2002"),
             what="English labels")
