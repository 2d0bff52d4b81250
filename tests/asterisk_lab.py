"""A real Asterisk and real SIP phones for the tests: ../shared/asterisk's builds, Debian's baresip.

``builds()`` finds every Asterisk to run the scenario on: the tarballs of ../shared/asterisk (beside
this checkout, or beside the one it was cloned from; unpacked once into tests/_artifacts/asterisk/),
the one ``SMARTCTI_ASTERISK`` names (an ``asterisk`` binary or the folder holding ``sbin/asterisk``),
and ``asterisk`` on PATH. ``Lab`` writes a stock-looking
configuration into a scratch folder — the phones' context, an outside line made of dialplan and Local
channels, two queues; nothing for the gateway, which installs its own dialplan over AMI — starts
Asterisk in the foreground and waits for FullyBooted. ``Phone`` is one baresip, driven over its
ctrl_tcp socket. ``Ami`` is a small blocking AMI client for the tests themselves (playing the
outside world, reading state), not the gateway's.

    .venv/bin/python -m tests.asterisk_lab    # start a lab and its phones, print how to reach them, wait for Ctrl+C
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tarfile
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared" / "asterisk"


def shared_folders() -> list[Path]:
    """Where ../shared/asterisk may be: beside this checkout, or beside the checkout it was cloned from
    when that is a folder on this machine (git clone . /tmp/fresh)."""
    found = [SHARED]
    try:
        origin = subprocess.run(["git", "-C", str(HERE), "config", "--get", "remote.origin.url"],
                                capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        origin = ""
    origin = origin[len("file://"):] if origin.startswith("file://") else origin
    if origin.startswith("/"):
        found.append(Path(origin).resolve().parent / "shared" / "asterisk")
    return [f for f in dict.fromkeys(found) if f.is_dir()]
CACHE = HERE / "_artifacts" / "asterisk"
HOW_TO_GET_ONE = ("no Asterisk found: the builds of ../shared/asterisk, SMARTCTI_ASTERISK=/path/to/asterisk, or "
                  "an 'asterisk' on PATH (Ubuntu: apt-get install asterisk)")
HOW_TO_GET_PHONES = "no baresip: apt-get install baresip-core (scripts/test installs it)"

EXTENSIONS = ("2001", "2002", "2003", "2004")
QUEUES = {"vendas": ("7001",), "suporte": ("7002",)}      # queue -> the numbers that reach it from outside
# support pauses an agent who lets a call ring out (queues.conf autopause), and rings for 3 s only
QUEUE_OPTIONS = {"vendas": "timeout = 15\n", "suporte": "timeout = 3\nautopause = yes\n"}
AMI_USER, AMI_SECRET = "smartcti", "lab-secret-7f3a"
AMI_READ, AMI_WRITE = "call,agent", "system,call,agent,originate"   # the gateway's user: docs/asterisk.md
OUTSIDE_BUSY, OUTSIDE_NO_ANSWER = "4833330000", "4833339999"
# the ANS protocol IVR: the number outside callers dial, and the global variable holding the gateway's FastAGI
# port (a test sets it with Setvar: the gateway's port is only known once it listens)
PROTOCOL_NUMBER, AGI_PORT_VARIABLE = "7003", "SMARTCTI_AGI_PORT"
DIGIT_SECONDS = 0.15         # each prompt of the lab's sounds: a 20-digit number is spoken in about 3 s


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _is_free(port: int, kind: int) -> bool:
    with socket.socket(socket.AF_INET, kind) as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def free_sip_port(avoid: set[int] = frozenset()) -> int:
    """A port free for SIP over UDP and TCP, with the next one free for TLS (baresip binds all three)."""
    while True:
        port = free_port(socket.SOCK_DGRAM)
        if port < 65000 and not ({port, port + 1} & set(avoid)) and _is_free(port, socket.SOCK_STREAM) \
                and _is_free(port + 1, socket.SOCK_STREAM):
            return port


# ------------------------------------------------------------------ builds
@dataclass(frozen=True)
class Build:
    name: str            # "22", "20", "PATH"...
    binary: Path         # sbin/asterisk
    modules: Path        # lib/asterisk/modules
    libs: Path | None    # for LD_LIBRARY_PATH, when the build is not installed system-wide


def _unpacked(tarball: Path) -> Path | None:
    target = CACHE / tarball.name.split("-bookworm")[0]
    marker = target / ".unpacked"
    if not marker.exists():
        tmp = Path(tempfile.mkdtemp(dir=CACHE.parent if CACHE.parent.exists() else None))
        try:
            with tarfile.open(tarball) as tf:
                tf.extractall(tmp, filter="data") if hasattr(tarfile, "data_filter") else tf.extractall(tmp)
            CACHE.mkdir(parents=True, exist_ok=True)
            if target.exists():
                shutil.rmtree(target)
            (tmp / "asterisk").rename(target)
            marker.write_text(tarball.name)
        except (OSError, tarfile.TarError):
            return None
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def _from_dir(name: str, root: Path) -> Build | None:
    binary = root / "sbin" / "asterisk"
    modules = root / "lib" / "asterisk" / "modules"
    if binary.exists() and modules.is_dir():
        return Build(name, binary, modules, root / "lib")
    return None


def builds() -> list[Build]:
    found: list[Build] = []
    for shared in shared_folders()[:1]:
        for tarball in sorted(shared.glob("asterisk-*-bookworm-amd64.tar.xz"), reverse=True):
            root = _unpacked(tarball)
            build = _from_dir(tarball.name.split("-")[1], root) if root else None
            if build is not None:
                found.append(build)
    named = os.environ.get("SMARTCTI_ASTERISK", "")
    if named:
        path = Path(named)
        build = _from_dir("SMARTCTI_ASTERISK", path) if path.is_dir() else None
        if build is None and path.is_file():
            build = _from_dir("SMARTCTI_ASTERISK", path.parent.parent) or \
                Build("SMARTCTI_ASTERISK", path, Path("/usr/lib/asterisk/modules"), None)
        if build is not None:
            found.append(build)
    system = shutil.which("asterisk")
    if system and not any(b.binary == Path(system) for b in found):
        for modules in (Path("/usr/lib/asterisk/modules"), Path("/usr/lib/x86_64-linux-gnu/asterisk/modules")):
            if modules.is_dir():
                found.append(Build("PATH", Path(system), modules, None))
                break
    return found


def baresip() -> str | None:
    return shutil.which("baresip")


# ------------------------------------------------------------------ AMI for the tests
class Ami:
    """A blocking AMI client for the tests: actions, and every event kept in order."""

    def __init__(self, port: int, user: str = "lab", secret: str = AMI_SECRET, timeout: float = 10.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.file = self.sock.makefile("rb")
        self.banner = self.file.readline().decode().strip()
        self.sock.settimeout(None)           # the reader waits for events as long as it takes
        self.events: list[dict[str, str]] = []
        self._responses: dict[str, list[dict[str, str]]] = {}
        self._cond = threading.Condition()
        self._n = 0
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        reply = self.action("Login", Username=user, Secret=secret)
        if reply.get("Response") != "Success":
            raise RuntimeError(f"AMI login refused: {reply}")

    def _read(self) -> None:
        message: dict[str, str] = {}
        try:
            for raw in self.file:
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                if line:
                    key, _, value = line.partition(":")
                    message[key.strip()] = value.strip()
                    continue
                if message:
                    with self._cond:
                        if "Event" in message:
                            self.events.append(message)
                        if "ActionID" in message:
                            self._responses.setdefault(message["ActionID"], []).append(message)
                        self._cond.notify_all()
                    message = {}
        except (OSError, ValueError):
            pass

    def _send(self, name: str, fields: dict[str, str]) -> str:
        with self._cond:
            self._n += 1
            action_id = f"lab-{self._n}"
        lines = [f"Action: {name}", f"ActionID: {action_id}"] + [f"{k}: {v}" for k, v in fields.items()]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        return action_id

    def action(self, name: str, timeout: float = 10.0, **fields: str) -> dict[str, str]:
        action_id = self._send(name, fields)
        deadline = time.monotonic() + timeout
        with self._cond:
            while not self._responses.get(action_id):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"AMI {name} not answered in {timeout} s")
                self._cond.wait(left)
            return self._responses[action_id][0]

    def list_action(self, name: str, complete: str, timeout: float = 10.0, **fields: str) -> list[dict[str, str]]:
        """The events a list action answers with, up to its ``...Complete`` event."""
        action_id = self._send(name, fields)
        deadline = time.monotonic() + timeout
        with self._cond:
            while not any(m.get("Event") == complete for m in self._responses.get(action_id, [])):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"AMI {name} list not complete in {timeout} s")
                self._cond.wait(left)
            return [m for m in self._responses[action_id] if "Event" in m and m["Event"] != complete]

    def wait_event(self, predicate, timeout: float = 10.0, since: int = 0) -> dict[str, str]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for e in self.events[since:]:
                    if predicate(e):
                        return e
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("AMI event not seen")
                self._cond.wait(left)

    def close(self) -> None:
        try:
            self.sock.sendall(b"Action: Logoff\r\n\r\n")
        except OSError:
            pass
        self.sock.close()


# ------------------------------------------------------------------ the lab
def _confs(lab: "Lab") -> dict[str, str]:
    s = lab.scratch
    endpoints = "".join(f"""
