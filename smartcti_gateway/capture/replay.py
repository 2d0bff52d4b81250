"""``smartcti-gateway replay CAPTURE --dialect dialect.yaml``: does the gateway do what DigitroCTILink did?

A differential test on this machine, nothing of the site touched. The gateway runs in this process with
the learned dialect against a stub NGC fed from the capture: each XML-RPC call it makes is answered with
what the real NGC answered DigitroCTILink for the same method, in order, and the NGC's events of the
capture are given to it again (posted to the callback it registered, or answered to its polls). Protheus'
commands are sent to it in the captured order, each eventing URL pointing at a stub Protheus.

Step by step (a SOAP command, or an NGC event) the report compares the SOAP answer, the XML-RPC calls the
gateway made and the SOAP events it pushed with DigitroCTILink's. Values that must differ are normalised
and listed: callback and eventing URLs, masked passwords (``***``), and the keep-alive and poll calls
the gateway makes on its own clock. Exit 0 only when every step agrees.
"""
from __future__ import annotations

import asyncio
import base64
import xmlrpc.client
from collections import defaultdict, deque
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

import aiohttp
from aiohttp import web

from .learn import OPERATION_METHODS
from .parse import parse_soap
from .reader import read_capture

NORMALISED = ("callback and eventing URLs (http://… values): ours, not the site's",
              "masked passwords (***): compared as equal to anything",
              "keep-alive (status) and poll calls: made on the gateway's own clock, not compared",
              "read-only queries (agent state, calls of a device or group) either side makes for its own "
              "bookkeeping: compared only for the command that asks for them")
# logical methods that only read the PABX
READ_ONLY = ("status", "version", "agent_state", "device_calls", "group_calls", "poll_events")
STEP_TIMEOUT = 5.0


@dataclass
class Step:
    kind: str                       # "command" | "event"
    seq: int
    operation: str = ""             # a command's SOAP operation
    args: dict = field(default_factory=dict)
    returned: str = ""
    method: str = ""                # an event's XML-RPC method ("" inside a poll answer)
    params: list = field(default_factory=list)
    calls: list = field(default_factory=list)      # [(method, params)] DigitroCTILink made in this step
    events: list = field(default_factory=list)     # [(operation, args)] it pushed to Protheus
    during: bool = False            # an event that came while a command was in flight: given at that point
    given: bool = False


@dataclass
class Difference:
    step: Step
    what: str

    def __str__(self) -> str:
        s = self.step
        name = f"{s.operation}({', '.join(f'{k}={v}' for k, v in s.args.items())})" if s.kind == "command" \
            else f"NGC event {s.method or ''} {s.params}"
        return f"step {s.seq} {name}: {self.what}"


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, str) and isinstance(b, str) and (a.startswith(("http://", "https://")) and
                                                      b.startswith(("http://", "https://"))):
        return True
    if a == "***" or b == "***":
        return True
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


def steps_of(records: list[dict]) -> tuple[list[Step], list[tuple[str, list, Any, list]]]:
    """The capture as steps in time order, and every NGC call with its answer in order: (method, params,
    parsed answer, the events to give before answering it). A call belongs to the command being answered
    when it was made; an event to Protheus to the last step before it.

    An NGC event that came while a command was in flight, before the answer of one of its calls, is
    given again at the same point: before the stub answers that call. Given after the command instead,
    it would change what the gateway saw when it answered (a Ready answered before the Logon's report
    came turns LOGGEDON, READY into READY, LOGGEDON)."""
    answers = {(r["side"], r["conn"]): r for r in records if r["dir"] in ("from_pabx", "from_middleware")}
    steps: list[tuple[float, float, Step]] = []
    calls: list[tuple[float, str, list, float, list]] = []   # (t, method, params, answered at, its ngc_calls entry)
    pushed: list[tuple[float, str, dict]] = []
    ngc_calls: list[tuple[str, list, Any, list]] = []
    for r in records:
        parsed = r.get("parsed") or {}
        t = float(r.get("t", 0))
        if r["dir"] == "to_middleware" and "operation" in parsed:
            ans = answers.get(("soap", r["conn"])) or {}
            steps.append((t, float(ans.get("t", t)), Step("command", r["seq"], parsed["operation"],
                                                          dict(parsed.get("args") or {}),
                                                          str((ans.get("parsed") or {}).get("return", "")))))
        elif r["dir"] == "callback_to_gateway" and "method" in parsed:
            steps.append((t, t, Step("event", r["seq"], method=parsed["method"],
                                     params=list(parsed.get("params") or []))))
        elif r["dir"] == "to_pabx" and "method" in parsed:
            ans = answers.get(("xmlrpc", r["conn"])) or {}
            answer = ans.get("parsed")
            before: list[Step] = []
            ngc_calls.append((parsed["method"], list(parsed.get("params") or []), answer, before))
            result = (answer or {}).get("result")
            if isinstance(result, list):          # a poll: each event it answered is a step of its own
                at = float(ans.get("t", t))
                for item in result:
                    if isinstance(item, list) and item and isinstance(item[0], str) and "." in item[0]:
                        steps.append((at, at, Step("event", r["seq"], method=item[0], params=list(item[1:]))))
                    elif isinstance(item, (list, dict)):
                        steps.append((at, at, Step("event", r["seq"], params=[item] if isinstance(item, dict)
                                                   else list(item))))
            else:
                calls.append((t, parsed["method"], list(parsed.get("params") or []), float(ans.get("t", t)), before))
        elif r["dir"] == "event_to_protheus" and "operation" in parsed:
            pushed.append((t, parsed["operation"], dict(parsed.get("args") or {})))
    steps.sort(key=lambda x: x[0])
    owned: dict[int, list] = defaultdict(list)      # id(command step) -> its calls
    for t, method, params, answered, before in calls:
        owner = next((st for start, end, st in steps if st.kind == "command" and start <= t <= end), None)
        if owner is not None:
            owner.calls.append((method, params))
            owned[id(owner)].append((answered, before))
    for at, _, st in steps:
        if st.kind != "event":
            continue
        command = next((c for start, end, c in steps if c.kind == "command" and start <= at <= end), None)
        if command is None:
            continue
        before = next((b for answered, b in owned.get(id(command), []) if answered > at), None)
        if before is not None:
            before.append(st)
            st.during = True
    for t, op, args in pushed:
        owner = next((st for start, _, st in reversed(steps) if start <= t), None)
        if owner is not None:
            owner.events.append((op, args))
    return [st for _, _, st in steps], ngc_calls


