"""Unit tests of smartcti_gateway.protheus.soap: parsing, writing, WSDL (no sockets)."""
from __future__ import annotations

import re

import pytest
from lxml import etree

from smartcti_gateway.core.operations import OPERATIONS
from smartcti_gateway.protheus import soap
from smartcti_gateway.protheus.soap import (
    CLIENT,
    SERVER,
    SoapFault,
    SoapRequest,
    fault,
    parse_request,
    response,
    wsdl,
)

SOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"
SOAP12 = "http://www.w3.org/2003/05/soap-envelope"
TNS = "http://DefaultNamespace"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
WSDL_NS = "http://schemas.xmlsoap.org/wsdl/"
WSDL_SOAP = "http://schemas.xmlsoap.org/wsdl/soap/"
XS = "http://www.w3.org/2001/XMLSchema"


def protheus_envelope(inner: str, prefix: str = "soap") -> str:
    """The shape of smartcti.md §1.6: prefixed envelope, default-namespace wrapper."""
    return (
        f'<{prefix}:Envelope xmlns:{prefix}="{SOAP11}">\n'
        f"  <{prefix}:Body>\n    {inner}\n  </{prefix}:Body>\n"
        f"</{prefix}:Envelope>"
    )


def fault_of(body: bytes, content_type: str | None = None) -> SoapFault:
    with pytest.raises(SoapFault) as info:
        parse_request(body, content_type)
    assert info.value.faultcode == CLIENT
    assert info.value.faultstring == str(info.value)
    return info.value


# ---------------------------------------------------------------- parsing


def test_protheus_logon_sample():
    body = protheus_envelope(
        '<Logon xmlns="http://DefaultNamespace"><device>2001</device>'
        "<agentID>1234</agentID><groupID>701,702</groupID></Logon>"
    ).encode()
    req = parse_request(body, "text/xml")
    assert req == SoapRequest("Logon", {"device": "2001", "agentID": "1234", "groupID": "701,702"})
    assert list(req.args) == ["device", "agentID", "groupID"]


def _table_request(op_name: str, style: str) -> tuple[bytes, dict[str, str]]:
    op = OPERATIONS[op_name]
    expected = {p: f"{p}-{i}-{op_name}" for i, p in enumerate(op.params)}
    if style == "default-ns":
        children = "".join(f"<{p}>{v}</{p}>" for p, v in expected.items())
        inner = f'<{op_name} xmlns="{TNS}">{children}</{op_name}>'
        return protheus_envelope(inner).encode(), expected
    if style == "prefixed":
        children = "".join(f"<ns1:{p}>{v}</ns1:{p}>" for p, v in expected.items())
        inner = f'<ns1:{op_name} xmlns:ns1="{TNS}">{children}</ns1:{op_name}>'
        return protheus_envelope(inner, "SOAP-ENV").encode(), expected
    if style == "unqualified":
        children = "".join(f"<{p}>{v}</{p}>" for p, v in expected.items())
        inner = f"<{op_name}>{children}</{op_name}>"
        return protheus_envelope(inner, "soapenv").encode(), expected
    # reversed order, xsi:type on every child
    children = "".join(
        f'<{p} xsi:type="xsd:string">{v}</{p}>' for p, v in reversed(expected.items())
    )
    inner = (
        f'<tns:{op_name} xmlns:tns="{TNS}" xmlns:xsi="{XSI}" '
        f'xmlns:xsd="http://www.w3.org/2001/XMLSchema">{children}</tns:{op_name}>'
    )
    return protheus_envelope(inner, "s").encode(), expected


@pytest.mark.parametrize("style", ["default-ns", "prefixed", "unqualified", "xsi-type-reversed"])
@pytest.mark.parametrize("op_name", list(OPERATIONS))
def test_every_operation_from_table(op_name, style):
    body, expected = _table_request(op_name, style)
    req = parse_request(body, "text/xml; charset=utf-8")
    assert req.operation == op_name
    assert req.args == expected
    assert list(req.args) == list(OPERATIONS[op_name].params)


