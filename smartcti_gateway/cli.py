"""Command line: ``smartcti-gateway run | simulate-pabx | check-config``."""
from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import signal
import sys

from . import __version__
from .capture import add_capture_parser
from .capture.learn import add_learn_parser
from .capture.replay import add_replay_parser
from .config import DEFAULT_CONFIG, Config, ConfigError, load, split_listen
from .migration import add_import_properties_parser
from .probe import add_probe_parser
from .supervisor.passwords import add_hash_password_parser

log = logging.getLogger("smartcti_gateway")


def _setup_logging(level: str) -> None:
    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def _stop_on_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):  # Windows: Ctrl+C raises KeyboardInterrupt instead
            pass


async def _wait_for_signal() -> None:
    stop = asyncio.Event()
    _stop_on_signals(stop)
    await stop.wait()


# the young generation collected after this many new container objects instead of CPython's 700
GC_YOUNG_THRESHOLD = 10_000


def _tune_gc() -> None:
    """Once started: what is loaded by then (modules, the restored devices) lives as long as the process,
    so it is frozen out of the collector's scans; and the young generation is collected ten times less
    often. Nearly everything a command or an event allocates is freed by reference counting; the
    collector's passes over a gateway-sized heap cost about 10 µs per command (scripts/bench), the cycles
    it finds are a few kilobytes."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, older, oldest)


async def _run(cfg) -> None:
    from .console import Console
    from .gateway import Gateway
    gw = Gateway(cfg)
    stop = asyncio.Event()
    _stop_on_signals(stop)
    console = Console(gw, stop.set)
    try:
        await gw.start()
        _tune_gc()
        log.info("smartcti-gateway %s ready (%d link(s)); stop with %s", __version__, len(gw.links),
                 "q, Ctrl+C or SIGTERM" if console.start() else "SIGTERM or Ctrl+C")
        await stop.wait()
        log.info("stopping")
    finally:
        console.close()
        await gw.stop()
        log.info("stopped")


async def _simulate(host: str, port: int) -> None:
    from .sim.digitro import start_simulator
    sim, runner = await start_simulator(host, port)
    log.info("NGC simulator listening on http://%s:%d/RPC2 (control API: /sim/inbound, /sim/answer, "
             "/sim/hangup, /sim/outcome, /sim/state)", host, sim.port)
    try:
        await _wait_for_signal()
    finally:
        await runner.cleanup()


async def _simulate_protheus(host: str, port: int, closed: bool) -> None:
    from .sim.protheus import start_protheus_simulator
    sim, runner = await start_protheus_simulator(host, port)
    if closed:
        sim.default_open = False
    log.info("Protheus SmartCTIWSEventing simulator at %s (WSDL: %s); events as JSON at %sevents; "
             "give the gateway this URL as MV_TKCTIEV", sim.url, sim.wsdl_url, sim.base_url)
    try:
        await _wait_for_signal()
    finally:
        await runner.cleanup()


def load_config(path: str) -> Config:
    """The config as ``run`` and ``check-config`` take it: with the embedded simulator's options checked
    too (they belong to the simulator, which production modules never load)."""
    cfg = load(path)
    if cfg.simulator.enabled:
        from .sim.digitro import options_from_config
        options_from_config(cfg.simulator.options, cfg.simulator.where)
    return cfg


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="smartcti-gateway",
                                     description="SmartCTI middleware between TOTVS Protheus Call Center and a PABX.")
    parser.add_argument("--version", action="version", version=f"smartcti-gateway {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="start the gateway")
    run.add_argument("--config", default=str(DEFAULT_CONFIG), help="YAML config (default: %(default)s)")
    check = sub.add_parser("check-config", help="validate a config file without starting")
    check.add_argument("file")
    sim = sub.add_parser("simulate-pabx", help="run a simulated Dígitro NGC (XML-RPC at /RPC2)")
    sim.add_argument("--listen", default="127.0.0.1:2551", help="HOST:PORT (default: %(default)s)")
    prot = sub.add_parser("simulate-protheus", help="run a simulated Protheus SmartCTIWSEventing (the MV_TKCTIEV side)")
    prot.add_argument("--listen", default="127.0.0.1:8081", help="HOST:PORT (default: %(default)s)")
    prot.add_argument("--no-sessions", action="store_true",
                      help="answer 99 (no Protheus session) until sessions are opened with POST /sim/sessions")
    add_import_properties_parser(sub)
    add_capture_parser(sub)
    add_learn_parser(sub)
    add_replay_parser(sub)
    add_probe_parser(sub)
    add_hash_password_parser(sub)
    args = parser.parse_args(argv)
    if args.command in ("import-properties", "capture", "learn", "replay", "probe-pabx", "hash-password"):
        return args.func(args)

    if args.command in ("simulate-pabx", "simulate-protheus"):
        _setup_logging("info")
        try:
            host, port = split_listen(args.listen)
        except ValueError as e:
            parser.error(f"--listen: {e}")
        try:
            if args.command == "simulate-pabx":
                asyncio.run(_simulate(host, port))
            else:
                asyncio.run(_simulate_protheus(host, port, args.no_sessions))
        except KeyboardInterrupt:
            pass
        return 0

    path = args.file if args.command == "check-config" else args.config
    try:
        cfg = load_config(path)
    except ConfigError as e:
        print(f"config error: {e}", file=sys.stderr)
        return 2
    if args.command == "check-config":
        for warning in (cfg.protocol.warnings if cfg.protocol else []):
            print(f"warning: {warning}")
        print(f"{path}: OK ({len(cfg.links)} link(s))")
        return 0
    _setup_logging(cfg.log_level)
    from .ans.store import ProtocolError
    from .gateway import ListenError
    from .registry import RegistryInUse
    try:
        asyncio.run(_run(cfg))
    except KeyboardInterrupt:
        pass
    except ListenError as e:
        log.error("cannot start: %s. Is another program using that port? Change %s in %s.", e, e.key, path)
        return 1
    except RegistryInUse as e:
        log.error("cannot start: %s (state_file in %s).", e, path)
        return 1
    except ProtocolError as e:
        log.error("cannot start: %s (in %s).", e, path)
        return 1
    except OSError as e:
        log.error("cannot start: %s.", e)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
