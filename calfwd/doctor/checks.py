"""`calfwd doctor`: what on this host breaks Calico under firewalld, and what to do about it.

This module runs every check (firewalld's own are in firewalld_checks.py) and holds the
node's: config, exposure (judge/exposure.py's judgement), forwarding, zones, pools, calfwd's drift.

Pure: a HostSnapshot (everything doctor/reads.py read) in, findings out, so every verdict
is testable without root. Each finding says what was seen, why it matters and the fix (a
command or a config key). A read that failed is an "unknown" finding, never a crash and
never a guess: in the check that needed it, or (for one no check needed this time) under
"reads", so that no failure goes unsaid. Exit status: 0 healthy, 1 warnings or unknowns, 2 errors.

Severity: error = traffic or policy is broken now, or will be at the next firewalld start;
warning = a gap (Calico's rules flushed for up to felix_refresh_interval at every firewalld
reload) or a setting that disagrees with the host; info = worth knowing; ok = checked, fine.
"""

from __future__ import annotations

from typing import Any, List

from calfwd.judge import blockers
from calfwd.desired import HostFacts, desired
from calfwd.judge.cni import FLANNEL_BRIDGE
from calfwd.judge.exposure import exposures
from calfwd.judge.flannel import FLANNEL
from calfwd.judge.pools import whose

from calfwd.doctor.findings import (ERROR, INFO, OK, UNKNOWN, WARNING, Finding, Report, as_networks,
                                    iface_matches, in_any, unknown_finding, unread, zone_of)
from calfwd.doctor.firewalld_checks import (check_direct, check_firewalld, check_flush, check_guard,
                                            check_strict_forward_ports, check_table_owner)
from calfwd.doctor.cni_checks import check_networkmanager, check_nm_cloud_setup
from calfwd.doctor.ruleset_checks import check_flowtable, check_nftables_service, check_reload_policy
from calfwd.doctor.snapshot import HostSnapshot, Read


def diagnose(snap: HostSnapshot) -> Report:
    findings: List[Finding] = []
    for check in (_config, check_firewalld, check_flush, check_guard, check_direct, check_strict_forward_ports,
                  check_table_owner, check_reload_policy, check_flowtable, check_nftables_service, _exposure,
                  _paths, _cni, check_networkmanager, check_nm_cloud_setup, _pools, _drift, _flushed_now):
        findings.extend(check(snap))
    shown = {f.read for f in findings if f.read is not None}
    for read in Read:  # a failed read no check needed this time is still said
        if read in snap.unknown and read not in shown:
            findings.append(unread(snap, "reads", read, "the checks above went on without it"))
    return Report(tuple(findings))


def _config(snap: HostSnapshot) -> List[Finding]:
    path = snap.config_path
    out = []
    if snap.config_problems:
        for problem in snap.config_problems:
            out.append(Finding(ERROR, "config", problem, "calfwd refuses an invalid file as a whole",
                               f"edit {path}, then `calfwd --config {path} check`"))
    for problem in snap.ownership:
        out.append(Finding(ERROR, "config-owner", problem,
                           "the file controls the host firewall; calfwd (as root) refuses it",
                           f"chown root:root {path} && chmod go-w {path}"))
    if not out and snap.config is not None:
        pools = "auto" if snap.config.auto_pools else ", ".join(n.with_prefixlen for n in snap.config.ip_pools)
        out.append(Finding(OK, "config", f"{path} is valid (pools {pools})"))
    return out


def _exposure(snap: HostSnapshot) -> List[Finding]:
    """Config values that open this host: an interface pattern that catches one of its own
    interfaces (error for the one carrying the default route), a pool holding its address."""
    if snap.config is None:
        return []
    unknown = unknown_finding(snap, "exposure", Read.HOST_NETWORK)
    if unknown:
        return [unknown]
    if snap.host_network is None:
        return []
    found = [Finding(ERROR if e.error else WARNING, "exposure", e.saw, e.why, e.fix)
             for e in exposures(snap.config, snap.host_network)]
    return found or [Finding(OK, "exposure", "calico.interfaces matches none of this host's own interfaces, "
                             "and no pool holds one of its addresses")]