@pytest.mark.parametrize("op_name", list(OPERATIONS))
def test_every_operation_empty_wrapper_gives_all_params_empty(op_name):
    body = protheus_envelope(f'<{op_name} xmlns="{TNS}"/>').encode()
    req = parse_request(body)
    assert req.operation == op_name
    assert req.args == {p: "" for p in OPERATIONS[op_name].params}


def test_default_namespace_envelope_without_prefix():
    body = (
        f'<Envelope xmlns="{SOAP11}"><Header><x xmlns="urn:h">1</x></Header>'
        f'<Body><MakeCall xmlns="{TNS}"><device>2001</device>'
        "<telephoneNumber>4833334444</telephoneNumber></MakeCall></Body></Envelope>"
    ).encode()
    assert parse_request(body) == SoapRequest(
        "MakeCall", {"device": "2001", "telephoneNumber": "4833334444"}
    )


def test_header_ignored_and_xml_declaration():
    body = (
        "<?xml version='1.0' encoding='UTF-8'?>"
        f'<soapenv:Envelope xmlns:soapenv="{SOAP11}" xmlns:ns="{TNS}">'
        "<soapenv:Header><ns:Logon><ns:device>header</ns:device></ns:Logon></soapenv:Header>"
        "<soapenv:Body><ns:Hold><ns:device>2001</ns:device></ns:Hold></soapenv:Body>"
        "</soapenv:Envelope>"
    ).encode()
    assert parse_request(body) == SoapRequest("Hold", {"device": "2001"})


def test_leading_whitespace_before_declaration_tolerated():
    body = b"\r\n  <?xml version='1.0'?>" + protheus_envelope(f'<Answer xmlns="{TNS}"><device>1</device></Answer>').encode()
    assert parse_request(body) == SoapRequest("Answer", {"device": "1"})


def test_xsi_nil_and_missing_and_empty():
    body = protheus_envelope(
        f'<MakeCallPass xmlns="{TNS}" xmlns:xsi="{XSI}">'
        '<device>2001</device><telephoneNumber xsi:nil="true"/>'
        '<agentID xsi:nil="1">junk</agentID><agentPass></agentPass></MakeCallPass>'
    ).encode()
    req = parse_request(body)
    assert req.args == {
        "device": "2001",
        "telephoneNumber": "",
        "agentID": "",
        "agentPass": "",
        "route": "",
    }


def test_xsi_nil_false_keeps_value():
    body = protheus_envelope(
        f'<Answer xmlns="{TNS}" xmlns:xsi="{XSI}"><device xsi:nil="false">7</device></Answer>'
    ).encode()
    assert parse_request(body).args == {"device": "7"}


def test_whitespace_trimmed_and_inner_preserved():
    body = protheus_envelope(
        f'<MakeCall xmlns="{TNS}"><device>\n\t 2001 \r\n</device>'
        "<telephoneNumber>  48 3333 4444  </telephoneNumber></MakeCall>"
    ).encode()
    # the device is kept as sent (Protheus routes its events by that exact string); the core trims it
    assert parse_request(body).args == {"device": "\n\t 2001 \n", "telephoneNumber": "48 3333 4444"}


def test_unknown_children_ignored_and_first_duplicate_wins():
    body = protheus_envelope(
        f'<Redirect xmlns="{TNS}"><foo>x</foo><device>1</device><deviceTo>2</deviceTo>'
        "<device>dup</device><bar><baz/></bar></Redirect>"
    ).encode()
    assert parse_request(body).args == {"device": "1", "deviceTo": "2"}


def test_case_insensitive_children_exact_case_preferred():
    body = protheus_envelope(
        f'<ConnectionClear xmlns="{TNS}"><Device>loose</Device><callid>77</callid>'
        "<device>exact</device></ConnectionClear>"
    ).encode()
    assert parse_request(body).args == {"device": "exact", "CallID": "77"}


