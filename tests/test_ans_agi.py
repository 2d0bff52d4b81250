"""FastAGI and the ``protocolo`` IVR script: the sans-I/O framing, then a fake Asterisk over loopback TCP.

The fake Asterisk sends a real environment block (panoramisk's capture, asterisk-ans-dialler.md §2.2),
answers every command line with scripted replies and records the exact bytes the server sent. Every wait
has a deadline; nothing waits on a sleep.
"""
from __future__ import annotations

import asyncio
import ipaddress
import logging
import re
from types import SimpleNamespace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smartcti_gateway.ans.agi import (
    MAX_ENV_LINES,
    MAX_LINE,
    AgiEnv,
    AgiProtocolError,
    EnvParser,
    Quoted,
    Reply,
    ReplyReader,
    command,
    parse_env,
    parse_reply,
)
from smartcti_gateway.ans.agi_server import AgiCommandError, AgiServer, Hangup, IvrOptions, Session, masked
from smartcti_gateway.ans.store import ProtocolError

LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"),)
NUMBER = "12345620250701000001"
UNIQUEID = "1437920906.0"
LINKEDID = "1733065200.12"                      # the call's oldest channel: a Local channel, an Originate...
GET_LINKEDID = "GET FULL VARIABLE ${CHANNEL(linkedid)}"
DEAD = b"511 Command Not Permitted on a dead channel or intercept routine\n"
USAGE_520 = (b"520-Invalid command syntax.  Proper usage follows:\n"
             b"Usage: ANSWER\n"
             b"        Answers channel if not already in answer state.\n"
             b"520 End of proper usage.\n")

FAST_AGI_PAYLOAD = b"""agi_network: yes
agi_network_script: call_waiting
agi_request: agi://127.0.0.1:4574/call_waiting
agi_channel: SIP/xxxxxx-00000000
agi_language: en_US
agi_type: SIP
agi_uniqueid: 1437920906.0
agi_version: asterisk
agi_callerid: 201
agi_calleridname: user 201
agi_callingpres: 0
agi_callingani2: 0
agi_callington: 0
agi_callingtns: 0
agi_dnid: 9011
agi_rdnis: unknown
agi_context: default
agi_extension: 9011
agi_priority: 2
agi_enhanced: 0.0
agi_accountcode: default
agi_threadid: -1260881040
agi_arg_1: answered

"""


def env_block(script: str = "protocolo", *, uniqueid: str = UNIQUEID, args: tuple[str, ...] = (),
              callerid: str = "201", blank: bool = True) -> bytes:
    """The panoramisk capture, for our script (and its arguments) and call."""
    lines = []
    for line in FAST_AGI_PAYLOAD.decode().splitlines():
        key = line.partition(":")[0]
        if key == "agi_network_script":
            line = f"agi_network_script: {script}"
        elif key == "agi_request":
            line = f"agi_request: agi://127.0.0.1:4573/{script}"
        elif key == "agi_uniqueid":
            line = f"agi_uniqueid: {uniqueid}"
        elif key == "agi_callerid":
            line = f"agi_callerid: {callerid}"
        elif key.startswith("agi_arg_") or not line:
            continue
        lines.append(line)
    lines += [f"agi_arg_{i}: {a}" for i, a in enumerate(args, 1)]
    return ("\n".join(lines) + "\n" + ("\n" if blank else "")).encode()


# ------------------------------------------------------------------ fakes
DEFAULT_REPLIES = {
    "CHANNEL STATUS": b"200 result=4\n",          # Ring: not answered yet
    "ANSWER": b"200 result=0\n",
    "GET DATA": b"200 result= (timeout)\n",
    "STREAM FILE": b"200 result=0 endpos=8000\n",
    "SAY DIGITS": b"200 result=0\n",
    "SAY ALPHA": b"200 result=0\n",
    "WAIT FOR DIGIT": b"200 result=0\n",
    "SET VARIABLE": b"200 result=1\n",
    "VERBOSE": b"200 result=1\n",
    "GET FULL VARIABLE": None,                  # 200 result=1 (<the env's uniqueid>): no Local channel before
}
EOF = object()       # instead of a reply: Asterisk half-closes (it went away)
SILENCE = object()   # instead of a reply: nothing, ever
# a reply is bytes, EOF, SILENCE, or a tuple of them sent in turn


class FakeAsterisk:
    """A FastAGI client as Asterisk is one: sends the environment, answers each command, records them."""

    def __init__(self, port: int, env: bytes | None = None, replies: dict[str, list] | None = None, *,
                 local_addr: tuple[str, int] | None = None):
        self.port, self.env, self.local_addr = port, env_block() if env is None else env, local_addr
        self.replies = {k: list(v) for k, v in (replies or {}).items()}
        found = re.search(rb"^agi_uniqueid: *(\S+)", self.env, re.MULTILINE)
        self.uniqueid = found.group(1).decode() if found else ""
        self.commands: list[bytes] = []
        self.closed_by_server = False
        self.got_command = asyncio.Event()

    @property
    def lines(self) -> list[str]:
        return [c.decode().rstrip("\n") for c in self.commands]

    def _reply(self, line: bytes):
        text = line.decode()
        verb = max((v for v in DEFAULT_REPLIES if text.startswith(v)), key=len, default=None)
        assert verb is not None, f"the server sent an unexpected command {line!r}"
        queue = self.replies.get(verb)
        if queue:
            return queue.pop(0)
        if verb == "GET FULL VARIABLE":
            return f"200 result=1 ({self.uniqueid})\n".encode()
        return DEFAULT_REPLIES[verb]

    async def run(self, deadline: float = 5.0) -> FakeAsterisk:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port, local_addr=self.local_addr)
        try:
            writer.write(self.env)
            async with asyncio.timeout(deadline):
                while True:
                    try:
                        line = await reader.readline()
                    except ConnectionResetError:      # closed with our bytes unread: a reset, not a FIN
                        line = b""
                    if not line:
                        self.closed_by_server = True
                        return self
                    assert line.endswith(b"\n"), line
                    self.commands.append(line)
                    self.got_command.set()
                    reply = self._reply(line)
                    for piece in reply if isinstance(reply, tuple) else (reply,):
                        if piece is EOF:
                            writer.write_eof()
                        elif piece is not SILENCE:
                            writer.write(piece)
        finally:
            writer.close()


