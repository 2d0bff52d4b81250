"""Supervisors' password hashes, ``smartcti-gateway hash-password`` and the ``supervisor:`` config section."""
import io
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from smartcti_gateway import cli
from smartcti_gateway.config import ConfigError, load, parse
from smartcti_gateway.supervisor.passwords import hash_password, hash_problem, verify_password

ROOT = Path(__file__).resolve().parent.parent
FORMAT = re.compile(r"scrypt\$16384\$8\$1\$([A-Za-z0-9+/=]+)\$([A-Za-z0-9+/=]+)")
HASH = hash_password("maria-secret-1")


def test_the_hash_has_the_documented_format_and_a_fresh_salt():
    import base64
    m = FORMAT.fullmatch(HASH)
    assert m, HASH
    assert len(base64.b64decode(m.group(1))) == 16 and len(base64.b64decode(m.group(2))) == 32
    assert hash_password("maria-secret-1") != HASH          # another salt
    assert hash_problem(HASH) is None


def test_verification_right_and_wrong_password():
    assert verify_password("maria-secret-1", HASH)
    assert not verify_password("maria-secret-2", HASH)
    assert not verify_password("", HASH)
    assert not verify_password("maria-secret-1", HASH.replace("scrypt", "bcrypt"))   # malformed: False, no error
    assert not verify_password("maria-secret-1", "")


@pytest.mark.parametrize("bad, why", [
    ("maria-secret-1", "is not a password hash"),
    ("scrypt$16384$8$1$c2FsdA==", "is not a password hash"),
    ("scrypt$x$8$1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaA==", "not numbers"),
    ("scrypt$1000$8$1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaA==", "out of range"),
    ("scrypt$1048576$8$1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaA==", "out of range"),
    ("scrypt$16384$8$1$not*base64$aGFzaGhhc2hoYXNoaGFzaA==", "not base64"),
    ("scrypt$16384$8$1$c2FsdA==$aGFzaA==", "too short"),
])
def test_malformed_hashes_are_named(bad, why):
    assert why in hash_problem(bad)


def run_cli(monkeypatch, capsys, argv, stdin_text="", tty=False, passwords=()):
    stdin = io.StringIO(stdin_text)
    stdin.isatty = lambda: tty
    monkeypatch.setattr(sys, "stdin", stdin)
    answers = iter(passwords)
    monkeypatch.setattr("getpass.getpass", lambda prompt="": next(answers))
    code = cli.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_hash_password_from_stdin(monkeypatch, capsys):
    code, out, err = run_cli(monkeypatch, capsys, ["hash-password", "--stdin"], "maria-secret-1\n")
    assert code == 0 and FORMAT.fullmatch(out.strip())
    assert verify_password("maria-secret-1", out.strip())
    assert "maria-secret-1" not in out + err


def test_hash_password_reads_stdin_when_it_is_not_a_terminal(monkeypatch, capsys):
    code, out, _ = run_cli(monkeypatch, capsys, ["hash-password"], "another-secret\n")
    assert code == 0 and verify_password("another-secret", out.strip())


def test_hash_password_on_a_terminal_asks_twice_without_echo(monkeypatch, capsys):
    code, out, err = run_cli(monkeypatch, capsys, ["hash-password"], tty=True,
                             passwords=("typed-twice-1", "typed-twice-1"))
    assert code == 0 and verify_password("typed-twice-1", out.strip())
    code, out, err = run_cli(monkeypatch, capsys, ["hash-password"], tty=True,
                             passwords=("typed-twice-1", "typed-twice-2"))
    assert code == 1 and out == "" and "differ" in err and "typed-twice" not in err


def test_hash_password_refuses_a_short_password(monkeypatch, capsys):
    code, out, err = run_cli(monkeypatch, capsys, ["hash-password", "--stdin"], "short\n")
    assert code == 1 and out == "" and "at least 8" in err and "short" not in err


def test_hash_password_as_a_command():
    r = subprocess.run([sys.executable, "-m", "smartcti_gateway", "hash-password", "--stdin"], input="maria-secret-1\n",
                       capture_output=True, text=True, cwd=ROOT, timeout=60, check=False)
    assert r.returncode == 0, r.stderr
    assert verify_password("maria-secret-1", r.stdout.strip())


# ------------------------------------------------------------------- config
def write(tmp_path: Path, text: str) -> Path:
    f = tmp_path / "gw.yaml"
    f.write_text(textwrap.dedent(text), encoding="utf-8")
    return f


BASE = """
    links:
      - link_id: 1
        pabx: {url: "http://127.0.0.1:2551/RPC2"}
    supervisor:
"""


