"""The config file's schema: every key, how its value is checked, and its default.

Pure. Each checker returns (value, None) or (None, why) and never raises, so config.parse can
report every problem in the file at once. This is the one place a default is stated: the
Config built by config.parse, the shipped calfwd.toml's comments (tests/unit/test_packaging.py)
and the man page (packaging/manpages.py) all take them from SCHEMA.
"""

from __future__ import annotations

import ipaddress
import os
import re
from typing import Any, Callable, Dict, Optional, Tuple, Union

IPNetwork = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]

# Calico's host-side traffic, by the name operators know it under (FIELD-NOTES section 4).
HOST_PORTS: Dict[str, Tuple[Tuple[str, str], ...]] = {
    "bgp": (("179", "tcp"),),
    "vxlan": (("4789", "udp"),),
    "wireguard": (("51820", "udp"), ("51821", "udp")),
    "typha": (("5473", "tcp"),),
}
HOST_PROTOCOLS: Dict[str, Tuple[str, ...]] = {
    # IP-in-IP is IP protocol 4; firewalld takes the number, so no /etc/protocols name is needed.
    "ipip": ("4",),
}
HOST_PORT_NAMES = tuple(sorted(set(HOST_PORTS) | set(HOST_PROTOCOLS)))
# Calico's WireGuard devices (Felix's defaults) and the port each listens on: while one exists,
# its port opens whatever host_ports says, since the other nodes' tunnels come in on it.
WIREGUARD_DEVICES: Dict[str, Tuple[str, str]] = {"wireguard.cali": ("51820", "udp"), "wg-v6.cali": ("51821", "udp")}

DEFAULT_INTERFACES = (
    "cali+",
    "tunl0",
    "vxlan.calico",
    "vxlan-v6.calico",
    "wireguard.cali",
    "wg-v6.cali",
)
DEFAULT_HOST_PORTS = ("bgp", "ipip", "vxlan", "typha")
MODES = ("permanent", "runtime")

# Names Felix treats as its own and deletes (FIELD-NOTES section 4), and firewalld's.
_FOREIGN_PREFIXES = ("cali", "felix", "firewalld", "kube")
# Names others create on a node: an administrator's (or iptables-nft's) table, firewalld's
# shipped policies and those libvirt and Docker install. calfwd would replace or edit them.
RESERVED_TABLES = frozenset({"filter", "nat", "mangle", "raw", "security", "broute"})
RESERVED_POLICIES = frozenset({"allow-host-ipv6", "libvirt-routed", "libvirt-to-host", "docker-forwarding"})

_DIGITS = "0123456789"

# Calico's workload interface prefix (Felix's InterfacePrefix): cali by default, and what its
# cloud integrations set: tap (OpenStack), eni (EKS), azv (AKS), gke (GKE).
CALICO_INTERFACE_PREFIXES = ("cali", "tap", "eni", "azv", "gke")

# The host's own interface naming schemes, which are never Calico's (see _host_interface):
# (prefix, the characters that may follow it, or None for any; an example; what they are).
HOST_INTERFACE_SCHEMES: Tuple[Tuple[str, Optional[str], str, str], ...] = (
    ("lo", None, "lo", "the loopback interface"),
    ("eth", None, "eth0", "Ethernet, kernel names"),
    ("eno", None, "eno1", "Ethernet, systemd's onboard names"),
    ("ens", None, "ens3", "Ethernet, systemd's hotplug slot names"),
    ("enp", None, "enp0s3", "Ethernet, systemd's PCI names"),
    ("enP", None, "enP1p0s3", "Ethernet, systemd's PCI names"),
    ("enx", None, "enx0011aabbccdd", "Ethernet, systemd's MAC names"),
    ("em", None, "em1", "Ethernet, biosdevname's onboard names"),
    ("ppp", _DIGITS, "ppp0", "PPP links"),
    ("p", _DIGITS + "p", "p1p1", "Ethernet, biosdevname's PCI slot names"),
    ("wl", None, "wlan0", "wireless LAN"),
    ("ww", None, "wwan0", "wireless WAN"),
    ("ib", None, "ib0", "InfiniBand"),
    ("usb", None, "usb0", "USB networking"),
    ("bond", None, "bond0", "bonds"),
    ("team", None, "team0", "teams"),
    ("br", None, "br0", "bridges"),
    ("vlan", None, "vlan100", "VLANs"),
    ("virbr", None, "virbr0", "libvirt's bridges"),
    ("vmbr", None, "vmbr0", "Proxmox's bridges"),
    ("vnet", None, "vnet0", "virtual machines' taps"),
    ("docker", None, "docker0", "Docker's bridge"),
    ("veth", None, "veth1a2b3c", "container veths"),
    ("tun", _DIGITS, "tun0", "VPN tunnels"),
    ("wg", _DIGITS, "wg0", "WireGuard tunnels other than Calico's"),
)

