"""Which lines of `nft --json monitor` concern calfwd, decided cheaply and without I/O.

Felix and kube-proxy rewrite their own chains all the time, and a firewalld reload renders
thousands of rules into its table: every one of those is a line on the monitor. Only three
things matter to calfwd (FIELD-NOTES 2, 3, 7):

- OWN: anything in calfwd's own table (someone deleted, flushed or edited it);
- JUMPS: the base chains that hold Felix's and kube-proxy's top-level jumps, the tables
  around them, and kube-proxy's canary chain (a flush takes these first);
- FIREWALLD: firewalld's table and its reload-time drop table, as whole tables only;
- POOLS: Felix's pool sets in its nftables tables `ip calico` / `ip6 calico`, and those
  tables (ip_pools = "auto" reads them again; kernel ip sets are not on this monitor).

So a line costs an anchored regex and a short scan of its head (a few microseconds); a rule
in a `cali-*` or `KUBE-SVC-*` chain is rejected there, and no JSON is ever parsed. nft prints the identifying keys first and in a
fixed order (family, then table/chain/name, then the handle), which is what makes the head
enough. Only a rule added to a watched chain with a jump or goto in it is parsed (rule_body),
to learn its target: that costs the length of the rule, never the length of the chain.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Dict, FrozenSet, Optional, Tuple

from calfwd.judge.pools import SET_NAMES

OWN, JUMPS, FIREWALLD, LOST, POOLS = "own", "jumps", "firewalld", "lost", "pools"

# iptables' built-in chains that carry Felix's and kube-proxy's top-level jumps.
BASE_CHAINS: Dict[str, Tuple[str, ...]] = {
    "filter": ("INPUT", "FORWARD", "OUTPUT"),
    "nat": ("PREROUTING", "OUTPUT", "POSTROUTING"),
}
CANARY = "KUBE-PROXY-CANARY"
CANARY_TABLES = ("mangle", "nat", "filter")
IPTABLES_FAMILIES = ("ip", "ip6")
FIREWALLD_TABLES = frozenset({"firewalld", "firewalld_policy_drop"})
FELIX_TABLE = "calico"
POOL_SETS = frozenset(SET_NAMES)

# {"add": {"rule": {"family": "ip", "table": "filter", "chain": "FORWARD", "handle": 4, ...
_HEAD = re.compile(r'^\{"(\w+)": \{"(\w+)": \{"family": "(\w+)", ')
_PAIR = re.compile(r'"(table|chain|name)": "([^"]*)"')
_HANDLE = re.compile(r'"handle": (\d+)')
HEAD_CHARS = 240  # table and chain names are at most 256 bytes; ours are far shorter


@dataclass(frozen=True)
class KernelEvent:
    concern: str  # OWN, JUMPS, FIREWALLD, POOLS, or LOST (nft said it missed events)
    verb: str = ""  # add, insert, create, replace, delete
    kind: str = ""  # table, chain, rule, set, element, ...
    family: str = ""
    table: str = ""
    chain: str = ""  # JUMPS: the watched chain it touched; "" for a whole table
    handle: Optional[int] = None  # JUMPS, a rule: its handle (the key of the jump index)


def _watched_chains() -> FrozenSet[Tuple[str, str]]:
    pairs = {(table, chain) for table, chains in BASE_CHAINS.items() for chain in chains}
    pairs |= {(table, CANARY) for table in CANARY_TABLES}
    return frozenset(pairs)


WATCHED_CHAINS = _watched_chains()
WATCHED_TABLES = frozenset(table for table, _chain in WATCHED_CHAINS)


def watched_chain_refs() -> Tuple[Tuple[str, str, str], ...]:
    """(family, table, chain) for every chain whose rules or existence the flush check reads."""
    return tuple((family, table, chain) for family in IPTABLES_FAMILIES
                 for table, chain in sorted(WATCHED_CHAINS))


def refs_of(event: KernelEvent) -> Tuple[Tuple[str, str, str], ...]:
    """What to read again after a JUMPS event: its chain, or every watched chain of its table."""
    if event.chain:
        return ((event.family, event.table, event.chain),)
    return tuple(ref for ref in watched_chain_refs() if ref[:2] == (event.family, event.table))


def classify(line: str, own_family: str, own_table: str) -> Optional[KernelEvent]:
    """The event a monitor line stands for, or None when it does not concern calfwd."""
    head = _HEAD.match(line)
    if head is None:
        # nft's own comments ("# ERROR: We lost some netlink events!"): whatever was lost may
        # have concerned us, so the caller looks at everything again. Other text is nft's
        # error output, which the monitor driver reports when nft exits.
        return KernelEvent(LOST) if line.startswith("#") else None
    verb, kind, family = head.groups()
    names: Dict[str, str] = {}
    for key, value in _PAIR.findall(line, head.end(), head.end() + HEAD_CHARS):
        names.setdefault(key, value)
    table = names.get("name", "") if kind == "table" else names.get("table", "")
    if family == own_family and table == own_table:
        return KernelEvent(OWN, verb, kind, family, table)
    if family in IPTABLES_FAMILIES and table == FELIX_TABLE:
        if kind == "table" or (kind in ("set", "element") and names.get("name") in POOL_SETS):
            return KernelEvent(POOLS, verb, kind, family, table)
        return None
    if family in IPTABLES_FAMILIES and table in WATCHED_TABLES:
        if kind == "table":
            return KernelEvent(JUMPS, verb, kind, family, table)
        chain = names.get("chain" if kind == "rule" else "name", "")
        if kind in ("rule", "chain") and (table, chain) in WATCHED_CHAINS:
            handle = _HANDLE.search(line, head.end(), head.end() + HEAD_CHARS) if kind == "rule" else None
            return KernelEvent(JUMPS, verb, kind, family, table, chain, int(handle.group(1)) if handle else None)
        return None
    if kind == "table" and family == "inet" and table in FIREWALLD_TABLES:
        return KernelEvent(FIREWALLD, verb, kind, family, table)
    return None


def rule_body(line: str, event: KernelEvent) -> Dict[str, Any]:
    """The rule an add/insert/replace line carries, parsed only when it holds a jump or goto
    (nothing else can be a top-level jump): {} for every other rule, without parsing."""
    if '"jump"' not in line and '"goto"' not in line:
        return {}
    try:
        body = json.loads(line)[event.verb]["rule"]
    except (ValueError, KeyError, TypeError):
        return {}
    return body if isinstance(body, dict) else {}
