"""Reads the host for `calfwd doctor` and the flush guard into a HostSnapshot.

Everything here reads and nothing writes (the guard's drop-in is drivers/dropin.py's). Every
read may fail (not root, no firewalld, no bus, a tool
missing): a failed read is recorded in HostSnapshot.unknown under its Read with the reason
and the others go on, so doctor reports it as "unknown" instead of crashing. Subprocesses get
argument lists, never a shell, and a timeout.

firewalld is read over D-Bus when it runs (its own view: version, backend, properties,
runtime direct rules, active zones), and from its configuration directory otherwise
(firewalld.conf, direct.xml), so doctor works on a host where firewalld is stopped.
"""

from __future__ import annotations

import dataclasses
import glob
import os
import xml.etree.ElementTree as ElementTree
from functools import partial
from typing import Any, Callable, Dict, Optional, Tuple

from calfwd.judge import guard
from calfwd.status import health
from calfwd.doctor.kernel_reads import read_ipsets, read_legacy, read_links, read_nftables, read_routes
from calfwd.drivers.dropin import read_dropin, resolve_guard_paths
from calfwd import drivers
from calfwd.drivers import statusfile
from calfwd.drivers.hostnet import read_forwarding, read_host_network
from calfwd.drivers.textfile import read_regular
from calfwd.reconcile import with_dispatch
from calfwd.config import Config, ConfigError, load, ownership_problems
from calfwd.doctor.snapshot import Drift, FirewalldState, HostSnapshot, Read

FIREWALLD_DIR = "/etc/firewalld"
FIREWALLD_DIR_ENV = "CALFWD_FIREWALLD_DIR"  # tests: the lab's --system-config directory
SYSTEMD_DIR = "/etc/systemd/system"
SYSTEMD_DIR_ENV = "CALFWD_SYSTEMD_DIR"  # tests: a directory of their own, never the host's
# The targets nftables.service is wanted by when enabled: Debian's unit has
# WantedBy=sysinit.target, Fedora's and RHEL's WantedBy=multi-user.target.
NFTABLES_SERVICE_TARGETS = ("sysinit.target.wants", "multi-user.target.wants", "basic.target.wants",
                            "network-pre.target.wants")
# Where distributions install firewalld's Python package.
FIREWALLD_PACKAGES = ("/usr/lib/python3*/site-packages/firewall", "/usr/lib/python3/dist-packages/firewall",
                      "/usr/lib64/python3*/site-packages/firewall")
# The upstream fix (firewalld 2.0, commit b7faa74d, backported to RHEL 9.3's 1.2.5) adds this.
FLUSH_FIX_MARKER = "may_skip_flush_direct_backends"


def firewalld_dir(override: Optional[str] = None) -> str:
    """Absolute: firewall-offline-cmd runs from / (a relative image path would name the host's)."""
    return os.path.abspath(override or os.environ.get(FIREWALLD_DIR_ENV) or FIREWALLD_DIR)


# ---------------------------------------------------------------------------------------
# firewalld over D-Bus


def read_firewalld(bus: Any, unknown: Dict[str, str], watch_paths: Tuple[str, ...]) -> FirewalldState:
    """firewalld's state as it reports it; unknown[...] gets what could not be read."""
    reader = drivers.firewalld_reader(bus)
    info = reader.info()  # raises, saying why, when firewalld is there but calfwd cannot know
    if not info.running:
        return FirewalldState(running=False, state=info.state)
    state: Dict[str, Any] = dict(info.__dict__)
    for key, read in (("strict_forward_ports", Read.FIREWALLD_STRICT_FORWARD_PORTS),
                      ("table_owner", Read.FIREWALLD_TABLE_OWNER)):
        try:
            state[key] = reader.config_property(read.value.split("-", 1)[1])
        except Exception as exc:
            unknown[read] = str(exc)
    try:
        state["runtime_direct"] = reader.runtime_direct()
    except Exception as exc:
        unknown[Read.FIREWALLD_DIRECT_RUNTIME] = str(exc)
    try:
        state["paths"] = reader.read_paths()
    except Exception as exc:
        unknown[Read.FIREWALLD_ZONES] = str(exc)
    pid = reader.pid()
    if pid is None:
        unknown[Read.GUARD_ACTIVE] = "could not ask the bus for firewalld's process id"
    else:
        state["pid"] = pid
        try:
            state["guarded"] = tuple(sorted(mount_points(pid) & set(watch_paths)))
        except OSError as exc:
            unknown[Read.GUARD_ACTIVE] = f"cannot read /proc/{pid}/mountinfo: {exc.strerror or exc}"
    return FirewalldState(**state)


