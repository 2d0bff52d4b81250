"""The Asterisk Manager Interface on the wire, without I/O: bytes in, messages out, and actions as bytes.

AMI is ``Key: Value`` lines ended by CRLF, a message ended by an empty line, after a one-line banner
(``Asterisk Call Manager/9.0.0``). A response carries the ``ActionID`` of its action; a list action
answers ``Response: Success`` with ``EventList: start``, then its events, then one with
``EventList: Complete`` (asterisk-ans-dialler.md §3.1).

Our own rather than panoramisk's: its last release is from 2021, it re-sends pending actions after a
reconnect (a second Originate is a second call), and it sets no bound on what it buffers. The framing
is small enough to own and to test without sockets, with limits on what a peer may send.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

MAX_LINE = 8192          # bytes in one line: a value longer than any AMI field
MAX_FIELDS = 512         # lines in one message
MAX_MESSAGE = 256 * 1024


class AmiProtocolError(Exception):
    """What the peer sent is not AMI (or is beyond our bounds): the connection must be dropped."""


@dataclass
class Message:
    """One AMI message. ``fields`` keeps the last value of each key; repeated keys (``ChanVariable``)
    are kept in order in ``pairs``."""

    fields: dict[str, str] = field(default_factory=dict)
    pairs: list[tuple[str, str]] = field(default_factory=list)

    def get(self, key: str, default: str = "") -> str:
        return self.fields.get(key, default)

    def __getitem__(self, key: str) -> str:
        return self.fields[key]

    def __contains__(self, key: str) -> bool:
        return key in self.fields

    @property
    def event(self) -> str:
        return self.fields.get("Event", "")

    @property
    def action_id(self) -> str:
        return self.fields.get("ActionID", "")

    @property
    def is_response(self) -> bool:
        """An action's answer. Some events carry a Response too (OriginateResponse): they are events."""
        return "Response" in self.fields and "Event" not in self.fields

    @property
    def ok(self) -> bool:
        return self.fields.get("Response", "").lower() in ("success", "goodbye", "follows")

    def values(self, key: str) -> list[str]:
        return [v for k, v in self.pairs if k == key]

    @classmethod
    def of(cls, **fields: str) -> "Message":
        return cls(dict(fields), list(fields.items()))


class Parser:
    """Feed it bytes as they arrive; it returns the complete messages. Never buffers more than the bounds."""

    def __init__(self) -> None:
        self.banner = ""
        self._buf = b""
        self._lines: list[tuple[str, str]] = []
        self._size = 0

    def feed(self, data: bytes) -> list[Message]:
        buf = self._buf + data if self._buf else data
        lines = buf.split(b"\n")          # one pass: a 64 KB read of many messages is not copied per line
        self._buf = lines.pop()            # what follows the last line end: an unfinished line
        if len(self._buf) > MAX_LINE:
            raise AmiProtocolError(f"a line longer than {MAX_LINE} bytes")
        out: list[Message] = []
        for raw in lines:
            if len(raw) > MAX_LINE:
                raise AmiProtocolError(f"a line longer than {MAX_LINE} bytes")
            line = raw.rstrip(b"\r").decode("utf-8", "replace")
            if not self.banner:
                if not line.startswith("Asterisk Call Manager/"):
                    raise AmiProtocolError(f"not an AMI banner: {line[:60]!r}")
                self.banner = line
                continue
            if not line:
                if self._lines:
                    out.append(Message(dict(self._lines), self._lines))
                    self._lines, self._size = [], 0
                continue
            key, sep, value = line.partition(":")
            if not sep:
                # a command's raw output ("--END COMMAND--"): kept as the message's Output
                key, value = "Output", line
            self._lines.append((key.strip(), value.strip()))
            self._size += len(raw)
            if len(self._lines) > MAX_FIELDS or self._size > MAX_MESSAGE:
                raise AmiProtocolError(f"a message of more than {MAX_FIELDS} lines or {MAX_MESSAGE} bytes")
        return out

    @property
    def version(self) -> str:
        """The AMI version of the banner (9.0.0 for Asterisk 20, 11.0.0 for 22)."""
        return self.banner.rpartition("/")[2]


_UNSAFE = re.compile(r"[\r\n]")


def action(name: str, action_id: str, fields: dict[str, str] | list[tuple[str, str]] | None = None) -> bytes:
    """An action as bytes. Line breaks are removed from every value: a device or a number can never
    smuggle a second header, or a second action, into what the gateway sends."""
    items = fields.items() if isinstance(fields, dict) else (fields or [])
    lines = [f"Action: {name}", f"ActionID: {action_id}"]
    for key, value in items:
        if value is None:
            continue
        key, value = str(key), str(value)
        if "\r" in key or "\n" in key:
            key = _UNSAFE.sub(" ", key)
        if "\r" in value or "\n" in value:
            value = _UNSAFE.sub(" ", value)
        lines.append(f"{key}: {value}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")
