"""ip_pools = "auto" on Canal and flannel: the pod network as flannel has it, never Felix's sets.

Pure. On a Canal node Felix's pool sets hold calico-node's unused default pool (192.168.0.0/16,
natOutgoing), while pods take host-local addresses from the node's podCIDR inside flannel's
cluster network (docs/rke2-k3s-facts.md section 4): following Felix there masquerades nothing
that pods send. flannel states its network in two places calfwd can read without the
Kubernetes API:

- its subnet file (`FLANNEL_NETWORK`, `FLANNEL_IPV6_NETWORK`, `FLANNEL_IPMASQ`; k3s writes it
  on the host, RKE2's Canal keeps it inside flannel's container, section 2);
- its masquerade rules (`FLANNEL-POSTRTG` in iptables-nft's nat tables, or the `postrtg` chain
  of its own `flannel-ipv4` / `flannel-ipv6` tables in nftables mode): "from the network to
  anything but multicast, masquerade" names the network, and their presence says flannel
  masquerades (it writes them only with --ip-masq).

The file wins when it is there; the rules are read otherwise. Both fail the way Felix's sets
do (judge/pools.py): a garbled or half-written file, or one naming a network no pod network can
be, keeps the pools known before and says why; rules flushed by firewalld keep them too.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from calfwd.config.schema import IPNetwork, pool_problem
from calfwd.judge.pools import PoolState, keeping

NETWORK_KEYS = {4: "FLANNEL_NETWORK", 6: "FLANNEL_IPV6_NETWORK"}
LEASE_KEYS = {4: "FLANNEL_SUBNET", 6: "FLANNEL_IPV6_SUBNET"}
IPMASQ = "FLANNEL_IPMASQ"  # the last line flannel and k3s write: without it, the file is half-written
MAX_FILE_BYTES = 64 * 1024  # flannel's file is ~150 bytes; more is not flannel's
MULTICAST = {4: ipaddress.ip_network("224.0.0.0/4"), 6: ipaddress.ip_network("ff00::/8")}
NO_IPV6 = ipaddress.ip_network("::/0")  # k3s's placeholder for "no IPv6 network"

# Where flannel's masquerade rules live: iptables mode (iptables-nft's nat tables) and
# nftables mode (flannel's own tables); (family, table, chain), as drivers/nftables reads them.
IPTABLES_CHAINS = (("ip", "nat", "FLANNEL-POSTRTG"), ("ip6", "nat", "FLANNEL-POSTRTG"))
NFTABLES_CHAINS = (("ip", "flannel-ipv4", "postrtg"), ("ip6", "flannel-ipv6", "postrtg"))
RULE_CHAINS = IPTABLES_CHAINS + NFTABLES_CHAINS
FAMILY_VERSION = {"ip": 4, "ip6": 6}

FLANNEL = "flannel"  # PoolState.follows
UNREADABLE = "cannot read flannel's network"


@dataclass(frozen=True)
class FlannelNetwork:
    """What one of flannel's sources says: the cluster networks, this node's leases, the
    networks flannel masquerades; or, in problem, why the source cannot be used."""

    source: str
    networks: Tuple[IPNetwork, ...] = ()
    leases: Tuple[IPNetwork, ...] = ()
    masq: Tuple[IPNetwork, ...] = ()
    problem: str = ""


def subnet_file_source(path: str) -> str:
    return f"flannel's subnet file {path}"


def parse_subnet_file(text: str, path: str) -> FlannelNetwork:
    """flannel's (or k3s's) subnet.env: lines KEY=value, values unquoted as flannel writes them
    (quoted ones are accepted, as flannel's own reader does), comma-separated lists allowed."""
    source = subnet_file_source(path)

    def bad(why: str) -> FlannelNetwork:
        return FlannelNetwork(source, problem=f"{path}: {why}")

    if text and not text.endswith("\n"):
        return bad("half-written: the last line has no end (flannel writes the whole file at once)")
    values: Dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not key.replace("_", "").isalnum():
            return bad(f"line {number}: {raw!r} is not KEY=value")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key] = value
    if IPMASQ not in values:
        return bad(f"half-written: no {IPMASQ} line (flannel writes it last)")
    ipmasq = values[IPMASQ].lower()
    if ipmasq not in ("true", "false"):
        return bad(f"{IPMASQ}: {values[IPMASQ]!r} is neither true nor false")
    networks: List[IPNetwork] = []
    leases: List[IPNetwork] = []
    for version in (4, 6):
        key = NETWORK_KEYS[version]
        if not values.get(key):
            continue
        for item in values[key].split(","):
            net = _network(item, version)
            if net is None:
                return bad(f"{key}: {item.strip()!r} is not an IPv{version} network")
            if net == NO_IPV6:
                continue
            why = pool_problem(net)
            if why:
                return bad(f"{key}: {net.with_prefixlen}: no pod network can be that ({why})")
            networks.append(net)
        for item in (values.get(LEASE_KEYS[version]) or "").split(","):
            if not item.strip():
                continue
            lease = _network(item, version)  # "10.42.1.1/24": the lease's first address, as flannel writes it
            if lease is None:
                return bad(f"{LEASE_KEYS[version]}: {item.strip()!r} is not an IPv{version} network")
            leases.append(lease)
    if not networks:
        return bad(f"neither {NETWORK_KEYS[4]} nor {NETWORK_KEYS[6]} names a network")
    outside = [lease for lease in leases if not any(_inside(lease, n) for n in networks)]
    if outside:
        return bad(f"the lease {outside[0].with_prefixlen} is outside flannel's network "
                   f"{', '.join(n.with_prefixlen for n in networks)}")
    masq = tuple(networks) if ipmasq == "true" else ()
    return FlannelNetwork(source, tuple(networks), tuple(leases), masq)


