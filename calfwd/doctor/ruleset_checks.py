"""doctor's checks of what acts on pods' forwarded traffic outside calfwd's rules: firewalld
2.x's ReloadPolicy (2.1+) and NftablesFlowtable (2.0+), and nftables.service enabled beside
firewalld. Pure, like every check; each is silent where the knob does not exist.

What firewalld does is read from its source (github:firewalld/firewalld, tag v2.3.1, commit
e491c254): ReloadPolicy came with commit 0019371a (first in v2.1.0), NftablesFlowtable with
a0d0a760 (v2.0.0); src/firewall/core/nftables.py renders both (build_set_policy_rules, and
the "fastpath" flowtable in the filter_FORWARD default rules). calfwd never sets either."""

from __future__ import annotations

from typing import Dict, List, Optional, Tuple

from calfwd.judge.guard import version_tuple
from calfwd.doctor.findings import INFO, OK, WARNING, Finding, iface_matches, unknown_finding
from calfwd.doctor.snapshot import HostSnapshot, Read

RELOAD_POLICY_SINCE = (2, 1)
FLOWTABLE_SINCE = (2, 0)
HOOKS = ("INPUT", "FORWARD", "OUTPUT")
VERDICTS = ("ACCEPT", "REJECT", "DROP")
# Devices pods' traffic crosses on a Calico (or Canal) node, whatever calico.interfaces says.
POD_DEVICES = ("cali+", "tunl0", "vxlan.calico", "vxlan-v6.calico", "wireguard.cali", "wg-v6.cali",
               "flannel+", "cni0")


def firewalld_version(snap: HostSnapshot) -> Optional[Tuple[int, ...]]:
    """The running firewalld's version, or the installed package's when it is stopped."""
    fw = snap.firewalld
    return version_tuple(fw.version if fw.running else snap.installed_version)


def _has_knob(snap: HostSnapshot, key: str, since: Tuple[int, ...]) -> bool:
    """The knob exists: the version has it, or (version unknown) firewalld.conf names it."""
    version = firewalld_version(snap)
    if version is None:
        return key in snap.firewalld_conf
    return version >= since


def parse_reload_policy(value: Optional[str]) -> Optional[Dict[str, str]]:
    """firewalld's own parse (io/firewalld_conf.py _parse_reload_policy): one verdict for every
    hook, or HOOK:VERDICT pairs over the default DROP; None: invalid (firewalld then uses the
    default, INPUT:DROP,FORWARD:DROP,OUTPUT:DROP)."""
    result = {hook: "DROP" for hook in HOOKS}
    value = (value or "").strip()
    if not value:
        return result
    if value.upper() in VERDICTS:
        return {hook: value.upper() for hook in HOOKS}
    for item in filter(None, (a.strip() for a in value.replace(";", ",").split(","))):
        pair = item.replace("=", ":").split(":", 2)
        if len(pair) != 2 or pair[0].strip().upper() not in result or pair[1].strip().upper() not in VERDICTS:
            return None
        result[pair[0].strip().upper()] = pair[1].strip().upper()
    return result


OPT_IN = ("to keep pods' new connections flowing during reloads, an administrator may set "
          "ReloadPolicy=INPUT:DROP,FORWARD:ACCEPT,OUTPUT:DROP in firewalld.conf; its cost: for the "
          "reload's duration firewalld filters no forwarded traffic at all (every zone's and policy's "
          "forward rules are gone), so whatever reaches the host is routed on unchecked by firewalld; "
          "calfwd never sets it")


