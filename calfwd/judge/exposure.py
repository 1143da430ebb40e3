"""Does this config open this host? The config against the interfaces the host really has.

config/__init__.py refuses what can never be right (eth0, e+, 0.0.0.0/0); what is wrong only on a given
host is judged here: a configured interface pattern that matches one of the host's own
interfaces (above all the one carrying the default route), and a pool that holds one of the
node's addresses. Pure: drivers/hostnet.py reads the host into a HostNetwork; `calfwd check`,
`calfwd plan` and `calfwd doctor` report what exposures() finds. With ip_pools = "auto" the
pools are Felix's, which nobody checked against the host: the Reconciler keeps those holding a
node address out of trusted sources (withheld_sources()).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import List, Tuple

from calfwd.config import Config
from calfwd.config.schema import IPNetwork, is_calico_interface


@dataclass(frozen=True)
class HostLink:
    name: str
    addresses: Tuple[str, ...] = ()  # without prefix length, e.g. "198.18.0.1", "2001:db8::1"


@dataclass(frozen=True)
class HostNetwork:
    """The host's interfaces and where its default routes go (IPv4 and IPv6)."""

    links: Tuple[HostLink, ...] = ()
    default4: Tuple[str, ...] = ()  # interface names (more than one: multipath or several metrics)
    default6: Tuple[str, ...] = ()


@dataclass(frozen=True)
class Exposure:
    """One way the config opens the host. error: open now (the uplink is in an ACCEPT zone,
    or the node's network is a trusted source); otherwise a warning."""

    error: bool
    saw: str
    why: str
    fix: str

    def line(self) -> str:
        return f"{self.saw}. Why: {self.why}. Fix: {self.fix}"


def matches(name: str, pattern: str) -> bool:
    """firewalld's and Calico's interface wildcard: a trailing '+' matches any rest."""
    return name.startswith(pattern[:-1]) if pattern.endswith("+") else name == pattern


def exposures(config: Config, host: HostNetwork) -> Tuple[Exposure, ...]:
    return tuple(_interfaces(config, host) + _pools(config, host))


def _interfaces(config: Config, host: HostNetwork) -> List[Exposure]:
    zone = config.firewalld.zone
    out = []
    for index, pattern in enumerate(config.interfaces):
        for link in host.links:
            if is_calico_interface(link.name) or not matches(link.name, pattern):
                continue
            families = [f for f, devs in (("IPv4", host.default4), ("IPv6", host.default6)) if link.name in devs]
            route = f" and carries the default route ({' and '.join(families)})" if families else ""
            where = f"calico.interfaces[{index}] {pattern!r} matches {link.name}"
            if config.firewalld.enabled:
                why = (f"calfwd binds it to the ACCEPT zone '{zone}' and lets everything be forwarded to "
                       f"it, opening this host to all traffic arriving on {link.name}")
            else:
                why = (f"calfwd masquerades no pod traffic leaving through {link.name}, and with [firewalld] "
                       f"enabled would bind it to an ACCEPT zone, opening this host to that network")
            out.append(Exposure(
                error=bool(families),
                saw=f"{where}, which is not one of Calico's interfaces{route}",
                why=why,
                fix=f"remove {pattern!r} from [calico] interfaces in {config.path}, or narrow it so that "
                    f"it matches only Calico's interfaces"))
    return out


def _pools(config: Config, host: HostNetwork) -> List[Exposure]:
    return [e for _pool, e in _pool_hits(config, host)]


def withheld_sources(config: Config, host: HostNetwork) -> Tuple[Tuple[IPNetwork, ...], Tuple[str, ...]]:
    """ip_pools = "auto" with trust_pool_sources: Felix's pools that hold one of this node's
    addresses, which calfwd leaves out of the zone's sources (a pool nobody wrote into calfwd's
    file must not open the host to the node's own network), and one line for each."""
    fw = config.firewalld
    if not (config.auto_pools and fw.enabled and fw.trust_pool_sources):
        return (), ()
    hits = _pool_hits(config, host)
    return tuple(dict.fromkeys(pool for pool, _e in hits)), tuple(e.line() for _pool, e in hits)


def _pool_hits(config: Config, host: HostNetwork) -> List[Tuple[IPNetwork, Exposure]]:
    trusted = config.firewalld.enabled and config.firewalld.trust_pool_sources
    out = []
    for index, pool in enumerate(config.ip_pools):
        for link in host.links:
            if is_calico_interface(link.name):  # tunl0, vxlan.calico: their address is a pool's
                continue
            for text in link.addresses:
                try:
                    address = ipaddress.ip_address(text)
                except ValueError:
                    continue
                if address.version != pool.version or address not in pool:
                    continue
                why = _pool_why(config, link.name, trusted)
                if config.auto_pools:
                    saw = (f"Felix's pool {pool.with_prefixlen} (ip_pools = \"auto\") contains {address}, "
                           f"this node's own address on {link.name}")
                    fix = ("correct Calico's IP pool (calicoctl get ippools -o wide): a pool must not "
                           "overlap the node's networks")
                else:
                    saw = (f"calico.ip_pools[{index}] {pool.with_prefixlen} contains {address}, this node's "
                           f"own address on {link.name}")
                    fix = (f"set [calico] ip_pools in {config.path} to Calico's pools (calicoctl get ippools "
                           "-o wide); a pool must not overlap the node's networks")
                out.append((pool, Exposure(error=trusted and not config.auto_pools, saw=saw, why=why, fix=fix)))
    return out


def _pool_why(config: Config, link: str, trusted: bool) -> str:
    zone = config.firewalld.zone
    if config.auto_pools and trusted:  # the Reconciler withholds it (withheld_sources)
        return (f"calfwd leaves it out of the sources of the ACCEPT zone '{zone}', where trust_pool_sources "
                f"= true would accept everything from the network of {link}; calfwd still treats hosts "
                "on that network as pods (masquerades them, exempts traffic to them)")
    if trusted:
        return (f"with [firewalld] trust_pool_sources = true the pool is a source of the ACCEPT zone "
                f"'{zone}': the host accepts everything from the network of {link}")
    return (f"calfwd would treat hosts on the network of {link} as pods (masquerade them, exempt "
            "traffic to them), and trust_pool_sources = true would open the host to them")
