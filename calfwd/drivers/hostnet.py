"""The host's interfaces, their addresses and its default routes, for exposure.py; its
forwarding sysctls, for blockers.py.

Read only, with iproute2's JSON output (`ip -j addr`, `ip -j -4/-6 route show default`): an
argument list, no shell, a timeout, the system's PATH. Parsing is separate (parse()) so that
what iproute2 prints is unit tested without the host.
"""

from __future__ import annotations

import json
from typing import Any, Dict, List

from calfwd.blockers import FORWARDING
from calfwd.drivers.tools import run, which
from calfwd.exposure import HostLink, HostNetwork


def read_forwarding() -> Dict[str, str]:
    """The forwarding sysctls blockers.py judges ("" where IPv6 is disabled on the host)."""
    values = {}
    for key, _version in FORWARDING:
        try:
            with open("/proc/sys/" + key.replace(".", "/"), encoding="utf-8") as handle:
                values[key] = handle.read().strip()
        except FileNotFoundError:
            values[key] = ""
    return values


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
