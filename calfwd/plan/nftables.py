"""calfwd's nftables table as plain libnftables JSON, and the plan that gets the kernel there.

Pure. The table is always written whole: one batch of add+delete+add table and its contents
is one kernel transaction, so there is never a moment with half a table, and what was there
before (someone's hand edit, an older calfwd's layout) cannot survive next to the new rules.

Why natOutgoing lives here: firewalld <= 1.x flushes every iptables table on start, reload and
stop, Felix's MASQUERADE rule included, and Felix only puts it back on its next resync (up to
180 s). firewalld never touches other nftables tables, so this copy survives every flush.
Masquerading twice is harmless: the first NAT chain that binds a connection wins.

On Canal and flannel nodes flannel masquerades pod egress (FLANNEL-POSTRTG, which the same
flush removes and flannel puts back every 5 s on RKE2, every 60 s on k3s). The copy then
follows flannel's rules (docs/rke2-k3s-facts.md section 1): packets carrying kube-proxy's
masquerade bit are left to kube-proxy, and multicast is never masqueraded. flannel's last rule
(outside the network to another node's pods) is not copied: it needs this node's lease, and
kube-proxy marks the Service traffic it would catch.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

from calfwd.desired import NftDesired
from calfwd.config.schema import IPNetwork

# Integer, not "srcnat": nft 1.0.6 silently makes a hookless chain from a named priority in JSON.
SRCNAT_PRIORITY = 100
CHAIN = "postrouting"
# calfwd's mark on its table: an empty set of this name. nft 1.0.6's JSON drops table comments,
# and a set survives `flush table` (which takes rules only), so a flushed table is still known.
MARK_SET = "calfwd_managed"
# What calfwd 0.1 put in its table before the mark existed: such a table is adopted (and marked
# at the next write); anything else of the configured name is someone else's.
_LEGACY_SETS = frozenset({"pools4", "masq4", "pools6", "masq6"})
KUBE_PROXY_MARK = 0x4000  # kube-proxy's masquerade bit; flannel leaves such packets to kube-proxy
MULTICAST = {"ip": ipaddress.ip_network("224.0.0.0/4"), "ip6": ipaddress.ip_network("ff00::/8")}

Obj = Dict[str, Any]


@dataclass(frozen=True)
class NftPlan:
    """What to send; `batch` is None when the kernel already matches."""

    table: str
    reasons: Tuple[str, ...]
    batch: Optional[Dict[str, Any]]
    conflicts: Tuple[str, ...] = ()  # what calfwd will not touch, and why

    @property
    def empty(self) -> bool:
        return self.batch is None


def _prefix(net: IPNetwork) -> Any:
    return {"prefix": {"addr": str(net.network_address), "len": net.prefixlen}}


def _set(d: NftDesired, name: str, addr_type: str, cidrs: Tuple[IPNetwork, ...]) -> Obj:
    body: Obj = {"family": d.family, "name": name, "table": d.table, "type": addr_type,
                 "flags": ["interval"]}
    if cidrs:
        body["elem"] = [_prefix(c) for c in cidrs]
    return {"set": body}


def _rule(d: NftDesired, comment: str, *expr: Obj) -> Obj:
    return {"rule": {"family": d.family, "table": d.table, "chain": CHAIN, "comment": comment,
                     "expr": list(expr)}}


def _match(op: str, left: Obj, right: Any) -> Obj:
    return {"match": {"op": op, "left": left, "right": right}}


def _masquerade(d: NftDesired, proto: str, masq_set: str, pools_set: str) -> Obj:
    daddr = {"payload": {"protocol": proto, "field": "daddr"}}
    matches = [_match("==", {"payload": {"protocol": proto, "field": "saddr"}}, "@" + masq_set),
               _match("!=", daddr, "@" + pools_set)]
    comment = f"calfwd: natOutgoing ({proto}): pod source, destination outside every pool"
    if d.flannel_nat:
        matches.append(_match("!=", daddr, _prefix(MULTICAST[proto])))
        comment = f"calfwd: flannel's masquerade ({proto}): pod source, destination outside the pod network, not multicast"
    return _rule(d, comment, *matches, {"masquerade": {"flags": ["fully-random"]}})


def render(d: NftDesired) -> List[Obj]:
    """The table's full contents, in the order nft lists them.

    The rule count depends on the number of Calico interfaces, never on the number of pools:
    pools are elements of interval sets.
    """
    objs: List[Obj] = [
        {"table": {"family": d.family, "name": d.table}},
        {"set": {"family": d.family, "name": MARK_SET, "table": d.table, "type": "ipv4_addr"}},
        _set(d, "pools4", "ipv4_addr", d.pools4),
        _set(d, "masq4", "ipv4_addr", d.masq4),
        _set(d, "pools6", "ipv6_addr", d.pools6),
        _set(d, "masq6", "ipv6_addr", d.masq6),
        {"chain": {"family": d.family, "table": d.table, "name": CHAIN, "type": "nat",
                   "hook": "postrouting", "prio": SRCNAT_PRIORITY, "policy": "accept"}},
    ]
    for iface in d.calico_interfaces:
        objs.append(_rule(d, f"calfwd: no natOutgoing out of Calico interface {iface}",
                          _match("==", {"meta": {"key": "oifname"}}, iface), {"return": None}))
    if d.flannel_nat:
        mark = {"&": [{"meta": {"key": "mark"}}, KUBE_PROXY_MARK]}
        objs.append(_rule(d, "calfwd: as flannel, what kube-proxy marked is left to its masquerade",
                          _match("==", mark, KUBE_PROXY_MARK), {"return": None}))
    objs.append(_masquerade(d, "ip", "masq4", "pools4"))
    objs.append(_masquerade(d, "ip6", "masq6", "pools6"))
    return objs


def replace_batch(family: str, table: str, objs: List[Obj]) -> Dict[str, Any]:
    """add + delete + add: works whether or not the table exists, in one transaction."""
    ref = {"table": {"family": family, "name": table}}
    commands: List[Obj] = [{"add": ref}, {"delete": ref}]
    commands.extend({"add": obj} for obj in objs)
    return {"nftables": commands}


def delete_batch(family: str, table: str) -> Dict[str, Any]:
    ref = {"table": {"family": family, "name": table}}
    return {"nftables": [{"add": ref}, {"delete": ref}]}


def owned(actual: List[Obj]) -> bool:
    """Made by calfwd: it carries the mark, or holds nothing but what calfwd 0.1 made."""
    kinds = [next(iter(o.items())) for o in actual if "metainfo" not in o and "table" not in o]
    if any(kind == "set" and body.get("name") == MARK_SET for kind, body in kinds):
        return True
    return bool(kinds) and all(
        (kind == "set" and body.get("name") in _LEGACY_SETS)
        or (kind == "chain" and body.get("name") == CHAIN)
        or (kind == "rule" and str(body.get("comment") or "").startswith("calfwd: "))
        for kind, body in kinds)


def not_ours(family: str, table: str) -> str:
    return (f"table {family} {table} exists and was not made by calfwd (no set {MARK_SET} in it): "
            "calfwd neither replaces nor deletes it; remove it yourself or set [nftables] table "
            "to a name of calfwd's own")


def _orphan_batch(family: str, orphans: Tuple[str, ...]) -> List[Obj]:
    return [{"delete": {"table": {"family": family, "name": t}}} for t in orphans]


def _orphan_reasons(family: str, orphans: Tuple[str, ...]) -> List[str]:
    return [f"remove table {family} {t} (calfwd's, from an earlier configuration)" for t in orphans]


# ---------------------------------------------------------------------------------------
# Canonical form: what we render and what nft lists differ in spelling only (handles, a /32
# listed as a bare address, a one-element flag list listed as a string). Compare through this.


def _canon_elem(elem: Any) -> Any:
    if isinstance(elem, str):
        try:
            net = ipaddress.ip_network(elem)
        except ValueError:
            return elem
        return ("prefix", str(net.network_address), net.prefixlen)
    if isinstance(elem, dict) and "prefix" in elem:
        net = ipaddress.ip_network(f"{elem['prefix']['addr']}/{elem['prefix']['len']}")
        return ("prefix", str(net.network_address), net.prefixlen)
    return _freeze(elem)


def _freeze(value: Any) -> Any:
    if isinstance(value, dict):
        return tuple(sorted((k, _freeze(v)) for k, v in value.items()))
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    return value


def _canon_obj(obj: Obj) -> Any:
    (kind, body), = obj.items()
    body = {k: v for k, v in body.items() if k != "handle"}
    if kind == "set":
        body["flags"] = sorted([body["flags"]] if isinstance(body.get("flags"), str) else body.get("flags", []))
        body["elem"] = sorted((_canon_elem(e) for e in body.get("elem", [])), key=repr)
    if kind == "rule":
        exprs = []
        for expr in body.get("expr", []):
            if "masquerade" in expr and isinstance(expr["masquerade"], dict):
                flags = expr["masquerade"].get("flags", [])
                expr = {"masquerade": dict(expr["masquerade"], flags=sorted([flags] if isinstance(flags, str) else flags))}
            exprs.append(expr)
        body["expr"] = exprs
    return (kind, _freeze(body))


def canonical(objs: List[Obj]) -> Tuple[Any, ...]:
    """Comparable form of a table listing; metainfo and handles are dropped."""
    return tuple(_canon_obj(o) for o in objs if "metainfo" not in o)


def describe(obj: Obj) -> str:
    (kind, body), = obj.items()
    if kind == "rule":
        return f"rule in {body.get('chain')}: {body.get('comment') or '(no comment)'}"
    return f"{kind} {body.get('name')}"


def plan(desired: NftDesired, actual: Optional[List[Obj]], orphans: Tuple[str, ...] = ()) -> NftPlan:
    """Compare the listing of calfwd's table (None: absent) with the desired one.

    orphans: other tables of the family carrying calfwd's mark (the table was renamed in the
    config); they go in the same transaction that writes the configured one.
    """
    wanted = render(desired)
    name = f"{desired.family} {desired.table}"
    if actual is not None and not owned(actual):
        return NftPlan(name, (), None, (not_ours(desired.family, desired.table),))
    extra = _orphan_reasons(desired.family, orphans)
    if actual is None:
        return NftPlan(name, (f"table {name} is missing",) + tuple(extra), _with_orphans(
            replace_batch(desired.family, desired.table, wanted), desired.family, orphans))
    have, want = canonical(actual), canonical(wanted)
    if have == want:
        if not orphans:
            return NftPlan(name, (), None)
        return NftPlan(name, tuple(extra), {"nftables": _orphan_batch(desired.family, orphans)})
    have_set, want_set = set(have), set(want)
    reasons = [f"missing {describe(o)}" for o, c in zip(wanted, want) if c not in have_set]
    actual_objs = [o for o in actual if "metainfo" not in o]
    reasons += [f"unexpected {describe(o)}" for o, c in zip(actual_objs, have) if c not in want_set]
    if not reasons:
        reasons = ["objects are out of order"]
    return NftPlan(name, tuple(reasons + extra), _with_orphans(
        replace_batch(desired.family, desired.table, wanted), desired.family, orphans))


def _with_orphans(batch: Dict[str, Any], family: str, orphans: Tuple[str, ...]) -> Dict[str, Any]:
    return {"nftables": batch["nftables"] + _orphan_batch(family, orphans)}


def cleanup_plan(family: str, table: str, actual: Optional[List[Obj]], orphans: Tuple[str, ...] = ()) -> NftPlan:
    """Remove calfwd's table and any it made under an earlier name; never a table it did not make."""
    name = f"{family} {table}"
    conflicts: Tuple[str, ...] = ()
    reasons = _orphan_reasons(family, orphans)
    commands = _orphan_batch(family, orphans)
    if actual is not None and owned(actual):
        reasons.insert(0, f"remove table {name}")
        commands = delete_batch(family, table)["nftables"] + commands
    elif actual is not None:
        conflicts = (not_ours(family, table),)
    return NftPlan(name, tuple(reasons), {"nftables": commands} if commands else None, conflicts)
