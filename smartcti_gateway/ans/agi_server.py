"""The FastAGI server and the ``protocolo`` IVR script: the number of an attendance given on the phone.

The dialplan runs ``AGI(agi://<gateway>:<port>/protocolo)`` before ``Queue()``; the script answers
the call, may ask for the beneficiary's card, has the protocol service issue the attendance's number
(the same one if the call asks twice), puts it on the channel (``__PROTOCOLO_ANS``, inherited by the
agent's channel, and ``CDR(userfield)``), speaks it, and offers to repeat it. Closing the socket
returns the call to the dialplan: Asterisk waits for that close (asterisk-ans-dialler.md §2.3).

Only the addresses of ``protocol.agi_allow`` may connect; every read has a deadline and a size
bound; whatever a peer sends, one session's failure ends that session only.
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from ..networks import Network, peer_address
from .agi import MAX_LINE, AgiEnv, AgiProtocolError, EnvParser, Quoted, Reply, ReplyReader, command
from .store import ProtocolError

log = logging.getLogger("smartcti_gateway.ans.agi")

SCRIPT = "protocolo"
UP = "6"                     # CHANNEL STATUS: AST_STATE_UP
MAX_REMEMBERED = 1000        # addresses / sound files a warning is logged once for


class Hangup(Exception):
    """The caller hung up (in-band HANGUP, 511, or Asterisk closed the connection). ``reply`` is the
    command's own reply when one came after the HANGUP line."""

    def __init__(self, message: str, reply: Reply | None = None):
        super().__init__(message)
        self.reply = reply


def _named(words: tuple) -> str:
    """A command for a log line: its name (and a variable's), never its values (a card number)."""
    verb = str(words[0]).upper() if words else "?"
    return f"{verb} {words[1]}" if verb == "SET VARIABLE" and len(words) > 1 else verb


class AgiCommandError(Exception):
    """Asterisk refused a command (510 unknown command, 520 bad syntax): a bug on our side or an
    Asterisk version that lacks it. The session is still in step."""

    def __init__(self, words: tuple, reply: Reply):
        super().__init__(f"Asterisk answered {reply.code} to {_named(words)}: "
                         f"{reply.data.splitlines()[0] if reply.data else ''}")
        self.reply = reply


@dataclass
class IvrOptions:
    """``protocol.ivr`` in the config. Sound files are names without extension, as Playback takes them."""

    answer: bool = True
    beneficiary_prompt: str = ""         # "" = the card number is not asked for
    beneficiary_digits: int = 20
    beneficiary_timeout: float = 7.0     # seconds (GET DATA takes ms)
    beneficiary_tries: int = 2
    beneficiary_invalid_prompt: str = ""
    intro: str = "protocolo-intro"       # played before the digits; "" = none
    repeat_key: str = "1"                # "" = no repeat offered
    repeat_prompt: str = ""              # after the number, e.g. "para ouvir novamente tecle 1"
    repeat_wait: float = 3.0
    repeats: int = 2
    variable: str = "PROTOCOLO_ANS"


def masked(card: str) -> str:
    """A card number for a log line: all but its last 4 characters hidden."""
    return "*" * len(card) if len(card) <= 4 else "*" * (len(card) - 4) + card[-4:]


class _Once:
    """Remembers what a warning was logged for, so it is logged once; bounded."""

    def __init__(self) -> None:
        self._seen: set[Any] = set()

    def first(self, key: Any) -> bool:
        if key in self._seen:
            return False
        if len(self._seen) < MAX_REMEMBERED:
            self._seen.add(key)
        return True


_missing_sounds = _Once()
_no_linkedid = _Once()


