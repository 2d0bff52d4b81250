"""Config loading: defaults, and errors that name the file, line and key."""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from smartcti_gateway.cli import load_config
from smartcti_gateway.config import DEFAULT_CONFIG, ConfigError, load, split_listen

ROOT = Path(__file__).resolve().parent.parent


def write(tmp_path: Path, text: str) -> Path:
    f = tmp_path / "gw.yaml"
    f.write_text(textwrap.dedent(text), encoding="utf-8")
    return f


def error_of(tmp_path, text) -> str:
    """The error ``run`` and ``check-config`` report (the embedded simulator's options checked too)."""
    with pytest.raises(ConfigError) as e:
        load_config(str(write(tmp_path, text)))
    return str(e.value)


def test_default_config_is_link_1_on_8080_with_the_embedded_simulator():
    cfg = load(DEFAULT_CONFIG)
    assert cfg.listen == "0.0.0.0:8080"
    assert [l.link_id for l in cfg.links] == [1]
    link = cfg.links[0]
    assert link.command_path == "/axis2/services/SmartCTIWSCommand"
    assert link.pabx.driver == "digitro" and link.pabx.options.url == "http://127.0.0.1:2551/RPC2"
    assert cfg.simulator.enabled and cfg.simulator.listen == "127.0.0.1:2551"


def test_minimal_config(tmp_path):
    cfg = load(write(tmp_path, """
        links:
          - link_id: 7
            pabx: {url: "http://10.1.1.1:2551/RPC2", timeout: 2}
    """))
    assert cfg.links[0].link_id == 7 and cfg.links[0].pabx.timeout == 2.0
    assert cfg.links[0].pabx.options.events_path == "/pabx/digitro/7/RPC2"
    assert not cfg.simulator.enabled


def test_unknown_key_names_line_and_key(tmp_path):
    msg = error_of(tmp_path, """
        listen: 0.0.0.0:8080
        links:
          - link_id: 1
            pabx:
              url: http://127.0.0.1:2551/RPC2
              timeuot: 3
    """)
    assert "gw.yaml:7: links[0].pabx.timeuot: unknown key; allowed here: allow, ca_file, callback_url, concurrency, dialect, driver, " in msg
    assert ", timeout, url" in msg


def test_wrong_type_names_line_and_key(tmp_path):
    msg = error_of(tmp_path, """
        links:
          - link_id: one
    """)
    assert "gw.yaml:3: links[0].link_id: must be int, got str 'one'" in msg


@pytest.mark.parametrize("text,expected", [
    ("links: []\n", "gw.yaml:1: links: must be a list with at least one link"),
    ("listen: 8080\nlinks: [{link_id: 1}]\n", "gw.yaml:1: listen: '8080' is not HOST:PORT"),
    ("links: [{link_id: 1}, {link_id: 1}]\n", "links[1].link_id: link_id 1 is already used by links[0]"),
    ("links: [{link_id: 1, command_path: axis}]\n", "links[0].command_path: 'axis' must start with '/'"),
    ("links: [{link_id: 1, pabx: {url: 'ftp://x'}}]\n", "links[0].pabx.url: 'ftp://x' is not an http"),
    ("links: [{link_id: 1, pabx: {driver: avaya}}]\n", "unknown driver 'avaya'; available: asterisk, digitro"),
    ("links: [{link_id: 1, pabx: {driver: asterisk}}]\n", "links[0].pabx.secret: is required"),
    ("links: [{link_id: 1, pabx: {driver: asterisk, secret: s, url: 'http://x'}}]\n",
     "links[0].pabx.url: unknown key; allowed here: allow, answer_wait, concurrency, context, device_prefix, driver, grace, host"),
    ("links: [{link_id: 1, pabx: {driver: asterisk, secret: s, device_prefix: PJSIP}}]\n",
     "device_prefix: 'PJSIP' is not a channel technology and a slash"),
    ("links: [{link_id: 1, pabx: {driver: asterisk, secret: s, queues: {'701': [a]}}}]\n",
     "links[0].pabx.queues.701: must be the name of a queue"),
    ("links: [{link_id: 1, pabx: {timeout: 0}}]\n", "links[0].pabx.timeout: must be between 0.1 and 60"),
    ("links: [{link_id: 1, pabx: {dialect: {methodz: {}}}}]\n", "unknown dialect section 'methodz'"),
    ("links: [{link_id: 1, pabx: {dialect: {methods: {dial: x}}}}]\n", "unknown dialect.methods entry 'dial'"),
    ("links: [{link_id: 1}]\nsimulator: {enabled: true, options: {answer_after: soon}}\n", "simulator.options"),
    ("links:\n  - link_id: 1\n   bad indent\n", "gw.yaml:3: not valid YAML"),
])
def test_errors(tmp_path, text, expected):
    assert expected in error_of(tmp_path, text)


