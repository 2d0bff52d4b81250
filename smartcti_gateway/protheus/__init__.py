"""Protheus-facing SOAP layer: SmartCTIWSCommand (smartcti.md §1)."""