class Session:
    """One FastAGI session: commands sent one at a time, each reply read with a deadline.

    ``issued``, ``announced``, ``failure``: what the script did, for the server's counters."""

    def __init__(self, reader: asyncio.StreamReader, writer: Any, env: AgiEnv, *, command_timeout: float = 30.0):
        self.reader, self.writer, self.env = reader, writer, env
        self.command_timeout = command_timeout
        self.hung_up = False
        self.issued = ""           # the number the script issued
        self.announced = False     # the caller heard it to its end once
        self.failure = ""          # why no number was issued
        self._lock = asyncio.Lock()

    def where(self) -> str:
        return f"{self.env.channel or '?'} ({self.env.uniqueid or 'no uniqueid'})"

    async def cmd(self, *words: object, timeout: float | None = None) -> Reply:
        """Send one command; its 200 reply. Hangup on 511, on EOF, or when an in-band HANGUP came (the
        command's own reply is read first, so the next command reads its own); AgiCommandError on
        510/520; AgiProtocolError on anything else, or no reply within the deadline."""
        if self.hung_up:
            raise Hangup("the caller has hung up")
        data = command(*words)
        limit = self.command_timeout if timeout is None else timeout
        async with self._lock:
            try:
                self.writer.write(data)
                async with asyncio.timeout(limit):
                    await self.writer.drain()
                    reply = await self._reply()
            except TimeoutError:
                if self.hung_up:
                    raise Hangup("the caller hung up (no reply after HANGUP)") from None
                raise AgiProtocolError(f"no reply to {_named(words)} within {limit:g} s") from None
            except ConnectionError as e:
                self.hung_up = True
                raise Hangup(f"the connection broke ({e})") from None
        if reply.code == 511:
            self.hung_up = True
            raise Hangup("the channel is dead (511)", reply)
        if reply.code in (510, 520):
            raise AgiCommandError(words, reply)
        if self.hung_up:
            raise Hangup("the caller hung up", reply)
        return reply

    async def _reply(self) -> Reply:
        parser = ReplyReader()
        while True:
            try:
                raw = await self.reader.readuntil(b"\n")
            except asyncio.IncompleteReadError:
                self.hung_up = True
                raise Hangup("Asterisk closed the connection") from None
            except asyncio.LimitOverrunError:
                raise AgiProtocolError(f"AGI reply: a line longer than {MAX_LINE} bytes") from None
            reply = parser.feed(raw)
            if reply is None or reply.code == 100:
                continue
            if reply.is_hangup:
                self.hung_up = True
                continue
            return reply


# --------------------------------------------------------------------- the script
def _flags(env: AgiEnv) -> tuple[bool, bool]:
    """(announce, ask for the card) as the dialplan's arguments or query allow."""
    args = {a.strip().lower() for a in env.args}
    query = {k.strip().lower(): v.strip().lower() for k, v in env.query.items()}
    announce = "noannounce" not in args and query.get("announce") != "no"
    beneficiary = "nobeneficiary" not in args and query.get("beneficiary") != "no"
    return announce, beneficiary


async def _alive_after_failure(session: Session, sound: str = "") -> None:
    """A command answered -1: a hang-up, or a sound file missing. CHANNEL STATUS tells which (511 ->
    Hangup); a missing file is logged once per name, and the script goes on."""
    await session.cmd("CHANNEL STATUS")
    if sound and _missing_sounds.first((sound, session.env.language)):
        log.warning("ANS IVR: Asterisk could not play %s on %s (language %s): install it in Asterisk's sounds "
                    "directory for that language, or change protocol.ivr", sound, session.where(),
                    session.env.language or "?")


async def _play(session: Session, sound: str, escape: str = "") -> str:
    """STREAM FILE; the key that cut it ("" for none)."""
    reply = await session.cmd("STREAM FILE", sound, Quoted(escape))
    if reply.result == "-1":
        await _alive_after_failure(session, repr(sound))
        return ""
    return reply.digit


async def _answer(session: Session) -> None:
    """ANSWER unless the channel is up. Asterisk refusing either command does not stop the script: the
    call still gets its number."""
    try:
        status = await session.cmd("CHANNEL STATUS")
        if status.result == UP:
            return
    except AgiCommandError as e:
        log.warning("ANS IVR %s: %s; answering anyway", session.where(), e)
    try:
        await session.cmd("ANSWER")
    except AgiCommandError as e:
        log.error("ANS IVR %s: %s; going on without answering", session.where(), e)


