"""drivers/hostnet.py's pure parts: rtnetlink's netconf reply (the forwarding sysctls)."""

from __future__ import annotations

import errno
import struct

import pytest

from calfwd.drivers.hostnet import NETCONFA_FORWARDING, NETCONFA_IFINDEX, NLMSG_ERROR, parse_netconf

RTM_NEWNETCONF = 80


def reply(*attrs) -> bytes:
    body = struct.pack("B3x", 2) + b"".join(struct.pack("HHi", 8, kind, value) for kind, value in attrs)
    return struct.pack("IHHII", 16 + len(body), RTM_NEWNETCONF, 0, 1, 0) + body


def test_forwarding_is_read_from_its_attribute_wherever_it_stands():
    assert parse_netconf(reply((NETCONFA_IFINDEX, -1), (NETCONFA_FORWARDING, 1))) == 1
    assert parse_netconf(reply((NETCONFA_FORWARDING, 0), (NETCONFA_IFINDEX, -1))) == 0
    assert parse_netconf(reply((NETCONFA_IFINDEX, -1))) is None  # not said: unknown, never a guess


def test_an_error_reply_is_an_oserror_with_its_errno():
    error = struct.pack("IHHII", 36, NLMSG_ERROR, 0, 1, 0) + struct.pack("i", -errno.EAFNOSUPPORT) + bytes(16)
    with pytest.raises(OSError) as raised:
        parse_netconf(error)
    assert raised.value.errno == errno.EAFNOSUPPORT


def test_a_truncated_or_zero_length_attribute_ends_the_walk():
    broken = reply((NETCONFA_IFINDEX, -1))[:-4] + struct.pack("HH", 0, NETCONFA_FORWARDING)
    assert parse_netconf(broken) is None
