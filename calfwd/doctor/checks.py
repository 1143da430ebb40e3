"""`calfwd doctor`: what on this host breaks Calico under firewalld, and what to do about it.

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

import ipaddress
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

from calfwd import guard
from calfwd.doctor.snapshot import HostSnapshot, Read

OK, INFO, WARNING, ERROR, UNKNOWN = "ok", "info", "warning", "error", "unknown"
SEVERITIES = (OK, INFO, WARNING, ERROR, UNKNOWN)
EXIT_HEALTHY, EXIT_WARNINGS, EXIT_ERRORS = 0, 1, 2

@dataclass(frozen=True)
class Finding:
    severity: str
    check: str  # short stable name, e.g. "flush", "forwarding"
    saw: str
    why: str = ""
    fix: str = ""
    read: Optional[Read] = field(default=None, compare=False)  # UNKNOWN: the read that failed

    def line(self) -> str:
        text = f"{self.severity.upper():7} {self.check}: {self.saw}"
        if self.why:
            text += f". Why: {self.why}"
        if self.fix:
            text += f". Fix: {self.fix}"
        return text

    def as_dict(self) -> Dict[str, str]:
        return {"severity": self.severity, "check": self.check, "saw": self.saw, "why": self.why,
                "fix": self.fix}


@dataclass(frozen=True)
class Report:
    findings: Tuple[Finding, ...]

    @property
    def exit_code(self) -> int:
        severities = {f.severity for f in self.findings}
        if ERROR in severities:
            return EXIT_ERRORS
        if severities & {WARNING, UNKNOWN}:
            return EXIT_WARNINGS
        return EXIT_HEALTHY

    def lines(self) -> List[str]:
        return [f.line() for f in self.findings]

    def as_dict(self) -> Dict[str, Any]:
        counts = {s: sum(1 for f in self.findings if f.severity == s) for s in SEVERITIES}
        return {"exit_code": self.exit_code, "healthy": self.exit_code == EXIT_HEALTHY,
                "counts": counts, "findings": [f.as_dict() for f in self.findings]}


def diagnose(snap: HostSnapshot) -> Report:
    findings: List[Finding] = []
    for check in (_config, _firewalld, _flush, _guard, _direct, _strict_forward_ports,
                  _table_owner, _forwarding, _zones, _pools, _drift):
        findings.extend(check(snap))
    shown = {f.read for f in findings if f.read is not None}
    for read in Read:  # a failed read no check needed this time is still said
        if read in snap.unknown and read not in shown:
            findings.append(_unread(snap, "reads", read, "the checks above went on without it"))
    return Report(tuple(findings))


# ---------------------------------------------------------------------------------------
# Helpers


def _unknown(snap: HostSnapshot, check: str, *reads: Read) -> Optional[Finding]:
    """An unknown finding when any of `reads` failed."""
    for read in reads:
        if read in snap.unknown:
            return _unread(snap, check, read, "this check needs it")
    return None


def _unread(snap: HostSnapshot, check: str, read: Read, why: str) -> Finding:
    return Finding(UNKNOWN, check, f"could not read {read.description}: {snap.unknown[read]}", why,
                   "run `calfwd doctor` as root, on the node itself (and with firewalld running for "
                   "its runtime state)", read=read)


def _felix_refresh(snap: HostSnapshot) -> int:
    return int(snap.config.felix_refresh_interval) if snap.config else 180


def _zone(snap: HostSnapshot) -> str:
    return snap.config.firewalld.zone if snap.config else "calfwd"


def facts(snap: HostSnapshot) -> guard.FirewalldFacts:
    """What decides whether firewalld flushes: the running firewalld, or its files if stopped."""
    fw = snap.firewalld
    backend = fw.backend if fw.running else ""
    if not backend and Read.FIREWALLD_CONF not in snap.unknown:
        backend = snap.firewalld_conf.get("FirewallBackend", "nftables")  # the default since 0.6
    # Not running: no runtime direct rules. Not readable (no bus, not root): unknown.
    runtime = fw.runtime_direct if fw.running else None if Read.FIREWALLD in snap.unknown else ()
    direct = None
    if snap.permanent_direct is not None and runtime is not None:
        direct = tuple(snap.permanent_direct) + tuple(runtime)
    return guard.FirewalldFacts(version=fw.version if fw.running else snap.installed_version,
                                backend=backend, flush_fix=snap.flush_fix, iptables_direct=direct)


def guard_active(snap: HostSnapshot) -> Optional[bool]:
    """Does the running firewalld have the iptables binaries hidden? None: cannot tell."""
    fw = snap.firewalld
    if not fw.running or fw.guarded is None or not snap.guard_paths:
        return None
    return set(snap.guard_paths) <= set(fw.guarded)


def _iface_matches(entry: str, pattern: str) -> bool:
    """firewalld/Calico wildcards: 'cali+' matches 'cali+' and 'cali0123'; either side may be one."""
    if entry == pattern:
        return True
    if pattern.endswith("+") and entry.rstrip("+").startswith(pattern[:-1]):
        return True
    return entry.endswith("+") and pattern.rstrip("+").startswith(entry[:-1])


def _nets(texts: Iterable[str]) -> List[Any]:
    nets = []
    for text in texts:
        try:
            nets.append(ipaddress.ip_network(text, strict=False))
        except ValueError:
            continue
    return nets


def _in_any(net: Any, pools: Sequence[Any]) -> bool:
    return any(net.version == p.version and net.subnet_of(p) for p in pools)


# ---------------------------------------------------------------------------------------
# The checks


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
        pools = ", ".join(n.with_prefixlen for n in snap.config.ip_pools)
        out.append(Finding(OK, "config", f"{path} is valid (pools {pools})"))
    return out


def _firewalld(snap: HostSnapshot) -> List[Finding]:
    unknown = _unknown(snap, "firewalld", Read.FIREWALLD)
    if unknown:
        return [unknown]
    fw = snap.firewalld
    if fw.state == "FAILED":
        return [Finding(ERROR, "firewalld", f"firewalld {fw.version} is in state FAILED",
                        "its configuration did not load: it runs a fallback configuration",
                        "journalctl -u firewalld -b; fix the reported file, then firewall-cmd --reload")]
    if not fw.running:
        saw = "firewalld is not running" + (f" (state {fw.state})" if fw.state else "")
        return [Finding(INFO, "firewalld", saw, "calfwd keeps natOutgoing in its own table either way; "
                        "its zone and policies are applied when firewalld starts")]
    return [Finding(OK, "firewalld", f"firewalld {fw.version} is running, FirewallBackend={fw.backend}, "
                    f"default zone {fw.default_zone}")]


def _flush(snap: HostSnapshot) -> List[Finding]:
    """Which iptables flavour Calico's rules are in, and what this firewalld does to them."""
    unknown = _unknown(snap, "flush", Read.NFTABLES)
    if unknown:
        return [unknown]
    f = facts(snap)
    flush, why_flush = guard.flushes(f)
    active = guard_active(snap)
    refresh = _felix_refresh(snap)
    nft_chains = sum(len(c) for c in snap.calico_chains.values())
    native = [f"{fam} {name}" for fam, name in snap.nft_tables if name == "calico" and fam in ("ip", "ip6")]
    out: List[Finding] = []
    if native:
        out.append(Finding(OK, "calico-dataplane", f"Felix's native nftables dataplane (table "
                           f"{', '.join(native)})", "firewalld's iptables flush does not reach it; "
                           "firewalld's reject still applies, which calfwd's zone and policies handle"))
    if nft_chains:
        where = ", ".join(sorted(snap.calico_chains))
        saw = f"Calico's rules are in the nft tables {where} (iptables-nft, {nft_chains} cali- chains)"
        if active:
            out.append(Finding(OK, "flush", f"{saw}; firewalld runs with calfwd's flush guard, so its "
                               "start, reload and stop leave them alone"))
        elif flush is None:
            out.append(Finding(UNKNOWN, "flush", f"{saw}; whether firewalld flushes them: {why_flush}",
                               "firewalld <= 1.x flushes them on every start, reload and stop",
                               "run `calfwd doctor` as root with firewalld running"))
        elif flush:
            out.append(Finding(WARNING, "flush", f"{saw}, and {why_flush}",
                               "every flush removes Calico's network policy and its natOutgoing until "
                               f"Felix's next refresh (up to {refresh} s); calfwd keeps pod egress "
                               "working, but policy is not enforced meanwhile", _flush_fix(snap, f)))
        else:
            out.append(Finding(OK, "flush", f"{saw}; {why_flush}"))
    if snap.legacy_calico_chains:
        saw = (f"Calico's rules are in legacy iptables ({len(snap.legacy_calico_chains)} cali- chains in "
               f"{', '.join(sorted(set(c.split()[0] for c in snap.legacy_calico_chains)))})")
        legacy_host = "legacy" in snap.host_iptables
        if flush and legacy_host and not active:
            out.append(Finding(WARNING, "flush", f"{saw}, the host's iptables is {snap.host_iptables}, "
                               f"and {why_flush}", f"every flush removes Calico's rules until Felix's next "
                               f"refresh (up to {refresh} s)", _flush_fix(snap, f)))
        else:
            out.append(Finding(INFO, "flush", f"{saw}; firewalld's flush goes through "
                               f"{snap.host_iptables or 'no iptables'} and does not reach them",
                               "rules in both legacy and nft tables are hard to read; Calico picks one "
                               "flavour by itself (FELIX_IPTABLESBACKEND=Auto)"))
    if not (nft_chains or snap.legacy_calico_chains or native):
        traces = _calico_traces(snap)
        if snap.pool_sets and any(n.startswith("ipset ") for n in snap.pool_sets):
            out.append(Finding(ERROR, "flush", "Calico's ip sets exist but none of its chains: its "
                               "iptables rules are missing right now (flushed by firewalld and not yet "
                               "restored?)", f"no network policy and no Felix natOutgoing until Felix's "
                               f"next refresh (up to {refresh} s)",
                               "wait, or restart calico-node on this node: kubectl -n kube-system delete "
                               "pod -l k8s-app=calico-node --field-selector spec.nodeName=$(hostname); "
                               "then prevent it: " + _flush_fix(snap, f)))
        elif traces:
            out.append(Finding(INFO, "flush", f"no Calico rules in iptables or nftables, but {traces}",
                               "Felix is not running or has not programmed this node yet"))
        else:
            out.append(Finding(INFO, "flush", "no sign of Calico on this host (no cali- chains, ip sets, "
                               "interfaces or block routes)"))
        if flush and not active and not snap.pool_sets:
            out.append(Finding(INFO, "firewalld-flush", why_flush,
                               "Calico's iptables rules would be flushed on each start, reload and stop",
                               _flush_fix(snap, f)))
    return out


