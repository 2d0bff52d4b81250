"""The fault scenarios of docs/reliability.md, under a steady load, with figures.

``scripts/faults`` runs them (``python -m tests.faults``); the suite has a short
test per scenario (tests/test_resilience.py, tests/test_e2e_events.py,
tests/test_fuzz.py). Scenarios:

1. the PABX restarted N times while commands flow: commands during the outage
   fail fast, the resync time after each return, calls left open afterwards;
2. Protheus down for D seconds while events flow: events inside their TTL all
   arrive late and in order, older ones are dropped and counted;
3. the gateway killed with -9 and restarted: the devices in service are all
   served again;
4. fuzzing and XML bombs: scripts/fuzz (its figures are read from
   bench/fuzz-results.json, run with a smaller N here unless --fuzz-n 0).

Prints a markdown table, writes bench/faults-results.json, exits 1 when a
promise is broken.
"""
from __future__ import annotations

import argparse
import json
import platform
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path


from smartcti_gateway.sim.digitro import options_from_mapping, start_simulator
from smartcti_gateway.sim.protheus.eventing import start_protheus_simulator

from .support import Peers, RunningGateway, wait_for
from .test_resilience import gateway_for, gateway_process_config, soap_code, start_gateway_process

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "faults-results.json"


class Load:
    """A steady stream of commands from another thread: records (time, op, value, latency)."""

    def __init__(self, gw: RunningGateway, rate: float = 50.0):
        self.gw, self.period, self.samples, self._stop = gw, 1.0 / rate, [], threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        ops = [("queryAgentState", {"cDevice": "2001"}), ("SystemStatus", {}),
               ("GetInfoChamAtiv", {"cDevice": "2001"})]
        i = 0
        while not self._stop.is_set():
            op, args = ops[i % len(ops)]
            t0 = time.monotonic()
            try:
                value = self.gw.call(op, **args)
            except Exception as e:  # noqa: BLE001 - counted as a failure of the gateway
                value = f"error: {e}"
            self.samples.append((t0, op, value, time.monotonic() - t0))
            i += 1
            self._stop.wait(max(0.0, self.period - (time.monotonic() - t0)))

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self.thread.join(10)


def pabx_restarts(n: int, down: float) -> dict:
    peers = Peers()
    gw = RunningGateway(gateway_for(peers))
    link = gw.link()
    fail_fast, resync_times, stuck = [], [], 0
    try:
        for d in ("2001", "2002", "2003"):
            assert gw.code("AgentInService", device=d, ipaddress=peers.events_url) == 0
        with Load(gw) as load:
            for _ in range(n):
                for d in ("2001", "2002"):   # operators log on again after each PABX restart
                    assert gw.code("Logon", device=d, agentID="1" + d, groupID="701") == 0
                    assert gw.code("Ready", device=d, agentID="", groupID="") == 0
                for _ in range(2):   # calls in progress when the PABX dies
                    peers.sim_call(lambda s: s.inbound("4832810000", "7001", group="701"))
                wait_for(lambda: len(gw.in_loop(lambda: link.switch.calls)) >= 2, what="calls up")
                peers.run(peers.sim_runner.cleanup())
                wait_for(lambda: not gw.in_loop(lambda: link.health.up), timeout=10, what="down detected")
                t_down = time.monotonic()
                time.sleep(down)    # the outage itself: the load keeps running meanwhile
                resyncs = gw.in_loop(lambda: link.resyncs)
                peers.sim, peers.sim_runner = peers.run(start_simulator(
                    "127.0.0.1", peers.sim_port, options_from_mapping({})))
                wait_for(lambda: gw.in_loop(lambda: link.resyncs) > resyncs, timeout=30, what="resync")
                resync_times.append(gw.in_loop(lambda: link.last_resync_seconds))
                during = [s for s in load.samples if t_down <= s[0] <= t_down + down]
                fail_fast += [s[3] for s in during]
        # after the last restart: every call the gateway still knows must exist in the PABX
        pabx_calls = {c["call_id"] for c in peers.sim_call(lambda s: s.state())["calls"]}
        stuck = len([c for c in gw.in_loop(lambda: list(link.switch.calls)) if c not in pabx_calls])
        errors = [s for s in load.samples if str(s[2]).startswith("error")]
    finally:
        gw.close()
        peers.close()
    return {"restarts": n, "outage_s": down, "commands_during_outages": len(fail_fast),
            "command_p99_ms_during_outage": round(1000 * quantile(fail_fast, 0.99), 1) if fail_fast else None,
            "resync_s_max": round(max(resync_times), 3), "stuck_calls": stuck, "gateway_errors": len(errors),
            "ok": stuck == 0 and not errors and (not fail_fast or quantile(fail_fast, 0.99) < 0.5)}


