"""Bad input on the two endpoints strangers can reach: fuzzing (a small run of scripts/fuzz), XML bombs,
bodies over max_body, invalid UTF-8, slow and stalled clients. After all of it the gateway still answers.

Refusal times are printed (``pytest -s``), not asserted: scripts/fuzz proves the 10 ms bound.
"""
from __future__ import annotations

import http.client
import logging
import socket
import time

import pytest

from .fuzzing import (
    EVENTS_PATH, SOAP_PATH, ErrorLog, EventTarget, HttpClient, SoapTarget, bomb_memory, bombs,
    check_event_answer, check_soap_answer, event_inputs, fuzz_http, fuzz_in_process, good_event,
    good_request_answers, good_soap, rss_kib, soap_inputs, time_bombs_in_process,
)
from .support import RunningGateway, simulated_config

MAX_BODY = 256 * 1024        # the 100 KB quadratic bomb fits under it; the other one does not
CLIENT_TIMEOUT = 1.0
N_LOCAL = 400                # inputs per endpoint in process (scripts/fuzz: 100 000)
N_HTTP = 60                  # and over HTTP
TARGETS = {"soap": SoapTarget, "events": EventTarget}
PATHS = {"soap": SOAP_PATH, "events": EVENTS_PATH}
BOMBS = list(bombs("soap", MAX_BODY))


@pytest.fixture(scope="module")
def gw():
    g = RunningGateway({**simulated_config(), "max_body": MAX_BODY, "client_timeout": CLIENT_TIMEOUT})
    yield g
    # the fuzzed AgentInService point devices at a dead eventing URL: drop those deliveries now
    # rather than let the shutdown wait for them
    g.run(g.link().delivery.close(0))
    g.close()


def post(gw, endpoint: str, body: bytes, content_type: str | None = "text/xml; charset=UTF-8", **kw):
    headers = {"Content-Type": content_type} if content_type else {}
    return gw.http("POST", PATHS[endpoint], body, headers, **kw)[:2]


def outcome(endpoint: str, status: int, body: bytes):
    return (check_soap_answer if endpoint == "soap" else check_event_answer)(status, body)


# ------------------------------------------------------------------ fuzzing

@pytest.mark.parametrize("endpoint", ["soap", "events"])
def test_fuzz_in_process(endpoint):
    """Generated and mutated requests through the real handler: faults or answers, never a crash or a hang.
    On a crash, Hypothesis shrinks the input and the test fails with it."""
    strategy = soap_inputs() if endpoint == "soap" else event_inputs()
    stats = fuzz_in_process(TARGETS[endpoint](), strategy, N_LOCAL, seed=1, raise_on_crash=True)
    s = stats.summary()
    print(f"\nfuzz {endpoint} in process: {s['inputs']} inputs, {s['faults']} faults, {s['ok']} answers, "
          f"median {s['median_ms']} ms, max {s['max_ms']} ms")
    assert (stats.crashes, stats.hangs) == (0, 0), s["crash_examples"]
    assert stats.inputs >= N_LOCAL * 0.9
    assert stats.ok and stats.faults          # both sides of the handler were reached


# The gateway's thread draws retry jitter from the global `random` while Hypothesis generates:
# Hypothesis takes that for a strategy using `random` and warns.
@pytest.mark.filterwarnings("ignore:Do not use the `random` module inside strategies")
@pytest.mark.parametrize("endpoint", ["soap", "events"])
def test_fuzz_over_http(gw, endpoint):
    strategy = soap_inputs() if endpoint == "soap" else event_inputs()
    with ErrorLog() as errors:
        stats = fuzz_http(gw.port, endpoint, strategy, N_HTTP, rss=rss_kib, max_body=MAX_BODY,
                          errors=lambda: errors.records, seed=2, check_every=20, raise_on_crash=True)
    assert (stats.crashes, stats.hangs) == (0, 0), stats.summary()["crash_examples"]
    assert stats.good_checks >= 3


# -------------------------------------------------------------------- bombs

