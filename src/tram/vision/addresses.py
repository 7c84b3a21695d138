"""Which addresses the gateway may fetch an image from: public ones only.

`ipaddress.is_global` alone lets through IPv6 forms that carry an IPv4 address a connection can
end up at (`::7f00:1`, IPv4-compatible; `::ffff:0:7f00:1`, IPv4-translated; `64:ff9b::a9fe:a9fe`,
NAT64; `2002:a9fe:a9fe::`, 6to4; Teredo; an ISATAP interface id), space that is not global
unicast at all (`4000::1`), and the deprecated site-local `fec0::/10`. So an IPv4 address is
public only if it lies in none of the IANA special-purpose blocks that are not globally
reachable (plus multicast); an IPv6 address only if it is global unicast (2000::/3) or in the
NAT64 well-known prefix, lies in none of those blocks, and any IPv4 address it carries is
public too. Every form and why it is refused or followed: docs/decisions.md ("SSRF: IPv4
carried in IPv6").
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

# Inside 2000::/3 (the only global unicast space) or beside it: the blocks that are not
# globally reachable. (64:ff9b:1::/48, local-use NAT64, carries its IPv4 address at a place
# only its network knows: refused whole.)
_V6_BLOCKED = tuple(IPv6Network(n) for n in (
    "::/128", "::1/128", "64:ff9b:1::/48", "100::/64", "100:0:0:1::/64", "2001::/23",
    "2001:db8::/32", "3fff::/20", "5f00::/16", "fc00::/7", "fe80::/10", "fec0::/10",
    "ff00::/8"))
_GLOBAL_UNICAST = IPv6Network("2000::/3")

# IPv6 forms whose last (or, for 6to4, second and third) 32 bits are an IPv4 address that a
# host's stack, a translator or a tunnel may deliver the packets to.
_MAPPED = IPv6Network("::ffff:0:0/96")  # ::ffff:a.b.c.d
_TRANSLATED = IPv6Network("::ffff:0:0:0/96")  # ::ffff:0:a.b.c.d (SIIT, RFC 2765)
_COMPATIBLE = IPv6Network("::/96")  # ::a.b.c.d
_NAT64 = IPv6Network("64:ff9b::/96")  # RFC 6052's well-known prefix
_SIX_TO_FOUR = IPv6Network("2002::/16")
_TEREDO = IPv6Network("2001::/32")
# Never how a public image host is reached: refused whatever IPv4 address they carry.
_NEVER = (_MAPPED, _TRANSLATED, _COMPATIBLE, _TEREDO)
# ISATAP (RFC 5214): an interface id of 0000:5efe or 0200:5efe (the u bit either way), then
# the IPv4 address, under any /64 prefix; a host on that ISATAP link sends to it over IPv4.
_ISATAP_MASK = 0xFDFFFFFF_00000000
_ISATAP_ID = 0x00005EFE_00000000


def embedded_ipv4(address: IPv6Address) -> IPv4Address | None:
    """The IPv4 address an IPv6 address carries, if it is of a form that carries one."""
    value = int(address)
    if address in _MAPPED or address in _TRANSLATED or address in _COMPATIBLE \
            or address in _NAT64:
        return IPv4Address(value & 0xFFFFFFFF)
    if address in _SIX_TO_FOUR:
        return IPv4Address((value >> 80) & 0xFFFFFFFF)
    if address in _TEREDO:  # the client's address, obfuscated (bits inverted)
        return IPv4Address(~value & 0xFFFFFFFF)
    if value & _ISATAP_MASK == _ISATAP_ID:
        return IPv4Address(value & 0xFFFFFFFF)
    return None


def is_public(address: IPv4Address | IPv6Address | str) -> bool:
    """True if an image may be fetched from this address."""
    if isinstance(address, str):
        address = ipaddress.ip_address(address.split("%", 1)[0])  # no zone ids
    if isinstance(address, IPv4Address):
        return address.is_global and not any(address in n for n in _V4_BLOCKED)
    if any(address in n for n in _NEVER):
        return False
    if address not in _GLOBAL_UNICAST and address not in _NAT64:
        return False  # reserved or unassigned space: nothing public lives there
    if any(address in n for n in _V6_BLOCKED):
        return False
    # NAT64 (an IPv6-only network reaching IPv4 hosts), 6to4 and ISATAP: as public as the
    # IPv4 address they lead to.
    inner = embedded_ipv4(address)
    return inner is None or is_public(inner)
