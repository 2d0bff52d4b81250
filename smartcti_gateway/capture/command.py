"""``smartcti-gateway capture``: the command line of the recording proxy (parser and handler)."""
from __future__ import annotations

import argparse
import asyncio
import logging
import re
import signal
import sys
from urllib.parse import urlsplit

from ..configread import split_listen
from .limits import DEFAULT_MAX_BYTES, MIN_MAX_BYTES

log = logging.getLogger("smartcti_gateway.capture")

_SIZE = re.compile(r"^\s*([0-9]+)\s*([kmg]i?b?|b)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 10**3, "m": 10**6, "g": 10**9, "ki": 2**10, "mi": 2**20, "gi": 2**30}


def _listen(value: str) -> tuple[str, int]:
    try:
        return split_listen(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not HOST:PORT (e.g. 0.0.0.0:2551 or [::1]:2551)") from None


def _address(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"{value!r} is not HOST:PORT (the peer's address, e.g. 10.0.0.5:5038)")
    return host, int(port)


def _url(value: str) -> str:
    try:
        parts = urlsplit(value.strip())
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise argparse.ArgumentTypeError(f"{value!r} is not an http:// or https:// URL with a host "
                                         f"(e.g. http://10.0.0.5:2551/RPC2)")
    return value.strip()


def _bytes(value: str) -> int:
    m = _SIZE.match(value)
    if m is None:
        raise argparse.ArgumentTypeError(f"{value!r} is not a size (e.g. 200000000, 200M, 1G)")
    unit = (m.group(2) or "").lower().rstrip("b")
    return int(m.group(1)) * _UNITS[unit]


def add_capture_parser(subparsers) -> argparse.ArgumentParser:
    """Add ``capture`` to an argparse subparsers object (``args.func(args)`` runs it)."""
    p = subparsers.add_parser(
        "capture",
        help="record the traffic of an old DigitroCTILink install (a transparent recording proxy)",
        description="A recording proxy between DigitroCTILink and its peers: the NGC (XML-RPC side), "
                    "Protheus (SOAP side) and any fixed-address TCP peer (raw side). Everything is forwarded "
                    "unchanged, except the callback URLs the peers exchange, which are pointed at the proxy "
                    "so the calls back are recorded too. The file is JSON lines, passwords masked.",
        epilog="Example: capture --xmlrpc-listen 0.0.0.0:2552 --xmlrpc-upstream http://ngc:2551/RPC2 "
               "--soap-listen 0.0.0.0:8090 --soap-upstream http://ctilink:8080/axis/services/SmartCTIWSCommand "
               "--out capture.jsonl")
    p.add_argument("--xmlrpc-listen", metavar="HOST:PORT", type=_listen,
                   help="where DigitroCTILink's URL.Xml-RPC.Server will point")
    p.add_argument("--xmlrpc-upstream", metavar="URL", type=_url, help="the NGC's XML-RPC URL")
    p.add_argument("--soap-listen", metavar="HOST:PORT", type=_listen, help="where Protheus' K4_CMD_URL will point")
    p.add_argument("--soap-upstream", metavar="URL", type=_url,
                   help="DigitroCTILink's SmartCTIWSCommand URL (its Tomcat)")
    p.add_argument("--raw-listen", metavar="HOST:PORT", type=_listen, action="append", default=[],
                   help="a plain TCP listener (repeatable; paired in order with --raw-upstream)")
    p.add_argument("--raw-upstream", metavar="HOST:PORT", type=_address, action="append", default=[],
                   help="where the matching --raw-listen forwards")
    p.add_argument("--out", metavar="FILE", required=True, help="the capture file (JSON lines)")
    p.add_argument("--force", action="store_true", help="overwrite FILE when it holds something")
    p.add_argument("--max-bytes", metavar="N", type=_bytes, default=DEFAULT_MAX_BYTES,
                   help="bound of the file size; recording stops there, forwarding goes on "
                        "(default: %(default)s = 200 MB; suffixes k, M, G)")
    p.add_argument("--callback-host", metavar="HOST",
                   help="the address the NGC and DigitroCTILink must use to reach this proxy (default: the "
                        "listen host, or this machine's address towards the upstream when listening on 0.0.0.0)")
    p.set_defaults(func=run_capture, capture_parser=p)
    return p


def _options(args: argparse.Namespace, parser: argparse.ArgumentParser):
    from .proxy import CaptureOptions
    for side, example in (("xmlrpc", "the NGC's URL, e.g. http://10.0.0.5:2551/RPC2"),
                          ("soap", "DigitroCTILink's URL, e.g. http://10.0.0.6:8080/axis/services/SmartCTIWSCommand")):
        listen, upstream = getattr(args, f"{side}_listen"), getattr(args, f"{side}_upstream")
        if listen and not upstream:
            parser.error(f"--{side}-listen needs --{side}-upstream ({example})")
        if upstream and not listen:
            parser.error(f"--{side}-upstream needs --{side}-listen (the HOST:PORT the proxy listens on)")
    if len(args.raw_listen) != len(args.raw_upstream):
        parser.error(f"--raw-listen and --raw-upstream go in pairs: {len(args.raw_listen)} --raw-listen, "
                     f"{len(args.raw_upstream)} --raw-upstream")
    if not (args.xmlrpc_listen or args.soap_listen or args.raw_listen):
        parser.error("nothing to capture: give --xmlrpc-listen/--xmlrpc-upstream, --soap-listen/--soap-upstream "
                     "or --raw-listen/--raw-upstream (at least one side)")
    if args.max_bytes < MIN_MAX_BYTES:
        parser.error(f"--max-bytes must be at least {MIN_MAX_BYTES}")
    listens = [a for a in (args.xmlrpc_listen, args.soap_listen, *args.raw_listen) if a]
    ports = [port for _, port in listens if port]
    if len(set(ports)) != len(ports):
        parser.error("two listeners on the same port: give each side its own port")
    return CaptureOptions(out=args.out, xmlrpc_listen=args.xmlrpc_listen, xmlrpc_upstream=args.xmlrpc_upstream,
                          soap_listen=args.soap_listen, soap_upstream=args.soap_upstream,
                          raw=list(zip(args.raw_listen, args.raw_upstream)), max_bytes=args.max_bytes,
                          callback_host=args.callback_host, force=args.force)


async def _serve(options) -> int:
    from .proxy import CaptureProxy, ListenError
    try:
        proxy = CaptureProxy(options)
    except FileExistsError:
        log.error("capture: %s exists and is not empty; add --force to overwrite it, or choose another --out",
                  options.out)
        return 2
    except OSError as e:
        log.error("capture: cannot write %s: %s. Check the folder exists and is writable.", options.out,
                  e.strerror or e)
        return 2
    try:
        await proxy.start()
    except ListenError as e:
        log.error("capture: %s: is another program using that port? Choose another %s.", e.args[1], e.flag)
        return 1
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError, ValueError):  # Windows: Ctrl+C cancels the task instead
            pass
    for line in proxy.start_messages():
        log.info("%s", line)
    try:
        await stop.wait()
    except asyncio.CancelledError:
        pass
    finally:
        log.info("capture: stopping (in-flight exchanges get 2 s to end)")
        summary = await proxy.stop()
        for line in proxy.summary_lines(summary):
            print(line, flush=True)
    return 0 if not summary["error"] else 1


def run_capture(args: argparse.Namespace) -> int:
    """The ``capture`` command: 0 stopped cleanly, 1 could not listen or write, 2 bad arguments."""
    options = _options(args, args.capture_parser)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return asyncio.run(_serve(options))
    except KeyboardInterrupt:
        return 0
    except Exception as e:  # noqa: BLE001 - an operator's tool: a message, never a traceback
        print(f"capture: unexpected error: {type(e).__name__}: {e}. Please report it.", file=sys.stderr)
        return 1