# Pools no pod network can use: (range, what it is). Checked by overlap, so a wider pool
# that contains one (10.0.0.0/8 does not; 0.0.0.0/1 does) is refused too.
_NOT_POOLS = tuple((ipaddress.ip_network(net), what) for net, what in (
    ("0.0.0.0/8", "'this network', a source-only range that is never routed"),
    ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link-local"),
    ("224.0.0.0/4", "multicast"),
    ("255.255.255.255/32", "the limited broadcast address"),
    ("::/128", "the unspecified address"),
    ("::1/128", "loopback"),
    ("::ffff:0:0/96", "IPv4-mapped, which the kernel drops as a source"),
    ("fe80::/10", "link-local"),
    ("ff00::/8", "multicast"),
))


# ---------------------------------------------------------------------------------------
# Value checkers: each returns (value, None) or (None, reason). They never raise.

Checked = Tuple[Any, Optional[str]]

CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")


def type_name(value: Any) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
            list: "an array", dict: "a table"}.get(type(value), type(value).__name__)


def _string(value: Any) -> Checked:
    if not isinstance(value, str):
        return None, f"must be a string, not {type_name(value)}"
    match = CONTROL.search(value)
    if match:
        return None, f"contains the control character {match.group()!r}"
    return value, None


def _guard_choice(value: Any) -> Checked:
    """flush_guard: true, false or "auto" (where the installed firewalld flushes)."""
    if value == "auto" or isinstance(value, bool):
        return value, None
    return None, f'must be true, false or "auto", not {value!r}'


def _boolean(value: Any) -> Checked:
    if not isinstance(value, bool):
        return None, f"must be true or false, not {type_name(value)}"
    return value, None


def _interface(value: Any) -> Checked:
    """Linux interface names, with Calico's and firewalld's trailing '+' wildcard."""
    value, why = _string(value)
    if why:
        return None, why
    base = value[:-1] if value.endswith("+") else value
    if "+" in base:
        return None, f"{value!r}: '+' is only allowed at the end (a wildcard)"
    if not base and value == "+":
        return None, "'+' alone would match every interface on the host"
    if not base:
        return None, "must not be empty"
    if len(base.encode()) > 15:
        return None, f"{value!r} is longer than 15 bytes (Linux IFNAMSIZ)"
    if base in (".", ".."):
        return None, f"{value!r} is not a valid interface name"
    bad = [ch for ch in base if ch in "/:*!\"'\\" or ch.isspace() or not ch.isprintable()
           or not ch.isascii()]
    if bad:
        return None, f"{value!r} contains {bad[0]!r}, which Linux or firewalld rejects in interface names"
    scheme = host_interface_scheme(value)
    if scheme:
        example, what = scheme
        return None, (f"{value!r} can match {example} and the like ({what}), never Calico's: every "
                      "interface listed here is bound to an ACCEPT zone, which would open the host to "
                      f"all traffic arriving on it (Calico's own: {', '.join(DEFAULT_INTERFACES)})")
    return value, None