def _paths(snap: HostSnapshot) -> List[Finding]:
    """What shuts a Calico path now besides calfwd's objects: blockers.judge, the daemon's own
    judgement, on what doctor read (forwarding, firewalld's panic mode, zones and policies)."""
    if snap.config is None:
        return []
    out = [unknown for unknown in (unknown_finding(snap, "forwarding", Read.SYSCTL),
                                   unknown_finding(snap, "zones", Read.FIREWALLD_ZONES)) if unknown]
    config = snap.config
    running = snap.firewalld.running and config.firewalld.enabled
    want = desired(config, HostFacts(firewalld_running=True)).firewalld if config.firewalld.enabled else None
    found = blockers.judge(
        blockers.PathFacts(snap.firewalld.paths if running else None, snap.sysctls, snap.links),
        zone=zone_of(snap), interfaces=config.interfaces, pools=config.ip_pools,
        policies=want.policies if want is not None else (),
        host_zone=config.firewalld.host_zone or snap.firewalld.default_zone or "public")
    for b in found:
        out.append(Finding(ERROR if b.blocked else WARNING, b.kind, b.what,
                           "a Calico path is shut now; calfwd leaves it to you" if b.blocked else
                           "calfwd's zone does not decide this traffic", b.fix))
    said = {b.kind for b in found}
    v6_used = any(n.version == 6 for n in config.ip_pools)
    for key, value in sorted(snap.sysctls.items()) if "forwarding" not in said else ():
        used = v6_used if "ipv6" in key else True
        if value == "1":
            out.append(Finding(OK, "forwarding", f"{key} = 1"))
        elif value:
            out.append(Finding(INFO, "forwarding", f"{key} = {value}", f"no IPv{6 if 'ipv6' in key else 4} "
                               "pools are configured") if not used else Finding(OK, "forwarding", f"{key} = {value}"))
    if running and snap.firewalld.paths is not None:
        ours = zone_of(snap)
        if "zones" not in said:
            out.append(Finding(OK, "zones", f"no Calico interface or pool is bound to a zone other than '{ours}'"))
        if "panic" not in said and "policies" not in said:
            out.append(Finding(OK, "policies", "panic mode is off, and no policy firewalld asks before "
                               "calfwd's drops or rejects Calico's traffic"))
    return out


def _pools(snap: HostSnapshot) -> List[Finding]:
    """calico.ip_pools and nat_outgoing against what the kernel shows of Calico's pools."""
    if snap.config is None:
        return []
    out: List[Finding] = []
    for read in (Read.IPSET, Read.ROUTES):
        found = unknown_finding(snap, "pools", read)
        if found:
            out.append(found)
    config = snap.config
    if config.auto_pools:
        out += _auto_pools(snap)
        if snap.auto_pools is not None and snap.auto_pools.known:  # snap.config holds them
            out += _pod_routes(snap, list(config.ip_pools))
        return out
    pools = list(config.ip_pools)
    path = snap.config_path
    all_sets = {k: v for k, v in snap.pool_sets.items() if "masq" not in k}
    masq_sets = {k: v for k, v in snap.pool_sets.items() if "masq" in k}
    kernel_pools = as_networks(m for members in all_sets.values() for m in members)
    kernel_masq = as_networks(m for members in masq_sets.values() for m in members)
    for net in sorted(set(kernel_pools), key=str):
        if net not in pools:
            sets = ", ".join(k for k, v in all_sets.items() if net in as_networks(v))
            out.append(Finding(WARNING, "pools", f"Calico pool {net} ({sets}) is not in calico.ip_pools",
                               "calfwd neither masquerades it nor exempts traffic to it: its pods lose "
                               "egress whenever Felix's rules are flushed",
                               f"add \"{net}\" to [calico] ip_pools in {path}, then systemctl reload calfwd"))
    if kernel_pools:
        for net in pools:
            if net not in kernel_pools:
                out.append(Finding(WARNING, "pools", f"calico.ip_pools has {net}, which is none of Calico's "
                                   f"pools on this node ({', '.join(sorted(all_sets))})",
                                   "calfwd would masquerade or exempt addresses Calico does not use",
                                   f"remove it from [calico] ip_pools in {path} (calicoctl get ippools -o "
                                   "wide lists Calico's)"))
    if masq_sets:
        want = set(config.nat_outgoing)
        have = set(kernel_masq)
        for net in sorted(have - want, key=str):
            if net in pools:
                out.append(Finding(WARNING, "pools", f"Calico masquerades pool {net} (natOutgoing), but "
                                   "calico.nat_outgoing does not include it",
                                   "its pods lose egress whenever firewalld flushes Felix's rules",
                                   f"add it to [calico] nat_outgoing in {path} (or nat_outgoing = true)"))
        for net in sorted(want - have, key=str):
            out.append(Finding(WARNING, "pools", f"calico.nat_outgoing includes {net}, but Calico does not "
                               "masquerade it (natOutgoing off for that pool)",
                               "calfwd masquerades traffic Calico sends unNATed",
                               f"remove it from [calico] nat_outgoing in {path}, or enable natOutgoing on "
                               "the pool (calicoctl patch ippool ... natOutgoing: true)"))
    out += _pod_routes(snap, pools)
    if not [f for f in out if f.severity != UNKNOWN]:
        seen = []
        if kernel_pools:
            seen.append("Calico's pool sets")
        if any(r.kind == "blackhole" and r.proto in ("bird", "80") for r in snap.routes):
            seen.append("its block routes")
        if seen:
            out.append(Finding(OK, "pools", f"calico.ip_pools and nat_outgoing match {' and '.join(seen)}"))
        elif not out:
            out.append(Finding(INFO, "pools", "Calico's pools are not visible on this node (no pool ip sets "
                               "or block routes) to compare with calico.ip_pools"))
    return out