@pytest.mark.parametrize("endpoint", ["soap", "events"])
def test_bombs_refused_in_process(endpoint):
    timings = time_bombs_in_process(TARGETS[endpoint](), MAX_BODY, repeats=5)
    print()
    for name, r in timings.items():
        print(f"bomb {endpoint:6} {name:26} {r['bytes']:7d} bytes  refused in {r['median_ms']:.3f} ms "
              f"(max {r['max_ms']:.3f})")
    for name, r in timings.items():
        assert r["outcome"] == "fault", (name, r)
        assert "DTD" in r["detail"], (name, r)


@pytest.mark.parametrize("name", BOMBS)
@pytest.mark.parametrize("endpoint", ["soap", "events"])
def test_bombs_refused_over_http(gw, endpoint, name):
    body = bombs(endpoint, MAX_BODY)[name]
    t0 = time.perf_counter()
    status, answer = post(gw, endpoint, body)
    print(f"\nbomb {endpoint} {name} over HTTP: {status} in {(time.perf_counter() - t0) * 1000:.2f} ms")
    if name == "quadratic-over-max-body":
        assert len(body) > MAX_BODY and status == 413
        return
    result = outcome(endpoint, status, answer)
    assert result.kind == "fault" and "DTD" in result.detail, (status, answer[:300])
    assert status == (500 if endpoint == "soap" else 200)


@pytest.mark.parametrize("endpoint", ["soap", "events"])
def test_200_bombs_do_not_grow_memory(endpoint):
    before, after, kinds = bomb_memory(TARGETS[endpoint](), MAX_BODY, count=200)
    print(f"\n200 bombs on {endpoint}: RSS {before / 1024:.1f} -> {after / 1024:.1f} MiB")
    assert set(kinds) == {"fault"}
    assert after - before < 20 * 1024


# ------------------------------------------------------- size and encoding

@pytest.mark.parametrize("endpoint", ["soap", "events"])
def test_body_over_max_body_gets_413(gw, endpoint):
    good = good_soap() if endpoint == "soap" else good_event()
    big = good.body + b" " * (MAX_BODY + 1 - len(good.body))
    assert post(gw, endpoint, big)[0] == 413
    # chunked, without Content-Length: the limit holds while reading
    conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=10)
    try:
        conn.request("POST", PATHS[endpoint], body=iter([big[i:i + 8192] for i in range(0, len(big), 8192)]),
                     headers={"Content-Type": "text/xml"}, encode_chunked=True)
        assert conn.getresponse().status == 413
    finally:
        conn.close()
    # exactly at the limit is still read
    status, answer = post(gw, endpoint, good.body + b" " * (MAX_BODY - len(good.body)))
    assert outcome(endpoint, status, answer).kind == "ok", answer[:300]


@pytest.mark.parametrize("endpoint", ["soap", "events"])
@pytest.mark.parametrize("where", ["text", "markup", "declared"])
def test_invalid_utf8_gets_a_fault_naming_utf8(gw, endpoint, where):
    good = (good_soap() if endpoint == "soap" else good_event()).body
    if where == "text":
        bad = good.replace(b"SystemStatus", b"System\xc3\x28Status") if endpoint == "soap" else \
            good.replace(b"2001", b"20\xff01")
    elif where == "markup":
        bad = good.replace(b"Body", b"B\xed\xa0\x80dy") if endpoint == "soap" else good.replace(b"params", b"p\x80rams")
    elif endpoint == "soap":
        bad = b"<?xml version='1.0' encoding='UTF-8'?>" + good + b"<!-- \xe9 -->"
    else:
        bad = good.replace(b"<?xml version='1.0'?>", b"<?xml version='1.0' encoding='UTF-8'?>") \
            .replace(b"2001", b"Jos\xe9")
    status, answer = post(gw, endpoint, bad)
    result = outcome(endpoint, status, answer)
    if endpoint == "events":
        assert result.kind == "fault" and "UTF-8" in result.detail, (status, answer[:300])
    elif where == "declared":
        # SOAP from Protheus: what is not UTF-8 is read as windows-1252 and answered (smartcti.md §10.11)
        assert result.kind == "ok", (status, answer[:300])
    else:   # read as windows-1252 it breaks a name: not well-formed, said so
        assert result.kind == "fault" and "not well-formed" in result.detail, (status, answer[:300])


