"""doctor's reads of the kernel and the host's tools: nftables, legacy iptables, sysctls,
routes, links, ip sets. Read only; every failure is raised to reads.py, which records it
under its Read. Subprocesses get argument lists, never a shell, and a timeout."""

from __future__ import annotations

import ipaddress
import json
import os
from typing import Any, Dict, List, Tuple

from calfwd.doctor.snapshot import Read, Route
from calfwd.judge.pools import nft_member
from calfwd.drivers.tools import run, which

# Felix's tables in iptables-nft mode, and its native nftables dataplane's.
IPTABLES_TABLES = ("filter", "nat", "mangle", "raw")
POOL_SET_WORDS = ("all-ipam-pools", "masq-ipam-pools", "network-ip-pools")


def read_nftables(nft: Any, snapshot: Dict[str, Any]) -> None:
    tables = tuple(sorted((t["family"], t["name"]) for t in nft.tables()))
    snapshot["nft_tables"] = tables
    chains: Dict[str, Tuple[str, ...]] = {}
    for family in ("ip", "ip6"):
        for table in IPTABLES_TABLES:
            if (family, table) not in tables:
                continue
            objs = nft.read_table(family, table) or []
            names = [o["chain"]["name"] for o in objs if "chain" in o]
            cali = tuple(n for n in names if n.startswith("cali-"))
            if cali:
                chains[f"{family} {table}"] = cali
    snapshot["calico_chains"] = chains
    sets: Dict[str, Tuple[str, ...]] = {}
    for family in ("ip", "ip6"):
        if (family, "calico") in tables:
            for obj in nft.read_table(family, "calico") or []:
                body = obj.get("set")
                if body and any(word in body["name"] for word in POOL_SET_WORDS):
                    sets[f"nft {family} calico {body['name']}"] = tuple(
                        nft_member(e) for e in body.get("elem", ()))
    snapshot["nft_pool_sets"] = sets


def read_legacy(snapshot: Dict[str, Any], unknown: Dict[str, str]) -> None:
    """Calico's chains in legacy (x_tables) iptables: only where /proc lists loaded tables
    (iptables-nft never registers any), read with *-legacy-save."""
    chains: List[str] = []
    for proc_file, save in (("/proc/net/ip_tables_names", "iptables-legacy-save"),
                            ("/proc/net/ip6_tables_names", "ip6tables-legacy-save")):
        try:
            with open(proc_file, encoding="utf-8") as handle:
                names = handle.read().split()
        except FileNotFoundError:
            continue  # the module is not loaded: no legacy tables at all
        if not names:
            continue
        tool = which(save)
        if tool is None:
            unknown[Read.LEGACY] = f"legacy tables are loaded ({', '.join(names)}) but {save} is not installed"
            continue
        for line in run([tool]).splitlines():
            if line.startswith(":cali-"):
                chains.append(f"{save.split('-')[0]} {line[1:].split()[0]}")
    snapshot["legacy_calico_chains"] = tuple(chains)


def read_routes() -> Tuple[Route, ...]:
    tool = which("ip")
    if tool is None:
        raise RuntimeError("the ip tool (iproute2) is not installed")
    routes = []
    for family in (4, 6):
        for entry in json.loads(run([tool, "-j", f"-{family}", "route", "show", "table", "main"]) or "[]"):
            dst = str(entry.get("dst", ""))
            if dst == "default" or not dst:
                continue
            routes.append(Route(family=family, dst=_cidr(dst, family), kind=str(entry.get("type", "unicast")),
                                proto=str(entry.get("protocol", "")), dev=str(entry.get("dev", ""))))
    return tuple(routes)


def _cidr(dst: str, family: int) -> str:
    try:
        return ipaddress.ip_network(dst, strict=False).with_prefixlen
    except ValueError:
        return dst


def read_links() -> Tuple[str, ...]:
    return tuple(sorted(os.listdir("/sys/class/net")))


def read_ipsets() -> Dict[str, Tuple[str, ...]]:
    """Calico's pool ip sets (cali40all-ipam-pools, cali40masq-ipam-pools, ...) and members."""
    tool = which("ipset")
    if tool is None:
        raise RuntimeError("ipset is not installed (dnf install ipset)")
    sets = {}
    for name in run([tool, "list", "-n"]).split():
        if not name.startswith(("cali40", "cali60")) or not any(w in name for w in POOL_SET_WORDS):
            continue
        text = run([tool, "list", name])
        members = text.split("Members:", 1)[1].split() if "Members:" in text else []
        sets[f"ipset {name}"] = tuple(members)
    return sets