def mount_points(pid: int) -> set:
    """Mount points in a process's mount namespace: InaccessiblePaths= shows up as one per path."""
    points = set()
    with open(f"/proc/{pid}/mountinfo", encoding="utf-8", errors="replace") as handle:
        for line in handle:
            fields = line.split()
            if len(fields) > 4:
                points.add(_unescape(fields[4]))
    return points


def _unescape(path: str) -> str:
    """mountinfo writes space, tab, newline and backslash as octal escapes."""
    for code in ("\\040", "\\011", "\\012", "\\134"):
        path = path.replace(code, chr(int(code[1:], 8)))
    return path


# ---------------------------------------------------------------------------------------
# firewalld's files and installed package


def read_firewalld_conf(directory: str) -> Dict[str, str]:
    """firewalld.conf as KEY -> value; {} when it does not exist (firewalld's defaults apply)."""
    try:  # a FIFO or device there is refused at once (OSError), never waited on
        text = read_regular(os.path.join(directory, "firewalld.conf"), follow=True).decode("utf-8")
    except FileNotFoundError:
        return {}
    settings = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        settings[key.strip()] = value.strip().strip('"')
    return settings


def read_permanent_direct(directory: str) -> Tuple[str, ...]:
    """Direct chains, rules and passthroughs in direct.xml. READ-ONLY detection (see above)."""
    path = os.path.join(directory, "direct.xml")
    try:
        root = ElementTree.fromstring(read_regular(path, follow=True))  # a FIFO: refused, not waited on
    except FileNotFoundError:
        return ()
    found = []
    for element in root:
        attrs = " ".join(element.get(k, "") for k in ("ipv", "table", "chain") if element.get(k))
        text = " ".join((element.text or "").split())
        found.append(f"permanent {element.tag} {attrs} {text}".strip())
    return tuple(found)


def read_nftables_service(directory: Optional[str] = None) -> Tuple[str, ...]:
    """The enablement links of nftables.service (its start, reload and stop flush the whole
    ruleset): the wants symlinks `systemctl enable` makes, read from the file system so that no
    D-Bus call to systemd is needed; () when not enabled or masked."""
    directory = directory or os.environ.get(SYSTEMD_DIR_ENV) or SYSTEMD_DIR
    if os.path.realpath(os.path.join(directory, "nftables.service")) == os.devnull:
        return ()  # masked
    return tuple(link for link in (os.path.join(directory, target, "nftables.service")
                                   for target in NFTABLES_SERVICE_TARGETS) if os.path.lexists(link))


NM_DIR = "/etc/NetworkManager"
NM_DIR_ENV = "CALFWD_NM_DIR"  # tests: a directory of their own, never the host's
NM_FILE_LIMIT = 1 << 20
NM_DROPIN_DIRS = ("/usr/lib/NetworkManager/conf.d", "/run/NetworkManager/conf.d")
NM_CLOUD_SETUP_UNITS = (("timers.target.wants", "nm-cloud-setup.timer"),
                        ("NetworkManager.service.wants", "nm-cloud-setup.service"),
                        ("multi-user.target.wants", "nm-cloud-setup.service"))