def test_cp1252_password_under_a_utf8_label_is_answered_and_logged_once_per_address(caplog):
    inner = "<LogonPass xmlns=\"http://DefaultNamespace\"><device>2001</device><agentID>1234</agentID>" \
            "<groupID>701</groupID><agentPass>Ç</agentPass></LogonPass>"
    body = ("<?xml version='1.0' encoding='UTF-8'?><soap:Envelope xmlns:soap=\"http://schemas.xmlsoap.org/soap/"
            f"envelope/\"><soap:Body>{inner}</soap:Body></soap:Envelope>").encode("cp1252")
    caplog.set_level("INFO", "smartcti_gateway.protheus.command_service")
    gw = RunningGateway(simulated_config())    # its own: the module's gateway has seen such bytes already
    try:
        for _ in range(3):
            status, answer = post(gw, "soap", body)
            assert status == 200 and b"<ns:LogonPassResponse" in answer and b"Fault" not in answer, answer
    finally:
        gw.close()
    lines = [r.getMessage() for r in caplog.records if "windows-1252" in r.getMessage()]
    assert len(lines) == 1 and "from 127.0.0.1" in lines[0] and "LogonPass" in lines[0]
    assert "Ç" not in lines[0]          # the password itself never reaches the log


# ---------------------------------------------------- slow and stalled clients

def _open(gw) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", gw.port), timeout=CLIENT_TIMEOUT * 10)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def _read_until_close(s: socket.socket, limit: float) -> tuple[bytes, float]:
    """Everything the server sends until it closes (or ``limit`` s pass), and when that happened."""
    t0 = time.monotonic()
    data = b""
    s.settimeout(limit)
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
            if time.monotonic() - t0 > limit:
                break
    except (socket.timeout, ConnectionResetError):
        pass
    return data, time.monotonic() - t0


def _head(endpoint: str, length: int) -> bytes:
    return (f"POST {PATHS[endpoint]} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/xml\r\n"
            f"Content-Length: {length}\r\n\r\n").encode()


