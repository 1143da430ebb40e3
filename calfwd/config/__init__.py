"""Read and validate /etc/calfwd/calfwd.toml.

The config controls a host firewall, so nothing half-valid may pass: every problem in the
file is collected, reported one line each (file, key path, why), and the caller applies
nothing. The result is a frozen Config that the pure layers (desired state, plans) consume.
"""

from __future__ import annotations

import errno
import json
import os
import stat
import re
from dataclasses import dataclass
from typing import Any, Dict, List, Tuple, Union

try:  # Python 3.11+
    import tomllib as _toml
except ImportError:  # RHEL 9 (Python 3.9) ships python3-tomli
    import tomli as _toml  # type: ignore[no-redef]

from calfwd.config import trust
from calfwd.config.schema import AUTO_POOLS, CONTROL, REQUIRED, SCHEMA, IPNetwork, type_name

DEFAULT_PATH = "/etc/calfwd/calfwd.toml"

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
    # calfwd's flush guard drop-in for firewalld.service (judge/guard.py). "auto": `calfwd apply` and
    # the package install it where the installed firewalld flushes iptables (and it can be);
    # True: this host must have it (the daemon and doctor report when it is missing);
    # False: never, and `calfwd apply` removes calfwd's own.
    flush_guard: Union[bool, str] = "auto"


@dataclass(frozen=True)
class Config:
    """What parse() returns; every default comes from schema.SCHEMA, none is stated here."""

    path: str
    # With ip_pools = "auto" both are empty here: the Reconciler fills them in from Felix's sets
    # (judge/pools.py) before computing the desired state, so that stays pure.
    ip_pools: Tuple[IPNetwork, ...]
    nat_outgoing: Tuple[IPNetwork, ...]  # the pools that masquerade
    interfaces: Tuple[str, ...]
    host_ports: Tuple[str, ...]
    firewalld: FirewalldSettings
    nft_table: str
    resync_interval: float
    # Felix's IptablesRefreshInterval: how long a flushed Calico stays flushed, for the warning.
    felix_refresh_interval: float
    # Run after firewalld flushed Felix's rules: an argument list, never a shell line.
    on_calico_flush: Tuple[str, ...]
    on_calico_flush_interval: float  # at most once per this many seconds
    on_calico_flush_timeout: float  # then it is killed
    # Follow the kernel's nftables changes (`nft --json monitor`): repair calfwd's table and
    # see every flush of Felix's and kube-proxy's rules as it happens; false: resync only.
    kernel_events: bool
    # Prometheus metrics for node_exporter's textfile collector (status/metrics_file.py); "": none.
    metrics_textfile: str
    # node-feature-discovery's features.d file of node labels (status/labels.py); "": none.
    labels_features_file: str = SCHEMA["labels"]["features_file"][1]
    # Which CNI calfwd serves: "auto" (judge/cni.py decides from the node) or the one named.
    cni_kind: str = SCHEMA["cni"]["kind"][1]
    # flannel's --subnet-file: one of the signs of flannel on the node (judge/cni.py).
    flannel_subnet_file: str = SCHEMA["flannel"]["subnet_file"][1]
    auto_pools: bool = False  # ip_pools = "auto": the pools and natOutgoing follow Felix's sets
    # ip_pools = "auto" with trust_pool_sources: pools holding one of the node's addresses, which
    # the Reconciler (exposure.withheld_sources) keeps out of the zone's sources. Never parsed.
    withheld_sources: Tuple[IPNetwork, ...] = ()


# ---------------------------------------------------------------------------------------


MAX_BYTES = 1 << 20  # no calfwd config comes near this; /dev/zero must not be read whole


def read_text(path: str, trusted: bool = False) -> str:
    """Read the file as UTF-8, turning every OS or encoding failure into a ConfigError.

    Opened without following a final symbolic link and without blocking (a FIFO would hang
    the daemon's SIGHUP), then judged by the open descriptor, not the path: a regular file,
    at most MAX_BYTES, and with `trusted` (what root loads before it changes the firewall)
    owned by root, writable by nobody else, in directories nobody else can write to. What was
    checked is what is read, so renaming another file into place afterwards changes nothing.
    """
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY
    try:
        fd = os.open(path, flags)
    except IsADirectoryError:
        raise ConfigError([f"{path}: is a directory, not a config file"]) from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ConfigError([f"{path}: is a symbolic link (calfwd does not follow symbolic links: "
                               "point --config at the file itself)"]) from None
        raise ConfigError([f"{path}: cannot read: {exc.strerror or exc}"]) from None
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise ConfigError([f"{path}: is a directory, not a config file"])
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError([f"{path}: is not a regular file ({_file_kind(info.st_mode)})"])
        problems = _trust_problems(path, info) if trusted else []
        if problems:
            raise ConfigError(problems)
        if info.st_size > MAX_BYTES:
            raise ConfigError([f"{path}: {info.st_size} bytes, more than a config file can be "
                               f"({MAX_BYTES} at most)"])
        data = b""
        while len(data) <= MAX_BYTES:
            chunk = os.read(fd, MAX_BYTES + 1 - len(data))
            if not chunk:
                break
            data += chunk
        if len(data) > MAX_BYTES:
            raise ConfigError([f"{path}: grew past {MAX_BYTES} bytes while being read"])
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror or exc}"]) from None
    finally:
        os.close(fd)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ConfigError([f"{path}: line {line}: not valid UTF-8 (byte 0x{data[exc.start]:02x})"]) from None


