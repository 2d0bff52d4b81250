"""The Dígitro NGC (EasyCall Gate) XML-RPC dialect: every wire name in one place.

Dígitro does not publish the EasyCall Gate method list, so this dialect is
designed from the vocabulary Dígitro does publish (DISPOSITIVO,
SENHA_DISPOSITIVO, DISPOSITIVO_DESTINO, ID_CHAMADA, ROTA, CONTA,
IDENTIDADE_DESTINO, DADOS). A site whose NGC names things differently
overrides any entry from its config (``pabx.dialect``), e.g.::

    dialect:
      methods: {make_call: ngc.discar}
      fields: {number: NUMERO_DESTINO}
      results: {"E17": 18}

docs/digitro-xmlrpc.md documents every entry; the simulator speaks exactly
this table, so an override applies to both sides.

The shape of the conversation is part of the dialect too, for an NGC (or a DigitroCTILink capture) that
speaks otherwise; every section is empty by default, which is the shape above (one struct per call,
a struct answer with RESULTADO, one event method with an EVENTO field, posted to our callback):

    dialect:
      params: {make_call: [device, number]}      # positional parameters, in this order
      types: {call_id: int, route: bool}         # how a field goes on the wire (default: as text)
      replies: {default: fault, agent_state: struct}   # struct | value (the answer is the result) |
                                                 # fault (any answer is success, a Fault is the refusal)
      returns: {make_call: call_id}              # a plain answer is this field's value
      event_methods: {pbx.onRinging: CHAMADA_TOCANDO}  # one method per event instead of EVENTO
      event_params: {default: [device, call_id, calling, called]}   # positional event parameters
      transport: {events: poll, poll_interval: 1}     # events asked with methods.poll_events
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Mapping

from ...core.codes import Result
from ...core.pabx import AgentState, ConnectionState, Direction

# logical name -> XML-RPC method name. Every method takes one struct and
# returns a struct carrying at least the result field.
METHODS: dict[str, str] = {
    "register_listener": "cti.registra_retorno",
    "unregister_listener": "cti.remove_retorno",
    "monitor_start": "cti.monitora",
    "monitor_stop": "cti.encerra_monitoracao",
    "make_call": "cti.gera_chamada",
    "answer": "cti.atende",
    "clear": "cti.finaliza",
    "hold": "cti.coloca_espera",
    "retrieve": "cti.recupera_espera",
    "alternate": "cti.pendulo",
    "consultation": "cti.consulta",
    "transfer": "cti.transfere",
    "single_step_transfer": "cti.transfere_direto",
    "immediate_transfer": "cti.transfere_imediato",
    "conference": "cti.conferencia",
    "forward": "cti.siga_me",
    "start_recording": "cti.inicia_gravacao",
    "stop_recording": "cti.encerra_gravacao",
    # data attached to a call (the ANS protocol, as DADOS "PROTOCOLO_ANS=<n>"): no published method does it,
    # so it is off ("") unless a site's NGC offers one (pabx.dialect.methods.attach_data)
    "attach_data": "",
    "agent_login": "cti.login_dac",
    "agent_logout": "cti.logout_dac",
    "agent_ready": "cti.disponivel",
    "agent_not_ready": "cti.pausa",
    "agent_state": "cti.estado_agente",
    "device_calls": "cti.chamadas_dispositivo",
    "group_calls": "cti.chamadas_grupo",
    "status": "cti.status",
    "version": "cti.versao",
    # PABX -> gateway: the one method the NGC calls on the callback URL.
    "event": "cti.evento",
    # gateway -> PABX, only with transport.events = poll: the events since the last call (an array)
    "poll_events": "",
}

# logical name -> struct member name, for requests, replies and events.
FIELDS: dict[str, str] = {
    "result": "RESULTADO",
    "message": "MENSAGEM",
    "channel": "ID_CANAL",
    "callback_url": "URL_RETORNO",
    "device": "DISPOSITIVO",
    "device_password": "SENHA_DISPOSITIVO",
    "destination": "DISPOSITIVO_DESTINO",
    "number": "IDENTIDADE_DESTINO",
    "route": "ROTA",
    "account": "CONTA",
    "call_id": "ID_CHAMADA",
    "old_call_id": "ID_CHAMADA_ANTERIOR",
    "agent": "AGENTE",
    "groups": "GRUPO_DAC",          # comma-separated ACD group numbers
    "agent_state": "ESTADO",
    "call_state": "ESTADO",
    "calls": "CHAMADAS",
    "status": "ESTADO",
    "version": "VERSAO",
    "event": "EVENTO",
    "sequence": "SEQUENCIA",
    "timestamp": "DATA_HORA",
    "calling": "NUMERO_ORIGINADOR",
    "called": "NUMERO_DISCADO_ORIGINAL",
    "other_device": "DISPOSITIVO_ASSOCIADO",
    "other_devices": "DISPOSITIVOS_ASSOCIADOS",  # comma-separated
    "last_redirection": "ULTIMO_REDIRECIONAMENTO",  # the ACD group of the call
    "trunks": "TRONCOS_ASSOCIADOS",
    "category": "CATEGORIA",
    "data": "DADOS",
    "direction": "SENTIDO",
    "cause": "CAUSA",
    "reason": "MOTIVO",
}

OK = "OK"
# RESULTADO of cti.status with an ID_CANAL the NGC no longer knows (it restarted): register again.
CHANNEL_UNKNOWN = "CANAL_INVALIDO"

# RESULTADO / CAUSA value -> SmartCTI result code (smartcti.md §2).
# Keys are compared as text, so numeric codes from a real NGC fit as well.
RESULTS: dict[str, int] = {
    OK: Result.SUCCESS,
    "DISPOSITIVO_INVALIDO": Result.INVALID_DEVICE,
    "SENHA_INVALIDA": Result.INVALID_USER,
    "AGENTE_INVALIDO": Result.INVALID_USER,
    "GRUPO_INVALIDO": Result.INVALID_GROUP_ID,
    "AGENTE_EM_USO": Result.INVALID_GROUP_ID,
    "NUMERO_INVALIDO": Result.INVALID_PHONE_NUMBER,
    "OCUPADO": Result.BUSY,
    "NAO_ATENDE": Result.NO_ANSWER,
    "SECRETARIA_ELETRONICA": Result.ANSWER_MACHINE,
    "FAX": Result.FAX_MACHINE,
    "MENSAGEM_OPERADORA": Result.INTERCEPT,
    "SEM_TOM": Result.NO_DIAL_TONE,
    "DESTINO_DESLIGOU": Result.DESTINATION_TALK_OFF,
    "SEM_CHAMADA": Result.INVALID_OPTION,
    "SEM_CHAMADA_EM_ESPERA": Result.NO_WAITING_CALL,
    "CHAMADA_INVALIDA": Result.INVALID_CALL_ID,
    "ESTADO_INVALIDO": Result.INVALID_OPTION,
    "ESTACIONAMENTO_CHEIO": Result.PARK_AREA_FULL,
    "FACILIDADE_INDISPONIVEL": Result.NOT_SUPPORTED_FEATURE,
    "FORA_DE_SERVICO": Result.OUT_OF_SERVICE,
    CHANNEL_UNKNOWN: Result.OUT_OF_SERVICE,
    "ERRO_INTERNO": Result.INTERNAL_ERROR,
}

# ESTADO of cti.estado_agente -> neutral agent state.
AGENT_STATES: dict[str, AgentState] = {
    "LOGOUT": AgentState.LOGGED_OFF,
    "LOGIN": AgentState.LOGGED_ON,
    "LIVRE": AgentState.READY,
    "PAUSA": AgentState.NOT_READY,
    "POS_ATENDIMENTO": AgentState.WORK_AFTER_CALL,
    "OCUPADO": AgentState.BUSY,
}

# ESTADO of a call in cti.chamadas_dispositivo / cti.chamadas_grupo.
CALL_STATES: dict[str, ConnectionState] = {
    "INICIADA": ConnectionState.INITIATED,
    "TOCANDO": ConnectionState.ALERTING,
    "CONECTADA": ConnectionState.CONNECTED,
    "ESPERA": ConnectionState.HELD,
    "FILA": ConnectionState.QUEUED,
    "FALHA": ConnectionState.FAILED,
}

DIRECTIONS: dict[str, Direction] = {
    "ENTRADA": Direction.INBOUND,
    "SAIDA": Direction.OUTBOUND,
    "DISCADOR": Direction.DIALLER,
    "INTERNA": Direction.INTERNAL,
}

# EVENTO value -> neutral event name (CallEventType / AgentEventType value).
EVENTS: dict[str, str] = {
    "CHAMADA_INICIADA": "service_initiated",
    "CHAMADA_ORIGINADA": "originated",
    "CHAMADA_TOCANDO": "delivered",
    "CHAMADA_ATENDIDA": "established",
    "CHAMADA_FALHOU": "failed",
    "CHAMADA_RETIDA": "held",
    "CHAMADA_RECUPERADA": "retrieved",
    "CHAMADA_FINALIZADA": "connection_cleared",
    "CHAMADA_TRANSFERIDA": "transferred",
    "CHAMADA_EM_CONFERENCIA": "conferenced",
    "CHAMADA_DESVIADA": "diverted",
    "AGENTE_LOGADO": "logged_on",
    "AGENTE_DESLOGADO": "logged_off",
    "AGENTE_DISPONIVEL": "ready",
    "AGENTE_EM_PAUSA": "not_ready",
    "AGENTE_POS_ATENDIMENTO": "work_after_call",
}

SECTIONS = ("methods", "fields", "results", "agent_states", "call_states", "directions", "events",
            "params", "types", "replies", "returns", "event_methods", "event_params", "transport")
TYPES = ("str", "int", "bool")
REPLY_STYLES = ("struct", "value", "fault")
TRANSPORTS = ("callback", "poll")


@dataclass
class Dialect:
    """The tables above, possibly overridden by a site's config."""

    methods: dict[str, str] = field(default_factory=lambda: dict(METHODS))
    fields: dict[str, str] = field(default_factory=lambda: dict(FIELDS))
    results: dict[str, int] = field(default_factory=lambda: dict(RESULTS))
    agent_states: dict[str, AgentState] = field(default_factory=lambda: dict(AGENT_STATES))
    call_states: dict[str, ConnectionState] = field(default_factory=lambda: dict(CALL_STATES))
    directions: dict[str, Direction] = field(default_factory=lambda: dict(DIRECTIONS))
    events: dict[str, str] = field(default_factory=lambda: dict(EVENTS))
    params: dict[str, list[str]] = field(default_factory=dict)        # logical method -> positional fields
    types: dict[str, str] = field(default_factory=dict)               # logical field -> str | int | bool
    replies: dict[str, str] = field(default_factory=dict)             # logical method or default -> style
    returns: dict[str, str] = field(default_factory=dict)             # logical method -> its plain answer's field
    event_methods: dict[str, str] = field(default_factory=dict)       # wire method -> EVENTO name
    event_params: dict[str, list[str]] = field(default_factory=dict)  # wire event method or default -> fields
    transport: dict[str, Any] = field(default_factory=lambda: {"events": "callback", "poll_interval": 1.0})

    def success(self, result: str) -> bool:
        """A result value that means done: OK, or any value dialect.results maps to 0 (an NGC answering 0)."""
        return result == OK or self.results.get(result) == Result.SUCCESS

    def reply_style(self, method: str) -> str:
        return self.replies.get(method) or self.replies.get("default") or "struct"

    @property
    def polled(self) -> bool:
        return self.transport.get("events") == "poll"

    @classmethod
    def with_overrides(cls, overrides: Mapping[str, Mapping[str, Any]] | None) -> "Dialect":
        """Default tables updated from ``overrides``; unknown sections or keys raise ValueError."""
        d = cls()
        # the shape sections name methods, fields and events: read after those are overridden
        for section, entries in sorted((overrides or {}).items(), key=lambda kv: kv[0] in SHAPE_SECTIONS):
            if section not in SECTIONS:
                raise ValueError(f"unknown dialect section {section!r}; known: {', '.join(SECTIONS)}")
            table = getattr(d, section)
            if not isinstance(entries, Mapping):
                raise ValueError(f"dialect.{section} must be a mapping")
            if section in SHAPE_SECTIONS:
                _shape(d, section, entries)
                continue
            for key, value in entries.items():
                key = str(key)
                if section == "results":
                    table[key] = int(Result(int(value)))
                elif section == "agent_states":
                    table[key] = AgentState(value)
                elif section == "call_states":
                    table[key] = ConnectionState(value)
                elif section == "directions":
                    table[key] = Direction(value)
                else:
                    if section in ("methods", "fields") and key not in table:
                        raise ValueError(f"unknown dialect.{section} entry {key!r}")
                    table[key] = str(value)
        d.check()
        return d

    def check(self) -> None:
        """What the shape sections need of the others: raises ValueError saying what is missing."""
        if self.polled and not self.methods.get("poll_events"):
            raise ValueError("transport.events: poll needs methods.poll_events (the NGC's method that returns "
                             "the events)")

    def copy(self) -> "Dialect":
        return copy.deepcopy(self)

    # reverse look-ups, used by the simulator to speak the same dialect
    def result_name(self, code: int) -> str:
        for name, value in self.results.items():
            if value == code:
                return name
        return "ERRO_INTERNO"

    def name_of(self, table: dict[str, Any], value: Any) -> str:
        for name, v in table.items():
            if v == value:
                return name
        raise KeyError(value)


