"""How the simulated NGC shapes its side of the conversation, from the dialect's shape sections.

The driver (pabx/digitro/driver.py) reads a dialect's ``params``, ``types``, ``replies``, ``returns``,
``event_methods``, ``event_params`` and ``transport``; this is the same table read from the NGC's side:
positional parameters into the handlers' struct, a handler's answer into a struct, a plain value or an
XML-RPC Fault, and an event struct into the call (method, parameters) a foreign NGC would make. With the
default dialect (every shape section empty) nothing is changed: one struct in, a struct with RESULTADO
out, ``cti.evento(struct)`` for events.
"""
from __future__ import annotations

import re
import xmlrpc.client
from typing import Any, Mapping

from ...core.codes import Result
from ...pabx.digitro.dialect import OK, RESULTS, Dialect

_INTEGER = re.compile(r"-?\d{1,18}")
_INT32 = range(-2**31, 2**31)       # what an XML-RPC <int> holds


def site_key(d: Dialect, code: int) -> str | None:
    """The key the site added to ``dialect.results`` for ``code`` (the last one wins), if any."""
    keys = [k for k, v in d.results.items() if v == code and k not in RESULTS]
    return keys[-1] if keys else None


def success_key(d: Dialect) -> str:
    """What the simulator answers for success: OK, unless the site mapped a result of its own to 0
    (an NGC answering 0); then that one, as the foreign NGC says it."""
    key = site_key(d, Result.SUCCESS)
    if key is not None:
        return key
    if OK in d.results:
        return OK
    key = next((k for k, v in d.results.items() if v == Result.SUCCESS), None)
    if key is None:
        raise ValueError("the dialect's results have no key for success (a result mapped to 0)")
    return key


def refusal_key(d: Dialect, name: str) -> str | None:
    """The dialect's key for the simulator's refusal ``name`` (a default result name): the site's own key
    for that name's SmartCTI code if it added one (``"105": 10`` for OCUPADO), else the name itself;
    None when the dialect has neither."""
    code = RESULTS.get(name)
    key = site_key(d, code) if code is not None else None
    if key is not None:
        return key
    return name if name in d.results else None