def check_reload_policy(snap: HostSnapshot) -> List[Finding]:
    """What firewalld's reload does to forwarded traffic (2.1+: ReloadPolicy): during every
    reload it adds table inet firewalld_policy_drop, whose forward chain (priority filter - 1,
    policy drop) accepts established and related packets and applies the verdict to the rest."""
    unknown = unknown_finding(snap, "reload-policy", Read.FIREWALLD_CONF)
    if unknown:
        return [unknown]
    if not _has_knob(snap, "ReloadPolicy", RELOAD_POLICY_SINCE):
        return []
    raw = snap.firewalld_conf.get("ReloadPolicy")
    parsed = parse_reload_policy(raw)
    setting = f"ReloadPolicy={raw}" if raw else "ReloadPolicy unset (default INPUT:DROP,FORWARD:DROP,OUTPUT:DROP)"
    if parsed is None:
        setting = f"ReloadPolicy={raw} is not valid: firewalld uses its default INPUT:DROP,FORWARD:DROP,OUTPUT:DROP"
        parsed = parse_reload_policy("")
    assert parsed is not None
    forward = parsed["FORWARD"]
    hook = ("while firewalld reloads (firewall-cmd --reload, systemctl reload firewalld), its table "
            "inet firewalld_policy_drop sits in the forward hook before every other table")
    if forward == "DROP":
        return [Finding(INFO, "reload-policy", f"{setting}: forwarded traffic is dropped during a reload",
                        f"{hook}: established flows go on, but every new forwarded connection (pod egress, "
                        "pod to pod across nodes, traffic to Services and NodePorts) is dropped for the "
                        "reload's duration, and TCP retries it a second or more later", OPT_IN)]
    if forward == "REJECT":
        return [Finding(WARNING, "reload-policy", f"{setting}: forwarded traffic is rejected during a reload",
                        f"{hook}: every new forwarded connection gets ICMP admin-prohibited, so pods' "
                        "connects fail at once instead of being retried after the reload (DROP, the "
                        "default, only delays them)",
                        "set FORWARD:DROP (the default) in ReloadPolicy in firewalld.conf, then "
                        "firewall-cmd --reload")]
    return [Finding(INFO, "reload-policy", f"{setting}: forwarded traffic passes during a reload",
                    f"{hook} and accepts what it forwards: pods lose no connection to a reload, but for "
                    "its duration firewalld filters no forwarded traffic (an administrator's choice; "
                    "calfwd never sets it)")]


def flowtable_devices(value: Optional[str]) -> Tuple[str, ...]:
    """NftablesFlowtable's devices: a space-separated list, or "off" (the default)."""
    if not value or value.strip().lower() == "off":
        return ()
    return tuple(value.split())


def check_flowtable(snap: HostSnapshot) -> List[Finding]:
    """NftablesFlowtable (2.0+): firewalld adds `flowtable inet firewalld fastpath` (hook
    ingress) on the listed devices and, in filter_FORWARD, `ct state established,related meta
    l4proto {tcp, udp} flow add @fastpath`: a flow's later packets arriving on a listed device
    are routed from the ingress hook straight out, past every table's forward and postrouting."""
    if Read.FIREWALLD_CONF in snap.unknown:
        return []  # check_reload_policy says it
    if not _has_knob(snap, "NftablesFlowtable", FLOWTABLE_SINCE):
        return []
    devices = flowtable_devices(snap.firewalld_conf.get("NftablesFlowtable"))
    if not devices:
        return []
    patterns = POD_DEVICES + (tuple(snap.config.interfaces) if snap.config else ())
    pods = [d for d in devices if any(iface_matches(d, p) for p in patterns)]
    network = snap.host_network
    uplinks = set(network.default4 + network.default6) if network is not None else set()
    uplink = [d for d in devices if d in uplinks]
    saw = f"NftablesFlowtable={' '.join(devices)}"
    if not pods and not uplink:
        return [Finding(OK, "flowtable", f"{saw}: none of Calico's devices or the uplink")]
    named = ", ".join(pods + [f"{d} (the uplink)" for d in uplink if d not in pods])
    return [Finding(WARNING, "flowtable", f"{saw}: offloads {named}",
                    "firewalld adds flowtable inet firewalld fastpath on them and offloads every "
                    "established TCP and UDP flow: its later packets skip every other table's forward "
                    "and postrouting hooks (Calico's policy, calfwd's natOutgoing and forward rules, "
                    "kube-proxy's), so a policy change or a rule calfwd restores no longer reaches "
                    "flows already open",
                    "remove Calico's devices and the uplink from NftablesFlowtable (or set "
                    "NftablesFlowtable=off) in firewalld.conf, then firewall-cmd --reload")]


def check_nftables_service(snap: HostSnapshot) -> List[Finding]:
    """nftables.service enabled beside firewalld: its start and reload load /etc/nftables.conf,
    which begins with `flush ruleset` (Debian's, and Fedora's reload flushes first), and its
    stop runs `nft flush ruleset`."""
    unknown = unknown_finding(snap, "nftables-service", Read.NFTABLES_SERVICE)
    if unknown:
        return [unknown]
    if not snap.nftables_service or not (snap.firewalld.running or snap.installed_version):
        return []
    return [Finding(WARNING, "nftables-service", f"nftables.service is enabled beside firewalld "
                    f"({', '.join(snap.nftables_service)})",
                    "its reload, restart and stop run `flush ruleset`, which wipes every table: "
                    "firewalld's, Calico's (Felix's) and calfwd's; calfwd restores its own table on the "
                    "kernel's event, but not firewalld's (until firewall-cmd --reload) nor Felix's (until "
                    "its next refresh)",
                    "systemctl disable nftables, without --now (its stop would flush the ruleset once "
                    "more); firewalld owns the ruleset: move /etc/nftables.conf's rules to firewalld "
                    "policies or a table of their own loaded without `flush ruleset`")]