def protheus_down(down: float) -> dict:
    """Agent state toggles every 0.1 s while Protheus is down; ttl = 3/4 of the outage."""
    peers = Peers()
    ttl = 0.75 * down
    cfg = gateway_for(peers)
    cfg["links"][0]["events"] = {"ttl": ttl, "retry_initial": 0.1, "retry_max": 1.0, "queue_size": 100000}
    gw = RunningGateway(cfg)
    port = peers.protheus.port
    try:
        url = peers.events_url
        assert gw.code("AgentInService", device="2001", ipaddress=url) == 0
        assert gw.code("Logon", device="2001", agentID="1234", groupID="701") == 0
        wait_for(lambda: len(peers.events()) >= 2, what="first events")
        peers.run(peers.protheus_runner.cleanup())                      # Protheus goes away
        sent = []
        t_end = time.monotonic() + down
        while time.monotonic() < t_end:
            op = "NotReady" if len(sent) % 2 == 0 else "Ready"
            assert gw.code(op, device="2001", agentID="", groupID="") == 0
            sent.append(op.upper())
            time.sleep(0.1)
        peers.protheus, peers.protheus_runner = peers.run(start_protheus_simulator("127.0.0.1", port, quiet=True))
        delivery = gw.link().delivery

        def settled():
            c = gw.in_loop(lambda: dict(delivery.counts))
            got = [e["method"] for e in peers.events() if e["method"] in ("READY", "NOTREADY")]
            return (c, got) if len(got) + c.get("stale", 0) >= len(sent) else None
        counts, got = wait_for(settled, timeout=ttl + 30, what="every event delivered or dropped")
        in_order = got == sent[len(sent) - len(got):]
    finally:
        gw.close()
        peers.close()
    return {"outage_s": down, "ttl_s": ttl, "events_during_outage": len(sent), "delivered_late": len(got),
            "dropped_stale": counts.get("stale", 0), "in_order": in_order,
            "ok": in_order and len(got) + counts.get("stale", 0) == len(sent) and len(got) > 0}


def kill_9(devices: int, tmp: Path) -> dict:
    peers = Peers()
    path, port = gateway_process_config(peers, tmp)
    names = [str(2001 + i) for i in range(min(devices, 10))] + [str(3001 + i) for i in range(min(max(devices - 10, 0), 5))]
    proc = start_gateway_process(path, port)
    try:
        for d in names:
            assert soap_code(port, "AgentInService", device=d, ipaddress=peers.events_url) == 0
            assert soap_code(port, "Logon", device=d, agentID="9" + d, groupID="702") == 0
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        before = peers.events()
        since = before[-1]["seq"] if before else 0
        t0 = time.monotonic()
        proc = start_gateway_process(path, port)
        restart_s = time.monotonic() - t0
        for d in names:   # an agent change made on the phone: does it still reach Protheus?
            peers.sim_call(lambda s, d=d: s.handle(s.dialect.methods["agent_ready"], ({"DISPOSITIVO": d},)))

        def served():
            got = {e["params"]["CDEVICE"] for e in peers.events(since) if e["method"] == "READY"}
            return got if got >= set(names) else None
        try:
            served_devices = wait_for(served, timeout=20, what="every device served")
        except AssertionError:
            served_devices = {e["params"]["CDEVICE"] for e in peers.events(since) if e["method"] == "READY"}
    finally:
        proc.kill()
        proc.wait(10)
        peers.close()
    return {"devices_in_service": len(names), "served_after_restart": len(served_devices & set(names)),
            "restart_to_ready_s": round(restart_s, 2), "ok": set(names) <= served_devices}


