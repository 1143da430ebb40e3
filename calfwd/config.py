"""Read and validate /etc/calfwd/calfwd.toml.

The config controls a host firewall, so nothing half-valid may pass: every problem in the
file is collected, reported one line each (file, key path, why), and the caller applies
nothing. The result is a frozen Config that the pure layers (desired state, plans) consume.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

try:  # Python 3.11+
    import tomllib as _toml
except ImportError:  # RHEL 9 (Python 3.9) ships python3-tomli
    import tomli as _toml  # type: ignore[no-redef]

DEFAULT_PATH = "/etc/calfwd/calfwd.toml"

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


class ConfigError(Exception):
    """A config that must not be applied; `problems` holds one printable line each."""

    def __init__(self, problems: List[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class FirewalldSettings:
    enabled: bool
    mode: str
    zone: str
    host_zone: str  # "" means firewalld's default zone, resolved at reconcile time
    forward_policy: str
    host_policy: str
    trust_pool_sources: bool
    # Declares that firewalld.service must carry calfwd's flush guard drop-in (guard.py):
    # the daemon and `calfwd doctor` report when it is missing; `calfwd guard enable` writes it.
    flush_guard: bool = False


@dataclass(frozen=True)
class Config:
    path: str
    ip_pools: Tuple[IPNetwork, ...]
    nat_outgoing: Tuple[IPNetwork, ...]  # the pools that masquerade
    interfaces: Tuple[str, ...]
    host_ports: Tuple[str, ...]
    firewalld: FirewalldSettings
    nft_table: str
    resync_interval: float
    # Felix's IptablesRefreshInterval: how long a flushed Calico stays flushed, for the warning.
    felix_refresh_interval: float = 180.0
    # Run after firewalld flushed Felix's rules: an argument list, never a shell line.
    on_calico_flush: Tuple[str, ...] = ()
    on_calico_flush_interval: float = 600.0  # at most once per this many seconds
    on_calico_flush_timeout: float = 60.0  # then it is killed
    # Follow the kernel's nftables changes (`nft --json monitor`): repair calfwd's table and
    # see every flush of Felix's and kube-proxy's rules as it happens; false: resync only.
    kernel_events: bool = True


# ---------------------------------------------------------------------------------------
# Value checkers: each returns (value, None) or (None, reason). They never raise.

Checked = Tuple[Any, Optional[str]]

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")


def _type_name(value: Any) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
            list: "an array", dict: "a table"}.get(type(value), type(value).__name__)


def _string(value: Any) -> Checked:
    if not isinstance(value, str):
        return None, f"must be a string, not {_type_name(value)}"
    match = _CONTROL.search(value)
    if match:
        return None, f"contains the control character {match.group()!r}"
    return value, None


def _boolean(value: Any) -> Checked:
    if not isinstance(value, bool):
        return None, f"must be true or false, not {_type_name(value)}"
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
    return value, None


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


def _owned_name(max_len: int, what: str) -> Callable[[Any], Checked]:
    """A name calfwd creates: it must not look like Felix's, firewalld's or kube-proxy's."""
    base = _name(max_len, what)

    def check(value: Any) -> Checked:
        value, why = base(value)
        if why:
            return None, why
        if value.lower().startswith(_FOREIGN_PREFIXES):
            return None, (f"{value!r} starts like a name Felix, firewalld or kube-proxy owns "
                          "(they may delete or overwrite it)")
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
        return None, f"must be a number of seconds, not {_type_name(value)}"
    if not 1 <= value <= 86400:
        return None, f"{value} is out of range (1 to 86400 seconds)"
    return float(value), None


def _command(value: Any) -> Checked:
    """An argument list run as root: its program must be an absolute path (no PATH lookup)."""
    if not isinstance(value, list):
        return None, (f"must be an array of strings (the program and its arguments, no shell), "
                      f"not {_type_name(value)}")
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


def _list_of(item: Callable[[Any], Checked], allow_empty: bool = True):
    """Checks a list item by item; problems carry the index in the key path."""
    def check(value: Any) -> Checked:
        if not isinstance(value, list):
            return None, f"must be an array, not {_type_name(value)}"
        if not value and not allow_empty:
            return None, "must not be empty"
        return value, None
    check.item = item  # type: ignore[attr-defined]
    return check


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
    return None, f"must be true, false or an array of pool CIDRs, not {_type_name(value)}"


_nat_outgoing.item = _cidr  # type: ignore[attr-defined]

_REQUIRED = object()

