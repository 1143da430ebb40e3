"""Reading Felix's pool sets (ip_pools = "auto"): its nftables tables first, then kernel ip sets;
and whether Felix's rules are on the node at all (present(), for judge/cni.py).

Read only. Felix runs one dataplane: native nftables keeps the sets in `ip calico` / `ip6
calico`, read through calfwd's one libnftables instance, one set at a time (Felix's tables
hold thousands of rules that calfwd never needs); the iptables dataplane keeps them as ip
sets, read with `ipset save NAME` (drivers/tools.py: argument list, timeout). A failure is
raised as one line; judge/pools.py decides what it means.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

from calfwd.drivers.tools import run, which
from calfwd.judge.pools import ALL_KINDS, IPSET, NFTABLES, SET_NAMES, FelixSets, ipset_members, nft_member

NFT_FAMILIES = {4: "ip", 6: "ip6"}
FELIX_TABLE = "calico"


def read(nft: Any) -> FelixSets:
    sets: Dict[str, Tuple[str, ...]] = {}
    for name in SET_NAMES:
        elems = nft.read_set(NFT_FAMILIES[int(name[4])], FELIX_TABLE, name)  # cali40...: IPv4
        if elems is not None:
            sets[name] = tuple(nft_member(e) for e in elems)
    if sets:
        return FelixSets(NFTABLES, sets)
    kinds = "/".join(ALL_KINDS)
    looked = f"no cali40/cali60 {kinds} set in nftables tables ip/ip6 {FELIX_TABLE}"
    tool = which("ipset")
    if tool is None:
        return FelixSets("", {}, why=f"{looked}, and ipset is not installed to read ip sets")
    present = set(run([tool, "list", "-n"]).split())
    for name in SET_NAMES:
        if name in present:
            sets[name] = ipset_members(run([tool, "save", name]), name)
    if sets:
        return FelixSets(IPSET, sets)
    return FelixSets("", {}, why=f"{looked}, nor as ip sets")


# Felix's forward chain in iptables-nft's filter tables.
FELIX_CHAINS = (("ip", "filter", "cali-FORWARD"), ("ip6", "filter", "cali-FORWARD"))


def present(nft: Any, ip_sets: bool = True) -> Optional[bool]:
    """Whether Felix's rules are on this node (judge/cni.py), without reading any set's members:
    its native nftables table `calico`, its FORWARD chain in iptables-nft, or, for a Felix whose
    iptables chains firewalld has just flushed, its ip sets (`ipset list -n`: no flush of
    firewalld's removes those). Legacy iptables' chains are not read: Calico's cali* interfaces
    show it there. ip_sets=False: the nftables reads alone. None: nothing could be read."""
    read = False
    try:
        tables = {(t["family"], t["name"]) for t in nft.tables()}
        if tables & {("ip", FELIX_TABLE), ("ip6", FELIX_TABLE)}:
            return True
        if nft.read_chains(FELIX_CHAINS):
            return True
        read = True
    except Exception:  # no CAP_NET_ADMIN, no bindings: the ip sets may still say
        pass
    tool = which("ipset") if ip_sets else None
    if tool is None:
        return False if read else None
    try:
        names = run([tool, "list", "-n"]).split()
    except Exception:
        return False if read else None
    return any(name.startswith(("cali40", "cali60")) for name in names)