class FakeProtocols:
    """What the script needs of the protocol service; one number per call id, as the real one does."""

    def __init__(self, valid: list | None = None, fail: Exception | None = None):
        self.valid = list(valid or [])
        self.fail = fail
        self.issues: list[dict] = []
        self.checks: list[tuple[str, str]] = []
        self.marks: list[tuple[str, str]] = []
        self.by_call: dict[str, str] = {}
        self.block: asyncio.Event | None = None

    async def issue(self, **kw):
        self.issues.append(kw)
        if self.block is not None:
            await self.block.wait()
        if self.fail is not None:
            raise self.fail
        if kw["call_id"] not in self.by_call:
            self.by_call[kw["call_id"]] = f"12345620250701{len(self.by_call) + 1:06d}"
        return SimpleNamespace(number=self.by_call[kw["call_id"]])

    async def check_beneficiary(self, card: str, ani: str):
        self.checks.append((card, ani))
        return self.valid.pop(0) if self.valid else None

    def mark(self, number: str, status: str) -> None:
        self.marks.append((number, status))


@pytest.fixture
async def make_server():
    servers: list[AgiServer] = []

    async def make(protocols=None, options=None, allow=LOOPBACK, **kw) -> AgiServer:
        server = AgiServer(protocols if protocols is not None else FakeProtocols(),
                           options if options is not None else IvrOptions(), allow, **kw)
        await server.start("127.0.0.1", 0)
        servers.append(server)
        return server

    yield make
    for server in servers:
        await server.close()


def ivr(server: AgiServer) -> FakeProtocols:
    return server.protocols


HAPPY = [
    "CHANNEL STATUS",
    "ANSWER",
    GET_LINKEDID,
    f"SET VARIABLE __PROTOCOLO_ANS {NUMBER}",
    f"SET VARIABLE CDR(userfield) {NUMBER}",
    'STREAM FILE protocolo-intro ""',
    f'SAY DIGITS {NUMBER} "1"',
    "WAIT FOR DIGIT 3000",
]
ANNOUNCE = ['STREAM FILE protocolo-intro ""', f'SAY DIGITS {NUMBER} "1"', "WAIT FOR DIGIT 3000"]


async def normal_session(server: AgiServer, uniqueid: str = "1700000000.99", **kw) -> FakeAsterisk:
    """A plain call that must get the whole script: the server still serves."""
    fake = await FakeAsterisk(server.port, env_block(uniqueid=uniqueid), **kw).run()
    assert fake.closed_by_server
    assert fake.lines[:2] == ["CHANNEL STATUS", "ANSWER"] and fake.lines[-1] == "WAIT FOR DIGIT 3000"
    assert any(line.startswith("SET VARIABLE __PROTOCOLO_ANS ") for line in fake.lines)
    return fake


# ------------------------------------------------------------ agi.py: environment
def test_the_panoramisk_capture_parses():
    env = parse_env(FAST_AGI_PAYLOAD)
    assert (env.script, env.query, env.args) == ("call_waiting", {}, ["answered"])
    assert env.request == "agi://127.0.0.1:4574/call_waiting"
    assert (env.uniqueid, env.channel, env.callerid, env.calleridname) == (
        "1437920906.0", "SIP/xxxxxx-00000000", "201", "user 201")
    assert (env.dnid, env.context, env.extension, env.language) == ("9011", "default", "9011", "en_US")
    assert env.raw["agi_rdnis"] == "unknown" and env.raw["agi_threadid"] == "-1260881040"
    assert len(env.raw) == 23


def test_script_path_query_and_arguments():
    env = parse_env(b"agi_network: yes\nagi_network_script: /protocolo?announce=no&x=a%20b&flag\n"
                    b"agi_request: agi://10.0.0.1/protocolo?announce=no\n"
                    b"agi_arg_2: second\nagi_arg_10: tenth\nagi_arg_1: first\n\n")
    assert env.script == "protocolo"
    assert env.query == {"announce": "no", "x": "a b", "flag": ""}
    assert env.args == ["first", "second", "tenth"]


def test_a_request_without_a_path_has_no_script():
    assert parse_env(b"agi_network: yes\nagi_request: agi://10.0.0.1:4573\n\n").script == ""
    assert parse_env(b"agi_request: agi://10.0.0.1:4573/protocolo?x=1\n\n").script == "protocolo"


@pytest.mark.parametrize("value", ["unknown", "<unknown>", "Unknown"])
def test_unknown_caller_ids_are_empty(value):
    env = parse_env(f"agi_callerid: {value}\nagi_calleridname: {value}\nagi_dnid: {value}\n\n".encode())
    assert (env.callerid, env.calleridname, env.dnid) == ("", "", "")
    assert env.raw["agi_callerid"] == value


def test_empty_values_colons_in_values_and_crlf():
    env = parse_env(b"agi_accountcode: \r\nagi_calleridname: Dr. X: y\r\nagi_channel: PJSIP/2001-0000001a\r\n\r\n")
    assert env.raw["agi_accountcode"] == "" and env.calleridname == "Dr. X: y"
    assert env.channel == "PJSIP/2001-0000001a"


@pytest.mark.parametrize("data,what", [
    (b"agi_network: yes\nGET / HTTP/1.1\n\n", "not a 'key: value' line"),
    (b": value\n\n", "not a 'key: value' line"),
    (b"agi_callerid: Jo\xe3o\n\n", "not UTF-8"),
    (b"agi_network: " + b"x" * MAX_LINE + b"\n\n", f"longer than {MAX_LINE}"),
    (b"".join(b"agi_x_%d: v\n" % i for i in range(MAX_ENV_LINES + 1)) + b"\n", f"more than {MAX_ENV_LINES}"),
    (b"agi_network: yes\nagi_uniqueid: 1.2\n", "no empty line"),
    (b"agi_network: yes\nagi_uniqueid: 1.2", "no empty line"),
    (b"\n", "empty"),
])
def test_what_is_not_an_environment(data, what):
    with pytest.raises(AgiProtocolError, match=what):
        parse_env(data)


