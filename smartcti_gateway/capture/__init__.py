"""``smartcti-gateway capture``: a transparent recording proxy before an old DigitroCTILink install.

Sides: XML-RPC (DigitroCTILink -> NGC, and the NGC's callbacks), SOAP (Protheus -> DigitroCTILink, and
DigitroCTILink's events to Protheus), raw TCP. The file format and its reader: ``reader``;
the proxy: ``proxy.CaptureProxy``; the command line: ``command``. docs: the module docs of each.
"""
from .command import add_capture_parser, run_capture
from .reader import CaptureError, body_bytes, read_capture

__all__ = ["CaptureError", "add_capture_parser", "body_bytes", "read_capture", "run_capture"]