def error_of(tmp_path, section: str) -> str:
    with pytest.raises(ConfigError) as e:
        load(write(tmp_path, BASE + textwrap.indent(textwrap.dedent(section), "      ")))
    return str(e.value)


def test_no_section_no_board():
    cfg = parse({"links": [{"link_id": 1, "pabx": {"url": "http://127.0.0.1:2551/RPC2"}}]})
    assert cfg.supervisor is None


def test_a_full_section(tmp_path):
    cfg = load(write(tmp_path, BASE + textwrap.indent(textwrap.dedent(f"""\
        users: {{maria: "{HASH}", joao: proxy}}
        phones: {{maria: "2099"}}
        trusted_header: X-Remote-User
        trusted_proxies: [10.0.0.5]
        session_minutes: 60
        service_level_seconds: 30
        audit_log: /var/log/smartcti/audit.log
        allow: [10.0.0.0/8]
    """), "      ")))
    sc = cfg.supervisor
    assert sc.users == {"maria": HASH, "joao": "proxy"} and sc.phones == {"maria": "2099"}
    assert sc.trusted_header == "X-Remote-User" and [str(n) for n in sc.trusted_proxies] == ["10.0.0.5/32"]
    assert (sc.session_minutes, sc.service_level_seconds) == (60.0, 30.0)
    assert sc.audit_log == "/var/log/smartcti/audit.log" and [str(n) for n in sc.allow] == ["10.0.0.0/8"]
    assert HASH not in repr(cfg)           # hashes never reach a log line that prints the config


def test_defaults(tmp_path):
    sc = load(write(tmp_path, BASE + f'      users: {{maria: "{HASH}"}}\n')).supervisor
    assert (sc.session_minutes, sc.service_level_seconds, sc.audit_log, sc.allow, sc.trusted_header) == \
        (480.0, 20.0, "", None, "")


def test_a_malformed_hash_names_the_user_and_its_line(tmp_path):
    msg = error_of(tmp_path, f"""\
        users:
          maria: "{HASH}"
          joao: "{HASH[:-20]}"
    """)
    assert msg.startswith(f"{tmp_path / 'gw.yaml'}:8: supervisor.users.joao: the password of user 'joao' ")
    assert "hash-password" in msg and HASH[:-20] not in msg


def test_a_plain_password_in_the_config_is_refused_without_being_repeated(tmp_path):
    msg = error_of(tmp_path, 'users: {maria: "maria-secret-1"}\n')
    assert "supervisor.users.maria" in msg and "is not a password hash" in msg and "maria-secret-1" not in msg


@pytest.mark.parametrize("section, where, what", [
    ("users: {}\n", "supervisor.users", "is required"),
    ('users: {"ma ria": "x"}\n', "supervisor.users.ma ria", "a user name has"),
    ('usres: {maria: "x"}\n', "supervisor.usres", "unknown key"),
    (f'users: {{maria: "{HASH}"}}\ntrusted_header: X-Remote-User\n', "supervisor.trusted_header",
     "needs trusted_proxies"),
    (f'users: {{maria: "{HASH}"}}\ntrusted_header: Cookie\ntrusted_proxies: [10.0.0.5]\n',
     "supervisor.trusted_header", "must be the name"),
    (f'users: {{maria: "{HASH}"}}\ntrusted_header: X-User\ntrusted_proxies: [0.0.0.0/0]\n',
     "supervisor.trusted_proxies", "must not hold every address"),
    ('users: {maria: proxy}\n', "supervisor.users.maria", "trusted_header is not set"),
    (f'users: {{maria: "{HASH}"}}\nphones: {{pedro: "2099"}}\n', "supervisor.phones.pedro", "not one of"),
    (f'users: {{maria: "{HASH}"}}\nphones: {{maria: "20 99"}}\n', "supervisor.phones.maria", "own extension"),
    (f'users: {{maria: "{HASH}"}}\nsession_minutes: 0\n', "supervisor.session_minutes", "between 1 and"),
    (f'users: {{maria: "{HASH}"}}\nservice_level_seconds: x\n', "supervisor.service_level_seconds", "must be float"),
    (f'users: {{maria: "{HASH}"}}\nallow: [10.0.0.300]\n', "supervisor.allow", "not an IP address"),
])
def test_mistakes_name_file_line_and_key(tmp_path, section, where, what):
    msg = error_of(tmp_path, section)
    assert re.match(rf"{re.escape(str(tmp_path / 'gw.yaml'))}:\d+: {re.escape(where)}: ", msg), msg
    assert what in msg, msg