def from_rules(chains: Mapping[Tuple[str, str, str], Sequence[Mapping[str, Any]]]) -> FlannelNetwork:
    """flannel's masquerade chains (nft JSON rules) to its networks: the source of the rule that
    masquerades everything but multicast is the cluster network; the source of the RETURN from
    it into the network is this node's lease. Found rules say flannel masquerades."""
    networks: List[IPNetwork] = []
    leases: List[IPNetwork] = []
    where: List[str] = []
    for ref in RULE_CHAINS:
        version = FAMILY_VERSION[ref[0]]
        rules = chains.get(ref) or ()
        found = [net for net in (_masq_network(r, version) for r in rules) if net is not None]
        if not found:
            continue
        networks.extend(n for n in found if n not in networks)
        leases.extend(n for n in (_lease(r, version, found) for r in rules) if n is not None and n not in leases)
        label = "iptables rules (FLANNEL-POSTRTG)" if ref in IPTABLES_CHAINS else "nftables tables"
        if label not in where:
            where.append(label)
    source = "flannel's " + " and ".join(where) if where else "flannel's rules"
    refused = [n for n in networks if pool_problem(n)]
    if refused:
        return FlannelNetwork(source, problem=f"{source} masquerade {refused[0].with_prefixlen}, which no pod "
                              "network can be")
    return FlannelNetwork(source, tuple(networks), tuple(leases), tuple(networks))


def resolve(subnet_file: Optional[FlannelNetwork], rules: Optional[FlannelNetwork],
            last: Optional[PoolState], looked: str = "") -> PoolState:
    """The pools and natOutgoing from flannel. subnet_file: None when there is no file; rules:
    None when they could not be read. A file that is there but unusable keeps the last pools
    (as a garbled Felix set does); a file that is absent falls back on the rules; rules that are
    absent (flushed, flannel not started) keep the last pools. IPv6 is masqueraded only where
    flannel is seen to (its IPv6 rules now, or calfwd's masquerade kept from before): k3s
    writes FLANNEL_IPMASQ=true but masquerades IPv6 only with --flannel-ipv6-masq."""
    before = last if last is not None and last.known else None
    if subnet_file is not None and subnet_file.problem:
        return unreadable(subnet_file.problem, before)
    if subnet_file is not None:
        seen6 = tuple(n for n in (rules.masq if rules else ()) + (before.masq if before else ()) if n.version == 6)
        masq = tuple(n for n in subnet_file.masq if n.version == 4 or any(_overlap(n, s) for s in seen6))
        return PoolState(_sorted(subnet_file.networks), _sorted(masq), subnet_file.source, follows=FLANNEL)
    if rules is not None and rules.problem:
        return unreadable(rules.problem, before)
    if rules is not None and rules.networks:
        return PoolState(_sorted(rules.networks), _sorted(rules.masq), rules.source, follows=FLANNEL)
    absent = "flannel's network not found" + (f" ({looked})" if looked else "")
    if before is not None:
        return PoolState(before.pools, before.masq, before.source, problem=f"{absent} ({keeping(before)})",
                         follows=FLANNEL)
    return PoolState(problem=absent, follows=FLANNEL)



