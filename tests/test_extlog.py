"""Per-extension daily logs: names, contents, masking, and the monthly overwrite (injected clock)."""
import time

from smartcti_gateway import extlog
from smartcti_gateway.extlog import ExtensionLog, file_device, masked_struct

from .support import RunningGateway, simulated_config, wait_for


class Clock:
    def __init__(self, when: str):
        self.set(when)

    def set(self, when: str):
        self.t = time.mktime(time.strptime(when, "%Y-%m-%d %H:%M:%S"))

    def __call__(self):
        return self.t


def test_file_names_and_lines(tmp_path):
    clock = Clock("2026-11-05 10:00:00")
    xl = ExtensionLog(tmp_path, enabled=True, clock=clock)
    xl.write("2001", 1, "CMD Logon(...) -> 0")
    clock.set("2026-11-05 10:00:01")
    xl.write("2001", 1, "CMD Ready(...) -> 0")
    xl.write("2001", 2, "CMD Ready(...) -> 0")
    clock.set("2026-11-06 00:00:00")
    xl.write("2001", 1, "next day")
    xl.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["2001-1-05.log", "2001-1-06.log", "2001-2-05.log"]
    assert (tmp_path / "2001-1-05.log").read_text().splitlines() == [
        "2026-11-05 10:00:00.000 CMD Logon(...) -> 0", "2026-11-05 10:00:01.000 CMD Ready(...) -> 0"]


def test_a_file_from_an_earlier_month_is_overwritten(tmp_path):
    clock = Clock("2026-10-05 09:00:00")
    xl = ExtensionLog(tmp_path, enabled=True, clock=clock)
    xl.write("2001", 1, "october")
    xl.close()
    clock.set("2026-11-05 09:00:00")     # the same day of the next month
    xl.write("2001", 1, "november 1")
    xl.close()
    xl.write("2001", 1, "november 2")     # same month: appended
    xl.close()
    assert [l[24:] for l in (tmp_path / "2001-1-05.log").read_text().splitlines()] == ["november 1", "november 2"]


def test_disabled_writes_nothing_and_switches_at_run_time(tmp_path):
    xl = ExtensionLog(tmp_path / "logs", enabled=False)
    xl.write("2001", 1, "x")
    assert not (tmp_path / "logs").exists()
    xl.set_enabled(True)
    xl.write("2001", 1, "y")
    xl.set_enabled(False)
    xl.write("2001", 1, "z")
    (f,) = (tmp_path / "logs").iterdir()
    assert [l[24:] for l in f.read_text().splitlines()] == ["y"]


def test_hostile_device_names_stay_in_the_directory(tmp_path, monkeypatch):
    assert file_device("../../etc/passwd") == "_.._etc_passwd"
    assert file_device("") == "_" and file_device(" 2001 ") == "2001"
    monkeypatch.setattr(extlog, "MAX_FILES_PER_DAY", 3)
    xl = ExtensionLog(tmp_path, enabled=True, clock=Clock("2026-11-05 10:00:00"))
    for i in range(6):
        xl.write(f"x{i}", 1, "probe")
    xl.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["_other-1-05.log", "x0-1-05.log", "x1-1-05.log", "x2-1-05.log"]
    assert len((tmp_path / "_other-1-05.log").read_text().splitlines()) == 3


def test_masked_struct():
    assert masked_struct({"DISPOSITIVO": "2001", "SENHA_DISPOSITIVO": "s3cret", "password": "p"}) == \
        "{DISPOSITIVO: '2001', SENHA_DISPOSITIVO: ***, password: ***}"


def test_gateway_writes_commands_pabx_traffic_and_events_without_passwords(tmp_path, caplog):
    caplog.set_level("DEBUG")
    cfg = simulated_config(agents={"1234": "s3cret"})
    cfg["logging"] = {"dir": str(tmp_path), "per_extension": True}
    gw = RunningGateway(cfg)
    try:
        assert gw.code("AgentInService", device="2001", ipaddress=gw.events_url) == 0
        assert gw.code("LogonPass", device="2001", agentID="1234", groupID="701", agentPass="s3cret") == 0
        assert gw.code("ReadyPass", device="2001", agentID="", groupID="", agentPass="s3cret") == 0
        assert gw.code("MakeCallPass", device="2001", telephoneNumber="4832810000", agentID="1234",
                       agentPass="s3cret", route="0") == 0
        gw.wait_events(4)
        day = time.strftime("%d")
        path = tmp_path / f"2001-1-{day}.log"
        text = wait_for(lambda: (lambda t: t if "EVENT READY" in t else None)(path.read_text()), what="log lines")
    finally:
        gw.close()
    assert "s3cret" not in text
    assert "LogonPass" in caplog.text and "s3cret" not in caplog.text   # nor in the gateway-wide log
    lines = [l[24:] for l in text.splitlines()]
    assert any(l.startswith("CMD LogonPass(device='2001', agentID='1234', groupID='701', agentPass=***) -> 0")
               for l in lines)
    assert any(l.startswith("PABX> cti.login_dac {DISPOSITIVO: '2001', AGENTE: '1234', SENHA_DISPOSITIVO: ***")
               for l in lines)
    assert any(l.startswith("PABX< cti.login_dac {RESULTADO: 'OK'") for l in lines)
    assert any(l.startswith("PABX event {EVENTO: 'AGENTE_LOGADO'") for l in lines)
    assert any(l.startswith("EVENT LOGGEDON(CAGENTID='1234', CGROUPID='701') to http://") and l.endswith("-> 0")
               for l in lines)
    assert any(l.startswith("CMD MakeCallPass(") and "agentPass=***" in l for l in lines)


def test_only_devices_in_service_get_a_file_and_long_strings_are_clipped(tmp_path, caplog):
    """Seen: a refused device string (CON, ../../tmp/x) created a file; a 10,000-character device was
    logged in full, twice per line."""
    caplog.set_level("INFO")
    cfg = simulated_config()
    cfg["logging"] = {"dir": str(tmp_path / "logs"), "per_extension": True}
    gw = RunningGateway(cfg)
    huge = "9" * 10_000
    try:
        for device in ("CON", "../../tmp/x", huge):
            assert gw.code("AgentInService", device=device, ipaddress=gw.events_url) == 18   # the PABX refuses
            assert gw.code("Logon", device=device, agentID="1234", groupID="701") in (1, 18)
        assert gw.code("AgentInService", device="2001", ipaddress=gw.events_url) == 0
        assert gw.code("Logon", device="2001", agentID="1234", groupID="701") == 0
        gw.wait_events(2)
    finally:
        gw.close()
    assert [p.name for p in (tmp_path / "logs").iterdir()] == [f"2001-1-{time.strftime('%d')}.log"]
    assert not (tmp_path / "tmp").exists()
    longest = max(len(r.getMessage()) for r in caplog.records)
    assert longest < 1500, longest
    line = next(r.getMessage() for r in caplog.records if "AgentInService" in r.getMessage() and "999" in r.getMessage())
    assert "…(10000 chars)" in line and len(line) < 700


def test_clip():
    assert extlog.clip("2001") == "2001" and extlog.clip(5) == 5
    assert extlog.clip("x" * 200, 10) == "xxxxxxxxxx…(200 chars)"