@pytest.mark.parametrize("endpoint", ["soap", "events"])
def test_stalled_body_gets_408_while_others_are_served(gw, endpoint):
    body = (good_soap() if endpoint == "soap" else good_event()).body
    s = _open(gw)
    try:
        t0 = time.monotonic()
        s.sendall(_head(endpoint, len(body)) + body[: len(body) // 2])
        # the stalled request holds nothing up
        assert gw.code("SystemStatus") == 0
        assert time.monotonic() - t0 < CLIENT_TIMEOUT, "another request waited for the stalled one"
        data, _ = _read_until_close(s, CLIENT_TIMEOUT * 20)
        elapsed = time.monotonic() - t0
    finally:
        s.close()
    assert data.startswith(b"HTTP/1.1 408"), data[:200]
    answer = data.partition(b"\r\n\r\n")[2]
    assert b"not received within 1 s" in answer, answer
    # 408 when the body is late, and the connection closed right after it
    assert CLIENT_TIMEOUT * 0.9 <= elapsed < CLIENT_TIMEOUT + 2, elapsed
    print(f"\nstalled body on {endpoint}: 408 and close after {elapsed:.2f} s")


def test_slow_drip_body_gets_408(gw):
    """A body sent one byte at a time, never late by much, still has only client_timeout in all."""
    body = good_soap().body
    s = _open(gw)
    try:
        s.sendall(_head("soap", len(body)))
        t0 = time.monotonic()
        s.settimeout(0.2)
        data, closed = b"", False
        for byte in body:                      # 0.2 s per byte: would take minutes
            try:
                s.sendall(bytes([byte]))
                data = s.recv(65536)
            except socket.timeout:
                continue
            except (BrokenPipeError, ConnectionResetError):
                closed = True                  # sent right as the server closed: the 408 may be lost
            break
        elapsed = time.monotonic() - t0
    finally:
        s.close()
    assert data.startswith(b"HTTP/1.1 408") or closed, data[:200]
    assert elapsed < CLIENT_TIMEOUT + 2, elapsed


@pytest.mark.parametrize("sent", [b"", b"POST /axis2/services/SmartCTIWSCommand HTTP/1.1\r\nHost: 127.0."])
def test_stalled_headers_are_closed(gw, sent):
    s = _open(gw)
    try:
        t0 = time.monotonic()
        s.sendall(sent)
        assert gw.code("SystemStatus") == 0
        data, _ = _read_until_close(s, CLIENT_TIMEOUT * 20)
        elapsed = time.monotonic() - t0
    finally:
        s.close()
    assert data == b"" and elapsed < CLIENT_TIMEOUT + 3, (data[:200], elapsed)
    print(f"\nstalled headers ({len(sent)} bytes): closed after {elapsed:.2f} s")


def test_header_drip_is_closed(gw):
    """Headers sent a byte every 0.1 s: the bound is from the connection, not from the last byte."""
    head = _head("soap", 10)
    s = _open(gw)
    t0 = time.monotonic()
    closed = False
    try:
        for byte in head:
            try:
                s.sendall(bytes([byte]))
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            s.settimeout(0.1)
            try:
                if s.recv(1) == b"":
                    closed = True
                    break
            except socket.timeout:
                pass
            except ConnectionResetError:
                closed = True
                break
    finally:
        s.close()
    elapsed = time.monotonic() - t0
    assert closed and elapsed < CLIENT_TIMEOUT + 3, elapsed


# ------------------------------------------------------------------ after all

def test_after_everything_a_good_request_still_answers(gw):
    client = HttpClient(gw.port)
    try:
        assert good_request_answers(client, "soap")
        assert good_request_answers(client, "events")
    finally:
        client.close()
    assert gw.code("SystemStatus") == 0


# ---------------------------------------------------- malformed HTTP: a 400, one line, no traceback
MALFORMED = {
    "20 KB header": b"X-Big: " + b"a" * 20_000 + b"\r\nContent-Length: 0\r\n",
    "200 headers": b"".join(b"X-H%d: v\r\n" % i for i in range(200)) + b"Content-Length: 0\r\n",
    "negative Content-Length": b"Content-Length: -5\r\n",
    "doubled Content-Length": b"Content-Length: 5\r\nContent-Length: 7\r\n",
}


@pytest.mark.parametrize("what", sorted(MALFORMED))
def test_malformed_http_gets_400_and_one_warning_without_a_traceback(what, caplog):
    gw = RunningGateway(simulated_config())
    client = f"127.0.0.{10 + sorted(MALFORMED).index(what)}"   # the rate limit is per client address
    try:
        caplog.set_level(logging.DEBUG, "aiohttp.server")
        head = b"POST /axis2/services/SmartCTIWSCommand HTTP/1.1\r\nHost: gw\r\n" + MALFORMED[what] + b"\r\nhello"
        for _ in range(5):
            with socket.create_connection(("127.0.0.1", gw.port), timeout=10, source_address=(client, 0)) as s:
                s.sendall(head)
                answer = s.recv(200)
            assert answer.startswith(b"HTTP/1.0 400 ") or answer.startswith(b"HTTP/1.1 400 "), answer
        records = [r for r in caplog.records if r.name == "aiohttp.server"]
        assert len(records) == 1, [r.getMessage() for r in records]        # rate-limited per client address
        (r,) = records
        assert r.levelname == "WARNING" and r.exc_info is None and not r.exc_text
        assert r.getMessage().startswith(f"refused a malformed HTTP request from {client} with 400: ")
        assert len(r.getMessage()) < 300
        assert gw.code("SystemStatus") == 0                                # and it keeps serving
    finally:
        gw.close()
