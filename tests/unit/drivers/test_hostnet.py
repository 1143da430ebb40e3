"""drivers/hostnet.py's pure parts: rtnetlink's netconf reply (the forwarding sysctls), `ip -d -j
link` (judge/cni.py's links) and BIRD's routes."""

from __future__ import annotations

import errno
import struct

import pytest

from calfwd.drivers.hostnet import (NETCONFA_FORWARDING, NETCONFA_IFINDEX, NLMSG_ERROR, has_bird_route, parse_links,
                                    parse_netconf)
from calfwd.judge.cni import Link

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


# Trimmed from `ip -d -j link show` (iproute2 6.1) in a namespace holding these devices.
LINKS = """[{"ifindex":1,"ifname":"lo","flags":["LOOPBACK","UP","LOWER_UP"],"operstate":"UNKNOWN"},
{"ifindex":2,"ifname":"flannel.1","flags":["BROADCAST","MULTICAST","UP","LOWER_UP"],"operstate":"UNKNOWN",
 "linkinfo":{"info_kind":"vxlan","info_data":{"id":1,"port_range":{"low":0,"high":0},"port":8472,"learning":false}}},
{"ifindex":3,"ifname":"cni0","flags":["BROADCAST","MULTICAST"],"operstate":"DOWN",
 "linkinfo":{"info_kind":"bridge","info_data":{"forward_delay":1500,"stp_state":0}}},
{"ifindex":4,"ifname":"tunl0","flags":["NOARP"],"linkinfo":{"info_kind":"ipip","info_data":{"remote":"any"}}},
{"ifindex":5,"ifname":"weird","linkinfo":{"info_kind":"vxlan","info_data":{"port":"x"}}},
{"ifname":""}]"""


def test_links_carry_their_kind_vxlan_port_and_state():
    assert parse_links(LINKS) == (Link("lo", "", None, True), Link("flannel.1", "vxlan", 8472, True),
                                  Link("cni0", "bridge", None, False), Link("tunl0", "ipip", None, False),
                                  Link("weird", "vxlan", None, False))
    assert parse_links("") == ()


def test_garbled_links_are_one_line_errors():
    with pytest.raises(RuntimeError, match="not JSON"):
        parse_links("[{")


def test_birds_routes_by_name_or_number():
    assert has_bird_route('[{"dst":"10.244.1.0/26","gateway":"192.0.2.2","dev":"eth0","protocol":"bird"}]')
    assert has_bird_route('[{"dst":"10.244.1.0/26","type":"blackhole","protocol":"12"}]')
    assert not has_bird_route('[{"dst":"10.42.1.0/24","dev":"flannel.1","protocol":"kernel"}]')
    assert not has_bird_route("")