def test_exact_case_parameter_names_that_differ_from_neighbours():
    body = protheus_envelope(
        f'<Consultation xmlns="{TNS}"><device>1</device><deviceTo>2</deviceTo><Route>9</Route>'
        "</Consultation>"
    ).encode()
    assert parse_request(body).args == {"device": "1", "deviceTo": "2", "Route": "9"}
    body = protheus_envelope(f'<queryAgentState xmlns="{TNS}"><cDevice>2001</cDevice></queryAgentState>').encode()
    assert parse_request(body) == SoapRequest("queryAgentState", {"cDevice": "2001"})


def test_case_insensitive_operation_name():
    body = protheus_envelope(f'<QUERYAGENTSTATE xmlns="{TNS}"><CDEVICE>2001</CDEVICE></QUERYAGENTSTATE>').encode()
    assert parse_request(body) == SoapRequest("queryAgentState", {"cDevice": "2001"})
    body = protheus_envelope(f'<systemstatus xmlns="{TNS}"/>').encode()
    assert parse_request(body) == SoapRequest("SystemStatus", {})


def test_cdata_and_char_references():
    body = protheus_envelope(
        f'<MakeCall xmlns="{TNS}"><device><![CDATA[20<01]]></device>'
        "<telephoneNumber>&#52;8&amp;9</telephoneNumber></MakeCall>"
    ).encode()
    assert parse_request(body).args == {"device": "20<01", "telephoneNumber": "48&9"}


def test_comments_and_processing_instructions_ignored():
    body = protheus_envelope(
        f'<!-- c --><?pi x?><Answer xmlns="{TNS}"><!-- c --><device>20<!-- c -->01</device></Answer>'
    ).encode()
    assert parse_request(body) == SoapRequest("Answer", {"device": "2001"})


def test_first_body_element_is_the_operation():
    body = protheus_envelope(f'<Hold xmlns="{TNS}"><device>1</device></Hold><Logon xmlns="{TNS}"/>').encode()
    assert parse_request(body).operation == "Hold"


# ---------------------------------------------------------------- encodings

JOSE_INNER = f'<Logon xmlns="{TNS}"><device>José</device><agentID>Conceição</agentID></Logon>'


def test_utf8_non_ascii():
    body = protheus_envelope(JOSE_INNER).encode("utf-8")
    assert parse_request(body).args["device"] == "José"


def test_utf8_bom():
    body = b"\xef\xbb\xbf<?xml version='1.0' encoding='UTF-8'?>" + protheus_envelope(JOSE_INNER).encode()
    assert parse_request(body).args["agentID"] == "Conceição"


@pytest.mark.parametrize("label", ["ISO-8859-1", "iso-8859-1", "latin1", "windows-1252"])
def test_latin1_with_declaration(label):
    body = f'<?xml version="1.0" encoding="{label}"?>{protheus_envelope(JOSE_INNER)}'.encode("latin-1")
    # The Content-Type says otherwise: the declaration wins.
    req = parse_request(body, "text/xml; charset=utf-8")
    assert req.args == {"device": "José", "agentID": "Conceição", "groupID": ""}


@pytest.mark.parametrize(
    "content_type",
    ["text/xml; charset=ISO-8859-1", "text/xml;charset=iso-8859-1", 'text/xml; charset="latin1"',
     "text/xml; charset=windows-1252"],
)
def test_latin1_by_content_type_only(content_type):
    body = protheus_envelope(JOSE_INNER).encode("latin-1")
    assert parse_request(body, content_type).args["device"] == "José"


def test_cp1252_without_any_label_is_read_as_cp1252():
    """ADVPL strings are cp1252 (smartcti.md §10.11): a Fault would read as "cannot reach the middleware"."""
    body = protheus_envelope(JOSE_INNER).encode("cp1252")
    req = parse_request(body, "text/xml")
    assert (req.args["device"], req.args["agentID"], req.recoded) == ("José", "Conceição", True)
    assert parse_request(protheus_envelope(JOSE_INNER).encode("utf-8"), "text/xml").recoded is False