def _file_kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a file"


def _trust_problems(path: str, info: os.stat_result) -> List[str]:
    """A root daemon that trusts a file others can write hands them the firewall; so does one
    whose directory others can write (they swap the file)."""
    return trust.owner_and_mode(path, info) + trust.directory_problem(
        path, trust.ancestors(os.path.abspath(path)), sticky_ok=True,
        advice="keep the config in a root-owned directory")


def parse(text: str, path: str) -> Config:
    """TOML text to Config, or ConfigError listing every problem."""
    try:
        doc = _toml.loads(text)
    except _toml.TOMLDecodeError as exc:
        raise ConfigError([f"{path}: {_describe_toml_error(exc, text)}"]) from None
    except RecursionError:  # the TOML parser recurses per level of [[[...]]] or {a={b=...}}
        raise ConfigError([f"{path}: arrays or inline tables nested too deeply to read (no calfwd "
                           "setting nests more than one level)"]) from None
    problems: List[str] = []
    values: Dict[str, Dict[str, Any]] = {}

    for section in doc:
        if section not in SCHEMA:
            problems.append(f"{path}: {_shown(section)}: unknown section (known: {', '.join(SCHEMA)})")
        elif not isinstance(doc[section], dict):
            problems.append(f"{path}: {section}: must be a table ([{section}]), not {type_name(doc[section])}")

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
                if default is REQUIRED:
                    problems.append(f"{path}: {where}: required key is missing")
                values[section][key] = None if default is REQUIRED else default
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
    calico_given = doc.get("calico")
    if not isinstance(calico_given, dict):
        calico_given = {}
    if values["calico"].get("ip_pools") == AUTO_POOLS and "nat_outgoing" in calico_given:
        problems.append(f'{path}: calico.nat_outgoing: must be left out with ip_pools = "auto" '
                        "(natOutgoing then follows Felix's masq set, pool by pool)")
    if problems:
        raise ConfigError(problems)

    calico, fw = values["calico"], values["firewalld"]
    auto = calico["ip_pools"] == AUTO_POOLS
    pools = () if auto else tuple(calico["ip_pools"])
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
        metrics_textfile=values["metrics"]["textfile"],
        labels_features_file=values["labels"]["features_file"],
        cni_kind=values["cni"]["kind"],
        flannel_subnet_file=values["flannel"]["subnet_file"],
        auto_pools=auto,
    )


def _cross_checks(values: Dict[str, Dict[str, Any]], path: str) -> List[str]:
    """Problems between keys: overlapping pools, NAT for a pool that is not configured."""
    problems: List[str] = []
    pools = values["calico"].get("ip_pools")
    if pools == AUTO_POOLS:
        pools = None
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
    found: List[Tuple[int, int]] = []
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
    if not key or CONTROL.search(key):
        return ""
    return f"{section}.{key}" if section else key


def load(path: str = DEFAULT_PATH) -> Config:
    """Read, parse and validate; raises ConfigError with every problem found."""
    return parse(read_text(path), path)


def load_trusted(path: str = DEFAULT_PATH, check_program: bool = True) -> Config:
    """What everything that changes the firewall loads (apply, cleanup, the daemon): as root,
    a file that is not root's alone, or in a directory others can write, is refused; so is
    an on_calico_flush program anyone but root could change (whoever runs the check).

    check_program=False: `cleanup` (package removal must never be stopped by a hook program
    that is gone) and the daemon's start (its file system may be mounted later; the program is
    checked again before every run anyway, and the daemon reports it).
    """
    config = parse(read_text(path, trusted=os.geteuid() == 0), path)
    problems = command_problems(config) if check_program else []
    if problems:
        raise ConfigError(problems)
    return config


def command_problems(config: Config) -> List[str]:
    """The on_calico_flush program, judged as the daemon judges it again before each run."""
    if not config.on_calico_flush:
        return []
    return [f"{config.path}: daemon.on_calico_flush: {problem}"
            for problem in trust.program_problems(config.on_calico_flush[0])]


def ownership_problems(path: str) -> List[str]:
    """For doctor: the trust problems of the file at `path`, without reading it."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    except OSError as exc:
        return [f"{path}: cannot open: {exc.strerror or exc}"]
    try:
        return _trust_problems(path, os.fstat(fd))
    finally:
        os.close(fd)