async def _collect(session: Session, protocols: Any, options: IvrOptions, env: AgiEnv) -> str:
    """The card typed ("" for none) in up to ``beneficiary_tries`` GET DATA; a card the site's hook
    rejects is asked again while tries remain. The last card typed is kept, valid or not."""
    card = ""
    tries = max(1, options.beneficiary_tries)
    timeout_ms = int(options.beneficiary_timeout * 1000)
    # the caller may take the whole timeout for each digit
    deadline = session.command_timeout + options.beneficiary_timeout * (options.beneficiary_digits + 1)
    for attempt in range(1, tries + 1):
        reply = await session.cmd("GET DATA", options.beneficiary_prompt, timeout_ms, options.beneficiary_digits,
                                  timeout=deadline)
        if reply.result == "-1":
            await _alive_after_failure(session, repr(options.beneficiary_prompt))
            return card
        typed = reply.result if reply.result.isdigit() else ""
        if not typed:
            log.info("ANS IVR %s: no card number typed (try %d of %d)", session.where(), attempt, tries)
            continue
        card = typed
        try:
            valid = await protocols.check_beneficiary(card, env.callerid)
        except Exception as e:  # noqa: BLE001 - the hook must never stop the call
            log.warning("ANS IVR %s: the beneficiary check failed (%s: %s); the number is issued anyway",
                        session.where(), type(e).__name__, e)
            valid = None
        if valid is False and attempt < tries:
            log.info("ANS IVR %s: card %s rejected by the beneficiary hook; asking again", session.where(),
                     masked(card))
            if options.beneficiary_invalid_prompt:
                await _play(session, options.beneficiary_invalid_prompt)
            continue
        if valid is False:
            log.info("ANS IVR %s: card %s rejected by the beneficiary hook, no tries left; the number is "
                     "issued with it", session.where(), masked(card))
        break
    return card


async def _announce(session: Session, protocols: Any, options: IvrOptions, number: str) -> None:
    """Intro and digits, then the repeat offer, up to ``repeats`` more times. The first time the caller
    hears the number to its end, it is marked ``announced`` (``session.announced``)."""
    key = options.repeat_key
    say = "SAY DIGITS" if number.isdigit() else "SAY ALPHA"     # an external generator's number may hold letters
    for play in range(max(0, options.repeats) + 1):
        offer = key if key and play < options.repeats else ""   # no repeat left: nothing cuts the digits
        if options.intro:
            await _play(session, options.intro)
        reply = await session.cmd(say, number, Quoted(offer))
        if reply.result == "-1":
            await _alive_after_failure(session, "the digits (digits/0 ... digits/9)")
            return
        if offer and reply.digit == offer:
            continue                      # the key during the digits: say it again
        if not session.announced:
            session.announced = True
            _mark(protocols, number, "announced")
        if not offer:
            return
        pressed = ""
        if options.repeat_prompt:
            pressed = await _play(session, options.repeat_prompt, offer)
        if not pressed:
            wait = await session.cmd("WAIT FOR DIGIT", int(options.repeat_wait * 1000))
            if wait.result == "-1":
                await _alive_after_failure(session)
                return
            pressed = wait.digit
        if pressed != offer:
            return


def _mark(protocols: Any, number: str, status: str) -> None:
    try:
        protocols.mark(number, status)
    except Exception as e:  # noqa: BLE001 - a record not updated must not stop the call
        log.error("ANS protocol %s: could not record %r (%s: %s)", number, status, type(e).__name__, e)


async def _call_id(session: Session, env: AgiEnv) -> str:
    """The id the call is known by: its Linkedid (the oldest channel of the call, what the Asterisk driver
    gives Protheus as CALLID), which is not the AGI channel's uniqueid when the call came through a Local
    channel, an Originate or a transfer. Asterisk not having it (result=0, an empty value, 510/520): the
    uniqueid. A hang-up propagates."""
    try:
        reply = await session.cmd("GET FULL VARIABLE", "${CHANNEL(linkedid)}")
    except AgiCommandError as e:
        if _no_linkedid.first(e.reply.code):
            log.warning("ANS IVR %s: %s; protocols are issued under the IVR channel's uniqueid, which is not the "
                        "CALLID Protheus sees when the call came through a Local channel, an Originate or a "
                        "transfer", session.where(), e)
        return env.uniqueid
    linkedid = reply.data.strip() if reply.result == "1" else ""
    if not linkedid:
        return env.uniqueid
    if linkedid != env.uniqueid:
        log.debug("ANS IVR %s: the call's linkedid is %s", session.where(), linkedid)
    return linkedid