def _flush_fix(snap: HostSnapshot, f: guard.FirewalldFacts) -> str:
    conf = "firewalld.conf"
    if f.backend == "iptables":
        return (f"set FirewallBackend=nftables in {conf} (the iptables backend always flushes), then "
                "systemctl restart firewalld")
    if f.fixed and f.iptables_direct:
        # Advice for the admin's own direct rules (read-only detection); calfwd never runs it.
        return ("move the direct rules to policies or rich rules and remove them "
                "(firewall-cmd --permanent --direct --get-all-rules; --remove-rules ...), then "
                "firewall-cmd --reload")
    if f.iptables_direct:
        return ("upgrade firewalld to >= 2.0 and remove the direct rules (they rule out calfwd's flush "
                "guard, which needs no direct rules)")
    return (f"calfwd guard enable && {guard.ACTIVATE} (and set [firewalld] flush_guard = true), or "
            "upgrade firewalld to >= 2.0")


def _calico_traces(snap: HostSnapshot) -> str:
    traces = []
    if snap.pool_sets:
        traces.append("pool sets " + ", ".join(sorted(snap.pool_sets)))
    patterns = snap.config.interfaces if snap.config else ("cali+",)
    links = [l for l in snap.links if any(_iface_matches(l, p) for p in patterns)]
    if links:
        traces.append(f"{len(links)} Calico interface(s)")
    blocks = [r.dst for r in snap.routes if r.kind == "blackhole" and r.proto in ("bird", "80")]
    if blocks:
        traces.append("block routes " + ", ".join(blocks))
    return "; ".join(traces)