def _cni(snap: HostSnapshot) -> List[Finding]:
    """Which CNI calfwd serves, as its plan judged it (judge/cni.py)."""
    if snap.cni is None:
        return []
    return [Finding(INFO, "cni", f"{snap.cni.kind} ({snap.cni.why})")]


def _pod_routes(snap: HostSnapshot, pools: List[Any]) -> List[Finding]:
    """Pods the node routes to (Calico's /32 and /128 routes on its interfaces, its IPAM blocks;
    on a flannel node the bridge's subnet) must lie in a pool calfwd uses, or their egress is not
    masqueraded once firewalld flushes Felix's or flannel's rules. On Canal and flannel nodes
    that is an error: it is the trap of Canal's unused default pool, which Felix's sets hold
    while pods take addresses from flannel's network."""
    config = snap.config
    if config is None:
        return []
    kind = snap.cni.kind if snap.cni is not None else "calico"
    devices = snap.cni.flannel_devices if snap.cni is not None else ()
    # flannel runs here even when [cni] kind names Calico: its devices say so.
    trap = kind in ("canal", "flannel") or bool(devices)
    node = f"on a node running flannel ({', '.join(devices) or kind})"
    path = snap.config_path
    out: List[Finding] = []
    for route in snap.routes:
        local_block = route.kind == "blackhole" and route.proto in ("bird", "80")
        pod = route.kind == "unicast" and any(iface_matches(route.dev, p) for p in config.interfaces) and \
            route.dst.endswith("/32" if route.family == 4 else "/128")
        bridge = kind == "flannel" and route.kind == "unicast" and route.dev == FLANNEL_BRIDGE
        if not (local_block or pod or bridge):
            continue
        nets = as_networks([route.dst])
        if not nets or in_any(nets[0], pools):
            continue
        what = f"block {route.dst} (route proto {route.proto})" if local_block else \
            f"pod route {route.dst} dev {route.dev}"
        if trap:
            state = snap.auto_pools if config.auto_pools else None
            follows = f" (they follow {whose(state.source)})" if state is not None and state.source else ""
            why = "its pods lose egress whenever firewalld flushes flannel's masquerade"
            if state is not None and state.follows == FLANNEL:
                fix = ("compare flannel's Network (its net-conf.json) with the node's podCIDR, or list the pod "
                       f"network in [calico] ip_pools in {path}")
            elif state is not None:
                why += " (on Canal Felix's pools are calico-node's unused default pool)"
                fix = f'set [cni] kind = "auto" in {path}: ip_pools = "auto" then follows flannel\'s network'
            else:
                why += " (on Canal Felix's pools are calico-node's unused default pool)"
                fix = f"put flannel's network (the cluster CIDR) in [calico] ip_pools in {path}"
            out.append(Finding(ERROR, "pools", f"{what} lies in none of the pools calfwd uses "
                               f"({', '.join(str(n) for n in pools) or 'none'}){follows}, {node}", why, fix))
        else:
            out.append(Finding(WARNING, "pools", f"Calico {what} lies in none of calico.ip_pools",
                               "its pods get no natOutgoing from calfwd",
                               f"add its pool to [calico] ip_pools in {path} (calicoctl get ippools -o wide)"))
    return out


