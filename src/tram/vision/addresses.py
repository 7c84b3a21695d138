"""Which addresses the gateway may fetch an image from: public ones only.

`ipaddress.is_global` alone lets through IPv6 forms that carry an IPv4 address a connection can
end up at (`::7f00:1`, IPv4-compatible; `64:ff9b::a9fe:a9fe`, NAT64; `2002:a9fe:a9fe::`, 6to4;
Teredo) and the deprecated site-local `fec0::/10`. So an address is public only if it lies in
none of the IANA special-purpose blocks that are not globally reachable (IPv4 and IPv6
Special-Purpose Address Registries, plus multicast and site-local), and, for an IPv6 form that
embeds an IPv4 address, that IPv4 address is public too.
"""

from __future__ import annotations

import ipaddress
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

__all__ = ["embedded_ipv4", "is_public"]

_V4_BLOCKED = tuple(IPv4Network(n) for n in (
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
    "172.16.0.0/12", "192.0.0.0/24", "192.0.2.0/24", "192.31.196.0/24", "192.52.193.0/24",
    "192.88.99.0/24", "192.168.0.0/16", "192.175.48.0/24", "198.18.0.0/15", "198.51.100.0/24",
    "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4", "255.255.255.255/32"))

_V6_BLOCKED = tuple(IPv6Network(n) for n in (
    "::/128", "::1/128", "100::/64", "100:0:0:1::/64", "2001::/23", "2001:db8::/32",
    "3fff::/20", "5f00::/16", "fc00::/7", "fe80::/10", "fec0::/10", "ff00::/8"))

# IPv6 forms whose last (or, for 6to4, second and third) 32 bits are an IPv4 address that a
# translator or tunnel may deliver the packets to.
_MAPPED = IPv6Network("::ffff:0:0/96")
_COMPATIBLE = IPv6Network("::/96")
_NAT64 = (IPv6Network("64:ff9b::/96"), IPv6Network("64:ff9b:1::/48"))
_SIX_TO_FOUR = IPv6Network("2002::/16")
_TEREDO = IPv6Network("2001::/32")


def embedded_ipv4(address: IPv6Address) -> IPv4Address | None:
    """The IPv4 address an IPv6 address carries, if it is of a form that carries one."""
    value = int(address)
    if address in _MAPPED or address in _COMPATIBLE or any(address in n for n in _NAT64):
        return IPv4Address(value & 0xFFFFFFFF)
    if address in _SIX_TO_FOUR:
        return IPv4Address((value >> 80) & 0xFFFFFFFF)
    if address in _TEREDO:  # the client's address, obfuscated (bits inverted)
        return IPv4Address(~value & 0xFFFFFFFF)
    return None


def is_public(address: IPv4Address | IPv6Address | str) -> bool:
    """True if an image may be fetched from this address."""
    if isinstance(address, str):
        address = ipaddress.ip_address(address.split("%", 1)[0])  # no zone ids
    if isinstance(address, IPv4Address):
        return address.is_global and not any(address in n for n in _V4_BLOCKED)
    inner = embedded_ipv4(address)
    if inner is not None:
        if address in _MAPPED or address in _COMPATIBLE or address in _TEREDO:
            return False  # never how a public image host is reached
        # NAT64 (an IPv6-only network reaching IPv4 hosts) and 6to4: as public as the IPv4
        # address they lead to.
        return is_public(inner)
    return address.is_global and not any(address in n for n in _V6_BLOCKED)