class Shape:
    """One dialect's shape, for the simulator: every method is a pure function of its arguments."""

    def __init__(self, dialect: Dialect):
        self.d = dialect
        self.F = dialect.fields
        # wire member name -> its type, for the structs the simulator sends (last logical field wins)
        self._wire_types = {self.F[k]: t for k, t in dialect.types.items() if t != "str"}
        # EVENTO name -> the wire method that reports it (one method per event; the last one wins)
        self._event_method = {name: method for method, name in dialect.event_methods.items()}

    # ------------------------------------------------------------ values
    def encode(self, field: str, value: Any) -> Any:
        """A logical field's value as this dialect puts it on the wire (``types``; text by default). An
        int field without a value is 0 and a bool one False, as the driver sends them."""
        return self._as(self.d.types.get(field), value)

    @staticmethod
    def _as(kind: str | None, value: Any) -> Any:
        if kind == "int":
            if isinstance(value, int) and not isinstance(value, bool):
                return value
            text = str(value).strip()
            return int(text) if _INTEGER.fullmatch(text) else 0
        if kind == "bool":
            if isinstance(value, bool):
                return value
            return str(value).strip().lower() in ("1", "true", "s", "sim", "yes")
        return value

    def decode(self, field: str, value: Any) -> Any:
        """A value received for a typed field as the handlers read it: text. The driver sends an empty int
        field as 0 and an empty bool one as false, so those are "" (no value)."""
        kind = self.d.types.get(field)
        if kind == "int" and isinstance(value, int) and not isinstance(value, bool):
            return str(value) if value else ""
        if kind == "bool" and isinstance(value, bool):
            return "1" if value else ""
        if kind in ("int", "bool") and isinstance(value, str) and value.strip() in ("0", "false"):
            return ""
        return value

    def typed(self, value: Any) -> Any:
        """A struct (or a list of structs) going out, with the typed members as their type."""
        if not self._wire_types:
            return value
        if isinstance(value, dict):
            return {k: self._as(self._wire_types[k], v) if k in self._wire_types and not isinstance(v, (dict, list))
                    else self.typed(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.typed(v) for v in value]
        return value

    def plain(self, key: str) -> Any:
        """A result key as a plain answer or a faultCode: as ``types.result`` says, else an int when it is
        numeric (an NGC answering 0, Fault 105), else the text."""
        if self.d.types.get("result") in ("int", "bool"):
            return self.encode("result", key)
        if _INTEGER.fullmatch(key) and int(key) in _INT32:
            return int(key)
        return key

    # ---------------------------------------------------------- requests
    def args(self, method: str, params: tuple) -> Mapping[str, Any] | None:
        """The parameters of logical ``method`` as the handlers read them (wire member names), when the
        dialect lays them out positionally; None when it takes one struct. ValueError when they do not fit."""
        layout = self.d.params.get(method)
        if layout is None:
            return None
        if len(params) > len(layout):
            raise ValueError(f"takes at most {len(layout)} parameters ({', '.join(layout) or 'none'}), "
                             f"got {len(params)}")
        if any(isinstance(v, (dict, list)) for v in params):
            raise ValueError(f"takes plain parameters ({', '.join(layout)}), not a struct or an array")
        values = list(params) + [""] * (len(layout) - len(params))
        return {self.F[k]: self.decode(k, v) for k, v in zip(layout, values)}

    def struct_args(self, struct: Mapping[str, Any]) -> Mapping[str, Any]:
        """One struct received: its typed members read back as text."""
        if not self.d.types:
            return struct
        wire = {self.F[k]: k for k in self.d.types}
        return {k: self.decode(wire[k], v) if k in wire else v for k, v in struct.items()}

    # ----------------------------------------------------------- answers
    def answer(self, method: str, result: str, out: dict[str, Any]) -> Any:
        """The success answer of logical ``method``, whose handler gave ``out`` (wire member names)."""
        style = self.d.reply_style(method)
        if style == "value":
            return self.plain(result)
        if style == "fault":
            returned = self.d.returns.get(method)
            if returned and self.F[returned] in out:
                return self.typed({self.F[returned]: out[self.F[returned]]})[self.F[returned]]
            return self.typed(out) if out else True
        return {self.F["result"]: self.encode("result", result), **self.typed(out)}

    def refusal(self, method: str, key: str, message: str) -> Any:
        """The refusal answer of logical ``method`` (``key``: a dialect.results key); raises the Fault
        when the dialect refuses with one."""
        style = self.d.reply_style(method)
        if style == "fault":
            raise xmlrpc.client.Fault(self.plain(key), message)
        if style == "value":
            return self.plain(key)
        return {self.F["result"]: self.encode("result", key), self.F["message"]: message}

    # ------------------------------------------------------------ events
    def event_call(self, event: dict[str, Any]) -> tuple[str, tuple] | None:
        """An event struct (wire member names, with EVENTO) as the XML-RPC call the NGC makes: (method,
        params). None when the dialect has no method for that event (with ``event_methods``)."""
        d = self.d
        if d.event_methods:
            method = self._event_method.get(event.get(self.F["event"]))
            if method is None:
                return None
        else:
            method = d.methods["event"]
        layout = d.event_params.get(method) or d.event_params.get("default")
        if layout is not None:
            return method, tuple(self.encode(k, event.get(self.F[k], "")) for k in layout)
        return method, (self.typed(event),)

    def poll_item(self, event: dict[str, Any]) -> Any:
        """An event as one element of the poll_events answer: ``[method, *params]`` with event_methods, a
        positional list with event_params, else the struct. None when the dialect cannot say it."""
        call = self.event_call(event)
        if call is None:
            return None
        method, params = call
        if self.d.event_methods:
            return [method, *params]
        if self.d.event_params.get(method) or self.d.event_params.get("default"):
            return list(params)
        return params[0]