def test_the_env_parser_is_fed_line_by_line():
    parser = EnvParser()
    assert [parser.feed(line) for line in FAST_AGI_PAYLOAD.splitlines(keepends=True)[:-1]] == [None] * 23
    env = parser.feed(b"\n")
    assert isinstance(env, AgiEnv) and env.args == ["answered"]


# ------------------------------------------------------------ agi.py: replies
@pytest.mark.parametrize("line,reply", [
    (b"200 result=1 (value) endpos=12\n", Reply(200, "1", "value", 12)),
    (b"200 result= (timeout)\n", Reply(200, "", "timeout")),
    (b"200 result=123 (timeout)\n", Reply(200, "123", "timeout")),
    (b"200 result=-1 endpos=0\n", Reply(200, "-1", "", 0)),
    (b"200 result=0\n", Reply(200, "0")),
    (b"200 result=49 endpos=12345\r\n", Reply(200, "49", "", 12345)),
    (b"200 result=1 (a (b) c)\n", Reply(200, "1", "a (b) c")),
    (b"100 result=0 Trying...\n", Reply(100, "0", "Trying...")),
    (b"510 Invalid or unknown command\n", Reply(510, "", "Invalid or unknown command")),
    (b"511 Command Not Permitted on a dead channel\n", Reply(511, "", "Command Not Permitted on a dead channel")),
    (DEAD, Reply(511, "", "Command Not Permitted on a dead channel or intercept routine")),
    (b"520 Invalid command syntax.  Proper usage not available.\n",
     Reply(520, "", "Invalid command syntax.  Proper usage not available.")),
    (b"HANGUP\n", Reply(0)),
])
def test_reply_lines(line, reply):
    assert parse_reply(line) == reply
    assert parse_reply(line).is_hangup == (line == b"HANGUP\n")


@pytest.mark.parametrize("line", [b"hello\n", b"300 result=1\n", b"200 ok\n", b"20 result=1\n",
                                  b"200 result=" + b"9" * MAX_LINE + b"\n"])
def test_what_is_not_a_reply(line):
    with pytest.raises(AgiProtocolError):
        parse_reply(line)


def test_digit_of_a_reply():
    assert Reply(200, "49").digit == "1" and Reply(200, "35").digit == "#" and Reply(200, "42").digit == "*"
    assert Reply(200, "0").digit == "" and Reply(200, "-1").digit == "" and Reply(200, "").digit == ""


def test_a_520_usage_text_is_one_reply():
    reader = ReplyReader()
    out = [reader.feed(line) for line in USAGE_520.splitlines(keepends=True)]
    assert out[:3] == [None, None, None]
    assert out[3].code == 520 and out[3].data.splitlines() == [
        "Invalid command syntax.  Proper usage follows:", "Usage: ANSWER",
        "        Answers channel if not already in answer state.", "End of proper usage."]
    assert reader.feed(b"200 result=0\n") == Reply(200, "0")      # and the reader is back to single lines


def test_a_520_usage_text_is_bounded():
    reader = ReplyReader()
    reader.feed(b"520-Invalid command syntax.  Proper usage follows:\n")
    with pytest.raises(AgiProtocolError, match="usage text"):
        for _ in range(1000):
            reader.feed(b"Usage: x\n")


# ------------------------------------------------------------ agi.py: commands
@pytest.mark.parametrize("words,wire", [
    (("ANSWER",), b"ANSWER\n"),
    (("CHANNEL STATUS",), b"CHANNEL STATUS\n"),
    (("STREAM FILE", "protocolo-intro", ""), b'STREAM FILE protocolo-intro ""\n'),
    (("STREAM", "FILE", "protocolo-intro", ""), b'STREAM FILE protocolo-intro ""\n'),
    (("SAY DIGITS", NUMBER, Quoted("1")), b'SAY DIGITS ' + NUMBER.encode() + b' "1"\n'),
    (("SAY DIGITS", NUMBER, Quoted("")), b'SAY DIGITS ' + NUMBER.encode() + b' ""\n'),
    (("GET DATA", "digite-carteirinha", 7000, 20), b"GET DATA digite-carteirinha 7000 20\n"),
    (("SET VARIABLE", "CDR(userfield)", NUMBER), b"SET VARIABLE CDR(userfield) " + NUMBER.encode() + b"\n"),
    (("VERBOSE", "smartcti-gateway: unknown AGI script x", "1"),
     b'VERBOSE "smartcti-gateway: unknown AGI script x" 1\n'),
    (("SET VARIABLE", "X", 'say "hi"'), b'SET VARIABLE X "say \\"hi\\""\n'),
    (("SET VARIABLE", "X", "C:\\dir"), b'SET VARIABLE X "C:\\\\dir"\n'),
    (("SET VARIABLE", "X", "a\tb"), b'SET VARIABLE X "a\tb"\n'),
    (("SET VARIABLE", "NOME", "João"), "SET VARIABLE NOME João\n".encode()),
    (("verbose", "x", 1), b"VERBOSE x 1\n"),
])
def test_commands_on_the_wire(words, wire):
    assert command(*words) == wire


@pytest.mark.parametrize("words", [
    ("SET VARIABLE", "X", "1\nANSWER"),
    ("SET VARIABLE", "X", "1\rANSWER"),
    ("SET VARIABLE", "X", "1\0"),
    ("SET VARIABLE", "X\n", "1"),
    ("ANSWER\nHANGUP",),
    ("SAY DIGITS", "1", Quoted("1\n")),
])
def test_line_breaks_and_nul_are_refused(words):
    with pytest.raises(ValueError, match="CR, LF or NUL|command name"):
        command(*words)


@pytest.mark.parametrize("verb", ["", "SET-VARIABLE", "STREAM  FILE", " ANSWER", "EXEC;rm"])
def test_what_is_not_a_command_name(verb):
    with pytest.raises(ValueError):
        command(verb)