# section -> key -> (checker, default)
SCHEMA: Dict[str, Dict[str, Tuple[Callable[[Any], Checked], Any]]] = {
    "calico": {
        "ip_pools": (_list_of(_cidr, allow_empty=False), _REQUIRED),
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
        "forward_policy": (_owned_name(17, "policy"), "calfwd-forward"),
        "host_policy": (_owned_name(17, "policy"), "calfwd-host"),
        "trust_pool_sources": (_boolean, False),
        "flush_guard": (_boolean, False),
    },
    "nftables": {
        "table": (_owned_name(32, "nftables table"), "calfwd"),
    },
    "daemon": {
        "resync_interval": (_interval, 60),
        "on_calico_flush": (_command, []),
        "on_calico_flush_interval": (_interval, 600),
        "on_calico_flush_timeout": (_interval, 60),
        "kernel_events": (_boolean, True),
    },
}


# ---------------------------------------------------------------------------------------


def read_text(path: str) -> str:
    """Read the file as UTF-8, turning every OS or encoding failure into a ConfigError."""
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except IsADirectoryError:
        raise ConfigError([f"{path}: is a directory, not a config file"]) from None
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror or exc}"]) from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ConfigError([f"{path}: line {line}: not valid UTF-8 (byte 0x{data[exc.start]:02x})"]) from None


def parse(text: str, path: str) -> Config:
    """TOML text to Config, or ConfigError listing every problem."""
    try:
        doc = _toml.loads(text)
    except _toml.TOMLDecodeError as exc:
        raise ConfigError([f"{path}: {_describe_toml_error(exc, text)}"]) from None
    problems: List[str] = []
    values: Dict[str, Dict[str, Any]] = {}

    for section in doc:
        if section not in SCHEMA:
            problems.append(f"{path}: {_shown(section)}: unknown section (known: {', '.join(SCHEMA)})")
        elif not isinstance(doc[section], dict):
            problems.append(f"{path}: {section}: must be a table ([{section}]), not {_type_name(doc[section])}")

    for section, keys in SCHEMA.items():
        given = doc.get(section, {})
        if not isinstance(given, dict):
            given = {}
        for key in given:
            if key not in keys:
                problems.append(f"{path}: {section}.{_shown(key)}: unknown key (known: {', '.join(keys)})")
        values[section] = {}
        for key, (check, default) in keys.items():
            where = f"{section}.{key}"
            if key not in given:
                if default is _REQUIRED:
                    problems.append(f"{path}: {where}: required key is missing")
                values[section][key] = None if default is _REQUIRED else default
                given_value = values[section][key]
                if given_value is None:
                    continue
            else:
                given_value = given[key]
            value, why = check(given_value)
            if why:
                problems.append(f"{path}: {where}: {why}")
                values[section][key] = None
                continue
            item_check = getattr(check, "item", None)
            if item_check and isinstance(value, list):
                items = []
                for index, raw in enumerate(value):
                    item, why = item_check(raw)
                    if why:
                        problems.append(f"{path}: {where}[{index}]: {why}")
                    items.append(item)
                value = items if all(i is not None for i in items) else None
            values[section][key] = value

    problems.extend(_cross_checks(values, path))
    if problems:
        raise ConfigError(problems)

    calico, fw = values["calico"], values["firewalld"]
    pools = tuple(calico["ip_pools"])
    nat = calico["nat_outgoing"]
    nat_pools = pools if nat is True else () if nat is False else tuple(nat)
    return Config(
        path=path,
        ip_pools=pools,
        nat_outgoing=nat_pools,
        interfaces=tuple(_unique(calico["interfaces"])),
        host_ports=tuple(_unique(calico["host_ports"])),
        firewalld=FirewalldSettings(**fw),
        nft_table=values["nftables"]["table"],
        resync_interval=values["daemon"]["resync_interval"],
        felix_refresh_interval=calico["felix_refresh_interval"],
        on_calico_flush=tuple(values["daemon"]["on_calico_flush"]),
        on_calico_flush_interval=values["daemon"]["on_calico_flush_interval"],
        on_calico_flush_timeout=values["daemon"]["on_calico_flush_timeout"],
        kernel_events=values["daemon"]["kernel_events"],
    )