async def protocolo(session: Session, protocols: Any, options: IvrOptions, env: AgiEnv) -> None:
    """Answer, maybe ask for the card, issue, set the channel variables, announce. Returns when the call
    should go back to the dialplan; a hang-up at any step ends it (the number kept, marked)."""
    announce, ask_card = _flags(env)
    number = ""
    try:
        if options.answer:
            await _answer(session)
        card = ""
        if options.beneficiary_prompt and ask_card:
            try:
                card = await _collect(session, protocols, options, env)
            except AgiCommandError as e:
                log.error("ANS IVR %s: the card could not be asked for: %s", session.where(), e)
        call_id = await _call_id(session, env)
        also = (env.uniqueid,) if env.uniqueid and call_id != env.uniqueid else ()   # found by the IVR's channel too
        try:
            async with asyncio.timeout(session.command_timeout):
                issued = await protocols.issue(channel="phone", call_id=call_id, call_ids=also, ani=env.callerid,
                                               beneficiary=card, agi_channel=env.channel,
                                               dnis=env.dnid or env.extension)
        except (ProtocolError, TimeoutError) as e:
            reason = str(e) or f"the protocol service gave no number within {session.command_timeout:g} s"
            session.failure = reason
            log.error("ANS IVR %s: no protocol number for this call (%s); it goes on to the dialplan "
                      "without one, with PROTOCOLO_ANS_ERRO=1", session.where(), reason)
            await session.cmd("SET VARIABLE", "PROTOCOLO_ANS_ERRO", "1")
            said = " ".join(reason.replace("\0", " ").split())[:300]     # one line, whatever the reason holds
            await session.cmd("VERBOSE", f"smartcti-gateway: no ANS protocol: {said}", "1")
            return
        number = session.issued = str(issued.number)
        await session.cmd("SET VARIABLE", f"__{options.variable}", number)
        await session.cmd("SET VARIABLE", "CDR(userfield)", number)
        if card:
            await session.cmd("SET VARIABLE", "__CARTEIRINHA", card)
        if announce:
            await _announce(session, protocols, options, number)
    except Hangup as e:
        log.info("ANS IVR %s: %s%s", session.where(), e,
                 f" after protocol {number} was issued" if number else " before a protocol was issued")
        if number and not session.announced:    # heard once: "announced" says more than the hang-up
            _mark(protocols, number, "caller_hung_up")
    except AgiCommandError as e:
        log.error("ANS IVR %s: %s; the call goes back to the dialplan", session.where(), e)


