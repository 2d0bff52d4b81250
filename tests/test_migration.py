"""import-properties: an old DigitroCTILink install's .properties files become the gateway's YAML config."""
from __future__ import annotations

import argparse
import re
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest
import yaml

from smartcti_gateway import config
from smartcti_gateway.migration import (
    MigrationError,
    add_import_properties_parser,
    import_properties,
    main,
    parse_properties,
    run_import_properties,
)

ROOT = Path(__file__).resolve().parent.parent
NOW = datetime(2024, 5, 17, 9, 30, tzinfo=timezone.utc)


def props(path: Path, text: str, encoding: str = "iso-8859-1") -> Path:
    """Write a .properties file as the old install had it (ISO-8859-1, CRLF)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.replace("\n", "\r\n").encode(encoding))
    return path


def old_install(d: Path, *, link_id: str = "1", wsdl: str | None = None,
                xmlrpc: str = "http://10.0.0.5:2551/RPC2", extra: str = "") -> Path:
    props(d / "Digitro.properties", f"# Digitro NGC\nURL.Xml-RPC.Server={xmlrpc}\n")
    lines = [f"Microsiga.LinkID={link_id}",
             "File.Log=C\\:\\\\DigitroCTILink\\\\logs",
             "EventingServer.Port=9000"]
    if wsdl is not None:
        lines.append(f"WSDL.SmartCTIWSCommand={wsdl}")
    props(d / "DigitroCTILink.properties", "\n".join(lines) + "\n" + extra)
    return d


def flat(text: str) -> str:
    """The text with wrapped comment lines joined."""
    return re.sub(r"\n *# {7,}", " ", text)


def convert(d: Path) -> tuple[str, dict, config.Config]:
    text = import_properties(d, now=NOW)
    data = yaml.safe_load(text)
    return text, data, config.parse(yaml.safe_load(text), "<test>")


# --------------------------------------------------------------------------- .properties semantics


def test_parse_properties_follows_java_semantics():
    text = (
        "# comment\n"
        "! another comment\n"
        "   \n"
        "a=1\n"
        "b: 2\n"
        "c 3\n"
        "  d  =  spaced value  \n"
        "e\\:f=g\\=h\n"
        "multi=one, \\\n"
        "      two, \\\n"
        "   three\n"
        "# not continued \\\n"
        "after=comment\n"
        "uni=Recep\\u00e7\\u00e3o\n"
        "tab=a\\tb\n"
        "path=C\\:\\\\Digitro\\\\logs\n"
        "dropped=C:\\Digitro\\logs\n"
        "empty\n"
        "empty2=\n"
        "key\\ with\\ spaces = v\n"
        "a=last wins\n"
        "even=ends with two \\\\\n"
        "next=line\n"
        "colon:=x\n"
        "crlf=1\r\ncr=2\rlast=3"
    )
    assert parse_properties(text) == {
        "a": "last wins",
        "b": "2",
        "c": "3",
        "d": "spaced value  ",
        "e:f": "g=h",
        "multi": "one, two, three",
        "after": "comment",
        "uni": "Recepção",
        "tab": "a\tb",
        "path": "C:\\Digitro\\logs",
        "dropped": "C:Digitrologs",
        "empty": "",
        "empty2": "",
        "key with spaces": "v",
        "even": "ends with two \\",
        "next": "line",
        "colon": "=x",
        "crlf": "1",
        "cr": "2",
        "last": "3",
    }


def test_parse_properties_refuses_a_malformed_unicode_escape():
    with pytest.raises(ValueError, match="line 2"):
        parse_properties("ok=1\nbad=\\u00zz\n")


def test_trailing_backslash_at_end_of_file_is_dropped():
    assert parse_properties("a=b\\") == {"a": "b"}


# --------------------------------------------------------------------------- conversions


def test_main_files_only(tmp_path):
    old_install(tmp_path, wsdl="http\\://10.0.0.2\\:8080/axis2/services/SmartCTIWSCommand?wsdl")
    text, data, cfg = convert(tmp_path)

    assert data["listen"] == "0.0.0.0:8080"
    assert data["logging"] == {"dir": "C:/DigitroCTILink/logs", "per_extension": True}
    assert "simulator" not in data
    [link] = data["links"]
    assert link == {
        "link_id": 1,
        "name": "DigitroCTILink link 1",
        "command_path": "/axis2/services/SmartCTIWSCommand",
        "pabx": {"driver": "digitro", "url": "http://10.0.0.5:2551/RPC2", "timeout": 5,
                 "callback_url": "http://10.0.0.2:8080/pabx/digitro/1/RPC2"},
    }
    assert [l.link_id for l in cfg.links] == [1] and not cfg.simulator.enabled
    assert cfg.logging.dir == "C:/DigitroCTILink/logs" and cfg.logging.per_extension

    # The header: files, date, what to check.
    head = text.split("\nlisten:")[0]
    assert "#   Digitro.properties" in head and "#   DigitroCTILink.properties" in head
    assert "2024-05-17 09:30:00 +0000" in head
    assert "K4_CMD_URL" in head and "Firewall" in head and "EventingServer.Port 9000" in head
    # The SK4 block: K4_CMD_URL unchanged.
    assert "K4_CMD_URL = http://10.0.0.2:8080/axis2/services/SmartCTIWSCommand   (from" in text
    assert "unchanged: the gateway serves this URL as it is" in text
    assert "# EventingServer.Port = 9000 (DigitroCTILink.properties:3)" in text


def test_main_and_two_extra_links(tmp_path):
    old_install(tmp_path, wsdl="http://srvcti:8080/axis2/services/SmartCTIWSCommand?wsdl")
    # Link 2: only its LinkID and its own NGC; the WSDL is inherited, hence the same port and path.
    props(tmp_path / "SmartCTIWSCommand2.properties", "Microsiga.LinkID=2\nURL.Xml-RPC.Server=http://10.0.0.6:2551/RPC2\n")
    # Link 3: its own webapp on another port.
    props(tmp_path / "SmartCTIWSCommand3.properties",
          "Microsiga.LinkID=3\nWSDL.SmartCTIWSCommand=http://srvcti:8090/DigitroCTILink3/services/SmartCTIWSCommand?wsdl\n")
    text, data, cfg = convert(tmp_path)

    assert [l["link_id"] for l in data["links"]] == [1, 2, 3]
    l1, l2, l3 = data["links"]
    assert l1["pabx"]["url"] == "http://10.0.0.5:2551/RPC2"
    assert l2["pabx"]["url"] == "http://10.0.0.6:2551/RPC2"
    assert l3["pabx"]["url"] == "http://10.0.0.5:2551/RPC2"          # inherited
    assert data["listen"] == "0.0.0.0:8080"
    assert "listen" not in l1 and "listen" not in l2
    assert l3["listen"] == "0.0.0.0:8090"
    assert l1["command_path"] == "/axis2/services/SmartCTIWSCommand"
    assert l2["command_path"] == "/link2/axis2/services/SmartCTIWSCommand"   # made distinct
    assert l3["command_path"] == "/DigitroCTILink3/services/SmartCTIWSCommand"
    # srvcti is a name: callback_url is left to the gateway (commented).
    assert all("callback_url" not in l["pabx"] for l in data["links"])
    assert "# callback_url: http://srvcti:8080/pabx/digitro/1/RPC2" in text
    assert "K4_CMD_URL CHANGES to http://srvcti:8080/link2/axis2/services/SmartCTIWSCommand" in text
    assert "K4_CMD_URL = http://srvcti:8090/DigitroCTILink3/services/SmartCTIWSCommand   (from" in text
    assert "inherited from the main files: WSDL.SmartCTIWSCommand, File.Log, EventingServer.Port" in text
    assert [(l.link_id, l.listen or cfg.listen, l.command_path) for l in cfg.links] == [
        (1, "0.0.0.0:8080", "/axis2/services/SmartCTIWSCommand"),
        (2, "0.0.0.0:8080", "/link2/axis2/services/SmartCTIWSCommand"),
        (3, "0.0.0.0:8090", "/DigitroCTILink3/services/SmartCTIWSCommand"),
    ]


def test_extra_link_in_a_subfolder_webapp(tmp_path):
    classes = tmp_path / "webapps" / "DigitroCTILink" / "WEB-INF" / "classes"
    old_install(classes, wsdl="http://10.0.0.2:8080/DigitroCTILink/services/SmartCTIWSCommand?wsdl")
    copy = tmp_path / "webapps" / "DigitroCTILink2" / "WEB-INF" / "classes"
    props(copy / "SmartCTIWSCommand2.properties",
          "Microsiga.LinkID=2\n"
          "WSDL.SmartCTIWSCommand=http://10.0.0.2:8080/DigitroCTILink2/services/SmartCTIWSCommand?wsdl\n"
          "File.Log=C\\:\\\\DigitroCTILink2\\\\logs\n")
    # A leftover copy of the main files in the second webapp is listed, not read.
    props(copy / "DigitroCTILink.properties", "Microsiga.LinkID=1\n")
    props(tmp_path / "webapps" / "DigitroCTILink" / "WEB-INF" / "classes" / "log4j.properties", "log4j.rootLogger=INFO\n")
    text, data, cfg = convert(tmp_path)

    assert [(l["link_id"], l["command_path"]) for l in data["links"]] == [
        (1, "/DigitroCTILink/services/SmartCTIWSCommand"),
        (2, "/DigitroCTILink2/services/SmartCTIWSCommand"),
    ]
    assert data["links"][1]["pabx"]["url"] == "http://10.0.0.5:2551/RPC2"
    assert data["links"][1]["pabx"]["callback_url"] == "http://10.0.0.2:8080/pabx/digitro/2/RPC2"
    assert data["logging"]["dir"] == "C:/DigitroCTILink/logs"
    assert "File.Log of this link was C:/DigitroCTILink2/logs" in text
    assert "#   webapps/DigitroCTILink2/WEB-INF/classes/SmartCTIWSCommand2.properties" in text
    assert "NOT read" in text and "#   webapps/DigitroCTILink2/WEB-INF/classes/DigitroCTILink.properties" in text
    assert "log4j.properties" in text
    assert len(cfg.links) == 2


def test_files_deeper_than_four_levels_are_not_searched(tmp_path):
    props(tmp_path / "a" / "b" / "c" / "d" / "e" / "DigitroCTILink.properties", "Microsiga.LinkID=1\n")
    with pytest.raises(MigrationError, match="no Digitro.properties"):
        import_properties(tmp_path)


def test_axis1_jws_wsdl(tmp_path):
    old_install(tmp_path, wsdl="http://10.0.0.2:8080/axis/SmartCTIWSCommand.jws?wsdl")
    text, data, _ = convert(tmp_path)
    link = data["links"][0]
    assert link["command_path"] == "/axis/SmartCTIWSCommand"
    assert data["listen"] == "0.0.0.0:8080"
    assert "K4_CMD_URL = http://10.0.0.2:8080/axis/SmartCTIWSCommand.jws   (from" in text
    assert "also serves /axis/SmartCTIWSCommand.jws" in flat(text)
    from smartcti_gateway.protheus.command_service import ENDPOINT_SUFFIXES
    assert ".jws" in ENDPOINT_SUFFIXES          # what the comment promises


@pytest.mark.parametrize("written, url", [
    ("10.0.0.5\\:2551", "http://10.0.0.5:2551/RPC2"),
    ("10.0.0.5:2551/", "http://10.0.0.5:2551/RPC2"),
    ("http://ngc.local", "http://ngc.local/RPC2"),
    ("ngc.local:2551/RPC2", "http://ngc.local:2551/RPC2"),
    ("https://10.0.0.5:2552/xmlrpc", "https://10.0.0.5:2552/xmlrpc"),
])
def test_xmlrpc_url_is_normalised(tmp_path, written, url):
    old_install(tmp_path, xmlrpc=written)
    text, data, cfg = convert(tmp_path)
    assert data["links"][0]["pabx"]["url"] == url == cfg.links[0].pabx.options.url


def test_url_without_port_gets_a_warning(tmp_path):
    old_install(tmp_path, xmlrpc="http://ngc.local/RPC2")
    text, _, _ = convert(tmp_path)
    assert "no port" in text and "2551" in text


def test_no_wsdl_uses_the_defaults_and_says_so(tmp_path):
    old_install(tmp_path)
    text, data, _ = convert(tmp_path)
    assert data["listen"] == "0.0.0.0:8080"
    assert data["links"][0]["command_path"] == "/axis2/services/SmartCTIWSCommand"
    assert "K4_CMD_URL = http://<this server>:8080/axis2/services/SmartCTIWSCommand" in text
    assert "WSDL.SmartCTIWSCommand is not set" in text
    assert "callback_url" not in data["links"][0]["pabx"]


def test_loopback_wsdl_host_is_not_a_callback_host(tmp_path):
    old_install(tmp_path, wsdl="http://localhost:8085/axis2/services/SmartCTIWSCommand?wsdl")
    text, data, _ = convert(tmp_path)
    assert data["listen"] == "0.0.0.0:8085"
    assert "callback_url" not in data["links"][0]["pabx"]
    assert "# callback_url: http://<this server>:8085/pabx/digitro/1/RPC2" in text
    assert "K4_CMD_URL = http://<this server>:8085/axis2/services/SmartCTIWSCommand" in text


def test_windows_paths(tmp_path):
    props(tmp_path / "Digitro.properties", "URL.Xml-RPC.Server=http\\://10.0.0.5\\:2551/RPC2\n")
    props(tmp_path / "DigitroCTILink.properties",
          "Microsiga.LinkID=1\n"
          "File.Log=D:\\DigitroCTILink\\logs\n"         # single backslashes: Java dropped them
          "WSDL.SmartCTIWSCommand=http\\://srv\\:8080/axis2/services/SmartCTIWSCommand?wsdl\n")
    text, data, _ = convert(tmp_path)
    assert data["logging"]["dir"] == "D:/DigitroCTILink/logs"
    assert "which Java read as 'D:DigitroCTILinklogs'" in flat(text)
    assert "backslashes turned into '/'" in text
    assert data["links"][0]["pabx"]["url"] == "http://10.0.0.5:2551/RPC2"


def test_iso_8859_1_and_utf8_characters(tmp_path):
    old_install(tmp_path, extra="Descricao=Ramal Recepção\nObs=Atenção \\u00e0 fila\n")
    text, _, _ = convert(tmp_path)
    assert "# not used by smartcti-gateway: Descricao = Ramal Recepção   (DigitroCTILink.properties:4)" in text
    assert "# not used by smartcti-gateway: Obs = Atenção à fila" in text
    # The same file re-saved as UTF-8 by a modern editor reads the same.
    props(tmp_path / "DigitroCTILink.properties",
          "Microsiga.LinkID=1\nDescricao=Ramal Recepção\n", encoding="utf-8")
    text, _, _ = convert(tmp_path)
    assert "Descricao = Ramal Recepção" in text and "read as UTF-8" in text


def test_secrets_are_never_copied_nor_printed(tmp_path, capsys):
    old_install(tmp_path, extra="Senha.Admin=s3cr3t-1\nDB.Password: s3cr3t-2\nNGC.pwd s3cr3t-3\n"
                                "api.secret=s3cr3t-4\nUserPass=s3cr3t-5\nOther=visible\n")
    text, _, _ = convert(tmp_path)
    assert "s3cr3t" not in text
    for key in ("Senha.Admin", "DB.Password", "NGC.pwd", "api.secret", "UserPass"):
        assert f"# {key}: (secret not copied)" in text
    assert "not used by smartcti-gateway: Other = visible" in text
    assert main([str(tmp_path)]) == 0
    out, err = capsys.readouterr()
    assert "s3cr3t" not in out + err and "(secret not copied)" in out


def test_unknown_keys_of_extra_files_go_with_their_link(tmp_path):
    old_install(tmp_path, wsdl="http://10.0.0.2:8080/axis2/services/SmartCTIWSCommand?wsdl")
    props(tmp_path / "SmartCTIWSCommand2.properties",
          "Microsiga.LinkID=2\nWSDL.SmartCTIWSCommand=http://10.0.0.2:8081/axis2/services/SmartCTIWSCommand?wsdl\n"
          "Fila=701\n")
    text, _, _ = convert(tmp_path)
    link2 = text.split("--- LinkID 2")[1]
    assert "not used by smartcti-gateway: Fila = 701   (SmartCTIWSCommand2.properties:3)" in link2


# --------------------------------------------------------------------------- errors


def test_duplicate_link_ids_name_both_files(tmp_path):
    old_install(tmp_path)
    props(tmp_path / "SmartCTIWSCommand2.properties", "URL.Xml-RPC.Server=http://10.0.0.6:2551/RPC2\n")
    with pytest.raises(MigrationError) as e:
        import_properties(tmp_path)
    msg = str(e.value)
    assert "Digitro.properties + DigitroCTILink.properties and SmartCTIWSCommand2.properties" in msg
    assert "LinkID 1" in msg and "inherits it from DigitroCTILink.properties" in msg


def test_duplicate_link_ids_in_two_extra_files(tmp_path, capsys):
    old_install(tmp_path)
    props(tmp_path / "SmartCTIWSCommand2.properties", "Microsiga.LinkID=7\n")
    props(tmp_path / "copy" / "SmartCTIWSCommand3.properties", "Microsiga.LinkID=7\n")
    assert main([str(tmp_path)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert "SmartCTIWSCommand2.properties and copy/SmartCTIWSCommand3.properties: both are LinkID 7" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("value", ["um", "1.0", "0", "-3", ""])
def test_link_id_must_be_a_positive_integer(tmp_path, capsys, value):
    old_install(tmp_path, link_id=value)
    assert main([str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("import-properties: error: DigitroCTILink.properties:1: Microsiga.LinkID = ")
    assert "K4_LINKID" in err and "Traceback" not in err


def test_missing_link_id_and_missing_xmlrpc_url(tmp_path):
    props(tmp_path / "DigitroCTILink.properties", "File.Log=logs\n")
    with pytest.raises(MigrationError, match="DigitroCTILink.properties: Microsiga.LinkID is missing"):
        import_properties(tmp_path)
    props(tmp_path / "DigitroCTILink.properties", "Microsiga.LinkID=1\n")
    with pytest.raises(MigrationError, match="URL.Xml-RPC.Server is missing"):
        import_properties(tmp_path)


def test_empty_and_missing_folders(tmp_path, capsys):
    assert main([str(tmp_path)]) == 2
    assert "no Digitro.properties, DigitroCTILink.properties or SmartCTIWSCommand<N>.properties" in capsys.readouterr().err
    assert main([str(tmp_path / "nope")]) == 2
    assert "no such folder" in capsys.readouterr().err
    f = tmp_path / "file.txt"
    f.write_text("x")
    assert main([str(f)]) == 2
    assert "not a folder" in capsys.readouterr().err


def test_unreadable_file(tmp_path, capsys, monkeypatch):
    old_install(tmp_path)
    real = Path.read_bytes

    def read_bytes(self):
        if self.name == "DigitroCTILink.properties":
            raise PermissionError(13, "Permission denied")
        return real(self)
    monkeypatch.setattr(Path, "read_bytes", read_bytes)
    assert main([str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "DigitroCTILink.properties: cannot read this file (Permission denied)" in err


def test_malformed_escape_names_file_and_line(tmp_path):
    old_install(tmp_path, extra="Bad=\\u12\n")
    with pytest.raises(MigrationError, match=r"DigitroCTILink.properties:4: malformed \\uXXXX"):
        import_properties(tmp_path)


def test_bad_wsdl_url(tmp_path):
    old_install(tmp_path, wsdl="http://srv:80x80/axis2/services/SmartCTIWSCommand?wsdl")
    with pytest.raises(MigrationError, match="DigitroCTILink.properties:4: WSDL.SmartCTIWSCommand"):
        import_properties(tmp_path)


# --------------------------------------------------------------------------- command line


def test_output_file_force_and_check_config(tmp_path, capsys):
    old = old_install(tmp_path / "old", wsdl="http://10.0.0.2:8080/axis2/services/SmartCTIWSCommand?wsdl")
    out = tmp_path / "gateway.yaml"
    assert main([str(old), "-o", str(out)]) == 0
    assert "wrote" in capsys.readouterr().err
    cfg = config.load(out)
    assert cfg.links[0].link_id == 1 and cfg.links[0].pabx.options.url == "http://10.0.0.5:2551/RPC2"

    out.write_text("mine", encoding="utf-8")
    assert main([str(old), "-o", str(out)]) == 2
    assert "exists; add --force" in capsys.readouterr().err
    assert out.read_text(encoding="utf-8") == "mine"
    assert main(["import-properties", str(old), "-o", str(out), "--force"]) == 0
    assert config.load(out).links[0].link_id == 1


def test_parser_plugs_into_the_main_cli():
    parser = argparse.ArgumentParser(prog="smartcti-gateway")
    sub = parser.add_subparsers(dest="command", required=True)
    add_import_properties_parser(sub)
    args = parser.parse_args(["import-properties", "C:/old", "-o", "gw.yaml", "--force"])
    assert (args.command, args.dir, args.output, args.force) == ("import-properties", "C:/old", "gw.yaml", True)
    assert args.func is run_import_properties


def test_subprocess(tmp_path):
    old_install(tmp_path, wsdl="http://10.0.0.2:8080/axis2/services/SmartCTIWSCommand?wsdl",
                extra="Descricao=Ramal Recepção\n")
    code = "import sys; from smartcti_gateway.migration import main; sys.exit(main())"
    run = subprocess.run([sys.executable, "-c", code, "import-properties", str(tmp_path)],
                         capture_output=True, cwd=ROOT, timeout=60)
    assert run.returncode == 0, run.stderr.decode()
    text = run.stdout.decode("utf-8")
    assert "Ramal Recepção" in text
    assert config.parse(yaml.safe_load(text)).links[0].command_path == "/axis2/services/SmartCTIWSCommand"

    run = subprocess.run([sys.executable, "-c", code, str(tmp_path / "missing")],
                         capture_output=True, cwd=ROOT, timeout=60)
    assert run.returncode == 2
    assert b"no such folder" in run.stderr and b"Traceback" not in run.stderr


# --------------------------------------------------------------------------- end to end


def test_the_k4_cmd_urls_of_the_comments_answer_on_a_running_gateway(tmp_path):
    """The generated config, run (on the embedded simulator): every K4_CMD_URL it announces answers SystemStatus."""
    from tests.support import RunningGateway, free_port

    port, sim_port = free_port(), free_port()
    old_install(tmp_path / "old", wsdl=f"http://127.0.0.1:{port}/axis/SmartCTIWSCommand.jws?wsdl")
    props(tmp_path / "old" / "SmartCTIWSCommand2.properties", "Microsiga.LinkID=2\n")     # same port and path
    text = import_properties(tmp_path / "old")
    announced = re.findall(r"K4_CMD_URL (?:= |CHANGES to )(.+?)(?:   \(.*)?$", text, re.M)
    assert announced == [f"http://<this server>:{port}/axis/SmartCTIWSCommand.jws",
                         f"http://<this server>:{port}/link2/axis/SmartCTIWSCommand"]

    data = yaml.safe_load(text)
    data["listen"] = f"127.0.0.1:{port}"
    data["logging"]["dir"] = str(tmp_path / "logs")
    data["simulator"] = {"enabled": True, "listen": f"127.0.0.1:{sim_port}"}
    for link in data["links"]:
        link["pabx"]["url"] = f"http://127.0.0.1:{sim_port}/RPC2"
    gw = RunningGateway(data)
    try:
        for url in announced + [f"http://<this server>:{port}/axis/SmartCTIWSCommand"]:
            path = url.split(f":{port}", 1)[1] + ".SmartCTIWSCommandHttpSoap11Endpoint/"
            assert gw.call("SystemStatus", path) == "0", path
    finally:
        gw.close()


# --------------------------------------------------------------- File.Log, extra links, forgotten files
@pytest.mark.parametrize("value,on", [("Y", True), ("y", True), ("S", True), ("N", False), ("n", False), ("", False)])
def test_file_log_is_the_switch_of_the_old_file_log(tmp_path, value, on):
    """Seed course: "Para habilitar, indique Y". Seen: File.Log=Y became logging.dir: Y, and N switched logs on."""
    props(tmp_path / "Digitro.properties", "URL.Xml-RPC.Server=http://10.0.0.5:2551/RPC2\n")
    props(tmp_path / "DigitroCTILink.properties", f"Microsiga.LinkID=1\nFile.Log={value}\n")
    text, data, cfg = convert(tmp_path)
    assert data["logging"] == {"dir": "logs", "per_extension": on}
    assert cfg.logging.per_extension is on and cfg.logging.dir == "logs"
    assert "Log\\ folder" in text if on else "off, as in the old install" in text


def test_file_log_absent_writes_no_logging_section(tmp_path):
    props(tmp_path / "Digitro.properties", "URL.Xml-RPC.Server=http://10.0.0.5:2551/RPC2\n")
    props(tmp_path / "DigitroCTILink.properties", "Microsiga.LinkID=1\n")
    _, data, cfg = convert(tmp_path)
    assert "logging" not in data and cfg.logging.per_extension is False


def test_one_switch_for_every_link(tmp_path):
    props(tmp_path / "Digitro.properties", "URL.Xml-RPC.Server=http://10.0.0.5:2551/RPC2\n")
    props(tmp_path / "DigitroCTILink.properties", "Microsiga.LinkID=1\nFile.Log=N\n")
    props(tmp_path / "SmartCTIWSCommand2.properties", "Microsiga.LinkID=2\nFile.Log=Y\n"
                                                       "WSDL.SmartCTIWSCommand=http://srv:8081/axis2/services/SmartCTIWSCommand?wsdl\n")
    text, data, _ = convert(tmp_path)
    assert data["logging"]["per_extension"] is True
    assert "File.Log of this link was N: the gateway has one switch for every link" in text


@pytest.mark.parametrize("name", ["SmartCTIWSCommands2.properties", "smartctiwscommands2.properties",
                                  "SmartCTIWSCommand2.properties"])
def test_extra_links_with_or_without_the_s(tmp_path, name):
    """The TOTVS course names them SmartCTIWSCommands2.properties, SmartCTIWSCommands3...."""
    old_install(tmp_path, wsdl="http://srv:8080/axis2/services/SmartCTIWSCommand?wsdl")
    props(tmp_path / name, "Microsiga.LinkID=2\nWSDL.SmartCTIWSCommand=http://srv:8081/DigitroCTILink2/services/"
                           "SmartCTIWSCommand?wsdl\n")
    _, data, _ = convert(tmp_path)
    assert [l["link_id"] for l in data["links"]] == [1, 2]


def test_a_file_that_looks_like_a_link_and_is_not_read_is_a_warning_on_the_terminal(tmp_path, capsys):
    old_install(tmp_path)
    props(tmp_path / "SmartCTIWSCommand-link2.properties", "Microsiga.LinkID=2\n")     # not a name that is read
    props(tmp_path / "backup" / "DigitroCTILink.properties", "Microsiga.LinkID=3\nEventingServer.Port=9001\n")
    props(tmp_path / "log4j.properties", "log4j.rootLogger=INFO\n")                      # not a link: nothing said
    out = tmp_path / "gw.yaml"
    assert main([str(tmp_path), "-o", str(out)]) == 0
    err = capsys.readouterr().err
    warnings = [l for l in err.splitlines() if l.startswith("import-properties: warning: ")]
    assert len(warnings) == 2, err
    assert "SmartCTIWSCommand-link2.properties looks like a link (Microsiga.LinkID = 2) but is not read" in err
    assert "backup/DigitroCTILink.properties looks like a link (Microsiga.LinkID = 3, EventingServer.Port = 9001)" in err
    assert "rename it SmartCTIWSCommand<N>.properties" in err and "log4j" not in err