class StubNgc:
    """Answers the gateway's XML-RPC calls from the capture; gives it the captured events again."""

    def __init__(self, ngc_calls: list[tuple[str, list, Any, list]], quiet: set[str], poll_method: str = ""):
        self.by_method: dict[str, deque] = defaultdict(deque)
        self.last: dict[str, Any] = {}
        for method, params, answer, before in ngc_calls:
            self.by_method[method].append((params, answer, before))
        self.quiet = quiet                  # methods the gateway calls on its own clock
        self.calls: list[tuple[str, list]] = []
        self.callback = ""
        self.pending: list = []            # events for the next poll
        self.polled = asyncio.Event()      # a poll took what was pending
        self.poll_method = poll_method     # the NGC's events are asked with it (transport: poll)
        self.give: Callable[[Step], Awaitable[None]] | None = None    # how an event is given to the gateway

    async def handle(self, request: web.Request) -> web.Response:
        params, method = xmlrpc.client.loads(await request.read())
        params = list(params)
        for p in params:
            if isinstance(p, dict):
                for v in p.values():
                    if isinstance(v, str) and v.startswith(("http://", "https://")):
                        self.callback = v
            elif isinstance(p, str) and p.startswith(("http://", "https://")):
                self.callback = p
        if self.poll_method and method == self.poll_method:
            answer, self.pending = {"result": self.pending}, []
            self.polled.set()
        else:
            if method not in self.quiet:
                self.calls.append((method, params))
            queue = self.by_method.get(method)
            if queue:
                _, answer, before = queue.popleft()
                self.last[method] = answer
                for step in before:         # what the NGC reported before it answered this call
                    if not step.given and self.give is not None:
                        await self.give(step)
            else:
                answer = self.last.get(method) or {"fault": {"code": 1, "string": f"not in the capture: {method}"}}
        if answer is None:
            answer = {"result": True}
        if "fault" in answer:
            body = xmlrpc.client.dumps(xmlrpc.client.Fault(answer["fault"].get("code", 1),
                                                           str(answer["fault"].get("string", ""))), methodresponse=True)
        else:
            body = xmlrpc.client.dumps((_xmlrpc_value(answer.get("result")),), methodresponse=True, allow_none=True)
        return web.Response(text=body, content_type="text/xml")