def _cross_checks(values: Dict[str, Dict[str, Any]], path: str) -> List[str]:
    """Problems between keys: overlapping pools, NAT for a pool that is not configured."""
    problems = []
    pools = values["calico"].get("ip_pools")
    if pools:
        problems.extend(f"{path}: calico.ip_pools[{i}]: {pools[i].with_prefixlen} overlaps "
                        f"calico.ip_pools[{j}] ({pools[j].with_prefixlen})" for i, j in _overlaps(pools))
    nat = values["calico"].get("nat_outgoing")
    if isinstance(nat, list) and pools:
        for index, net in enumerate(nat):
            if net not in pools:
                problems.append(f"{path}: calico.nat_outgoing[{index}]: {net.with_prefixlen} "
                                "is not one of calico.ip_pools")
    for key in ("interfaces", "host_ports"):
        items = values["calico"].get(key) or []
        seen = set()
        for index, item in enumerate(items):
            if item in seen:
                problems.append(f"{path}: calico.{key}[{index}]: {item!r} is listed twice")
            seen.add(item)
    fw = values["firewalld"]
    if fw.get("forward_policy") and fw.get("forward_policy") == fw.get("host_policy"):
        problems.append(f"{path}: firewalld.host_policy: must differ from firewalld.forward_policy")
    return problems


def _overlaps(pools: List[IPNetwork]) -> List[Tuple[int, int]]:
    """(index, earlier overlapping index) pairs, sorted by index; O(n log n).

    CIDRs either nest or are disjoint, so in start-address order a pool overlaps an earlier
    one exactly when it starts inside the last pool that was not itself inside another.
    """
    order = sorted(range(len(pools)), key=lambda i: (pools[i].version, pools[i].network_address,
                                                     pools[i].prefixlen, i))
    found = []
    outer = None
    for i in order:
        pool = pools[i]
        if outer is not None and pools[outer].version == pool.version \
                and pool.network_address <= pools[outer].broadcast_address:
            found.append((max(i, outer), min(i, outer)))
        else:
            outer = i
    return sorted(found)


def _shown(name: str) -> str:
    """A key or section name as the user wrote it, quoted when it could garble the line."""
    return name if re.fullmatch(r"[A-Za-z0-9_-]+", name) else json.dumps(name)


def _unique(items: List[Any]) -> List[Any]:
    return list(dict.fromkeys(items))


def _describe_toml_error(exc: Exception, text: str) -> str:
    """tomli says '... (at line 3, column 7)'; put the line first, as every other problem.

    Its duplicate-key message does not name the key, so name it from the offending line.
    """
    message = str(exc)
    match = re.search(r"\(at line (\d+), column (\d+)\)", message)
    if match:
        line = int(match.group(1))
        where = f"line {line}, column {match.group(2)}"
    else:
        lines = text.splitlines() or [""]
        line = len(lines)
        where = f"line {line} (end of file)"
    message = re.sub(r"\s*\(at (line \d+, column \d+|end of document)\)", "", message)
    if "overwrite" in message or "declare" in message:
        key = _key_at(text, line)
        if key:
            return f"line {line}: {key}: defined twice (TOML forbids duplicate keys)"
    return f"{where}: TOML syntax error: {message}"


def _key_at(text: str, line: int) -> str:
    """The dotted key defined on a line, prefixed by its [section]: best effort, for messages."""
    lines = text.splitlines()
    if not 0 < line <= len(lines):
        return ""
    section = ""
    for earlier in lines[: line - 1]:
        header = re.match(r"\s*\[\s*([^\]\s]+)\s*\]", earlier)
        if header:
            section = header.group(1)
    current = lines[line - 1].strip()
    header = re.match(r"\[\s*([^\]\s]+)\s*\]", current)
    if header:
        return header.group(1)
    key = current.split("=", 1)[0].strip() if "=" in current else ""
    if not key or _CONTROL.search(key):
        return ""
    return f"{section}.{key}" if section else key


def load(path: str = DEFAULT_PATH) -> Config:
    """Read, parse and validate; raises ConfigError with every problem found."""
    return parse(read_text(path), path)


def load_trusted(path: str = DEFAULT_PATH) -> Config:
    """What everything that changes the firewall loads: as root, a file that is not owned by
    root or that others can write is refused with the rest of the problems."""
    config = load(path)
    if os.geteuid() == 0:
        problems = ownership_problems(path)
        if problems:
            raise ConfigError(problems)
    return config


def ownership_problems(path: str) -> List[str]:
    """A root daemon that trusts a file others can write hands them the firewall."""
    try:
        info = os.stat(path)
    except OSError as exc:
        return [f"{path}: cannot stat: {exc.strerror or exc}"]
    problems = []
    if info.st_uid != 0:
        problems.append(f"{path}: owned by uid {info.st_uid}, must be owned by root")
    if info.st_mode & 0o022:
        problems.append(f"{path}: mode {info.st_mode & 0o777:04o} lets group or others write it "
                        "(run: chmod go-w)")
    return problems
