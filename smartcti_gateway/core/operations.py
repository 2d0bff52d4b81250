"""The 32 operations of SmartCTIWSCommand (smartcti.md §1.2, v2 superset).

One table serves the SOAP parser (which children to read), the dispatcher
(which handler), the WSDL consistency test and the documentation.
"""
from dataclasses import dataclass


@dataclass(frozen=True)
class Operation:
    name: str
    params: tuple[str, ...]
    returns: str  # "int" or "string"


def _op(name: str, *params: str, returns: str = "int") -> Operation:
    return Operation(name, params, returns)


OPERATIONS: dict[str, Operation] = {
    op.name: op
    for op in (
        _op("AgentInService", "device", "ipaddress"),
        _op("AgentOutOfService", "device"),
        _op("Logon", "device", "agentID", "groupID"),
        _op("LogonPass", "device", "agentID", "groupID", "agentPass"),
        _op("Logoff", "device", "agentID", "groupID"),
        _op("LogoffPass", "device", "agentID", "groupID", "agentPass"),
        _op("Ready", "device", "agentID", "groupID"),
        _op("ReadyPass", "device", "agentID", "groupID", "agentPass"),
        _op("NotReady", "device", "agentID", "groupID"),
        _op("NotReadyPass", "device", "agentID", "groupID", "agentPass"),
        _op("MakeCall", "device", "telephoneNumber"),
        _op("MakeCallPass", "device", "telephoneNumber", "agentID", "agentPass", "route"),
        _op("Answer", "device"),
        _op("ConnectionClear", "device", "CallID"),
        _op("Hold", "device"),
        _op("Retrieve", "device"),
        _op("Alternate", "device"),
        _op("Conference", "device"),
        _op("Consultation", "device", "deviceTo", "Route"),
        _op("Transfer", "device"),
        _op("OneStepCallTransfer", "device", "deviceTo"),
        _op("ImmediateTransfer", "device", "deviceTo"),
        _op("Redirect", "device", "deviceTo"),
        _op("StartRec", "device"),
        _op("StopRec", "device"),
        _op("SystemStatus"),
        _op("selfTest"),
        _op("showVersion", returns="string"),
        _op("queryAgentState", "cDevice"),
        _op("GetInfoChamAtiv", "cDevice", returns="string"),
        _op("getActiveCallInfo", "cDevice", returns="string"),
        _op("GetCallList", "groupID", returns="string"),
    )
}

# Parameters whose values must never reach a log.
SECRET_PARAMS = frozenset({"agentPass"})
