"""smartcti-gateway: SmartCTI middleware between TOTVS Protheus Call Center and a PABX."""

__version__ = "0.1.0"
