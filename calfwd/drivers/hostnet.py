"""The host's interfaces, their addresses and its default routes, for judge/exposure.py; its
forwarding sysctls (over rtnetlink, as `ip netconf` asks), for judge/blockers.py; its links'
kinds and VXLAN ports and BIRD's routes, for judge/cni.py.

Read only, with iproute2's JSON output (`ip -j addr`, `ip -j -4/-6 route show default`): an
argument list, no shell, a timeout, the system's PATH. Parsing is separate (parse()) so that
what iproute2 prints is unit tested without the host.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import struct
from typing import Any, Dict, List, Optional, Tuple

from calfwd.judge.blockers import FORWARDING
from calfwd.drivers.tools import run, which
from calfwd.judge.cni import Link
from calfwd.judge.exposure import HostLink, HostNetwork


# rtnetlink's netconf request (linux/netconf.h): what `ip netconf show dev all` asks. /proc/sys is
# not visible inside calfwd's unit (ProcSubset=pid), netlink is (AF_NETLINK is allowed).
RTM_GETNETCONF, NLM_F_REQUEST, NLMSG_ERROR = 82, 1, 2
NETCONFA_IFINDEX, NETCONFA_FORWARDING, NETCONFA_IFINDEX_ALL = 1, 2, -1
_FAMILIES = {4: socket.AF_INET, 6: socket.AF_INET6}


def read_forwarding() -> Dict[str, str]:
    """The forwarding sysctls judge/blockers.py judges, "0"/"1" ("" where IPv6 is disabled on the
    host); a family the kernel would not answer for is left out (unknown, never guessed)."""
    values = {}
    for key, version in FORWARDING:
        try:
            value = _netconf_forwarding(_FAMILIES[version])
        except OSError as exc:
            if version == 6 and exc.errno in (errno.EAFNOSUPPORT, errno.EOPNOTSUPP):
                values[key] = ""  # ipv6.disable=1
            continue
        if value is not None:
            values[key] = "1" if value else "0"
    return values


def _netconf_forwarding(family: int) -> Optional[int]:
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE) as sock:
        sock.settimeout(1.0)
        body = struct.pack("B3x", family) + struct.pack("HHi", 8, NETCONFA_IFINDEX, NETCONFA_IFINDEX_ALL)
        sock.sendto(struct.pack("IHHII", 16 + len(body), RTM_GETNETCONF, NLM_F_REQUEST, 1, 0) + body, (0, 0))
        data = sock.recv(65536)
    return parse_netconf(data)


def parse_netconf(data: bytes) -> Optional[int]:
    """NETCONFA_FORWARDING from one RTM_NEWNETCONF reply; OSError for netlink's error reply."""
    length, kind = struct.unpack_from("IH", data)
    if kind == NLMSG_ERROR:
        code = -struct.unpack_from("i", data, 16)[0]
        raise OSError(code, os.strerror(code))
    offset = 16 + 4  # nlmsghdr, netconfmsg (padded)
    while offset + 4 <= min(length, len(data)):
        size, attr = struct.unpack_from("HH", data, offset)
        if size < 4:
            break
        if attr == NETCONFA_FORWARDING and size >= 8:
            return int(struct.unpack_from("i", data, offset + 4)[0])
        offset += (size + 3) & ~3
    return None


def read_host_network() -> HostNetwork:
    """Raises RuntimeError (no iproute2, a failing or garbled `ip`): callers say it and go on."""
    tool = which("ip")
    if tool is None:
        raise RuntimeError("the ip tool (iproute2) is not installed")
    return parse(run([tool, "-j", "addr", "show"]), run([tool, "-j", "-4", "route", "show", "default"]),
                 run([tool, "-j", "-6", "route", "show", "default"]))


def read_addresses() -> HostNetwork:
    """The interfaces and their addresses alone (one `ip` call, no routes): what the daemon
    needs at each reconcile to judge Felix's pools (exposure.withheld_sources)."""
    tool = which("ip")
    if tool is None:
        raise RuntimeError("the ip tool (iproute2) is not installed")
    return parse(run([tool, "-j", "addr", "show"]), "", "")


def parse(addr_json: str, route4_json: str, route6_json: str) -> HostNetwork:
    """iproute2's JSON to a HostNetwork; an empty output (IPv6 disabled, no route) is []."""
    links = []
    for entry in _load(addr_json):
        name = str(entry.get("ifname", ""))
        if name:
            addresses = tuple(str(a["local"]) for a in entry.get("addr_info", ()) if isinstance(a, dict)
                              and a.get("local"))
            links.append(HostLink(name, addresses))
    return HostNetwork(links=tuple(links), default4=_route_devs(route4_json), default6=_route_devs(route6_json))


def _route_devs(text: str) -> tuple:
    devs: List[str] = []
    for route in _load(text):
        hops = route.get("nexthops") or [route]  # multipath: one dev per next hop
        for hop in hops:
            dev = hop.get("dev") if isinstance(hop, dict) else None
            if dev and dev not in devs:
                devs.append(str(dev))
    return tuple(devs)


def _load(text: str) -> List[Any]:
    try:
        data = json.loads(text) if text.strip() else []
    except ValueError as exc:
        raise RuntimeError(f"ip printed something that is not JSON: {exc}") from None
    return [e for e in data if isinstance(e, dict)] if isinstance(data, list) else []


def read_links() -> Tuple[Link, ...]:
    """Every interface with its kind, a VXLAN device's UDP port and whether it is up
    (`ip -d -j link show`), for judge/cni.py. Raises RuntimeError, as read_host_network."""
    tool = which("ip")
    if tool is None:
        raise RuntimeError("the ip tool (iproute2) is not installed")
    return parse_links(run([tool, "-d", "-j", "link", "show"]))


def parse_links(text: str) -> Tuple[Link, ...]:
    """`ip -d -j link` to Links: linkinfo's info_kind, info_data's port (VXLAN; iproute2
    prints the kernel's 8472 for a device made with port 0), UP among the flags."""
    links = []
    for entry in _load(text):
        name = str(entry.get("ifname", ""))
        if not name:
            continue
        info = entry.get("linkinfo") if isinstance(entry.get("linkinfo"), dict) else {}
        data = info.get("info_data") if isinstance(info.get("info_data"), dict) else {}
        port = data.get("port")
        links.append(Link(name, str(info.get("info_kind", "")),
                          port if isinstance(port, int) and not isinstance(port, bool) and port > 0 else None,
                          "UP" in (entry.get("flags") or ())))
    return tuple(links)


def read_bird_routes() -> bool:
    """Whether BIRD (Calico's BGP) has installed routes in the main table, either family: protocol
    "bird" (12; the number where /etc/iproute2 does not name it). Read whole, not with `proto
    bird`, which fails where the name is unknown."""
    tool = which("ip")
    if tool is None:
        raise RuntimeError("the ip tool (iproute2) is not installed")
    return any(has_bird_route(run([tool, "-j", f"-{family}", "route", "show", "table", "main"]))
               for family in (4, 6))


def has_bird_route(text: str) -> bool:
    return any(str(route.get("protocol", "")) in ("bird", "12") for route in _load(text))
