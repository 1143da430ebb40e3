"""What shuts a Calico path now that calfwd can see but must not fix: one judgement.

calfwd's objects can be exactly as configured while pods still get nothing through: the
administrator (or a baseline) turned on panic mode, bound a pod's veth or a pool to a zone
that drops, switched off forwarding, or added a policy that outranks calfwd's and rejects.
None of these is calfwd's to undo; all of them must turn the verdict to blocked, with what
blocks and the fix. The daemon (STATUS=, the status files, metrics, NPD), `calfwd status`,
`apply` and doctor all read this one function's answer (reconcile.py's "paths" layer).

Pure: PathFacts (read by the drivers) and what calfwd wants in, Blockers out.
"""

from __future__ import annotations

import ipaddress
import shlex
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Sequence, Tuple

from calfwd.judge.rendered import nft_matches

DROPPING = frozenset({"DROP", "REJECT", "%%REJECT%%"})
FORWARDING = (("net.ipv4.ip_forward", 4), ("net.ipv6.conf.all.forwarding", 6))
BEFORE_ZONES = 0  # firewalld runs policies with a negative priority before any zone's rules


@dataclass(frozen=True)
class PolicyFacts:
    """A runtime policy as firewalld runs it (getPolicySettings)."""

    name: str
    priority: int
    target: str
    ingress: Tuple[str, ...]
    egress: Tuple[str, ...]
    disabled: bool = False  # firewalld >= 2.4: a policy can be present and switched off
    rich_rules: Tuple[str, ...] = ()  # run before the target, whatever the target is


@dataclass(frozen=True)
class FirewalldPaths:
    """firewalld's runtime as far as it decides Calico's paths (drivers/firewalld.py)."""

    panic: bool = False
    # Every active zone: (interfaces, sources) bound to it now, and its target.
    active: Mapping[str, Tuple[Tuple[str, ...], Tuple[str, ...]]] = field(default_factory=dict)
    targets: Mapping[str, str] = field(default_factory=dict)
    policies: Tuple[PolicyFacts, ...] = ()
    # The zone each interface pattern hands forwarded traffic to, in the order firewalld asks
    # (judge/rendered.forward_dispatch); None: not read (the iptables backend).
    dispatch: Optional[Tuple[Tuple[str, str], ...]] = None


@dataclass(frozen=True)
class PathFacts:
    firewalld: Optional[FirewalldPaths]  # None: firewalld not running or not calfwd's to manage
    forwarding: Mapping[str, str]  # sysctl key -> value; "" = IPv6 disabled; absent = unread
    links: Tuple[str, ...]  # the host's interface names now


@dataclass(frozen=True)
class Blocker:
    kind: str  # "forwarding", "panic", "zones", "policies": doctor's name for the check
    blocked: bool  # True: a path is shut now; False: a warning (judged by someone else's rules)
    what: str
    fix: str

    def line(self) -> str:
        return f"{self.what}. Fix: {self.fix}"


def matches(bound: str, name: str) -> bool:
    """firewalld's and Calico's wildcards: 'cali+' catches 'cali0123'; either side may be one."""
    if bound == name:
        return True
    if bound.endswith("+") and name.rstrip("+").startswith(bound[:-1]):
        return True
    return name.endswith("+") and bound.rstrip("+").startswith(name[:-1])


def contested(fw: FirewalldPaths, zone: str, interfaces: Sequence[str], links: Sequence[str]) -> bool:
    """Another zone binds an interface of Calico's that exists: only then does it matter which
    binding firewalld's dispatch asks first (worth reading its rendered chains)."""
    calico = [l for l in links if any(matches(p, l) for p in interfaces)]
    return any(matches(bound, l) for other, (ifaces, _s) in fw.active.items() if other != zone
               for bound in ifaces for l in calico)


def judge(facts: PathFacts, *, zone: str, interfaces: Sequence[str], pools: Sequence[Any],
          policies: Sequence[Any] = (), host_zone: str = "") -> Tuple[Blocker, ...]:
    """zone, interfaces: calfwd's zone and Calico's interface patterns; pools: the pools in
    use (ipaddress networks); policies: calfwd's PolicySpecs (name, priority), whose rank a
    foreign policy must beat; host_zone: where Calico's host ports come from."""
    out = list(_forwarding(facts.forwarding, pools))
    fw = facts.firewalld
    if fw is not None:
        if fw.panic:
            out.append(Blocker("panic", True, "firewalld's panic mode is on: it drops every packet, pods' included",
                               "firewall-cmd --panic-off"))
        out += _bindings(fw, zone, interfaces, pools, facts.links)
        out += _policies(fw, zone, policies, host_zone, pools)
    return tuple(sorted(out, key=lambda b: not b.blocked))