# --------------------------------------------------------------------- the server
class AgiServer:
    """``protocol.agi_listen``: FastAGI for the ``protocolo`` script; ``counts`` for /metrics."""

    def __init__(self, protocols: Any, options: IvrOptions, allow: tuple[Network, ...], *,
                 header_timeout: float = 5.0, command_timeout: float = 30.0):
        self.protocols = protocols
        self.options = options
        self.allow = tuple(allow)
        self.header_timeout = header_timeout
        self.command_timeout = command_timeout
        self.counts = {"sessions": 0, "refused": 0, "protocol_errors": 0, "hangups": 0, "issued": 0,
                       "failures": 0}
        self.port = 0
        self._server: asyncio.Server | None = None
        self._sessions: set[asyncio.Task] = set()
        self._refused = _Once()

    async def start(self, host: str, port: int) -> None:
        self._server = await asyncio.start_server(self._connected, host, port, limit=MAX_LINE)
        self.port = self._server.sockets[0].getsockname()[1]
        log.debug("ANS IVR: FastAGI listening on %s:%d (script %s)", host, self.port, SCRIPT)

    async def close(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        tasks = list(self._sessions)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if server is not None:
            try:
                async with asyncio.timeout(2.0):
                    await server.wait_closed()
            except TimeoutError:
                pass

    def _allowed(self, peer: str | None) -> bool:
        addr = peer_address(peer)
        return addr is not None and any(addr in net for net in self.allow)

    async def _connected(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peername = writer.get_extra_info("peername")
        host = peername[0] if isinstance(peername, tuple) and peername else None
        if not self._allowed(host):
            self.counts["refused"] += 1
            writer.close()
            if self._refused.first(host):
                log.warning("ANS IVR: refused a FastAGI connection from %s, not in protocol.agi_allow: if it is "
                            "an Asterisk that should run the protocolo script, add its address to "
                            "protocol.agi_allow", host or "an unknown peer")
            return
        task = asyncio.current_task()
        self._sessions.add(task)
        try:
            await self._serve(reader, writer, host)
        except Exception:  # noqa: BLE001 - one session's bug must not reach the server
            self.counts["failures"] += 1
            log.exception("ANS IVR: a FastAGI session from %s failed (a bug: please report it); the call goes "
                          "back to the dialplan", host)
        finally:
            self._sessions.discard(task)
            await self._close(writer)

    async def _close(self, writer: asyncio.StreamWriter) -> None:
        writer.close()
        try:
            async with asyncio.timeout(1.0):
                await writer.wait_closed()
        except (TimeoutError, ConnectionError, OSError):
            writer.transport.abort()

    async def _read_env(self, reader: asyncio.StreamReader) -> AgiEnv:
        parser = EnvParser()
        while True:
            try:
                raw = await reader.readuntil(b"\n")
            except asyncio.IncompleteReadError as e:
                if not parser.count and not e.partial:
                    raise EOFError from None
                raise AgiProtocolError(f"the connection closed before the end of the AGI environment "
                                       f"(after {parser.count} line(s))") from None
            except asyncio.LimitOverrunError:
                raise AgiProtocolError(f"AGI environment: a line longer than {MAX_LINE} bytes") from None
            env = parser.feed(raw)
            if env is not None:
                return env

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str | None) -> None:
        try:
            async with asyncio.timeout(self.header_timeout):
                env = await self._read_env(reader)
        except EOFError:
            log.info("ANS IVR: %s connected and closed without sending anything (a port check?)", host)
            return
        except TimeoutError:
            self.counts["protocol_errors"] += 1
            log.warning("ANS IVR: %s sent no complete AGI environment within %g s; connection closed (only "
                        "Asterisk's AGI(agi://...) should connect to this port)", host, self.header_timeout)
            return
        except (AgiProtocolError, ConnectionError) as e:
            self.counts["protocol_errors"] += 1
            log.warning("ANS IVR: %s is not speaking FastAGI (%s); connection closed (only Asterisk's "
                        "AGI(agi://...) should connect to this port)", host, e)
            return
        self.counts["sessions"] += 1
        session = Session(reader, writer, env, command_timeout=self.command_timeout)
        script = env.script.lstrip("/")
        try:
            if script != SCRIPT:
                log.warning("ANS IVR: %s asked for the AGI script %r on %s; the only one is %r: write "
                            "AGI(agi://<gateway>:<port>/%s) in the dialplan", host, script, session.where(),
                            SCRIPT, SCRIPT)
                await session.cmd("VERBOSE", f"smartcti-gateway: unknown AGI script {script}", "1")
                return
            await protocolo(session, self.protocols, self.options, env)
        except Hangup:
            pass
        except AgiCommandError as e:
            log.warning("ANS IVR %s: %s", session.where(), e)
        except (AgiProtocolError, ConnectionError) as e:
            self.counts["protocol_errors"] += 1
            log.warning("ANS IVR %s: %s; connection closed, the call goes back to the dialplan",
                        session.where(), e)
        finally:
            if session.hung_up:
                self.counts["hangups"] += 1
            if session.issued:
                self.counts["issued"] += 1
            if session.failure:
                self.counts["failures"] += 1
