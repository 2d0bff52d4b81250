"""Address lists: networks and single addresses written in the config, a peer's address, a host resolved.

IPv4-mapped IPv6 addresses and networks (``::ffff:10.0.0.1``) count as the IPv4 ones they mean.
"""
from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections.abc import Iterable
from typing import Union

Network = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]
Address = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]

_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")
_LIST_SPLIT = re.compile(r"[\s,;]+")


def _plain(net: Network) -> Network:
    """An IPv4-mapped IPv6 network (``::ffff:10.0.0.0/104``) as the IPv4 network it means."""
    if net.version == 6 and net.prefixlen >= 96 and net.subnet_of(_MAPPED):  # type: ignore[arg-type]
        return ipaddress.IPv4Network((int(net.network_address) & 0xFFFFFFFF, net.prefixlen - 96))
    return net


def parse_network(text: str) -> Network:
    """``"10.0.0.0/8"``, ``"192.168.10.5"``, ``"::1"`` -> a network; ValueError saying what is wrong."""
    t = text.strip()
    try:
        return _plain(ipaddress.ip_network(t, strict=True))
    except ValueError:
        pass
    try:
        loose = ipaddress.ip_network(t, strict=False)
    except ValueError:
        raise ValueError(f"{text!r} is not an IP address or network (examples: 10.0.0.0/8, 192.168.10.5, "
                         f"'::1'; host names are not accepted)") from None
    raise ValueError(f"{text!r} has bits set after the /{loose.prefixlen} prefix: write {loose} for the "
                     f"network, or {t.partition('/')[0]} alone for one address")


def parse_networks(values: Iterable[str]) -> tuple[Network, ...]:
    """Each value may hold several entries separated by commas or blanks; duplicates are dropped."""
    out: dict[Network, None] = {}
    for value in values:
        for part in _LIST_SPLIT.split(value.strip()):
            if part:
                out[parse_network(part)] = None
    return tuple(out)


def peer_address(remote: str | None) -> Address | None:
    """``request.remote`` as an address; an IPv4-mapped IPv6 peer as IPv4; None if it is not an IP."""
    if not remote:
        return None
    try:
        ip = ipaddress.ip_address(remote.partition("%")[0])
    except ValueError:
        return None
    if ip.version == 6 and ip.ipv4_mapped is not None:  # type: ignore[union-attr]
        return ip.ipv4_mapped  # type: ignore[union-attr]
    return ip


async def resolve(host: str) -> tuple[Network, ...]:
    """Every address of ``host`` (an IP literal is itself), as /32 or /128 networks. OSError if none."""
    try:
        return (_plain(ipaddress.ip_network(host.strip("[]"))),)
    except ValueError:
        pass
    infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
    nets = {_plain(ipaddress.ip_network(info[4][0].partition("%")[0])): None for info in infos}
    if not nets:
        raise OSError(f"{host} has no address")
    return tuple(nets)


def is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.partition("%")[0])
        return True
    except ValueError:
        return False


def opens_all(networks: tuple[Network, ...]) -> bool:
    return any(n.prefixlen == 0 for n in networks)