def test_url_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("NGC_URL", "http://10.9.9.9:2551/RPC2")
    cfg = load(write(tmp_path, "links: [{link_id: 1, pabx: {url: '${NGC_URL}'}}]\n"))
    assert cfg.links[0].pabx.options.url == "http://10.9.9.9:2551/RPC2"
    monkeypatch.delenv("NGC_URL")
    assert "environment variable NGC_URL is not set" in error_of(tmp_path, "links: [{link_id: 1, pabx: {url: '${NGC_URL}'}}]\n")


def test_missing_file():
    with pytest.raises(ConfigError, match="cannot read the config file"):
        load("/nonexistent/gw.yaml")


def test_split_listen():
    assert split_listen("127.0.0.1:8080") == ("127.0.0.1", 8080)
    assert split_listen("[::1]:9") == ("::1", 9)
    assert split_listen(":8080") == ("0.0.0.0", 8080)
    with pytest.raises(ValueError):
        split_listen("host")


def test_check_config_command(tmp_path):
    ok = subprocess.run([sys.executable, "-m", "smartcti_gateway", "check-config", str(DEFAULT_CONFIG)],
                        capture_output=True, text=True, cwd=ROOT)
    assert ok.returncode == 0 and "OK (1 link(s))" in ok.stdout
    bad = write(tmp_path, "links: [{link_id: 0}]\n")
    res = subprocess.run([sys.executable, "-m", "smartcti_gateway", "check-config", str(bad)],
                         capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 2
    assert res.stderr.strip() == f"config error: {bad}:1: links[0].link_id: must be a positive integer"


def test_any_string_setting_can_come_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("GW_LISTEN", "127.0.0.1:9999")
    monkeypatch.setenv("LINK_NAME", "Matriz")
    cfg = load(write(tmp_path, "listen: ${GW_LISTEN}\nlinks: [{link_id: 1, name: '${LINK_NAME}'}]\n"))
    assert cfg.listen == "127.0.0.1:9999" and cfg.links[0].name == "Matriz"


# ---------------------------------------------------------------- what a new administrator met
def test_a_key_given_twice_is_an_error_naming_both_lines(tmp_path):
    msg = error_of(tmp_path, """
        listen: 0.0.0.0:8080
        links:
          - link_id: 1
            pabx:
              url: http://10.0.0.5:2551/RPC2
              timeout: 5
              url: http://10.0.0.6:2551/RPC2
    """)
    assert msg == f"{tmp_path / 'gw.yaml'}:8: url: given twice, at lines 6 and 8; keep one"
    msg = error_of(tmp_path, "listen: 0.0.0.0:8080\nlisten: 0.0.0.0:9090\nlinks: [{link_id: 1}]\n")
    assert msg.endswith("gw.yaml:2: listen: given twice, at lines 1 and 2; keep one")


def run_gateway(cfg_path: Path, cwd: Path, timeout: float = 20) -> subprocess.CompletedProcess:
    """``smartcti-gateway run`` that is expected to stop by itself (it cannot start)."""
    return subprocess.run([sys.executable, "-m", "smartcti_gateway", "run", "--config", str(cfg_path)],
                          capture_output=True, text=True, cwd=cwd, timeout=timeout, stdin=subprocess.DEVNULL,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})