def _auto_pools(snap: HostSnapshot) -> List[Finding]:
    """ip_pools = "auto": nothing to compare; say what calfwd follows, or that it follows nothing."""
    state = snap.auto_pools
    if state is not None and state.follows == FLANNEL:
        if state.known:
            masq = set(state.masq)
            shown = ", ".join(f"{n}" + (" (natOutgoing)" if n in masq else "") for n in state.pools)
            found = [Finding(OK, "pools", f'ip_pools = "auto" follows {state.source}: {shown}')]
            if state.problem:
                found = [Finding(WARNING, "pools", f'ip_pools = "auto": {state.problem}',
                                 "calfwd keeps masquerading the pools it had until flannel's network can be read",
                                 "check flannel on this node (its subnet file, its FLANNEL-POSTRTG rules)")]
            return found
        problem = state.problem or "flannel's network is unknown"
        return [Finding(WARNING, "pools", f'ip_pools = "auto", but {problem}',
                        "calfwd masquerades no pod traffic until flannel's network is known",
                        "check that flannel runs on this node, or list its network in [calico] ip_pools")]
    pools = sorted(set(as_networks(m for name, members in snap.pool_sets.items()
                                   if "masq-ipam-pools" not in name for m in members)), key=str)
    masq = set(as_networks(m for name, members in snap.pool_sets.items() if "masq-ipam-pools" in name
                           for m in members))
    if pools:
        shown = ", ".join(f"{n}" + (" (natOutgoing)" if n in masq else "") for n in pools)
        return [Finding(OK, "pools", f'ip_pools = "auto" follows Felix\'s sets: {shown}')]
    if Read.IPSET in snap.unknown:
        return []  # the unknown finding above says why
    return [Finding(WARNING, "pools", 'ip_pools = "auto", but Felix\'s pool sets are absent or empty on this node',
                    "calfwd masquerades no pod traffic until Felix has run (expected on a new node only)",
                    "check that calico-node runs on this node, or list the pools in [calico] ip_pools")]


def _drift(snap: HostSnapshot) -> List[Finding]:
    if snap.config is None:
        return []
    unknown = unknown_finding(snap, "calfwd-state", Read.DRIFT)
    if unknown:
        return [unknown]
    out = []
    if snap.drift:
        listing = "; ".join(snap.drift[:4]) + (" ..." if len(snap.drift) > 4 else "")
        out.append(Finding(WARNING, "calfwd-state", f"calfwd's rules differ from the config: {listing}",
                           "what the config asks for is not in force",
                           "calfwd apply (and check the daemon: systemctl status calfwd)"))
    for conflict in snap.conflicts:
        out.append(Finding(WARNING, "calfwd-conflict", conflict, "calfwd leaves it alone",
                           "resolve it as described, then calfwd apply"))
    if not out:
        out.append(Finding(OK, "calfwd-state", "calfwd's nftables table and firewalld objects match the config"))
    return out


def _flushed_now(snap: HostSnapshot) -> List[Finding]:
    """A flush the running daemon saw and nobody undid yet: a path is down right now."""
    return [Finding(ERROR, "flushed", line, "the daemon saw it happen; the rules are still gone",
                    "wait for Felix's refresh and kube-proxy's canary, or restart calico-node and "
                    "kube-proxy; then `calfwd guard enable` so that the next firewalld step keeps them")
            for line in snap.daemon_flushed or ()]

