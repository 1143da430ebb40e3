"""Reading Felix's pool sets (ip_pools = "auto"): its nftables tables first, then kernel ip sets.

Read only. Felix runs one dataplane: native nftables keeps the sets in `ip calico` / `ip6
calico`, read through calfwd's one libnftables instance, one set at a time (Felix's tables
hold thousands of rules that calfwd never needs); the iptables dataplane keeps them as ip
sets, read with `ipset save NAME` (drivers/tools.py: argument list, timeout). A failure is
raised as one line; judge/pools.py decides what it means.
"""

from __future__ import annotations

from typing import Any, Dict, Tuple

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
