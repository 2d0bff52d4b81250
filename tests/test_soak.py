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
    assert not broken, (broken, r["open_calls"][:5], r["anomalies"][:5], r["faults"])
    assert code == 0 and r["ok"]
    assert [w["kind"] for w in r["faults"]] == ["pabx_restart", "protheus_down", "gateway_kill_9", "pabx_stall"]
    assert all("end" in w for w in r["faults"])
    assert r["counts"]["offered"] > 50 and r["counts"]["transfers"] > 0 and r["counts"]["outbound"] > 0
    assert r["rss_mib"]["samples"] >= 10