def test_declaration_without_encoding_uses_content_type():
    body = b"<?xml version='1.0'?>" + protheus_envelope(JOSE_INNER).encode("latin-1")
    assert parse_request(body, "text/xml; charset=ISO-8859-1").args["device"] == "José"


def test_unknown_content_type_charset_means_utf8():
    body = protheus_envelope(JOSE_INNER).encode("utf-8")
    assert parse_request(body, "text/xml; charset=klingon").args["device"] == "José"


def test_bytes_invalid_under_a_utf8_label_are_read_as_cp1252():
    # a password with "Ç" typed in Protheus, sent as cp1252 under a UTF-8 declaration and header
    inner = f'<LogonPass xmlns="{TNS}"><device>2001</device><agentPass>AÇÃO€</agentPass></LogonPass>'
    body = b"<?xml version='1.0' encoding='UTF-8'?>" + protheus_envelope(inner).encode("cp1252")
    req = parse_request(body, "text/xml; charset=UTF-8")
    assert (req.args["agentPass"], req.recoded) == ("AÇÃO€", True)
    # valid UTF-8 next to invalid bytes: each part read for what it is
    body = protheus_envelope(f'<Logon xmlns="{TNS}"><device>José</device><agentID>\x00</agentID></Logon>')
    body = body.encode("utf-8").replace(b"\x00", "Conceição".encode("cp1252"))
    assert parse_request(body).args == {"device": "José", "agentID": "Conceição", "groupID": ""}
    # bytes cp1252 leaves undefined become U+FFFD, never a Fault
    body = protheus_envelope(f'<Answer xmlns="{TNS}"><device>\x81</device></Answer>').encode("latin-1")
    assert parse_request(body).args["device"] == "\ufffd"


def test_utf8_under_an_ascii_label_is_read():
    body = "<?xml version='1.0' encoding='US-ASCII'?>" + protheus_envelope(JOSE_INNER)
    assert parse_request(body.encode("utf-8")).args["device"] == "José"
    assert parse_request(body.encode("cp1252")).args["device"] == "José"


def test_unsupported_declared_encoding_fault():
    body = "<?xml version='1.0' encoding='EBCDIC-XYZ'?>" + protheus_envelope(JOSE_INNER)
    assert "Unsupported XML encoding" in fault_of(body.encode()).faultstring


@pytest.mark.parametrize("codec", ["utf-16", "utf-16-le"])
def test_utf16(codec):
    body = ("<?xml version='1.0' encoding='UTF-16'?>" + protheus_envelope(JOSE_INNER)).encode(codec)
    assert parse_request(body).args["device"] == "José"


# ---------------------------------------------------------------- faults


@pytest.mark.parametrize("body", [b"", b"   \r\n\t "])
def test_empty_body_fault(body):
    assert "Empty request body" in fault_of(body).faultstring


def test_not_xml_fault():
    f = fault_of(b"hello, this is not XML")
    assert f.faultstring.startswith("Request is not well-formed XML: ")
    f = fault_of(protheus_envelope(f'<Answer xmlns="{TNS}"><device>1</Answer>').encode())
    assert "not well-formed" in f.faultstring
    assert len(f.faultstring) < 250


def test_undefined_entity_fault():
    body = protheus_envelope(f'<Answer xmlns="{TNS}"><device>&foo;</device></Answer>').encode()
    assert "not well-formed" in fault_of(body).faultstring


BILLION_LAUGHS = (
    '<?xml version="1.0"?>\n<!DOCTYPE lolz [\n <!ENTITY lol "lol">\n'
    + "".join(
        f' <!ENTITY lol{i} "{("&lol%s;" % (i - 1 if i > 1 else "")) * 10}">\n' for i in range(1, 10)
    )
    + "]>\n"
    + protheus_envelope(f'<Answer xmlns="{TNS}"><device>&lol9;</device></Answer>')
)