def is_calico_interface(name: str) -> bool:
    """Calico's own naming: workload interfaces by their prefix, its tunnel devices by name."""
    return name.startswith(CALICO_INTERFACE_PREFIXES) or name in DEFAULT_INTERFACES


def host_interface_scheme(pattern: str) -> Optional[Tuple[str, str]]:
    """(example, what) when an interface pattern can match a name the host gives its own
    interfaces; None when it cannot.

    Why refuse these outright: calfwd binds every configured interface to an ACCEPT zone, so a
    pattern that catches an uplink (`e+`, `eth0`), the loopback or a bridge opens the host to
    everything on that network. Calico names its devices cali* (or another InterfacePrefix,
    see CALICO_INTERFACE_PREFIXES), tunl0, vxlan.calico, vxlan-v6.calico, wireguard.cali and
    wg-v6.cali, so no correct config needs any of those schemes (tap* is left out: it is
    Calico's prefix on OpenStack). The rule is exact about what a pattern can match: an exact name is refused when it
    is a scheme's prefix followed by characters that scheme uses (eth0, enp0s3, p1p1, tun0);
    a wildcard `X+` when some name of a scheme starts with X, that is when X is a prefix of the
    scheme's prefix (`e+`, `b+`, `en+`) or lies inside the scheme (`eth1+`, `br-+`). Schemes
    whose names continue only with digits (tun0, wg0, p1p1) leave room for Calico's tunl0 and
    wg-v6.cali, which are accepted whatever the list says.
    """
    wildcard = pattern.endswith("+")
    base = pattern[:-1] if wildcard else pattern
    if is_calico_interface(base):
        return None
    for prefix, tail, example, what in HOST_INTERFACE_SCHEMES:
        if wildcard and prefix.startswith(base):
            return example, what
        rest = base[len(prefix):]
        if base.startswith(prefix) and (tail is None or all(ch in tail for ch in rest)):
            return example, what
    return None


def _name(max_len: int, what: str) -> Callable[[Any], Checked]:
    def check(value: Any) -> Checked:
        value, why = _string(value)
        if why:
            return None, why
        if not _NAME.match(value):
            return None, (f"{value!r} is not a valid {what} name "
                          "(letters, digits, '_' and '-', starting with a letter or digit)")
        if len(value) > max_len:
            return None, f"{value!r} is longer than {max_len} characters (firewalld's limit)"
        return value, None
    return check


def _owned_name(max_len: int, what: str, reserved: frozenset = frozenset()) -> Callable[[Any], Checked]:
    """A name calfwd creates: it must not look like Felix's, firewalld's or kube-proxy's,
    nor be one that firewalld, iptables-nft, libvirt or Docker use for their own objects."""
    base = _name(max_len, what)

    def check(value: Any) -> Checked:
        value, why = base(value)
        if why:
            return None, why
        if value.lower().startswith(_FOREIGN_PREFIXES):
            return None, (f"{value!r} starts like a name Felix, firewalld or kube-proxy owns "
                          "(they may delete or overwrite it)")
        if value.lower() in reserved:
            return None, (f"{value!r} is a {what} others create (firewalld, iptables-nft, libvirt, "
                          f"Docker); calfwd would change or delete theirs: pick a name of calfwd's own")
        return value, None
    return check


def _zone_ref(value: Any) -> Checked:
    """A zone name that may be empty (meaning firewalld's default zone)."""
    if value == "":
        return value, None
    return _name(17, "zone")(value)


def _mode(value: Any) -> Checked:
    value, why = _string(value)
    if why:
        return None, why
    if value not in MODES:
        return None, f"{value!r} is not one of: {', '.join(MODES)}"
    return value, None


def _interval(value: Any) -> Checked:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None, f"must be a number of seconds, not {type_name(value)}"
    if not 1 <= value <= 86400:
        return None, f"{value} is out of range (1 to 86400 seconds)"
    return float(value), None


