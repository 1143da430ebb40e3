"""What firewalld really rendered for calfwd's objects, read back from its nftables table.

Pure. calfwd never writes firewalld's table; it reads the two chains that dispatch forwarded
traffic to policies, because firewalld 1.0.0 to 1.2.0 wrote a zone's wildcard interface
literally there (`oifname { "cali+", ... }`, which matches no interface; fixed upstream in
1.1.3, 1.2.1 and 1.3.0): calfwd-forward then never applies, and routed traffic into pods
(peers, NodePort backends) is rejected whatever firewalld says its zones and policies are.

0.9.x renders the same literal wildcard, but there a zone's target covers forwarded traffic:
calfwd's ACCEPT zone lets routed traffic into pods through, unless the zone it arrives from
drops it first (target DROP or REJECT: the STIG's default zone `drop`, `block`). Measured in
the cluster lab on 0.9.3: without encapsulation, pods on two nodes cannot reach each other
with the default zone `drop`; with VXLAN, IP-in-IP or WireGuard the traffic between nodes
arrives through calfwd's own zone and works.
"""

from __future__ import annotations

from typing import Any, Dict, Iterable, List, Sequence, Tuple

DISPATCH_CHAINS: Tuple[Tuple[str, str, str], ...] = (
    ("inet", "firewalld", "filter_FORWARD_POLICIES_pre"),
    ("inet", "firewalld", "filter_FORWARD_POLICIES_post"),
)


def _names(right: Any) -> Iterable[str]:
    if isinstance(right, str):
        yield right
    elif isinstance(right, dict) and isinstance(right.get("set"), list):
        for element in right["set"]:
            if isinstance(element, str):
                yield element


def literal_wildcards(rules: Sequence[Dict[str, Any]]) -> List[str]:
    """Interface names ending in '+' that a rule matches literally: nft spells a wildcard
    'cali*', so 'cali+' in a rendered match is firewalld's rendering bug."""
    found: List[str] = []
    for rule in rules:
        for expr in rule.get("expr", ()):
            match = expr.get("match") if isinstance(expr, dict) else None
            if not match:
                continue
            key = (match.get("left") or {}).get("meta", {}).get("key") if isinstance(match.get("left"), dict) else None
            if key not in ("iifname", "oifname"):
                continue
            found += [n for n in _names(match.get("right")) if n.endswith("+") and n not in found]
    return found


DROPPING_TARGETS = frozenset({"DROP", "REJECT", "%%REJECT%%"})


def zone_targets_matter(version: str) -> bool:
    """0.9.x: the literal wildcard blocks only where an ingress zone's target drops first."""
    return version.startswith("0.")


def rendering_problems(chains: Dict[Tuple[str, str, str], List[Dict[str, Any]]], version: str,
                       forward_policy: str, dropping_zones: Sequence[str] = ()) -> List[str]:
    """One blocking line when firewalld's forward-policy dispatch carries a wildcard literally
    and that blocks routed traffic into pods: always from 1.0.0 to 1.2.0; on 0.9.x only from
    the `dropping_zones` (active or default zones whose target is DROP or REJECT)."""
    if zone_targets_matter(version) and not dropping_zones:
        return []
    names: List[str] = []
    for ref in DISPATCH_CHAINS:
        for name in literal_wildcards(chains.get(ref, ())):
            if name not in names:
                names.append(name)
    if not names:
        return []
    who = f"firewalld {version}" if version else "firewalld"
    if zone_targets_matter(version):
        zones = ", ".join(f"'{z}'" for z in dropping_zones)
        return [f"{who} renders the wildcard interface(s) {', '.join(names)} literally in its forward-policy "
                f"dispatch ({DISPATCH_CHAINS[0][2]}), so policy '{forward_policy}' never applies, and zone(s) "
                f"{zones} drop (target DROP or REJECT) routed traffic into pods arriving through them: pods on "
                "other nodes without encapsulation, routes to pods from outside the cluster. Traffic through "
                "Calico's VXLAN, IP-in-IP or WireGuard devices is not affected. Fixed in firewalld 1.3.0: "
                "upgrade firewalld, or use an encapsulation"]
    return [f"{who} renders the wildcard interface(s) {', '.join(names)} literally in its forward-policy "
            f"dispatch ({DISPATCH_CHAINS[0][2]}): that matches no interface, so policy '{forward_policy}' "
            "never applies and routed traffic into pods (peers, NodePort backends) is rejected. Fixed in "
            "firewalld 1.1.3, 1.2.1 and 1.3.0: upgrade firewalld"]


# Where firewalld sends forwarded traffic by the interface it arrives on: 0.9 and 1.x a
# dispatch chain of zones (each binding inserted on top, so the latest wins), 2.x one chain of
# zone and policy pairs (sorted by zone priority, sources first, then zone name). Which zone
# judges a pod's veth is the first rule that matches it: read, not inferred per release.
FORWARD_DISPATCH: Tuple[Tuple[str, str, str], ...] = (
    ("inet", "firewalld", "filter_FORWARD_IN_ZONES"),  # 0.9.x: goto filter_FWDI_<zone>
    ("inet", "firewalld", "filter_FORWARD_ZONES"),  # 1.x: goto filter_FWD_<zone>
    ("inet", "firewalld", "filter_FORWARD_POLICIES"),  # 2.x: jump filter_FWD_<zone>
)
_ZONE_CHAINS = ("filter_FWDI_", "filter_FWD_")


def forward_dispatch(chains: Dict[Tuple[str, str, str], List[Dict[str, Any]]],
                     zones: Iterable[str]) -> Tuple[Tuple[str, str], ...]:
    """(iifname pattern in nft's spelling, zone) in the order firewalld asks them; only rules
    that hand a packet to a zone's own chain (not a policy's, not the catch-all's)."""
    zones = set(zones)
    out: List[Tuple[str, str]] = []
    for ref in FORWARD_DISPATCH:
        for rule in chains.get(ref, ()):
            names: List[str] = []
            target = ""
            for expr in rule.get("expr", ()):
                if not isinstance(expr, dict):
                    continue
                match = expr.get("match")
                if isinstance(match, dict) and isinstance(match.get("left"), dict) and \
                        match["left"].get("meta", {}).get("key") == "iifname":
                    names += list(_names(match.get("right")))
                for verb in ("goto", "jump"):
                    if isinstance(expr.get(verb), dict):
                        target = str(expr[verb].get("target", ""))
            zone = next((target[len(p):] for p in _ZONE_CHAINS if target.startswith(p)), "")
            if zone in zones:
                out += [(name, zone) for name in names if (name, zone) not in out]
    return tuple(out)


def nft_matches(pattern: str, name: str) -> bool:
    """nft's iifname match: 'cali*' is a prefix, anything else the whole name."""
    return name.startswith(pattern[:-1]) if pattern.endswith("*") else name == pattern