def _guard(snap: HostSnapshot) -> List[Finding]:
    """The flush guard drop-in: wanted, present, current, loaded by the running firewalld."""
    unknown = _unknown(snap, "flush-guard", Read.GUARD_DROPIN, Read.GUARD_PATHS)
    if unknown:
        return [unknown]
    wanted = bool(snap.config and snap.config.firewalld.flush_guard)
    path = snap.dropin_path
    text = snap.dropin_text
    f = facts(snap)
    reason = guard.refusal(f, snap.guard_paths)
    if text is None:
        if not wanted:
            return []
        if reason:
            return [Finding(WARNING, "flush-guard", f"[firewalld] flush_guard = true but {path} does not "
                            f"exist, and it cannot be installed here: {reason}",
                            "calfwd keeps reporting this", "set [firewalld] flush_guard = false in "
                            f"{snap.config_path}, or fix the reason above and run `calfwd guard enable`")]
        return [Finding(WARNING, "flush-guard", f"[firewalld] flush_guard = true but {path} does not exist",
                        "firewalld flushes Calico's rules on each start, reload and stop",
                        f"calfwd guard enable && {guard.ACTIVATE}")]
    if not guard.is_ours(text):
        return [Finding(INFO, "flush-guard", f"{path} exists but was not written by calfwd",
                        "calfwd leaves it alone", "inspect it: systemctl cat firewalld")]
    paths = guard.parse_dropin(text)
    out = []
    if f.backend == "iptables":
        return [Finding(ERROR, "flush-guard", f"{path} hides the iptables binaries, but firewalld uses "
                        "FirewallBackend=iptables", "firewalld cannot start without them",
                        f"calfwd guard disable && {guard.ACTIVATE}")]
    if f.iptables_direct:  # read-only detection (see _direct)
        return [Finding(ERROR, "flush-guard", f"{path} hides the iptables binaries, but firewalld has "
                        f"{len(f.iptables_direct)} direct rule(s) or passthrough(s)",
                        "firewalld cannot apply them without iptables",
                        f"remove the direct rules, or calfwd guard disable && {guard.ACTIVATE}")]
    if f.fixed:
        out.append(Finding(INFO, "flush-guard", f"{path} is installed, but firewalld {f.version} does not "
                           "flush with the nftables backend", "the guard is not needed (harmless)",
                           f"calfwd guard disable && {guard.ACTIVATE}"))
    if set(paths) != set(snap.guard_paths):
        out.append(Finding(WARNING, "flush-guard", f"{path} hides {', '.join(paths) or 'nothing'}, but the "
                           f"iptables binaries here are {', '.join(snap.guard_paths) or 'none'}",
                           "an iptables binary firewalld can still run lets it flush",
                           f"calfwd guard enable (rewrites it) && {guard.ACTIVATE}"))
    active = guard_active(snap)
    if snap.firewalld.running:
        if active:
            out.append(Finding(OK, "flush-guard", f"{path} is installed and the running firewalld "
                               f"(pid {snap.firewalld.pid}) cannot run {', '.join(snap.guard_paths)}"))
        elif active is None:
            out.append(Finding(UNKNOWN, "flush-guard", f"{path} is installed; whether the running firewalld "
                               "started with it could not be read" +
                               (f" ({snap.unknown[Read.GUARD_ACTIVE]})" if Read.GUARD_ACTIVE in snap.unknown else ""),
                               "it only takes effect when firewalld restarts",
                               f"if unsure: {guard.ACTIVATE}"))
        else:
            out.append(Finding(WARNING, "flush-guard", f"{path} is installed, but the running firewalld "
                               "started without it", "it still flushes Calico's rules on reload and stop",
                               guard.ACTIVATE))
    elif not out:
        out.append(Finding(OK, "flush-guard", f"{path} is installed (applies when firewalld starts)"))
    return out


