"""Hand-made host snapshots, as doctor's reads would return them: a healthy 2.x node and the
incident's 1.3.3 node, each changed per test with dataclasses.replace-style keywords."""

from __future__ import annotations

import dataclasses
from typing import Any

from calfwd import config as cfg
from calfwd.doctor.snapshot import FirewalldState, HostSnapshot, Route
from calfwd.judge.blockers import FirewalldPaths
from calfwd.judge.exposure import HostLink, HostNetwork

NFT = "/usr/sbin/xtables-nft-multi"
PATH = "/etc/calfwd/calfwd.toml"
CONFIG = cfg.parse('[calico]\nip_pools = ["10.244.0.0/16", "fd00:10:244::/56"]\nnat_outgoing = true\n', PATH)


def fw(**changes: Any) -> FirewalldState:
    base = FirewalldState(running=True, state="RUNNING", version="2.1.1", backend="nftables",
                          default_zone="public", strict_forward_ports=None, table_owner=None,
                          runtime_direct=(), paths=paths(), pid=1234, guarded=())
    return dataclasses.replace(base, **changes)


def paths(active: Any = None, targets: Any = None, **changes: Any) -> FirewalldPaths:
    """firewalld's runtime as judge/blockers.py reads it: calfwd's zone and the uplink's."""
    active = active if active is not None else {"calfwd": (("cali+", "tunl0"), ()), "public": (("eth0",), ())}
    targets = {"calfwd": "ACCEPT", "public": "default", **(targets or {})}
    return FirewalldPaths(active=active, targets=targets, **changes)


def healthy(**changes: Any) -> HostSnapshot:
    """A node firewalld 2.x does not flush: Calico in iptables-nft, calfwd in sync."""
    base = HostSnapshot(
        config_path=PATH, config=CONFIG, firewalld=fw(), firewalld_conf={}, permanent_direct=(),
        installed_version="2.1.1", flush_fix=True, dropin_path="/run/test/guard.conf", dropin_text=None,
        guard_paths=(NFT,), host_iptables=NFT,
        nft_tables=(("inet", "calfwd"), ("inet", "firewalld"), ("ip", "filter"), ("ip", "nat")),
        calico_chains={"ip filter": ("cali-FORWARD", "cali-INPUT"), "ip nat": ("cali-POSTROUTING",)},
        sysctls={"net.ipv4.ip_forward": "1", "net.ipv6.conf.all.forwarding": "1"},
        routes=(Route(4, "10.244.1.0/26", "blackhole", "bird", ""), Route(4, "10.244.1.5/32", "unicast", "", "cali0123456789a"),
                Route(6, "fd00:10:244:1::/122", "blackhole", "80", "lo")),
        links=("cali0123456789a", "eth0", "lo", "tunl0"),
        host_network=HostNetwork(links=(HostLink("lo", ("127.0.0.1",)), HostLink("eth0", ("192.0.2.10",)),
                                        HostLink("cali0123456789a"), HostLink("tunl0", ("10.244.1.0",))),
                                 default4=("eth0",), default6=("eth0",)),
        pool_sets={"ipset cali40all-ipam-pools": ("10.244.0.0/16",), "ipset cali40masq-ipam-pools": ("10.244.0.0/16",),
                   "ipset cali60all-ipam-pools": ("fd00:10:244::/56",),
                   "ipset cali60masq-ipam-pools": ("fd00:10:244::/56",)},
    )
    return dataclasses.replace(base, **changes)


def old(**changes: Any) -> HostSnapshot:
    """The incident's host: firewalld 1.3.3 with the nftables backend, no guard."""
    snap = healthy(firewalld=fw(version="1.3.3"), installed_version="1.3.3", flush_fix=False)
    return dataclasses.replace(snap, **changes)
