"""The Dígitro driver's own keys in a link's ``pabx`` section, read with line-numbered errors."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ...configread import Map, Reader, url_problem
from ...tls import ca_file_problem
from .dialect import Dialect

KEYS = frozenset({"url", "callback_url", "dialect", "ca_file"})


@dataclass
class DigitroOptions:
    url: str = "http://127.0.0.1:2551/RPC2"   # the NGC's EasyCall Gate XML-RPC
    callback_url: str = ""          # where the NGC posts events; derived from the listener when empty
    ca_file: str = ""               # extra CA bundle to verify an https url
    dialect: dict[str, Any] = field(default_factory=dict)   # overrides of the XML-RPC names
    events_path: str = ""           # where the gateway takes the NGC's events: /pabx/digitro/<link>/RPC2


def parse(r: Reader, pm: Map, pp: str, link_id: int) -> DigitroOptions:
    o = DigitroOptions(events_path=f"/pabx/digitro/{link_id}/RPC2")
    o.url = r.get(pm, "url", pp, str, o.url, check=url_problem)
    o.callback_url = r.get(pm, "callback_url", pp, str, "", check=url_problem)
    o.dialect = dict(r.mapping(pm.get("dialect"), f"{pp}.dialect", pm, "dialect"))
    try:
        Dialect.with_overrides(o.dialect)
    except (ValueError, TypeError) as e:
        raise r.fail(pm, "dialect", f"{pp}.dialect", str(e)) from None
    o.ca_file = r.get(pm, "ca_file", pp, str, "", check=ca_file_problem)
    return o