def _xmlrpc_value(v: Any) -> Any:
    if isinstance(v, dict) and set(v) == {"base64"}:
        return xmlrpc.client.Binary(base64.b64decode(v["base64"]))
    if isinstance(v, dict):
        return {k: _xmlrpc_value(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_xmlrpc_value(x) for x in v]
    return v


class StubProtheus:
    """Protheus' SmartCTIWSEventing: takes every event, answers 0, keeps (operation, args)."""

    def __init__(self):
        self.events: list[tuple[str, dict]] = []
        self.arrived = asyncio.Event()

    async def handle(self, request: web.Request) -> web.Response:
        if request.method != "POST":
            return web.Response(status=404)
        parsed = parse_soap(await request.read()) or {}
        op = parsed.get("operation", "")
        self.events.append((op, dict(parsed.get("args") or {})))
        self.arrived.set()
        return web.Response(content_type="text/xml", text=(
            '<?xml version="1.0" encoding="utf-8"?><soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/'
            f'envelope/"><soap:Body><{op}Response><{op}RESULT>0</{op}RESULT></{op}Response></soap:Body>'
            '</soap:Envelope>'))


def _compare_events(steps: list[Step], got: list[tuple[str, dict]]) -> list[Difference]:
    """Per device, the events Protheus got in order against DigitroCTILink's. Not step by step: which of a
    command's answer and the NGC's own report comes first is a race in any capture; the order each
    device's listener sees is what matters, and the first place it differs is reported at its step."""
    expected: dict[str, list[tuple[Step, str, dict]]] = defaultdict(list)
    for st in steps:
        for op, args in st.events:
            expected[str(args.get("CDEVICE", ""))].append((st, op, args))
    actual: dict[str, list[tuple[str, dict]]] = defaultdict(list)
    for op, args in got:
        actual[str(args.get("CDEVICE", ""))].append((op, args))
    diffs = []
    for device in sorted(set(expected) | set(actual)):
        want, have = expected.get(device, []), actual.get(device, [])
        for i in range(max(len(want), len(have))):
            w = want[i] if i < len(want) else None
            h = have[i] if i < len(have) else None
            if w is not None and h is not None and w[1] == h[0] and _same(w[2], h[1]):
                continue
            step = w[0] if w is not None else (want[-1][0] if want else steps[-1])
            diffs.append(Difference(step, f"device {device}, event {i + 1}: Protheus got "
                                          f"{h[0] + ' ' + str(h[1]) if h else 'nothing'}; DigitroCTILink pushed "
                                          f"{w[1] + ' ' + str(w[2]) if w else 'nothing'}"))
            break
    return diffs


def _envelope(op: str, args: dict) -> bytes:
    from xml.sax.saxutils import escape
    inner = "".join(f"<{k}>{escape(str(v))}</{k}>" for k, v in args.items())
    return (f'<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
            f'xmlns:ns="http://DefaultNamespace"><soapenv:Body><ns:{op}>{inner}</ns:{op}></soapenv:Body>'
            f'</soapenv:Envelope>').encode("utf-8")


async def _serve(handler) -> tuple[web.AppRunner, int]:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner, runner.addresses[0][1]


async def replay(records: list[dict], dialect: dict, *, link_id: int = 0) -> list[Difference]:
    """Every difference between what the gateway does and what DigitroCTILink did; [] when they agree."""
    from ..config import parse
    from ..gateway import Gateway
    from ..pabx.digitro.dialect import Dialect
    d = Dialect.with_overrides(dialect)
    steps, ngc_calls = steps_of(records)
    link_id = link_id or next((int(a.get("ILINKID")) for s in steps for _, a in s.events
                               if str(a.get("ILINKID", "")).isdigit()), 1)
    quiet = {d.methods["status"], d.methods.get("poll_events") or "", d.methods["register_listener"],
             d.methods["unregister_listener"]} - {""}
    read_only = {d.methods[m] for m in READ_ONLY if d.methods.get(m)}
    ngc = StubNgc(ngc_calls, quiet, d.methods.get("poll_events") or "")
    expected_by_step = []
    total = 0
    for st in steps:            # Protheus' events up to each step: which step a push is filed under is a race
        total += len(st.events)
        expected_by_step.append(total)
    protheus = StubProtheus()
    ngc_runner, ngc_port = await _serve(ngc.handle)
    p_runner, p_port = await _serve(protheus.handle)
    cfg = parse({"listen": "127.0.0.1:0", "state_file": "", "log_level": "warning", "links": [{
        "link_id": link_id, "pabx": {"driver": "digitro", "url": f"http://127.0.0.1:{ngc_port}/RPC2",
                                     "timeout": 3, "keepalive": 3600, "dialect": dialect}}]}, "<replay>")
    gw = Gateway(cfg)
    diffs: list[Difference] = []
    try:
        await gw.start()
        for link in gw.links:   # no queue polls: their group_calls would take the answers captured for GetCallList
            link.queue_poll = 0
        port = gw.port()
        url = f"http://127.0.0.1:{port}/axis2/services/SmartCTIWSCommand"
        events_url = f"http://127.0.0.1:{p_port}/eventing"
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=STEP_TIMEOUT + 5)) as http:
            ngc.give = lambda step: _give_event(http, ngc, step, d)
            short = 0           # events that never came: not waited for again at every later step
            for step, expected_events in zip(steps, expected_by_step):
                calls_before = len(ngc.calls)
                if step.kind == "command":
                    args = {k: (events_url if k == "ipaddress" else ("secret" if v == "***" else v))
                            for k, v in step.args.items()}
                    async with http.post(url, data=_envelope(step.operation, args), headers={
                            "Content-Type": "text/xml; charset=UTF-8", "SOAPAction": f'"urn:{step.operation}"'}) as r:
                        answer = parse_soap(await r.read()) or {}
                    got = str(answer.get("return", ""))
                    if got != step.returned:
                        diffs.append(Difference(step, f"answered {got!r}; DigitroCTILink answered {step.returned!r}"))
                elif not step.given:
                    await _give_event(http, ngc, step, d)
                await _wait_events(protheus, expected_events - short)
                short = max(short, expected_events - len(protheus.events))
                asked = d.methods.get(OPERATION_METHODS.get(step.operation, ""), "")
                kept = lambda c: c[0] not in quiet and (c[0] not in read_only or c[0] == asked)  # noqa: E731
                made = [c for c in ngc.calls[calls_before:] if kept(c)]
                theirs = [c for c in step.calls if kept(c)]
                if step.kind == "command" and not _same([list(c) for c in made], [list(c) for c in theirs]):
                    diffs.append(Difference(step, f"the gateway called {made}; DigitroCTILink called {theirs}"))
            await _wait_events(protheus, total - short)
            diffs += _compare_events(steps, protheus.events)
    finally:
        await gw.stop()
        await ngc_runner.cleanup()
        await p_runner.cleanup()
    return diffs