def asterisk_parse_args(line: str) -> list[str]:
    """res_agi.c parse_args, line for line: blanks split, quotes group, a backslash escapes."""
    argv: list[str] = []
    quoted = escaped = False
    whitespace = True
    for ch in line:
        if ch == '"' and not escaped:
            quoted = not quoted
            if quoted and whitespace:
                argv.append("")
                whitespace = False
            continue
        if ch in " \t" and not quoted and not escaped:
            whitespace = True
            continue
        if ch == "\\" and not escaped:
            escaped = True
            continue
        if whitespace:
            argv.append("")
            whitespace = False
        argv[-1] += ch
        escaped = False
    return argv


ARG = st.text(st.characters(codec="utf-8", exclude_characters="\r\n\0"), max_size=30)


@given(st.lists(ARG, max_size=6), st.booleans())
def test_asterisk_reads_back_every_argument_as_sent(args, force):
    words = [Quoted(a) if force else a for a in args]
    line = command("SET VARIABLE", *words).decode("utf-8")
    assert line.endswith("\n") and line.count("\n") == 1
    assert asterisk_parse_args(line[:-1]) == ["SET", "VARIABLE", *args]


def test_masked_card():
    assert masked("11112222333344445555") == "****************5555"
    assert masked("1234") == "****" and masked("") == ""


# ------------------------------------------------------------ Session, without sockets
class Sink:
    def __init__(self) -> None:
        self.data = bytearray()

    def write(self, data: bytes) -> None:
        self.data += data

    async def drain(self) -> None:
        pass


def session_on(data: bytes, *, eof: bool = True, timeout: float = 2.0) -> tuple[Session, asyncio.StreamReader, Sink]:
    reader = asyncio.StreamReader(limit=MAX_LINE)
    reader.feed_data(data)
    if eof:
        reader.feed_eof()
    sink = Sink()
    return Session(reader, sink, AgiEnv(channel="PJSIP/2001-1", uniqueid="1.1"), command_timeout=timeout), reader, sink


async def test_interim_100_lines_are_skipped():
    s, _, sink = session_on(b"100 result=0 Trying...\n100 result=0 Trying...\n200 result=0\n")
    assert await s.cmd("ANSWER") == Reply(200, "0") and bytes(sink.data) == b"ANSWER\n"


async def test_an_in_band_hangup_before_the_reply_keeps_the_stream_in_step():
    s, reader, sink = session_on(b"HANGUP\n200 result=1\n200 result=7\n")
    with pytest.raises(Hangup) as e:
        await s.cmd("SET VARIABLE", "X", "1")
    assert s.hung_up and e.value.reply == Reply(200, "1")
    assert await reader.readuntil(b"\n") == b"200 result=7\n"       # the command's own reply was read, no more
    with pytest.raises(Hangup):
        await s.cmd("ANSWER")
    assert bytes(sink.data) == b"SET VARIABLE X 1\n"                  # nothing sent once hung up


async def test_a_hangup_instead_of_the_reply():
    s, _, _ = session_on(b"HANGUP\n")                                 # then Asterisk closes
    with pytest.raises(Hangup):
        await s.cmd("STREAM FILE", "x", "")
    s, _, _ = session_on(b"HANGUP\n", eof=False, timeout=0.2)        # or never answers
    with pytest.raises(Hangup):
        await s.cmd("STREAM FILE", "x", "")


async def test_511_and_eof_are_hangups():
    for data in (DEAD, b"", b"200 res"):
        s, _, _ = session_on(data)
        with pytest.raises(Hangup):
            await s.cmd("ANSWER")
        assert s.hung_up


async def test_510_and_520_are_command_errors_and_the_stream_stays_in_step():
    s, _, _ = session_on(b"510 Invalid or unknown command\n" + USAGE_520 + b"200 result=1\n")
    with pytest.raises(AgiCommandError) as e:
        await s.cmd("FOO")
    assert e.value.reply.code == 510
    with pytest.raises(AgiCommandError) as e:
        await s.cmd("ANSWER")
    assert e.value.reply.code == 520 and "Usage: ANSWER" in e.value.reply.data
    assert await s.cmd("VERBOSE", "x", 1) == Reply(200, "1") and not s.hung_up


async def test_no_reply_within_the_deadline():
    s, _, _ = session_on(b"", eof=False, timeout=0.2)
    with pytest.raises(AgiProtocolError, match="no reply"):
        await s.cmd("ANSWER")


@pytest.mark.parametrize("data", [b"200 result=" + b"1" * (MAX_LINE + 10) + b"\n", b"garbage\n",
                                  b"999 x\n"])
async def test_a_reply_that_is_not_one(data):
    s, _, _ = session_on(data)
    with pytest.raises(AgiProtocolError):
        await s.cmd("ANSWER")


async def test_a_command_with_a_line_break_is_not_sent():
    s, _, sink = session_on(b"200 result=1\n")
    with pytest.raises(ValueError):
        await s.cmd("SET VARIABLE", "__CARTEIRINHA", "1\nHANGUP")
    assert sink.data == b""


# ------------------------------------------------------------ the script, over TCP
async def test_the_whole_script(make_server):
    server = await make_server()
    fake = await FakeAsterisk(server.port).run()
    assert fake.lines == HAPPY and fake.closed_by_server
    assert fake.commands[2] == b"GET FULL VARIABLE ${CHANNEL(linkedid)}\n"
    assert fake.commands[5] == b'STREAM FILE protocolo-intro ""\n'
    assert fake.commands[6] == b'SAY DIGITS 12345620250701000001 "1"\n'
    protocols = ivr(server)
    assert protocols.issues == [{"channel": "phone", "call_id": UNIQUEID, "call_ids": (), "ani": "201",
                                 "beneficiary": "", "agi_channel": "SIP/xxxxxx-00000000", "dnis": "9011"}]
    assert protocols.checks == [] and protocols.marks == [(NUMBER, "announced")]
    assert server.counts == {"sessions": 1, "refused": 0, "protocol_errors": 0, "hangups": 0, "issued": 1,
                             "failures": 0}


async def test_a_channel_already_up_is_not_answered_again(make_server):
    server = await make_server()
    fake = await FakeAsterisk(server.port, replies={"CHANNEL STATUS": [b"200 result=6\n"]}).run()
    assert fake.lines == ["CHANNEL STATUS"] + HAPPY[2:]