SHAPE_SECTIONS = ("params", "types", "replies", "returns", "event_methods", "event_params", "transport")


def _fields_list(d: Dialect, where: str, value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"dialect.{where} must be a list of field names, e.g. [device, call_id]")
    unknown = [v for v in value if v not in d.fields]
    if unknown:
        raise ValueError(f"dialect.{where}: unknown field(s) {', '.join(unknown)}; known: {', '.join(d.fields)}")
    return list(value)


def _shape(d: Dialect, section: str, entries: Mapping[str, Any]) -> None:
    """One of the sections saying how the conversation is shaped, checked entry by entry."""
    table = getattr(d, section)
    for key, value in entries.items():
        key, where = str(key), f"{section}.{key}"
        if section == "params":
            if key not in d.methods:
                raise ValueError(f"dialect.{where}: unknown method {key!r}")
            table[key] = _fields_list(d, where, value)
        elif section == "event_params":
            table[key] = _fields_list(d, where, value)
        elif section == "types":
            if key not in d.fields or value not in TYPES:
                raise ValueError(f"dialect.{where}: a known field and one of {', '.join(TYPES)}")
            table[key] = value
        elif section == "replies":
            if (key != "default" and key not in d.methods) or value not in REPLY_STYLES:
                raise ValueError(f"dialect.{where}: a method (or default) and one of {', '.join(REPLY_STYLES)}")
            table[key] = value
        elif section == "returns":
            if key not in d.methods or value not in d.fields:
                raise ValueError(f"dialect.{where}: a known method and a known field")
            table[key] = value
        elif section == "event_methods":
            if str(value) not in d.events:
                raise ValueError(f"dialect.{where}: {value!r} is no EVENTO name of dialect.events")
            table[key] = str(value)
        elif section == "transport":
            if key == "events" and value in TRANSPORTS:
                table[key] = value
            elif key == "poll_interval" and isinstance(value, (int, float)) and 0.05 <= value <= 60:
                table[key] = float(value)
            else:
                raise ValueError(f"dialect.{where}: events is one of {', '.join(TRANSPORTS)}; poll_interval "
                                 f"is 0.05 to 60 seconds")