def _command(value: Any) -> Checked:
    """An argument list run as root: its program must be an absolute path (no PATH lookup)."""
    if not isinstance(value, list):
        return None, (f"must be an array of strings (the program and its arguments, no shell), "
                      f"not {type_name(value)}")
    if value and isinstance(value[0], str) and not value[0].startswith("/"):
        return None, (f"{value[0]!r}: the program must be an absolute path (calfwd runs it as "
                      "root, without a shell and without searching PATH)")
    return value, None


_command.item = _string  # type: ignore[attr-defined]  # no control characters (NUL included)


def _cidr(value: Any) -> Checked:
    value, why = _string(value)
    if why:
        return None, why
    if "/" not in value:
        return None, f"{value!r} is not a CIDR (missing '/prefix')"
    address, _, prefix = value.partition("/")
    if "%" in address:
        return None, f"{value!r}: a pool has no IPv6 scope ('%...')"
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return None, f"{value!r}: {address!r} is not an IPv4 or IPv6 address"
    # isascii(): str.isdigit() is also true for '²' and '٨', which int() rejects or misreads.
    if not (prefix.isascii() and prefix.isdigit()) or not 0 <= int(prefix) <= ip.max_prefixlen:
        return None, (f"{value!r}: prefix length {prefix!r} is out of range for IPv{ip.version} "
                      f"(0 to {ip.max_prefixlen})")
    net = ipaddress.ip_network(f"{ip}/{int(prefix)}", strict=False)
    if ip != net.network_address:
        return None, f"{value!r} has host bits set (the network is {net.with_prefixlen})"
    return net, None


def _pool(value: Any) -> Checked:
    """A pod pool: a CIDR that can be a pod network, since calfwd masquerades and exempts it (and
    with trust_pool_sources accepts it into the host) as pods."""
    net, why = _cidr(value)
    if why:
        return None, why
    consequence = ("no pod network can be there, and calfwd would treat those addresses as pods (masquerade "
                   "them, exempt them, and with [firewalld] trust_pool_sources accept them into the host)")
    if net.prefixlen == 0:
        return None, f"{value!r} is every IPv{net.version} address (the default route): {consequence}"
    for bad, what in _NOT_POOLS:
        if bad.version == net.version and bad.overlaps(net):
            verb = "is" if bad == net else "overlaps"
            return None, f"{value!r} {verb} {bad.with_prefixlen} ({what}): {consequence}"
    return net, None


def pool_problem(net: IPNetwork) -> Optional[str]:
    """Why a network read from elsewhere (Felix's sets) cannot be a pool, as ip_pools says."""
    return _pool(net.with_prefixlen)[1]


def _list_of(item: Callable[[Any], Checked], allow_empty: bool = True):
    """Checks a list item by item; problems carry the index in the key path."""
    def check(value: Any) -> Checked:
        if not isinstance(value, list):
            return None, f"must be an array, not {type_name(value)}"
        if not value and not allow_empty:
            return None, "must not be empty"
        return value, None
    check.item = item  # type: ignore[attr-defined]
    return check


AUTO_POOLS = "auto"


def _pools(value: Any) -> Checked:
    """The pool list, or "auto": the pools Felix has on this node (judge/pools.py), followed live."""
    if value == AUTO_POOLS:
        return value, None
    if isinstance(value, str):
        return None, f'must be an array of pool CIDRs or "auto", not {value!r}'
    return _pool_list(value)


_pool_list = _list_of(_pool, allow_empty=False)
_pools.item = _pool  # type: ignore[attr-defined]


def _host_port_name(value: Any) -> Checked:
    value, why = _string(value)
    if why:
        return None, why
    if value not in HOST_PORT_NAMES:
        return None, f"{value!r} is not one of: {', '.join(HOST_PORT_NAMES)}"
    return value, None


def _nat_outgoing(value: Any) -> Checked:
    if isinstance(value, bool):
        return value, None
    if isinstance(value, list):
        return value, None
    return None, f"must be true, false or an array of pool CIDRs, not {type_name(value)}"