async def test_answer_off(make_server):
    server = await make_server(options=IvrOptions(answer=False))
    assert (await FakeAsterisk(server.port).run()).lines == HAPPY[2:]


async def test_the_same_call_asking_twice_gets_the_same_number(make_server):
    server = await make_server()
    first = await FakeAsterisk(server.port).run()
    second = await FakeAsterisk(server.port).run()
    assert first.lines == second.lines == HAPPY
    assert [kw["call_id"] for kw in ivr(server).issues] == [UNIQUEID, UNIQUEID]
    other = await FakeAsterisk(server.port, env_block(uniqueid="1437920999.7")).run()
    assert "SET VARIABLE __PROTOCOLO_ANS 12345620250701000002" in other.lines


async def test_the_variable_name_is_configurable(make_server):
    server = await make_server(options=IvrOptions(variable="PROTOCOLO"))
    assert f"SET VARIABLE __PROTOCOLO {NUMBER}" in (await FakeAsterisk(server.port).run()).lines


# ------------------------------------------------------------ the call's id: its linkedid
async def test_the_number_is_issued_under_the_linkedid(make_server):
    server = await make_server()
    fake = await FakeAsterisk(server.port, replies={"GET FULL VARIABLE": [
        f"200 result=1 ({LINKEDID})\n".encode()]}).run()
    assert fake.lines == HAPPY and fake.closed_by_server
    issue = ivr(server).issues[0]
    assert (issue["call_id"], issue["call_ids"]) == (LINKEDID, (UNIQUEID,))
    assert issue["agi_channel"] == "SIP/xxxxxx-00000000"
    # another AGI channel of the same call (after a transfer, say) gets the same number
    other = await FakeAsterisk(server.port, env_block(uniqueid="1733065299.40"), replies={"GET FULL VARIABLE": [
        f"200 result=1 ({LINKEDID})\n".encode()]}).run()
    assert other.lines == HAPPY
    assert [(kw["call_id"], kw["call_ids"]) for kw in ivr(server).issues] == [
        (LINKEDID, (UNIQUEID,)), (LINKEDID, ("1733065299.40",))]


@pytest.mark.parametrize("reply", [
    b"200 result=0\n",                                  # not available
    b"200 result=1 ()\n",                               # an empty value
    b"200 result=1\n",
    b"510 Invalid or unknown command\n",
    b"520 Invalid command syntax.  Proper usage not available.\n",
])
async def test_no_linkedid_the_uniqueid_is_the_call_id(make_server, reply):
    server = await make_server()
    fake = await FakeAsterisk(server.port, replies={"GET FULL VARIABLE": [reply]}).run()
    assert fake.lines == HAPPY and fake.closed_by_server
    issue = ivr(server).issues[0]
    assert (issue["call_id"], issue["call_ids"]) == (UNIQUEID, ())
    assert ivr(server).marks == [(NUMBER, "announced")]
    assert server.counts["hangups"] == 0 and server.counts["issued"] == 1


async def test_a_refused_linkedid_is_warned_about_once(make_server, caplog, monkeypatch):
    from smartcti_gateway.ans import agi_server
    monkeypatch.setattr(agi_server, "_no_linkedid", agi_server._Once())
    caplog.set_level(logging.WARNING, logger="smartcti_gateway.ans.agi")
    server = await make_server()
    for _ in range(2):
        fake = await FakeAsterisk(server.port, replies={"GET FULL VARIABLE": [
            b"510 Invalid or unknown command\n"]}).run()
        assert fake.lines == HAPPY
    warnings = [r for r in caplog.records if "GET FULL VARIABLE" in r.getMessage()]
    assert len(warnings) == 1 and "uniqueid" in warnings[0].getMessage()


# ------------------------------------------------------------ the beneficiary's card
CARD_OPTIONS = dict(beneficiary_prompt="digite-carteirinha", beneficiary_invalid_prompt="carteirinha-invalida")
CARD_1, CARD_2 = "11112222333344445555", "99998888777766664321"


async def test_a_card_rejected_then_accepted(make_server, caplog):
    caplog.set_level(logging.DEBUG, logger="smartcti_gateway.ans.agi")
    server = await make_server(FakeProtocols(valid=[False, True]), IvrOptions(**CARD_OPTIONS))
    fake = await FakeAsterisk(server.port, replies={"GET DATA": [
        f"200 result={CARD_1}\n".encode(), f"200 result={CARD_2} (timeout)\n".encode()]}).run()
    assert fake.lines == ["CHANNEL STATUS", "ANSWER",
                          "GET DATA digite-carteirinha 7000 20",
                          'STREAM FILE carteirinha-invalida ""',
                          "GET DATA digite-carteirinha 7000 20",
                          GET_LINKEDID,
                          f"SET VARIABLE __PROTOCOLO_ANS {NUMBER}",
                          f"SET VARIABLE CDR(userfield) {NUMBER}",
                          f"SET VARIABLE __CARTEIRINHA {CARD_2}", *ANNOUNCE]
    protocols = ivr(server)
    assert protocols.checks == [(CARD_1, "201"), (CARD_2, "201")]
    assert protocols.issues[0]["beneficiary"] == CARD_2
    assert CARD_1 not in caplog.text and CARD_2 not in caplog.text
    assert "****************5555" in caplog.text                      # the rejected card, masked


async def test_no_hook_the_card_is_kept(make_server):
    server = await make_server(FakeProtocols(valid=[None]), IvrOptions(**CARD_OPTIONS))
    fake = await FakeAsterisk(server.port, replies={"GET DATA": [f"200 result={CARD_1}\n".encode()]}).run()
    assert fake.lines.count("GET DATA digite-carteirinha 7000 20") == 1
    assert f"SET VARIABLE __CARTEIRINHA {CARD_1}" in fake.lines
    assert ivr(server).checks == [(CARD_1, "201")] and ivr(server).issues[0]["beneficiary"] == CARD_1