def _direct(snap: HostSnapshot) -> List[Finding]:
    # READ-ONLY: doctor reports direct rules and passthroughs someone else made (read by
    # doctor/reads.py); calfwd never adds, changes or removes any.
    f = facts(snap)
    if f.iptables_direct is None:
        found = _unknown(snap, "direct-rules", Read.FIREWALLD_DIRECT_PERMANENT, Read.FIREWALLD_DIRECT_RUNTIME)
        return [found] if found else []
    if not f.iptables_direct:
        return [Finding(OK, "direct-rules", "no firewalld direct rules or passthroughs")]
    listing = "; ".join(f.iptables_direct[:3]) + (" ..." if len(f.iptables_direct) > 3 else "")
    saw = f"{len(f.iptables_direct)} firewalld direct rule(s) or passthrough(s): {listing}"
    # Advice for the admin, printed only: calfwd never runs firewall-cmd --direct.
    fix = ("move them to policies or rich rules, then remove them (firewall-cmd --permanent --direct "
           "--get-all-rules lists them; --remove-rules ...) and firewall-cmd --reload")
    if f.fixed:
        return [Finding(WARNING, "direct-rules", saw, f"firewalld {f.version} skips the iptables flush only "
                        "while no direct rule exists: these switch it back on (Calico's rules are flushed "
                        "on every reload)", fix)]
    return [Finding(INFO, "direct-rules", saw, "direct rules are deprecated, need iptables and rule out "
                    "calfwd's flush guard; on firewalld >= 2.0 they switch the iptables flush back on", fix)]


