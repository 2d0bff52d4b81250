"""The ANS protocol allocator: the layout, the day of Brasília, never a number twice — not across threads,
processes, a clock set back, a purge, or a kill -9 of a real process."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
from datetime import date, datetime, timezone
from pathlib import Path

import pytest

from smartcti_gateway.ans.layout import BRASILIA, DEFAULT_LAYOUT, Layout, LayoutError, zone
from smartcti_gateway.ans.store import DayExhausted, ProtocolStore, StoreFailed
from smartcti_gateway.configread import ConfigError
from smartcti_gateway.config import parse

ROOT = Path(__file__).resolve().parent.parent
SP = zone("America/Sao_Paulo")


def utc(*args) -> float:
    return datetime(*args, tzinfo=timezone.utc).timestamp()


class Clock:
    def __init__(self, t: float):
        self.t = t

    def __call__(self) -> float:
        return self.t


def store(tmp_path, clock=None, template=DEFAULT_LAYOUT, registro="123456", name="p.sqlite") -> ProtocolStore:
    return ProtocolStore(tmp_path / name, Layout(template, registro), SP, clock=clock or Clock(utc(2026, 12, 1, 15)))


# ------------------------------------------------------------------ layout
def test_the_default_layout_is_registry_day_and_sequence_in_20_digits():
    layout = Layout(DEFAULT_LAYOUT, "012345")
    assert layout.check() == []
    assert layout.render(date(2026, 12, 1), 7) == "01234520261201000007"
    assert len(layout.render(date(2026, 12, 1), 999_999)) == 20
    assert layout.capacity == 999_999


@pytest.mark.parametrize("template, message", [
    ("{registro_ans}{seq:06d}", "must hold {date:...} and {seq:0Nd}"),
    ("{registro_ans}{date:%Y%m%d}{seq}", "fixed width"),
    ("{registro_ans}-{date:%Y%m%d}-{seq:06d}", "digits only"),
    ("{registro_ans}{date:%Y%m%d%H}{seq:06d}", "Protheus keeps 20"),
    ("{operadora}{date:%Y%m%d}{seq:06d}", "uses {operadora}"),
    ("{registro_ans}{date:%Y%m%d}{seq:06d", "not a valid template"),
])
def test_a_layout_that_cannot_work_is_refused_saying_why(template, message):
    with pytest.raises(LayoutError, match=message.replace("{", r"\{").replace("(", r"\(")):
        Layout(template, "123456").check()


def test_a_shorter_layout_is_allowed_with_a_warning():
    warnings = Layout("{registro_ans}{date:%y%m%d}{seq:06d}", "123456").check()
    assert warnings and "18 digits" in warnings[0]


@pytest.mark.parametrize("registro, message", [
    ("12345", "6 digits"), ("1234567", "6 digits"), ("12345a", "6 digits"), ("", "is required"),
])
def test_a_bad_registro_ans_stops_the_start_with_a_clear_error(registro, message):
    raw = {"links": [{"link_id": 1}], "protocol": {"registro_ans": registro}}
    with pytest.raises(ConfigError, match=rf"protocol\.registro_ans: .*{message}"):
        parse(raw)


def test_a_registry_written_as_a_number_that_lost_its_zeros_is_refused():
    with pytest.raises(ConfigError, match="lost its leading zeros"):
        parse({"links": [{"link_id": 1}], "protocol": {"registro_ans": 12345}})
    assert parse({"links": [{"link_id": 1}], "protocol": {"registro_ans": 123456}}).protocol.registro_ans == "123456"


def test_the_contract_keys_are_read():
    cfg = parse({"links": [{"link_id": 1}], "protocol": {
        "registro_ans": "123456", "agi_listen": "0.0.0.0:4573",
        "layout": "{registro_ans}{date:%Y%m%d}{seq:06d}", "timezone": "America/Sao_Paulo"}})
    pc = cfg.protocol
    assert (pc.registro_ans, pc.agi_listen, pc.layout, pc.timezone, pc.mode) == (
        "123456", "0.0.0.0:4573", DEFAULT_LAYOUT, "America/Sao_Paulo", "gateway")
    assert parse({"links": [{"link_id": 1}]}).protocol is None      # no section: no numbers, as before


def test_an_unknown_time_zone_is_refused():
    with pytest.raises(ConfigError, match="protocol.timezone: 'America/Brasilia' is not a time zone"):
        parse({"links": [{"link_id": 1}], "protocol": {"registro_ans": "123456", "timezone": "America/Brasilia"}})


def test_brasilia_without_tzdata_is_utc_minus_3():
    assert BRASILIA.utcoffset(None).total_seconds() == -3 * 3600
    assert SP.utcoffset(datetime(2026, 1, 15)) == BRASILIA.utcoffset(None)   # no summer time since 2019


# ------------------------------------------------------------------ allocation
def test_numbers_follow_each_other_and_the_record_says_what_was_asked(tmp_path):
    s = store(tmp_path)
    first, new = s.issue("phone", call_id="1733065200.12", ani="4832810000", beneficiary="0001234500012345")
    second, _ = s.issue("chat", ani="4899990000")
    assert new and first.number == "12345620261201000001" and second.number == "12345620261201000002"
    assert (first.channel, first.ani, first.beneficiary, first.call_ids, first.status, first.source) == (
        "phone", "4832810000", "0001234500012345", ["1733065200.12"], "issued", "gateway")


def test_the_same_call_asking_twice_gets_the_same_number(tmp_path):
    clock = Clock(utc(2026, 12, 1, 15))
    s = store(tmp_path, clock)
    a, new_a = s.issue("phone", call_id="c1")
    clock.t += 600
    b, new_b = s.issue("phone", call_id="c1")
    assert new_a and not new_b and b.number == a.number
    # a PABX's call ids come round again after a restart: a day later the same id is another attendance
    clock.t += 86400
    c, new_c = s.issue("phone", call_id="c1")
    assert new_c and c.number != a.number


def test_the_day_of_the_number_is_brasilias_and_the_sequence_restarts_at_its_midnight(tmp_path):
    clock = Clock(utc(2026, 12, 2, 2, 59, 59))     # 23:59:59 of 1 December in Brasília
    s = store(tmp_path, clock)
    assert s.issue("phone")[0].number == "12345620261201000001"
    assert s.issue("phone")[0].number == "12345620261201000002"
    clock.t = utc(2026, 12, 2, 3, 0, 0)             # midnight in Brasília, 03:00 UTC
    assert s.issue("phone")[0].number == "12345620261202000001"
    assert s.today() == "2026-12-02" and s.count_day("2026-12-01") == 2


def test_a_clock_set_back_never_hands_a_number_out_again(tmp_path):
    clock = Clock(utc(2026, 12, 2, 12))
    s = store(tmp_path, clock)
    s.issue("phone")
    clock.t = utc(2026, 12, 1, 12)
    s.issue("phone")
    clock.t = utc(2026, 12, 2, 13)
    assert s.issue("phone")[0].number == "12345620261202000002"


def test_purged_records_never_free_their_numbers(tmp_path):
    clock = Clock(utc(2026, 12, 1, 12))
    s = store(tmp_path, clock)
    s.issue("phone")
    s.issue("phone")
    assert s.purge(utc(2026, 12, 1, 13)) == 2 and s.get("12345620261201000001") is None
    assert s.issue("phone")[0].number == "12345620261201000003"


def test_a_day_that_runs_out_says_so(tmp_path):
    s = store(tmp_path, template="{registro_ans}{date:%Y%m%d}{seq:01d}")
    numbers = [s.issue("phone")[0].number for _ in range(9)]
    assert numbers[-1] == "123456202612019"
    with pytest.raises(DayExhausted, match=r"all 9 protocol numbers of 2026-12-01 are taken"):
        s.issue("phone")


def test_a_database_that_cannot_be_opened_says_which_and_what_to_do(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(StoreFailed, match=r"cannot open the protocol database .*check protocol.database"):
        ProtocolStore(blocker / "p.sqlite", Layout(DEFAULT_LAYOUT, "123456"), SP)


def test_threads_and_two_stores_on_one_file_never_share_a_number(tmp_path):
    stores = [store(tmp_path), store(tmp_path)]       # two links, or two gateway processes, on one file
    got: list[str] = []
    lock = threading.Lock()

    def work(s: ProtocolStore) -> None:
        mine = [s.issue("phone")[0].number for _ in range(100)]
        with lock:
            got.extend(mine)

    threads = [threading.Thread(target=work, args=(stores[i % 2],)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 400 and len(set(got)) == 400
    assert sorted(int(n[-6:]) for n in got) == list(range(1, 401))


def test_a_kill_9_never_gives_a_heard_number_again(tmp_path):
    """A real process issues numbers and prints each once it is committed (the moment a caller would hear
    it); it is killed with -9 mid-stream; a new process goes on after the last one printed."""
    db = tmp_path / "protocols.sqlite"
    script = textwrap.dedent(f"""
        import sys
        from smartcti_gateway.ans.layout import Layout, zone
        from smartcti_gateway.ans.store import ProtocolStore
        s = ProtocolStore({str(db)!r}, Layout("{DEFAULT_LAYOUT}", "123456"), zone("America/Sao_Paulo"))
        for i in range(int(sys.argv[1])):
            print(s.issue("phone", call_id=f"{{sys.argv[2]}}-{{i}}")[0].number, flush=True)
    """)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", script, "1000000", "a"], stdout=subprocess.PIPE, text=True,
                            env=env)
    heard = []
    for line in proc.stdout:
        heard.append(line.strip())
        if len(heard) == 200:
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait(timeout=10)
    heard += [line.strip() for line in proc.stdout.read().splitlines() if line.strip()]
    assert proc.returncode == -signal.SIGKILL and len(heard) >= 200
    after = subprocess.run([sys.executable, "-c", script, "50", "b"], capture_output=True, text=True, env=env,
                           timeout=60, check=True).stdout.split()
    assert not set(after) & set(heard)
    assert int(after[0][-6:]) > max(int(n[-6:]) for n in heard)
    assert len(set(after)) == 50


def test_the_csv_export_is_for_audits(tmp_path):
    clock = Clock(utc(2026, 12, 1, 15))
    s = store(tmp_path, clock)
    s.issue("phone", call_id="c1", ani="4832810000", beneficiary="=cmd|' /C calc'!A0")
    clock.t = utc(2026, 12, 3, 15)
    s.issue("chat", ani="4899990000")
    lines = list(s.export_csv(utc(2026, 12, 1, 3), utc(2026, 12, 2, 3)))
    assert lines[0].startswith("number,created,channel,source,status,ani,dnis,beneficiary,")
    assert len(lines) == 2
    row = lines[1]
    assert row.startswith("12345620261201000001,2026-12-01T12:00:00-03:00,phone,gateway,issued,4832810000,")
    assert ",'=cmd|' /C calc'!A0," in row or ",\"'=cmd|' /C calc'!A0\"," in row   # no formula for Excel
    assert ",c1," in row