async def _give_event(http: aiohttp.ClientSession, ngc: StubNgc, step: Step, d) -> None:
    """The event to the gateway, as the NGC gave it; back once the gateway has taken it (its callback
    answered, or its next poll answered with it), so that what follows cannot overtake it."""
    step.given = True
    if ngc.poll_method:
        ngc.pending.append([step.method, *step.params] if step.method and d.event_methods else
                           (step.params[0] if len(step.params) == 1 and isinstance(step.params[0], dict)
                            else step.params))
        ngc.polled.clear()
        try:
            async with asyncio.timeout(float(d.transport.get("poll_interval", 1.0)) + 1.0):
                while ngc.pending:
                    await ngc.polled.wait()
                    ngc.polled.clear()
        except TimeoutError:
            pass        # not polled: the events it should have caused are missing, which the report says
        return
    if not ngc.callback:
        return
    body = xmlrpc.client.dumps(tuple(_xmlrpc_value(p) for p in step.params), step.method, allow_none=True)
    async with http.post(ngc.callback, data=body, headers={"Content-Type": "text/xml"}) as r:
        await r.read()


async def _wait_events(protheus: StubProtheus, count: int) -> None:
    """Until Protheus has ``count`` events, or a short quiet time passes (an event that never comes is a
    difference the comparison reports)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + STEP_TIMEOUT
    while len(protheus.events) < count and loop.time() < deadline:
        protheus.arrived.clear()
        try:
            async with asyncio.timeout(deadline - loop.time()):
                await protheus.arrived.wait()
        except TimeoutError:
            break
    # and a moment for anything more than expected to show
    await asyncio.sleep(0.15)


# ------------------------------------------------------------ command line
def add_replay_parser(subparsers):
    p = subparsers.add_parser("replay", help="play a capture to the gateway with a dialect and compare with "
                                             "what DigitroCTILink did")
    p.add_argument("capture", help="the file smartcti-gateway capture wrote")
    p.add_argument("--dialect", required=True, help="the dialect YAML (smartcti-gateway learn wrote it)")
    p.set_defaults(func=run_replay)
    return p


def run_replay(args) -> int:
    import sys

    import yaml

    from .reader import CaptureError
    try:
        _, records = read_capture(args.capture)
        with open(args.dialect, encoding="utf-8") as f:
            dialect = yaml.safe_load(f) or {}
        if not isinstance(dialect, dict):
            raise ValueError(f"{args.dialect} is not a mapping of dialect sections")
        diffs = asyncio.run(replay(records, dialect))
    except (CaptureError, OSError, ValueError, yaml.YAMLError) as e:
        print(f"replay: {e}", file=sys.stderr)
        return 2
    steps, _ = steps_of(records)
    print(f"replay: {len(steps)} step(s) of {args.capture} with {args.dialect}")
    print("normalised: " + "; ".join(NORMALISED))
    for diff in diffs:
        print(f"DIFFERENT {diff}")
    if diffs:
        print(f"replay: {len(diffs)} difference(s): the gateway does not yet do what DigitroCTILink did")
        return 1
    print("replay: the gateway did what DigitroCTILink did, step by step")
    return 0