def _strict_forward_ports(snap: HostSnapshot) -> List[Finding]:
    fw = snap.firewalld
    value = fw.strict_forward_ports if fw.running else None
    source = "firewalld (D-Bus)"
    if value is None:
        value = snap.firewalld_conf.get("StrictForwardPorts")
        source = "firewalld.conf"
    if value is None:
        return []
    if value.lower() in ("yes", "true", "1"):
        return [Finding(ERROR, "strict-forward-ports", f"StrictForwardPorts=yes ({source})",
                        "firewalld then drops DNAT it did not create itself: kube-proxy NodePorts and "
                        "CNI hostPorts stop working", "set StrictForwardPorts=no in firewalld.conf, then "
                        "firewall-cmd --reload")]
    return [Finding(OK, "strict-forward-ports", f"StrictForwardPorts={value} ({source})")]


def _table_owner(snap: HostSnapshot) -> List[Finding]:
    value = snap.firewalld.table_owner if snap.firewalld.running else None
    if value is None:
        value = snap.firewalld_conf.get("NftablesTableOwner")
    if value is None:
        return []
    return [Finding(INFO if value.lower() == "yes" else OK, "nftables-table-owner", f"NftablesTableOwner={value}",
                    "firewalld owns table inet firewalld: nobody else can add rules to it (calfwd never "
                    "does; it uses its own table)" if value.lower() == "yes" else "")]


def _forwarding(snap: HostSnapshot) -> List[Finding]:
    unknown = _unknown(snap, "forwarding", Read.SYSCTL)
    if unknown:
        return [unknown]
    out = []
    v6_used = bool(snap.config and any(n.version == 6 for n in snap.config.ip_pools))
    for key, family, used in (("net.ipv4.ip_forward", "IPv4", True),
                              ("net.ipv6.conf.all.forwarding", "IPv6", v6_used)):
        value = snap.sysctls.get(key)
        if value is None:
            continue
        if value == "1":
            out.append(Finding(OK, "forwarding", f"{key} = 1"))
        elif value == "" and used:
            out.append(Finding(ERROR, "forwarding", "IPv6 is disabled on this host, but calico.ip_pools has "
                               "IPv6 pools", "IPv6 pods cannot reach anything",
                               "enable IPv6 (remove ipv6.disable=1 from the kernel command line), or remove the "
                               "IPv6 pools from calico.ip_pools"))
        elif value and used:
            out.append(Finding(ERROR, "forwarding", f"{key} = {value}", f"{family} pods cannot reach anything "
                               "outside this node", f"sysctl -w {key}=1, and persist it in "
                               f"/etc/sysctl.d/90-calico.conf ({key} = 1)"))
        elif value:
            out.append(Finding(INFO, "forwarding", f"{key} = {value}", f"no {family} pools are configured"))
    return out