[{ext}]
type = endpoint
context = from-internal
disallow = all
allow = ulaw
auth = {ext}
aors = {ext}
direct_media = no

[{ext}]
type = auth
auth_type = userpass
username = {ext}
password = pw{ext}

[{ext}]
type = aor
max_contacts = 1
remove_existing = yes
""" for ext in lab.extensions)
    queues = "".join(f"""
[{q}]
strategy = leastrecent
retry = 1
ringinuse = no
{QUEUE_OPTIONS.get(q, "")}""" for q in QUEUES)
    incoming = "".join(f"exten => {number},1,Answer()\n same => n,Queue({q})\n same => n,Hangup()\n"
                       for q, numbers in QUEUES.items() for number in numbers)
    return {
        "asterisk.conf": f"""[directories]
astetcdir => {s}/etc
astmoddir => {lab.build.modules}
astvarlibdir => {s}/lib
astdbdir => {s}/lib
astkeydir => {s}/lib
astdatadir => {s}/data
astagidir => {s}/data/agi-bin
astspooldir => {s}/spool
astrundir => {s}/run
astlogdir => {s}/log
astsbindir => {lab.build.binary.parent}
[options]
nocolor = yes
""",
        "modules.conf": "[modules]\nautoload = yes\nnoload = chan_dahdi.so\nnoload = res_hep.so\n"
                        "noload = chan_iax2.so\nnoload = res_phoneprov.so\nnoload = res_pjsip_phoneprov_provider.so\n",
        "logger.conf": "[general]\n[logfiles]\nmessages.log => notice,warning,error\n",
        "manager.conf": f"""[general]