async def test_a_card_rejected_every_time_still_gets_a_number(make_server):
    server = await make_server(FakeProtocols(valid=[False, False]), IvrOptions(**CARD_OPTIONS))
    fake = await FakeAsterisk(server.port, replies={"GET DATA": [
        f"200 result={CARD_1}\n".encode(), f"200 result={CARD_2}\n".encode()]}).run()
    assert fake.lines.count("GET DATA digite-carteirinha 7000 20") == 2
    assert fake.lines.count('STREAM FILE carteirinha-invalida ""') == 1      # not after the last try
    assert ivr(server).issues[0]["beneficiary"] == CARD_2 and f"SET VARIABLE __PROTOCOLO_ANS {NUMBER}" in fake.lines


async def test_no_card_typed(make_server):
    server = await make_server(options=IvrOptions(**CARD_OPTIONS, beneficiary_tries=3, beneficiary_digits=12,
                                                  beneficiary_timeout=5.5))
    fake = await FakeAsterisk(server.port).run()                           # GET DATA times out every time
    assert fake.lines[2:5] == ["GET DATA digite-carteirinha 5500 12"] * 3
    assert not any("CARTEIRINHA" in line for line in fake.lines)
    assert ivr(server).checks == [] and ivr(server).issues[0]["beneficiary"] == ""


@pytest.mark.parametrize("script,args", [("protocolo", ("nobeneficiary",)), ("protocolo?beneficiary=no", ())])
async def test_the_card_question_skipped_by_the_dialplan(make_server, script, args):
    server = await make_server(options=IvrOptions(**CARD_OPTIONS))
    fake = await FakeAsterisk(server.port, env_block(script, args=args)).run()
    assert fake.lines == HAPPY


# ------------------------------------------------------------ the announcement
async def test_the_key_after_the_number_repeats_it(make_server):
    server = await make_server()
    fake = await FakeAsterisk(server.port, replies={"WAIT FOR DIGIT": [b"200 result=49\n"]}).run()
    assert fake.lines == HAPPY + ANNOUNCE
    assert ivr(server).marks == [(NUMBER, "announced")]


async def test_repeats_are_bounded(make_server):
    server = await make_server()
    fake = await FakeAsterisk(server.port, replies={"WAIT FOR DIGIT": [b"200 result=49\n"] * 5}).run()
    assert fake.lines == HAPPY + ANNOUNCE + ['STREAM FILE protocolo-intro ""', f'SAY DIGITS {NUMBER} ""']


async def test_another_key_does_not_repeat(make_server):
    server = await make_server()
    fake = await FakeAsterisk(server.port, replies={"WAIT FOR DIGIT": [b"200 result=50\n"]}).run()
    assert fake.lines == HAPPY


async def test_the_key_during_the_digits_repeats_them(make_server):
    server = await make_server()
    fake = await FakeAsterisk(server.port, replies={"SAY DIGITS": [b"200 result=49\n"]}).run()
    assert fake.lines == HAPPY[:-1] + ANNOUNCE
    assert ivr(server).marks == [(NUMBER, "announced")]


async def test_the_repeat_prompt(make_server):
    server = await make_server(options=IvrOptions(repeat_prompt="para-ouvir-novamente", repeats=1, repeat_wait=2.5))
    fake = await FakeAsterisk(server.port, replies={"STREAM FILE": [
        b"200 result=0 endpos=8000\n", b"200 result=49 endpos=1200\n"]}).run()
    assert fake.lines == HAPPY[:-1] + ['STREAM FILE para-ouvir-novamente "1"',
                                       'STREAM FILE protocolo-intro ""', f'SAY DIGITS {NUMBER} ""']
    fake = await FakeAsterisk(server.port).run()                           # the prompt ends, no key: wait
    assert fake.lines[-2:] == ['STREAM FILE para-ouvir-novamente "1"', "WAIT FOR DIGIT 2500"]


async def test_no_repeat_key_no_intro(make_server):
    server = await make_server(options=IvrOptions(repeat_key="", intro=""))
    fake = await FakeAsterisk(server.port).run()
    assert fake.lines == HAPPY[:5] + [f'SAY DIGITS {NUMBER} ""']
    assert ivr(server).marks == [(NUMBER, "announced")]


@pytest.mark.parametrize("script,args", [("protocolo", ("noannounce",)), ("protocolo?announce=no", ()),
                                         ("/protocolo?announce=NO", ("x",))])
async def test_the_announcement_skipped_by_the_dialplan(make_server, script, args):
    server = await make_server()
    fake = await FakeAsterisk(server.port, env_block(script, args=args)).run()
    assert fake.lines == HAPPY[:5] and fake.closed_by_server
    assert ivr(server).marks == [] and ivr(server).issues[0]["call_id"] == UNIQUEID


async def test_a_missing_sound_file_is_logged_once_and_the_number_still_said(make_server, caplog):
    caplog.set_level(logging.WARNING, logger="smartcti_gateway.ans.agi")
    server = await make_server(options=IvrOptions(intro="custom/intro-not-installed"))
    for _ in range(2):
        fake = await FakeAsterisk(server.port, replies={"STREAM FILE": [b"200 result=-1 endpos=0\n"],
                                                        "CHANNEL STATUS": [b"200 result=4\n", b"200 result=6\n"]}).run()
        assert fake.lines == HAPPY[:5] + ['STREAM FILE custom/intro-not-installed ""', "CHANNEL STATUS",
                                          f'SAY DIGITS {NUMBER} "1"', "WAIT FOR DIGIT 3000"]
    assert caplog.text.count("custom/intro-not-installed") == 1
    assert ivr(server).marks == [(NUMBER, "announced")] * 2


async def test_an_alphanumeric_number_is_said_letter_by_letter(make_server):
    protocols = FakeProtocols()
    protocols.by_call[UNIQUEID] = "2025/AB-17"
    server = await make_server(protocols)
    fake = await FakeAsterisk(server.port).run()
    assert 'SAY ALPHA 2025/AB-17 "1"' in fake.lines


