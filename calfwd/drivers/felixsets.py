"""Reading Felix's pool sets (ip_pools = "auto"): its nftables tables first, then kernel ip sets.

Read only. Felix runs one dataplane: native nftables keeps the sets in `ip calico` / `ip6
calico`, read through calfwd's one libnftables instance, one set at a time (Felix's tables
hold thousands of rules that calfwd never needs); the iptables dataplane keeps them as ip
sets, read with `ipset save NAME` (drivers/tools.py: argument list, timeout). A failure is
raised as one line; pools.py decides what it means.
"""

from __future__ import annotations

from typing import Any, Dict, Tuple

from calfwd.drivers.tools import run, which
from calfwd.pools import ALL, IPSET, MASQ, NFTABLES, SET_NAMES, VERSIONS, FelixSets, ipset_members, \
    nft_member, set_name

NFT_FAMILIES = {4: "ip", 6: "ip6"}
FELIX_TABLE = "calico"


def read(nft: Any) -> FelixSets:
    sets: Dict[str, Tuple[str, ...]] = {}
    for version in VERSIONS:
        for kind in (ALL, MASQ):
            name = set_name(version, kind)
            elems = nft.read_set(NFT_FAMILIES[version], FELIX_TABLE, name)
            if elems is not None:
                sets[name] = tuple(nft_member(e) for e in elems)
    if sets:
        return FelixSets(NFTABLES, sets)
    looked = f"no {ALL} set in nftables tables ip/ip6 {FELIX_TABLE}"
    tool = which("ipset")
    if tool is None:
        return FelixSets("", {}, why=f"{looked}, and ipset is not installed to read ip sets")
    present = set(run([tool, "list", "-n"]).split())
    for name in SET_NAMES:
        if name in present:
            sets[name] = ipset_members(run([tool, "save", name]), name)
    if sets:
        return FelixSets(IPSET, sets)
    return FelixSets("", {}, why=f"{looked}, no ip set {set_name(4, ALL)} or {set_name(6, ALL)}")