EXTERNAL_ENTITY = (
    '<?xml version="1.0"?><!DOCTYPE foo [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
    + protheus_envelope(f'<Answer xmlns="{TNS}"><device>&xxe;</device></Answer>')
)

QUADRATIC = (
    '<?xml version="1.0"?><!DOCTYPE q [<!ENTITY a "' + "a" * 20000 + '">]>'
    + protheus_envelope(f'<Answer xmlns="{TNS}"><device>' + "&a;" * 2000 + "</device></Answer>")
)


@pytest.mark.parametrize(
    "body",
    [BILLION_LAUGHS.encode(), EXTERNAL_ENTITY.encode(), QUADRATIC.encode(),
     b'<!DOCTYPE html SYSTEM "http://example.invalid/x.dtd">' + protheus_envelope("<Hold/>").encode(),
     ("<?xml version='1.0' encoding='UTF-16'?>" + EXTERNAL_ENTITY[21:]).encode("utf-16"),
     ("<?xml version='1.0' encoding='windows-1252'?>" + EXTERNAL_ENTITY[21:]).encode("cp1252")],
    ids=["billion-laughs", "external-entity", "quadratic", "external-dtd", "utf16-entity", "cp1252-entity"],
)
def test_dtd_and_entities_refused(body):
    f = fault_of(body)
    assert f.faultstring == "DTDs and entities are not accepted"


def test_no_envelope_fault():
    f = fault_of(f'<Logon xmlns="{TNS}"><device>1</device></Logon>'.encode())
    assert "No SOAP Envelope" in f.faultstring and "<Logon>" in f.faultstring


def test_foreign_envelope_namespace_fault():
    f = fault_of(b'<e:Envelope xmlns:e="urn:other"><e:Body><Hold/></e:Body></e:Envelope>')
    assert "urn:other" in f.faultstring


def test_soap12_fault():
    body = (
        f'<env:Envelope xmlns:env="{SOAP12}"><env:Body><Logon xmlns="{TNS}"><device>1</device>'
        "</Logon></env:Body></env:Envelope>"
    ).encode()
    f = fault_of(body, 'application/soap+xml; charset=utf-8; action="urn:Logon"')
    assert f.faultstring == "SOAP 1.2 is not supported, use the SOAP 1.1 endpoint"


def test_no_body_fault():
    body = f'<soap:Envelope xmlns:soap="{SOAP11}"><soap:Header/></soap:Envelope>'.encode()
    assert fault_of(body).faultstring == "SOAP Envelope has no Body"


def test_empty_body_element_fault():
    body = protheus_envelope("  ").encode()
    assert "SOAP Body is empty" in fault_of(body).faultstring


def test_unknown_operation_fault():
    body = protheus_envelope(f'<Foo xmlns="{TNS}"><device>1</device></Foo>').encode()
    f = fault_of(body)
    assert f.faultstring == "Unknown operation 'Foo': not one of the 32 SmartCTIWSCommand operations"


def test_unknown_operation_long_name_truncated():
    name = "X" * 500
    f = fault_of(protheus_envelope(f"<{name}/>").encode())
    assert len(f.faultstring) < 200


def test_dispatch_ignores_content_type_action():
    # A SOAP 1.1 body with a contradicting action parameter still dispatches on the body.
    body = protheus_envelope(f'<Hold xmlns="{TNS}"><device>1</device></Hold>').encode()
    assert parse_request(body, 'text/xml; action="urn:Logon"').operation == "Hold"


# ---------------------------------------------------------------- writing

ENV_HEAD = (
    b"<?xml version='1.0' encoding='UTF-8'?>"
    b'<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Body>'
)
ENV_TAIL = b"</soapenv:Body></soapenv:Envelope>"


def test_response_int_exact_bytes():
    assert response("Logon", 0) == (
        b"<?xml version='1.0' encoding='UTF-8'?><soapenv:Envelope "
        b'xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Body>'
        b'<ns:LogonResponse xmlns:ns="http://DefaultNamespace"><ns:return>0</ns:return>'
        b"</ns:LogonResponse></soapenv:Body></soapenv:Envelope>"
    )