enabled = yes
port = {lab.ami_port}
bindaddr = 127.0.0.1

; what docs/protocolo-ans.md asks of a site: the protocol's channel variable in every AMI event
channelvars = PROTOCOLO_ANS,DISCADOR

[{AMI_USER}]
secret = {AMI_SECRET}
; the least classes docs/asterisk.md asks for: the lab proves they are enough
read = {AMI_READ}
write = {AMI_WRITE}
deny = 0.0.0.0/0.0.0.0
permit = 127.0.0.1/255.255.255.255

[lab]
secret = {AMI_SECRET}
read = all
write = all
""",
        "pjsip.conf": f"""[transport-udp]
type = transport
protocol = udp
bind = 127.0.0.1:{lab.sip_port}
{endpoints}""",
        "pjsip_notify.conf": "[talk]\nEvent=>talk\nContent-Length=>0\n",
        "extensions.conf": f"""[general]
static = yes
writeprotect = no

[from-internal]
; the phones' context: extensions, and the outside line for any other number
exten => _2XXX,1,Dial(PJSIP/${{EXTEN}},30)
 same => n,Hangup()
exten => _X.,1,Dial(Local/${{EXTEN}}@outside,60)
 same => n,Hangup()

[globals]
{AGI_PORT_VARIABLE} = 4573

