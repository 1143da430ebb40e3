"""doctor's checks of firewalld itself: its state, its flush of Calico's rules, the flush
guard, direct rules (and who made them), and the 2.x settings that break Calico (StrictForwardPorts,
NftablesTableOwner). Pure, like every check.

Direct rules and passthroughs appear here on purpose, read-only: they switch firewalld 2.x's
iptables flush back on and would break with the flush guard, so doctor must see and report
them (doctor/reads.py lists them). calfwd itself never adds, changes or removes any; the
firewall-cmd commands below are advice printed for the administrator."""

from __future__ import annotations

import re
from typing import List, Tuple

from calfwd.judge import guard
from calfwd.doctor.findings import (ERROR, INFO, OK, UNKNOWN, WARNING, Finding, facts, felix_refresh,
                                    guard_active, guard_finding, guard_verdict, iface_matches, unknown_finding)
from calfwd.doctor.snapshot import HostSnapshot, Read


def check_firewalld(snap: HostSnapshot) -> List[Finding]:
    unknown = unknown_finding(snap, "firewalld", Read.FIREWALLD)
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


def check_flush(snap: HostSnapshot) -> List[Finding]:
    """Which iptables flavour Calico's rules are in, and what this firewalld does to them."""
    unknown = unknown_finding(snap, "flush", Read.NFTABLES)
    if unknown:
        return [unknown]
    f = facts(snap)
    flush, why_flush = guard.flushes(f)
    active = guard_active(snap)
    refresh = felix_refresh(snap)
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
    links = [l for l in snap.links if any(iface_matches(l, p) for p in patterns)]
    if links:
        traces.append(f"{len(links)} Calico interface(s)")
    blocks = [r.dst for r in snap.routes if r.kind == "blackhole" and r.proto in ("bird", "80")]
    if blocks:
        traces.append("block routes " + ", ".join(blocks))
    return "; ".join(traces)


def check_guard(snap: HostSnapshot) -> List[Finding]:
    """The flush guard drop-in: guard.assess()'s verdict, the daemon's and `guard status`'s too."""
    verdict = guard_verdict(snap)
    if verdict.state == "not-wanted":
        return []  # check_flush says what firewalld does without it
    read = next((r for r in (Read.GUARD_DROPIN, Read.GUARD_PATHS) if r in snap.unknown), None)
    return [guard_finding(verdict, read if verdict.state == "unknown" else None)]


def check_direct(snap: HostSnapshot) -> List[Finding]:
    # READ-ONLY: doctor reports direct rules and passthroughs someone else made (read by
    # doctor/reads.py); calfwd never adds, changes or removes any.
    f = facts(snap)
    if f.iptables_direct is None:
        found = unknown_finding(snap, "direct-rules", Read.FIREWALLD_DIRECT_PERMANENT, Read.FIREWALLD_DIRECT_RUNTIME)
        return [found] if found else []
    if not f.iptables_direct:
        return [Finding(OK, "direct-rules", "no firewalld direct rules or passthroughs")]
    listing = "; ".join(f.iptables_direct[:3]) + (" ..." if len(f.iptables_direct) > 3 else "")
    saw = f"{len(f.iptables_direct)} firewalld direct rule(s) or passthrough(s): {listing}"
    owners = direct_owners(f.iptables_direct)
    if owners:
        saw += f" (made by {', '.join(owners)})"
    # Advice for the admin, printed only: calfwd never runs firewall-cmd --direct.
    fix = ("move them to policies or rich rules, then remove them (firewall-cmd --permanent --direct "
           "--get-all-rules lists them; --remove-rules ...) and firewall-cmd --reload")
    if any(owner.startswith("fail2ban") for owner in owners):
        fix = (f"make fail2ban ban with firewalld rich rules instead: banaction = {FAIL2BAN_ACTION} in "
               "/etc/fail2ban/jail.local (and in any jail naming its own firewallcmd action), then systemctl "
               "restart fail2ban (its stop removes its f2b- chains); for any other direct rule, " + fix)
    if f.fixed:
        return [Finding(WARNING, "direct-rules", saw, f"firewalld {f.version} skips the iptables flush only "
                        "while no direct rule exists: these switch it back on (Calico's rules are flushed "
                        "on every reload)", fix)]
    return [Finding(INFO, "direct-rules", saw, "direct rules are deprecated, need iptables and rule out "
                    "calfwd's flush guard; on firewalld >= 2.0 they switch the iptables flush back on", fix)]


FAIL2BAN_ACTION = "firewallcmd-rich-rules"
_F2B_CHAIN = re.compile(r"\bf2b-[\w.-]+")
_COMMENT = re.compile(r"--comment\s+(\"[^\"]*\"|'[^']*'|\S+)")


def direct_owners(direct: Tuple[str, ...]) -> Tuple[str, ...]:
    """Who made the direct rules, where their chains or comments say so: fail2ban's firewalld
    actions (firewallcmd-ipset, -multiport, -allports, -new) make f2b-<jail> chains; any other
    rule's --comment is named as written."""
    owners: List[str] = []
    chains = sorted({m.group(0) for line in direct for m in _F2B_CHAIN.finditer(line)})
    if chains:
        owners.append(f"fail2ban: chain(s) {', '.join(chains)}")
    for line in direct:
        if _F2B_CHAIN.search(line):
            continue
        for match in _COMMENT.finditer(line):
            comment = f"comment {match.group(1).strip(chr(34) + chr(39))!r}"
            if comment not in owners:
                owners.append(comment)
    return tuple(owners)


def check_strict_forward_ports(snap: HostSnapshot) -> List[Finding]:
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
                        "firewalld then rejects every new connection DNAT'd by anyone but itself (its "
                        "filter_FORWARD_dnat, filter_INPUT_dnat and filter_OUTPUT_dnat chains accept only "
                        "its own forward-ports): all Service traffic kube-proxy DNATs to pods is blocked, "
                        "ClusterIP from pods and from the host as well as NodePorts, LoadBalancer and "
                        "external IPs, and so are CNI hostPorts", "set StrictForwardPorts=no in "
                        "firewalld.conf, then firewall-cmd --reload")]
    return [Finding(OK, "strict-forward-ports", f"StrictForwardPorts={value} ({source})")]


def check_table_owner(snap: HostSnapshot) -> List[Finding]:
    value = snap.firewalld.table_owner if snap.firewalld.running else None
    if value is None:
        value = snap.firewalld_conf.get("NftablesTableOwner")
    if value is None:
        return []
    return [Finding(INFO if value.lower() == "yes" else OK, "nftables-table-owner", f"NftablesTableOwner={value}",
                    "firewalld owns table inet firewalld: nobody else can add rules to it (calfwd never "
                    "does; it uses its own table)" if value.lower() == "yes" else "")]