def fuzz(n: int) -> dict:
    results = ROOT / "bench" / "fuzz-results.json"
    if n:
        subprocess.run([sys.executable, "-m", "tests.fuzzing", "--n", str(n)], cwd=ROOT, check=False)
    if not results.exists():
        return {"ok": False, "note": "no bench/fuzz-results.json: run scripts/fuzz"}
    data = json.loads(results.read_text())
    inputs: dict[str, int] = {}
    for e in data["endpoints"]:
        inputs[e["endpoint"]] = inputs.get(e["endpoint"], 0) + e["inputs"]
    crashes = sum(e["crashes"] + e["hangs"] for e in data["endpoints"])
    bombs = [b for where in data["bombs"].values() for mode in ("in_process", "http")
             for b in where.get(mode, {}).values()]
    refused = [b for b in bombs if b["outcome"] in ("fault", "413")]
    worst = max((b["max_ms"] for b in bombs), default=0.0)
    return {"inputs": inputs, "crashes_and_hangs": crashes, "bombs": len(bombs), "bombs_refused": len(refused),
            "bomb_refusal_max_ms": worst, "failures": data.get("failures", []),
            "ok": crashes == 0 and len(refused) == len(bombs) and worst < 10 and not data.get("failures")}


def quantile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="scripts/faults", description=__doc__.split("\n\n")[0])
    ap.add_argument("--restarts", type=int, default=3, help="PABX restarts (default %(default)s)")
    ap.add_argument("--pabx-down", type=float, default=3.0, help="seconds each PABX outage lasts")
    ap.add_argument("--protheus-down", type=float, default=60.0, help="seconds Protheus is down (default 60)")
    ap.add_argument("--devices", type=int, default=15, help="devices in service for the kill -9 scenario")
    ap.add_argument("--fuzz-n", type=int, default=100_000,
                    help="inputs per endpoint for the fuzz run (0: read the last bench/fuzz-results.json)")
    ap.add_argument("--quick", action="store_true", help="seconds-long version (as the suite would run it)")
    a = ap.parse_args(argv)
    if a.quick:
        a.restarts, a.pabx_down, a.protheus_down, a.devices, a.fuzz_n = 1, 1.0, 4.0, 5, 500
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        out = {
            "machine": f"{platform.machine()} {platform.processor() or ''} Python {platform.python_version()}".strip(),
            "date": time.strftime("%Y-%m-%d %H:%M"),
            "pabx_restarts": pabx_restarts(a.restarts, a.pabx_down),
            "protheus_down": protheus_down(a.protheus_down),
            "gateway_kill_9": kill_9(a.devices, Path(tmp)),
            "fuzz": fuzz(a.fuzz_n),
        }
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=2))
    r, p_, k, f = out["pabx_restarts"], out["protheus_down"], out["gateway_kill_9"], out["fuzz"]
    rows = [
        ("PABX restarted", f"{r['restarts']}× ({r['outage_s']:g} s each)",
         f"commands during outages: {r['commands_during_outages']}, p99 {r['command_p99_ms_during_outage']} ms "
         f"(fail fast); resync ≤ {r['resync_s_max']} s; stuck calls: {r['stuck_calls']}", r["ok"]),
        ("Protheus down", f"{p_['outage_s']:g} s, ttl {p_['ttl_s']:g} s",
         f"{p_['events_during_outage']} events: {p_['delivered_late']} delivered late"
         f"{' in order' if p_['in_order'] else ' OUT OF ORDER'}, {p_['dropped_stale']} stale dropped and counted",
         p_["ok"]),
        ("gateway kill -9", f"{k['devices_in_service']} devices in service",
         f"served after restart: {k['served_after_restart']}/{k['devices_in_service']}; "
         f"restart to ready {k['restart_to_ready_s']} s", k["ok"]),
        ("fuzz and XML bombs", "scripts/fuzz",
         f.get("note") or (f"inputs per endpoint {f['inputs']}, crashes and hangs: {f['crashes_and_hangs']}; "
                           f"bombs refused {f['bombs_refused']}/{f['bombs']}, slowest {f['bomb_refusal_max_ms']} ms"),
         f.get("ok")),
    ]
    print(f"\nFault scenarios on {out['machine']}, {out['date']}\n")
    print("| scenario | how | figures | promise kept |\n|---|---|---|---|")
    for name, how, figures, ok in rows:
        print(f"| {name} | {how} | {figures} | {'yes' if ok else 'NO'} |")
    print(f"\nwritten to {RESULTS.relative_to(ROOT)}")
    return 0 if all(row[3] for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