def _forwarding(values: Mapping[str, str], pools: Sequence[Any]) -> Tuple[Blocker, ...]:
    out = []
    for key, version in FORWARDING:
        value = values.get(key)
        if value is None or value == "1" or not any(n.version == version for n in pools):
            continue
        if value == "":
            out.append(Blocker("forwarding", True, f"IPv{version} is disabled on this host, but pods use "
                               f"IPv{version} pools", "enable IPv6 (remove ipv6.disable=1 from the kernel "
                               "command line), or remove the IPv6 pools"))
        else:
            out.append(Blocker("forwarding", True, f"{key} = {value}: the kernel forwards no IPv{version} "
                               "packet, so pods reach nothing outside this node and routed peers reach no pod",
                               f"sysctl -w {key}=1, and persist it (/etc/sysctl.d/90-calico.conf: {key} = 1)"))
    return tuple(out)


def _bindings(fw: FirewalldPaths, zone: str, interfaces: Sequence[str], pools: Sequence[Any],
              links: Sequence[str]) -> Tuple[Blocker, ...]:
    """Calico's interfaces (the ones present) or pools bound to another zone: their traffic is
    judged there, not in calfwd's zone (a name and a source binding win over a wildcard)."""
    calico = [l for l in links if any(matches(p, l) for p in interfaces)]
    out = []
    for other, (bound_ifaces, bound_sources) in sorted(fw.active.items()):
        if other == zone:
            continue
        target = fw.targets.get(other, "default")
        drops = target in DROPPING
        for bound in bound_ifaces:
            caught = [l for l in calico if matches(bound, l) and _judged_by(fw, l) in (other, None)]
            if not caught:
                continue
            shown = ", ".join(caught[:3]) + (f" and {len(caught) - 3} more" if len(caught) > 3 else "")
            fix = (f"firewall-cmd --zone={other} --remove-interface={bound} (and with --permanent, if it "
                   "is there too)")
            if drops:
                out.append(Blocker("zones", True, f"interface {bound} is bound to zone '{other}' (target {target}): "
                                   f"traffic of {shown} is judged there and dropped, not accepted by zone "
                                   f"'{zone}'", fix))
            else:
                out.append(Blocker("zones", False, f"interface {bound} is bound to zone '{other}' (target {target}): "
                                   f"traffic of {shown} is judged by that zone's rules, not by zone '{zone}'",
                                   fix))
        for source in bound_sources:
            net = _network(source)
            if net is None or not any(net.version == p.version and net.overlaps(p) for p in pools):
                continue
            fix = (f"firewall-cmd --zone={other} --remove-source={source} (and with --permanent, if it "
                   "is there too)")
            if drops:
                out.append(Blocker("zones", True, f"source {source} (a pod network) is bound to zone '{other}' "
                                   f"(target {target}): a source binding wins over interfaces, so its pods' "
                                   "traffic is dropped there", fix))
            else:
                out.append(Blocker("zones", False, f"source {source} (a pod network) is bound to zone '{other}' "
                                   f"(target {target}): its pods' traffic is judged by that zone's rules, "
                                   f"not by zone '{zone}'", fix))
    return tuple(out)


def _judged_by(fw: FirewalldPaths, link: str) -> Optional[str]:
    """The zone firewalld's rendered dispatch hands `link`'s forwarded traffic to (the first
    rule that matches it); None when the dispatch was not read: any binding may win then."""
    if fw.dispatch is None:
        return None
    return next((z for pattern, z in fw.dispatch if nft_matches(pattern, link)), "")