@pytest.mark.parametrize("key", ["listen", "simulator.listen", "links[1].listen"])
def test_a_port_in_use_names_the_key_that_holds_it(tmp_path, key):
    import socket
    from .support import free_port
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    port = busy.getsockname()[1]
    ports = {k: free_port() for k in ("listen", "simulator.listen", "links[1].listen")}
    ports[key] = port
    path = write(tmp_path, f"""
        listen: 127.0.0.1:{ports['listen']}
        state_file: ""
        links:
          - link_id: 1
            pabx: {{url: "http://127.0.0.1:{ports['simulator.listen']}/RPC2", timeout: 1}}
          - link_id: 2
            listen: 127.0.0.1:{ports['links[1].listen']}
            pabx: {{url: "http://127.0.0.1:{ports['simulator.listen']}/RPC2", timeout: 1}}
        simulator: {{enabled: true, listen: "127.0.0.1:{ports['simulator.listen']}"}}
    """)
    try:
        res = run_gateway(path, tmp_path)
    finally:
        busy.close()
    assert res.returncode == 1, res.stderr
    (line,) = [l for l in res.stderr.splitlines() if "cannot start" in l]
    assert f"cannot listen on 127.0.0.1:{port} ({key})" in line and f"Change {key} in {path}" in line
    assert "Traceback" not in res.stderr


def test_two_gateways_from_one_folder_never_share_a_state_file(tmp_path):
    """Seen: two configs started from one folder shared var/smartcti-state.sqlite and restored each
    other's devices. The default state file is derived from the config; one file has one owner."""
    from smartcti_gateway.config import default_state_file
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    assert default_state_file(str(a)) != default_state_file(str(b))
    assert default_state_file(str(a)) == default_state_file(str(a))
    assert default_state_file(str(a)).startswith("var/smartcti-state-a-")
    # the same state file given to two gateways: the second one refuses to start, naming the first
    import yaml
    from .support import free_port
    procs = []
    try:
        for path in (a, b):
            path.write_text(yaml.safe_dump({"listen": f"127.0.0.1:{free_port()}", "state_file": "shared.sqlite",
                                            "links": [{"link_id": 1, "pabx": {"url": "http://127.0.0.1:9/RPC2",
                                                                                "timeout": 1}}]}))
        first = subprocess.Popen([sys.executable, "-m", "smartcti_gateway", "run", "--config", str(a)],
                                 cwd=tmp_path, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL, env={**os.environ, "PYTHONPATH": str(ROOT)})
        procs.append(first)
        from .support import wait_for
        wait_for(lambda: (tmp_path / "shared.sqlite.lock").exists() and
                 "pid" in (tmp_path / "shared.sqlite.lock").read_text(), timeout=20, what="first gateway owns it")
        res = run_gateway(b, tmp_path)
        assert res.returncode == 1
        (line,) = [l for l in res.stderr.splitlines() if "cannot start" in l]
        assert "shared.sqlite is in use by another smartcti-gateway (pid" in line and str(a) in line
        assert "give this config its own state_file" in line and f"(state_file in {b})" in line
    finally:
        for p in procs:
            p.terminate()
            p.wait(20)


def test_environment_defaults_and_numbers(tmp_path, monkeypatch):
    monkeypatch.delenv("AMI_PORT", raising=False)
    text = "links: [{link_id: 2, pabx: {driver: asterisk, secret: x, port: '${AMI_PORT:-5038}', timeout: '${T:-2.5}'}}]\n"
    cfg = load(write(tmp_path, text))
    assert cfg.links[0].pabx.options.port == 5038 and cfg.links[0].pabx.timeout == 2.5
    monkeypatch.setenv("AMI_PORT", "15038")
    assert load(write(tmp_path, text)).links[0].pabx.options.port == 15038
    monkeypatch.setenv("AMI_PORT", "fifty")
    assert "links[0].pabx.port: must be int, got str 'fifty'" in error_of(tmp_path, text)


def test_the_asterisk_example_config_is_valid(monkeypatch):
    monkeypatch.setenv("AMI_SECRET", "from-the-environment")
    cfg = load(str(ROOT / "config" / "asterisk.yaml"))
    o = cfg.links[0].pabx.options
    assert (cfg.links[0].pabx.driver, o.host, o.port, o.username, o.secret) == (
        "asterisk", "127.0.0.1", 5038, "smartcti", "from-the-environment")
    assert o.queue_of("701") == "vendas" and o.queue_of("703") == "703" and o.group_of("suporte") == "702"
    assert "from-the-environment" not in repr(o)