[incoming]
; the outside world calling in: the numbers of the queues
{incoming}
; the ANS protocol IVR of docs/protocolo-ans.md, then the sales queue
exten => {PROTOCOL_NUMBER},1,Answer()
 same => n,AGI(agi://127.0.0.1:${{{AGI_PORT_VARIABLE}}}/protocolo)
 same => n,Queue(vendas)
 same => n,Hangup()

[outside]
; the public network, played by dialplan
exten => {OUTSIDE_BUSY},1,Busy(5)
exten => {OUTSIDE_NO_ANSWER},1,Ringing()
 same => n,Wait(120)
exten => _X.,1,Ringing()
 same => n,Wait(0.3)
 same => n,Answer()
 same => n,Wait(600)
""",
        "queues.conf": "[general]\npersistentmembers = no\n" + queues,
        "musiconhold.conf": f"[default]\nmode = files\ndirectory = {s}/moh\n",
        "rtp.conf": "[general]\nrtpstart = 30000\nrtpend = 40000\n",
        # the feature code of an attended transfer made by the agent (the lab plays it with Atxfer)
        "features.conf": "[general]\n[featuremap]\natxfer => *2\n",
    }


class Lab:
    """One Asterisk of ``build`` with its own ports and scratch folder."""

    def __init__(self, build: Build, scratch: Path | None = None, extensions=EXTENSIONS):
        self.build = build
        self.scratch = Path(scratch or tempfile.mkdtemp(prefix=f"smartcti-ast{build.name}-"))
        self.extensions = tuple(extensions)
        self.ami_port = free_port()
        self.sip_port = free_port(socket.SOCK_DGRAM)
        self.proc: subprocess.Popen | None = None
        self.ami: Ami | None = None
        self.phones: dict[str, "Phone"] = {}

    def write(self) -> None:
        for folder in ("etc", "lib", "data/agi-bin", "data/sounds/en/digits", "spool/monitor", "run", "log", "moh"):
            (self.scratch / folder).mkdir(parents=True, exist_ok=True)
        # one second of silence as music on hold (µ-law)
        (self.scratch / "moh" / "silence.ulaw").write_bytes(b"\xff" * 8000)
        # the IVR's prompts and the digits SAY DIGITS plays: short silences, so that an announcement lasts
        samples = b"\xff" * int(8000 * DIGIT_SECONDS)
        for digit in "0123456789":
            (self.scratch / "data" / "sounds" / "en" / "digits" / f"{digit}.ulaw").write_bytes(samples)
        for prompt in ("protocolo-intro", "protocolo-repetir", "carteirinha", "carteirinha-invalida"):
            (self.scratch / "data" / "sounds" / "en" / f"{prompt}.ulaw").write_bytes(samples)
        for name, text in _confs(self).items():
            (self.scratch / "etc" / name).write_text(text)

    def start(self, timeout: float = 30.0) -> "Lab":
        self.write()
        env = dict(os.environ)
        if self.build.libs is not None:
            env["LD_LIBRARY_PATH"] = str(self.build.libs)
        self.out = open(self.scratch / "log" / "console.log", "ab")
        self.proc = subprocess.Popen([str(self.build.binary), "-f", "-C", str(self.scratch / "etc" / "asterisk.conf")],
                                     stdin=subprocess.DEVNULL, stdout=self.out, stderr=subprocess.STDOUT, env=env,
                                     start_new_session=True)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"asterisk exited ({self.proc.returncode}); see {self.scratch}/log/console.log")
            try:
                self.ami = Ami(self.ami_port)
                break
            except (OSError, RuntimeError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        self.ami.wait_event(lambda e: e.get("Event") == "FullyBooted", timeout=timeout)
        return self

    def version(self) -> str:
        reply = self.ami.action("CoreSettings")
        return reply.get("AsteriskVersion", "?")

    def phone(self, ext: str, **kw) -> "Phone":
        phone = self.phones[ext] = Phone(self, ext, **kw).start()
        return phone

    def stop(self) -> None:
        for phone in list(self.phones.values()):
            phone.stop()
        self.phones.clear()
        self.stop_asterisk()

    def stop_asterisk(self, sig: int = signal.SIGTERM) -> None:
        """Asterisk only: the phones stay (their contacts are kept in Asterisk's AstDB)."""
        if self.ami is not None:
            self.ami.close()
            self.ami = None
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        if getattr(self, "out", None) is not None:
            self.out.close()
            self.out = None

    def restart(self, sig: int = signal.SIGKILL) -> None:
        """Asterisk dies (kill -9 by default: no goodbye to the AMI clients) and starts again, same ports."""
        self.stop_asterisk(sig)
        self.start()

    # state
    def channels(self) -> list[dict[str, str]]:
        return self.ami.list_action("CoreShowChannels", "CoreShowChannelsComplete")

    def members(self) -> list[dict[str, str]]:
        return [m for m in self.ami.list_action("QueueStatus", "QueueStatusComplete") if m.get("Event") == "QueueMember"]

    def reset(self, timeout: float = 10.0) -> None:
        """Every call hung up, every queue member removed, no follow-me: a clean lab for the next test."""
        for m in self.members():
            self.ami.action("QueueRemove", Queue=m["Queue"], Interface=m.get("Location") or m.get("Interface", ""))
        self.ami.action("DBDelTree", Family="CF")
        deadline = time.monotonic() + timeout
        while True:
            chans = self.channels()
            if not chans:
                break
            for c in chans:
                self.ami.action("Hangup", Channel=c["Channel"])
            if time.monotonic() > deadline:
                raise TimeoutError(f"channels left after the test: {[c['Channel'] for c in chans]}")
            time.sleep(0.1)
        for phone in self.phones.values():
            phone.settle()

    # the outside world
    def outside_call(self, number: str, caller: str = "4832810000", wait: int = 600,
                     variable: str = "") -> dict[str, str]:
        """An outside caller (a Local channel playing the public network) dials ``number``; ``variable``
        (``__NAME=value``) rides on the call as a dialler would set it."""
        fields = {"Variable": variable} if variable else {}
        return self.ami.action("Originate", Channel=f"Local/{number}@incoming", Application="Wait",
                               Data=str(wait), CallerID=f'"{caller}" <{caller}>', Async="true", **fields)


# ------------------------------------------------------------------ baresip phones
def _netstring(obj: dict) -> bytes:
    data = json.dumps(obj).encode()
    return str(len(data)).encode() + b":" + data + b","


@dataclass
class Phone:
    lab: Lab
    ext: str
    auto_answer: bool = False
    proc: subprocess.Popen | None = None
    events: list[dict] = field(default_factory=list)
    _offered: int = 0            # events before this index hold no call still to be picked up

    def start(self, timeout: float = 15.0) -> "Phone":
        self.dir = self.lab.scratch / f"phone-{self.ext}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.ctrl_port = free_port()
        sip = free_sip_port({self.ctrl_port, self.lab.ami_port, self.lab.sip_port})
        (self.dir / "config").write_text(f"""sip_listen 127.0.0.1:{sip}
audio_player aufile,/dev/null
audio_source ausine,440
ausrc_srate 48000
auplay_srate 48000
ausrc_channels 2
auplay_channels 2
audio_alert aufile,/dev/null
module_path /usr/lib/baresip/modules
module g711.so
module aufile.so
module ausine.so
module account.so
module menu.so
module ctrl_tcp.so
ctrl_tcp_listen 127.0.0.1:{self.ctrl_port}
""")
        mode = "auto" if self.auto_answer else "manual"
        (self.dir / "accounts").write_text(
            f"<sip:{self.ext}@127.0.0.1:{self.lab.sip_port};transport=udp>;auth_pass=pw{self.ext};"
            f"answermode={mode};regint=60\n")
        self.log = open(self.dir / "baresip.log", "wb")
        self.proc = subprocess.Popen(["baresip", "-f", str(self.dir)], stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.sock = socket.create_connection(("127.0.0.1", self.ctrl_port), timeout=5)
                self.sock.settimeout(None)   # the reader waits for events as long as it takes
                break
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError(f"baresip {self.ext} did not start; see {self.dir}/baresip.log")
                time.sleep(0.05)
        self._buf = b""
        self._cond = threading.Condition()
        self._responses: list[dict] = []
        threading.Thread(target=self._read, daemon=True).start()
        self.wait_registered(deadline - time.monotonic())
        return self

    def _read(self) -> None:
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return
                self._buf += chunk
                while True:
                    head, sep, rest = self._buf.partition(b":")
                    if not sep or not head.isdigit() or len(rest) < int(head) + 1:
                        break
                    n = int(head)
                    message = json.loads(rest[:n])
                    self._buf = rest[n + 1:]
                    with self._cond:
                        (self.events if message.get("event") else self._responses).append(message)
                        self._cond.notify_all()
        except (OSError, ValueError):
            return

    def wait_registered(self, timeout: float) -> None:
        deadline = time.monotonic() + max(timeout, 1)
        while True:
            try:                    # a loaded machine's Asterisk may take its time with a list: asked again
                listed = self.lab.ami.list_action("PJSIPShowContacts", "ContactListComplete",
                                                  timeout=max(1.0, min(10.0, deadline - time.monotonic())))
            except TimeoutError:
                listed = []
            if any(e.get("Endpoint") == self.ext for e in listed):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"phone {self.ext} did not register")
            time.sleep(0.1)

    def command(self, command: str, params: str = "", timeout: float = 10.0) -> dict:
        with self._cond:
            before = len(self._responses)
            self.sock.sendall(_netstring({"command": command, "params": params, "token": command}))
            deadline = time.monotonic() + timeout
            while len(self._responses) == before:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"baresip {self.ext}: {command} not answered")
                self._cond.wait(left)
            return self._responses[before]

    def wait_event(self, kind: str, timeout: float = 10.0, since: int = 0) -> tuple[int, dict]:
        """The first event of ``kind`` from index ``since`` of ``events``, and its index."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for i in range(since, len(self.events)):
                    if self.events[i].get("type") == kind:
                        return i, self.events[i]
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"baresip {self.ext}: no {kind}; got {[e.get('type') for e in self.events]}")
                self._cond.wait(left)

    def ringing(self, timeout: float = 10.0) -> dict:
        """The next call offered to the phone (each one is taken once)."""
        i, event = self.wait_event("CALL_INCOMING", timeout, self._offered)
        self._offered = i + 1
        return event

    def accept(self, timeout: float = 10.0) -> dict:
        """Pick up the next call offered, waiting until it rings."""
        self.ringing(timeout)
        return self.command("accept")

    def dial(self, number: str) -> dict:
        return self.command("dial", number)

    def hangup(self) -> dict:
        return self.command("hangup")

    def settle(self) -> None:
        """Forget calls offered and never picked up (the next test starts with none)."""
        with self._cond:
            self._offered = len(self.events)

    def stop(self) -> None:
        try:
            self.sock.close()
        except (OSError, AttributeError):
            pass
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
        if getattr(self, "log", None) is not None:
            self.log.close()


if __name__ == "__main__":   # pragma: no cover - an administrator's or developer's tool
    found = builds()
    if not found:
        raise SystemExit(HOW_TO_GET_ONE)
    lab = Lab(found[0]).start()
    print(f"Asterisk {lab.version()} in {lab.scratch}: AMI 127.0.0.1:{lab.ami_port} "
          f"({AMI_USER}/{AMI_SECRET}), SIP 127.0.0.1:{lab.sip_port}, queues {', '.join(QUEUES)}")
    if baresip():
        for ext in EXTENSIONS:
            phone = lab.phone(ext)
            print(f"phone {ext}: baresip, ctrl_tcp 127.0.0.1:{phone.ctrl_port} (netstring JSON: accept, dial, hangup)")
    else:
        print(HOW_TO_GET_PHONES)
    print(f"the gateway against it:\n  AMI_PORT={lab.ami_port} AMI_SECRET={AMI_SECRET} "
          f"scripts/run --config config/asterisk.yaml")
    print("an outside caller for queue vendas: AMI Originate Channel=Local/7001@incoming Application=Wait Data=600")
    try:
        signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        lab.stop()
