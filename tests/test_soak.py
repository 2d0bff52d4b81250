"""scripts/soak --quick: 50 agents, 30 s of calls, the four faults on a compressed schedule (tests/soak.py)."""
from __future__ import annotations

import json

from tests import soak

EXPECTED = {
    "calls offered (inbound + outbound)",
    "events Protheus received",
    "faults run",
    "events out of order (unexplained)",
    "ANSWERED/HELD without RINGING after a PABX outage (resync)",
    "calls left open (unexplained)",
    "calls left open, CONNECTIONCLEARED dropped stale (ttl)",
    "calls left open across the gateway's kill -9",
    "events dropped outside a fault window",
    "agents disagreeing with the PABX after the faults",
    "Protheus' view of agents wrong after a PABX or gateway fault",
    "gateway RSS slope, last process's last 2/3 (MiB/min)",
    "gateway CPU per call (ms)",
    "gateway restart after kill -9 (s)",
}


def test_quick_soak_holds_every_invariant(tmp_path):
    out = tmp_path / "soak.json"
    code = soak.main(["--quick", "--output", str(out)])
    r = json.loads(out.read_text())
    figures = {f["figure"]: f for f in r["figures"]}
    assert EXPECTED <= set(figures), sorted(EXPECTED - set(figures))
    broken = [f for f in r["figures"] if not f["met"]]
    assert not broken, (broken, r["open_calls"][:5], r["anomalies"][:5], r["drops_outside"][:5], r["faults"])
    assert code == 0 and r["ok"]
    assert [w["kind"] for w in r["faults"]] == ["pabx_restart", "protheus_down", "gateway_kill_9", "pabx_stall"]
    assert all("end" in w for w in r["faults"])
    assert r["counts"]["offered"] > 50 and r["counts"]["transfers"] > 0 and r["counts"]["outbound"] > 0
    assert r["rss_mib"]["samples"] >= 10


def test_a_moment_in_overlapping_fault_windows_is_blamed_on_the_latest_fault(tmp_path):
    """Seen on a loaded machine: a PABX restart that ended late stretched its window into Protheus'
    outage, and the events that outage dropped were counted as dropped outside any fault window."""
    pf = soak.make_profile(soak.argparse.Namespace(quick=True, agents=2, rate=0.0, minutes=0.0))
    s = soak.Soak(pf, tmp_path, tmp_path)
    s.windows = [{"kind": "pabx_restart", "start": 4.5, "end": 7.5}, {"kind": "protheus_down", "start": 9.0, "end": 12.0}]
    assert [w["kind"] for w in s.windows_at(11.7)] == ["pabx_restart", "protheus_down"]
    assert s.window_of(11.7)["kind"] == "protheus_down"
    assert s.window_of(5.0)["kind"] == "pabx_restart" and s.window_of(30.0) is None