def read_networkmanager(directory: Optional[str] = None,
                        systemd_dir: Optional[str] = None) -> Optional[Tuple[str, ...]]:
    """NetworkManager's [keyfile] unmanaged-devices, or None when NetworkManager is not in use
    (not enabled, not running). Files are read as NetworkManager does: NetworkManager.conf, then
    every conf.d file by name, /etc's hiding /run's and /usr/lib's of the same name."""
    from calfwd.doctor.cni_checks import unmanaged_specs
    test_dir = directory or os.environ.get(NM_DIR_ENV)
    directory = test_dir or NM_DIR
    systemd_dir = systemd_dir or os.environ.get(SYSTEMD_DIR_ENV) or SYSTEMD_DIR
    enabled = os.path.lexists(os.path.join(systemd_dir, "multi-user.target.wants", "NetworkManager.service"))
    running = not test_dir and os.path.isdir("/run/NetworkManager")
    if not (enabled or running):
        return None
    dropins: Dict[str, str] = {}
    for where in (() if test_dir else NM_DROPIN_DIRS) + (os.path.join(directory, "conf.d"),):
        for path in glob.glob(os.path.join(where, "*.conf")):
            dropins[os.path.basename(path)] = path
    files = [os.path.join(directory, "NetworkManager.conf")] + [dropins[n] for n in sorted(dropins)]
    texts = [(path, read_regular(path, follow=True, limit=NM_FILE_LIMIT).decode("utf-8", "replace"))
             for path in files if os.path.isfile(path)]
    return unmanaged_specs(texts)


def read_nm_cloud_setup(directory: Optional[str] = None) -> Tuple[str, ...]:
    """nm-cloud-setup's enablement links (RHEL's cloud images enable its timer)."""
    directory = directory or os.environ.get(SYSTEMD_DIR_ENV) or SYSTEMD_DIR
    return tuple(link for link in (os.path.join(directory, target, unit) for target, unit in NM_CLOUD_SETUP_UNITS)
                 if os.path.lexists(link))


def installed_firewalld() -> Tuple[str, Optional[bool]]:
    """(version, has the 2.0 flush fix) of the installed firewalld package; ("", None) if absent."""
    for pattern in FIREWALLD_PACKAGES:
        for package in sorted(glob.glob(pattern)):
            version = ""
            try:
                with open(os.path.join(package, "config", "__init__.py"), encoding="utf-8") as handle:
                    for line in handle:
                        if line.startswith("VERSION"):
                            version = line.partition("=")[2].strip().strip("'\"")
                            break
                with open(os.path.join(package, "core", "fw.py"), encoding="utf-8") as handle:
                    fixed = FLUSH_FIX_MARKER in handle.read()
            except OSError:
                continue
            return version, fixed
    return "", None


# ---------------------------------------------------------------------------------------
# Everything


def _try(unknown: Dict[str, str], key: str, read: Callable[[], Any], default: Any = None) -> Any:
    try:
        return read()
    except Exception as exc:  # one failed read is one unknown finding, never a crash
        unknown[key] = str(exc) or type(exc).__name__
        return default


def connect_bus() -> Any:
    return drivers.system_bus()


# calfwd's drift, computed by the caller through the drivers read_snapshot made (the firewalld
# client: None without a system bus): commands/doctor.py plans as `calfwd plan` does.
DriftReader = Callable[[Config, drivers.NftDriver, Optional[drivers.FirewalldDriver]], Drift]