def _policies(fw: FirewalldPaths, zone: str, ours: Sequence[Any], host_zone: str,
              pools: Sequence[Any] = ()) -> Tuple[Blocker, ...]:
    """A foreign policy that firewalld asks before calfwd's (a lower priority; between equal
    ones, the name) and that drops or rejects what calfwd's allows: by its target, or by a rich
    rule (a CONTINUE or ACCEPT policy's rich rules run first). A rich rule that matches only
    some of Calico's traffic (a port, a service, an address that holds no whole pool) may shut
    a path or not: a warning."""
    names = {p.name for p in ours}
    forward = next((p for p in ours if "HOST" not in p.egress_zones), None)
    host = next((p for p in ours if "HOST" in p.egress_zones), None)
    out = []
    for p in sorted(fw.policies, key=lambda p: (p.priority, p.name)):
        if p.name in names or p.disabled:
            continue
        shut = _shuts(p, zone, forward, host, host_zone)
        if not shut:
            continue
        where = f"policy '{p.name}' ({' '.join(p.ingress) or '-'} -> {' '.join(p.egress) or '-'}, priority {p.priority}"
        fix = (f"narrow its zones or give it a priority above calfwd's (firewall-cmd --permanent "
               f"--policy={p.name} --set-priority=...), then firewall-cmd --reload")
        if p.target in DROPPING:
            out.append(Blocker("policies", True, f"{where}, target {p.target}) is asked before calfwd's and "
                               f"{p.target.strip('%').lower()}s " + "; ".join(shut), fix))
            continue
        for rule in p.rich_rules:
            action, narrowed = rich_action(rule, pools)
            if action is None:
                continue
            what = f"{where}) is asked before calfwd's and its rich rule '{rule}' {action}s "
            if narrowed:
                out.append(Blocker("policies", False, what + "what it matches of " + "; ".join(shut),
                                   f"check that it spares Calico's traffic, or {fix[0].lower()}{fix[1:]}"))
            else:
                out.append(Blocker("policies", True, what + "; ".join(shut),
                                   f"remove the rule (firewall-cmd --permanent --policy={p.name} "
                                   f"--remove-rich-rule='{rule}'), or {fix}"))
    return tuple(out)


def _shuts(p: PolicyFacts, zone: str, forward: Any, host: Any, host_zone: str) -> Tuple[str, ...]:
    shut = []
    # Pods out: calfwd's zone target accepts, so only policies before every zone outrank it.
    if p.priority < BEFORE_ZONES and _has(p.ingress, zone) and _any_zone(p.egress, zone):
        shut.append("pod traffic forwarded out of this node (egress, natOutgoing)")
    if forward is not None and _outranks(p, forward) and _has(p.egress, zone) and _any_zone(p.ingress, zone):
        shut.append("traffic forwarded into pods (routed peers, NodePort backends)")
    if host is not None and _outranks(p, host) and "HOST" in p.egress and _has(p.ingress, host_zone):
        shut.append("Calico's host ports (BGP, VXLAN, IP-in-IP, ...)")
    return tuple(shut)


# A rich rule's elements that narrow what it matches to some ports, protocols or packets
# (firewalld.richlanguage(5)); its addresses are judged against the pools instead.
NARROWING = frozenset({"service", "port", "protocol", "icmp-block", "icmp-type", "forward-port", "source-port",
                       "masquerade", "tcp-mss-clamp"})


def rich_action(rule: str, pools: Sequence[Any] = ()) -> Tuple[Optional[str], bool]:
    """("reject" or "drop", narrowed) for a rich rule that refuses traffic; (None, _) otherwise.
    Not narrowed: no narrowing element, and each source or destination is an address that
    holds a whole pool (or everything: firewalld refuses a rejecting rule with neither).
    Read as words: a quoted value never holds the bare keywords this looks for."""
    try:
        words = shlex.split(rule)
    except ValueError:
        return None, False  # firewalld never hands back a rule it could not parse
    action = next((w for w in words if w in ("reject", "drop")), None)
    if action is None:
        return None, False
    if any(w in NARROWING for w in words):
        return action, True
    for i, word in enumerate(words):
        if word in ("source", "destination"):
            cond = words[i + 1:i + 3]
            if not cond or cond[0] == "NOT" or not cond[0].startswith("address="):
                return action, True  # NOT, an ipset, a MAC: some traffic only
            net = _network(cond[0].split("=", 1)[1])
            if net is None or not (net.prefixlen == 0 or any(
                    p.version == net.version and p.subnet_of(net) for p in pools)):
                return action, True
    return action, False


def _has(zones: Sequence[str], zone: str) -> bool:
    return "ANY" in zones or zone in zones


def _any_zone(zones: Sequence[str], ours: str) -> bool:
    """ANY, or a zone other than calfwd's and HOST: traffic between pods and that zone."""
    return any(z not in ("HOST", ours) for z in zones)


def _outranks(p: PolicyFacts, spec: Any) -> bool:
    return (p.priority, p.name) < (spec.priority, spec.name)


def _network(text: str) -> Any:
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        return None  # an ipset:, a MAC: not a pod network