def _zones(snap: HostSnapshot) -> List[Finding]:
    """Calico's interfaces or pools bound to a firewalld zone other than calfwd's."""
    if snap.config is None or not snap.firewalld.running:
        return []
    unknown = _unknown(snap, "zones", Read.FIREWALLD_ZONES)
    if unknown:
        return [unknown]
    ours = _zone(snap)
    pools = list(snap.config.ip_pools)
    out = []
    for zone, (interfaces, sources) in sorted((snap.firewalld.zones or {}).items()):
        if zone == ours:
            continue
        for iface in interfaces:
            if any(_iface_matches(iface, p) for p in snap.config.interfaces):
                out.append(Finding(ERROR, "zones", f"interface {iface} is bound to zone '{zone}', not '{ours}'",
                                   f"traffic on it is judged by '{zone}' and calfwd cannot bind it "
                                   "(ZONE_CONFLICT)", f"firewall-cmd --permanent --zone={zone} "
                                   f"--remove-interface={iface} && firewall-cmd --zone={zone} "
                                   f"--remove-interface={iface} && calfwd apply"))
        for source in sources:
            nets = _nets([source])
            if nets and any(nets[0].version == p.version and nets[0].overlaps(p) for p in pools):
                out.append(Finding(WARNING, "zones", f"source {source} (overlapping a Calico pool) is bound "
                                   f"to zone '{zone}'", "a source binding wins over interface bindings: "
                                   f"pod traffic from it is judged by '{zone}', not '{ours}'",
                                   f"firewall-cmd --permanent --zone={zone} --remove-source={source} && "
                                   f"firewall-cmd --zone={zone} --remove-source={source}"))
    if not out:
        out.append(Finding(OK, "zones", f"no Calico interface or pool is bound to a zone other than '{ours}'"))
    return out


def _pools(snap: HostSnapshot) -> List[Finding]:
    """calico.ip_pools and nat_outgoing against what the kernel shows of Calico's pools."""
    if snap.config is None:
        return []
    out: List[Finding] = []
    for read in (Read.IPSET, Read.ROUTES):
        found = _unknown(snap, "pools", read)
        if found:
            out.append(found)
    config = snap.config
    pools = list(config.ip_pools)
    path = snap.config_path
    all_sets = {k: v for k, v in snap.pool_sets.items() if "masq" not in k}
    masq_sets = {k: v for k, v in snap.pool_sets.items() if "masq" in k}
    kernel_pools = _nets(m for members in all_sets.values() for m in members)
    kernel_masq = _nets(m for members in masq_sets.values() for m in members)
    for net in sorted(set(kernel_pools), key=str):
        if net not in pools:
            sets = ", ".join(k for k, v in all_sets.items() if net in _nets(v))
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
    patterns = config.interfaces
    for route in snap.routes:
        local_block = route.kind == "blackhole" and route.proto in ("bird", "80")
        pod = route.kind == "unicast" and any(_iface_matches(route.dev, p) for p in patterns) and \
            route.dst.endswith("/32" if route.family == 4 else "/128")
        if not (local_block or pod):
            continue
        nets = _nets([route.dst])
        if nets and not _in_any(nets[0], pools):
            what = f"block {route.dst} (route proto {route.proto})" if local_block else \
                f"pod route {route.dst} dev {route.dev}"
            out.append(Finding(WARNING, "pools", f"Calico {what} lies in none of calico.ip_pools",
                               "its pods get no natOutgoing from calfwd",
                               f"add its pool to [calico] ip_pools in {path} (calicoctl get ippools -o wide)"))
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


def _drift(snap: HostSnapshot) -> List[Finding]:
    if snap.config is None:
        return []
    unknown = _unknown(snap, "calfwd-state", Read.DRIFT)
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
