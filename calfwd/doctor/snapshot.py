"""What `calfwd doctor` looks at: one snapshot of the host, read by doctor/reads.py and judged
by doctor/checks.py. Plain frozen data; `unknown` maps each read that failed to why.

Every read has a name in Read, so that a read that fails can only be reported by a check that
names it (tests/unit/test_doctor.py proves every Read is named by a check, and every failure
is shown).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Mapping, Optional, Tuple

from calfwd.judge import guard
from calfwd.judge.blockers import FirewalldPaths
from calfwd.config import Config
from calfwd.judge.cni import CniVerdict
from calfwd.judge.exposure import HostNetwork
from calfwd.judge.pools import PoolState
from calfwd.plan.firewalld.model import FirewalldInfo



class Read(str, enum.Enum):
    """One read of the host; the value is the key in HostSnapshot.unknown."""

    FIREWALLD = "firewalld"
    FIREWALLD_ZONES = "firewalld-zones"
    FIREWALLD_DIRECT_RUNTIME = "firewalld-direct-runtime"
    FIREWALLD_DIRECT_PERMANENT = "firewalld-direct-permanent"
    FIREWALLD_CONF = "firewalld-conf"
    FIREWALLD_INSTALLED = "firewalld-installed"
    FIREWALLD_STRICT_FORWARD_PORTS = "firewalld-StrictForwardPorts"
    FIREWALLD_TABLE_OWNER = "firewalld-NftablesTableOwner"
    NFTABLES = "nftables"
    LEGACY = "legacy"
    SYSCTL = "sysctl"
    ROUTES = "routes"
    LINKS = "links"
    HOST_NETWORK = "host-network"
    IPSET = "ipset"
    DRIFT = "drift"
    GUARD_DROPIN = "guard-dropin"
    GUARD_PATHS = "guard-paths"
    GUARD_ACTIVE = "guard-active"
    NFTABLES_SERVICE = "nftables-service"
    NETWORKMANAGER = "networkmanager"
    NM_CLOUD_SETUP = "nm-cloud-setup"

    @property
    def description(self) -> str:
        return DESCRIPTIONS[self]


DESCRIPTIONS = {
    Read.FIREWALLD: "firewalld over D-Bus", Read.FIREWALLD_ZONES: "firewalld's panic mode, active zones and policies",
    Read.FIREWALLD_DIRECT_RUNTIME: "firewalld's runtime direct rules",
    Read.FIREWALLD_DIRECT_PERMANENT: "firewalld's direct.xml", Read.FIREWALLD_CONF: "firewalld.conf",
    Read.FIREWALLD_INSTALLED: "the installed firewalld package", Read.NFTABLES: "nftables",
    Read.FIREWALLD_STRICT_FORWARD_PORTS: "firewalld's StrictForwardPorts setting",
    Read.FIREWALLD_TABLE_OWNER: "firewalld's NftablesTableOwner setting",
    Read.LEGACY: "legacy iptables", Read.SYSCTL: "the forwarding sysctls", Read.ROUTES: "the routing table",
    Read.LINKS: "the network interfaces",
    Read.HOST_NETWORK: "the interfaces' addresses and the default routes", Read.IPSET: "Calico's ip sets", Read.DRIFT: "calfwd's state",
    Read.GUARD_DROPIN: "the flush guard's drop-in", Read.GUARD_PATHS: "the iptables binaries",
    Read.GUARD_ACTIVE: "firewalld's mounts",
    Read.NFTABLES_SERVICE: "whether nftables.service is enabled",
    Read.NETWORKMANAGER: "NetworkManager's configuration", Read.NM_CLOUD_SETUP: "whether nm-cloud-setup is enabled",
}


@dataclass(frozen=True)
class Route:
    family: int
    dst: str  # CIDR
    kind: str  # "unicast", "blackhole", ...
    proto: str  # "bird", "80", "kernel", ...
    dev: str


@dataclass(frozen=True)
class FirewalldState(FirewalldInfo):
    """firewalld as it reports itself over D-Bus: what the driver's info() says, and what only
    doctor asks. None fields: could not be read."""

    strict_forward_ports: Optional[str] = None  # None: this firewalld has no such setting (< 2.3)
    table_owner: Optional[str] = None  # NftablesTableOwner (2.2+)
    runtime_direct: Optional[Tuple[str, ...]] = None
    paths: Optional[FirewalldPaths] = None  # panic mode, active zones and targets, policies (runtime)
    pid: Optional[int] = None
    guarded: Optional[Tuple[str, ...]] = None  # guard paths mounted over in firewalld's mount namespace


@dataclass(frozen=True)
class Drift:
    """calfwd's own drift, handed to doctor/reads.py by its caller (commands/doctor.py, which
    plans as `calfwd plan` does): what apply would change and the conflicts, one line each."""

    lines: Tuple[str, ...] = ()
    conflicts: Tuple[str, ...] = ()
    # ip_pools = "auto": the config with the pools calfwd uses, which the other checks judge;
    # None: the config as loaded.
    resolved: Optional[Config] = None
    # Which CNI the plan served, and (ip_pools = "auto") the pools it resolved and from where:
    # Felix's sets or flannel's network. None: not judged.
    cni: Optional[CniVerdict] = None
    pools: Optional[PoolState] = None


@dataclass(frozen=True)
class HostSnapshot:
    """Everything doctor looks at. `unknown` maps a read's name to why it failed."""

    config_path: str
    config: Optional[Config] = None
    config_problems: Tuple[str, ...] = ()
    ownership: Tuple[str, ...] = ()
    firewalld: FirewalldState = field(default_factory=FirewalldState)
    firewalld_conf: Mapping[str, str] = field(default_factory=dict)
    permanent_direct: Optional[Tuple[str, ...]] = None
    installed_version: str = ""
    flush_fix: Optional[bool] = None
    dropin_path: str = guard.DROPIN_PATH
    dropin_text: Optional[str] = None
    guard_paths: Tuple[str, ...] = ()  # the real iptables binaries the guard would hide
    host_iptables: str = ""  # real path of /usr/sbin/iptables
    nft_tables: Tuple[Tuple[str, str], ...] = ()
    calico_chains: Mapping[str, Tuple[str, ...]] = field(default_factory=dict)  # "ip filter" -> cali-*
    legacy_calico_chains: Tuple[str, ...] = ()
    sysctls: Mapping[str, str] = field(default_factory=dict)
    routes: Tuple[Route, ...] = ()
    links: Tuple[str, ...] = ()
    host_network: Optional[HostNetwork] = None  # None: not read (or the read failed)
    pool_sets: Mapping[str, Tuple[str, ...]] = field(default_factory=dict)  # "ipset cali40all-ipam-pools" -> CIDRs
    drift: Tuple[str, ...] = ()
    conflicts: Tuple[str, ...] = ()
    cni: Optional[CniVerdict] = None  # from the drift's plan; None: not judged
    auto_pools: Optional[PoolState] = None  # ip_pools = "auto": what the drift's plan resolved
    # The running daemon's status file (None: no daemon running): what it saw flushed and not
    # yet undone, as health.outage_text() lines. Only the daemon sees a flush happen.
    daemon_flushed: Optional[Tuple[str, ...]] = None
    # nftables.service's enablement links (systemd's *.target.wants/nftables.service); (): not
    # enabled. Its start, reload and stop run `flush ruleset`.
    nftables_service: Tuple[str, ...] = ()
    # NetworkManager's [keyfile] unmanaged-devices; None: NetworkManager is not in use.
    networkmanager: Optional[Tuple[str, ...]] = None
    nm_cloud_setup: Tuple[str, ...] = ()  # nm-cloud-setup's enablement links; (): not enabled
    unknown: Mapping[str, str] = field(default_factory=dict)