_nat_outgoing.item = _pool  # type: ignore[attr-defined]

def _features_file(value: Any) -> Checked:
    """[labels] features_file: a file in node-feature-discovery's features.d directory (or any
    it reads); the atomic rename needs the directory to exist already (calfwd creates none)."""
    value, why = _string(value)
    if why or value == "":
        return value, why
    if not value.startswith("/") or value.endswith("/"):
        return None, f"{value!r} must be an absolute path to a file"
    if os.path.basename(value).startswith("."):
        return None, f"{value!r}: NFD skips hidden files"
    directory = os.path.dirname(value)
    if not os.path.isdir(directory):
        return None, f"{value!r}: the directory {directory} does not exist"
    return value, None


def _textfile(value: Any) -> Checked:
    """[metrics] textfile: node_exporter's textfile collector reads only *.prom files, and the
    atomic rename needs the directory to exist already (calfwd creates none)."""
    value, why = _string(value)
    if why or value == "":
        return value, why
    if not value.startswith("/"):
        return None, f"{value!r} must be an absolute path"
    if not value.endswith(".prom") or value.endswith("/.prom"):
        return None, f"{value!r} must end in .prom (node_exporter's textfile collector reads only those)"
    directory = os.path.dirname(value)
    if not os.path.isdir(directory):
        return None, f"{value!r}: the directory {directory} does not exist"
    return value, None


CNI_KINDS = ("auto", "calico", "canal", "flannel")  # judge/cni.py decides "auto"


def _cni_kind(value: Any) -> Checked:
    value, why = _string(value)
    if why:
        return None, why
    if value not in CNI_KINDS:
        return None, f"{value!r} is not one of: {', '.join(CNI_KINDS)}"
    return value, None


def _absolute_path(value: Any) -> Checked:
    """A file calfwd only looks at (flannel's subnet file): absolute, so the daemon's working
    directory never changes what it means."""
    value, why = _string(value)
    if why:
        return None, why
    if not value.startswith("/"):
        return None, f"{value!r} must be an absolute path"
    if value.endswith("/"):
        return None, f"{value!r} names a directory, not a file"
    return value, None


REQUIRED = object()

# section -> key -> (checker, default)
SCHEMA: Dict[str, Dict[str, Tuple[Callable[[Any], Checked], Any]]] = {
    "calico": {
        "ip_pools": (_pools, REQUIRED),
        "nat_outgoing": (_nat_outgoing, False),
        "interfaces": (_list_of(_interface, allow_empty=False), list(DEFAULT_INTERFACES)),
        "host_ports": (_list_of(_host_port_name), list(DEFAULT_HOST_PORTS)),
        "felix_refresh_interval": (_interval, 180),
    },
    "firewalld": {
        "enabled": (_boolean, True),
        "mode": (_mode, "permanent"),
        "zone": (_name(17, "zone"), "calfwd"),
        "host_zone": (_zone_ref, ""),
        "forward_policy": (_owned_name(17, "policy", RESERVED_POLICIES), "calfwd-forward"),
        "host_policy": (_owned_name(17, "policy", RESERVED_POLICIES), "calfwd-host"),
        "trust_pool_sources": (_boolean, False),
        "flush_guard": (_guard_choice, "auto"),
    },
    "nftables": {
        "table": (_owned_name(32, "nftables table", RESERVED_TABLES), "calfwd"),
    },
    "daemon": {
        "resync_interval": (_interval, 60),
        "on_calico_flush": (_command, []),
        "on_calico_flush_interval": (_interval, 600),
        "on_calico_flush_timeout": (_interval, 60),
        "kernel_events": (_boolean, True),
    },
    "metrics": {
        "textfile": (_textfile, ""),
    },
    "labels": {
        "features_file": (_features_file, ""),
    },
    "cni": {
        "kind": (_cni_kind, "auto"),
    },
    "flannel": {
        "subnet_file": (_absolute_path, "/run/flannel/subnet.env"),
    },
}