# ------------------------------------------------------------ hang-ups
@pytest.mark.parametrize("replies,last,issued", [
    ({"CHANNEL STATUS": [DEAD]}, "CHANNEL STATUS", False),
    ({"ANSWER": [DEAD]}, "ANSWER", False),
    ({"ANSWER": [b"HANGUP\n200 result=-1\n"]}, "ANSWER", False),
    ({"GET FULL VARIABLE": [DEAD]}, GET_LINKEDID, False),
    ({"GET FULL VARIABLE": [f"HANGUP\n200 result=1 ({LINKEDID})\n".encode()]}, GET_LINKEDID, False),
    ({"GET FULL VARIABLE": [EOF]}, GET_LINKEDID, False),
    ({"SET VARIABLE": [DEAD]}, f"SET VARIABLE __PROTOCOLO_ANS {NUMBER}", True),
    ({"SET VARIABLE": [b"200 result=1\n", b"HANGUP\n200 result=1\n"]}, f"SET VARIABLE CDR(userfield) {NUMBER}", True),
    ({"STREAM FILE": [DEAD]}, 'STREAM FILE protocolo-intro ""', True),
    ({"SAY DIGITS": [b"HANGUP\n100 result=0 Trying...\n200 result=-1\n"]}, f'SAY DIGITS {NUMBER} "1"', True),
    ({"STREAM FILE": [b"200 result=-1 endpos=0\n"], "CHANNEL STATUS": [b"200 result=4\n", DEAD]},
     "CHANNEL STATUS", True),
    ({"SET VARIABLE": [EOF]}, f"SET VARIABLE __PROTOCOLO_ANS {NUMBER}", True),
    ({"SAY DIGITS": [(b"HANGUP\n", EOF)]}, f'SAY DIGITS {NUMBER} "1"', True),
])
async def test_a_hangup_ends_the_script(make_server, replies, last, issued):
    server = await make_server()
    fake = await FakeAsterisk(server.port, replies=replies).run(deadline=3.0)
    assert fake.closed_by_server and fake.lines[-1] == last
    protocols = ivr(server)
    assert len(protocols.issues) == int(issued)
    assert protocols.marks == ([(NUMBER, "caller_hung_up")] if issued else [])
    assert server.counts["hangups"] == 1 and server.counts["issued"] == int(issued)
    await normal_session(server)


async def test_a_hangup_after_the_number_was_heard_keeps_it_announced(make_server):
    server = await make_server()
    fake = await FakeAsterisk(server.port, replies={"WAIT FOR DIGIT": [DEAD]}).run()
    assert fake.lines == HAPPY and fake.closed_by_server
    assert ivr(server).marks == [(NUMBER, "announced")] and server.counts["hangups"] == 1


async def test_a_hangup_with_no_reply_at_all(make_server):
    server = await make_server(command_timeout=0.5)
    loop = asyncio.get_running_loop()
    started = loop.time()
    fake = await FakeAsterisk(server.port, replies={"STREAM FILE": [(b"HANGUP\n", SILENCE)]}).run(deadline=3.0)
    assert fake.closed_by_server and loop.time() - started < 2.5
    assert fake.lines[-1] == 'STREAM FILE protocolo-intro ""'
    assert ivr(server).marks == [(NUMBER, "caller_hung_up")]


# ------------------------------------------------------------ Asterisk refusing a command
async def test_interim_100_lines(make_server):
    server = await make_server()
    fake = await FakeAsterisk(server.port, replies={
        "ANSWER": [b"100 result=0 Trying...\n200 result=0\n"],
        "SAY DIGITS": [b"100 result=0 Trying...\n100 result=0 Trying...\n200 result=0\n"]}).run()
    assert fake.lines == HAPPY


async def test_a_520_usage_text_answering_a_command(make_server):
    server = await make_server()
    fake = await FakeAsterisk(server.port, replies={"ANSWER": [USAGE_520]}).run()
    assert fake.lines == HAPPY                     # the usage text read whole: every reply after is its own
    assert ivr(server).marks == [(NUMBER, "announced")]


async def test_510_during_the_announcement_ends_it(make_server):
    server = await make_server()
    fake = await FakeAsterisk(server.port, replies={"SAY DIGITS": [b"510 Invalid or unknown command\n"]}).run()
    assert fake.lines == HAPPY[:-1] and fake.closed_by_server
    assert ivr(server).marks == [] and server.counts["hangups"] == 0
    await normal_session(server)


async def test_unknown_script(make_server, caplog):
    caplog.set_level(logging.WARNING, logger="smartcti_gateway.ans.agi")
    server = await make_server()
    fake = await FakeAsterisk(server.port, env_block("outra/coisa?x=1")).run()
    assert fake.commands == [b'VERBOSE "smartcti-gateway: unknown AGI script outra/coisa" 1\n']
    assert fake.closed_by_server and ivr(server).issues == []
    assert "'outra/coisa'" in caplog.text
    await normal_session(server)


# ------------------------------------------------------------ no number
async def test_no_number_the_call_goes_on_flagged(make_server):
    server = await make_server(FakeProtocols(fail=ProtocolError("every sequence number of the day is taken")))
    fake = await FakeAsterisk(server.port).run()
    assert fake.lines == ["CHANNEL STATUS", "ANSWER", GET_LINKEDID, "SET VARIABLE PROTOCOLO_ANS_ERRO 1",
                          'VERBOSE "smartcti-gateway: no ANS protocol: every sequence number of the day is taken" 1']
    assert fake.closed_by_server and ivr(server).marks == []
    assert server.counts["failures"] == 1 and server.counts["issued"] == 0


async def test_a_reason_on_several_lines_is_said_on_one(make_server):
    server = await make_server(FakeProtocols(fail=ProtocolError("database locked\r\nANSWER\0")))
    fake = await FakeAsterisk(server.port).run()
    assert fake.lines[-1] == 'VERBOSE "smartcti-gateway: no ANS protocol: database locked ANSWER" 1'


async def test_a_protocol_service_that_does_not_answer(make_server):
    protocols = FakeProtocols()
    protocols.block = asyncio.Event()
    server = await make_server(protocols, command_timeout=0.3)
    fake = await FakeAsterisk(server.port).run(deadline=3.0)
    assert fake.lines[3] == "SET VARIABLE PROTOCOLO_ANS_ERRO 1" and fake.lines[4].startswith("VERBOSE ")
    assert server.counts["failures"] == 1


