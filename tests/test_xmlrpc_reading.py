"""xmlsafe.xmlrpc_loads reads plain UTF-8 XML-RPC with lxml and everything else with the stdlib: both
readings must give the same values, the same Fault, or the same kind of error, for whatever comes."""
from __future__ import annotations

import random
import xmlrpc.client

import pytest

from smartcti_gateway import xmlsafe


def outcome(read, body: bytes):
    """What ``read`` makes of ``body``: its value, its Fault, or the kind of its error."""
    try:
        return ("ok", read(body))
    except xmlrpc.client.Fault as f:
        return ("fault", f.faultCode, f.faultString)
    except Exception as e:  # noqa: BLE001
        return ("error", type(e).__name__)


def stdlib(body: bytes):
    """What the reading was before the lxml path: the stdlib's, the DTD refused."""
    return outcome(xmlsafe._expat_loads, body)


def ours(body: bytes):
    return outcome(xmlsafe.xmlrpc_loads, body)


def comparable(outcome):
    """DateTime and Binary compare by value; everything else as it is."""
    def walk(v):
        if isinstance(v, xmlrpc.client.DateTime):
            return ("DateTime", v.value)
        if isinstance(v, xmlrpc.client.Binary):
            return ("Binary", v.data)
        if isinstance(v, dict):
            return {k: walk(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return type(v)(walk(x) for x in v)
        return v
    return walk(outcome)


def random_value(rng: random.Random, depth: int = 0):
    kinds = ["str", "int", "bool", "float", "none", "date", "bin"] + (["dict", "list"] if depth < 4 else [])
    kind = rng.choice(kinds)
    if kind == "str":
        return "".join(rng.choice("aZ09 <>&'\"çÇã€\t\n\r]]>") for _ in range(rng.randint(0, 12)))
    if kind == "int":
        return rng.randint(-2**31, 2**31 - 1)
    if kind == "bool":
        return rng.random() < 0.5
    if kind == "float":
        return rng.uniform(-1e6, 1e6)
    if kind == "none":
        return None
    if kind == "date":
        return xmlrpc.client.DateTime(f"2026{rng.randint(1, 12):02d}01T12:{rng.randint(0, 59):02d}:00")
    if kind == "bin":
        return xmlrpc.client.Binary(bytes(rng.randrange(256) for _ in range(rng.randint(0, 9))))
    if kind == "dict":
        return {f"K{rng.randint(0, 9)}": random_value(rng, depth + 1) for _ in range(rng.randint(0, 5))}
    return [random_value(rng, depth + 1) for _ in range(rng.randint(0, 5))]


@pytest.mark.parametrize("seed", range(300))
def test_any_value_xmlrpc_writes_is_read_as_the_stdlib_reads_it(seed):
    rng = random.Random(seed)
    params = tuple(random_value(rng) for _ in range(rng.randint(0, 3)))
    shapes = [xmlrpc.client.dumps(params, "cti.evento", allow_none=True),
              xmlrpc.client.dumps((params,), methodresponse=True, allow_none=True),
              xmlrpc.client.dumps(xmlrpc.client.Fault(rng.randint(1, 9), f"refused {seed} <&>"),
                                  methodresponse=True)]
    for text in shapes:
        body = text.encode("utf-8")
        assert xmlsafe._plain_utf8(body)                 # these take the lxml path
        assert comparable(ours(body)) == comparable(stdlib(body)), text


ODD = [
    # the shapes the NGC sends, and the tolerant ones the stdlib also reads
    b"<methodResponse><params><param><value>plain</value></param></params></methodResponse>",
    b"<methodResponse><params><param><value>  </value></param></params></methodResponse>",
    b"<methodResponse><params><param><value> <string>x</string> </value></param></params></methodResponse>",
    b"<methodResponse><params><param><value><string>a<!-- note -->b</string></value></param></params>"
    b"</methodResponse>",
    b"<methodResponse><params><param><value><string><![CDATA[<x>&]]></string></value></param></params>"
    b"</methodResponse>",
    b"<?xml version='1.0' encoding='UTF-8'?><methodCall><methodName>cti.evento</methodName></methodCall>",
    b"<methodCall><params><param><value><i4>7</i4></value></param></params>"
    b"<methodName>after</methodName></methodCall>",
    b"<methodResponse><params><param><value><ex:i8 xmlns:ex='http://ws.apache.org/xmlrpc/namespaces/extensions'>"
    b"8</ex:i8></value></param></params></methodResponse>",
    b"<methodResponse><params><param><value><ex:nil/></value></param></params></methodResponse>",
    b"<methodResponse><params><param><value><array><value><int>1</int></value></array></value></param>"
    b"</params></methodResponse>",
    b"<methodResponse><params><param><value><struct><member><value>v</value><name>n</name></member>"
    b"</struct></value></param></params></methodResponse>",
    b"<methodResponse><params><param><value><struct><member><name>n</name></member></struct></value>"
    b"</param></params></methodResponse>",
    b"<methodResponse><params><param><value><struct><member><name>a</name><value>1</value></member>"
    b"<member><name>a</name><value>2</value></member></struct></value></param></params></methodResponse>",
    b"<methodResponse><params><param><value><int> 42 </int></value></param></params></methodResponse>",
    b"<methodResponse><params><param><value><double>1e400</double></value></param></params></methodResponse>",
    b"<methodResponse><params><param><value><bigdecimal>1.10</bigdecimal></value></param></params>"
    b"</methodResponse>",
    # what the stdlib refuses, refused alike
    b"<methodResponse><params><param><value><boolean>yes</boolean></value></param></params></methodResponse>",
    b"<methodResponse><params><param><value><int>4x</int></value></param></params></methodResponse>",
    b"<methodResponse><params><param><value><wat>1</wat></value></param></params></methodResponse>",
    b"<methodResponse></methodResponse>",
    b"<methodResponse><fault><value><struct><member><name>faultCode</name><value><int>3</int></value>"
    b"</member></struct></value></fault></methodResponse>",
    b"<methodResponse><fault><value><string>no struct</string></value></fault></methodResponse>",
    b"<methodResponse><params><param><value>unclosed</param></params></methodResponse>",
    b"<methodResponse><params><param><value>\xff\xfe</value></param></params></methodResponse>",
    b"<other><params><param><value>x</value></param></params></other>",
    b"",
    # other encodings and DTDs: the stdlib's path, as before
    b"<?xml version='1.0' encoding='ISO-8859-1'?><methodResponse><params><param><value>\xe7</value></param>"
    b"</params></methodResponse>",
    "<?xml version='1.0' encoding='UTF-16'?><methodResponse><params><param><value>ç</value></param>"
    "</params></methodResponse>".encode("utf-16"),
    b"<?xml version='1.0' encoding='windows-1252'?><methodResponse><params><param><value>\x80</value></param>"
    b"</params></methodResponse>",
    b"<!DOCTYPE x [<!ENTITY a 'b'>]><methodResponse><params><param><value>&a;</value></param></params>"
    b"</methodResponse>",
]


@pytest.mark.parametrize("body", ODD, ids=range(len(ODD)))
def test_odd_and_wrong_documents_get_the_stdlib_answer(body):
    assert comparable(ours(body)) == comparable(stdlib(body))


def test_the_plain_path_is_taken_for_what_the_ngc_sends_and_only_for_utf8():
    event = xmlrpc.client.dumps(({"EVENTO": "CHAMADA_TOCANDO", "DISPOSITIVO": "2001"},), "cti.evento")
    assert xmlsafe._plain_utf8(event.encode())
    assert xmlsafe._plain_utf8(b"<?xml version='1.0' encoding=\"utf8\"?><methodCall/>")
    assert not xmlsafe._plain_utf8(b"<?xml version='1.0' encoding='ISO-8859-1'?><methodCall/>")
    assert not xmlsafe._plain_utf8(b"\xef\xbb\xbf<methodCall/>")
    assert not xmlsafe._plain_utf8(b"<!DOCTYPE m><methodCall/>")


@pytest.mark.parametrize("body", ODD, ids=range(len(ODD)))
def test_the_digitro_driver_reading_tells_xmlsafe_what_it_checked_and_reads_alike(body):
    """The driver checks DTD and UTF-8 itself and passes that on (plain_utf8): the same values and errors,
    where it does not refuse the body first (a DTD, bytes that are not UTF-8)."""
    from smartcti_gateway.pabx.digitro.driver import _loads
    try:
        _loads(body)
    except ValueError as e:
        if "DTDs" in str(e) or "not valid UTF-8" in str(e):
            return                                   # the driver's own refusals, before any reading
    except Exception:  # noqa: BLE001 - compared below
        pass
    assert comparable(outcome(_loads, body)) == comparable(stdlib(body))
