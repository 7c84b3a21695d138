"""Every IPv6 form that carries an IPv4 address is as public as that address at most (issue 23,
item 11): IPv4-mapped, -compatible and -translated, NAT64 (well-known and local-use), 6to4,
Teredo and ISATAP, as tables of the addresses an attacker would write and as properties over
drawn addresses; and nothing outside global unicast space counts as public."""

from __future__ import annotations

from collections.abc import Callable
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tram.vision.addresses import embedded_ipv4, is_public

# Where the IPv4 address goes in each form (the oracle: RFCs 4291, 2765, 6052, 8215, 3056,
# 4380, 5214), written here rather than taken from the code under test.
PUBLIC_PREFIX = 0x2A00_1450_4001_0800 << 64  # a public /64


def _low(prefix: str) -> Callable[[int], int]:
    return lambda v4: int(IPv6Address(prefix)) | v4


def _nat64_local(length: int) -> Callable[[int], int]:
    """64:ff9b:1::/48 with a network-specific prefix of `length` bits (RFC 6052 §2.2: the
    IPv4 address skips bits 64-71)."""
    base = int(IPv6Address("64:ff9b:1::"))
    if length == 96:
        return lambda v4: base | v4
    before = 64 - length  # the IPv4 bits that fit before bit 64

    def place(v4: int) -> int:
        high, low = v4 >> (32 - before), v4 & ((1 << (32 - before)) - 1)
        return base | (high << 64) | (low << (56 - (32 - before)))
    return place


FORMS: dict[str, Callable[[int], int]] = {
    "mapped ::ffff:a.b.c.d": _low("::ffff:0:0"),
    "translated ::ffff:0:a.b.c.d": _low("::ffff:0:0:0"),
    "compatible ::a.b.c.d": _low("::"),
    "NAT64 64:ff9b::a.b.c.d": _low("64:ff9b::"),
    **{f"local NAT64 /{n}": _nat64_local(n) for n in (48, 56, 64, 96)},
    "6to4 2002:a.b.c.d::": lambda v4: int(IPv6Address("2002::")) | (v4 << 80) | 1,
    "Teredo server": lambda v4: int(IPv6Address("2001::")) | (v4 << 64),
    "Teredo client": lambda v4: int(IPv6Address("2001:0:5db8:d822::")) | (~v4 & 0xFFFFFFFF),
    "ISATAP 0:5efe": lambda v4: PUBLIC_PREFIX | 0x5EFE << 32 | v4,
    "ISATAP 200:5efe": lambda v4: PUBLIC_PREFIX | 0x0200_5EFE << 32 | v4,
}
# Forms through which a public IPv4 host is really reached from an IPv6-only network (a
# translator or a tunnel): followed when the IPv4 address is public.
FOLLOWED = {"NAT64 64:ff9b::a.b.c.d", "6to4 2002:a.b.c.d::", "ISATAP 0:5efe", "ISATAP 200:5efe"}

NOT_PUBLIC_V4 = [IPv4Network(n) for n in (
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
    "172.16.0.0/12", "192.0.0.0/24", "192.0.2.0/24", "192.88.99.0/24", "192.168.0.0/16",
    "198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4")]
# Reachable by IANA's registry but refused by the gateway all the same (AS112, AMT).
REFUSED_ANYWAY = [IPv4Network(n) for n in ("192.31.196.0/24", "192.52.193.0/24",
                                           "192.175.48.0/24")]


def _in(network: IPv4Network) -> st.SearchStrategy[int]:
    return st.integers(0, network.num_addresses - 1).map(lambda i: int(network[0]) + i)


not_public_v4 = st.sampled_from(NOT_PUBLIC_V4).flatmap(_in)
public_v4 = st.integers(0, 2**32 - 1).filter(
    lambda v: not any(IPv4Address(v) in n for n in (*NOT_PUBLIC_V4, *REFUSED_ANYWAY)))


@pytest.mark.parametrize("address", [
    "::ffff:0:7f00:1", "::ffff:0:a9fe:a9fe",  # the two, IPv4-translated
    "::ffff:0:a00:1", "::ffff:0:0:0", "::ffff:0:808:808",
    "64:ff9b:1:7f00:1:0:808:808",  # local NAT64 /48 → 127.0.1.0 (the last 32 bits look public)
    "64:ff9b:1::808:808",  # local-use NAT64: refused whole
    "2a00:1450:4001:800:0:5efe:7f00:1", "2a00:1450:4001:800:200:5efe:a9fe:a9fe",  # ISATAP
    "1::1", "4000::1", "64:ff9b:2::1", "100:1::1", "e000::1",  # not global unicast space
])
def test_forms_that_were_public_before_are_refused(address: str) -> None:
    assert not is_public(address)


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("v4", ["127.0.0.1", "169.254.169.254", "10.0.0.1", "192.168.1.1",
                                "172.16.0.1", "100.64.0.1", "0.0.0.0", "224.0.0.1"])
def test_every_form_of_a_private_ipv4_address_is_refused(form: str, v4: str) -> None:
    address = IPv6Address(FORMS[form](int(IPv4Address(v4))))
    assert not is_public(address), (form, str(address))


@given(form=st.sampled_from(sorted(FORMS)), v4=not_public_v4)
def test_no_form_makes_a_non_public_ipv4_address_public(form: str, v4: int) -> None:
    assert not is_public(IPv6Address(FORMS[form](v4)))


@given(form=st.sampled_from(sorted(FORMS)), v4=public_v4)
def test_a_public_ipv4_address_is_reached_only_through_a_translator_or_tunnel(
        form: str, v4: int) -> None:
    address = IPv6Address(FORMS[form](v4))
    assert is_public(address) == (form in FOLLOWED), str(address)
    if form in FOLLOWED:
        assert embedded_ipv4(address) == IPv4Address(v4)


# Any 128 bits, and bits under each prefix that carries (or might carry) an IPv4 address.
PREFIXES = [IPv6Network(n) for n in (
    "::/96", "::ffff:0:0/96", "::ffff:0:0:0/96", "64:ff9b::/96", "64:ff9b::/32", "64:ff9b:1::/48",
    "2002::/16", "2001::/32", "2a00:1450:4001:800::/64", "::/8", "2000::/3")]
any_v6 = st.one_of(
    st.integers(0, 2**128 - 1),
    st.tuples(st.sampled_from(PREFIXES), st.integers(0, 2**128 - 1)).map(
        lambda p: int(p[0].network_address) | (p[1] & int(p[0].hostmask))),
).map(IPv6Address)


@given(address=any_v6)
def test_a_public_ipv6_address_is_global_unicast_and_carries_only_a_public_ipv4(
        address: IPv6Address) -> None:
    if is_public(address):
        assert address in IPv6Network("2000::/3") or address in IPv6Network("64:ff9b::/96")
        inner = embedded_ipv4(address)
        assert inner is None or is_public(inner)
        for network in ("::ffff:0:0/96", "::ffff:0:0:0/96", "::/96", "2001::/32",
                        "64:ff9b:1::/48"):
            assert address not in IPv6Network(network)
