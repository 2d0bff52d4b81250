"""TLS: HTTPS on the gateway's listener, and verified HTTPS towards Protheus and the PABX.

Verification of the peers the gateway calls (chain and host name) is always on: a site's own CA or a
self-signed server is trusted by naming its certificate in ``ca_file``, never by turning it off.
"""
from __future__ import annotations

import ssl
from dataclasses import dataclass, field


@dataclass
class TlsConfig:
    """HTTPS on a listener: PEM certificate (chain) and private key."""

    cert: str
    key: str
    password: str = field(default="", repr=False)   # of an encrypted key; never shown


def server_context(tls: TlsConfig | None) -> ssl.SSLContext | None:
    """The listener's TLS (1.2 or later), or None for plain HTTP."""
    if tls is None:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(tls.cert, tls.key, password=tls.password or None)
    return ctx


def client_context(ca_file: str = "") -> ssl.SSLContext | None:
    """For https URLs: the system's CAs plus ``ca_file``; None (aiohttp's verified default) without one.

    Verification (certificate chain and host name) is always on; there is no way to turn it off.
    """
    if not ca_file:
        return None
    ctx = ssl.create_default_context()
    ctx.load_verify_locations(cafile=ca_file)
    return ctx


def self_test_context(tls: TlsConfig | None) -> ssl.SSLContext | bool:
    """For the console self-test calling our own listener at 127.0.0.1: trust exactly our certificate.

    The chain is verified against the configured certificate; the host name is not checked, since the
    certificate names the host Protheus uses, not 127.0.0.1.
    """
    if tls is None:
        return True
    ctx = ssl.create_default_context(cafile=tls.cert)
    ctx.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    ctx.check_hostname = False
    return ctx


def _readable(path: str) -> str | None:
    try:
        with open(path, "rb") as f:
            f.read(1)
    except OSError as e:
        return f"cannot read {path!r}: {e.strerror or e}"
    return None


def cert_file_problem(path: str) -> str | None:
    return _readable(path)


def tls_problem(cert: str, key: str, password: str = "") -> str | None:
    """Why ``cert`` and ``key`` cannot serve HTTPS, or None."""
    try:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(cert, key, password=password or None)
    except ssl.SSLError as e:
        return (f"{cert!r} and {key!r} cannot be used ({e.reason or e}): a PEM certificate (chain) and its "
                f"PEM private key are expected, matching each other" + (", with the right password" if password
                                                                           else ""))
    except OSError as e:
        return f"cannot read the certificate or key: {e.strerror or e}"
    return None


def ca_file_problem(path: str) -> str | None:
    """Why ``path`` is not a usable CA bundle, or None."""
    problem = _readable(path)
    if problem:
        return problem
    try:
        ssl.create_default_context().load_verify_locations(cafile=path)
    except ssl.SSLError as e:
        return f"{path!r} is not a PEM CA bundle ({e.reason or e})"
    return None
