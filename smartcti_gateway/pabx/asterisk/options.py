"""The Asterisk driver's own keys in a link's ``pabx`` section, read with line-numbered errors."""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from ...configread import Map, Reader, between

KEYS = frozenset({"host", "port", "username", "secret", "device_prefix", "context", "queues", "answer_wait",
                  "recordings", "originate_timeout", "music_class"})

_CONTEXT = re.compile(r"^[A-Za-z0-9_.-]{1,79}$")
_PREFIX = re.compile(r"^[A-Za-z0-9_]+/$")


@dataclass
class AsteriskOptions:
    host: str = "127.0.0.1"          # the AMI's address
    port: int = 5038
    username: str = "smartcti"       # a manager.conf user
    secret: str = field(default="", repr=False)   # never shown, never logged
    device_prefix: str = "PJSIP/"    # SmartCTI device 2001 is the interface PJSIP/2001
    context: str = "from-internal"   # where MakeCall, Consultation and transfers dial
    queues: dict[str, str] = field(default_factory=dict)   # SmartCTI ACD group -> queue
    answer_wait: float = 2.0         # s to see a phone answer after the 'talk' NOTIFY of Answer
    originate_timeout: float = 30.0  # s the agent's phone rings for MakeCall before it counts as not answered
    recordings: str = ""             # folder for StartRec's files; "" = MixMonitor's own (astspooldir/monitor)
    music_class: str = ""            # music-on-hold class for a held party; "" = Asterisk's default

    def queue_of(self, group: str) -> str:
        """The queue of a SmartCTI ACD group: the one configured, else the queue of that name."""
        return self.queues.get(group, group)

    def group_of(self, queue: str) -> str:
        for group, name in self.queues.items():
            if name == queue:
                return group
        return queue


def _word(what: str, pattern: re.Pattern):
    return lambda v: None if pattern.match(v) else f"{v!r} is not {what}"


def parse(r: Reader, pm: Map, pp: str, link_id: int) -> AsteriskOptions:
    o = AsteriskOptions()
    o.host = r.get(pm, "host", pp, str, o.host, check=lambda v: None if v.strip() and " " not in v.strip() else
                   "must be the AMI's host name or address")
    o.port = r.get(pm, "port", pp, int, o.port, check=between(1, 65535, ""))
    o.username = r.get(pm, "username", pp, str, o.username, check=lambda v: None if v.strip() else "must not be empty")
    if "secret" not in pm or not pm.get("secret"):
        raise r.fail(pm, "secret", f"{pp}.secret", "is required: the secret of the manager.conf user (e.g. "
                                                     "secret: ${AMI_SECRET})")
    o.secret = r.get(pm, "secret", pp, str, "")
    o.device_prefix = r.get(pm, "device_prefix", pp, str, o.device_prefix,
                            check=_word("a channel technology and a slash, like PJSIP/ or SIP/", _PREFIX))
    o.context = r.get(pm, "context", pp, str, o.context, check=_word("a dialplan context name", _CONTEXT))
    qm = r.mapping(pm.get("queues"), f"{pp}.queues", pm, "queues")
    for group, queue in qm.items():
        where = f"{pp}.queues.{group}"
        if not isinstance(queue, (str, int)) or not str(queue).strip() or not _CONTEXT.match(str(queue)):
            raise r.fail(qm, str(group), where, f"must be the name of a queue of queues.conf, got {queue!r}")
        o.queues[str(group)] = str(queue)
    o.answer_wait = r.get(pm, "answer_wait", pp, float, o.answer_wait, check=between(0, 10))
    o.originate_timeout = r.get(pm, "originate_timeout", pp, float, o.originate_timeout, check=between(5, 120))
    o.recordings = r.get(pm, "recordings", pp, str, "")
    o.music_class = r.get(pm, "music_class", pp, str, "", check=lambda v: None if not v or _CONTEXT.match(v) else
                          f"{v!r} is not a music-on-hold class name")
    return o
