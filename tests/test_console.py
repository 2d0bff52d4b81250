"""The console driven through a pseudo-terminal: every key, on a real gateway process."""
import os
import pty
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from .support import free_port, protheus_envelope

ROOT = Path(__file__).resolve().parent.parent


class Terminal:
    def __init__(self, args, cwd):
        self.master, slave = pty.openpty()
        self.proc = subprocess.Popen(args, stdin=slave, stdout=slave, stderr=slave, cwd=cwd, close_fds=True)
        os.close(slave)
        self.buffer = ""

    def expect(self, text: str, timeout: float = 15.0) -> str:
        deadline = time.monotonic() + timeout
        while text not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{text!r} not seen in {timeout} s; screen:\n{self.buffer[-3000:]}")
            ready, _, _ = select.select([self.master], [], [], left)
            if ready:
                try:
                    chunk = os.read(self.master, 65536)
                except OSError:
                    break
                self.buffer += chunk.decode("utf-8", "replace")
        at = self.buffer.index(text) + len(text)
        seen, self.buffer = self.buffer[:at], self.buffer[at:]
        return seen

    def press(self, key: str) -> None:
        os.write(self.master, key.encode())

    def close(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        os.close(self.master)


@pytest.fixture
def terminal(tmp_path):
    gw_port, sim_port = free_port(), free_port()
    cfg = {"listen": f"127.0.0.1:{gw_port}", "logging": {"dir": str(tmp_path / "logs")},
           "links": [{"link_id": 4, "pabx": {"url": f"http://127.0.0.1:{sim_port}/RPC2", "timeout": 2}}],
           "simulator": {"enabled": True, "listen": f"127.0.0.1:{sim_port}"}}
    path = tmp_path / "gw.yaml"
    path.write_text(yaml.safe_dump(cfg))
    t = Terminal([sys.executable, "-m", "smartcti_gateway", "run", "--config", str(path)], ROOT)
    t.port, t.logs = gw_port, tmp_path / "logs"
    yield t
    t.close()


def soap(port: int, op: str, **args) -> None:
    import http.client
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request("POST", "/axis2/services/SmartCTIWSCommand.SmartCTIWSCommandHttpSoap11Endpoint/",
              protheus_envelope(op, **args), {"Content-Type": "text/xml"})
    assert c.getresponse().status == 200
    c.close()


def test_every_key(terminal):
    t = terminal
    t.expect("keys: q quit")
    t.expect("ready (1 link(s)); stop with q, Ctrl+C or SIGTERM")
    t.press("h")
    t.expect("v versions (gateway, PABX, Protheus)")
    t.press("x")
    t.expect("'x': unknown key.")
    t.press("s")
    t.expect(f"s: per-extension logs ON in {t.logs}")
    # per-extension files are for devices in service only
    soap(t.port, "AgentInService", device="2001", ipaddress="http://127.0.0.1:9/SMARTCTIWSEVENTING.apw")
    soap(t.port, "Logon", device="2001", agentID="1234", groupID="701")
    day = time.strftime("%d")
    assert "CMD Logon(device='2001'" in (t.logs / f"2001-4-{day}.log").read_text()
    t.press("n")
    t.expect("n: per-extension logs OFF")
    soap(t.port, "Logoff", device="2001", agentID="1234", groupID="701")
    soap(t.port, "AgentOutOfService", device="2001")
    assert "Logoff" not in (t.logs / f"2001-4-{day}.log").read_text()
    t.press("v")
    screen = t.expect("link 4 (link 4): PABX NGC simulator")
    assert "v: smartcti-gateway 0.1.0" in screen
    t.press("t")
    screen = t.expect("t: 3 passed, 0 failed")
    assert "PASS  link 4: SOAP SystemStatus at http://127.0.0.1:" in screen
    assert "PASS  link 4: PABX at http://127.0.0.1:" in screen
    t.press("q")
    t.expect("q: stopping")
    t.expect("stopped")
    assert t.proc.wait(15) == 0


def test_self_test_reports_a_dead_pabx(tmp_path):
    gw_port = free_port()
    path = tmp_path / "gw.yaml"
    path.write_text(yaml.safe_dump({"listen": f"127.0.0.1:{gw_port}", "links": [
        {"link_id": 1, "pabx": {"url": f"http://127.0.0.1:{free_port()}/RPC2", "timeout": 1}}]}))
    t = Terminal([sys.executable, "-m", "smartcti_gateway", "run", "--config", str(path)], ROOT)
    try:
        t.expect("keys: q quit")
        t.press("t")
        screen = t.expect("t: 1 passed, 2 failed")
        # the SOAP service answers; with no device in service no call listener can be closed, so
        # SystemStatus tells the truth at once instead of a hopeful 0 (smartcti.md §10.3)
        assert "FAIL  link 1: SOAP SystemStatus" in screen and "returned 22 (PABX link down;" in screen
        assert "no device is in service, so SystemStatus says so at once" in screen
        assert "FAIL  link 1: PABX at" in screen and "unreachable" in screen
        t.press("v")
        t.expect("link 1 (link 1): PABX unreachable")
        t.press("q")
        assert t.proc.wait(15) == 0
    finally:
        t.close()


def test_no_terminal_no_console_and_sigterm_stops_gracefully(tmp_path):
    gw_port = free_port()
    path = tmp_path / "gw.yaml"
    path.write_text(yaml.safe_dump({"listen": f"127.0.0.1:{gw_port}", "links": [
        {"link_id": 1, "pabx": {"url": f"http://127.0.0.1:{free_port()}/RPC2", "timeout": 1}}]}))
    proc = subprocess.Popen([sys.executable, "-m", "smartcti_gateway", "run", "--config", str(path)], cwd=ROOT,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if "ready (1 link(s))" in line:
                break
        assert "stop with SIGTERM or Ctrl+C" in lines[-1]
        proc.send_signal(signal.SIGTERM)
        out = proc.communicate(timeout=15)[0]
        assert proc.returncode == 0 and "stopped" in out
        assert "keys:" not in "".join(lines) + out
    finally:
        if proc.poll() is None:
            proc.kill()


def test_versions_and_self_test_cover_protheus_eventing():
    from .support import RunningGateway, simulated_config
    gw = RunningGateway(simulated_config())
    try:
        assert gw.code("AgentInService", device="2001", ipaddress=gw.events_url) == 0
        lines = gw.run(gw.gateway.versions())
        assert lines[0] == "smartcti-gateway 0.1.0"
        assert lines[1].startswith("link 1 (link 1): PABX NGC simulator")
        assert lines[2] == f"  Protheus {gw.events_url}: WSDL read, namespace {gw.protheus.base_url}"
        results = gw.run(gw.gateway.self_test())
        assert [(name.split(" at ")[0], ok) for name, ok, _ in results] == [
            ("link 1: SOAP SystemStatus", True), ("link 1: PABX", True),
            (f"link 1: Protheus eventing {gw.events_url}", True)]
    finally:
        gw.close()