def test_response_int_variants():
    from smartcti_gateway.core.codes import Result

    assert b"<ns:return>16</ns:return>" in response("SystemStatus", Result.DISCONNECTED_LINK)
    assert b"<ns:return>-3</ns:return>" in response("selfTest", -3)
    assert b"<ns:return>1</ns:return>" in response("selfTest", True)


def test_response_string_exact_bytes_escaped():
    out = response("GetInfoChamAtiv", "a&b<c>d'\"é")
    assert out == (
        ENV_HEAD
        + b'<ns:GetInfoChamAtivResponse xmlns:ns="http://DefaultNamespace"><ns:return>'
        + "a&amp;b&lt;c&gt;d'\"é".encode("utf-8")
        + b"</ns:return></ns:GetInfoChamAtivResponse>"
        + ENV_TAIL
    )


def test_response_string_drops_characters_xml_cannot_carry():
    out = response("showVersion", "v1\x00\x1b.2\r\n\ud800")
    assert b"<ns:return>v1.2&#13;\n</ns:return>" in out
    etree.fromstring(out)


def test_response_empty_string():
    assert b"<ns:return></ns:return>" in response("GetCallList", "")


@pytest.mark.parametrize("op_name", list(OPERATIONS))
def test_response_parses_back_for_every_operation(op_name):
    value = 0 if OPERATIONS[op_name].returns == "int" else "x#y"
    root = etree.fromstring(response(op_name, value))
    (wrapper,) = root.find(f"{{{SOAP11}}}Body")
    assert wrapper.tag == f"{{{TNS}}}{op_name}Response"
    assert wrapper.prefix == "ns"
    (ret,) = wrapper
    assert ret.tag == f"{{{TNS}}}return" and ret.prefix == "ns"
    assert ret.text == str(value)


def test_response_rejects_bad_input():
    with pytest.raises(ValueError):
        response("Foo", 0)
    with pytest.raises(TypeError):
        response("Logon", None)  # type: ignore[arg-type]


def test_fault_exact_bytes():
    assert fault(CLIENT, "Unknown operation 'Foo' & <more>") == (
        ENV_HEAD
        + b"<soapenv:Fault><faultcode>soapenv:Client</faultcode>"
        + b"<faultstring>Unknown operation 'Foo' &amp; &lt;more&gt;</faultstring></soapenv:Fault>"
        + ENV_TAIL
    )
    root = etree.fromstring(fault(SERVER, "internal error: é"))
    assert root.findtext(f"{{{SOAP11}}}Body/{{{SOAP11}}}Fault/faultstring") == "internal error: é"
    assert root.findtext(f"{{{SOAP11}}}Body/{{{SOAP11}}}Fault/faultcode") == "soapenv:Server"


# ---------------------------------------------------------------- WSDL


def _committed_wsdl() -> etree._Element:
    return etree.parse(str(soap.WSDL_PATH)).getroot()