def read_snapshot(config_path: str, fw_dir: Optional[str] = None, dropin: Optional[str] = None,
                  full: bool = True, offline: bool = False, drift: Optional[DriftReader] = None) -> HostSnapshot:
    """Read everything doctor looks at (full=False: only what the guard needs); never raises
    for a failed read. offline (`apply --offline`): firewalld does not run, so its files and
    installed package say everything and no bus is asked. drift: how the caller computes
    calfwd's own drift (full reads only; without it the drift is recorded as not read)."""
    unknown: Dict[str, str] = {}
    snap: Dict[str, Any] = {"config_path": config_path}
    directory = firewalld_dir(fw_dir)
    dropin_path = guard.dropin_path(dropin)

    config: Optional[Config] = None
    try:
        config = load(config_path)
    except ConfigError as exc:
        snap["config_problems"] = tuple(exc.problems)
    snap["config"] = config
    if os.path.exists(config_path):
        snap["ownership"] = tuple(ownership_problems(config_path))

    snap["guard_paths"] = _try(unknown, Read.GUARD_PATHS, resolve_guard_paths, ())
    snap["dropin_path"] = dropin_path
    snap["dropin_text"] = _try(unknown, Read.GUARD_DROPIN, lambda: read_dropin(dropin_path))
    watch = tuple(snap["guard_paths"]) + guard.parse_dropin(snap["dropin_text"] or "")
    iptables = "/usr/sbin/iptables"
    snap["host_iptables"] = os.path.realpath(iptables) if os.path.exists(iptables) else ""

    bus = None
    firewalld = None
    try:  # firewalld is looked at even when [firewalld] enabled = false: it still flushes
        bus = None if offline else connect_bus()
    except Exception as exc:
        unknown[Read.FIREWALLD] = f"no system bus: {exc}"
    if bus is not None:
        snap["firewalld"] = _try(unknown, Read.FIREWALLD, lambda: read_firewalld(bus, unknown, watch),
                                 FirewalldState())
        firewalld = drivers.firewalld_driver(bus)
    snap["firewalld_conf"] = _try(unknown, Read.FIREWALLD_CONF, lambda: read_firewalld_conf(directory), {})
    snap["permanent_direct"] = _try(unknown, Read.FIREWALLD_DIRECT_PERMANENT,
                                    lambda: read_permanent_direct(directory))
    version, fixed = _try(unknown, Read.FIREWALLD_INSTALLED, installed_firewalld, ("", None))
    snap["installed_version"], snap["flush_fix"] = version, fixed
    if not full:  # `calfwd guard`: firewalld and the drop-in are all it needs
        snap["unknown"] = unknown
        return HostSnapshot(**snap)

    nft = None
    try:
        nft = drivers.nft_driver()
        read_nftables(nft, snap)
    except Exception as exc:
        unknown[Read.NFTABLES] = str(exc) or type(exc).__name__
    _try(unknown, Read.LEGACY, lambda: read_legacy(snap, unknown))
    snap["sysctls"] = _try(unknown, Read.SYSCTL, read_forwarding, {})
    snap["links"] = _try(unknown, Read.LINKS, read_links, ())
    fw_state = snap.get("firewalld")
    if nft is not None and config is not None and fw_state is not None and fw_state.paths is not None:
        paths = with_dispatch(nft, fw_state.paths, fw_state.backend, config.firewalld.zone, config.interfaces,
                              snap["links"])
        snap["firewalld"] = dataclasses.replace(fw_state, paths=paths)
    snap["routes"] = _try(unknown, Read.ROUTES, read_routes, ())
    snap["nftables_service"] = _try(unknown, Read.NFTABLES_SERVICE, read_nftables_service, ())
    snap["networkmanager"] = _try(unknown, Read.NETWORKMANAGER, read_networkmanager)
    snap["nm_cloud_setup"] = _try(unknown, Read.NM_CLOUD_SETUP, read_nm_cloud_setup, ())
    snap["host_network"] = _try(unknown, Read.HOST_NETWORK, read_host_network)
    pool_sets = dict(_try(unknown, Read.IPSET, read_ipsets, {}))
    pool_sets.update(snap.pop("nft_pool_sets", {}))
    snap["pool_sets"] = pool_sets

    if config is not None and nft is not None and drift is not None:
        def read_drift(config: Config, nft: drivers.NftDriver, compute: DriftReader) -> None:
            found = compute(config, nft, firewalld)
            if found.resolved is not None:
                snap["config"] = found.resolved
            snap["drift"], snap["conflicts"] = found.lines, found.conflicts
            snap["cni"], snap["auto_pools"] = found.cni, found.pools
        _try(unknown, Read.DRIFT, partial(read_drift, config, nft, drift))
    elif config is not None and nft is not None:
        unknown[Read.DRIFT] = "not read: the caller computes calfwd's drift, and none was asked for"
    elif config is not None:
        unknown[Read.DRIFT] = "nftables could not be read"
    daemon = statusfile.read_running()
    if daemon is not None:
        snap["daemon_flushed"] = tuple(health.outage_text(o) for o in health.daemon_outages(daemon))
    snap["unknown"] = unknown
    return HostSnapshot(**snap)