async def test_a_bug_in_the_protocol_service_ends_the_session_only(make_server, caplog):
    caplog.set_level(logging.ERROR, logger="smartcti_gateway.ans.agi")
    server = await make_server(FakeProtocols(fail=ZeroDivisionError("boom")))
    fake = await FakeAsterisk(server.port).run()
    assert fake.closed_by_server and fake.lines == ["CHANNEL STATUS", "ANSWER", GET_LINKEDID]
    assert server.counts["failures"] == 1 and "boom" in caplog.text
    server.protocols.fail = None
    await normal_session(server)


# ------------------------------------------------------------ hostile peers
async def closed_within(port: int, payload: bytes, *, eof: bool = False, deadline: float = 3.0) -> tuple[bytes, float]:
    """Send ``payload``; what the server sent back and how long until it closed (EOF or reset)."""
    loop = asyncio.get_running_loop()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = loop.time()
    got = b""
    try:
        try:
            writer.write(payload)
            if eof:
                writer.write_eof()
            await writer.drain()
        except ConnectionError:
            pass
        async with asyncio.timeout(deadline):
            while True:
                try:
                    chunk = await reader.read(65536)
                except ConnectionError:
                    break
                if not chunk:
                    break
                got += chunk
    finally:
        writer.close()
    return got, loop.time() - started


HOSTILE_AT_ONCE = {
    "http": b"GET / HTTP/1.1\r\nHost: gateway\r\n\r\n",
    "a 1 MB line": b"agi_network: " + b"x" * (1 << 20),
    "non-UTF-8": b"agi_network: yes\nagi_calleridname: Jo\xe3o\n\n",
    "too many lines": b"".join(b"agi_x_%d: v\n" % i for i in range(MAX_ENV_LINES + 5)),
    "blank first": b"\n",
}
HOSTILE_SILENT = {
    "binary garbage": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
    "no blank line": env_block(blank=False),
}


@pytest.mark.parametrize("name", sorted(HOSTILE_AT_ONCE))
async def test_hostile_input_is_closed_at_once(make_server, name):
    server = await make_server(header_timeout=3.0)
    got, took = await closed_within(server.port, HOSTILE_AT_ONCE[name])
    assert got == b"" and took < 2.0                  # well before the header deadline
    assert server.counts["protocol_errors"] == 1 and server.counts["sessions"] == 0
    await normal_session(server)


@pytest.mark.parametrize("name", sorted(HOSTILE_SILENT))
async def test_hostile_input_is_closed_at_the_header_deadline(make_server, name):
    server = await make_server(header_timeout=0.5)
    got, took = await closed_within(server.port, HOSTILE_SILENT[name])
    assert got == b"" and 0.4 <= took < 2.5
    assert server.counts["protocol_errors"] == 1
    await normal_session(server)


async def test_eof_in_the_middle_of_the_environment(make_server, caplog):
    caplog.set_level(logging.WARNING, logger="smartcti_gateway.ans.agi")
    server = await make_server(header_timeout=3.0)
    got, took = await closed_within(server.port, env_block()[:200], eof=True)
    assert got == b"" and took < 2.0 and server.counts["protocol_errors"] == 1
    assert "closed before the end of the AGI environment" in caplog.text
    got, _ = await closed_within(server.port, b"", eof=True)             # a port check: not an error
    assert got == b"" and server.counts["protocol_errors"] == 1
    await normal_session(server)


async def test_a_peer_not_allowed_is_closed_at_once(make_server, caplog):
    caplog.set_level(logging.WARNING, logger="smartcti_gateway.ans.agi")
    server = await make_server(allow=(ipaddress.ip_network("127.0.0.2/32"),), header_timeout=3.0)
    for _ in range(2):
        fake = await FakeAsterisk(server.port).run(deadline=2.0)           # from 127.0.0.1
        assert fake.closed_by_server and fake.commands == []
    assert server.counts["refused"] == 2 and server.counts["sessions"] == 0
    assert ivr(server).issues == []
    warnings = [r for r in caplog.records if "agi_allow" in r.getMessage()]
    assert len(warnings) == 1 and "127.0.0.1" in warnings[0].getMessage()
    await normal_session(server, local_addr=("127.0.0.2", 0))


async def test_many_sessions_at_once(make_server):
    server = await make_server()
    fakes = [FakeAsterisk(server.port, env_block(uniqueid=f"1700000000.{i}")) for i in range(60)]
    await asyncio.gather(*(f.run(deadline=10.0) for f in fakes))
    numbers = set()
    for fake in fakes:
        assert fake.closed_by_server and len(fake.lines) == len(HAPPY)
        assert fake.lines[3].startswith("SET VARIABLE __PROTOCOLO_ANS ")
        numbers.add(fake.lines[3].rpartition(" ")[2])
    assert len(numbers) == 60
    assert server.counts["sessions"] == server.counts["issued"] == 60


async def test_close_ends_open_sessions(make_server):
    server = await make_server()
    fake = FakeAsterisk(server.port, replies={"ANSWER": [SILENCE]})
    run = asyncio.ensure_future(fake.run(deadline=3.0))
    async with asyncio.timeout(3.0):
        while "ANSWER" not in fake.lines:
            fake.got_command.clear()
            await fake.got_command.wait()
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with asyncio.timeout(2.0):
        await server.close()
    assert loop.time() - started < 2.0
    await run
    assert fake.closed_by_server and fake.lines == ["CHANNEL STATUS", "ANSWER"]
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", server.port)


async def test_a_card_is_never_logged_whole_even_when_asterisk_refuses_it(make_server, caplog):
    caplog.set_level(logging.DEBUG, logger="smartcti_gateway.ans.agi")
    server = await make_server(FakeProtocols(valid=[True]), IvrOptions(**CARD_OPTIONS), command_timeout=0.5)
    fake = await FakeAsterisk(server.port, replies={"GET DATA": [f"200 result={CARD_1}\n".encode()],
                                                    "SET VARIABLE": [b"200 result=1\n", b"200 result=1\n",
                                                                     SILENCE]}).run(deadline=3.0)
    assert fake.lines[-1] == f"SET VARIABLE __CARTEIRINHA {CARD_1}" and fake.closed_by_server
    assert "no reply to SET VARIABLE __CARTEIRINHA" in caplog.text and CARD_1 not in caplog.text
    assert server.counts["protocol_errors"] == 1