def test_wsdl_matches_operations_table():
    root = _committed_wsdl()
    assert root.get("targetNamespace") == TNS
    assert root.nsmap.get("ns") == TNS
    (schema,) = root.iterfind(f"{{{WSDL_NS}}}types/{{{XS}}}schema")
    assert schema.get("targetNamespace") == TNS
    assert schema.get("elementFormDefault") == "qualified"
    assert schema.get("attributeFormDefault") == "qualified"
    elements = {e.get("name"): e for e in schema.iterfind(f"{{{XS}}}element")}
    assert set(elements) == set(OPERATIONS) | {f"{n}Response" for n in OPERATIONS}
    for name, op in OPERATIONS.items():
        seq = elements[name].find(f"{{{XS}}}complexType/{{{XS}}}sequence")
        assert seq is not None
        children = list(seq)
        assert [c.get("name") for c in children] == list(op.params), name
        for c in children:
            assert (c.get("type"), c.get("minOccurs"), c.get("nillable")) == ("xs:string", "0", "true")
        (ret,) = elements[f"{name}Response"].find(f"{{{XS}}}complexType/{{{XS}}}sequence")
        assert ret.get("name") == "return" and ret.get("minOccurs") == "0"
        assert ret.get("type") == ("xs:int" if op.returns == "int" else "xs:string")

    messages = {m.get("name"): m for m in root.iterfind(f"{{{WSDL_NS}}}message")}
    assert set(messages) == {f"{n}Request" for n in OPERATIONS} | {f"{n}Response" for n in OPERATIONS}
    for name in OPERATIONS:
        for suffix, element in (("Request", name), ("Response", f"{name}Response")):
            (part,) = messages[name + suffix]
            assert (part.get("name"), part.get("element")) == ("parameters", f"ns:{element}")

    (port_type,) = root.iterfind(f"{{{WSDL_NS}}}portType")
    assert port_type.get("name") == "SmartCTIWSCommandPortType"
    assert [o.get("name") for o in port_type] == list(OPERATIONS)

    (binding,) = root.iterfind(f"{{{WSDL_NS}}}binding")
    assert binding.get("name") == "SmartCTIWSCommandSoap11Binding"
    assert binding.get("type") == "ns:SmartCTIWSCommandPortType"
    sb = binding.find(f"{{{WSDL_SOAP}}}binding")
    assert (sb.get("style"), sb.get("transport")) == ("document", "http://schemas.xmlsoap.org/soap/http")
    ops = binding.findall(f"{{{WSDL_NS}}}operation")
    assert [o.get("name") for o in ops] == list(OPERATIONS)
    for o in ops:
        so = o.find(f"{{{WSDL_SOAP}}}operation")
        assert so.get("soapAction") == f"urn:{o.get('name')}" and so.get("style") == "document"
        for direction in ("input", "output"):
            assert o.find(f"{{{WSDL_NS}}}{direction}/{{{WSDL_SOAP}}}body").get("use") == "literal"

    (service,) = root.iterfind(f"{{{WSDL_NS}}}service")
    assert service.get("name") == "SmartCTIWSCommand"
    (port,) = service.iterfind(f"{{{WSDL_NS}}}port")
    assert port.get("name") == "SmartCTIWSCommandHttpSoap11Endpoint"
    assert port.get("binding") == "ns:SmartCTIWSCommandSoap11Binding"
    assert port.find(f"{{{WSDL_SOAP}}}address").get("location") == soap.WSDL_PLACEHOLDER_ADDRESS


def test_wsdl_has_no_soap12_anything():
    text = soap.WSDL_PATH.read_text("utf-8")
    assert "soap12" not in text.lower()
    assert "http://schemas.xmlsoap.org/wsdl/soap12/" not in text
    assert SOAP12 not in text


def test_wsdl_address_substitution():
    out = wsdl("http://gw.example:8080/axis2/services/SmartCTIWSCommand")
    root = etree.fromstring(out)
    locations = [a.get("location") for a in root.iter(f"{{{WSDL_SOAP}}}address")]
    assert locations == ["http://gw.example:8080/axis2/services/SmartCTIWSCommand"]
    assert soap.WSDL_PLACEHOLDER_ADDRESS.encode() not in out
    # Everything else is byte-identical to the committed file.
    committed = soap.WSDL_PATH.read_bytes()
    assert out.replace(b"http://gw.example:8080/axis2/services/SmartCTIWSCommand",
                       soap.WSDL_PLACEHOLDER_ADDRESS.encode()) == committed


def test_wsdl_address_is_escaped():
    out = wsdl('http://h/p?a=1&b="2"<')
    root = etree.fromstring(out)
    assert next(root.iter(f"{{{WSDL_SOAP}}}address")).get("location") == 'http://h/p?a=1&b="2"<'


def test_operations_table_names_are_valid_xml_names():
    for name, op in OPERATIONS.items():
        for n in (name, *op.params):
            assert re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", n)