def unreadable(error: str, last: Optional[PoolState]) -> PoolState:
    problem = f"{UNREADABLE}: {error}"
    if last is not None and last.known:
        return PoolState(last.pools, last.masq, last.source, problem=f"{problem} ({keeping(last)})", follows=FLANNEL)
    return PoolState(problem=problem, follows=FLANNEL)


def _overlap(a: IPNetwork, b: IPNetwork) -> bool:
    return _inside(a, b) or _inside(b, a)


def _network(text: str, version: int) -> Optional[IPNetwork]:
    try:
        net = ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        return None
    return net if net.version == version else None


def _inside(a: IPNetwork, b: IPNetwork) -> bool:
    return a.version == b.version and a.subnet_of(b)  # type: ignore[arg-type]


def _sorted(nets: Sequence[IPNetwork]) -> Tuple[IPNetwork, ...]:
    return tuple(sorted(set(nets), key=lambda n: (n.version, int(n.network_address), n.prefixlen)))


def _matches(rule: Mapping[str, Any], version: int) -> Dict[Tuple[str, str], IPNetwork]:
    """The rule's address matches: (field, op) -> network, for saddr/daddr against a prefix or an
    address; a match on anything else (a set, a range) is not one flannel writes."""
    proto = "ip" if version == 4 else "ip6"
    out: Dict[Tuple[str, str], IPNetwork] = {}
    for expr in rule.get("expr", ()):
        match = expr.get("match") if isinstance(expr, dict) else None
        if not isinstance(match, dict):
            continue
        left, right = match.get("left"), match.get("right")
        payload = left.get("payload") if isinstance(left, dict) else None
        if not isinstance(payload, dict) or payload.get("protocol") != proto:
            continue
        if isinstance(right, dict) and "prefix" in right:
            text = f"{right['prefix'].get('addr')}/{right['prefix'].get('len')}"
        elif isinstance(right, str):
            text = right
        else:
            continue
        net = _network(text, version)
        if net is not None:
            out[(str(payload.get("field")), str(match.get("op")))] = net
    return out


def _verdict(rule: Mapping[str, Any]) -> str:
    for expr in rule.get("expr", ()):
        if not isinstance(expr, dict):
            continue
        if "masquerade" in expr:
            return "masquerade"
        if "return" in expr:
            return "return"
        xt = expr.get("xt")
        if isinstance(xt, dict) and xt.get("type") == "target" and xt.get("name") == "MASQUERADE":
            return "masquerade"  # iptables-nft keeps MASQUERADE --random-fully as an xtables target
    return ""


def _masq_network(rule: Mapping[str, Any], version: int) -> Optional[IPNetwork]:
    """flannel's "masquerade from the network to anything but multicast" rule: its source."""
    if _verdict(rule) != "masquerade":
        return None
    m = _matches(rule, version)
    src, dst = m.get(("saddr", "==")), m.get(("daddr", "!="))
    return src if src is not None and dst == MULTICAST[version] else None


def _lease(rule: Mapping[str, Any], version: int, networks: Sequence[IPNetwork]) -> Optional[IPNetwork]:
    """flannel's "from this node's lease into the network, no masquerade" rule: its source."""
    if _verdict(rule) != "return":
        return None
    m = _matches(rule, version)
    src, dst = m.get(("saddr", "==")), m.get(("daddr", "=="))
    if src is None or dst is None or dst not in networks or src == dst or not _inside(src, dst):
        return None
    return src
